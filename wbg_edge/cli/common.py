"""What every `wbg-edge` command shares: one-line errors, argument types, the pipeline flags, signals and the
live readout."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


class CliError(Exception):
    """A one-line error for the user."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        raise CliError(f"{self.prog}: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------- argument types (range checks)

def int_range(lo: int, hi: int, multiple: int = 1):
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


def float_range(lo: float, hi: float, hi_open: bool = False):
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


def bundle_dir(s: str) -> str:
    """A shipped bundle's name (real, synthetic) or a bundle folder."""
    from ..bundle import BUNDLE_NAMES
    if s not in BUNDLE_NAMES and not Path(s).is_dir():
        raise argparse.ArgumentTypeError(f"{s}: no such bundle folder (or name: real, synthetic)")
    return s


# What `run` and `batch` use without --bundle: real people (cameras and files alike). The Python API
# (PipelineConfig()), `bench`, the demo's generated clip and the acceptance checks keep "synthetic".
CLI_BUNDLE = "real"


def bundle_line(spec: str) -> str:
    """The line `run` and `batch` start with: which bundle runs, what is in it, how to pick another. Loading
    the manifest here makes a broken bundle fail with its one-line error before anything is said."""
    from ..bundle import bundle_location, describe_bundle, load_bundle
    other = "synthetic" if spec == CLI_BUNDLE else CLI_BUNDLE
    return (f"bundle {describe_bundle(spec, load_bundle(bundle_location(spec)))}; "
            f"--bundle {other} or --bundle DIR picks another")


def size_arg(s: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: give a size as WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise argparse.ArgumentTypeError(f"{s}: size out of range (16..7680 x 16..4320)")
    return w, h


def add_pipeline_options(p: argparse.ArgumentParser, with_output: bool = True) -> None:
    """One flag per PipelineConfig field, generated from the field metadata (wbg_edge.settings)."""
    from ..settings import add_flags
    add_flags(p, skip=() if with_output else ("mode",))


def make_config(args: argparse.Namespace, **overrides):
    """PipelineConfig from the flags the user gave (others keep their defaults) plus `overrides`."""
    from ..settings import config_from, given
    try:
        return config_from(given(args), **overrides)
    except (TypeError, ValueError) as e:
        raise CliError(str(e)) from None


def overlap_default(args: argparse.Namespace, live: bool) -> dict:
    """Without --overlap/--no-overlap: overlap a file's frames (throughput), not a live source's (latency)."""
    from ..settings import overlap_for
    return {"overlap": overlap_for(live, getattr(args, "overlap", None))}


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


def note(msg: str) -> None:
    """A line for the user on stderr (results go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def backend_name(pipe) -> str:
    """The backend a Pipeline runs on, and why it was chosen."""
    return f"{pipe.backend_name} ({pipe.choice.reason})"
