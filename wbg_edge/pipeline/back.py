"""Back stages, model inputs -> Matte: `coarse`, `band`, `pack`, `refine`, `finish` (with the NaN / Inf
pass-through), and where each frame's refiner rows are (`own_rows` for one frame, `stacked_rows` for N).

Plain functions over explicit inputs: a Work per frame (its buffers and what the stages made of it), the
models, the config, and the StreamState where a stage reads or changes what frames inherit (`finish`:
the previous alpha for smoothing and pass-through, the non-finite frame count). The model stages take
N frames at once (one frame is N = 1); the others run per frame.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .. import native
from ..compose import compose
from ..settings import PipelineConfig
from .buffers import BackBuffers, Work, scratch
from .matte import Matte
from .models import Model
from .state import StreamState


def alpha2d(coarse: np.ndarray) -> np.ndarray:
    """The (H, W) alpha of one frame's coarse output, NCHW (1, 1, H, W) or NHWC (1, H, W, 1)."""
    hw = [d for d in coarse.shape if d != 1]
    return coarse.reshape(hw) if len(hw) == 2 else coarse.reshape(coarse.shape[-2:])


def coarse(works: list[Work], x: np.ndarray, model: Model) -> None:
    """The coarse model on N prepared frames of one size (x: their inputs, (N, ...)); each Work gets its
    alpha_coarse, and is marked bad on NaN / Inf. One frame writes into its slot's own output buffer (its
    finish may still read it while the next frame's coarse model runs, overlapped) and is skipped when
    already bad; N frames go in one call (or chunks the model accepts)."""
    n = len(works)
    t0 = time.perf_counter()
    if n == 1:
        slot = works[0].slot
        if works[0].bad:
            return
        if slot.coarse_out is not None and slot.coarse_out_for == x.shape:
            out = model(x, out=slot.coarse_out)
        else:
            out = slot.coarse_out = model(x).copy()
            slot.coarse_out_for = x.shape
    else:
        out = model.chunks(x)
    share = (time.perf_counter() - t0) * 1e3 / n  # a batched call is shared out evenly
    for i, w in enumerate(works):
        w.tm["coarse"] = share
        if not w.bad:
            w.alpha_coarse = alpha2d(out[i:i + 1])
            w.bad = not np.isfinite(w.alpha_coarse.sum())


def band(w: Work, cfg: PipelineConfig, context: int) -> None:
    """The boundary band's patch origins on the refine grid (w.patches), the (P + 2c)^2 windows the refiner
    sees (w.windows: shifted inside the grid at its borders) and the refined share; or the full grid
    (patches None, refined 1.0) when patches are off, the band is too wide or holds more patches than one
    refiner call takes."""
    if w.bad:
        return
    t0 = time.perf_counter()
    b = w.b
    w.patches, w.windows, w.refined = None, None, 1.0
    selector = b.refine[w.buffers].band
    if selector is not None:
        hr, wr = b.geom.refine
        p, c = cfg.patch_size, context
        q = p + 2 * c
        patches = selector.select(w.alpha_coarse)
        n = len(patches)
        if n == 0:  # nothing uncertain: one patch keeps the data path uniform
            patches = selector.origins[:1]
            n = 1
        if n * q * q <= cfg.full_grid_above * hr * wr and n <= b.max_batch:
            windows = patches
            if c:
                windows = np.empty_like(patches)
                np.clip(patches[:, 0] - c, 0, hr - q, out=windows[:, 0])
                np.clip(patches[:, 1] - c, 0, wr - q, out=windows[:, 1])
            w.patches, w.windows, w.refined = patches, windows, n * p * p / (hr * wr)
    w.tm["band"] = (time.perf_counter() - t0) * 1e3


def own_rows(w: Work) -> list[tuple[np.ndarray, np.ndarray]]:
    """One frame's refiner input and output in its own refine set: the windows, or the full grid."""
    if not w.bad:
        n = len(w.patches) if w.patches is not None else 0
        r = w.b.refine[w.buffers]
        w.packed, w.delta = (r.pack_patches[:n], r.delta_patches[:n]) if n else (r.pack_full, r.delta_full)
    return [(w.packed, w.delta)]


def stacked_rows(works: list[Work], b: BackBuffers, q: int, refiner: Model) -> list[tuple[np.ndarray, np.ndarray]]:
    """N frames of one size: the windows of all of them stacked for one refiner call, the frames refined on
    the full grid stacked for another; each Work gets its rows (q: the window side, P + 2 * context)."""
    n_win = n_full = 0
    for w in works:
        if not w.bad:
            if w.windows is None:
                n_full += 1
            else:
                n_win += len(w.windows)
    dt_in, dt_out = refiner.in_dtype, refiner.out_dtype
    win_in = scratch(b, "win_in", (n_win, 5, q, q), dt_in)
    win_out = scratch(b, "win_out", (n_win, 1, q, q), dt_out)
    full_in = scratch(b, "full_in", (n_full, *b.refine[0].pack_full.shape[1:]), dt_in)
    full_out = scratch(b, "full_out", (n_full, *b.refine[0].delta_full.shape[1:]), dt_out)
    r_win = r_full = 0
    for w in works:
        if w.bad:
            continue
        if w.windows is None:
            w.packed, w.delta = full_in[r_full:r_full + 1], full_out[r_full:r_full + 1]
            r_full += 1
        else:
            k = len(w.windows)
            w.packed, w.delta = win_in[r_win:r_win + k], win_out[r_win:r_win + k]
            r_win += k
    return [(win_in, win_out), (full_in, full_out)]


