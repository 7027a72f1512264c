"""Live (sequential) overhead at 720p: the pipeline through the stream loop against its three models alone.

    python bench/bench_live.py [--frames 120] [--chunk 10] [--lib-b DIR] [--no-overlap-row] [--json out.json]

What `wbg-edge bench --no-overlap` measures (run_stream, a null sink, frames from memory: the default
720p synthetic clip), with its yardstick run beside it in the same process: the default pipeline's
three models back to back on each frame's own inputs (`bench_pipeline.ModelsAlone`). Variants run
interleaved in chunks, so they all see the same background load on a shared machine; per-frame wall
time is taken between consecutive Mattes (the first of each chunk is not counted).

Rows: "models alone"; "sequential" (the live path); "overlapped" (the default for files, whose
throughput must not drop); with `--lib-b DIR` also "sequential, lib B" and "overlapped, lib B": the
same pipelines with the fused op from another build (native library swapped between chunks: an A/B of
kernel changes in one process); `--begun` / `--prefetch`: the prototypes below. Overhead is given two
ways: e2e minus the sum of the row's own model medians (what `wbg-edge bench` prints) and e2e minus
the models-alone row's wall time; "untimed" is the median per frame of its wall time minus its timed
stages (Python between the stages, the stream loop).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import ModelsAlone  # noqa: E402

from wbg_edge import native  # noqa: E402
from wbg_edge.demo import SyntheticClip  # noqa: E402
from wbg_edge.pipeline import Matte, Pipeline, PipelineConfig, _Slot  # noqa: E402
from wbg_edge.sinks import NullSink  # noqa: E402
from wbg_edge.sources import from_frames  # noqa: E402
from wbg_edge.stream import MODEL_STAGES, run_stream  # noqa: E402

STAGES = ("preprocess", "depth", "normalise", "coarse", "band", "pack", "refiner", "finish")
OURS = ("preprocess", "normalise", "band", "pack", "finish")


class BegunFinish(Pipeline):
    """Prototype of the pipeline-side change for live sources (for the lead to port): the finish of a sequential
    frame is begun (`native.refine_finish_begin`) between the pack and the refiner, so the output blocks that read
    no refined cell are made on the op's low-priority background thread while the refiner runs, and ended with
    the refiner's output. Outputs are those of Pipeline (tests/test_native.py: begin + end == refine_finish)."""

    def _back(self, slot):
        w = self._coarse(slot)
        self._band_pack(w)
        self._job = None
        if not w.bad:
            t0 = time.perf_counter()
            b = w.b
            nxt = b.ring + 1  # the buffers _finish will take
            alpha_out, image_out = b.alphas[nxt % len(b.alphas)], b.images[nxt % len(b.images)]
            prev = self._prev_alpha if self._prev_alpha is not None and self._prev_alpha.shape == alpha_out.shape \
                else None
            s = self.config.smoothing if prev is not None else 0.0
            background = b.background.fill(slot.frame) if self.mode == "composite" else None
            self._job = native.refine_finish_begin(
                slot.frame, alpha_out, patches=w.patches, patch_size=self.config.patch_size,
                refine_size=slot.geom.refine, alpha_coarse=w.alpha_coarse, mode=self.mode, background=background,
                out=image_out, prev_alpha=prev if s > 0 else None, smoothing=s)
            self._begin_ms = (time.perf_counter() - t0) * 1e3
        self._refiner(w)
        return self._end(w)

    def _finish(self, slot, b, alpha_coarse, patches, windows, packed, delta, refined, bad, tm):
        job, self._job = self._job, None
        if job is None:
            return super()._finish(slot, b, alpha_coarse, patches, windows, packed, delta, refined, bad, tm)
        if bad:  # the refiner returned NaN / Inf: pass through, as Pipeline does
            job.cancel()
            return super()._finish(slot, b, alpha_coarse, patches, windows, packed, delta, refined, bad, tm)
        b.ring += 1
        alpha_out, image_out = b.alphas[b.ring % len(b.alphas)], b.images[b.ring % len(b.images)]
        t0 = time.perf_counter()
        if patches is not None and self.patch_context:
            packed, delta = self._inner(b, packed, delta, patches - windows, self.config.patch_size)
        job.end(packed, delta)
        tm["finish"] = (time.perf_counter() - t0) * 1e3 + self._begin_ms
        self._prev_alpha = alpha_out
        return Matte(alpha_out, image_out, self.mode, tm, slot.index, refined, passthrough=False)


