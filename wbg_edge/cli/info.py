"""`wbg-edge info` (backends, GPU, versions, the bundle, the GStreamer element) and `wbg-edge gst-plugin-path`."""
from __future__ import annotations

import json
import platform
from pathlib import Path

from .. import __version__
from .common import bundle_dir


def cmd_info(args) -> int:
    import importlib.metadata as md
    import importlib.util

    import cv2
    import numpy as np

    from ..bundle import bundle_location, default_bundle_dir, load_bundle
    from ..gpu import cuda_devices
    from ..sources import gstreamer_available

    def ver(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    import onnxruntime as ort
    info: dict = {"wbg-edge": __version__, "python": platform.python_version(), "numpy": np.__version__,
                  "opencv": cv2.__version__, "opencv_gstreamer": gstreamer_available(),
                  "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
                  "av (PyAV)": ver("av"), "pyvirtualcam": ver("pyvirtualcam"),
                  "tensorrt": ver("tensorrt") if importlib.util.find_spec("tensorrt") else "not installed",
                  "tensorrt_rtx": ver("tensorrt-rtx") if importlib.util.find_spec("tensorrt_rtx") else "not installed",
                  "cuda-python": ver("cuda-python")}
    gpus = cuda_devices()
    info["gpus"] = [f"{g.index}: {g.name} (sm {g.sm}, {g.total_memory >> 20} MiB)" for g in gpus]
    from ..gst import diagnose
    info["gstreamer"] = diagnose()  # the wbgedge element: whether it loads, or why not and the fix
    try:
        from .. import native
        info["native_fused_op"] = str(native.native_backend())
    except Exception as e:  # the native library is optional (numpy reference otherwise)
        info["native_fused_op"] = f"not available ({e})"
    root = Path(bundle_location(args.bundle)) if args.bundle else default_bundle_dir()
    b = load_bundle(root)
    from ..backends import choose_backend
    try:
        choice = choose_backend("auto", b)
        info["backend_auto"] = f"{choice.kind} ({choice.reason})"
    except Exception as e:
        info["backend_auto"] = f"unavailable ({e})"
    arts = []
    for a in b.artifacts:
        try:
            b.verify(a)
            ok = "sha256 ok"
        except Exception as e:
            ok = f"BAD: {e}"
        arts.append({"stage": a.stage, "file": a.file, "format": a.format, "precision": a.precision,
                     "contract": a.contract, "check": ok})
    info["bundle"] = {"path": str(root), "name": b.name, "model_res": b.model_res, "refine_res": b.refine_res,
                      "artifacts": arts, "producer": b.producer}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for k, v in info.items():
        if k in ("bundle", "gpus"):
            continue
        print(f"{k:<18}{', '.join(v) if isinstance(v, list) else v}")
    print(f"{'gpus':<18}{'; '.join(info['gpus']) or 'none (CPU only)'}")
    bi = info["bundle"]
    print(f"{'bundle':<18}{bi['name']} at {bi['path']} (model_res {bi['model_res']}, "
          f"refine_res {bi['refine_res']})")
    for a in arts:
        print(f"  {a['stage']:<8} {a['file']:<22} {a['format']:<6} {a['precision']:<5} {a['contract']:<8} "
              f"{a['check']}")
    return 0


def cmd_gst_plugin_path(args) -> int:
    from ..gst import plugin_path
    print(plugin_path())
    return 0


def add_parser(sub) -> None:
    """Registers `info` and `gst-plugin-path`."""
    i = sub.add_parser("info", help="backends, GPU, versions and the bundle manifest")
    i.add_argument("--bundle", type=bundle_dir, metavar="NAME|DIR",
                   help="real, synthetic or a bundle folder (default: synthetic)")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_info)

    g = sub.add_parser("gst-plugin-path", help="the folder to put on GST_PLUGIN_PATH for the wbgedge GStreamer element")
    g.set_defaults(func=cmd_gst_plugin_path)
