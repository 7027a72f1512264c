"""`wbg-edge run`: a source through the Pipeline into a sink, as a loop a user can read."""
from __future__ import annotations

import argparse
import os

from .common import (
    CLI_BUNDLE,
    CliError,
    Readout,
    add_pipeline_options,
    backend_name,
    bundle_line,
    float_range,
    int_range,
    make_config,
    note,
    overlap_default,
    stop_on_signals,
)

RUN_EXAMPLES = """examples:
  wbg-edge run -i 0 -o window                                  camera to a window, green background
  wbg-edge run -i talk.mp4 -o talk-cut.mov                     ProRes 4444 with alpha (needs PyAV)
  wbg-edge run -i talk.mp4 -o out/ --background transparent    RGBA PNG frames
  wbg-edge run -i talk.mp4 -o alpha.mp4 --output alpha         the matte alone
  wbg-edge run -i rtsp://cam/stream -o - | ffmpeg -f rawvideo -pix_fmt bgr24 -s 1280x720 -r 25 -i - out.mkv
  wbg-edge run -i csi://0 -o vcam:// --background blur         Jetson camera to a virtual webcam
Ctrl-C or SIGTERM ends the stream after the frames in flight and finishes the output file."""


def choose_bundle(args: argparse.Namespace) -> str:
    """--bundle if given, else the shipped real-people bundle, for cameras and files alike: what a user
    points `run` at is most often a person, and the generated-scene models do not find real people."""
    return args.bundle if args.bundle is not None else CLI_BUNDLE


def choose_mode(args: argparse.Namespace, sink) -> str:
    """The output mode for this sink (settings.output_mode); one-line error when the sink cannot store it."""
    from ..settings import output_mode
    try:
        return output_mode(args.mode, args.background, sink.modes, sink.prefers, sink.where)
    except ValueError as e:
        raise CliError(str(e)) from None


def cmd_run(args) -> int:
    from ..pipeline import Pipeline
    from ..sinks import open_sink
    from ..sources import open_source
    from ..stream import StreamStats, run_stream

    stats, readout, opened = StreamStats(), Readout(args.quiet), {}
    if os.path.exists(args.out) and os.path.exists(args.input) and os.path.samefile(args.out, args.input):
        raise CliError(f"-o {args.out} is the input itself; it would be replaced by the output, choose another path")
    try:
        with stop_on_signals() as stop, open_source(args.input, live=args.live) as src:
            sink = open_sink(args.out, fps=args.fps or src.fps, codec=args.codec)
            with sink:  # closing finalizes the file, also when the loop below fails
                mode = choose_mode(args, sink)
                bundle = choose_bundle(args)
                note(bundle_line(bundle))  # the first line, also with -q: which models run
                if sink.note:  # e.g. which codec a fallback writes
                    note(sink.note)
                pipe = Pipeline(make_config(args, mode=mode, bundle=bundle, **overlap_default(args, src.live)))
                opened.update(src=src, sink=sink, mode=mode, pipe=pipe)
                if not args.quiet:
                    note(f"wbg-edge run: {args.input} -> {args.out} ({mode}), backend {backend_name(pipe)}")
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
    note(f"wrote {n} frames ({mode}{enc}) to {where} in {stats.wall_s:.1f} s: {stats.fps:.1f} fps, "
          f"latency {stats.latency_ms:.0f} ms median; dropped {s.dropped}, reconnects {s.reconnects}"
          f" ({stats.ended_by or 'stopped by an error'})")
    if sink.pix_fmt:
        w, h = sink.size or (0, 0)
        note(f"raw frames: ffmpeg -f rawvideo -pix_fmt {sink.pix_fmt} -s {w}x{h} -r {src.fps:g} -i - OUT")
    for p in s.problems:
        note(f"warning: {p}")
    if pipe.nonfinite_frames:
        note(f"warning: the model returned NaN/Inf on {pipe.nonfinite_frames} frames; "
              f"they were passed through with the previous alpha")
    if sink.resized:
        note(f"warning: {sink.resized} frames had another size than the first and were resized to it")


def add_parser(sub) -> None:
    """Registers `run`."""
    r = sub.add_parser("run", help="remove the background of a camera, video, folder or stream",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EXAMPLES)
    r.add_argument("-i", "--input", required=True, metavar="SOURCE",
                   help="camera index (0), video file, image folder, rtsp:// or http:// URL, csi://0, "
                        "GStreamer pipeline, synthetic://")
    r.add_argument("-o", "--out", required=True, metavar="SINK",
                   help="video file (.mp4 .mkv .avi; .mov .webm keep alpha), folder/ or pattern%%05d.png, "
                        "'-' raw frames on stdout, window, vcam://, null")
    r.add_argument("--frames", type=int_range(1, 10**9), metavar="N", help="stop after N frames")
    r.add_argument("--fps", type=float_range(0.1, 1000), help="output frame rate (default: the source's)")
    r.add_argument("--codec", default=None, help="video codec override (PyAV), e.g. qtrle for lossless .mov")
    r.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="treat the source as live (keep only the newest frame, reconnect) or not")
    r.add_argument("-q", "--quiet", action="store_true", help="no live readout")
    add_pipeline_options(r)
    r.set_defaults(func=cmd_run)
