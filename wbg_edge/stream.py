"""The streaming loop: source -> Pipeline -> sink, one frame at a time, and the benchmark built on it.

    with open_source(uri) as src, open_sink(out, fps=src.fps) as sink:
        for tick in run_stream(src, pipeline, sink, mode="composite", stop=stop_event):
            ...  # tick.fps, tick.latency_ms for a live readout

Capture already runs on its own thread inside the Source (bounded queue; a live source keeps only
the newest frame). The loop runs on the caller's thread: it reads, runs the Pipeline, writes, and
yields a `Tick` (a pipeline that overlaps frames reads and processes up to three ahead on its own
threads). It checks `stop` before each read, so a signal handler that sets it ends the stream after
the frames in flight and the caller's `with` closes (finalizes) the sink.
It never prints; `StreamStats` collects what happened for the caller to report.
"""
from __future__ import annotations

import queue
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .pipeline.matte import MODEL_STAGES  # Matte.timings keys that are model runs; the rest is our work
from .sinks import NullSink, Sink, SinkClosed
from .sources import Source

OUTPUT_MODES = ("composite", "rgba", "alpha")


class MatteLike(Protocol):
    """What the loop reads of a processed frame (`pipeline.Matte`)."""

    alpha: np.ndarray             # float32 (H, W) in [0, 1] (or u8)
    image: np.ndarray             # u8 output for `mode`
    mode: str                     # "composite" | "rgba" | "alpha"
    timings: dict[str, float]     # per-stage ms


class Streamer(Protocol):
    """What the loop runs frames through: `Pipeline`, or anything with the same `stream`."""

    def stream(self, frames: Iterable[np.ndarray]) -> Generator[MatteLike, None, None]:
        """One result per frame, in order; may read ahead of what it has yielded (overlapped stages).
        Closing the generator stops any helper threads."""
        ...


@dataclass
class Tick:
    index: int            # count of frames written so far, minus one
    frame: np.ndarray     # the input frame (BGR u8)
    matte: object         # what Pipeline.process returned
    image: np.ndarray     # what was written to the sink
    latency_ms: float     # capture (live) or hand-over to the pipeline (files) -> written
    fps: float            # frames written per second over the last (up to) 32 frames


@dataclass
class StreamStats:
    frames: int = 0
    wall_s: float = 0.0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=2000))  # the most recent
    ended_by: str = ""    # "end of input" | "stop requested" | "frame limit" | "output closed"

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def latency_ms(self) -> float:
        return float(np.median(self.latencies_ms)) if self.latencies_ms else 0.0


