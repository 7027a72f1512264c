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

import sys  # noqa: E402
import warnings  # noqa: E402

from .. import __version__  # noqa: E402
from . import batch, bench, demo, info, run  # noqa: E402
from .common import CliError, Parser, note  # noqa: E402

__all__ = ["build_parser", "main"]


def build_parser() -> Parser:
    p = Parser(prog="wbg-edge", description="Real-time background removal at the edge.")
    p.add_argument("--version", action="version", version=f"wbg-edge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in (run, bench, info, demo, batch):
        command.add_parser(sub)
    return p


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
        note(str(e))
        return 2
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    except Exception as e:  # a broken parser definition still ends in one line
        if debug:
            raise
        note(f"wbg-edge: error: {e}")
        return 1
    try:
        return args.func(args)
    except KeyboardInterrupt:
        note("wbg-edge: interrupted")
        return 130
    except CliError as e:
        note(f"wbg-edge {args.command}: error: {e}")
        return 1
    except Exception as e:
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        known = type(e).__name__ in ("SourceError", "SinkError", "BundleError", "BatchError", "ValueError",
                                     "FileNotFoundError", "PermissionError", "RuntimeError", "OSError")
        suffix = "" if known else f" [{type(e).__name__}; WBG_EDGE_DEBUG=1 shows the traceback]"
        note(f"wbg-edge {args.command}: error: {msg}{suffix}")
        return 1
