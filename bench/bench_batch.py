"""Batch throughput: frames/s of `wbg-edge batch` with 1 and N workers, local pool and local Ray, on the
same generated clips, and the Ray overhead against the local pool; with --batch-size, per-frame batching
(frames per Pipeline.process_batch call) against one frame at a time.

    python bench/bench_batch.py [--clips 4] [--frames 48] [--size 640x360] [--workers 1,2] [--batch-size 1,4]
                                [--pipeline | --pipeline-only] [--bundle DIR] [--backend auto|ort|trt] [--json FILE]

Each worker gets cores / workers inference threads, in both executors, so the two compare like for
like. Ray is started once (num_cpus = the largest worker count); its start-up is reported apart from
the job times, which count everything else a user waits for (pool spawn / actor start, model loading,
decode, inference, PNG writes, records). Configs run interleaved for --repeat rounds and the median
wall time is reported, so load drift on a shared machine hits every config alike. --pipeline also times
the Pipeline alone in this process (process vs process_batch on the decoded frames, no decode or
encode, 1 thread), interleaved the same way.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:
    import wbg_edge  # noqa: F401  (installed: keeps its built native library)
except ImportError:  # a plain checkout
    sys.path.insert(0, str(REPO))

from wbg_edge.batch import BatchConfig, Job, run_batch  # noqa: E402
from wbg_edge.pipeline import PipelineConfig  # noqa: E402


def make_clip(path: Path, frames: int, size: tuple[int, int], seed: int) -> Path:
    w, h = size
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 4)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for i in range(frames):
        f = bg.copy()
        cx = int(w * (0.25 + 0.5 * i / max(frames - 1, 1)))
        cv2.ellipse(f, (cx, h // 2), (w // 9, h // 3), 0, 0, 360, (40, 90 + 10 * seed, 200), -1)
        out.write(f)
    out.release()
    return path


def run_once(clips: list[Path], workers: int, ray: str | None, work: Path, batch_size: int = 1,
             base: PipelineConfig = PipelineConfig()) -> dict:
    out = work / f"out-{'ray' if ray else 'local'}-{workers}-{batch_size}"
    shutil.rmtree(out, ignore_errors=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    job = Job(base, str(out), format="png", threads=threads)
    t0 = time.perf_counter()
    report = run_batch(clips, BatchConfig(outdir=out, workers=workers, ray=ray, batch_size=batch_size), job)
    wall = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(f"bench: {report.failed[0].error}")
    return {"executor": "ray" if ray else "local", "workers": workers, "batch_size": batch_size,
            "threads_per_worker": threads, "frames": report.frames, "wall_s": round(wall, 2),
            "fps": round(report.frames / wall, 2)}


def pipeline_ms(frames: list[np.ndarray], batch_sizes: list[int], repeat: int,
                base: PipelineConfig = PipelineConfig()) -> dict[int, dict]:
    """Median ms per frame of the Pipeline alone (1 thread): process (batch size 1) or process_batch;
    wall time, and the models' shares from Matte.timings (a batched call is shared out evenly)."""
    from wbg_edge.pipeline import Pipeline

    pipe = Pipeline(replace(base, threads=1))
    for n in batch_sizes:  # warm-up: buffers and first model runs at every batch shape
        pipe.process_batch(frames[:n])
    keys = ("depth", "coarse", "refiner")
    runs: dict[int, list[float]] = {n: [] for n in batch_sizes}
    stages: dict[int, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in batch_sizes}
    for _ in range(repeat):
        for n in batch_sizes:
            t0 = time.perf_counter()
            for i in range(0, len(frames), n):
                mattes = [pipe.process(frames[i])] if n == 1 else pipe.process_batch(frames[i:i + n])
                for m in mattes:
                    for k in keys:
                        stages[n][k].append(m.timings[k])
            runs[n].append(1e3 * (time.perf_counter() - t0) / len(frames))
    pipe.close()
    return {n: {"ms": round(float(np.median(runs[n])), 2),
                **{k: round(float(np.median(v)), 2) for k, v in stages[n].items()}} for n in batch_sizes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=24, help="frames per clip")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--workers", default="1,2", help="comma list of worker counts")
    ap.add_argument("--batch-size", default="1", help="comma list of frames per process_batch call")
    ap.add_argument("--pipeline", action="store_true", help="also time the Pipeline alone per batch size")
    ap.add_argument("--pipeline-only", action="store_true", help="only time the Pipeline alone (no jobs)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds; each runs every config once, interleaved")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--bundle", help="model bundle folder (default: the shipped one)")
    ap.add_argument("--backend", default="auto", choices=("auto", "ort", "trt"))
    ap.add_argument("--json", help="also write the results as JSON")
    args = ap.parse_args()
    base = PipelineConfig(bundle=args.bundle, backend=args.backend)
    w, h = (int(v) for v in args.size.lower().split("x"))
    counts = [int(v) for v in args.workers.split(",")]
    sizes = [int(v) for v in args.batch_size.split(",")]
    work = Path(tempfile.mkdtemp(prefix="wbg-bench-batch-"))
    runs: dict[tuple[str, int, int], list[dict]] = {}
    pipe_ms: dict[int, float] = {}
    ray_start = None
    ray = None
    try:
        clips = [make_clip(work / f"clip{i}.mp4", args.frames, (w, h), i) for i in range(args.clips)]
        if args.pipeline_only:
            args.pipeline, args.no_ray, counts = True, True, []
        if not args.no_ray:
            import ray

            if str(REPO) in sys.path:  # a plain checkout: Ray's workers must find wbg_edge too
                env = os.environ.get("PYTHONPATH", "")
                os.environ["PYTHONPATH"] = f"{REPO}{os.pathsep}{env}" if env else str(REPO)
            t0 = time.perf_counter()
            ray.init(num_cpus=max(counts), include_dashboard=False, object_store_memory=256 << 20,
                     log_to_driver=False)
            ray_start = round(time.perf_counter() - t0, 2)
        # Interleaved rounds: on a shared machine the load drifts; each config sees the same drift.
        for _ in range(args.repeat):
            for n in counts:
                for b in sizes:
                    for executor in ("local",) + (() if args.no_ray else ("ray",)):
                        r = run_once(clips, n, "auto" if executor == "ray" else None, work, b, base)
                        runs.setdefault((executor, n, b), []).append(r)
        if args.pipeline:
            cap = cv2.VideoCapture(str(clips[0]))
            frames = [f for ok, f in iter(cap.read, (False, None)) if ok]
            cap.release()
            pipe_ms = pipeline_ms(frames, sizes, args.repeat, base)
    finally:
        if ray is not None:
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for rs in runs.values():
        walls = sorted(r["wall_s"] for r in rs)
        row = dict(rs[0], wall_s=round(float(np.median(walls)), 2), runs_wall_s=walls)
        row["fps"] = round(row["frames"] / row["wall_s"], 2)
        rows.append(row)
    local = {(r["workers"], r["batch_size"]): r for r in rows if r["executor"] == "local"}
    one = {(r["executor"], r["workers"]): r for r in rows if r["batch_size"] == sizes[0]}
    if pipe_ms:
        print(f"pipeline alone (1 thread), median ms/frame: wall (speed-up vs batch {sizes[0]}) / depth + coarse "
              f"+ refiner")
        for n, v in pipe_ms.items():
            print(f"  batch {n}: {v['ms']:.1f} ({pipe_ms[sizes[0]]['ms'] / v['ms']:.2f}x) / "
                  f"{v['depth']:.1f} + {v['coarse']:.1f} + {v['refiner']:.1f}")
    if rows:
        print(f"{args.clips} clips x {args.frames} frames at {w}x{h}, {os.cpu_count()} cores, median of "
              f"{args.repeat}" + (f"; Ray start-up {ray_start} s (not in the job times)" if ray_start else ""))
        print(f"{'executor':<9}{'workers':>8}{'batch':>6}{'threads':>8}{'frames':>8}{'wall s':>8}{'frames/s':>10}"
              f"{'vs local':>10}{'vs batch ' + str(sizes[0]):>12}  runs (s)")
    for r in rows:
        base = local.get((r["workers"], r["batch_size"]))
        r["overhead_vs_local_pct"] = None if r is base else round(100 * (r["wall_s"] / base["wall_s"] - 1), 1)
        rel = "" if r["overhead_vs_local_pct"] is None else f"{r['overhead_vs_local_pct']:+.0f}%"
        r["speedup_vs_first_batch_size"] = round(one[(r["executor"], r["workers"])]["wall_s"] / r["wall_s"], 3)
        print(f"{r['executor']:<9}{r['workers']:>8}{r['batch_size']:>6}{r['threads_per_worker']:>8}{r['frames']:>8}"
              f"{r['wall_s']:>8.1f}{r['fps']:>10.1f}{rel:>10}{r['speedup_vs_first_batch_size']:>11.2f}x"
              f"  {r['runs_wall_s']}")
    if args.json:
        doc = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv),
               "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "python": platform.python_version()},
               "clips": args.clips, "frames_per_clip": args.frames, "size": [w, h], "ray_start_s": ray_start,
               "results": rows, "pipeline_ms_per_frame": pipe_ms}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
