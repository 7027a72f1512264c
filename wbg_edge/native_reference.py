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

Foreground colours (refine_finish with `foreground`, modes "rgba" and "composite"): at soft pixels (quantised alpha
neither 0 nor 255) the frame's colour, a mix of subject and old background, is replaced by an estimate of the
subject's colour F, solved from I = a F + (1 - a) B with a local background B estimated from the pixels the coarse
matte calls background (`background_grid`, `fg_colours`). Every other pixel keeps the frame's colour.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
INV255 = F32(1.0) / F32(255.0)
MODES = ("alpha", "rgba", "composite")
FG_CELL = 8            # side, in frame pixels, of a cell of the background-colour grid (the default)
FG_RAMP = F32(4.0)     # a cell's background weight is clamp(1 - FG_RAMP * alpha_coarse, 0, 1) ** 2
FG_GAIN = F32(4.0)     # going up the push-pull pyramid, a cell whose weight is W trusts its own mean by min(1, 4 W)
FG_FLOOR = F32(0.1)    # alpha floor of the foreground solve (below it, F fades back to the frame's colour)
FG_EMPTY = F32(128.0)  # the background colour when no cell of the frame is background


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
           smoothing: float = 0.0, foreground: bool = False,
           fg_cell: int = FG_CELL) -> tuple[np.ndarray, np.ndarray]:
    """Returns (alpha float32 (H, W) in [0, 1], output u8 for `mode`). `foreground` (needs alpha_coarse): "rgba"
    and "composite" use the estimated foreground colours (`fg_colours`) instead of the frame's."""
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
    if foreground and mode in ("rgba", "composite"):
        frame = fg_colours(frame, a, background_grid(frame, alpha_coarse, fg_cell))
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


# ---------------------------------------------------------------------------------------------------------------
# Foreground colours (kernels/refine.cuh: "Foreground colours")

def fg_grid_size(h: int, w: int, cell: int) -> tuple[int, int]:
    """(gh, gw) = (ceil(h / cell), ceil(w / cell)): the background-colour grid of an h x w frame."""
    return -(-h // cell), -(-w // cell)


def fg_levels(gh: int, gw: int) -> list[tuple[int, int]]:
    """The push-pull pyramid's level sizes, the grid first, halving (rounding up) down to 1 x 1."""
    sizes = [(gh, gw)]
    while sizes[-1] != (1, 1):
        h, w = sizes[-1]
        sizes.append((-(-h // 2), -(-w // 2)))
    return sizes


def cell_sums(frame: np.ndarray, gh: int, gw: int) -> tuple[np.ndarray, np.ndarray]:
    """(gh, gw, 3) int64 byte sums and (gh, gw) pixel counts of the cells; cell (i, j) is rows
    [i*h//gh, (i+1)*h//gh) x the same for columns."""
    h, w = frame.shape[:2]
    ry = (np.arange(gh + 1, dtype=np.int64) * h) // gh
    rx = (np.arange(gw + 1, dtype=np.int64) * w) // gw
    s = np.zeros((h + 1, w + 1, 3), np.int64)
    s[1:, 1:] = frame.astype(np.int64).cumsum(0).cumsum(1)
    total = s[ry[1:]][:, rx[1:]] - s[ry[:-1]][:, rx[1:]] - s[ry[1:]][:, rx[:-1]] + s[ry[:-1]][:, rx[:-1]]
    return total, (ry[1:] - ry[:-1])[:, None] * (rx[1:] - rx[:-1])[None, :]


def _down(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """The mean of each 2 x 2 block of children (fewer at an odd edge): ((c00 + c01) + c10) + c11, times 1 / n
    (exact: n is 1, 2 or 4). A missing child is a zero here, which adds exactly nothing (values are >= 0)."""
    hh, ww = -(-h // 2), -(-w // 2)
    p = np.zeros((2 * hh, 2 * ww) + x.shape[2:], F32)
    p[:h, :w] = x
    s = ((p[0::2, 0::2] + p[0::2, 1::2]) + p[1::2, 0::2]) + p[1::2, 1::2]
    ny = np.minimum(2, h - 2 * np.arange(hh))
    nx = np.minimum(2, w - 2 * np.arange(ww))
    inv = (F32(1.0) / (ny[:, None] * nx[None, :]).astype(F32)).astype(F32)
    return (s * (inv[..., None] if x.ndim == 3 else inv)).astype(F32)


def background_grid(frame: np.ndarray, alpha_coarse: np.ndarray, cell: int = FG_CELL) -> np.ndarray:
    """(gh, gw, 3) float32 local background colour (frame channel order, 0..255) of each cell.

    Each cell's weight is t * t with t = clamp(1 - FG_RAMP * a, 0, 1), a = clamp(alpha_coarse sampled at the
    grid's size (bilinear, horizontal first), 0, 1): 1 where the coarse matte says background, 0 from a = 1/4 on.
    Push-pull fills the rest: level 0 holds W = weight, M = sum * (W / count) (the weighted mean colour); each next
    level the means of 2 x 2
    blocks of W and M (`_down`); the 1 x 1 top is M / W (FG_EMPTY when W = 0); then back up, each level's
    B = lerp(U, M / W, min(1, FG_GAIN * W)) where W > 0, else U, with U the coarser B sampled at this level's size
    (bilinear, horizontal first)."""
    gh, gw = fg_grid_size(frame.shape[0], frame.shape[1], cell)
    a = np.clip(resize(alpha_coarse, gh, gw, order="hv"), F32(0.0), F32(1.0))
    t = np.clip(F32(1.0) - a * FG_RAMP, F32(0.0), F32(1.0))
    wt = (t * t).astype(F32)
    total, n = cell_sums(frame, gh, gw)
    ws, ms = [wt], [(total.astype(F32) * (wt / n.astype(F32))[..., None]).astype(F32)]
    sizes = fg_levels(gh, gw)
    for (h, w) in sizes[:-1]:
        ws.append(_down(ws[-1], h, w))
        ms.append(_down(ms[-1], h, w))
    top_w = ws[-1][..., None]
    b = np.where(top_w > 0, ms[-1] / np.where(top_w > 0, top_w, F32(1.0)), FG_EMPTY).astype(F32)
    for lvl in range(len(sizes) - 2, -1, -1):
        h, w = sizes[lvl]
        u, wl = resize(b, h, w, order="hv"), ws[lvl][..., None]
        mean = ms[lvl] / np.where(wl > 0, wl, F32(1.0))
        b = np.where(wl > 0, lerp(u, mean, np.minimum(wl * FG_GAIN, F32(1.0))), u).astype(F32)
    return b


def fg_colours(frame: np.ndarray, a: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(H, W, 3) u8 colours for the outputs: at soft pixels (0 < quantise(a) < 255) the foreground
    F = clamp(I + (I - B) * ((1 - a) / max(a, FG_FLOOR)), 0, 255), rounded half up, with B the grid sampled at the
    frame size (bilinear, horizontal first); elsewhere the frame. Above the floor this is the exact solve of
    I = a F + (1 - a) B; below it, F fades back to I (the frame's colour is the better guess for a pixel that is
    nearly all background)."""
    h, w = frame.shape[:2]
    q = quantise(a)
    soft = (q > 0) & (q < 255)
    b = resize(grid, h, w, order="hv")
    r = ((F32(1.0) - a) / np.maximum(a, FG_FLOOR)).astype(F32)
    i = frame.astype(F32)
    v = np.clip(i + (i - b) * r[..., None], F32(0.0), F32(255.0))
    f = (v + F32(0.5)).astype(np.int32).astype(np.uint8)
    return np.where(soft[..., None], f, frame)
