"""Pure-numpy reference of the fused refine op (kernels/refine.cuh is the contract; this file mirrors it).

Used as the fallback when the native library is missing and as the twin the native op is tested against.
Every step uses the same float32 operations, in the same order, as `refine.cuh`:

- bilinear sampling with `align_corners=False` pixel centres (cv2 INTER_LINEAR / torch interpolate):
  ``s = max(fma(in / out, i + 0.5, -0.5), 0)`` in float32 (one rounding, as torch), ``i0 = floor(s)``,
  ``i1 = min(i0 + 1, in - 1)``, ``w = s - i0``;
  the value is a lerp of lerps, ``lerp(a, b, w) = a + w * (b - a)``, vertical first for the u8 frame,
  horizontal first for every float plane (`resize(..., order=)`);
- u8 quantisation ``floor(v * 255 + 0.5)`` of a value clamped to [0, 1]; composite in Q15 fixed point,
  ``b + ((f - b) * floor(a * 32767 + 0.5) + 16384) >> 15``.

Patch rule (refine_finish with patches): the refined alpha lives on the virtual refine grid (Hr, Wr) only inside
the patches (a later patch overwrites an earlier one where they overlap). An output pixel uses the refined grid only
when all four of its bilinear taps on that grid are refined cells; otherwise it takes `alpha_coarse` bilinearly
resampled straight to the frame size. With one patch covering the grid this is exactly the full-grid result.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
INV255 = F32(1.0) / F32(255.0)
MODES = ("alpha", "rgba", "composite")


def taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps (i0, i1 int64; w float32) of `n_out` output pixels on an axis of `n_in` input pixels."""
    scale = F32(n_in) / F32(n_out)
    # fma(scale, i + 0.5, -0.5) rounded once to float32, as torch computes it: in float64 the product and the
    # difference are exact for these magnitudes, so the single cast is the fused rounding.
    s = ((np.arange(n_out, dtype=np.float64) + 0.5) * np.float64(scale) - 0.5).astype(F32)
    s = np.maximum(s, F32(0.0))
    i0 = s.astype(np.int64)  # s >= 0, so truncation is floor
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (s - i0.astype(F32)).astype(F32)
    return i0, i1, w


def lerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a + w * (b - a)


def resize(src: np.ndarray, out_h: int, out_w: int, rows: np.ndarray | None = None,
           cols: np.ndarray | None = None, order: str = "vh") -> np.ndarray:
    """Bilinear resample of a (h, w) or (h, w, c) array to (out_h, out_w[, c]) in float32.

    `rows` / `cols` optionally pick output rows / columns of the virtual (out_h, out_w) result (patch gathers);
    `order` "vh" blends vertically first, "hv" horizontally first (refine.cuh: bilerp_vh / bilerp_hv).
    """
    src = np.asarray(src)
    y0, y1, wy = taps(src.shape[0], out_h)
    x0, x1, wx = taps(src.shape[1], out_w)
    if rows is not None:
        y0, y1, wy = y0[rows], y1[rows], wy[rows]
    if cols is not None:
        x0, x1, wx = x0[cols], x1[cols], wx[cols]
    wy = wy.reshape((-1, 1) + (1,) * (src.ndim - 2))
    wx = wx.reshape((1, -1) + (1,) * (src.ndim - 2))
    a00 = src[y0][:, x0].astype(F32)
    a10 = src[y1][:, x0].astype(F32)
    a01 = src[y0][:, x1].astype(F32)
    a11 = src[y1][:, x1].astype(F32)
    if order == "hv":
        return lerp(lerp(a00, a01, wx), lerp(a10, a11, wx), wy).astype(F32)
    return lerp(lerp(a00, a10, wy), lerp(a01, a11, wy), wx).astype(F32)


