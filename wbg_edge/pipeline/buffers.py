"""The pipeline's buffers: allocated per frame size, reused frame after frame (the hot path allocates almost
nothing), and what one frame carries from stage to stage.

    Slot         front half of one frame in flight: the frame, the model inputs, depth, the coarse output
    Group        N slots whose model inputs are rows of (N, ...) arrays (a batch: one model call reads all)
    BackBuffers  back half of one frame size: band selectors, refiner inputs / outputs, the output ring
    Work         one frame between its coarse model and its finish (views into the above)

No per-stream state here (that is StreamState): these only hold what a frame needs while in flight.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ..band import BandSelector
from ..compose import Background
from ..settings import Resolved
from .geometry import Geometry
from .models import Models

IN_FLIGHT = 3   # frames an overlapped stream works on at once (two lanes, and one waiting for a lane)


@dataclass
class Slot:
    """Front-half buffers for one frame in flight (IN_FLIGHT of them when frames overlap)."""

    geom: Geometry | None = None
    frame: np.ndarray | None = None       # the BGR frame (a view of the caller's, or our copy)
    frame_buf: np.ndarray | None = None   # our copy when overlapping (callers may reuse their buffer)
    model_in: np.ndarray | None = None    # float32 (1, 4, Hm, Wm) R,G,B,D (rgbd contract)
    coarse_small: np.ndarray | None = None  # u8 BGR at the rgb contract's fixed size (the segmenter's view)
    coarse_mid: np.ndarray | None = None    # u8 BGR at twice that size (shrink's first step), None: frame smaller
    coarse_in: np.ndarray | None = None   # rgb contract input (NCHW or NHWC)
    depth_in: np.ndarray | None = None
    depth: np.ndarray | None = None       # normalised D (float32 2-D) or None when depth is off
    bad: bool = False                     # a model returned NaN / Inf for this frame
    coarse_out: np.ndarray | None = None  # the coarse model's output for this slot's frame
    coarse_out_for: tuple | None = None   # ... and the input shape it was made for
    timings: dict = field(default_factory=dict)
    index: int = 0


@dataclass
class Group:
    """Front-half buffers of a batch: (N, ...) model inputs whose rows are the slots' own inputs (views)."""

    geom: Geometry
    slots: list[Slot]
    model_in: np.ndarray | None
    coarse_in: np.ndarray | None
    depth_in: np.ndarray | None


@dataclass
class RefineSet:
    """Band selection and the refiner's input and output for one frame in flight: full grid, or windows."""

    band: BandSelector | None             # None: patches off (always the full grid)
    pack_full: np.ndarray                 # (1, 5, Hr, Wr)
    delta_full: np.ndarray
    pack_patches: np.ndarray | None       # (max, 5, Q, Q), Q = P + 2 * context
    delta_patches: np.ndarray | None


@dataclass
class BackBuffers:
    """Back-half buffers for one frame size."""

    geom: Geometry
    max_batch: int                        # most patch windows one refiner call takes at this size
    refine: list[RefineSet]               # one set per frame that can be between coarse and finish at once
    pack_inner: np.ndarray | None         # (max, 5, P, P) inner windows when context > 0
    delta_inner: np.ndarray | None
    alphas: list[np.ndarray]              # output ring (3, or N + 2 after a batch of N)
    images: list[np.ndarray]
    background: Background
    scratch: dict[str, np.ndarray] = field(default_factory=dict)  # batch-wide refiner inputs / outputs
    ring: int = 0                         # outputs made at this size (a batch may mix sizes: one ring each)


@dataclass
class Work:
    """One frame between its coarse model and its finish."""

    slot: Slot
    b: BackBuffers
    tm: dict
    buffers: int = 0                      # which of b.refine this frame selects and packs with
    bad: bool = False
    alpha_coarse: np.ndarray | None = None
    patches: np.ndarray | None = None     # patch origins on the refine grid (None: the full grid)
    windows: np.ndarray | None = None     # what the refiner sees (patches widened by the context)
    packed: np.ndarray | None = None      # the refiner's input rows for this frame
    delta: np.ndarray | None = None       # ... and its output rows
    fine: np.ndarray | None = None        # refine "guided": the filtered alpha at the apply grid
    refined: float = 0.0