def output_image(matte, mode: str) -> np.ndarray:
    """The uint8 image a sink gets for `mode`: alpha HxW, rgba HxWx4 (BGRA), composite HxWx3 (BGR)."""
    if matte.mode == mode:
        return matte.image
    if mode == "alpha":
        a = matte.alpha
        return a if a.dtype == np.uint8 else np.floor(np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    raise ValueError(f"the pipeline made {matte.mode} output, the sink wants {mode}")


class _WriterThread:
    """Runs `sink.write` on its own thread behind a one-slot queue, so encoding overlaps inference.

    At most two images are in flight (one queued, one being written); the Pipeline keeps a Matte's
    arrays valid for the next two `process` calls, so nothing is copied. A sink error is raised in
    the caller's thread on the next `put` or at `finish`. A deeper queue (`depth`) lets a whole batch
    of Mattes wait while the next batch is inferred (the pipeline must then keep depth + 1 valid).
    """

    def __init__(self, sink, depth: int = 1):
        self.sink, self.error = sink, None
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name="sink-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    _write(self.sink, *item)
                except BaseException as e:  # raised again in the caller's thread
                    self.error = e

    def put(self, image: np.ndarray, name: str | None) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((image, name))

    def finish(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _write(sink: Sink, image: np.ndarray, name: str | None) -> None:
    # The name goes only where there is one (frames of image files), so a sink wrapper that takes
    # write(image) alone still works for every other input.
    if name is None:
        sink.write(image)
    else:
        sink.write(image, name)


def run_stream(source: Source, pipeline: Streamer, sink: Sink, mode: str = "composite",
               stop: threading.Event | None = None, max_frames: int | None = None, stats: StreamStats | None = None,
               read_timeout: float = 0.25, sink_thread: bool = True, sink_queue: int = 1) -> Iterator[Tick]:
    """Yield one Tick per frame handed to the sink; returns at the end of the input, on `stop`, or
    after `max_frames`. Source, pipeline and sink errors propagate (the caller closes what it opened).

    Frames go through `pipeline.stream`, so a pipeline configured to overlap its stages does so here.
    A frame read from an image file reaches the sink with its name (`Sink.write(image, name)`).
    File and pipe sinks (`sink.threadable`) write on their own thread unless `sink_thread=False`;
    every frame handed over is written before this returns. `sink_queue` images may wait for the
    writer (more than 1 only for a pipeline that keeps sink_queue + 1 earlier Mattes valid).
    """
    if mode not in OUTPUT_MODES:
        raise ValueError(f"output mode must be one of {OUTPUT_MODES}, got {mode!r}")
    stats = stats if stats is not None else StreamStats()
    pulled: deque = deque()  # frames handed to the pipeline, not yet written (a few when overlapping)

    def frames() -> Iterator[np.ndarray]:
        n = 0
        while True:
            if stop is not None and stop.is_set():
                stats.ended_by = "stop requested"
                return
            if max_frames is not None and n >= max_frames:
                stats.ended_by = "frame limit"
                return
            frame = source.read(timeout=read_timeout)
            if frame is None:
                if source.finished:
                    stats.ended_by = "end of input"
                    return
                continue
            # Files are read ahead on purpose; their latency counts from the hand-over, not the decode.
            pulled.append((frame, frame.t_capture if source.live else time.perf_counter()))
            n += 1
            yield frame.image

    mattes = pipeline.stream(frames())
    window: deque[float] = deque(maxlen=32)  # write times of the last frames, for the fps readout
    writer = _WriterThread(sink, sink_queue) if sink_thread and sink.threadable else None
    write = writer.put if writer is not None else lambda image, name: _write(sink, image, name)
    t0 = time.perf_counter()
    try:
        for matte in mattes:
            frame, t_in = pulled.popleft()
            image = output_image(matte, mode)
            try:
                write(image, frame.name)
            except SinkClosed:
                stats.ended_by = "output closed"
                return
            now = time.perf_counter()
            latency = (now - t_in) * 1000.0
            stats.frames += 1
            stats.latencies_ms.append(latency)
            window.append(now)
            fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
            yield Tick(stats.frames - 1, frame.image, matte, image, latency, fps)
    finally:
        mattes.close()  # stops an overlapping pipeline's worker threads
        try:
            if writer is not None:
                writer.finish()  # every frame handed over is written (or its error raised) before we return
        finally:
            stats.wall_s = time.perf_counter() - t0


# ---------------------------------------------------------------- benchmark

def rss_mb() -> float:
    """Resident memory now (MiB); 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def beyond_models_alone(frame_ms: float, models_alone_ms: float) -> float:
    """An overlapped frame's time beyond the models run back to back; never below 0 (two lanes can use the cores
    better than the models alone, and that is not negative work)."""
    return max(frame_ms - models_alone_ms, 0.0)


def bench_stream(source: Source, pipeline: Streamer, frames: int, warmup: int = 5, mode: str = "composite",
                 max_seconds: float | None = None, models_alone_ms: float | None = None) -> dict:
    """Run `frames` frames (after `warmup` untimed ones) through `run_stream` into a null sink,
    or fewer (at least 5) when `max_seconds` of timed frames have passed.

    Returns a dict: per-stage median ms, end-to-end ms per frame and fps (wall time over the timed
    frames, so everything the loop does counts), the models' time per frame (`model_ms`: depth + coarse +
    refiner, the mean over the timed frames), latency median, memory (RSS after warm-up, at the end,
    peak), and the pipeline overhead: end-to-end minus the models' time per frame.

    That models' time is `model_ms` when frames go one at a time. A pipeline that overlaps frames has
    several in flight (`frames_in_flight`, Little's law: latency summed over frames / wall time; at
    most 1 one at a time), so its per-frame model times add up to more than the frame time
    (`models_overlap` True) and say nothing about overhead: it is then taken against
    `models_alone_ms` (the models back to back, a sequential run's `model_ms`), never below 0, or
    reported as NaN (not measured) when that is not given.
    """
    sink = NullSink()
    # Records live in arrays allocated (and touched) before the after-warm-up RSS is taken, so a
    # long soak measures the stream's memory, not the growth of its own bookkeeping.
    times = np.full(frames, np.nan)
    lat = np.full(frames, np.nan)
    stage_ms: dict[str, np.ndarray] = {}
    n = 0
    rss_warm = t_prev = t_start = None
    for tick in run_stream(source, pipeline, sink, mode=mode, max_frames=warmup + frames):
        now = time.perf_counter()
        timings = tick.matte.timings
        if tick.index < warmup:
            for k in timings:
                stage_ms.setdefault(k, np.full(frames, np.nan))
            t_prev = now
            continue
        if rss_warm is None:
            rss_warm = rss_mb()
            t_start = t_prev if t_prev is not None else now
        times[n] = now - (t_prev if t_prev is not None else now)
        lat[n] = tick.latency_ms
        for k, v in timings.items():
            if k not in stage_ms:
                stage_ms[k] = np.full(frames, np.nan)
            stage_ms[k][n] = v
        t_prev = now
        n += 1
        if max_seconds and n >= 5 and now - t_start > max_seconds:
            break
    if n == 0:
        raise ValueError("bench: the source gave no frames after warm-up")
    times, lat = times[:n], lat[:n]
    wall_ms = 1000.0 * float(np.sum(times))
    e2e = wall_ms / n
    stages = {k: float(np.nanmedian(v[:n])) for k, v in stage_ms.items() if not np.all(np.isnan(v[:n]))}
    # the models' time per frame as a mean, like the end-to-end time it is taken from: medians would put the
    # models' slow frames (a busy machine) on the pipeline's side
    per_frame = [stage_ms[k][:n] for k in MODEL_STAGES if k in stage_ms]
    model = float(np.mean(np.nansum(per_frame, axis=0))) if per_frame else 0.0
    in_flight = float(np.sum(lat)) / wall_ms if wall_ms > 0 else 1.0
    # One at a time, each frame's latency lies inside the wall time and apart from the others' (<= 1);
    # the margin only absorbs timer granularity.
    overlap = in_flight > 1.1
    if not overlap:
        overhead = e2e - model
    elif models_alone_ms is not None:
        overhead = beyond_models_alone(e2e, models_alone_ms)
    else:
        overhead = float("nan")
    rss_end = rss_mb()
    return {
        "frames": n, "warmup": warmup,
        "end_to_end_ms": e2e, "fps": 1000.0 / e2e if e2e > 0 else 0.0,
        "end_to_end_median_ms": 1000.0 * float(np.median(times)),
        "stages_ms": stages, "model_ms": model,
        "frames_in_flight": in_flight, "models_overlap": overlap,
        "overhead_ms": overhead, "overhead_pct": 100.0 * overhead / e2e if e2e > 0 else 0.0,
        "latency_median_ms": float(np.median(lat)),
        # slowdown over time (soak): median frame time of the first and the last quarter
        "first_quarter_ms": 1000.0 * float(np.median(times[: max(n // 4, 1)])),
        "last_quarter_ms": 1000.0 * float(np.median(times[-max(n // 4, 1):])),
        "rss_after_warmup_mb": rss_warm or 0.0, "rss_end_mb": rss_end,
        "peak_rss_mb": max(peak_rss_mb(), rss_end, rss_warm or 0.0),  # ru_maxrss can lag the current RSS
    }
