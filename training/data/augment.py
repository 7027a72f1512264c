"""Synchronized crops and augmentations of a sample dict (see synthetic.py for the keys).

Every function takes an explicit `np.random.Generator`, so a sample's augmentation is a pure
function of its (seed, index) like the scene itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# keys that are images and move together; anything else (flags, names) is carried as is
SPATIAL = ("image", "fg", "bg", "alpha", "depth", "coarse", "semi")
COLOUR = ("image", "fg", "bg")  # jitter is affine per channel, so I = aF + (1-a)B still holds


@dataclass(frozen=True)
class AugmentConfig:
    crop: int = 256
    boundary_fraction: float = 0.7  # share of crops centred on an alpha-boundary pixel
    flip: bool = True
    jitter: float = 0.15            # brightness / contrast / saturation amplitude
    scale: tuple[float, float] = (1.0, 1.5)  # short side resized to crop * U(scale) before cropping


def boundary_pixels(alpha: np.ndarray) -> np.ndarray:
    """(N,2) row/col of pixels on the alpha boundary: fractional alpha or a 0.5-crossing."""
    a = alpha > 0.5
    edge = a ^ cv2.erode(a.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    edge |= (alpha > 0.02) & (alpha < 0.98)
    return np.argwhere(edge)


def crop_window(rng: np.random.Generator, alpha: np.ndarray | None, crop: int, boundary_fraction: float,
                ) -> tuple[int, int]:
    """Top-left (y, x) of a crop x crop window; centred on a boundary pixel with probability
    `boundary_fraction` (when alpha has a boundary), uniform otherwise."""
    h, w = (alpha.shape if alpha is not None else (crop, crop))
    if alpha is not None and rng.random() < boundary_fraction:
        pts = boundary_pixels(alpha)
        if len(pts):
            cy, cx = pts[rng.integers(len(pts))]
            y = int(np.clip(cy - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, h - crop))
            x = int(np.clip(cx - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, w - crop))
            return y, x
    return int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))


def _resize(a: np.ndarray, size: tuple[int, int], key: str) -> np.ndarray:
    interp = cv2.INTER_NEAREST if a.dtype == bool else cv2.INTER_LINEAR
    if a.dtype == bool:
        return cv2.resize(a.astype(np.uint8), size, interpolation=interp).astype(bool)
    return cv2.resize(a, size, interpolation=interp)


def random_crop(rng: np.random.Generator, sample: dict, cfg: AugmentConfig) -> dict:
    """Rescale so the short side is crop * U(scale), then one window for every spatial key."""
    ref = sample["image"]
    h, w = ref.shape[:2]
    short = cfg.crop * rng.uniform(*cfg.scale)
    f = short / min(h, w)
    nh, nw = max(cfg.crop, round(h * f)), max(cfg.crop, round(w * f))
    out = dict(sample)
    if (nh, nw) != (h, w):
        for k in SPATIAL:
            if out.get(k) is not None:
                out[k] = _resize(out[k], (nw, nh), k)
    y, x = crop_window(rng, out.get("alpha"), cfg.crop, cfg.boundary_fraction) if nh >= cfg.crop else (0, 0)
    for k in SPATIAL:
        if out.get(k) is not None:
            out[k] = np.ascontiguousarray(out[k][y:y + cfg.crop, x:x + cfg.crop])
    return out


def flip_and_jitter(rng: np.random.Generator, sample: dict, cfg: AugmentConfig) -> dict:
    out = dict(sample)
    if cfg.flip and rng.random() < 0.5:
        for k in SPATIAL:
            if out.get(k) is not None:
                out[k] = np.ascontiguousarray(out[k][:, ::-1])
    if cfg.jitter > 0:
        gain = 1 + rng.uniform(-cfg.jitter, cfg.jitter)
        bias = rng.uniform(-cfg.jitter, cfg.jitter) * 0.5
        sat = 1 + rng.uniform(-cfg.jitter, cfg.jitter) * 2
        for k in COLOUR:
            if out.get(k) is not None:
                v = out[k]
                grey = v.mean(axis=2, keepdims=True)
                v = grey + sat * (v - grey)
                out[k] = np.clip(gain * v + bias, 0, 1).astype(np.float32)
        # clipping can break I = aF + (1-a)B slightly; recompose where F and B are known
        if out.get("fg") is not None and out.get("bg") is not None and out.get("alpha") is not None:
            a = out["alpha"][..., None]
            out["image"] = (a * out["fg"] + (1 - a) * out["bg"]).astype(np.float32)
    return out


def augment(rng: np.random.Generator, sample: dict, cfg: AugmentConfig) -> dict:
    return flip_and_jitter(rng, random_crop(rng, sample, cfg), cfg)