class Prefetch(BegunFinish):
    """Prototype, second pipeline-side change: a sequential stream reads and preprocesses frame k + 1 on a helper
    thread at the lowest priority while frame k runs from depth to finish (two front slots in turn). Frame k waits
    for nothing new (its own preprocess was done before it was taken); with a source that has the next frame ready
    (files, the bench, a camera faster than the pipeline) its preprocess leaves the frame's critical path."""

    def stream(self, frames):
        if self.config.overlap:
            yield from super().stream(frames)
            return
        it, end = iter(frames), object()
        slots = [_Slot(), _Slot()]

        def low_priority():
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            native.set_thread_budget(1)

        def prepare(slot):
            f = next(it, end)
            if f is end:
                return end
            self._prepare(f, slot, copy=True)  # a copy: the caller may reuse its buffer for the next frame
            return slot

        pool = ThreadPoolExecutor(1, initializer=low_priority)
        ahead = pool.submit(prepare, slots[0])
        k = 0
        try:
            while (slot := ahead.result()) is not end:
                k += 1
                ahead = pool.submit(prepare, slots[k % 2])
                self._admit(slot)
                if self.depth_model is not None:
                    self._depth(slot, slot.geom, slot.timings)
                yield self._back(slot)
        finally:
            ahead.cancel()
            pool.shutdown(wait=False)


def load_lib(folder: str) -> ctypes.CDLL:
    """Another build of the CPU op; an older ABI is bound for the calls it shares with this one (a before/after)."""
    lib = ctypes.CDLL(str(Path(folder) / "libwbg_refine.so"))
    try:
        return native._bind(lib, "cpu")
    except (OSError, AttributeError):
        lib.wbg_refine_pack_cpu.argtypes = [ctypes.POINTER(native._PackArgs), ctypes.c_int]
        lib.wbg_refine_finish_cpu.argtypes = [ctypes.POINTER(native._FinishArgs), ctypes.c_int]
        lib.wbg_frame_planes_cpu.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p,
                                             ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_int]
        return lib


class Row:
    """One variant: how to run a chunk, and what it measured."""

    def __init__(self, name: str, run, lib=None):
        self.name, self.run, self.lib = name, run, lib
        self.times: list[float] = []
        self.timings: list[dict] = []


def stream_chunk(pipe: Pipeline, frames: list[np.ndarray]):
    """Yield (time, timings) per Matte of `frames` through run_stream into a null sink (as wbg-edge bench)."""
    src = from_frames(frames, count=len(frames))
    with src:
        for tick in run_stream(src, pipe, NullSink(), mode=pipe.mode):
            yield time.perf_counter(), tick.matte.timings


