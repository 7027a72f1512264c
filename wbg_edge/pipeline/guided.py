"""The guided refine step: the coarse alpha taken towards the frame's resolution by a guided filter (He et al.,
"Guided Image Filtering", 2010) with the frame's colours as the guide, instead of a learnt refiner.

Per window of the guide grid the filter fits alpha ~ A . rgb + b (least squares; eps keeps A small where the
colours hardly vary), averages the fits and applies them to the colours of a finer grid: an edge of the coarse
alpha moves onto the image's edge nearby, as finely as the image shows it (hair keeps the image's own soft
transitions). Where the coarse alpha does not change within a window, a region the segmenter is sure of or
equally unsure of, the fit is A = 0, b = alpha: a 0.5 flag stays 0.5 (the filter resolves no doubt the image
does not explain), and it is one smooth function of position over the frame: no patches, no seams, no reach
across the frame border (the box filters reflect there).

Grids (720p with the default refine_res 512): the apply grid 512 x 908 (the refine grid), where the fits are
applied to the frame's colours; the guide grid 128 x 227 (a quarter of it: about the detail a 256-wide segmenter
has), where they are made. The finish upsamples the apply grid to the frame as it does a refined alpha. About
5 ms a frame at 720p on this project's 2-core CPU (the bundle's refiner on the band, a third of the refine grid
in the astronaut pan: 20 ms).

Measured on the package photos (bench/real_people.md) against the refiner, both after the temporal stage: stills
boundary-band error 0.161 vs 0.153 (MediaPipe alone 0.169), flicker on the pans 7.5 vs 11.1 x1e-3 and IoU 0.905
vs 0.868 (the refiner turns half-sure regions solid and back). What it cannot do: colours the image does not
separate (dark hair on a dark background) stay as soft as the segmenter left them, and camera noise in the fine
colours passes into the alpha near edges (in proportion to A: EPS).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .buffers import BackBuffers, Work, scratch

LEVELS = 2       # the guide grid is the apply grid halved LEVELS times (128 x 227 at 720p)
RADIUS = 2       # window radius on the guide grid (5 x 5 cells: a segmenter edge's width)
EPS = 1e-3       # regularisation of A (colour variance, rgb in 0..1): a window whose colours vary by less than
#                  ~3% (8 levels) keeps the mean of the coarse alpha. The fits are applied to the fine colours, whose
#                  camera noise they pass on in proportion to A: 1e-4 gave a lower band error on clean photos (0.157
#                  vs 0.161) but more flicker with noise of 6 levels (9.0 vs 8.1 x1e-3; bench/real_people.md)
INV255 = np.float32(1.0 / 255.0)


def apply_size(refine: tuple[int, int]) -> tuple[int, int]:
    """The apply grid for a refine grid: the refine grid rounded down to a multiple of 2 ** LEVELS (the guide grid
    is made from it by LEVELS exact 2 x 2 means), at least 8 guide px a side."""
    m = 1 << LEVELS
    return max(8 * m, refine[0] // m * m), max(8 * m, refine[1] // m * m)


@dataclass
class Grids:
    """Scratch of one frame in flight: u8 colours at the apply grid, then halved LEVELS times (the last is the
    guide grid), and a float plane at the apply grid."""

    fine: np.ndarray
    halves: list[np.ndarray]
    term: np.ndarray


def grids(b: BackBuffers, key: str, size: tuple[int, int]) -> Grids:
    h, w = size
    return Grids(scratch(b, key + "-fine", (h, w, 3), np.uint8),
                 [scratch(b, f"{key}-half{i}", (h >> i, w >> i, 3), np.uint8) for i in range(1, LEVELS + 1)],
                 scratch(b, key + "-term", (h, w), np.float32))


def coefficients(rgb: np.ndarray, p: np.ndarray, radius: int | None = None, eps: float | None = None):
    """The guided filter's window-averaged coefficients for the guide rgb (h, w, 3) float32 and the input p
    (h, w) float32: the planes A_0, A_1, A_2, b (h, w) with q = A . rgb + b (radius, eps: RADIUS, EPS when None)."""
    radius = RADIUS if radius is None else radius
    eps = EPS if eps is None else eps
    k = (2 * radius + 1, 2 * radius + 1)
    r, g, b_ = cv2.split(rgb)
    # the window means of I (3), p, I_i I_j (6), I_i p (3): plane by plane (cheaper than merging them)
    m = [cv2.boxFilter(x, -1, k) for x in (r, g, b_, p, r * r, r * g, r * b_, g * g, g * b_, b_ * b_, r * p, g * p,
                                           b_ * p)]
    mr, mg, mb, mp = m[:4]
    e = np.float32(eps)
    srr, srg, srb = m[4] - mr * mr + e, m[5] - mr * mg, m[6] - mr * mb
    sgg, sgb, sbb = m[7] - mg * mg + e, m[8] - mg * mb, m[9] - mb * mb + e
    cr, cg, cb = m[10] - mr * mp, m[11] - mg * mp, m[12] - mb * mp
    # A = (Sigma + eps I)^-1 cov, by the adjugate of the symmetric 3 x 3 matrix
    i00, i01, i02 = sgg * sbb - sgb * sgb, srb * sgb - srg * sbb, srg * sgb - srb * sgg
    i11, i12, i22 = srr * sbb - srb * srb, srg * srb - srr * sgb, srr * sgg - srg * srg
    inv_det = 1.0 / (srr * i00 + srg * i01 + srb * i02)
    a0 = (i00 * cr + i01 * cg + i02 * cb) * inv_det
    a1 = (i01 * cr + i11 * cg + i12 * cb) * inv_det
    a2 = (i02 * cr + i12 * cg + i22 * cb) * inv_det
    return [cv2.boxFilter(x, -1, k) for x in (a0, a1, a2, mp - a0 * mr - a1 * mg - a2 * mb)]


def guided(w: Work, out: np.ndarray, key: str) -> None:
    """The guided filter of w.alpha_coarse guided by the frame, into out (float32 at the apply grid, in [0, 1]);
    key names this frame's scratch buffers (frames in flight at once need their own)."""
    if w.bad:
        return
    t0 = time.perf_counter()
    h, wd = out.shape
    g = grids(w.b, key, (h, wd))
    frame = w.slot.frame
    # the frame at the apply grid (bilinear: at most ~1.5x smaller than the frame), then exact 2 x 2 means
    cv2.resize(frame, (wd, h), dst=g.fine, interpolation=cv2.INTER_LINEAR)
    src = g.fine
    for half in g.halves:
        cv2.resize(src, half.shape[1::-1], dst=half, interpolation=cv2.INTER_AREA)
        src = half
    p = cv2.resize(w.alpha_coarse, src.shape[1::-1], interpolation=cv2.INTER_AREA)
    planes = coefficients(src.astype(np.float32) * INV255, p)
    # q = A . rgb + b on the apply grid, plane by plane (the coefficients upsampled bilinearly; A / 255 on the
    # small grid: the fine colours stay u8, 0..255)
    cv2.resize(planes[3], (wd, h), dst=out, interpolation=cv2.INTER_LINEAR)
    for c, colour in enumerate(cv2.split(g.fine)):
        cv2.resize(planes[c] * INV255, (wd, h), dst=g.term, interpolation=cv2.INTER_LINEAR)
        cv2.multiply(g.term, colour, dst=g.term, dtype=cv2.CV_32F)
        cv2.add(out, g.term, dst=out)
    np.clip(out, 0.0, 1.0, out=out)
    w.tm["guided"] = (time.perf_counter() - t0) * 1e3
