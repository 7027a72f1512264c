"""GStreamer's Python plugin loader imports this file: `export GST_PLUGIN_PATH=$(wbg-edge gst-plugin-path)`.

The loader (gstreamer1.0-python3-plugin-loader) embeds the system's Python (Debian 12: 3.11), not the
virtualenv's, so the venv's packages come from PYTHONPATH (its site-packages) or VIRTUAL_ENV. Python
puts PYTHONPATH entries on sys.path without running their .pth files, and an editable install
(`pip install -e .`) is a .pth file: each such site-packages is added again with site.addsitedir,
which runs them. The element itself is wbg_edge/gst/element.py.
"""
import os
import re
import site
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
SOURCE_ROOT = HERE.parents[3]  # the folder holding wbg_edge/ (site-packages for an installed wheel)
TAG = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def _site_dirs() -> list:
    dirs = [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if os.environ.get("VIRTUAL_ENV"):
        dirs.append(Path(os.environ["VIRTUAL_ENV"]) / "lib" / TAG / "site-packages")
    dirs.append(SOURCE_ROOT)
    for d in dirs:
        m = re.search(r"python(\d+\.\d+)", str(d))
        if d.name == "site-packages" and m and f"python{m[1]}" != TAG:
            raise ImportError(f"wbgedge: GStreamer's Python plugin loader runs Python {TAG[6:]}, but {d} is a "
                              f"Python {m[1]} site-packages: make the venv with python{TAG[6:]} -m venv")
    return [d for d in dirs if d.name in ("site-packages", "dist-packages") and d.is_dir()]


for _d in _site_dirs():
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))  # before the system's dist-packages (its numpy, say)
    site.addsitedir(str(_d))  # runs the .pth files (an editable install's finder)

try:
    from wbg_edge.gst.element import WbgEdge
except ModuleNotFoundError as _e:
    if not (_e.name or "").startswith("wbg_edge") or not (SOURCE_ROOT / "wbg_edge" / "__init__.py").is_file():
        raise ImportError(f"wbgedge: cannot import {_e.name} from {TAG}: put the venv's site-packages on "
                          "PYTHONPATH (`wbg-edge info` checks the set-up)") from None
    # a source checkout that is not installed (an empty wbg_edge/ left by an uninstall may shadow it)
    for _m in [m for m in sys.modules if m.split(".")[0] == "wbg_edge"]:
        del sys.modules[_m]
    sys.path.insert(0, str(SOURCE_ROOT))
    from wbg_edge.gst.element import WbgEdge

from gi.repository import Gst  # noqa: E402

__gstelementfactory__ = ("wbgedge", Gst.Rank.NONE, WbgEdge)
