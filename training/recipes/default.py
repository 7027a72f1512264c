"""The default recipe: depth, matting, refiner-wild, refiner-synthetic on generated scenes (plus
any dataset folders given), within a bounded CPU budget.

    python -m training.recipes.default [--quick] [--out training/checkpoints/default] [--data DIR ...]
    python -m export.recipe default [same flags] [--bundle DIR]   # the same, then the ONNX bundle and its metrics

Same seed, same bytes: every sample is a pure function of (seed, index) and the loop is
deterministic on a given machine and thread count. The default run is the shipped checkpoints (about
75 minutes on 2 CPU cores, a progress bar per stage and loss curves as PNG beside the checkpoints);
--scale multiplies every stage's steps; --quick (under a minute) exists for tests. Checkpoints: OUT/<kind>.safetensors +
.json (the refiner after stage 2 is kept in OUT/refiner-wild/ for the stage 2 vs 3 comparison);
optimizer states are removed at the end so the folder stays small enough to commit. Training never
imports export: the bundle is the exporter's step (export/recipe.py).
"""
from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from ..train import TrainConfig, TrainError, train


@dataclass(frozen=True)
class RecipeConfig:
    out: str = "training/checkpoints/default"
    data: tuple[str, ...] = ()     # dataset folders added to the generator
    seed: int = 0
    depth_steps: int = 1500
    matting_steps: int = 4800
    wild_steps: int = 100
    synthetic_steps: int = 1500
    batch_size: int = 8
    model_crop: int = 256          # depth and matting: the runtime's model resolution (short side)
    crop: int = 160                # refiner stages: crops at the refine resolution
    scale: float = 1.0             # multiplies every stage's steps (longer runs, better models)
    progress: bool = True
    start: str | None = None       # train from this stage on (the earlier ones' checkpoints are in out)


QUICK = dict(depth_steps=6, matting_steps=10, wild_steps=4, synthetic_steps=8, batch_size=2, model_crop=64, crop=64)


def stages(cfg: RecipeConfig) -> list[TrainConfig]:
    base = TrainConfig(data=("synthetic", *cfg.data), out=cfg.out, seed=cfg.seed, batch_size=cfg.batch_size,
                       crop=cfg.crop, progress=cfg.progress, save_every=100, log_every=10)
    def n(steps: int) -> int:
        return max(1, round(steps * cfg.scale))

    # matting and refiner learn on the depth the runtime feeds them (our DepthNet at half the model
    # resolution, with its errors), made worse now and then (noise, gamma) or dropped, so a poor depth
    # degrades the matte instead of erasing the subject
    runtime_depth = dict(depth_source="model", p_depth_noise=0.4)
    return [replace(base, stage="depth", steps=n(cfg.depth_steps), lr=3e-3, crop=cfg.model_crop),
            replace(base, stage="matting", steps=n(cfg.matting_steps), lr=3e-3, crop=cfg.model_crop,
                    depth_dropout=0.3, **runtime_depth),
            replace(base, stage="refiner-wild", steps=n(cfg.wild_steps), lr=1e-3, depth_dropout=0.2, **runtime_depth),
            # stage 3 beats stage 2 inside glasses because depth sees partly through them (the generator's
            # veil_depth); with glasses as solid as the subject it does not (bench/quality.md, near-veils)
            replace(base, stage="refiner-synthetic", steps=n(cfg.synthetic_steps), lr=3e-3, depth_dropout=0.2,
                    coarse_source="mixed", p_degraded=0.4, **runtime_depth)]


def run(cfg: RecipeConfig, log=lambda _msg: None) -> Path:
    """Train the stages into cfg.out; from the stage cfg.start on, when given (the checkpoints of the stages before
    it must be in cfg.out: a run stopped there, or one whose later stages are being changed)."""
    out = Path(cfg.out)
    todo = stages(cfg)
    names = [tc.stage for tc in todo]
    if cfg.start is not None and cfg.start not in names:
        raise TrainError(f"--from {cfg.start}: expected one of {', '.join(names)}")
    for tc in todo[names.index(cfg.start) if cfg.start else 0:]:
        log(f"stage {tc.stage}: {tc.steps} steps of {tc.batch_size} x {tc.crop}^2")
        train(tc)
        if tc.stage == "refiner-wild":  # keep stage 2 beside stage 3 for the semi-transparent comparison
            keep = out / "refiner-wild"
            keep.mkdir(parents=True, exist_ok=True)
            for suffix in (".safetensors", ".json"):
                shutil.copyfile(out / f"refiner{suffix}", keep / f"refiner{suffix}")
    for state in out.glob("*.state.pt"):
        state.unlink()
    return out


def parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The recipe's flags (export/recipe.py adds its own to them)."""
    p = argparse.ArgumentParser(prog="python -m training.recipes.default", description=__doc__.split("\n")[0],
                                add_help=add_help)
    d = RecipeConfig()
    p.add_argument("--quick", action="store_true", help="a ~1 minute run (tests): tiny crops, few steps")
    p.add_argument("--out", default=d.out)
    p.add_argument("--data", nargs="*", default=[], help="dataset folders to add to the generator")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--scale", type=float, default=d.scale, help="multiply every stage's steps (e.g. 6 for a 1 h run)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--from", dest="start", default=None, metavar="STAGE",
                   help="train from this stage on (depth, matting, refiner-wild, refiner-synthetic); the "
                        "earlier stages' checkpoints must be in --out")
    return p


def config(a: argparse.Namespace, _p: argparse.ArgumentParser | None = None) -> RecipeConfig:
    return RecipeConfig(out=a.out, data=tuple(a.data), seed=a.seed, scale=a.scale, progress=a.progress,
                        start=a.start, **(QUICK if a.quick else {}))


def main(argv: list[str] | None = None) -> int:
    p = parser()
    cfg = config(p.parse_args(argv), p)
    from ..checkpoint import CheckpointError
    from ..data.folders import DatasetError

    try:
        run(cfg, log=print)
    except (TrainError, CheckpointError, DatasetError) as e:
        print(f"error: {e}")
        return 2
    print(f"checkpoints in {cfg.out}; the bundle: python -m export.recipe default --export-only --out {cfg.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
