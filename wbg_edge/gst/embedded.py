"""Puts the system's PyGObject on sys.path in GStreamer's embedded Python; run by wbg_edge_gst.pth.

GStreamer's Python plugin loader starts an embedded Python, which looks for `python3` on PATH to find
its prefix. With a venv's bin/ first on PATH (an activated venv, or a script that puts it there), it
finds the venv's and runs as that venv: the system's site-packages drop out of sys.path, PyGObject (gi)
with them, and the loader fails with "pygobject initialization failed" before any Python plugin loads.
The .pth file that the wheel installs into site-packages calls `add_system_gi()` in every interpreter
of the venv; it acts only in an embedded one (`sys.orig_argv` is empty) that cannot import gi, and
appends the system's site-packages after the venv's own, so the venv's packages still come first.
"""
from __future__ import annotations

import importlib.util
import os
import sys


def system_site_dirs() -> list[str]:
    """Where distributions install PyGObject for the system Python of this version."""
    v = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return ["/usr/lib/python3/dist-packages", f"/usr/lib64/python{v}/site-packages",
            f"/usr/lib/python{v}/site-packages", f"/usr/local/lib/python{v}/dist-packages"]


def add_system_gi(dirs: list[str] | None = None) -> str | None:
    """In an embedded interpreter without gi, append the first system site-packages that has it; returns it."""
    if sys.orig_argv or importlib.util.find_spec("gi") is not None:
        return None
    for d in system_site_dirs() if dirs is None else dirs:
        if os.path.isfile(os.path.join(d, "gi", "__init__.py")):
            if d not in sys.path:
                sys.path.append(d)
            return d
    return None
