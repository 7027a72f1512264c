"""`wbg-edge run | bench | info | demo | batch`: the only place that prints or exits.

Pipeline flags map 1:1 onto `PipelineConfig` fields (dest = field name; a flag left out keeps the
field's default). Every failure the user can cause ends as one line on stderr and exit status 1
(2 for bad arguments); set WBG_EDGE_DEBUG=1 to see the traceback instead.
"""
from __future__ import annotations

import os

# Before cv2 is imported anywhere: OpenCV and its FFmpeg otherwise print multi-line warnings for
# every camera probe or damaged file, and we already report those as one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

from . import __version__  # noqa: E402


class CliError(Exception):
    """A one-line error for the user."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        raise CliError(f"{self.prog}: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------- argument types (range checks)

def _int_range(lo: int, hi: int, multiple: int = 1):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
        if not lo <= v <= hi or v % multiple:
            extra = f" and a multiple of {multiple}" if multiple > 1 else ""
            raise argparse.ArgumentTypeError(f"{v} is out of range: must be {lo}..{hi}{extra}")
        return v
    return parse


def _float_range(lo: float, hi: float, hi_open: bool = False):
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
        if not (lo <= v < hi if hi_open else lo <= v <= hi):
            close = ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(f"{v:g} is out of range: must be in [{lo:g}, {hi:g}{close}")
        return v
    return parse


def _bundle_dir(s: str) -> str:
    if not Path(s).is_dir():
        raise argparse.ArgumentTypeError(f"{s}: no such bundle folder")
    return s


def _size(s: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: give a size as WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise argparse.ArgumentTypeError(f"{s}: size out of range (16..7680 x 16..4320)")
    return w, h


# ---------------------------------------------------------------- PipelineConfig flags (1:1, from settings)

def add_pipeline_options(p: argparse.ArgumentParser, with_output: bool = True) -> None:
    """One flag per PipelineConfig field, generated from the field metadata (wbg_edge.settings)."""
    from .settings import add_flags
    add_flags(p, skip=() if with_output else ("mode",))


def make_config(args: argparse.Namespace, **overrides):
    """PipelineConfig from the flags the user gave (others keep their defaults) plus `overrides`."""
    from .settings import config_from, given
    try:
        return config_from(given(args), **overrides)
    except (TypeError, ValueError) as e:
        raise CliError(str(e)) from None


def overlap_default(args: argparse.Namespace, live: bool) -> dict:
    """Without --overlap/--no-overlap: overlap a file's frames (throughput), not a live source's (latency)."""
    from .settings import overlap_for
    return {"overlap": overlap_for(live, getattr(args, "overlap", None))}


def choose_bundle(args: argparse.Namespace, src) -> str | None:
    """--bundle if given; for a live source (a person at a camera) the installed real-world bundle,
    whose imported segmenter finds real people; otherwise the shipped default (None)."""
    if args.bundle is not None or not src.live:
        return args.bundle
    from .bundle import real_world_bundle_dir
    rw = real_world_bundle_dir()
    if (rw / "manifest.json").is_file():
        return str(rw)
    _note("note: no real-world bundle installed, so the default models (trained on generated scenes) will not "
          "find real people; add it once with: python -m export.import_coarse mediapipe-selfie")
    return None


def choose_mode(args: argparse.Namespace, sink) -> str:
    """The output mode for this sink (settings.output_mode); one-line error when the sink cannot store it."""
    from .settings import output_mode
    try:
        return output_mode(args.mode, args.background, sink.modes, sink.prefers, sink.where)
    except ValueError as e:
        raise CliError(str(e)) from None


# ---------------------------------------------------------------- run

@contextmanager
def stop_on_signals():
    """SIGINT/SIGTERM set an event (the stream ends after the frames in flight and the output is
    finalized); a second signal interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Readout:
    """Live fps / latency on stderr: redrawn in place on a terminal, a line every few seconds otherwise."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.tty = quiet, sys.stderr.isatty()
        self.every = 0.5 if self.tty else 5.0
        self.last = time.perf_counter()

    def update(self, tick, source) -> None:
        now = time.perf_counter()
        if self.quiet or now - self.last < self.every:
            return
        self.last = now
        s = source.stats
        line = (f"frame {tick.index + 1}  {tick.fps:5.1f} fps  latency {tick.latency_ms:5.0f} ms"
                f"  dropped {s.dropped}  reconnects {s.reconnects}")
        sys.stderr.write(("\r\033[K" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\r\033[K")


def cmd_run(args) -> int:
    from .pipeline import Pipeline
    from .sinks import open_sink
    from .sources import open_source
    from .stream import StreamStats, run_stream

    stats, readout, opened = StreamStats(), Readout(args.quiet), {}
    if os.path.exists(args.out) and os.path.exists(args.input) and os.path.samefile(args.out, args.input):
        raise CliError(f"-o {args.out} is the input itself; it would be replaced by the output, choose another path")
    try:
        with stop_on_signals() as stop, open_source(args.input, live=args.live) as src:
            sink = open_sink(args.out, fps=args.fps or src.fps, codec=args.codec)
            with sink:  # closing finalizes the file, also when the loop below fails
                mode = choose_mode(args, sink)
                if sink.note:  # e.g. which codec a fallback writes
                    _note(sink.note)
                pipe = Pipeline(make_config(args, mode=mode, bundle=choose_bundle(args, src),
                                            **overlap_default(args, src.live)))
                opened.update(src=src, sink=sink, mode=mode, pipe=pipe)
                if not args.quiet:
                    _note(f"wbg-edge run: {args.input} -> {args.out} ({mode}), backend {_backend_name(pipe)}, "
                          f"bundle {pipe.bundle.name}")
                try:
                    for tick in run_stream(src, pipe, sink, mode, stop=stop, max_frames=args.frames, stats=stats):
                        readout.update(tick, src)
                finally:
                    readout.done()
                    pipe.close()
    finally:  # what was written is reported before any error line
        if opened:
            _report_run(args, stats=stats, **opened)
    return 0


def _report_run(args, src, sink, stats, mode, pipe) -> None:
    s = src.stats
    where = "stdout" if args.out in ("-", "pipe:", "pipe:1") else args.out
    enc = f", {sink.codec} via {sink.encoder}" if sink.codec else ""
    n = sink.frames
    _note(f"wrote {n} frames ({mode}{enc}) to {where} in {stats.wall_s:.1f} s: {stats.fps:.1f} fps, "
          f"latency {stats.latency_ms:.0f} ms median; dropped {s.dropped}, reconnects {s.reconnects}"
          f" ({stats.ended_by or 'stopped by an error'})")
    if sink.pix_fmt:
        w, h = sink.size or (0, 0)
        _note(f"raw frames: ffmpeg -f rawvideo -pix_fmt {sink.pix_fmt} -s {w}x{h} -r {src.fps:g} -i - OUT")
    for p in s.problems:
        _note(f"warning: {p}")
    if getattr(pipe, "nonfinite_frames", 0):
        _note(f"warning: the model returned NaN/Inf on {pipe.nonfinite_frames} frames; "
              f"they were passed through with the previous alpha")
    if sink.resized:
        _note(f"warning: {sink.resized} frames had another size than the first and were resized to it")


# ---------------------------------------------------------------- bench

SPEED_OPTIONS = ("patches", "depth_every", "overlap", "depth")


def cmd_bench(args) -> int:
    from .pipeline import Pipeline
    from .sources import from_frames
    from .stream import bench_stream

    if args.json and not Path(args.json).resolve().parent.is_dir():  # say so before a long run, not after it
        raise CliError(f"--json {args.json}: the folder {Path(args.json).resolve().parent} does not exist")
    budget = None if args.frames is not None else args.max_seconds or None
    args.frames = args.frames or 100
    frames = _load_frames(args.input, min(args.frames, args.keep))
    h, w = frames[0].shape[:2]
    base = make_config(args, **overlap_default(args, live=False))  # frames from memory: a file's throughput
    compare = _compare_list(args.compare, base, _has_depth(base))
    variants = [("default", base, args.frames)] + [(*_toggle(base, opt), args.frames) for opt in compare]
    if base.overlap and "overlap" not in compare:  # the sequential run's model time is the models alone:
        variants.append((*_toggle(base, "overlap"), min(args.frames, 100)))  # overlap's overhead line
    results = []
    for name, cfg, n in variants:
        pipe = Pipeline(cfg)
        try:
            src = from_frames(frames, count=args.warmup + n)
            with src:
                r = bench_stream(src, pipe, n, args.warmup, mode=cfg_output(cfg), max_seconds=budget)
        finally:
            pipe.close()
        r.update(variant=name, config=_config_dict(cfg), backend=_backend_name(pipe))
        results.append(r)
    for r, (_, cfg, _) in zip(results, variants, strict=True):
        _overhead_against_models_alone(r, cfg, results, variants)
    r0 = results[0]
    print(f"end-to-end: {r0['fps']:.1f} fps ({r0['end_to_end_ms']:.1f} ms/frame, median "
          f"{r0['end_to_end_median_ms']:.1f} ms) at {w}x{h}, {r0['frames']} frames after {args.warmup} warm-up, "
          f"backend {r0['backend']}, {os.cpu_count()} CPU cores")
    print(f"{'stage':<22}{'median ms':>10}")
    for k, v in r0["stages_ms"].items():
        print(f"  {k:<20}{v:>10.2f}")
    if base.overlap:
        print(f"model time {r0['model_ms']:.1f} ms summed over both lanes (two frames at once, each model "
              f"single-threaded beside the other lane's work, so it adds up to more than the frame time)")
    else:
        print(f"model time {r0['model_ms']:.1f} ms")
    print(f"pipeline overhead {_overhead_text(r0)}; latency {r0['latency_median_ms']:.1f} ms median")
    growth = 100.0 * (r0["rss_end_mb"] / r0["rss_after_warmup_mb"] - 1) if r0["rss_after_warmup_mb"] else 0.0
    print(f"memory: RSS {r0['rss_after_warmup_mb']:.0f} MB after warm-up, {r0['rss_end_mb']:.0f} MB at the end "
          f"({growth:+.1f}%), peak {r0['peak_rss_mb']:.0f} MB")
    if r0["frames"] >= 200:
        drift = 100.0 * (r0["last_quarter_ms"] / r0["first_quarter_ms"] - 1)
        print(f"over time: first quarter {r0['first_quarter_ms']:.1f} ms/frame, last quarter "
              f"{r0['last_quarter_ms']:.1f} ms/frame ({drift:+.1f}%)")
    if len(results) > 1:
        print(f"{'variant':<26}{'ms/frame':>10}{'fps':>8}{'model ms':>10}{'overhead':>10}")
        for r in results:
            over = f"{r['overhead_pct']:>9.0f}%" if r["overhead_ms"] is not None else f"{'n/a':>10}"
            print(f"  {r['variant']:<24}{r['end_to_end_ms']:>10.1f}{r['fps']:>8.1f}{r['model_ms']:>10.1f}{over}")
    if args.json:
        doc = {"input": args.input, "size": [w, h], "machine": _machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
               time.gmtime()), "results": results}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cfg_output(cfg) -> str:
    """The mode the Pipeline will produce (composite over 'transparent' is rgba)."""
    from .settings import effective_mode
    return effective_mode(cfg.mode, cfg.background)


def _has_depth(cfg) -> bool:
    """Whether the bundle of `cfg` has a depth model (else the depth options have nothing to toggle)."""
    from .bundle import default_bundle_dir, load_bundle
    bundle = load_bundle(cfg.bundle or default_bundle_dir())
    return "depth" in bundle.available_stages()


DEPTH_OPTIONS = ("depth", "depth_every")


def _compare_list(spec: str | None, base, has_depth: bool = True) -> list[str]:
    """The speed options to toggle; the depth ones only where the bundle has a depth model to toggle."""
    if not spec:
        return []
    fields = {f.name for f in dataclasses.fields(base)}
    names = [s.strip().replace("-", "_") for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        if not has_depth:
            _note("bench: the bundle has no depth model, so --compare all leaves out depth and depth-every")
        return [o for o in SPEED_OPTIONS if o in fields and (has_depth or o not in DEPTH_OPTIONS)]
    for n in names:
        if n not in SPEED_OPTIONS or n not in fields:
            avail = [o.replace("_", "-") for o in SPEED_OPTIONS if o in fields]
            raise CliError(f"--compare: unknown option {n!r}; choose from {', '.join(avail)} or all")
        if n in DEPTH_OPTIONS and not has_depth:
            raise CliError(f"--compare {n.replace('_', '-')}: the bundle has no depth model, so there is nothing "
                           f"to compare")
    return names


def _overhead_against_models_alone(r: dict, cfg, results: list[dict], variants: list) -> None:
    """An overlapped run's overhead is its frame time beyond the models alone: the model time of the
    sequential run of the same settings (its models run back to back on all cores). Its own model times
    are summed over two lanes that run at once, so frame time minus them means nothing (it was negative).
    None where no such sequential run was made."""
    if not cfg.overlap:
        return
    seq = dataclasses.replace(cfg, overlap=False)
    ref = next((q for q, (_, c, _) in zip(results, variants, strict=True) if c == seq), None)
    r["models_alone_ms"] = ref["model_ms"] if ref else None
    r["overhead_ms"] = r["end_to_end_ms"] - ref["model_ms"] if ref else None
    r["overhead_pct"] = 100.0 * r["overhead_ms"] / r["end_to_end_ms"] if ref else None


def _overhead_text(r: dict) -> str:
    if r["overhead_ms"] is None:
        return "n/a (no sequential run of the same settings to take the models alone from)"
    alone = f" beyond the models alone ({r['models_alone_ms']:.1f} ms, the sequential run)" \
        if "models_alone_ms" in r else ""
    return f"{r['overhead_ms']:.1f} ms ({r['overhead_pct']:.0f}% of the frame){alone}"


def _toggle(base, opt: str):
    v = getattr(base, opt)
    if isinstance(v, bool):
        return f"{opt.replace('_', '-')} {'off' if v else 'on'}", dataclasses.replace(base, **{opt: not v})
    new = 1 if v != 1 else 4  # depth_every: every frame vs the default reuse
    return f"{opt.replace('_', '-')}={new}", dataclasses.replace(base, **{opt: new})


def _load_frames(uri: str, n: int) -> list:
    """Decode up to n frames into memory, so the bench measures processing, not the decoder."""
    from .sources import open_source
    frames = []
    with open_source(uri) as src:
        while len(frames) < n:
            f = src.read(timeout=1.0)
            if f is None:
                if src.finished:
                    break
                continue
            frames.append(f.image)
    if not frames:
        raise CliError(f"{uri}: no frames")
    return frames


def _config_dict(cfg) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


def _backend_name(pipe) -> str:
    choice = getattr(pipe, "choice", None)
    reason = f" ({choice.reason})" if choice is not None else ""
    return f"{getattr(pipe, 'backend_name', '?')}{reason}"


def _machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "system": platform.platform()}


# ---------------------------------------------------------------- info

def cmd_info(args) -> int:
    import importlib.metadata as md
    import importlib.util

    import cv2
    import numpy as np

    from .bundle import default_bundle_dir, load_bundle
    from .gpu import cuda_devices
    from .sources import gstreamer_available

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
    from .gst import diagnose
    info["gstreamer"] = diagnose()  # the wbgedge element: whether it loads, or why not and the fix
    try:
        from . import native
        info["native_fused_op"] = str(native.native_backend())
    except Exception as e:  # the native library is optional (numpy reference otherwise)
        info["native_fused_op"] = f"not available ({e})"
    root = Path(args.bundle) if args.bundle else default_bundle_dir()
    b = load_bundle(root)
    from .backends import choose_backend
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
    from .gst import plugin_path
    print(plugin_path())
    return 0


# ---------------------------------------------------------------- demo

def cmd_demo(args) -> int:
    from .demo import run_demo

    readout = Readout(args.quiet)

    def progress(i, n):
        if readout.tty and not readout.quiet:
            sys.stderr.write(f"\r\033[Kdemo: frame {i}/{n}")
            sys.stderr.flush()

    from .sinks import have_av
    if not have_av():
        _note("PyAV is not installed: OpenCV writes the demo video as MPEG-4 (mp4v), no H.264; pip install av")
    cfg = make_config(args, mode="composite", **({} if args.background else {"background": "blur"}),
                      **overlap_default(args, live=False))
    w, h = args.size
    with stop_on_signals():
        res = run_demo(".", frames=args.frames, width=w, height=h, config=cfg, progress=progress)
    readout.done()
    print(f"demo: {res.frames} frames at {w}x{h} through the default bundle ({res.backend}): {res.fps:.1f} fps")
    print(f"demo: wrote {res.video} (composite video) and {res.sheet} (contact sheet: input | alpha | composite)")
    return 0


# ---------------------------------------------------------------- batch (wbg_edge.batch owns the work)

def cmd_batch(args) -> int:
    from .batch import BatchConfig, Job, run_batch

    # workers None: batch decides (one per GPU or per core here, the cluster's size under Ray)
    cfg = BatchConfig(outdir=args.outdir, workers=args.workers, ray=args.ray, resume=args.resume,
                      chunk_frames=args.chunk_frames, overlap=args.chunk_overlap, summary=args.summary,
                      batch_size=args.batch_size)
    # Each output's mode is run's (settings.output_mode), decided by batch per output: it needs to know
    # what the user named, not the config's defaults.
    job = Job(pipeline_config=make_config(args), outdir=str(args.outdir), output_mode=args.mode,
              format=args.format, background_named=args.background is not None)
    # First Ctrl-C / SIGTERM: stop after the frames in flight, finished work recorded; second: at once.
    with stop_on_signals() as stop:
        report = run_batch(args.inputs, cfg, job, stream=sys.stderr, stop=stop)
    print(report.table())
    if report.interrupted:
        _note("wbg-edge batch: interrupted; finished outputs are recorded, rerun with --resume to continue")
        return 130
    return 1 if report.failed else 0


# ---------------------------------------------------------------- parser and main

RUN_EXAMPLES = """examples:
  wbg-edge run -i 0 -o window                                  camera to a window, green background
  wbg-edge run -i talk.mp4 -o talk-cut.mov                     ProRes 4444 with alpha (needs PyAV)
  wbg-edge run -i talk.mp4 -o out/ --background transparent    RGBA PNG frames
  wbg-edge run -i talk.mp4 -o alpha.mp4 --output alpha         the matte alone
  wbg-edge run -i rtsp://cam/stream -o - | ffmpeg -f rawvideo -pix_fmt bgr24 -s 1280x720 -r 25 -i - out.mkv
  wbg-edge run -i csi://0 -o vcam:// --background blur         Jetson camera to a virtual webcam
