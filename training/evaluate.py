"""Evaluate a checkpoint folder on held-out scenes: coarse vs refined, with vs without depth.

    python -m training.evaluate --checkpoint training/checkpoints/default [--data synthetic|DIR ...]
    python -m training.evaluate --bundle wbg_edge/models/default [--style all]   # as run: the headline numbers

The first form runs the checkpoints in torch (a training-time view, true depth in); the second,
training/evaluate_bundle.py, runs an exported bundle through wbg_edge.Pipeline exactly as the runtime
does, and is where the README's and bench/quality.md's headline numbers come from.

Prints SAD (/1000), MSE (x1000), gradient and connectivity errors (/1000), per image averaged,
on the whole image and the boundary band (trimap unknown region), for:

    coarse             matting at model resolution (half the evaluation size), upsampled
    refined            clamp(coarse + refiner delta) at evaluation size
    coarse-no-depth    matting with D = 0 (the runtime's depth-free mode)
    segmenter          ground truth degraded like a person segmenter's mask (seeded)
    segmenter-refined  the refiner applied to that mask
    coarse-depthnet    matting fed by our DepthNet instead of the scene's depth (what the bundle runs)
    refined-stage2     the refiner after refiner-wild (CHECKPOINT/refiner-wild/), when present

plus the low-contrast scenes (with vs without depth) and semi-transparent regions. Writes
results.json and a contact sheet (image, GT, coarse, refined, |error|) into --out.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from . import checkpoint, metrics
from .data.degrade import degrade_alpha
from .data.folders import FolderDataset
from .data.synthetic import HELDOUT_PHOTOS, STYLES, TRAIN_PHOTOS, SceneConfig, make_scene
from .models import refine
from .train import coarse_from_model, normalise_depth


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str = "training/checkpoints/default"
    data: tuple[str, ...] = ("synthetic",)
    n: int = 48                 # generated scenes (folders: all their images)
    size: int = 256             # evaluation (refine) resolution; matting runs at half
    seed: int = 1000            # held out: the recipe trains on seed 0
    heldout_photos: bool = False  # backgrounds from photos the recipe never saw
    style: str = "in-distribution"  # a generator style (synthetic.STYLES); others are unseen in training
    band_radius: int = 8
    out: str | None = None
    sheet_rows: int = 6


def samples(cfg: EvalConfig):
    """(name, image HxWx3, alpha HxW or None, depth HxW or None, flags, semi mask or None)."""
    for src in cfg.data:
        if src == "synthetic":
            if cfg.style not in STYLES:
                raise ValueError(f"--style {cfg.style!r}: expected one of {', '.join(STYLES)}")
            sc = SceneConfig(size=cfg.size, photos=HELDOUT_PHOTOS if cfg.heldout_photos else TRAIN_PHOTOS)
            sc = replace(sc, **STYLES[cfg.style])
            for i in range(cfg.n):
                s = make_scene(cfg.seed, i, sc)
                yield f"scene{i}", s["image"], s["alpha"], s["depth"], s["flags"], s["semi"]
        else:
            ds = FolderDataset(src, cfg.seed)
            for i in range(len(ds)):
                s = ds[i]
                yield (s["name"], _square(s["image"], cfg.size), _square(s.get("alpha"), cfg.size),
                       _square(s.get("depth"), cfg.size), {}, None)


def _square(a: np.ndarray | None, size: int) -> np.ndarray | None:
    """Folder images resized to size x size (the models need sides that are multiples of 64 here)."""
    if a is None or a.shape[:2] == (size, size):
        return a
    return cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1) if a.ndim == 3 else a[None]))[None].float()


def evaluate(cfg: EvalConfig) -> dict:
    ckpt = Path(cfg.checkpoint)
    matting = checkpoint.frozen(checkpoint.load(ckpt, "matting")[0])
    refiner = checkpoint.frozen(checkpoint.load(ckpt, "refiner")[0])
    depth_net = checkpoint.frozen(checkpoint.load(ckpt, "depth")[0]) if (ckpt / "depth.safetensors").is_file() else None
    stage2 = ckpt / "refiner-wild" / "refiner.safetensors"
    refiner2 = checkpoint.frozen(checkpoint.load(stage2, "refiner")[0]) if stage2.is_file() else None
    rows: dict[tuple[str, str], list[dict]] = {}
    sheet = []

    def add(region: str, variant: str, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> None:
        if mask is not None and not mask.any():
            return
        rows.setdefault((region, variant), []).append(metrics.all_metrics(pred, gt, mask))

    for i, (_name, image, alpha, depth, flags, semi) in enumerate(samples(cfg)):
        if alpha is None:
            continue
        x = _t(image)
        with torch.no_grad():
            d = normalise_depth(_t(depth)) if depth is not None else (
                normalise_depth(depth_net(x)) if depth_net is not None else torch.zeros_like(x[:, :1]))
            coarse = coarse_from_model(matting, x, d)
            refined = refine(coarse, refiner(torch.cat([x, d, coarse], 1)))
            coarse_nd = coarse_from_model(matting, x, torch.zeros_like(d))
            seg = torch.from_numpy(degrade_alpha(np.random.default_rng([cfg.seed, i, 5]), alpha))[None, None]
            seg_refined = refine(seg, refiner(torch.cat([x, d, seg], 1)))
            extra = {}
            if depth_net is not None:
                d_net = normalise_depth(torch.nn.functional.interpolate(
                    depth_net(torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear",
                                                              antialias=True)),
                    size=x.shape[-2:], mode="bilinear", align_corners=False))  # depth at half model res
                extra["coarse_dn"] = coarse_from_model(matting, x, d_net)
            if refiner2 is not None:
                extra["refined2"] = refine(coarse, refiner2(torch.cat([x, d, coarse], 1)))
        out = {k: v[0, 0].numpy() for k, v in dict(coarse=coarse, refined=refined, coarse_nd=coarse_nd, seg=seg,
                                                    seg_refined=seg_refined, **extra).items()}
        band = metrics.boundary_band(alpha, cfg.band_radius)
        for region, mask in (("whole", None), ("band", band)):
            add(region, "coarse", out["coarse"], alpha, mask)
            add(region, "refined", out["refined"], alpha, mask)
            add(region, "coarse-no-depth", out["coarse_nd"], alpha, mask)
            add(region, "segmenter", out["seg"], alpha, mask)
            add(region, "segmenter-refined", out["seg_refined"], alpha, mask)
            if "coarse_dn" in out:
                add(region, "coarse-depthnet", out["coarse_dn"], alpha, mask)
            if "refined2" in out:
                add(region, "refined-stage2", out["refined2"], alpha, mask)
        if flags.get("low_contrast"):
            add("low-contrast", "coarse", out["coarse"], alpha, None)
            add("low-contrast", "coarse-no-depth", out["coarse_nd"], alpha, None)
            add("low-contrast", "refined", out["refined"], alpha, None)
            if "coarse_dn" in out:
                add("low-contrast", "coarse-depthnet", out["coarse_dn"], alpha, None)
        if semi is not None and semi.any():
            add("semi-transparent", "coarse", out["coarse"], alpha, semi)
            add("semi-transparent", "refined", out["refined"], alpha, semi)
            if "refined2" in out:
                add("semi-transparent", "refined-stage2", out["refined2"], alpha, semi)
        if len(sheet) < cfg.sheet_rows:
            sheet.append([image, alpha, out["coarse"], out["refined"], np.abs(out["refined"] - alpha)])
    table = [{"region": r, "variant": v, "n": len(ms), **{k: float(np.mean([m[k] for m in ms])) for k in ms[0]}}
             for (r, v), ms in rows.items()]
    result = {"config": {**asdict(cfg), "data": list(cfg.data)}, "table": table}
    if cfg.out:
        out_dir = Path(cfg.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        if sheet:
            write_contact_sheet(sheet, out_dir / "contact_sheet.png")
    return result


def write_contact_sheet(rows: list[list[np.ndarray]], path: Path) -> None:
    """Rows of (image, GT, coarse, refined, |error|), 8-bit PNG."""
    def rgb(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a

    grid = np.concatenate([np.concatenate([rgb(a) for a in r], axis=1) for r in rows], axis=0)
    cv2.imwrite(str(path), cv2.cvtColor((np.clip(grid, 0, 1) * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))


def format_table(table: list[dict]) -> str:
    lines = [f"| {'region':16s} | {'variant':17s} | {'n':>3s} | {'SAD':>7s} | {'MSE':>7s} | {'Grad':>7s} | "
             f"{'Conn':>7s} |", "|" + "|".join("-" * w for w in (18, 19, 5, 9, 9, 9, 9)) + "|"]
    for r in table:
        lines.append(f"| {r['region']:16s} | {r['variant']:17s} | {r['n']:3d} | {r['sad']:7.3f} | {r['mse']:7.3f} | "
                     f"{r['grad']:7.3f} | {r['conn']:7.3f} |")
    return "\n".join(lines)


def robustness(cfg: EvalConfig) -> list[dict]:
    """The held-out set in every generator style (synthetic.STYLES): one row per style with the
    refined matte's errors and their change against the in-distribution style (same seeds)."""
    rows = []
    for style in STYLES:
        t = {(r["region"], r["variant"]): r for r in evaluate(replace(cfg, style=style, out=None))["table"]}
        rows.append({"style": style, "n": t[("band", "refined")]["n"],
                     "band_sad_coarse": t[("band", "coarse")]["sad"], "band_sad_refined": t[("band", "refined")]["sad"],
                     "band_grad_refined": t[("band", "refined")]["grad"],
                     "whole_sad_refined": t[("whole", "refined")]["sad"],
                     "whole_sad_segmenter_refined": t[("whole", "segmenter-refined")]["sad"]})
    base = rows[0]
    for r in rows:
        r["whole_sad_change"] = r["whole_sad_refined"] / base["whole_sad_refined"] - 1
        r["band_sad_change"] = r["band_sad_refined"] / base["band_sad_refined"] - 1
    return rows