def pack(w: Work) -> None:
    """The fused refine_pack of one frame into its rows: (1, 5, Hr, Wr) for the full grid, (n, 5, Q, Q) for
    the windows (frame, depth and alpha_coarse resampled onto the refine grid in one pass)."""
    if w.bad:
        return
    t0 = time.perf_counter()
    slot = w.slot
    grid = slot.geom.refine
    if w.windows is None:
        native.refine_pack(slot.frame, slot.depth, w.alpha_coarse, w.packed, refine_size=grid)
    else:
        native.refine_pack(slot.frame, slot.depth, w.alpha_coarse, w.packed, patches=w.windows,
                           patch_size=w.packed.shape[-1], refine_size=grid)
    w.tm["pack"] = (time.perf_counter() - t0) * 1e3


def refine(works: list[Work], rows: list[tuple[np.ndarray, np.ndarray]], model: Model) -> None:
    """The refiner on the packed rows of N frames (one call per stack, or chunks the model accepts); a frame
    whose delta has NaN / Inf is marked bad. One frame that is already bad is skipped."""
    n = len(works)
    if n == 1 and works[0].bad:
        return
    t0 = time.perf_counter()
    for x, out in rows:
        if len(x):
            model.chunks(x, out)
    share = (time.perf_counter() - t0) * 1e3 / n
    for w in works:
        w.tm["refiner"] = share
        if not w.bad:
            w.bad = not np.isfinite(w.delta.sum())


def finish(w: Work, state: StreamState, mode: str, cfg: PipelineConfig, context: int) -> Matte:
    """The per-frame end, in frame order: the next ring buffer, the fused refine_finish (alpha = clamp(coarse
    + delta), upsampled, smoothed with the previous alpha, composed in `mode`; the coarse alpha alone when the
    frame was not refined) or the pass-through of a bad frame; the frame's alpha becomes the state's previous
    alpha."""
    b, slot = w.b, w.slot
    b.ring += 1
    alpha_out, image_out = b.alphas[b.ring % len(b.alphas)], b.images[b.ring % len(b.images)]
    frame = slot.frame
    prev = state.prev_alpha if state.prev_alpha is not None and state.prev_alpha.shape == alpha_out.shape else None
    fg = cfg.foreground and not w.bad  # (a bad frame's coarse alpha is not finite)
    background = b.background.fill(frame, w.alpha_coarse if fg else None) if mode == "composite" else None
    if not w.bad:
        t0 = time.perf_counter()
        packed, delta, grid = w.packed, w.delta, slot.geom.refine
        if packed is None:  # no refiner: the guided filter's alpha, or the coarse alpha, as the grid (delta 0)
            packed, delta = as_grid(b, w.fine if w.fine is not None else w.alpha_coarse)
            grid, w.refined = None, 0.0
        elif w.patches is not None and context:
            packed, delta = inner(b, packed, delta, w.patches - w.windows, cfg.patch_size)
        s = cfg.smoothing if prev is not None else 0.0
        native.refine_finish(packed, delta, frame, alpha_out, patches=w.patches, refine_size=grid,
                             alpha_coarse=w.alpha_coarse, mode=mode, background=background, out=image_out,
                             prev_alpha=prev if s > 0 else None, smoothing=s,  # (reading prev costs traffic)
                             foreground=fg)
        w.tm["finish"] = (time.perf_counter() - t0) * 1e3
    else:
        passthrough(frame, prev, alpha_out, image_out, background, mode, state)
    state.prev_alpha = alpha_out
    return Matte(alpha_out, image_out, mode, w.tm, slot.index, w.refined, passthrough=w.bad)


def as_grid(b: BackBuffers, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An alpha as a refine_finish full grid (1, 5, h, w) with a zero delta (1, 1, h, w): the finish upsamples it
    as it is. Called in frame order (finish), so one buffer per frame size serves all frames."""
    h, w = alpha.shape
    packed = scratch(b, "as_grid", (1, 5, h, w), np.float32)
    delta = scratch(b, "as_grid_zero", (1, 1, h, w), np.float32)
    delta.fill(0.0)  # (cheap at the coarse size; a scratch buffer may be new)
    np.copyto(packed[0, 4], alpha)
    return packed, delta


def inner(b: BackBuffers, packed: np.ndarray, delta: np.ndarray, offsets: np.ndarray, p: int):
    """The P x P windows at `offsets` (N, 2) inside the (N, ., Q, Q) context windows (counted in finish)."""
    n = len(offsets)
    pi, di = b.pack_inner[:n], b.delta_inner[:n]
    groups, inverse = np.unique(offsets, axis=0, return_inverse=True)
    for k, (oy, ox) in enumerate(groups):
        if len(groups) == 1:
            np.copyto(pi, packed[:, :, oy:oy + p, ox:ox + p])
            np.copyto(di, delta[:, :, oy:oy + p, ox:ox + p])
        else:  # windows moved at the grid border have their own offsets
            sel = np.flatnonzero(inverse.reshape(-1) == k)
            pi[sel] = packed[sel, :, oy:oy + p, ox:ox + p]
            di[sel] = delta[sel, :, oy:oy + p, ox:ox + p]
    return pi, di


def passthrough(frame, prev, alpha_out, image_out, background, mode: str, state: StreamState) -> None:
    """A model returned NaN / Inf: keep the previous alpha (or all foreground), count it, warn once."""
    state.nonfinite_frames += 1
    if not state.warned_nonfinite:
        state.warned_nonfinite = True
        warnings.warn("wbg_edge: a model returned NaN/Inf; passing frames through with the previous alpha "
                      "(counted in Pipeline.nonfinite_frames)", RuntimeWarning, stacklevel=5)
    if prev is not None:
        np.copyto(alpha_out, prev)
    else:
        alpha_out.fill(1.0)
    compose(frame, alpha_out, mode, background, image_out)
