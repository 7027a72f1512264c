"""Contact sheet of the default models on held-out generated scenes, one column per stage:

    image | GT | coarse (matting + depth) | coarse, no depth | stage 2 (refiner-wild) | stage 3 (shipped) | |error|

    python bench/quality_sheet.py [--checkpoint training/checkpoints/default] [--out bench/quality_contact.png]

Rows: the first held-out scenes (seed 1000, as `python -m training.evaluate`) with a veil, a low-contrast
subject, hair strands, and one plain scene; evaluated at 256x256 (matting at 128x128) like the tables of
bench/quality.md, shown at --cell pixels per image. The |error| column is the shipped (stage 3) matte's,
scaled x4 so small errors show.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import checkpoint  # noqa: E402
from training.data.synthetic import SceneConfig, make_scene  # noqa: E402
from training.models import refine  # noqa: E402
from training.train import coarse_from_model, normalise_depth  # noqa: E402

COLUMNS = ("image", "ground truth", "coarse", "coarse, no depth", "stage 2", "stage 3", "|error| x4")


def pick(seed: int, size: int, limit: int = 200) -> list[tuple[str, dict]]:
    """(label, scene) for the first veil, low-contrast, hair and plain scene of the held-out stream."""
    want = {"veil": lambda f: f["semi_transparent"], "low contrast": lambda f: f["low_contrast"],
            "hair": lambda f: f["hair"] and not f["semi_transparent"] and not f["low_contrast"],
            "plain": lambda f: not any(f.values())}
    rows: dict[str, dict] = {}
    for i in range(limit):
        s = make_scene(seed, i, SceneConfig(size=size))
        for label, ok in want.items():
            if label not in rows and ok(s["flags"]):
                rows[label] = {**s, "index": i}
        if len(rows) == len(want):
            break
    return [(label, rows[label]) for label in want if label in rows]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1) if a.ndim == 3 else a[None]))[None].float()


def sheet(ckpt: Path, seed: int = 1000, size: int = 256, cell: int = 112) -> np.ndarray:
    matting = checkpoint.frozen(checkpoint.load(ckpt, "matting")[0])
    stage3 = checkpoint.frozen(checkpoint.load(ckpt, "refiner")[0])
    stage2 = checkpoint.frozen(checkpoint.load(ckpt / "refiner-wild" / "refiner.safetensors", "refiner")[0])
    header = np.full((18, cell * len(COLUMNS), 3), 255, np.uint8)
    for c, name in enumerate(COLUMNS):
        cv2.putText(header, name, (c * cell + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    out = [header]
    for label, s in pick(seed, size):
        x, d = _t(s["image"]), normalise_depth(_t(s["depth"]))
        with torch.no_grad():
            coarse = coarse_from_model(matting, x, d)
            no_depth = coarse_from_model(matting, x, torch.zeros_like(d))
            r2 = refine(coarse, stage2(torch.cat([x, d, coarse], 1)))
            r3 = refine(coarse, stage3(torch.cat([x, d, coarse], 1)))
        cells = [s["image"], s["alpha"], *(t[0, 0].numpy() for t in (coarse, no_depth, r2, r3)),
                 np.clip(4 * np.abs(r3[0, 0].numpy() - s["alpha"]), 0, 1)]
        row = np.concatenate([cv2.resize(np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a, (cell, cell),
                                         interpolation=cv2.INTER_AREA) for a in cells], axis=1)
        row = (np.clip(row, 0, 1) * 255).round().astype(np.uint8)
        cv2.putText(row, f"{label} (scene {s['index']})", (4, cell - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (255, 255, 0), 1, cv2.LINE_AA)
        out.append(row)
    return np.concatenate(out, axis=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="training/checkpoints/default")
    p.add_argument("--out", default="bench/quality_contact.png")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--cell", type=int, default=112)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    img = sheet(Path(a.checkpoint), a.seed, cell=a.cell)
    cv2.imwrite(a.out, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {a.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
