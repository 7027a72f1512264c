"""The Pipeline: one owner for the stage runners, the buffers and the temporal state (DESIGN.md section 1).

    frame u8 BGR ─> preprocess ─> depth ─> normalise D ─> coarse (rgbd matting | rgb segmenter) ─> band
         │                                                                                        │
         └──────────────────────> refine_pack ─> refiner ─> refine_finish (alpha + output) <──────┘

`Pipeline(PipelineConfig(...)).process(frame)` returns a `Matte`. Buffers are allocated per frame
size (again only when the size changes), so the hot path allocates almost nothing. The arrays of a
returned Matte belong to the pipeline and stay valid for the next two `process` calls (a ring of
three output buffers, so a sink on another thread can still be writing one); `Matte.copy()` keeps one.

`Pipeline.stream(frames)` yields one Matte per frame; with `overlap=True` the front half (preprocess,
depth, normalise) of frame t+1 runs on a worker thread while the back half (coarse, band, refine,
finish) of frame t runs in the caller's thread: throughput is the slower half, latency <= 2 frames.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from . import native
from .backends import Backend, BackendOptions, choose_backend, open_backend
from .band import BandSelector
from .bundle import Bundle, BundleError, default_bundle_dir, load_bundle
from .compose import Background, compose, parse_background

MODES = ("alpha", "rgba", "composite")
MODEL_STAGES = ("depth", "coarse", "refiner")
INV255 = np.float32(1.0 / 255.0)
EPS = np.float32(1e-6)
MAX_ASPECT = 4  # model / refine grids are at most 4:1, whatever the frame


@dataclass(frozen=True)
class PipelineConfig:
    """Every field maps 1:1 onto a CLI flag of `wbg-edge run` / `bench`."""

    bundle: str | None = None          # bundle folder; None = the default bundle shipped in the package
    backend: str = "auto"              # auto | ort | trt (auto: trt when engines, a CUDA device and TensorRT exist)
    model_res: int | None = None       # short side for depth / matting, multiple of 32; None = manifest
    refine_res: int | None = None      # short side of the refine grid, multiple of 32; None = manifest (<= frame)
    depth: bool = True                 # False: D = 0 everywhere (the matting model is trained with depth dropout)
    depth_res: int | None = None       # short side of the depth input, multiple of 32; None = model_res / 2
    depth_every: int = 1               # reuse depth for up to k frames ...
    depth_motion: float = 0.02         # ... unless the mean |change| of the depth input (in [0, 1]) exceeds this
    patches: bool = True               # refine only boundary-band patches (False: the full refine grid)
    patch_size: int = 32               # P, patches are P x P on the refine grid, multiple of 8
    patch_context: int | None = None   # refine pixels of context around each patch (even; the refiner sees
                                       # (P + 2c)^2, only the inner P x P is kept: no seams between patches)
    band_dilation: int = 2             # band dilation, in coarse pixels
    full_grid_above: float = 0.6       # band covering more than this fraction of the grid: refine the full grid
    smoothing: float = 0.0             # temporal EMA of alpha: a = s * previous + (1 - s) * current
    mode: str = "composite"            # alpha (u8 H x W) | rgba (BGRA) | composite (BGR over `background`)
    background: str = "green"          # transparent | colour name | #RRGGBB | blur[:k] | image path
    overlap: bool = False              # stream(): overlap depth of frame t+1 with the rest of frame t
    threads: int | None = None         # ONNX Runtime intra-op threads per model (None: all cores)
    spin: bool = False                 # ONNX Runtime threads spin between runs: lower latency on an idle
                                       # machine, but they steal the cores the rest of the pipeline needs

    def __post_init__(self):
        def mult32(name, v, lo=32):
            if v is not None and (not isinstance(v, int) or v < lo or v % 32):
                raise ValueError(f"{name} must be a multiple of 32 and >= {lo}, got {v!r}")

        mult32("model_res", self.model_res)
        mult32("refine_res", self.refine_res)
        mult32("depth_res", self.depth_res)
        if not isinstance(self.depth_every, int) or self.depth_every < 1:
            raise ValueError(f"depth_every must be an integer >= 1, got {self.depth_every!r}")
        if not 0.0 <= self.depth_motion <= 1.0:
            raise ValueError(f"depth_motion must be in [0, 1], got {self.depth_motion!r}")
        if not isinstance(self.patch_size, int) or self.patch_size < 8 or self.patch_size % 8 or self.patch_size > 512:
            raise ValueError(f"patch_size must be a multiple of 8 in [8, 512], got {self.patch_size!r}")
        if self.patch_context is not None and (not isinstance(self.patch_context, int)
                                               or not 0 <= self.patch_context <= 64 or self.patch_context % 2):
            raise ValueError(f"patch_context must be an even integer in [0, 64], got {self.patch_context!r}")
        if not isinstance(self.band_dilation, int) or not 0 <= self.band_dilation <= 64:
            raise ValueError(f"band_dilation must be an integer in [0, 64], got {self.band_dilation!r}")
        if not 0.0 <= self.full_grid_above <= 1.0:
            raise ValueError(f"full_grid_above must be in [0, 1], got {self.full_grid_above!r}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.backend not in ("auto", "ort", "trt"):
            raise ValueError(f"backend must be one of ['auto', 'ort', 'trt'], got {self.backend!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        parse_background(self.background)  # fails early, naming the spec


@dataclass
class Matte:
    """One processed frame. Arrays belong to the pipeline (valid for two more frames; `copy()` to keep)."""

    alpha: np.ndarray            # float32 (H, W) in [0, 1]
    image: np.ndarray            # u8: alpha (H, W) | BGRA (H, W, 4) | composite BGR (H, W, 3), per `mode`
    mode: str
    timings: dict[str, float]    # per-stage ms: preprocess depth normalise coarse band pack refiner finish total ...
    index: int                   # frame number in this pipeline
    refined: float = 1.0         # fraction of the refine grid that went through the refiner
    passthrough: bool = False    # a model returned NaN/Inf: the frame was passed through with the previous alpha

    @property
    def foreground(self) -> np.ndarray | None:
        """BGRA u8 (straight alpha) in rgba mode."""
        return self.image if self.mode == "rgba" else None

    @property
    def composite(self) -> np.ndarray | None:
        """BGR u8 over the background in composite mode."""
        return self.image if self.mode == "composite" else None

    def copy(self) -> Matte:
        return replace(self, alpha=self.alpha.copy(), image=self.image.copy(), timings=dict(self.timings))


@dataclass(frozen=True)
class Geometry:
    """Grid sizes (H, W) derived from one frame size."""

    frame: tuple[int, int]
    model: tuple[int, int]    # depth / matting input
    depth: tuple[int, int]    # depth model input
    coarse: tuple[int, int]   # coarse model input (model, or the rgb contract's fixed size)
    refine: tuple[int, int]


def fit(short: int, h: int, w: int, multiple: int = 32) -> tuple[int, int]:
    """(H, W) with short side `short` and the frame's aspect (long side rounded to `multiple`, <= 4:1)."""
    lo, hi = min(h, w), max(h, w)
    long = max(multiple, int(round(short * hi / lo / multiple)) * multiple)
    long = min(max(long, short), short * MAX_ASPECT)
    return (short, long) if h <= w else (long, short)


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


