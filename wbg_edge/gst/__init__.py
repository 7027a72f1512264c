"""GStreamer: the `wbgedge` element (element.py) and how to make GStreamer find it.

    export GST_PLUGIN_PATH=$(wbg-edge gst-plugin-path)
    export PYTHONPATH=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    gst-launch-1.0 ... ! videoconvert ! wbgedge background=blur ! videoconvert ! ...

GStreamer's Python plugin loader looks for modules in the `python/` subfolder of each GST_PLUGIN_PATH
folder and runs them in the Python it embeds (the system's: Debian 12 has 3.11), so the venv must be
made with that Python version and its site-packages put on PYTHONPATH (python/wbgedge.py then also
runs its .pth files, which an editable install needs). Nothing here imports GStreamer or PyGObject:
`diagnose()` asks the system's GStreamer tools, so it works where they are missing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

APT_PACKAGES = ("gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                "gstreamer1.0-python3-plugin-loader python3-gst-1.0")


def plugin_path() -> Path:
    """The folder to put on GST_PLUGIN_PATH (it holds python/wbgedge.py)."""
    return Path(__file__).resolve().parent


def site_packages() -> str:
    """This Python's site-packages: what the plugin loader's Python needs on PYTHONPATH."""
    return sysconfig.get_paths()["purelib"]


def plugin_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with GST_PLUGIN_PATH and PYTHONPATH set up for the element."""
    env = dict(os.environ if env is None else env)

    def prepend(key: str, value: str) -> str:
        rest = [p for p in env.get(key, "").split(os.pathsep) if p and p != value]
        return os.pathsep.join([value, *rest])

    env["GST_PLUGIN_PATH"] = prepend("GST_PLUGIN_PATH", str(plugin_path()))
    env["PYTHONPATH"] = prepend("PYTHONPATH", site_packages())
    return env


def path_without_venvs(path: str) -> str:
    """PATH without venv bin/ folders. GStreamer's embedded Python finds its prefix through `python3` on PATH;
    a venv's makes it run as that venv, without the system's PyGObject (unless wbg_edge_gst.pth is there)."""
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and not (Path(p).parent / "pyvenv.cfg").is_file())


def loader_library() -> Path | None:
    """GStreamer's Python plugin loader (libgstpython.so), in the system plugin folders."""
    dirs = [d for key in ("GST_PLUGIN_SYSTEM_PATH_1_0", "GST_PLUGIN_SYSTEM_PATH")
            for d in os.environ.get(key, "").split(os.pathsep) if d]
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    for prefix in ("/usr/lib", "/usr/local/lib", "/usr/lib64", "/lib"):
        dirs += [f"{prefix}/{arch}/gstreamer-1.0", f"{prefix}/gstreamer-1.0"]
    found = [Path(d) / "libgstpython.so" for d in dirs if (Path(d) / "libgstpython.so").is_file()]
    return found[0] if found else None


def loader_python(library: Path) -> str | None:
    """The Python version ("3.11") the loader embeds: the libpython it links to."""
    m = re.search(rb"libpython(\d+\.\d+)", library.read_bytes())
    return m[1].decode() if m else None


def diagnose(timeout: float = 120) -> str:
    """One line: whether `wbgedge` loads here (with the variables that make it), or why not and the fix."""
    if shutil.which("gst-inspect-1.0") is None:
        return ("wbgedge does not load: GStreamer is not installed (no gst-inspect-1.0); "
                f"fix: apt-get install {APT_PACKAGES}")
    lib = loader_library()
    if lib is None:
        return ("wbgedge does not load: GStreamer's Python plugin loader (libgstpython.so) is missing; "
                "fix: apt-get install gstreamer1.0-python3-plugin-loader python3-gst-1.0")
    ver, ours = loader_python(lib), f"{sys.version_info[0]}.{sys.version_info[1]}"
    if ver is not None and ver != ours:
        return (f"wbgedge does not load: the plugin loader ({lib}) runs Python {ver}, this Python is {ours}; "
                f"fix: make the venv with python{ver} -m venv, install wbg-edge there and run wbg-edge from it")
    with tempfile.TemporaryDirectory() as tmp:  # a fresh scan first: the registry may hold an old failure
        fresh = _inspect(dict(plugin_env(), GST_REGISTRY=str(Path(tmp) / "registry.bin")), timeout)
    if fresh is None or fresh.returncode != 0:
        why = f"gst-inspect-1.0 took more than {timeout:g} s" if fresh is None else \
            _why(fresh.stdout + fresh.stderr, ver or ours)
        return f"wbgedge does not load: {why}"
    cached = _inspect(plugin_env(), timeout)
    if cached is not None and cached.returncode != 0:
        where = os.environ.get("GST_REGISTRY") or "~/.cache/gstreamer-1.0/registry.*.bin"
        return (f"wbgedge loads with a fresh GStreamer registry, but {where} remembers an earlier failure "
                f"to load it (GStreamer caches what each plugin held); fix: rm {where}")
    gst = re.search(r"Version\s+(\S+)", fresh.stdout)
    return (f"wbgedge loads (GStreamer {gst[1] if gst else '?'}, plugin loader Python {ver or '?'}) with "
            f"GST_PLUGIN_PATH={plugin_path()} PYTHONPATH={site_packages()}")


def _inspect(env: dict[str, str], timeout: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["gst-inspect-1.0", "wbgedge"], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _why(output: str, ver: str) -> str:
    """The reason in gst-inspect's output (the loader prints the plugin's Python error), with the fix."""
    if "pygobject initialization failed" in output:
        return ("GStreamer's Python plugin loader cannot import PyGObject: a venv's bin/ is first on PATH, so its "
                "embedded Python runs as that venv, without the system's python3-gi; fix: reinstall wbg-edge in "
                "that venv (its wbg_edge_gst.pth adds PyGObject back), or make the venv with "
                "--system-site-packages, or run gst-launch-1.0 with the venv off PATH")
    lines = [s.strip() for s in output.splitlines() if s.strip() and "should be floating" not in s]
    errors = [s for s in lines if re.match(r"\w*(Error|Exception)\b", s)]
    if not errors:
        return lines[-1] if lines else "gst-inspect-1.0 wbgedge failed without a message"
    if "No module named 'gi'" in errors[-1]:
        return f"PyGObject is missing for Python {ver}; fix: apt-get install python3-gi python3-gst-1.0"
    return errors[-1]