def alloc_group(slots: list[Slot], g: Geometry, m: Models, copy: bool) -> Group:
    """Front buffers for len(slots) frames of geometry g: model inputs are (N, ...) arrays and each slot
    holds its row (a view), so a batched model call reads them all without a copy."""
    n = len(slots)
    hm, wm = g.model
    model_in = coarse_in = depth_in = None
    if m.coarse_contract == "rgbd":
        model_in = np.zeros((n, 4, hm, wm), m.coarse.in_dtype)  # D plane stays 0 without depth
    else:
        hf, wf = g.coarse
        shape = (n, hf, wf, 3) if m.coarse_layout == "NHWC" else (n, 3, hf, wf)
        coarse_in = np.empty(shape, m.coarse.in_dtype)
    if m.depth is not None and not (g.depth == g.model and model_in is not None):
        hd, wd = g.depth
        depth_in = np.empty((n, 3, hd, wd), m.depth.in_dtype)
    for i, slot in enumerate(slots):
        slot.geom = g
        slot.frame_buf = np.empty((*g.frame, 3), np.uint8) if copy else None
        slot.model_in = model_in[i:i + 1] if model_in is not None else None
        slot.coarse_in = coarse_in[i:i + 1] if coarse_in is not None else None
        slot.coarse_small = np.empty((*g.coarse, 3), np.uint8) if coarse_in is not None else None
        hf, wf = g.coarse
        big = coarse_in is not None and g.frame[0] >= 2 * hf and g.frame[1] >= 2 * wf
        slot.coarse_mid = np.empty((2 * hf, 2 * wf, 3), np.uint8) if big else None
        slot.depth_in = depth_in[i:i + 1] if depth_in is not None else None
        slot.depth = None
    return Group(g, slots, model_in, coarse_in, depth_in)


def scratch(b: BackBuffers, name: str, shape: tuple, dtype) -> np.ndarray:
    """The first shape[0] rows of a per-size buffer that grows (with headroom) as batches need."""
    buf = b.scratch.get(name)
    if buf is None or len(buf) < shape[0] or buf.shape[1:] != tuple(shape[1:]) or buf.dtype != dtype:
        buf = b.scratch[name] = np.empty((shape[0] + shape[0] // 4, *shape[1:]), dtype)
    return buf[:shape[0]]


class BackCache:
    """`backs.get(g)`: the BackBuffers of a frame size, made on first use; the last two sizes are kept (an
    overlapped stream may have frames of two sizes in flight across a size change)."""

    def __init__(self, s: Resolved, m: Models):
        self.s, self.m = s, m
        self._backs: dict[tuple[int, int], BackBuffers] = {}
        self._lock = threading.Lock()  # the lanes of an overlapped stream may meet a new size at once

    def get(self, g: Geometry) -> BackBuffers:
        b = self._backs.get(g.frame)
        if b is not None:
            return b
        with self._lock:
            b = self._backs.get(g.frame)
            return b if b is not None else self._new(g)

    def _new(self, g: Geometry) -> BackBuffers:
        cfg, refiner = self.s.config, self.m.refiner
        hr, wr = g.refine
        p = cfg.patch_size
        q = p + 2 * self.s.patch_context
        dt_in, dt_out = refiner.in_dtype, refiner.out_dtype
        band = None
        pack_i = delta_i = None
        max_batch = 1 << 30
        if cfg.patches and q <= min(hr, wr):
            band = BandSelector(self._coarse_out_shape(g), (hr, wr), p, cfg.band_dilation)
            if q != p:
                pack_i = np.empty((band.max_patches, 5, p, p), dt_in)
                delta_i = np.empty((band.max_patches, 1, p, p), dt_out)
            max_batch = min(refiner.max_batch, band.max_patches)  # engine profiles bound it
        n = band.max_patches if band is not None else 0
        # Overlapped, IN_FLIGHT frames are between coarse and finish at once, and while the caller holds
        # frame m (with m - 1 and m - 2 still valid for a sink thread) the lanes may finish m + 1 .. m + IN_FLIGHT.
        sets, ring = (IN_FLIGHT, IN_FLIGHT + 3) if cfg.overlap else (1, 3)
        refine = [RefineSet(band if i == 0 or band is None else
                            BandSelector(band.coarse_size, (hr, wr), p, cfg.band_dilation),
                            np.empty((1, 5, hr, wr), dt_in), np.empty((1, 1, hr, wr), dt_out),
                            np.empty((n, 5, q, q), dt_in) if n else None,
                            np.empty((n, 1, q, q), dt_out) if n else None) for i in range(sets)]
        h, w = g.frame
        img_shape = {"alpha": (h, w), "rgba": (h, w, 4), "composite": (h, w, 3)}[self.s.mode]
        b = BackBuffers(g, max_batch, refine, pack_i, delta_i, [np.zeros((h, w), np.float32) for _ in range(ring)],
                        [np.zeros(img_shape, np.uint8) for _ in range(ring)], Background(self.s.background))
        if len(self._backs) >= 2:  # at most two sizes in flight (overlap across a size change)
            self._backs.pop(next(iter(self._backs)))
        self._backs[g.frame] = b
        return b

    def _coarse_out_shape(self, g: Geometry) -> tuple[int, int]:
        """The coarse model's output grid for this geometry, learnt by one run on zeros (once per size)."""
        m = self.m
        x = np.zeros((1, *g.coarse, 3) if m.coarse_layout == "NHWC" and m.coarse_contract == "rgb"
                     else ((1, 4, *g.coarse) if m.coarse_contract == "rgbd" else (1, 3, *g.coarse)),
                     m.coarse.in_dtype)
        out = m.coarse(x)
        hw = [d for d in out.shape if d != 1]
        return (hw[0], hw[1]) if len(hw) == 2 else out.shape[-2:]
