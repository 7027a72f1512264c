"""What the `wbgedge` GStreamer element costs per frame beyond Pipeline.process (README "In GStreamer").

    python bench/bench_gst.py [--frames 100] [--size 1280x720] [--format BGR] [--output composite]

Runs `videotestsrc ! video/x-raw,format=F,WxH ! wbgedge ! fakesink sync=false`. Buffer probes on the
element's pads time each frame from entering its sink pad to leaving its src pad (BaseTransform's output
buffer, the metadata copy, the mapping, format conversion, Pipeline.process and the copy out), and the
element's own Pipeline.process call is timed inside that window: the difference, frame by frame, is what
the element adds. As a cross-check the src probe also runs a second Pipeline with the same settings on
the same frame (copied by the sink probe before its clock starts), next to the element's run, so both
see the same frames and the same background load. Prints medians.

PyGObject lives in the system's Python, not the venv: run from the venv, the script starts itself again
under the system Python with the venv's site-packages and this checkout on PYTHONPATH.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def reexec_with_gi() -> None:
    try:
        import gi  # noqa: F401
        return
    except ImportError:
        pass
    from wbg_edge.gst import loader_library, loader_python, path_without_venvs, plugin_env
    lib = loader_library()
    ver = loader_python(lib) if lib else None
    py = f"/usr/bin/python{ver}"
    if not ver or not os.access(py, os.X_OK):
        sys.exit("bench_gst: needs GStreamer's Python plugin loader and PyGObject (see `wbg-edge info`)")
    env = plugin_env()
    env["PYTHONPATH"] += os.pathsep + str(REPO)
    env["PATH"] = path_without_venvs(env.get("PATH", ""))
    if "GST_REGISTRY" not in env:  # a fresh scan: the default registry may remember an old failure to load
        env["GST_REGISTRY"] = os.path.join(tempfile.gettempdir(), f"wbg-edge-bench-gst-{os.getuid()}.bin")
        Path(env["GST_REGISTRY"]).unlink(missing_ok=True)
    os.execve(py, [py, *sys.argv], env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--format", default="BGR", choices=("BGR", "BGRx", "BGRA", "RGB", "RGBA"))
    ap.add_argument("--output", default="composite", choices=("composite", "rgba", "alpha"))
    args = ap.parse_args()
    reexec_with_gi()

    import cv2
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    from wbg_edge import Pipeline, PipelineConfig
    from wbg_edge.gst.element import TO_BGR, _Side

    Gst.init(None)
    w, h = (int(v) for v in args.size.split("x"))
    pipe = Gst.parse_launch(f"videotestsrc num-buffers={args.frames + 5} pattern=ball ! video/x-raw,"
                            f"format={args.format},width={w},height={h},framerate=30/1 "
                            f"! wbgedge name=e output={args.output} ! fakesink sync=false")
    elem = pipe.get_by_name("e")
    direct = Pipeline(PipelineConfig(mode=args.output))
    direct.warmup(h, w)
    side: dict = {}
    frame: list = []
    t_in: list[float] = []
    element_ms: list[float] = []
    inside_ms: list[float] = []
    direct_ms: list[float] = []

    def timed(process):
        def run(f):
            t0 = time.perf_counter()
            try:
                return process(f)
            finally:
                side["process_ms"] = (time.perf_counter() - t0) * 1e3
        return run

    def on_sink(pad, info):
        if "in" not in side:
            side["in"] = _Side(pad.get_current_caps())
            elem._pipe.process = timed(elem._pipe.process)  # (the element is a Python object: time its call)
        buf = info.get_buffer()
        ok, m = buf.map(Gst.MapFlags.READ)
        img = side["in"].view(m.data)
        frame[:] = [img.copy() if side["in"].format == "BGR" else cv2.cvtColor(img, TO_BGR[side["in"].format])]
        del img
        buf.unmap(m)
        t_in[:] = [time.perf_counter()]
        return Gst.PadProbeReturn.OK

    def on_src(pad, info):
        t = time.perf_counter()
        element_ms.append((t - t_in[0]) * 1e3)
        inside_ms.append(side["process_ms"])
        t0 = time.perf_counter()
        direct.process(frame[0])
        direct_ms.append((time.perf_counter() - t0) * 1e3)
        return Gst.PadProbeReturn.OK

    elem.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_sink)
    elem.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_src)
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if msg.type == Gst.MessageType.ERROR:
        sys.exit(f"bench_gst: {msg.parse_error()[0].message}")
    e, p, d = element_ms[5:], inside_ms[5:], direct_ms[5:]  # the first frames after the warm-up still settle
    med = statistics.median
    print(f"{len(e)} frames {w}x{h} {args.format} -> output={args.output}, {os.cpu_count()} CPUs")
    print(f"  wbgedge, sink pad -> src pad            median {med(e):8.2f} ms")
    print(f"  its Pipeline.process call               median {med(p):8.2f} ms")
    print(f"  element cost beyond process (per frame) median {med(a - b for a, b in zip(e, p, strict=True)):8.3f} ms")
    print(f"  a second Pipeline.process, same frames  median {med(d):8.2f} ms "
          f"(wbgedge - it: median {med(a - b for a, b in zip(e, d, strict=True)):+.2f} ms per frame)")
    direct.close()


if __name__ == "__main__":
    main()
