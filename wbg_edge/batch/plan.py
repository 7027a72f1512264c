"""Planning: one Item per input, its output name and mode, cut into Units; what `--resume` may skip.

Everything here runs in the driver before any worker starts, so a job that cannot be done as asked
(clashing names, an output container that cannot hold the mode) stops with one line and no work done.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from .inputs import expand_inputs, probe
from .model import OUTPUT_FORMATS, STATE_DIR, BatchConfig, BatchError, Item, Job, Unit, unit_result
from .records import (
    bundle_fingerprint,
    finished_part,
    input_fingerprint,
    is_complete,
    options_fingerprint,
    record_path,
    recorded_frames,
)


def output_name(inp: Path, kind: str, fmt: str) -> str:
    """`clip.mp4` -> `clip.mp4`; with --format mov -> `clip.mov`; png or an image folder -> a folder."""
    inp = Path(os.path.abspath(inp))  # `..`, `.`, `x/..` name the folder they point at, not OUTDIR's parent
    if kind == "images":
        return inp.name if fmt in ("same", "png") else f"{inp.name}.{fmt}"
    if fmt == "same":  # a container the sinks cannot write (.mpg, .ts, ...) becomes .mp4
        return inp.name if inp.suffix.lower().lstrip(".") in OUTPUT_FORMATS else f"{inp.stem}.mp4"
    if fmt == "png":
        return inp.stem
    return f"{inp.stem}.{fmt}"


def writes_pngs(kind: str, fmt: str) -> bool:
    """The output is a folder of PNGs (--format png, or an image folder kept as one)."""
    return fmt == "png" or (kind == "images" and fmt == "same")


def sink_uri(target: Path, pngs: bool) -> str:
    return f"{target}{os.sep}" if pngs else str(target)


def split_units(name: str, inp: str, kind: str, frames: int, chunk: int, overlap: int, mode: str = "") -> list[Unit]:
    """Cut a video into chunks of `chunk` frames; the last runs to the end (frame counts from headers
    can be off, so no frame is ever dropped by trusting them)."""
    if kind != "video" or chunk <= 0 or frames <= chunk + chunk // 2:
        return [Unit(name, inp, kind, mode=mode)]
    n = max(1, round(frames / chunk))
    bounds = [round(i * frames / n) for i in range(n)] + [None]
    return [Unit(name, inp, kind, index=i, chunks=n, start=bounds[i], stop=bounds[i + 1],
                 warmup=min(overlap, bounds[i]), mode=mode) for i in range(n)]


class _OutputModes:
    """The mode each output is made in, by `wbg-edge run`'s rule (settings.output_mode) against what
    its sink can store. The sink is opened on a scratch name (nothing is written) and asked."""

    def __init__(self, job: Job, outdir: Path):
        cfg = job.pipeline_config
        self.mode = job.output_mode or (cfg.mode if job.background_named else None)
        self.background = cfg.background if job.background_named else None
        self.fmt, self.outdir = job.format, outdir
        self.caps: dict[tuple[str, bool], tuple[tuple[str, ...], str]] = {}

    def __call__(self, inp: Path, name: str, kind: str) -> str:
        from wbg_edge.settings import output_mode

        pngs = writes_pngs(kind, self.fmt)
        key = (Path(name).suffix.lower(), pngs)
        if key not in self.caps:
            self.caps[key] = self._ask_sink(name, pngs)
        modes, prefers = self.caps[key]
        try:
            return output_mode(self.mode, self.background, modes, prefers, f"{inp}: its output {self.outdir / name}")
        except ValueError as e:
            raise BatchError(f"{e}; for batch: --format mov, webm or png keeps alpha") from None

    def _ask_sink(self, name: str, pngs: bool) -> tuple[tuple[str, ...], str]:
        from wbg_edge.sinks import SinkError, open_sink

        scratch = self.outdir / STATE_DIR / "tmp" / f"probe-{uuid.uuid4().hex}"
        scratch.mkdir(parents=True)
        try:
            with open_sink(sink_uri(scratch / name, pngs)) as sink:
                return tuple(sink.modes), sink.prefers
        except SinkError as e:  # e.g. .mov with alpha and no PyAV: the same line `run` gives
            raise BatchError(str(e).replace(str(scratch / name), str(self.outdir / name))) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def plan(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, job: Job) -> tuple[list[Item], dict[str, dict],
                                                                                     list[str]]:
    """Items for the inputs (failed ones already marked, finished chunks of an interrupted job already
    in `results` with --resume), per Item the record a finished output must match, and notes for the
    user. Raises BatchError when two inputs would write the same output or an output cannot hold its mode."""
    outdir = Path(cfg.outdir)
    notes: list[str] = []
    named: list[tuple[Path, str, str, str]] = []  # input, kind guess, output name, mode
    names: dict[str, str] = {}
    modes = _OutputModes(job, outdir)
    for inp in expand_inputs(inputs, notes):  # names and modes of every input before any is opened
        guess_kind = "images" if inp.is_dir() else "video"
        name = output_name(inp, guess_kind, job.format)
        if name in ("", ".", "..", STATE_DIR, "batch-summary.json"):  # would replace OUTDIR or its bookkeeping
            raise BatchError(f"{inp}: its output name {name!r} is not a file name batch can use; rename the input")
        if (outdir / name).resolve() == inp.resolve():  # the rename at the end would delete the input
            raise BatchError(f"{inp}: its output {outdir / name} is the input itself; choose another OUTDIR")
        if name in names:
            raise BatchError(f"{inp}: its output {outdir / name} clashes with the one of {names[name]}; "
                             f"rename one input")
        names[name] = str(inp)
        named.append((inp, guess_kind, name, modes(inp, name, guess_kind)))
    items: list[Item] = []
    wants: dict[str, dict] = {}
    bundle_h, opts_h = bundle_fingerprint(job.pipeline_config), options_fingerprint(job)
    for inp, guess_kind, name, mode in named:
        try:
            kind, n = probe(inp)
        except OSError as e:
            items.append(Item(name, str(inp), guess_kind, 0, status="failed", error=str(e)))
            continue
        item = Item(name, str(inp), kind, n)
        item.units = split_units(name, str(inp), kind, n, cfg.chunk_frames, cfg.overlap, mode)
        wants[name] = {"input": str(inp.resolve()), "input_hash": input_fingerprint(inp),
                       "bundle_hash": bundle_h, "options_hash": opts_h, "mode": mode}
        if cfg.resume and is_complete(outdir, item, wants[name]):
            item.status, item.frames = "skipped", recorded_frames(outdir, name)
        else:  # to be made again: an old record must not vouch for the new output before it is finished
            record_path(outdir, name).unlink(missing_ok=True)
            _resume_parts(outdir, item, wants[name], cfg.resume)
        items.append(item)
    return items, wants, notes


def _resume_parts(outdir: Path, item: Item, want: dict, resume: bool) -> None:
    """With --resume, the chunks an interrupted job finished count as done; otherwise they are dropped."""
    parts = outdir / STATE_DIR / "parts" / item.name
    if not resume or len(item.units) == 1:
        shutil.rmtree(parts, ignore_errors=True)
        return
    for u in item.units:
        frames = finished_part(outdir, u, want)
        if frames is not None:
            item.results[u.index] = unit_result(u, frames, resumed=True)
