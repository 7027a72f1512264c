"""Pipeline speed with each speed option on and off (DESIGN.md section 1), on synthetic 720p frames.

    python bench/bench_pipeline.py [--frames 60] [--size 1280x720] [--bundle DIR] [--json out.json]

For each variant: median per-stage ms, per-frame work (`total`), model time (depth + coarse + refiner),
pipeline overhead (total - models, and its share of the frame), wall time per frame (throughput: the
overlapped variant's wall time is below its summed work), process CPU time per frame (all threads;
less sensitive than wall time to other processes on a shared machine, but it counts ORT's spin-waits)
and the refined share of the refine grid. Variants run interleaved, chunk by chunk, so that they all
see the same background load. The first row, "models alone", runs only the three models of the default
pipeline back to back on each frame's own inputs; the wall time of each row that runs the same models
(default, overlap, spin) is also given against it: what the pipeline costs beyond its models, whether
its own work runs between them or beside them.
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
from types import SimpleNamespace

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wbg_edge.pipeline import STAGES, Pipeline, PipelineConfig  # noqa: E402


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


class ModelsAlone:
    """The three models of a sequential pipeline, back to back on each frame's own inputs (recorded from that
    pipeline with `Pipeline.model_inputs`) and nothing else: the floor that pipeline overhead is measured
    against. Stands in for a Pipeline in run_variants."""

    def __init__(self, cfg: PipelineConfig, frames: list[np.ndarray]):
        self.p = Pipeline(replace(cfg, overlap=False))
        self.inputs: dict[int, tuple] = {}
        for f in frames:
            m = self.p.process(f)
            x = self.p.model_inputs()
            refine = x.get("refiner")
            out = np.empty((len(refine), 1, *refine.shape[2:]), self.p.refiner_model.out_dtype) \
                if refine is not None else None
            self.inputs[id(f)] = (x.get("depth"), x["coarse"], refine, out, m.refined)

    def stream(self, frames):
        for f in frames:
            x_depth, x_coarse, x_refine, out, refined = self.inputs[id(f)]
            tm = dict.fromkeys(STAGES, 0.0)
            for stage, model, x, o in (("depth", self.p.depth_model, x_depth, None),
                                       ("coarse", self.p.coarse_model, x_coarse, None),
                                       ("refiner", self.p.refiner_model, x_refine, out)):
                if model is not None and x is not None:
                    t0 = time.perf_counter()
                    model(x, o)
                    tm[stage] = (time.perf_counter() - t0) * 1e3
            tm["total"] = tm["depth"] + tm["coarse"] + tm["refiner"]
            tm["overhead"] = 0.0
            yield SimpleNamespace(timings=tm, refined=refined)

    def info(self) -> dict:
        return {**self.p.info(), "models_alone": True}

    def close(self) -> None:
        self.p.close()


def run_variants(cfgs: dict[str, PipelineConfig], frames: list[np.ndarray], n: int, warmup: int,
                 chunk: int = 12) -> dict[str, dict]:
    """Interleaved: each variant in turn runs `chunk` frames, round after round, so that all of them see
    the same background load (the machine is shared); wall time is taken between the first and last
    Matte of each chunk, so the overlapped variant's pipeline fill is not counted."""
    pipes = {k: ModelsAlone(c, frames) if k == MODELS_ALONE else Pipeline(c) for k, c in cfgs.items()}
    rows: dict[str, list] = {k: [] for k in cfgs}
    walls: dict[str, list] = {k: [] for k in cfgs}
    cpus: dict[str, list] = {k: [] for k in cfgs}
    refined: dict[str, list] = {k: [] for k in cfgs}
    i = 0
    for p in pipes.values():  # warm-up: first-run allocations, ORT arenas, caches
        for _ in p.stream(frames[j % len(frames)] for j in range(warmup)):
            pass
    while min(len(r) for r in rows.values()) < n:
        for k, p in pipes.items():
            t_first = None
            for m in p.stream(frames[(i + j) % len(frames)] for j in range(chunk)):
                if t_first is None:
                    t_first, c_first = time.perf_counter(), time.process_time()
                else:
                    rows[k].append(m.timings)
                    refined[k].append(m.refined)
            walls[k].append((time.perf_counter() - t_first) * 1e3 / (chunk - 1))
            cpus[k].append((time.process_time() - c_first) * 1e3 / (chunk - 1))
        i += chunk
    out = {}
    for k, p in pipes.items():
        r = rows[k]
        med = {s: float(np.median([t[s] for t in r])) for s in r[0]}
        models = med["depth"] + med["coarse"] + med["refiner"]
        overhead = float(np.median([t["overhead"] for t in r]))
        wall = float(np.median(walls[k]))
        out[k] = {"stages_ms": {s: round(med[s], 2) for s in STAGES}, "total_ms": round(med["total"], 2),
                  "models_ms": round(models, 2), "overhead_ms": round(overhead, 2),
                  "overhead_pct": round(100 * overhead / med["total"], 1), "wall_ms": round(wall, 2),
                  "fps": round(1000 / wall, 1), "cpu_ms": round(float(np.median(cpus[k])), 2),
                  "refined": round(float(np.median(refined[k])), 3),
                  "frames": len(r), "info": p.info()}
        p.close()
    return out


MODELS_ALONE = "models alone (reference)"


def variants(base: PipelineConfig) -> dict[str, PipelineConfig]:
    return {
        MODELS_ALONE: base,
        "default": base,
        "patches off (full grid)": replace(base, patches=False),
        "patches 16 + context 4": replace(base, patch_size=16, patch_context=4),
        "depth off": replace(base, depth=False),
        "depth at model res": replace(base, depth_res=base.model_res or 256),
        "depth reuse k=3": replace(base, depth_every=3),
        "ORT spin on": replace(base, spin=True),
        "overlap on": replace(base, overlap=True),
        "overlap on + depth reuse k=3": replace(base, overlap=True, depth_every=3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=6)
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
    results = run_variants(todo, frames, a.frames, a.warmup)
    floor = results.get(MODELS_ALONE)
    for name, r in results.items():
        s = r["stages_ms"]
        vs = ""
        same_models = replace(todo[name], overlap=False, spin=False) == base
        if floor is not None and name != MODELS_ALONE and same_models:  # wall beyond the models alone, and its share
            extra = r["over_models_alone_ms"] = round(r["wall_ms"] - floor["wall_ms"], 2)
            vs = f"  vs models alone {extra:+5.1f} ({100 * extra / r['wall_ms']:+4.0f}%)"
        print(f"{name:30s} wall {r['wall_ms']:6.1f} ms ({r['fps']:5.1f} fps)  cpu {r['cpu_ms']:6.1f}  "
              f"work {r['total_ms']:6.1f}  "
              f"models {r['models_ms']:6.1f}  overhead {r['overhead_ms']:5.1f} ({r['overhead_pct']:4.1f}%){vs}  "
              f"refined {r['refined']:.2f}  | " + " ".join(f"{k} {v:.1f}" for k, v in s.items()), flush=True)
    if a.json:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
                "cpus": os.cpu_count(), "size": [w, h], "frames": a.frames,
                "config": asdict(base), "results": results}
        Path(a.json).write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
