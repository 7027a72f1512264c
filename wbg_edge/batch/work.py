"""The worker side (a pool process or a Ray actor): run a Unit's frames through a Pipeline into its output.

Frames go through `stream.run_stream`, the loop of `wbg-edge run` (same decoder, output image and
sink); with a batch size N > 1 through `Pipeline.process_batch`, the pipeline's own stages called with
N frames. A worker writes under `OUTDIR/.wbg-batch/tmp` and publishes by one rename, so OUTDIR only ever
holds finished outputs. The driver asks workers to stop through a file (`StopFlag`), which reaches a pool
process and a Ray actor on another node alike (OUTDIR is shared storage there anyway): a Unit then ends
after its frames in flight, its sink is closed, and what it made is dropped (the Unit is run again on
`--resume`; chunks finished before it are kept).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .model import STATE_DIR, Job, Unit, unit_result
from .plan import sink_uri, writes_pngs
from .records import part_dir


class StopFlag:
    """`is_set()` once the driver has created OUTDIR/.wbg-batch/tmp/stop (checked once per frame: a stat)."""

    def __init__(self, outdir: str | os.PathLike):
        self.path = Path(outdir) / STATE_DIR / "tmp" / "stop"
        self._seen = False

    def is_set(self) -> bool:
        self._seen = self._seen or self.path.exists()
        return self._seen

    def set(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._seen = True


class Stopped(Exception):
    """The Unit ended early because the job is stopping; `frames` were made and dropped."""

    def __init__(self, frames: int):
        super().__init__(f"stopped after {frames} frames")
        self.frames = frames


def make_pipeline(config: Any, threads: int = 0) -> Any:
    from wbg_edge.pipeline import Pipeline

    if threads and getattr(config, "threads", None) is None:
        config = dataclasses.replace(config, threads=threads)
    return Pipeline(config)


class _DropFirst:
    """A sink that discards the first `n` frames (the warm-up overlap of a chunk) and forwards the rest."""

    def __init__(self, sink: Any, n: int):
        self.sink, self.n = sink, n
        self.threadable = sink.threadable  # so run_stream encodes on its writer thread

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        if self.n > 0:
            self.n -= 1
        else:
            self.sink.write(image, name)


class _Batches:
    """The Pipeline as `run_stream` sees it when frames go `n` at a time through `process_batch` (same
    Mattes as `process`). The sink's writer queue holds a batch, so its encoding overlaps the next batch's
    inference: the Pipeline keeps those n + 1 earlier Mattes valid (`keep`)."""

    def __init__(self, pipeline: Any, n: int):
        self.pipeline, self.n = pipeline, n

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Any]:
        chunk: list[np.ndarray] = []
        for f in frames:
            chunk.append(f)
            if len(chunk) == self.n:
                yield from self.pipeline.process_batch(chunk, keep=self.n + 1)
                chunk = []
        if chunk:
            yield from self.pipeline.process_batch(chunk, keep=self.n + 1)


def process_to(pipeline: Any, unit: Unit, target: Path, job: Job, lossless_parts: bool = False,
               stop: Any = None) -> int:
    """Run the Unit's frames through the Pipeline into `target`, with the loop of `wbg-edge run`
    (`stream.run_stream`: same decoder, same output image, same sink). `target` is a video file, or a
    folder of PNGs for image-folder inputs, `--format png` and chunk parts. Returns frames written;
    raises Stopped when `stop` (anything with `is_set()`) ends it early."""
    from wbg_edge.sinks import open_sink
    from wbg_edge.sources import open_source
    from wbg_edge.stream import StreamStats, run_stream

    pipeline.reset()
    pngs = lossless_parts or writes_pngs(unit.kind, job.format)
    mode = unit.mode or job.output_mode or pipeline.mode
    with open_source(unit.input, live=False) as src:
        for _ in range(unit.start - unit.warmup):  # decode and drop what comes before the warm-up
            if stop is not None and stop.is_set():
                raise Stopped(0)
            while src.read(timeout=1.0) is None:
                if src.finished:
                    raise OSError(f"{unit.input}: ended before frame {unit.start}")
        with open_sink(sink_uri(target, pngs), fps=src.fps) as sink:
            stats = StreamStats()
            limit = None if unit.stop is None else unit.stop - unit.start + unit.warmup
            n = job.batch_size
            runner = _Batches(pipeline, n) if n > 1 else pipeline
            for _ in run_stream(src, runner, _DropFirst(sink, unit.warmup), mode=mode, stop=stop,
                                max_frames=limit, stats=stats, sink_queue=n):
                pass
            n = sink.frames
    if stats.ended_by == "stop requested":
        raise Stopped(n)
    if n == 0:
        raise OSError(f"{unit.input}: no frame decoded")
    return n


def stitch(parts: Sequence[Path], inp: Path, target: Path, job: Job) -> int:
    """Concatenate chunk parts (PNG folders, in order) into the final output at `target`."""
    from wbg_edge.sinks import open_sink
    from wbg_edge.sources import open_source

    with open_source(str(inp), live=False) as src:
        fps = src.fps
    with open_sink(sink_uri(target, job.format == "png"), fps=fps) as sink:
        for part in parts:
            for f in sorted(part.glob("*.png")):
                frame = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
                if frame is None:
                    raise OSError(f"{f}: unreadable chunk frame")
                sink.write(frame)
        return sink.frames


def staging(outdir: Path) -> Path:
    d = outdir / STATE_DIR / "tmp" / uuid.uuid4().hex
    d.mkdir(parents=True)
    return d


def replace(src: Path, dst: Path) -> None:
    """Rename src over dst; a folder dst is first renamed aside so the swap is one rename."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


class UnitRunner:
    """Holds the Pipeline of one worker (one per output mode, normally one) and runs Units with it.
    `run` never raises for a bad input: the result dict says what happened."""

    def __init__(self, job: Job):
        self.job = job
        self.stop = StopFlag(job.outdir)
        self.pipelines: dict[str, Any] = {}  # made on the first Unit, so a bad bundle is reported per input

    def run(self, unit: Unit) -> dict:
        t0 = time.perf_counter()
        res = unit_result(unit, pid=os.getpid())
        try:
            if self.stop.is_set():
                raise Stopped(0)
            res["frames"] = self._run(unit)
        except Stopped as e:
            res.update(stopped=True, made=e.frames)
        except Exception as e:  # noqa: BLE001 - any failure of one input is reported, not raised
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            res["error"] = msg if unit.input in msg else f"{unit.input}: {msg}"
        res["seconds"] = time.perf_counter() - t0
        return res

    def _pipeline(self, mode: str) -> Any:
        if mode not in self.pipelines:
            cfg = self.job.pipeline_config
            self.pipelines[mode] = make_pipeline(dataclasses.replace(cfg, mode=mode) if mode else cfg,
                                                 self.job.threads)
        return self.pipelines[mode]

    def _run(self, unit: Unit) -> int:
        outdir = Path(self.job.outdir)
        stage = staging(outdir)
        try:
            chunked = unit.chunks > 1
            target = stage / ("part" if chunked else unit.name)
            n = process_to(self._pipeline(unit.mode), unit, target, self.job, lossless_parts=chunked, stop=self.stop)
            dst = part_dir(outdir, unit) if chunked else outdir / unit.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            replace(target, dst)
            return n
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def close(self) -> None:
        for p in self.pipelines.values():
            p.close()
        self.pipelines.clear()