def models_chunk(ma: ModelsAlone, frames: list[np.ndarray]):
    for m in ma.stream(frames):
        yield time.perf_counter(), m.timings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120, help="timed frames per row")
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--lib-b", default=None, help="folder of another libwbg_refine.so: adds the 'lib B' rows")
    ap.add_argument("--no-overlap-row", action="store_true")
    ap.add_argument("--begun", action="store_true", help="add the prototype row 'sequential, begun' (BegunFinish)")
    ap.add_argument("--prefetch", action="store_true", help="add the prototype row 'seq, begun+prefetch' (Prefetch)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    w, h = (int(x) for x in a.size.lower().split("x"))
    clip = SyntheticClip(w, h, 50)
    frames = [clip.frame(i)[0] for i in range(50)]  # what `wbg-edge bench` decodes from its default input
    base = PipelineConfig()
    lib_a = native._cpu_lib()
    lib_b = load_lib(a.lib_b) if a.lib_b else None
    ma = ModelsAlone(base, frames)
    seq = Pipeline(replace(base, overlap=False))
    rows = [Row("models alone", lambda fs: models_chunk(ma, fs)),
            Row("sequential", lambda fs: stream_chunk(seq, fs), lib_a)]
    if lib_b is not None:
        rows.append(Row("sequential, lib B", lambda fs: stream_chunk(seq, fs), lib_b))
    if a.begun:
        begun = BegunFinish(replace(base, overlap=False))
        rows.append(Row("sequential, begun", lambda fs: stream_chunk(begun, fs), lib_a))
    if a.prefetch:
        pre = Prefetch(replace(base, overlap=False))
        rows.append(Row("seq, begun+prefetch", lambda fs: stream_chunk(pre, fs), lib_a))
    if not a.no_overlap_row:
        ovl = Pipeline(replace(base, overlap=True))
        rows.append(Row("overlapped", lambda fs: stream_chunk(ovl, fs), lib_a))
        if lib_b is not None:
            rows.append(Row("overlapped, lib B", lambda fs: stream_chunk(ovl, fs), lib_b))
    for r in rows:  # warm-up
        native._cpu["lib"] = r.lib or lib_a
        for _ in r.run(frames[:a.warmup]):
            pass
    i = 0
    while min(len(r.times) for r in rows) < a.frames:
        chunk = [frames[(i + j) % len(frames)] for j in range(a.chunk + 1)]
        for r in rows:
            native._cpu["lib"] = r.lib or lib_a
            prev = None
            for t, tm in r.run(chunk):
                if prev is not None:
                    r.times.append((t - prev) * 1e3)
                    r.timings.append(dict(tm))
                prev = t
        i += a.chunk
    native._cpu["lib"] = lib_a
    floor = float(np.median(rows[0].times))
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
           "size": [w, h], "frames": a.frames, "rows": {}}
    print(f"{'row':<20}{'e2e med':>8}{'mean':>7}{'p90':>7}{'models':>8}{'ovh':>6}{'%':>5}{'vs alone':>9}{'%':>5}  "
          + " ".join(f"{s[:7]:>7}" for s in STAGES) + f"{'untimed':>8}")
    for r in rows:
        med = {s: float(np.median([t.get(s, 0.0) for t in r.timings])) for s in STAGES}
        e2e, mean, p90 = float(np.median(r.times)), float(np.mean(r.times)), float(np.percentile(r.times, 90))
        fin90 = float(np.percentile([t.get("finish", 0.0) for t in r.timings], 90))
        # per frame: its wall time minus its timed stages (Python between the stages, the stream loop)
        glue = float(np.median([x - sum(t.get(k, 0.0) for k in STAGES)
                                for x, t in zip(r.times, r.timings, strict=True)]))
        models = sum(med[s] for s in MODEL_STAGES)
        ovh, vs = e2e - models, e2e - floor
        out["rows"][r.name] = {"e2e_median_ms": round(e2e, 2), "e2e_mean_ms": round(mean, 2),
                               "e2e_p90_ms": round(p90, 2), "finish_p90_ms": round(fin90, 3),
                               "untimed_ms": round(glue, 3),
                               "models_ms": round(models, 2), "overhead_ms": round(ovh, 2),
                               "overhead_pct": round(100 * ovh / e2e, 1), "vs_models_alone_ms": round(vs, 2),
                               "stages_ms": {s: round(v, 3) for s, v in med.items()}}
        print(f"{r.name:<20}{e2e:>8.2f}{mean:>7.2f}{p90:>7.2f}{models:>8.2f}{ovh:>6.2f}{100 * ovh / e2e:>5.0f}"
              f"{vs:>9.2f}{100 * vs / e2e:>5.0f}  " + " ".join(f"{med[s]:>7.2f}" for s in STAGES)
              + f"{glue:>8.2f}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
