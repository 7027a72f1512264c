"""`wbg-edge demo`: the built-in generated clip and a real person, a video and a contact sheet written here."""
from __future__ import annotations

import sys

from .common import (
    Readout,
    add_pipeline_options,
    int_range,
    make_config,
    note,
    overlap_default,
    size_arg,
    stop_on_signals,
)


def cmd_demo(args) -> int:
    from ..demo import run_demo

    readout = Readout(args.quiet)

    def progress(i, n):
        if readout.tty and not readout.quiet:
            sys.stderr.write(f"\r\033[Kdemo: frame {i}/{n}")
            sys.stderr.flush()

    from ..sinks import have_av
    if not have_av():
        note("PyAV is not installed: OpenCV writes the demo video as MPEG-4 (mp4v), no H.264; pip install av")
    cfg = make_config(args, mode="composite", **({} if args.background else {"background": "blur"}),
                      **overlap_default(args, live=False))
    w, h = args.size
    with stop_on_signals():
        res = run_demo(".", frames=args.frames, width=w, height=h, config=cfg, progress=progress,
                       person_frames=args.person_frames)
    readout.done()
    for part in res.parts:
        print(f"demo: {part.clip}, {part.frames} frames at {w}x{h} through bundle {part.bundle} ({part.backend}): "
              f"{part.fps:.1f} fps")
        if part.iou is not None:
            print(f"demo: {part.clip}: matte IoU against the clip's own alpha {part.iou[0]:.3f} mean, "
                  f"{part.iou[1]:.3f} worst frame (1 = every pixel right)")
    print(f"demo: wrote {res.video} (composite video, the clips one after the other) and {res.sheet} "
          f"(contact sheet: input | alpha | composite)")
    return 0


def add_parser(sub) -> None:
    """Registers `demo`."""
    d = sub.add_parser("demo", help="a generated clip through the synthetic bundle and a real person (scikit-image's "
                                    "astronaut, panned) through the real one; writes wbg-edge-demo.mp4/.png here")
    d.add_argument("--frames", type=int_range(1, 10000), default=75, help="generated clip length (default 75)")
    d.add_argument("--person-frames", type=int_range(0, 10000), default=30,
                   help="real-person clip length (default 30; 0 leaves it out)")
    d.add_argument("--size", type=size_arg, default=(1280, 720), help="clip size WxH (default 1280x720)")
    d.add_argument("-q", "--quiet", action="store_true")
    add_pipeline_options(d, with_output=False)
    d.set_defaults(func=cmd_demo)
