"""Ground-truth alpha degraded the way a person segmenter errs, as a coarse input for the refiner.

A segmenter (e.g. MediaPipe selfie segmentation at 256x256) outputs a nearly binary mask at low
resolution, upsampled: edges are blocky or blurred, shifted by a few pixels (eroded or dilated,
unevenly), fine structures (hair, veils) are lost or filled solid, and it leaves holes and
spurious blobs. The refiner trained on these learns to turn such a mask into a matte.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DegradeConfig:
    low_res: tuple[int, int] = (32, 128)  # the mask is made at a square side drawn from this range
    max_shift: int = 4                    # erosion / dilation radius in pixels at full resolution
    max_offset: int = 2                   # global translation in pixels
    p_holes: float = 0.3
    max_blur: float = 2.5                 # Gaussian sigma of the upsampled mask


def degrade_alpha(rng: np.random.Generator, alpha: np.ndarray, cfg: DegradeConfig = DegradeConfig()) -> np.ndarray:
    """(H,W) float alpha in [0,1] -> segmenter-like coarse alpha (H,W) float32 in [0,1]."""
    h, w = alpha.shape
    thr = rng.uniform(0.3, 0.7)
    m = (alpha > thr).astype(np.uint8)
    r = int(rng.integers(-cfg.max_shift, cfg.max_shift + 1))
    if r:  # uneven shift: erode or dilate, then keep it only in a random smooth region
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
        moved = cv2.dilate(m, k) if r > 0 else cv2.erode(m, k)
        region = cv2.resize(rng.random((4, 4), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC) > 0.4
        m = np.where(region, moved, m).astype(np.uint8)
    if rng.random() < cfg.p_holes:  # holes inside and blobs outside
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            rad = int(rng.integers(2, max(3, min(h, w) // 16)))
            cv2.circle(m, (cx, cy), rad, int(rng.integers(2)), -1)
    dy, dx = rng.integers(-cfg.max_offset, cfg.max_offset + 1, 2)
    m = np.roll(m, (int(dy), int(dx)), axis=(0, 1))
    side = int(rng.integers(cfg.low_res[0], cfg.low_res[1] + 1))
    small = cv2.resize(m.astype(np.float32), (side, max(1, round(side * h / w))), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:  # segmenters are confident: push the low-res mask towards 0/1
        small = np.clip((small - 0.5) * rng.uniform(2, 6) + 0.5, 0, 1)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = rng.uniform(0, cfg.max_blur)
    if sigma > 0.3:
        up = cv2.GaussianBlur(up, (0, 0), sigma)
    return np.clip(up, 0, 1).astype(np.float32)