def format_robustness(rows: list[dict]) -> str:
    lines = ["| style | n | band SAD coarse | band SAD refined | band grad refined | whole SAD refined | change "
             "vs in-distribution (whole / band) | whole SAD segmenter-refined |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['style']} | {r['n']} | {r['band_sad_coarse']:.3f} | {r['band_sad_refined']:.3f} | "
                     f"{r['band_grad_refined']:.3f} | {r['whole_sad_refined']:.3f} | {r['whole_sad_change']:+.0%} / "
                     f"{r['band_sad_change']:+.0%} | {r['whole_sad_segmenter_refined']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = EvalConfig()
    p.add_argument("--checkpoint", default=d.checkpoint, help="folder with matting/refiner(/depth) checkpoints")
    p.add_argument("--data", nargs="+", default=list(d.data), help="'synthetic' and/or folders with alpha/")
    p.add_argument("--n", type=int, default=d.n, help="number of generated scenes")
    p.add_argument("--size", type=int, default=d.size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--heldout-photos", action="store_true", help="photographic backgrounds unseen in training")
    p.add_argument("--style", default=d.style, choices=[*STYLES, "all"],
                   help="generator style of the held-out scenes; 'all': a robustness table over every style")
    p.add_argument("--band-radius", type=int, default=d.band_radius)
    p.add_argument("--out", default=None, help="folder for results.json and contact_sheet.png")
    p.add_argument("--sheet-rows", type=int, default=d.sheet_rows)
    g = p.add_argument_group("as run", "--bundle DIR: the bundle through wbg_edge.Pipeline itself "
                                       "(training/evaluate_bundle.py); of the flags above only --n, --seed, --out "
                                       "and --style apply")
    g.add_argument("--bundle", default=None, help="an exported bundle folder to run as the runtime runs it")
    g.add_argument("--stage2", default=None, help="the stage-2 refiner as ONNX (the recipe writes "
                                                  "CHECKPOINT/refiner-wild/refiner.onnx) for the stage 3 vs 2 row")
    g.add_argument("--frame-size", type=int, default=512, help="side of the held-out frames (as run)")
    a = vars(p.parse_args(argv))
    bundle, stage2, frame_size = a.pop("bundle"), a.pop("stage2"), a.pop("frame_size")
    if bundle is not None:
        return _main_bundle(bundle, stage2, frame_size, a)
    a["data"] = tuple(a["data"])
    cfg = EvalConfig(**a)
    from .data.folders import DatasetError

    try:
        if cfg.style == "all":
            rows = robustness(replace(cfg, style="in-distribution"))
            print(format_robustness(rows))
            if cfg.out:
                Path(cfg.out).mkdir(parents=True, exist_ok=True)
                (Path(cfg.out) / "robustness.json").write_text(json.dumps(rows, indent=2) + "\n")
            return 0
        result = evaluate(cfg)
    except (checkpoint.CheckpointError, DatasetError) as e:
        print(f"error: {e}")
        return 2
    print(format_table(result["table"]))
    if cfg.out:
        print(f"wrote {Path(cfg.out) / 'results.json'}")
    return 0


def _main_bundle(bundle: str, stage2: str | None, size: int, a: dict) -> int:
    from .evaluate_bundle import AS_RUN_STYLES, BundleEvalConfig, evaluate_bundle, format_result

    if not (Path(bundle) / "manifest.json").is_file():
        print(f"error: {bundle}: not a bundle folder (expected manifest.json and ONNX files)")
        return 2
    if stage2 is not None and not Path(stage2).is_file():
        print(f"error: --stage2 {stage2}: no such file (expected the stage-2 refiner as ONNX)")
        return 2
    styles = AS_RUN_STYLES if a["style"] == "all" else (a["style"],)
    cfg = BundleEvalConfig(bundle=bundle, stage2=stage2, n=a["n"], size=size, seed=a["seed"], styles=styles,
                           out=a["out"])
    print(format_result(evaluate_bundle(cfg)))
    if cfg.out:
        print(f"wrote {Path(cfg.out) / 'as_run.json'} and {Path(cfg.out) / 'as_run_contact.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