def pack(frame: np.ndarray, depth: np.ndarray | None, alpha_coarse: np.ndarray, refine_size: tuple[int, int],
         patches: np.ndarray | None = None, patch_size: int = 0) -> np.ndarray:
    """(N, 5, P, P) patches or (1, 5, Hr, Wr) full grid of R, G, B (/255), D, alpha_coarse, float32."""
    hr, wr = refine_size
    if patches is None:
        windows = [(np.arange(hr), np.arange(wr))]
    else:
        windows = [(np.arange(y, y + patch_size), np.arange(x, x + patch_size)) for y, x in np.asarray(patches)]
    out = []
    for rows, cols in windows:
        rgb = resize(frame, hr, wr, rows, cols)[..., ::-1] * INV255
        d = (resize(depth, hr, wr, rows, cols, order="hv") if depth is not None
             else np.zeros((len(rows), len(cols)), F32))
        a = resize(alpha_coarse, hr, wr, rows, cols, order="hv")
        out.append(np.concatenate([rgb.transpose(2, 0, 1), d[None], a[None]], axis=0))
    return np.stack(out).astype(F32)


def frame_planes(frame: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(3, out_h, out_w) R, G, B (/255) float32: the frame sampled as pack samples it."""
    return np.ascontiguousarray((resize(frame, out_h, out_w)[..., ::-1] * INV255).transpose(2, 0, 1)).astype(F32)


def refined_grid(packed: np.ndarray, delta: np.ndarray, refine_size: tuple[int, int],
                 patches: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """clamp(alpha_coarse + delta, 0, 1) on the refine grid, and the mask of refined cells."""
    a = np.clip(packed[:, 4].astype(F32) + delta[:, 0].astype(F32), F32(0.0), F32(1.0))
    if patches is None:
        return a[0], np.ones(a.shape[1:], bool)
    hr, wr = refine_size
    grid = np.zeros((hr, wr), F32)
    mask = np.zeros((hr, wr), bool)
    p = packed.shape[-1]
    for k, (y, x) in enumerate(np.asarray(patches)):
        grid[y:y + p, x:x + p] = a[k]
        mask[y:y + p, x:x + p] = True
    return grid, mask


def quantise(a: np.ndarray) -> np.ndarray:
    return np.floor(a * F32(255.0) + F32(0.5)).astype(np.uint8)


def finish(packed: np.ndarray, delta: np.ndarray, frame: np.ndarray, refine_size: tuple[int, int] | None = None,
           patches: np.ndarray | None = None, alpha_coarse: np.ndarray | None = None, mode: str = "alpha",
           background: np.ndarray | None = None, prev_alpha: np.ndarray | None = None,
           smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (alpha float32 (H, W) in [0, 1], output u8 for `mode`)."""
    h, w = frame.shape[:2]
    if refine_size is None:
        refine_size = packed.shape[-2:]
    grid, mask = refined_grid(packed, delta, refine_size, patches)
    a = resize(grid, h, w, order="hv")
    if patches is not None:
        y0, y1, _ = taps(refine_size[0], h)
        x0, x1, _ = taps(refine_size[1], w)
        ok = mask[y0][:, x0] & mask[y1][:, x0] & mask[y0][:, x1] & mask[y1][:, x1]
        a = np.where(ok, a, resize(alpha_coarse, h, w, order="hv"))
    if prev_alpha is not None:
        a = lerp(a, prev_alpha.astype(F32), F32(smoothing))
    a = np.clip(a, F32(0.0), F32(1.0)).astype(F32)
    if mode == "alpha":
        out = quantise(a)
    elif mode == "rgba":
        out = np.concatenate([frame, quantise(a)[..., None]], axis=2)
    elif mode == "composite":
        bg = np.broadcast_to(np.asarray(background), frame.shape).astype(np.int32)
        a15 = (a * F32(32767.0) + F32(0.5)).astype(np.int32)[..., None]
        out = (bg + (((frame.astype(np.int32) - bg) * a15 + 16384) >> 15)).astype(np.uint8)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return a, out