Ctrl-C or SIGTERM ends the stream after the frames in flight and finishes the output file."""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wbg-edge", description="Real-time background removal at the edge.")
    p.add_argument("--version", action="version", version=f"wbg-edge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="remove the background of a camera, video, folder or stream",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EXAMPLES)
    r.add_argument("-i", "--input", required=True, metavar="SOURCE",
                   help="camera index (0), video file, image folder, rtsp:// or http:// URL, csi://0, "
                        "GStreamer pipeline, synthetic://")
    r.add_argument("-o", "--out", required=True, metavar="SINK",
                   help="video file (.mp4 .mkv .avi; .mov .webm keep alpha), folder/ or pattern%%05d.png, "
                        "'-' raw frames on stdout, window, vcam://, null")
    r.add_argument("--frames", type=_int_range(1, 10**9), metavar="N", help="stop after N frames")
    r.add_argument("--fps", type=_float_range(0.1, 1000), help="output frame rate (default: the source's)")
    r.add_argument("--codec", default=None, help="video codec override (PyAV), e.g. qtrle for lossless .mov")
    r.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="treat the source as live (keep only the newest frame, reconnect) or not")
    r.add_argument("-q", "--quiet", action="store_true", help="no live readout")
    add_pipeline_options(r)
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="per-stage latency, end-to-end fps, overhead and memory")
    b.add_argument("-i", "--input", default="synthetic://?size=1280x720&frames=50", metavar="SOURCE",
                   help="frames to use (decoded into memory first; default: the built-in 720p clip)")
    b.add_argument("--frames", type=_int_range(1, 10**7), default=None,
                   help="timed frames, exactly (default: 100, or fewer when --max-seconds is reached)")
    b.add_argument("--max-seconds", type=_float_range(0, 1e6), default=20.0,
                   help="without --frames, stop timing after this long per variant (default 20; 0: no limit)")
    b.add_argument("--warmup", type=_int_range(0, 10**4), default=5, help="untimed frames first (default 5)")
    b.add_argument("--keep", type=_int_range(1, 1000), default=60,
                   help="distinct frames held in memory and cycled (default 60)")
    b.add_argument("--compare", metavar="OPTS", default=None,
                   help="also run with each speed option toggled: comma list of "
                        f"{', '.join(o.replace('_', '-') for o in SPEED_OPTIONS)}, or all")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_pipeline_options(b)
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="backends, GPU, versions and the bundle manifest")
    i.add_argument("--bundle", type=_bundle_dir, metavar="DIR", help="bundle folder (default: the shipped one)")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_info)

    g = sub.add_parser("gst-plugin-path", help="the folder to put on GST_PLUGIN_PATH for the wbgedge GStreamer element")
    g.set_defaults(func=cmd_gst_plugin_path)

    d = sub.add_parser("demo", help="run the default bundle on the built-in clip; writes wbg-edge-demo.mp4/.png here")
    d.add_argument("--frames", type=_int_range(1, 10000), default=75, help="clip length (default 75)")
    d.add_argument("--size", type=_size, default=(1280, 720), help="clip size WxH (default 1280x720)")
    d.add_argument("-q", "--quiet", action="store_true")
    add_pipeline_options(d, with_output=False)
    d.set_defaults(func=cmd_demo)

    try:
        from .batch import add_batch_parser
    except ImportError:  # batch is optional; its heavy parts import lazily anyway
        add_batch_parser = None
    if add_batch_parser is not None:
        add_batch_parser(sub, add_pipeline_options).set_defaults(func=cmd_batch)
    return p


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failure, 2 bad arguments, 130 interrupted)."""
    debug = os.environ.get("WBG_EDGE_DEBUG") == "1"
    if not debug:  # library warnings as one line each, without the source line
        warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
    except CliError as e:
        _note(str(e))
        return 2
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    except Exception as e:  # a broken parser definition still ends in one line
        if debug:
            raise
        _note(f"wbg-edge: error: {e}")
        return 1
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _note("wbg-edge: interrupted")
        return 130
    except CliError as e:
        _note(f"wbg-edge {args.command}: error: {e}")
        return 1
    except Exception as e:
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        known = type(e).__name__ in ("SourceError", "SinkError", "BundleError", "BatchError", "ValueError",
                                     "FileNotFoundError", "PermissionError", "RuntimeError", "OSError")
        suffix = "" if known else f" [{type(e).__name__}; WBG_EDGE_DEBUG=1 shows the traceback]"
        _note(f"wbg-edge {args.command}: error: {msg}{suffix}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
