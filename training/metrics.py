"""Matting metrics as in the literature (Rhemann et al. 2009; Xu et al. 2017), numpy only.

All take (H,W) float alphas in [0,1] and an optional bool `mask` (the region evaluated: whole
image, or the boundary band of a trimap). Reported units follow the papers:
SAD / 1000, MSE x 1000, gradient / 1000, connectivity / 1000.
"""
from __future__ import annotations

import cv2
import numpy as np


def _mask(gt: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.ones(gt.shape, bool) if mask is None else mask.astype(bool)


def sad(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Sum of absolute differences over the region, / 1000."""
    return float(np.abs(pred - gt)[_mask(gt, mask)].sum() / 1000.0)


def mse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over the region, x 1000 (0 for an empty region)."""
    m = _mask(gt, mask)
    return float(((pred - gt) ** 2)[m].mean() * 1000.0) if m.any() else 0.0


def _grad_mag(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:  # plain central differences (np.gradient), handy for hand-checked values
        gy, gx = np.gradient(a.astype(np.float64))
    else:  # first-order Gaussian derivative filters, as in the benchmark's code
        r = int(np.ceil(3 * sigma))
        x = np.arange(-r, r + 1, dtype=np.float64)
        g = np.exp(-x**2 / (2 * sigma**2))
        g /= g.sum()
        dg = -x / sigma**2 * g
        dg /= np.abs((x * dg).sum())  # unit response to a unit ramp
        a64 = a.astype(np.float64)
        gx = cv2.sepFilter2D(a64, cv2.CV_64F, dg, g, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.sepFilter2D(a64, cv2.CV_64F, g, dg, borderType=cv2.BORDER_REPLICATE)
    return np.hypot(gx, gy)


def gradient_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, sigma: float = 1.4) -> float:
    """Sum over the region of (|grad pred| - |grad gt|)^2, / 1000."""
    d = (_grad_mag(pred, sigma) - _grad_mag(gt, sigma)) ** 2
    return float(d[_mask(gt, mask)].sum() / 1000.0)


def _largest_component(b: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(b.astype(np.uint8), connectivity=4)
    if n <= 1:
        return np.zeros(b.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def connectivity_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                       step: float = 0.1) -> float:
    """Connectivity error / 1000: pixels whose alpha is disconnected from the main body of
    both mattes are penalised by how far above the connecting level they are."""
    steps = np.arange(0, 1 + step / 2, step)
    level = np.full(gt.shape, -1.0)
    for i in range(1, len(steps)):
        omega = _largest_component((pred >= steps[i]) & (gt >= steps[i]))
        drop = (level == -1) & ~omega
        level[drop] = steps[i - 1]
    level[level == -1] = 1.0
    dp, dg = pred - level, gt - level
    phi_p = 1 - dp * (dp >= 0.15)
    phi_g = 1 - dg * (dg >= 0.15)
    return float(np.abs(phi_p - phi_g)[_mask(gt, mask)].sum() / 1000.0)


def boundary_band(gt: np.ndarray, radius: int = 8) -> np.ndarray:
    """Unknown region of a trimap: the alpha edge (fractional alpha or a 0.5 crossing) dilated
    by `radius` pixels."""
    hard = (gt > 0.5).astype(np.uint8)
    edge = ((gt > 0.01) & (gt < 0.99)) | (hard != cv2.erode(hard, np.ones((3, 3), np.uint8)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(edge.astype(np.uint8), k).astype(bool)


def contour_band(mask: np.ndarray, band_px: int = 12) -> np.ndarray:
    """The 0.5 contour of a (coarse) mask dilated by `band_px`: where a refiner may move the edge."""
    edge = cv2.Canny(((mask > 0.5) * 255).astype(np.uint8), 1, 1) > 0
    return cv2.dilate(edge.astype(np.uint8), np.ones((2 * band_px + 1,) * 2, np.uint8)) > 0


def _band_gradients(alpha: np.ndarray, gray: np.ndarray, band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|grad alpha|, |grad image|) inside `band` (Sobel, float32)."""
    def grad(x):
        x = x.astype(np.float32)
        return np.hypot(cv2.Sobel(x, cv2.CV_32F, 1, 0), cv2.Sobel(x, cv2.CV_32F, 0, 1))[band]

    return grad(alpha), grad(gray)


def edge_agreement(alpha: np.ndarray, gray: np.ndarray, band: np.ndarray) -> float:
    """How well a matte's edges follow the image's: Pearson correlation of |grad alpha| and |grad gray|
    inside `band` (NaN when the band is empty). Images without ground truth (real photos) need this."""
    if not band.any():
        return float("nan")
    ga, gi = _band_gradients(alpha, gray, band)
    return float(np.corrcoef(ga, gi)[0, 1])


def edge_contrast(alpha: np.ndarray, gray: np.ndarray, band: np.ndarray) -> float:
    """The image's mean |grad| weighted by |grad alpha|, over its plain mean in `band`: how much stronger
    than average the image's edges are where the matte changes (1 = no relation). Unlike the correlation
    it does not ask the matte to change at every image edge (texture inside the subject has edges too)."""
    ga, gi = _band_gradients(alpha, gray, band)
    return float((ga * gi).sum() / max(ga.sum(), 1e-12) / max(gi.mean(), 1e-12))


METRICS = {"sad": sad, "mse": mse, "grad": gradient_error, "conn": connectivity_error}


def all_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    return {name: f(pred, gt, mask) for name, f in METRICS.items()}