def _planes(src: np.ndarray, dst: np.ndarray) -> None:
    """u8 (h, w, 3) BGR -> float32 (3, h, w) RGB in [0, 1], written into dst."""
    np.multiply(src.transpose(2, 0, 1)[::-1], INV255, out=dst)


class _Model:
    """A backend bound to one input and one output name, with output buffers reused per input shape."""

    def __init__(self, backend: Backend, inp: str, out: str):
        self.backend, self.inp, self.out = backend, inp, out
        spec_in, spec_out = backend.inputs()[inp], backend.outputs()[out]
        self.in_dtype, self.out_dtype = spec_in.dtype, spec_out.dtype
        self._bufs: dict[tuple, np.ndarray] = {}

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is not None:
            return self.backend.run({self.inp: x}, {self.out: out})[self.out]
        buf = self._bufs.get(x.shape)
        if buf is None:  # first run at this shape learns the output shape
            res = np.ascontiguousarray(self.backend.run({self.inp: x})[self.out])
            if len(self._bufs) >= 4:
                self._bufs.clear()
            self._bufs[x.shape] = res
            return res
        return self.backend.run({self.inp: x}, {self.out: buf})[self.out]


@dataclass
class _Slot:
    """Front-half buffers for one frame in flight (two of them when stages overlap)."""

    geom: Geometry | None = None
    frame: np.ndarray | None = None       # the BGR frame (a view of the caller's, or our copy)
    frame_buf: np.ndarray | None = None   # our copy when overlapping (callers may reuse their buffer)
    small: np.ndarray | None = None       # u8 (Hm, Wm, 3)
    model_in: np.ndarray | None = None    # float32 (1, 4, Hm, Wm) R,G,B,D (rgbd contract)
    coarse_small: np.ndarray | None = None  # u8 at the rgb contract's fixed size
    coarse_in: np.ndarray | None = None   # rgb contract input (NCHW or NHWC)
    depth_small: np.ndarray | None = None
    depth_in: np.ndarray | None = None
    depth: np.ndarray | None = None       # normalised D (float32 2-D) or None when depth is off
    bad: bool = False                     # a model returned NaN / Inf for this frame
    timings: dict = field(default_factory=dict)
    index: int = 0


