"""Pipeline speed with each speed option on and off (DESIGN.md section 1), on synthetic 720p frames.

    python bench/bench_pipeline.py [--frames 60] [--size 1280x720] [--bundle DIR] [--json out.json]

For each variant: median per-stage ms, per-frame work (`total`), model time (depth + coarse + refiner),
pipeline overhead (total - models, and its share of the frame), wall time per frame (throughput: the
overlapped variant's wall time is below its summed work), and the refined share of the refine grid.
`wbg-edge bench` (wbg_edge.cli) measures the same Pipeline through the streaming loop with a sink.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wbg_edge.pipeline import Pipeline, PipelineConfig  # noqa: E402

STAGES = ("preprocess", "depth", "normalise", "coarse", "band", "pack", "refiner", "finish")


def synthetic_frames(n: int, w: int, h: int, seed: int = 0) -> list[np.ndarray]:
    """A textured background and a person-like blob (head + torso) that drifts: realistic edges and motion."""
    rng = np.random.default_rng(seed)
    bg = cv2.resize(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                    interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(n):
        f = bg.copy()
        cx = int(w * (0.45 + 0.05 * np.sin(i / 10)))
        cv2.ellipse(f, (cx, int(h * 0.85)), (int(w * 0.16), int(h * 0.45)), 0, 0, 360, (60, 90, 170), -1)
        cv2.circle(f, (cx, int(h * 0.3)), int(h * 0.13), (80, 130, 200), -1)
        frames.append(cv2.GaussianBlur(f, (0, 0), 1.2))
    return frames


def run_variant(cfg: PipelineConfig, frames: list[np.ndarray], n: int, warmup: int) -> dict:
    p = Pipeline(cfg)
    src = (frames[i % len(frames)] for i in range(warmup + n))
    t_start, rows, refined = None, [], []
    for k, m in enumerate(p.stream(src)):
        if k == warmup - 1:
            t_start = time.perf_counter()
        if k >= warmup:
            rows.append(m.timings)
            refined.append(m.refined)
    wall = (time.perf_counter() - t_start) * 1e3 / n
    p.close()
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    models = med["depth"] + med["coarse"] + med["refiner"]
    overhead = float(np.median([r["overhead"] for r in rows]))
    return {"stages_ms": {k: round(med[k], 2) for k in STAGES}, "total_ms": round(med["total"], 2),
            "models_ms": round(models, 2), "overhead_ms": round(overhead, 2),
            "overhead_pct": round(100 * overhead / med["total"], 1), "wall_ms": round(wall, 2),
            "fps": round(1000 / wall, 1), "refined": round(float(np.median(refined)), 3),
            "info": p.info()}


def variants(base: PipelineConfig) -> dict[str, PipelineConfig]:
    return {
        "default": base,
        "patches off (full grid)": replace(base, patches=False),
        "depth off": replace(base, depth=False),
        "depth at model res": replace(base, depth_res=base.model_res or 256),
        "depth reuse k=3": replace(base, depth_every=3),
        "overlap on": replace(base, overlap=True),
        "overlap on, depth reuse k=3": replace(base, overlap=True, depth_every=3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    w, h = (int(x) for x in a.size.lower().split("x"))
    frames = synthetic_frames(24, w, h)
    base = PipelineConfig(bundle=a.bundle, backend=a.backend)
    todo = variants(base)
    if a.only:
        todo = {k: v for k, v in todo.items() if k in a.only.split(",")}
    results = {}
    for name, cfg in todo.items():
        r = run_variant(cfg, frames, a.frames, a.warmup)
        results[name] = r
        s = r["stages_ms"]
        print(f"{name:30s} wall {r['wall_ms']:6.1f} ms ({r['fps']:5.1f} fps)  work {r['total_ms']:6.1f}  "
              f"models {r['models_ms']:6.1f}  overhead {r['overhead_ms']:5.1f} ({r['overhead_pct']:4.1f}%)  "
              f"refined {r['refined']:.2f}  | " + " ".join(f"{k} {v:.1f}" for k, v in s.items()), flush=True)
    if a.json:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
                "cpus": os.cpu_count(), "size": [w, h], "frames": a.frames,
                "config": asdict(base), "results": results}
        Path(a.json).write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
