"""Front stages, frame -> model inputs -> depth: `preprocess`, `number`, `depth` (with reuse), `normalise`,
and `depth_batch` (the depth of N frames in one model call).

Plain functions over explicit inputs: a Slot (the frame's buffers), the Models, the config, and the
StreamState where a stage reads or changes what frames inherit (frame numbers, the depth cache).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from .. import native
from ..settings import PipelineConfig
from .buffers import Group, Slot, alloc_group
from .geometry import Geometry
from .models import Model, Models
from .state import StreamState

INV255 = np.float32(1.0 / 255.0)
EPS = np.float32(1e-6)


def as_bgr(frame) -> np.ndarray:
    """A u8 (H, W, 3) BGR view or converted copy of a BGR / BGRA / grayscale frame; one-line ValueError otherwise."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    shape, dtype = frame.shape, frame.dtype
    ok = dtype == np.uint8 and (frame.ndim == 2 or (frame.ndim == 3 and shape[2] in (1, 3, 4)))
    if not ok or frame.size == 0:
        raise ValueError(f"frame must be uint8 (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA; "
                         f"got shape {shape} dtype {dtype}")
    if frame.ndim == 3 and shape[2] == 3:
        return frame if frame.flags.c_contiguous else np.ascontiguousarray(frame)
    if frame.ndim == 3 and shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
    gray = frame if frame.ndim == 2 else frame[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)


def _rows2d(a: np.ndarray) -> np.ndarray:
    """A C-contiguous array as 2-D rows (what cv2.norm takes)."""
    return a.reshape(-1, a.shape[-1])


def preprocess(frame, slot: Slot, geometry: Callable[[int, int], Geometry], m: Models, copy: bool) -> None:
    """Frame -> the models' inputs in `slot` (buffers made again only when the size changes). No model, no
    stream state. `copy`: keep our own copy of the frame (an overlapped stream reads the next frame before
    this one is finished, and the caller may reuse its buffer)."""
    t0 = time.perf_counter()
    bgr = as_bgr(frame)
    h, w = bgr.shape[:2]
    g = geometry(h, w)
    if slot.geom != g or (copy and slot.frame_buf is None):
        alloc_group([slot], g, m, copy)
    if copy:
        np.copyto(slot.frame_buf, bgr)
        bgr = slot.frame_buf
    slot.frame, slot.bad = bgr, False
    # Model inputs straight from the frame in one pass each (the fused op's sampling), no u8 detour.
    if slot.model_in is not None:
        native.frame_planes(bgr, slot.model_in[0, :3])
    else:  # a fixed-size segmenter: the frame squashed to its grid, anti-aliased
        shrink(bgr, slot.coarse_small, slot.coarse_mid)
        rgb = slot.coarse_small[:, :, ::-1]
        np.multiply(rgb if m.coarse_layout == "NHWC" else rgb.transpose(2, 0, 1), INV255, out=slot.coarse_in[0])
    if slot.depth_in is not None:
        if slot.model_in is not None and slot.model_in.dtype == slot.depth_in.dtype == np.float32:
            # depth at half the model resolution: a 2x2 mean of the model planes (less aliasing)
            hd, wd = g.depth
            for c in range(3):
                cv2.resize(slot.model_in[0, c], (wd, hd), dst=slot.depth_in[0, c], interpolation=cv2.INTER_LINEAR)
        else:
            native.frame_planes(bgr, slot.depth_in[0])
    slot.timings = {"preprocess": (time.perf_counter() - t0) * 1e3, "depth": 0.0, "normalise": 0.0}


def shrink(bgr: np.ndarray, dst: np.ndarray, mid: np.ndarray | None) -> None:
    """bgr resized into dst (u8 (h, w, 3)) without aliasing. A fixed-size segmenter sees a 720p frame shrunk ~5x:
    bilinear sampling there reads 2 of every 5 columns, so a pan of a few pixels changes what the model sees and
    its output flickers (MediaPipe on 1280x720 pans: 34 vs 27 x1e-3 mean |delta alpha| with INTER_AREA). An exact
    area average costs ~4 ms at 720p; bilinear down to twice the size (mid: (2h, 2w, 3), None when the frame is
    smaller than that) and then an exact 2x2 average costs ~0.5 ms and leaves almost no aliasing (27.3)."""
    h, w = dst.shape[:2]
    if mid is None:
        cv2.resize(bgr, (w, h), dst=dst, interpolation=cv2.INTER_AREA)
        return
    cv2.resize(bgr, (2 * w, 2 * h), dst=mid, interpolation=cv2.INTER_LINEAR)
    cv2.resize(mid, (w, h), dst=dst, interpolation=cv2.INTER_AREA)