@dataclass
class _Back:
    """Back-half buffers for one frame size."""

    geom: Geometry
    band: BandSelector | None
    pack_full: np.ndarray
    delta_full: np.ndarray
    pack_patches: np.ndarray | None       # (max, 5, Q, Q), Q = P + 2 * context
    delta_patches: np.ndarray | None
    pack_inner: np.ndarray | None         # (max, 5, P, P) inner windows when context > 0
    delta_inner: np.ndarray | None
    alphas: list[np.ndarray]
    images: list[np.ndarray]
    background: Background


class Pipeline:
    """depth -> coarse -> band -> refine_pack -> refiner -> refine_finish, on one bundle and one backend."""

    def __init__(self, config: PipelineConfig = PipelineConfig()):
        self.config = config
        root = Path(config.bundle) if config.bundle else default_bundle_dir()
        self.bundle: Bundle = load_bundle(root)
        stages = self.bundle.available_stages()
        for need in ("coarse", "refiner"):
            if need not in stages:
                raise BundleError(f"{root / 'manifest.json'}: the bundle has no {need!r} stage")
        use_depth = config.depth and "depth" in stages
        wanted = {"coarse", "refiner"} | ({"depth"} if use_depth else set())
        self.choice = choose_backend(config.backend, self.bundle, wanted)
        fmt = "engine" if self.choice.kind == "trt" else "onnx"
        # Overlapped stages run two models at once: split the cores between them and stop idle spinning.
        threads = config.threads or (max(1, (os.cpu_count() or 2) // 2) if config.overlap else None)
        opts = BackendOptions(threads=threads, spin=config.spin and not config.overlap)
        found = {s: self.bundle.resolve(s, fmt) for s in wanted}
        for s, f in found.items():
            if f is None:
                raise BundleError(f"{root / 'manifest.json'}: no {fmt} artifact for stage {s!r}")
        self.artifacts = {s: f[1] for s, f in found.items()}
        coarse = self.artifacts["coarse"]
        self.coarse_contract = coarse.contract
        self.coarse_layout = coarse.layout.upper()
        self.coarse_fixed = tuple(coarse.fixed_size) if coarse.fixed_size else None
        self._backends: list[Backend] = []

        def load(stage: str) -> _Model:
            owner, a = found[stage]
            b = open_backend(self.choice.kind, owner, a, opts)
            self._backends.append(b)
            return _Model(b, next(iter(a.inputs)), next(iter(a.outputs)))

        self.depth_model = load("depth") if use_depth else None
        self.coarse_model = load("coarse")
        self.refiner_model = load("refiner")
        self.backend_name = self.refiner_model.backend.name
        self.model_res = config.model_res or self.bundle.model_res
        self.refine_res = config.refine_res or self.bundle.refine_res
        # None: what the bundle asks for (its refiner's training decides whether tiles need context)
        self.patch_context = (config.patch_context if config.patch_context is not None
                              else int(self.bundle.runtime.get("patch_context", 0)))
        self.depth_res = config.depth_res or max(32, (self.model_res // 2) // 32 * 32)
        self._background_spec = parse_background(config.background)
        self.mode = "rgba" if config.mode == "composite" and self._background_spec.kind == "transparent" \
            else config.mode
        # state (the pipeline is the only owner; DESIGN.md / STYLE.md)
        self._geoms: dict[tuple[int, int], Geometry] = {}
        self._slots = [_Slot(), _Slot()]
        self._backs: dict[tuple[int, int], _Back] = {}
        self._index = 0
        self._ring = 0
        self._prev_alpha: np.ndarray | None = None
        self._depth_cache: np.ndarray | None = None
        self._depth_ref: np.ndarray | None = None   # depth input when depth was last computed (motion test)
        self._depth_age = 0
        self._depth_cache_geom: Geometry | None = None
        self._max_batch = 1 << 30
        self._streaming = False
        self.nonfinite_frames = 0
        self._warned_nonfinite = False

    # ------------------------------------------------------------------ public API
    def info(self) -> dict:
        return {"bundle": str(self.bundle.root), "bundle_name": self.bundle.name, "backend": self.backend_name,
                "backend_kind": self.choice.kind, "backend_reason": self.choice.reason,
                "coarse_contract": self.coarse_contract, "depth": self.depth_model is not None,
                "native": native.native_backend(), "model_res": self.model_res, "refine_res": self.refine_res,
                "depth_res": self.depth_res, "mode": self.mode, "frames": self._index,
                "nonfinite_frames": self.nonfinite_frames}

    def geometry(self, height: int, width: int) -> Geometry:
        g = self._geoms.get((height, width))
        if g is None:
            model = fit(self.model_res, height, width)
            depth = fit(self.depth_res, height, width)
            coarse = self.coarse_fixed or model
            frame_short = -(-min(height, width) // 32) * 32
            r_short = min(self.refine_res, max(self.model_res, frame_short))
            g = Geometry((height, width), model, depth, coarse, fit(r_short, height, width))
            if len(self._geoms) > 8:
                self._geoms.clear()
            self._geoms[(height, width)] = g
        return g

    def process(self, frame: np.ndarray) -> Matte:
        """Background removal for one frame: u8 (H, W, 3) BGR, (H, W, 4) BGRA or (H, W[, 1]) gray."""
        if self._streaming:
            raise RuntimeError("Pipeline.process called while an overlapped stream() is running on this pipeline")
        slot = self._slots[0]
        self._front(frame, slot, copy=False)
        return self._back(slot)

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Matte]:
        """One Matte per frame, in order; overlapped across two threads when config.overlap."""
        if not self.config.overlap:
            for f in frames:
                yield self.process(f)
            return
        yield from self._stream_overlapped(frames)

    def warmup(self, height: int, width: int, frames: int = 2) -> None:
        """Allocate the buffers for (height, width) and run the models once or twice (first runs are slow),
        leaving no temporal state and no frame count behind."""
        index = self._index
        gray = np.full((height, width, 3), 128, np.uint8)
        for _ in range(frames):
            self.process(gray)
        self._index = index
        self.reset()

    def reset(self) -> None:
        """Forget temporal state (smoothing, reused depth), e.g. at a scene cut. Not while stream() runs."""
        self._prev_alpha = None
        self._reset_depth()

    def _reset_depth(self) -> None:
        self._depth_cache = self._depth_ref = None
        self._depth_age = 0

    def close(self) -> None:
        for b in self._backends:
            b.close()
        self._backends.clear()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ front half: preprocess, depth, normalise
    def _alloc_slot(self, slot: _Slot, g: Geometry, copy: bool) -> None:
        hm, wm = g.model
        slot.geom = g
        slot.frame_buf = np.empty((*g.frame, 3), np.uint8) if copy else None
        slot.small = np.empty((hm, wm, 3), np.uint8)
        slot.model_in = None
        if self.coarse_contract == "rgbd":
            slot.model_in = np.zeros((1, 4, hm, wm), self.coarse_model.in_dtype)  # D plane stays 0 without depth
        else:
            hf, wf = g.coarse
            slot.coarse_small = np.empty((hf, wf, 3), np.uint8)
            shape = (1, hf, wf, 3) if self.coarse_layout == "NHWC" else (1, 3, hf, wf)
            slot.coarse_in = np.empty(shape, self.coarse_model.in_dtype)
        slot.depth_small = slot.depth_in = None
        if self.depth_model is not None and not (g.depth == g.model and slot.model_in is not None):
            hd, wd = g.depth
            slot.depth_small = np.empty((hd, wd, 3), np.uint8)
            slot.depth_in = np.empty((1, 3, hd, wd), self.depth_model.in_dtype)
        slot.depth = None

    def _front(self, frame: np.ndarray, slot: _Slot, copy: bool) -> None:
        t0 = time.perf_counter()
        bgr = as_bgr(frame)
        h, w = bgr.shape[:2]
        g = self.geometry(h, w)
        if slot.geom != g or (copy and slot.frame_buf is None):
            self._alloc_slot(slot, g, copy)
        if self._depth_cache is not None and self._depth_cache_geom != g:
            self._reset_depth()  # (the back half drops the previous alpha itself when the size changes)
        if copy:
            np.copyto(slot.frame_buf, bgr)
            bgr = slot.frame_buf
        slot.frame, slot.bad, slot.index = bgr, False, self._index
        self._index += 1
        hm, wm = g.model
        cv2.resize(bgr, (wm, hm), dst=slot.small, interpolation=cv2.INTER_LINEAR)
        if slot.model_in is not None:
            _planes(slot.small, slot.model_in[0, :3])
        else:
            hf, wf = g.coarse
            cv2.resize(bgr, (wf, hf), dst=slot.coarse_small, interpolation=cv2.INTER_LINEAR)
            if self.coarse_layout == "NHWC":
                np.multiply(slot.coarse_small[:, :, ::-1], INV255, out=slot.coarse_in[0])
            else:
                _planes(slot.coarse_small, slot.coarse_in[0])
        t1 = time.perf_counter()
        tm = {"preprocess": (t1 - t0) * 1e3, "depth": 0.0, "normalise": 0.0}
        if self.depth_model is not None:
            self._depth(slot, g, tm)
        slot.timings = tm

    def _depth(self, slot: _Slot, g: Geometry, tm: dict) -> None:
        t0 = time.perf_counter()
        if slot.depth_in is not None:
            hd, wd = g.depth
            cv2.resize(slot.small, (wd, hd), dst=slot.depth_small, interpolation=cv2.INTER_LINEAR)
        reuse = False
        if self.config.depth_every > 1 and self._depth_cache is not None \
                and self._depth_age < self.config.depth_every - 1:
            ref = slot.depth_small if slot.depth_small is not None else slot.small
            motion = cv2.norm(ref, self._depth_ref, cv2.NORM_L1) / (ref.size * 255.0)
            reuse = motion <= self.config.depth_motion
        if reuse:
            self._depth_age += 1
            d = self._depth_cache
        else:
            if slot.depth_in is not None:
                _planes(slot.depth_small, slot.depth_in[0])
                x = slot.depth_in
            else:
                x = slot.model_in[:, :3]  # same resolution: the matting input's RGB planes are the depth input
            t1 = time.perf_counter()
            raw = self.depth_model(x)
            tm["depth"] = (time.perf_counter() - t1) * 1e3
            raw2 = raw.reshape(raw.shape[-2:])
            mn, mx = float(raw2.min()), float(raw2.max())
            if not (np.isfinite(mn) and np.isfinite(mx)):
                slot.bad = True
                d = self._depth_cache
            else:
                if self._depth_cache is None or self._depth_cache.shape != raw2.shape:
                    self._depth_cache = np.empty(raw2.shape, np.float32)
                d = self._depth_cache
                np.subtract(raw2, np.float32(mn), out=d)
                np.multiply(d, np.float32(1.0 / (mx - mn + EPS)), out=d)
                self._depth_cache_geom = g
                ref = slot.depth_small if slot.depth_small is not None else slot.small
                if self.config.depth_every > 1:
                    if self._depth_ref is None or self._depth_ref.shape != ref.shape:
                        self._depth_ref = np.empty_like(ref)
                    np.copyto(self._depth_ref, ref)
                self._depth_age = 0
        if d is not None:
            if slot.depth is None or slot.depth.shape != d.shape:
                slot.depth = np.empty(d.shape, np.float32)
            np.copyto(slot.depth, d)  # a private copy: the cache may move on while this frame is in flight
            if slot.model_in is not None:
                hm, wm = g.model
                if d.shape == (hm, wm):
                    np.copyto(slot.model_in[0, 3], d)
                else:
                    cv2.resize(d, (wm, hm), dst=slot.model_in[0, 3], interpolation=cv2.INTER_LINEAR)
        tm["normalise"] = (time.perf_counter() - t0) * 1e3 - tm["depth"]  # resize, motion test, min-max, copies

    # ------------------------------------------------------------------ back half: coarse, band, refine, finish
    def _alloc_back(self, g: Geometry) -> _Back:
        b = self._backs.get(g.frame)
        if b is not None:
            return b
        hr, wr = g.refine
        p = self.config.patch_size
        q = p + 2 * self.patch_context
        dt_in, dt_out = self.refiner_model.in_dtype, self.refiner_model.out_dtype
        band = None
        pack_p = delta_p = pack_i = delta_i = None
        if self.config.patches and q <= min(hr, wr):
            hc, wc = self._coarse_out_shape(g)
            band = BandSelector((hc, wc), (hr, wr), p, self.config.band_dilation)
            pack_p = np.empty((band.max_patches, 5, q, q), dt_in)
            delta_p = np.empty((band.max_patches, 1, q, q), dt_out)
            if q != p:
                pack_i = np.empty((band.max_patches, 5, p, p), dt_in)
                delta_i = np.empty((band.max_patches, 1, p, p), dt_out)
            limit = self.refiner_model.backend.max_shape(self.refiner_model.inp)
            self._max_batch = limit[0] if limit else band.max_patches  # engine profiles bound the batch
        h, w = g.frame
        img_shape = {"alpha": (h, w), "rgba": (h, w, 4), "composite": (h, w, 3)}[self.mode]
        b = _Back(g, band, np.empty((1, 5, hr, wr), dt_in), np.empty((1, 1, hr, wr), dt_out), pack_p, delta_p,
                  pack_i, delta_i, [np.zeros((h, w), np.float32) for _ in range(3)],
                  [np.zeros(img_shape, np.uint8) for _ in range(3)], Background(self._background_spec))
        if len(self._backs) >= 2:  # at most two sizes in flight (overlap across a size change)
            self._backs.pop(next(iter(self._backs)))
        self._backs[g.frame] = b
        return b

    def _coarse_out_shape(self, g: Geometry) -> tuple[int, int]:
        """The coarse model's output grid for this geometry, learnt by one run on zeros (once per size)."""
        x = np.zeros((1, *g.coarse, 3) if self.coarse_layout == "NHWC" and self.coarse_contract == "rgb"
                     else ((1, 4, *g.coarse) if self.coarse_contract == "rgbd" else (1, 3, *g.coarse)),
                     self.coarse_model.in_dtype)
        out = self.coarse_model(x)
        hw = [d for d in out.shape if d != 1]
        return (hw[0], hw[1]) if len(hw) == 2 else out.shape[-2:]

    def _back(self, slot: _Slot) -> Matte:
        t0 = time.perf_counter()
        g = slot.geom
        b = self._alloc_back(g)
        k = self._ring = (self._ring + 1) % 3
        alpha_out, image_out = b.alphas[k], b.images[k]
        frame = slot.frame
        tm = dict(slot.timings)
        prev = self._prev_alpha if self._prev_alpha is not None and self._prev_alpha.shape == alpha_out.shape \
            else None
        background = b.background.fill(frame) if self.mode == "composite" else None
        refined = 0.0
        bad = slot.bad
        if not bad:
            x = slot.model_in if slot.model_in is not None else slot.coarse_in
            coarse = self.coarse_model(x)
            t1 = time.perf_counter()
            hw = [d for d in coarse.shape if d != 1]
            alpha_coarse = coarse.reshape(hw) if len(hw) == 2 else coarse.reshape(coarse.shape[-2:])
            bad = not np.isfinite(alpha_coarse.sum())
            tm["coarse"] = (t1 - t0) * 1e3
        if not bad:
            hr, wr = g.refine
            p, c = self.config.patch_size, self.patch_context
            q = p + 2 * c
            patches = None
            if b.band is not None:
                patches = b.band.select(alpha_coarse)
                n = len(patches)
                if n == 0:  # nothing uncertain: one patch keeps the data path uniform
                    patches = b.band._origins[:1]
                    n = 1
                if n * q * q > self.config.full_grid_above * hr * wr or n > self._max_batch:
                    patches = None
            t2 = time.perf_counter()
            tm["band"] = (t2 - t1) * 1e3
            if patches is None:
                packed, delta = b.pack_full, b.delta_full
                refined = 1.0
                native.refine_pack(frame, slot.depth, alpha_coarse, packed, refine_size=(hr, wr))
            else:
                n = len(patches)
                packed, delta = b.pack_patches[:n], b.delta_patches[:n]
                refined = n * p * p / (hr * wr)
                windows = patches
                if c:  # windows with context, shifted inside the grid at its borders
                    windows = np.empty_like(patches)
                    np.clip(patches[:, 0] - c, 0, hr - q, out=windows[:, 0])
                    np.clip(patches[:, 1] - c, 0, wr - q, out=windows[:, 1])
                native.refine_pack(frame, slot.depth, alpha_coarse, packed, patches=windows, patch_size=q,
                                   refine_size=(hr, wr))
            t3 = time.perf_counter()
            tm["pack"] = (t3 - t2) * 1e3
            self.refiner_model(packed, out=delta)
            t4 = time.perf_counter()
            tm["refiner"] = (t4 - t3) * 1e3
            bad = not np.isfinite(delta.sum())
            if not bad and patches is not None and c:
                packed, delta = self._inner(b, packed, delta, patches - windows, p)
                t4 = time.perf_counter()
        if not bad:
            native.refine_finish(packed, delta, frame, alpha_out, patches=patches, refine_size=(hr, wr),
                                 alpha_coarse=alpha_coarse, mode=self.mode, background=background, out=image_out,
                                 prev_alpha=prev, smoothing=self.config.smoothing if prev is not None else 0.0)
            tm["finish"] = (time.perf_counter() - t4) * 1e3
        else:
            self._passthrough(frame, prev, alpha_out, image_out, background)
        t_end = time.perf_counter()
        for key in ("coarse", "band", "pack", "refiner", "finish"):
            tm.setdefault(key, 0.0)
        tm["total"] = tm["preprocess"] + tm["depth"] + tm["normalise"] + (t_end - t0) * 1e3
        tm["models"] = tm["depth"] + tm["coarse"] + tm["refiner"]
        tm["overhead"] = tm["total"] - tm["models"]
        self._prev_alpha = alpha_out
        return Matte(alpha_out, image_out, self.mode, tm, slot.index, refined, passthrough=bad)

    @staticmethod
    def _inner(b: _Back, packed: np.ndarray, delta: np.ndarray, offsets: np.ndarray, p: int):
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

    def _passthrough(self, frame, prev, alpha_out, image_out, background) -> None:
        """A model returned NaN / Inf: keep the previous alpha (or all foreground), count it, warn once."""
        self.nonfinite_frames += 1
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn("wbg_edge: a model returned NaN/Inf; passing frames through with the previous alpha "
                          "(counted in Pipeline.nonfinite_frames)", RuntimeWarning, stacklevel=4)
        if prev is not None:
            np.copyto(alpha_out, prev)
        else:
            alpha_out.fill(1.0)
        compose(frame, alpha_out, self.mode, background, image_out)

    # ------------------------------------------------------------------ overlapped streaming
    def _stream_overlapped(self, frames: Iterable[np.ndarray]) -> Iterator[Matte]:
        free: queue.Queue = queue.Queue()
        ready: queue.Queue = queue.Queue()
        for s in self._slots:
            free.put(s)
        stop = threading.Event()
        end = object()

        def front_worker():
            try:
                for f in frames:
                    while True:
                        if stop.is_set():
                            return
                        try:
                            slot = free.get(timeout=0.1)
                            break
                        except queue.Empty:
                            continue
                    self._front(f, slot, copy=True)
                    ready.put(slot)
                ready.put(end)
            except BaseException as e:  # hand it to the consumer, which raises it in its own thread
                ready.put(e)

        if self._streaming:
            raise RuntimeError("Pipeline.stream: another overlapped stream() is already running on this pipeline")
        self._streaming = True
        worker = threading.Thread(target=front_worker, name="wbg-front", daemon=True)
        worker.start()
        try:
            while True:
                item = ready.get()
                if item is end:
                    return
                if isinstance(item, BaseException):
                    raise item
                matte = self._back(item)
                free.put(item)
                yield matte
        finally:
            stop.set()
            worker.join(timeout=5.0)
            self._streaming = False