def number(slot: Slot, state: StreamState) -> None:
    """The frame's number, and whether the depth cache still fits it: taken in frame order."""
    if state.depth is not None and state.depth_geom != slot.geom:
        state.forget_depth()  # (finish drops the previous alpha itself when the size changes)
    slot.index = state.index
    state.index += 1


def depth_planes(slot: Slot) -> np.ndarray:
    """The depth model's input for this slot (made by preprocess)."""
    if slot.depth_in is not None:
        return slot.depth_in
    return slot.model_in[:, :3]  # same resolution: the matting input's RGB planes are the depth input


def depth(slot: Slot, state: StreamState, model: Model, cfg: PipelineConfig) -> None:
    """Depth for one frame, in frame order: the cached depth while the input barely moved (at most
    depth_every - 1 frames in a row), else the model and `normalise`; into the slot's D plane."""
    tm = slot.timings
    t0 = time.perf_counter()
    reuse = False
    if cfg.depth_every > 1 and state.depth is not None and state.depth_age < cfg.depth_every - 1:
        ref = depth_planes(slot)
        motion = cv2.norm(_rows2d(ref), _rows2d(state.depth_ref), cv2.NORM_L1) / ref.size
        reuse = motion <= cfg.depth_motion
    if reuse:
        state.depth_age += 1
        use_depth(slot, state.depth)
    else:
        x = depth_planes(slot)
        t1 = time.perf_counter()
        raw = model(x)
        tm["depth"] = (time.perf_counter() - t1) * 1e3
        use_depth(slot, normalise(raw, slot, state, cfg))
    tm["normalise"] = (time.perf_counter() - t0) * 1e3 - tm["depth"]  # resize, motion test, min-max, copies


def normalise(raw: np.ndarray, slot: Slot, state: StreamState, cfg: PipelineConfig) -> np.ndarray | None:
    """Min-max normalised depth into the state's depth cache (D = (d - min) / (max - min + eps)); NaN / Inf
    marks the frame bad and keeps the last depth."""
    raw2 = raw.reshape(raw.shape[-2:])
    mn, mx = float(raw2.min()), float(raw2.max())
    if not (np.isfinite(mn) and np.isfinite(mx)):
        slot.bad = True
        return state.depth
    if state.depth is None or state.depth.shape != raw2.shape:
        state.depth = np.empty(raw2.shape, np.float32)
    d = state.depth
    np.subtract(raw2, np.float32(mn), out=d)
    np.multiply(d, np.float32(1.0 / (mx - mn + EPS)), out=d)
    state.depth_geom = slot.geom
    if cfg.depth_every > 1:
        ref = depth_planes(slot)
        if state.depth_ref is None or state.depth_ref.shape != ref.shape:
            state.depth_ref = np.empty_like(ref)
        np.copyto(state.depth_ref, ref)
    state.depth_age = 0
    return d


def use_depth(slot: Slot, d: np.ndarray | None) -> None:
    """D into the slot: its own copy (the cache may move on while this frame is in flight) and the matting
    input's D plane."""
    if d is None:
        return
    if slot.depth is None or slot.depth.shape != d.shape:
        slot.depth = np.empty(d.shape, np.float32)
    np.copyto(slot.depth, d)
    if slot.model_in is not None:
        hm, wm = slot.geom.model
        if d.shape == (hm, wm):
            np.copyto(slot.model_in[0, 3], d)
        else:
            cv2.resize(d, (wm, hm), dst=slot.model_in[0, 3], interpolation=cv2.INTER_LINEAR)


def depth_batch(grp: Group, n: int, state: StreamState, model: Model, cfg: PipelineConfig) -> None:
    """Depth of the group's first n frames (numbered, in order) in one model call (or chunks the model
    accepts), normalised frame by frame in order."""
    slots = grp.slots[:n]
    t0 = time.perf_counter()
    x = grp.depth_in[:n] if grp.depth_in is not None else np.ascontiguousarray(grp.model_in[:n, :3])
    t1 = time.perf_counter()
    raw = model.chunks(x)
    t2 = time.perf_counter()
    prep, share = (t1 - t0) * 1e3 / n, (t2 - t1) * 1e3 / n
    for i, slot in enumerate(slots):
        t3 = time.perf_counter()
        use_depth(slot, normalise(raw[i:i + 1], slot, state, cfg))
        slot.timings["depth"] = share
        slot.timings["normalise"] = prep + (time.perf_counter() - t3) * 1e3
