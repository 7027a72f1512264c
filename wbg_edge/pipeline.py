"""The Pipeline: one owner for the stage runners, the buffers and the temporal state (DESIGN.md section 1).

    frame u8 BGR ─> preprocess ─> depth ─> normalise D ─> coarse (rgbd matting | rgb segmenter) ─> band
         │                                                                                        │
         └──────────────────────> refine_pack ─> refiner ─> refine_finish (alpha + output) <──────┘

`Pipeline(PipelineConfig(...)).process(frame)` returns a `Matte`. Buffers are allocated per frame
size (again only when the size changes), so the hot path allocates almost nothing. The arrays of a
returned Matte belong to the pipeline and stay valid for the next two `process` calls (a ring of
three output buffers, so a sink on another thread can still be writing one); `Matte.copy()` keeps one.

`Pipeline.process_batch(frames)` (offline throughput) gives the same Mattes as `process` on each frame
in turn, with one depth call and one coarse call for all N frames (models whose batch dimension is
fixed, or bounded by an engine profile, are called in chunks they accept) and the boundary patches of
all N frames in one refiner call; the fused finish runs per frame, in order, so temporal smoothing and
NaN pass-through are those of `process`. The ring then holds N + 2 buffers: all N Mattes stay valid
until the next call, and two more (a sink thread may still be writing the last two).

`Pipeline.stream(frames)` yields one Matte per frame; with `overlap=True` two frames are processed at
once, each on its own thread ("lane") from read to finish, with the steps that need frame order
(reading, depth reuse, temporal smoothing, the output ring) taken in turns. Each model then runs on half
the cores (one thread on a 2-core CPU), which wastes less CPU than one model on every core (thread
hand-offs, idle waits at the end of each operator), and the pipeline's own work runs beside the other
lane's models instead of between models. Throughput goes up; a result comes out about a frame later.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from . import native
from .backends import Backend, BackendOptions, choose_backend, open_backend
from .band import BandSelector
from .bundle import Bundle, BundleError, default_bundle_dir, load_bundle
from .compose import Background, compose
from .settings import MODES, PipelineConfig, Resolved, resolve  # noqa: F401 (MODES, PipelineConfig: public here too)

MODEL_STAGES = ("depth", "coarse", "refiner")
STAGES = ("preprocess", "depth", "normalise", "coarse", "band", "pack", "refiner", "finish")
INV255 = np.float32(1.0 / 255.0)
EPS = np.float32(1e-6)
MAX_ASPECT = 4  # model / refine grids are at most 4:1, whatever the frame
IN_FLIGHT = 3   # frames an overlapped stream works on at once (two lanes, and one waiting for a lane)


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


def _alpha2d(coarse: np.ndarray) -> np.ndarray:
    """The (H, W) alpha of one frame's coarse output, NCHW (1, 1, H, W) or NHWC (1, H, W, 1)."""
    hw = [d for d in coarse.shape if d != 1]
    return coarse.reshape(hw) if len(hw) == 2 else coarse.reshape(coarse.shape[-2:])


def _rows2d(a: np.ndarray) -> np.ndarray:
    """A C-contiguous array as 2-D rows (what cv2.norm takes)."""
    return a.reshape(-1, a.shape[-1])


class _Model:
    """A backend bound to one input and one output name, with output buffers reused per input shape (per
    calling thread: an overlapped stream runs a model from two threads)."""

    def __init__(self, backend: Backend, inp: str, out: str):
        self.backend, self.inp, self.out = backend, inp, out
        spec_in, spec_out = backend.inputs()[inp], backend.outputs()[out]
        self.in_dtype, self.out_dtype = spec_in.dtype, spec_out.dtype
        self._local = threading.local()
        # A backend that cannot run from two threads at once (one TensorRT context) takes them in turn.
        self._lock = contextlib.nullcontext() if getattr(backend, "concurrent_runs", False) else threading.Lock()
        self._chunked: dict[tuple, np.ndarray] = {}
        # Largest batch one call takes: 1 when the artifact fixes it (e.g. an imported segmenter), the engine
        # profile's bound for TensorRT, else unbounded (ONNX dynamic "N"; TensorRT reports -1).
        dim0 = spec_in.shape[0] if spec_in.shape else None
        if isinstance(dim0, (int, np.integer)) and dim0 > 0:
            self.max_batch = 1
        else:
            limit = backend.max_shape(inp)
            self.max_batch = max(1, int(limit[0])) if limit else 1 << 30

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        with self._lock:
            if out is not None:
                return self.backend.run({self.inp: x}, {self.out: out})[self.out]
            bufs = self._local.__dict__.setdefault("bufs", {})
            buf = bufs.get(x.shape)
            if buf is None:  # first run at this shape learns the output shape
                res = np.ascontiguousarray(self.backend.run({self.inp: x})[self.out])
                if len(bufs) >= 4:
                    bufs.clear()
                bufs[x.shape] = res
                return res
            return self.backend.run({self.inp: x}, {self.out: buf})[self.out]

    def chunks(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """x (N, ...) run in calls of at most `max_batch` items, results stacked (N, ...) in one buffer."""
        n, k = len(x), self.max_batch
        if n <= k:
            return self(x, out)
        start = 0
        if out is None:  # the first chunk learns the per-item output shape
            first = self(x[:k])
            out = self._chunked.get(x.shape)
            if out is None or out.shape[1:] != first.shape[1:]:
                if len(self._chunked) >= 2:
                    self._chunked.clear()
                out = self._chunked[x.shape] = np.empty((n, *first.shape[1:]), first.dtype)
            np.copyto(out[:k], first)
            start = k
        for s in range(start, n, k):
            self(x[s:s + k], out[s:s + k])
        return out


@dataclass
class _Slot:
    """Front-half buffers for one frame in flight (IN_FLIGHT of them when frames overlap)."""

    geom: Geometry | None = None
    frame: np.ndarray | None = None       # the BGR frame (a view of the caller's, or our copy)
    frame_buf: np.ndarray | None = None   # our copy when overlapping (callers may reuse their buffer)
    model_in: np.ndarray | None = None    # float32 (1, 4, Hm, Wm) R,G,B,D (rgbd contract)
    coarse_small: np.ndarray | None = None  # u8 at the rgb contract's fixed size
    coarse_in: np.ndarray | None = None   # rgb contract input (NCHW or NHWC)
    depth_in: np.ndarray | None = None
    depth: np.ndarray | None = None       # normalised D (float32 2-D) or None when depth is off
    bad: bool = False                     # a model returned NaN / Inf for this frame
    coarse_out: np.ndarray | None = None  # the coarse model's output for this slot's frame
    coarse_out_for: tuple | None = None   # ... and the input shape it was made for
    timings: dict = field(default_factory=dict)
    index: int = 0


@dataclass
class _Group:
    """Front-half buffers of a batch: (N, ...) model inputs whose rows are the slots' own inputs (views)."""

    geom: Geometry
    slots: list[_Slot]
    model_in: np.ndarray | None
    coarse_in: np.ndarray | None
    depth_in: np.ndarray | None


@dataclass
class _RefineBuffers:
    """Band selection and the refiner's input and output for one frame in flight: full grid, or windows."""

    band: BandSelector | None             # None: patches off (always the full grid)
    pack_full: np.ndarray                 # (1, 5, Hr, Wr)
    delta_full: np.ndarray
    pack_patches: np.ndarray | None       # (max, 5, Q, Q), Q = P + 2 * context
    delta_patches: np.ndarray | None


@dataclass
class _Back:
    """Back-half buffers for one frame size."""

    geom: Geometry
    max_batch: int                        # most patch windows one refiner call takes at this size
    refine: list[_RefineBuffers]          # one set per frame that can be between coarse and finish at once
    pack_inner: np.ndarray | None         # (max, 5, P, P) inner windows when context > 0
    delta_inner: np.ndarray | None
    alphas: list[np.ndarray]              # output ring (3, or N + 2 after a batch of N)
    images: list[np.ndarray]
    background: Background
    scratch: dict[str, np.ndarray] = field(default_factory=dict)  # batch-wide refiner inputs / outputs
    ring: int = 0                         # outputs made at this size (a batch may mix sizes: one ring each)


@dataclass
class _Work:
    """One frame between its coarse model and its finish."""

    slot: _Slot
    b: _Back
    tm: dict
    buffers: int = 0                      # which of b.refine this frame packs into
    bad: bool = False
    alpha_coarse: np.ndarray | None = None
    patches: np.ndarray | None = None     # patch origins on the refine grid (None: the full grid)
    windows: np.ndarray | None = None     # what the refiner sees (patches widened by the context)
    packed: np.ndarray | None = None
    delta: np.ndarray | None = None
    refined: float = 0.0


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
        # Overlapped, two threads run models at once: half the cores each, and no idle spinning.
        self._lane_threads = max(1, native.usable_cpus() // 2)
        threads = config.threads or (self._lane_threads if config.overlap else None)
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
        self.settings: Resolved = resolve(config, self.bundle.model_res, self.bundle.refine_res,
                                          self.bundle.runtime, "depth" in stages)
        self.model_res, self.refine_res = self.settings.model_res, self.settings.refine_res
        self.patch_context, self.depth_res = self.settings.patch_context, self.settings.depth_res
        self._background_spec, self.mode = self.settings.background, self.settings.mode
        # state (the pipeline is the only owner; DESIGN.md / STYLE.md)
        self._geoms: dict[tuple[int, int], Geometry] = {}
        self._slot = _Slot()  # process()'s buffers (an overlapped stream has its own)
        self._group: _Group | None = None  # process_batch's slots
        self._backs: dict[tuple[int, int], _Back] = {}
        self._index = 0
        self._prev_alpha: np.ndarray | None = None
        self._depth_cache: np.ndarray | None = None
        self._depth_ref: np.ndarray | None = None   # depth input when depth was last computed (motion test)
        self._depth_age = 0
        self._depth_cache_geom: Geometry | None = None
        self._alloc_lock = threading.Lock()
        self._streaming = False
        self._lanes: list[_Lane] = []  # the last overlapped stream's threads
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
        if self._busy():
            raise RuntimeError("Pipeline.process called while an overlapped stream() is running on this pipeline")
        slot = self._slot
        self._front(frame, slot, copy=False)
        return self._back(slot)

    def process_batch(self, frames: Sequence[np.ndarray], keep: int = 2) -> list[Matte]:
        """`process` on each frame in order, with the model calls batched across the frames (offline
        throughput). Frames of different sizes are run as consecutive batches of one size. All returned
        Mattes stay valid until the next call, and so do the `keep` Mattes made before this one (those a
        sink thread may still be writing: 2 with run_stream's writer, N + 1 behind a queue of N). With depth reuse
        (depth_every > 1) depth runs frame by frame, as in `process` (reuse depends on the last depth).
        Timings: a batched model call is shared out evenly; `total` is the call's wall time / N."""
        if self._busy():
            raise RuntimeError("Pipeline.process_batch called while an overlapped stream() is running on this "
                               "pipeline")
        if isinstance(frames, np.ndarray) or not isinstance(frames, Sequence):
            raise ValueError(f"frames must be a list of frames, got {type(frames).__name__}")
        if not frames:
            raise ValueError("frames is empty: process_batch needs at least one frame")
        if not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be an integer >= 0, got {keep!r}")
        bgrs = []
        for i, f in enumerate(frames):  # all checked before any state changes
            try:
                bgrs.append(as_bgr(f))
            except ValueError as e:
                raise ValueError(f"frames[{i}]: {e}") from None
        mattes: list[Matte] = []
        start = 0
        for end in range(1, len(bgrs) + 1):
            if end == len(bgrs) or bgrs[end].shape != bgrs[start].shape:
                mattes += self._batch(bgrs[start:end], keep)
                start = end
        return mattes

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Matte]:
        """One Matte per frame, in order; preprocess and finish on helper threads when config.overlap."""
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
        self._alloc_group([slot], g, copy)

    def _alloc_group(self, slots: list[_Slot], g: Geometry, copy: bool) -> _Group:
        """Front buffers for len(slots) frames of geometry g: model inputs are (N, ...) arrays and each slot
        holds its row (a view), so a batched model call reads them all without a copy."""
        n = len(slots)
        hm, wm = g.model
        model_in = coarse_in = depth_in = None
        if self.coarse_contract == "rgbd":
            model_in = np.zeros((n, 4, hm, wm), self.coarse_model.in_dtype)  # D plane stays 0 without depth
        else:
            hf, wf = g.coarse
            shape = (n, hf, wf, 3) if self.coarse_layout == "NHWC" else (n, 3, hf, wf)
            coarse_in = np.empty(shape, self.coarse_model.in_dtype)
        if self.depth_model is not None and not (g.depth == g.model and model_in is not None):
            hd, wd = g.depth
            depth_in = np.empty((n, 3, hd, wd), self.depth_model.in_dtype)
        for i, slot in enumerate(slots):
            slot.geom = g
            slot.frame_buf = np.empty((*g.frame, 3), np.uint8) if copy else None
            slot.model_in = model_in[i:i + 1] if model_in is not None else None
            slot.coarse_in = coarse_in[i:i + 1] if coarse_in is not None else None
            slot.coarse_small = np.empty((*g.coarse, 3), np.uint8) if coarse_in is not None else None
            slot.depth_in = depth_in[i:i + 1] if depth_in is not None else None
            slot.depth = None
        return _Group(g, slots, model_in, coarse_in, depth_in)

    def _front(self, frame: np.ndarray, slot: _Slot, copy: bool, depth: bool = True) -> None:
        self._prepare(frame, slot, copy)
        self._admit(slot)
        if depth and self.depth_model is not None:
            self._depth(slot, slot.geom, slot.timings)

    def _admit(self, slot: _Slot) -> None:
        """Frame number and depth-cache validity: state of the model thread, taken in frame order."""
        if self._depth_cache is not None and self._depth_cache_geom != slot.geom:
            self._reset_depth()  # (the back half drops the previous alpha itself when the size changes)
        slot.index = self._index
        self._index += 1

    def _prepare(self, frame: np.ndarray, slot: _Slot, copy: bool) -> None:
        """Preprocess one frame into `slot`: no model, no temporal state (the overlapped stream runs it on
        its "prepare" thread)."""
        t0 = time.perf_counter()
        bgr = as_bgr(frame)
        h, w = bgr.shape[:2]
        g = self.geometry(h, w)
        if slot.geom != g or (copy and slot.frame_buf is None):
            self._alloc_slot(slot, g, copy)
        if copy:
            np.copyto(slot.frame_buf, bgr)
            bgr = slot.frame_buf
        slot.frame, slot.bad = bgr, False
        # Model inputs straight from the frame in one pass each (the fused op's sampling), no u8 detour.
        if slot.model_in is not None:
            native.frame_planes(bgr, slot.model_in[0, :3])
        elif self.coarse_layout == "NHWC":
            hf, wf = g.coarse
            cv2.resize(bgr, (wf, hf), dst=slot.coarse_small, interpolation=cv2.INTER_LINEAR)
            np.multiply(slot.coarse_small[:, :, ::-1], INV255, out=slot.coarse_in[0])
        else:
            native.frame_planes(bgr, slot.coarse_in[0])
        if slot.depth_in is not None:
            if slot.model_in is not None and slot.model_in.dtype == slot.depth_in.dtype == np.float32:
                # depth at half the model resolution: a 2x2 mean of the model planes (less aliasing)
                hd, wd = g.depth
                for c in range(3):
                    cv2.resize(slot.model_in[0, c], (wd, hd), dst=slot.depth_in[0, c], interpolation=cv2.INTER_LINEAR)
            else:
                native.frame_planes(bgr, slot.depth_in[0])
        slot.timings = {"preprocess": (time.perf_counter() - t0) * 1e3, "depth": 0.0, "normalise": 0.0}

    def _depth(self, slot: _Slot, g: Geometry, tm: dict) -> None:
        t0 = time.perf_counter()
        reuse = False
        if self.config.depth_every > 1 and self._depth_cache is not None \
                and self._depth_age < self.config.depth_every - 1:
            ref = self._depth_planes(slot)
            motion = cv2.norm(_rows2d(ref), _rows2d(self._depth_ref), cv2.NORM_L1) / ref.size
            reuse = motion <= self.config.depth_motion
        if reuse:
            self._depth_age += 1
            self._use_depth(slot, g, self._depth_cache)
        else:
            x = self._depth_planes(slot)
            t1 = time.perf_counter()
            raw = self.depth_model(x)
            tm["depth"] = (time.perf_counter() - t1) * 1e3
            self._use_depth(slot, g, self._normalise(slot, g, raw))
        tm["normalise"] = (time.perf_counter() - t0) * 1e3 - tm["depth"]  # resize, motion test, min-max, copies

    @staticmethod
    def _depth_planes(slot: _Slot) -> np.ndarray:
        """The depth model's input for this slot (made by _prepare)."""
        if slot.depth_in is not None:
            return slot.depth_in
        return slot.model_in[:, :3]  # same resolution: the matting input's RGB planes are the depth input

    def _normalise(self, slot: _Slot, g: Geometry, raw: np.ndarray) -> np.ndarray | None:
        """Min-max normalised depth into the cache; NaN / Inf marks the frame bad and keeps the last depth."""
        raw2 = raw.reshape(raw.shape[-2:])
        mn, mx = float(raw2.min()), float(raw2.max())
        if not (np.isfinite(mn) and np.isfinite(mx)):
            slot.bad = True
            return self._depth_cache
        if self._depth_cache is None or self._depth_cache.shape != raw2.shape:
            self._depth_cache = np.empty(raw2.shape, np.float32)
        d = self._depth_cache
        np.subtract(raw2, np.float32(mn), out=d)
        np.multiply(d, np.float32(1.0 / (mx - mn + EPS)), out=d)
        self._depth_cache_geom = g
        if self.config.depth_every > 1:
            ref = self._depth_planes(slot)
            if self._depth_ref is None or self._depth_ref.shape != ref.shape:
                self._depth_ref = np.empty_like(ref)
            np.copyto(self._depth_ref, ref)
        self._depth_age = 0
        return d

    def _use_depth(self, slot: _Slot, g: Geometry, d: np.ndarray | None) -> None:
        if d is None:
            return
        if slot.depth is None or slot.depth.shape != d.shape:
            slot.depth = np.empty(d.shape, np.float32)
        np.copyto(slot.depth, d)  # a private copy: the cache may move on while this frame is in flight
        if slot.model_in is not None:
            hm, wm = g.model
            if d.shape == (hm, wm):
                np.copyto(slot.model_in[0, 3], d)
            else:
                cv2.resize(d, (wm, hm), dst=slot.model_in[0, 3], interpolation=cv2.INTER_LINEAR)

    # ------------------------------------------------------------------ back half: coarse, band, refine, finish
    def _alloc_back(self, g: Geometry) -> _Back:
        b = self._backs.get(g.frame)
        if b is not None:
            return b
        with self._alloc_lock:  # the lanes of an overlapped stream may meet a new size at once
            b = self._backs.get(g.frame)
            return b if b is not None else self._new_back(g)

    def _new_back(self, g: Geometry) -> _Back:
        hr, wr = g.refine
        p = self.config.patch_size
        q = p + 2 * self.patch_context
        dt_in, dt_out = self.refiner_model.in_dtype, self.refiner_model.out_dtype
        band = None
        pack_i = delta_i = None
        max_batch = 1 << 30
        if self.config.patches and q <= min(hr, wr):
            hc, wc = self._coarse_out_shape(g)
            band = BandSelector((hc, wc), (hr, wr), p, self.config.band_dilation)
            if q != p:
                pack_i = np.empty((band.max_patches, 5, p, p), dt_in)
                delta_i = np.empty((band.max_patches, 1, p, p), dt_out)
            max_batch = min(self.refiner_model.max_batch, band.max_patches)  # engine profiles bound it
        n = band.max_patches if band is not None else 0
        # Overlapped, IN_FLIGHT frames are between coarse and finish at once, and while the caller holds
        # frame m (with m - 1 and m - 2 still valid for a sink thread) the lanes may finish m + 1 .. m + IN_FLIGHT.
        sets, ring = (IN_FLIGHT, IN_FLIGHT + 3) if self.config.overlap else (1, 3)
        refine = [_RefineBuffers(band if i == 0 or band is None else
                                 BandSelector(band.coarse_size, (hr, wr), p, self.config.band_dilation),
                                 np.empty((1, 5, hr, wr), dt_in), np.empty((1, 1, hr, wr), dt_out),
                                 np.empty((n, 5, q, q), dt_in) if n else None,
                                 np.empty((n, 1, q, q), dt_out) if n else None) for i in range(sets)]
        h, w = g.frame
        img_shape = {"alpha": (h, w), "rgba": (h, w, 4), "composite": (h, w, 3)}[self.mode]
        b = _Back(g, max_batch, refine, pack_i, delta_i, [np.zeros((h, w), np.float32) for _ in range(ring)],
                  [np.zeros(img_shape, np.uint8) for _ in range(ring)], Background(self._background_spec))
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
        w = self._coarse(slot)
        self._band_pack(w)
        self._refiner(w)
        return self._end(w)

    def _coarse(self, slot: _Slot, buffers: int = 0) -> _Work:
        """The coarse model on a prepared frame. Its output goes to the slot's own buffer: the finish of
        this frame may still read it while the next frame's coarse model runs (overlapped stream)."""
        w = _Work(slot, self._alloc_back(slot.geom), dict(slot.timings), buffers=buffers, bad=slot.bad)
        if not w.bad:
            x = slot.model_in if slot.model_in is not None else slot.coarse_in
            t0 = time.perf_counter()
            if slot.coarse_out is not None and slot.coarse_out_for == x.shape:
                out = self.coarse_model(x, out=slot.coarse_out)
            else:
                out = slot.coarse_out = self.coarse_model(x).copy()
                slot.coarse_out_for = x.shape
            w.tm["coarse"] = (time.perf_counter() - t0) * 1e3
            w.alpha_coarse = _alpha2d(out)
            w.bad = not np.isfinite(w.alpha_coarse.sum())
        return w

    def _band_pack(self, w: _Work) -> None:
        """Band selection and the fused pack, into the frame's set of refine buffers."""
        if w.bad:
            return
        b, tm = w.b, w.tm
        t0 = time.perf_counter()
        w.patches, w.windows, w.refined = self._select(b, w.alpha_coarse, w.buffers)
        n = len(w.patches) if w.patches is not None else 0
        r = b.refine[w.buffers]
        w.packed, w.delta = (r.pack_patches[:n], r.delta_patches[:n]) if n else (r.pack_full, r.delta_full)
        t1 = time.perf_counter()
        tm["band"] = (t1 - t0) * 1e3
        self._pack(w.slot, w.alpha_coarse, w.windows, w.packed)
        tm["pack"] = (time.perf_counter() - t1) * 1e3

    def _refiner(self, w: _Work) -> None:
        if w.bad:
            return
        t0 = time.perf_counter()
        self.refiner_model(w.packed, out=w.delta)
        w.tm["refiner"] = (time.perf_counter() - t0) * 1e3
        w.bad = not np.isfinite(w.delta.sum())

    def _end(self, w: _Work) -> Matte:
        matte = self._finish(w.slot, w.b, w.alpha_coarse, w.patches, w.windows, w.packed, w.delta, w.refined,
                             w.bad, w.tm)
        return self._totals(matte, sum(w.tm.get(k, 0.0) for k in STAGES))

    def _select(self, b: _Back, alpha_coarse: np.ndarray, buffers: int = 0):
        """(patches, windows, refined): the band's patch origins and the (P + 2c)^2 windows the refiner sees
        (shifted inside the grid at its borders), or (None, None, 1.0) for the full grid."""
        hr, wr = b.geom.refine
        p, c = self.config.patch_size, self.patch_context
        q = p + 2 * c
        band = b.refine[buffers].band
        if band is None:
            return None, None, 1.0
        patches = band.select(alpha_coarse)
        n = len(patches)
        if n == 0:  # nothing uncertain: one patch keeps the data path uniform
            patches = band._origins[:1]
            n = 1
        if n * q * q > self.config.full_grid_above * hr * wr or n > b.max_batch:
            return None, None, 1.0
        windows = patches
        if c:
            windows = np.empty_like(patches)
            np.clip(patches[:, 0] - c, 0, hr - q, out=windows[:, 0])
            np.clip(patches[:, 1] - c, 0, wr - q, out=windows[:, 1])
        return patches, windows, n * p * p / (hr * wr)

    def _pack(self, slot: _Slot, alpha_coarse: np.ndarray, windows: np.ndarray | None, packed: np.ndarray) -> None:
        """refine_pack of one frame into `packed`: (1, 5, Hr, Wr) for the full grid, (n, 5, Q, Q) for windows."""
        grid = slot.geom.refine
        if windows is None:
            native.refine_pack(slot.frame, slot.depth, alpha_coarse, packed, refine_size=grid)
        else:
            native.refine_pack(slot.frame, slot.depth, alpha_coarse, packed, patches=windows,
                               patch_size=packed.shape[-1], refine_size=grid)

    def _finish(self, slot: _Slot, b: _Back, alpha_coarse, patches, windows, packed, delta, refined: float,
                bad: bool, tm: dict) -> Matte:
        """The per-frame end, in frame order: next ring buffer, fused finish (or pass-through), temporal state."""
        b.ring += 1
        alpha_out, image_out = b.alphas[b.ring % len(b.alphas)], b.images[b.ring % len(b.images)]
        frame = slot.frame
        prev = self._prev_alpha if self._prev_alpha is not None and self._prev_alpha.shape == alpha_out.shape \
            else None
        background = b.background.fill(frame) if self.mode == "composite" else None
        if not bad:
            t0 = time.perf_counter()
            p = self.config.patch_size
            if patches is not None and self.patch_context:
                packed, delta = self._inner(b, packed, delta, patches - windows, p)
            s = self.config.smoothing if prev is not None else 0.0
            native.refine_finish(packed, delta, frame, alpha_out, patches=patches, refine_size=slot.geom.refine,
                                 alpha_coarse=alpha_coarse, mode=self.mode, background=background, out=image_out,
                                 prev_alpha=prev if s > 0 else None, smoothing=s)  # (reading prev costs traffic)
            tm["finish"] = (time.perf_counter() - t0) * 1e3
        else:
            self._passthrough(frame, prev, alpha_out, image_out, background)
        self._prev_alpha = alpha_out
        return Matte(alpha_out, image_out, self.mode, tm, slot.index, refined, passthrough=bad)

    @staticmethod
    def _totals(matte: Matte, total_ms: float) -> Matte:
        tm = matte.timings
        for key in ("coarse", "band", "pack", "refiner", "finish"):
            tm.setdefault(key, 0.0)
        tm["total"] = total_ms
        tm["models"] = tm["depth"] + tm["coarse"] + tm["refiner"]
        tm["overhead"] = tm["total"] - tm["models"]
        return matte

    # ------------------------------------------------------------------ batches (offline throughput)
    def _batch(self, bgrs: list[np.ndarray], keep: int) -> list[Matte]:
        """process() on each of N frames of one size, with the model calls batched across them."""
        t_start = time.perf_counter()
        n = len(bgrs)
        g = self.geometry(*bgrs[0].shape[:2])
        grp = self._group
        if grp is None or grp.geom != g or len(grp.slots) < n:
            grp = self._group = self._alloc_group([_Slot() for _ in range(n)], g, copy=False)
        slots = grp.slots[:n]
        # Depth reuse (depth_every > 1) decides frame by frame on the last computed depth: per-frame depth then.
        batched_depth = self.depth_model is not None and self.config.depth_every == 1
        for f, slot in zip(bgrs, slots, strict=True):
            self._front(f, slot, copy=False, depth=not batched_depth)
        if batched_depth:
            self._batch_depth(grp, slots)
        b = self._alloc_back(g)
        if len(b.alphas) < n + keep:  # fresh buffers: the old ones may still be read through earlier Mattes
            b.alphas = [np.zeros_like(b.alphas[0]) for _ in range(n + keep)]
            b.images = [np.zeros_like(b.images[0]) for _ in range(n + keep)]
        tms = [dict(s.timings) for s in slots]
        bad = [s.bad for s in slots]
        x = grp.model_in if grp.model_in is not None else grp.coarse_in
        t0 = time.perf_counter()
        coarse = self.coarse_model.chunks(x[:n])
        share = (time.perf_counter() - t0) * 1e3 / n
        alphas: list[np.ndarray | None] = [None] * n
        for i in range(n):
            tms[i]["coarse"] = share
            if not bad[i]:
                alphas[i] = _alpha2d(coarse[i:i + 1])
                bad[i] = not np.isfinite(alphas[i].sum())
        # Band selection per frame; patch windows of all frames stacked for one refiner call, and the frames
        # refined on the full grid stacked for another.
        sel: list[tuple] = [(None, None, 0.0)] * n
        rows = [0] * n  # a frame's first row in its stack
        n_win = n_full = 0
        for i in range(n):
            if bad[i]:
                continue
            t1 = time.perf_counter()
            sel[i] = self._select(b, alphas[i])
            tms[i]["band"] = (time.perf_counter() - t1) * 1e3
            windows = sel[i][1]
            if windows is None:
                rows[i], n_full = n_full, n_full + 1
            else:
                rows[i], n_win = n_win, n_win + len(windows)
        q = self.config.patch_size + 2 * self.patch_context
        dt_in, dt_out = self.refiner_model.in_dtype, self.refiner_model.out_dtype
        win_in = self._scratch(b, "win_in", (n_win, 5, q, q), dt_in)
        win_out = self._scratch(b, "win_out", (n_win, 1, q, q), dt_out)
        full_in = self._scratch(b, "full_in", (n_full, *b.refine[0].pack_full.shape[1:]), dt_in)
        full_out = self._scratch(b, "full_out", (n_full, *b.refine[0].delta_full.shape[1:]), dt_out)
        inputs: list[tuple] = [(None, None)] * n
        for i, slot in enumerate(slots):
            if bad[i]:
                continue
            windows = sel[i][1]
            r = rows[i]
            if windows is None:
                inputs[i] = (full_in[r:r + 1], full_out[r:r + 1])
            else:
                inputs[i] = (win_in[r:r + len(windows)], win_out[r:r + len(windows)])
            t1 = time.perf_counter()
            self._pack(slot, alphas[i], windows, inputs[i][0])
            tms[i]["pack"] = (time.perf_counter() - t1) * 1e3
        t1 = time.perf_counter()
        for stack_in, stack_out in ((win_in, win_out), (full_in, full_out)):
            if len(stack_in):
                self.refiner_model.chunks(stack_in, stack_out)
        share = (time.perf_counter() - t1) * 1e3 / n
        mattes = []
        for i, slot in enumerate(slots):
            tms[i]["refiner"] = share
            packed, delta = inputs[i]
            if not bad[i]:
                bad[i] = not np.isfinite(delta.sum())
            patches, windows, refined = sel[i]
            mattes.append(self._finish(slot, b, alphas[i], patches, windows, packed, delta, refined, bad[i],
                                       tms[i]))
        per_frame = (time.perf_counter() - t_start) * 1e3 / n  # wall time shared out: what throughput sees
        return [self._totals(m, per_frame) for m in mattes]

    def _batch_depth(self, grp: _Group, slots: list[_Slot]) -> None:
        """Depth of N frames in one call (or chunks the model accepts), normalised frame by frame in order."""
        n, g = len(slots), grp.geom
        t0 = time.perf_counter()
        x = grp.depth_in[:n] if grp.depth_in is not None else np.ascontiguousarray(grp.model_in[:n, :3])
        t1 = time.perf_counter()
        raw = self.depth_model.chunks(x)
        t2 = time.perf_counter()
        prep, share = (t1 - t0) * 1e3 / n, (t2 - t1) * 1e3 / n
        for i, slot in enumerate(slots):
            t3 = time.perf_counter()
            self._use_depth(slot, g, self._normalise(slot, g, raw[i:i + 1]))
            slot.timings["depth"] = share
            slot.timings["normalise"] = prep + (time.perf_counter() - t3) * 1e3

    @staticmethod
    def _scratch(b: _Back, name: str, shape: tuple, dtype) -> np.ndarray:
        """The first shape[0] rows of a per-size buffer that grows (with headroom) as batches need."""
        buf = b.scratch.get(name)
        if buf is None or len(buf) < shape[0] or buf.shape[1:] != tuple(shape[1:]) or buf.dtype != dtype:
            buf = b.scratch[name] = np.empty((shape[0] + shape[0] // 4, *shape[1:]), dtype)
        return buf[:shape[0]]

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
        """Frames side by side: two lanes (threads) each take whole frames, k on lane k % 2, so the load
        balances itself whatever the stages cost. What needs frame order runs in turns: reading and
        preprocessing (frame k is the k-th frame, copied before the caller may reuse its buffer), frame
        numbering with depth (reuse decides on the previous depth; one depth cache) and the finish
        (temporal smoothing, the output ring). Frame k uses slot and refine buffers k % IN_FLIGHT; the
        caller submits frame k + IN_FLIGHT once it has frame k's Matte. A caller that stops early leaves
        the frame count and smoothing as if the frames it did not receive were never read (reused depth is
        dropped)."""
        if self._busy():
            raise RuntimeError("Pipeline.stream: another overlapped stream() is already running on this pipeline")
        self._streaming = True
        it = iter(frames)
        end = object()
        ended = threading.Event()  # the input is exhausted: read no further (an iterator may not stay ended)
        slots = [_Slot() for _ in range(IN_FLIGHT)]
        reading, depth, finishing = _Turns(), _Turns(), _Turns()
        lanes = self._lanes = [_Lane(f"wbg-lane{i}", self._lane_threads) for i in range(2)]
        index, prev_alpha, last = self._index, self._prev_alpha, None

        def job(k: int):
            slot = slots[k % IN_FLIGHT]
            with reading.turn(k):  # the copy too: the caller may reuse its buffer for the next frame
                frame = end if ended.is_set() else next(it, end)
                if frame is end:
                    ended.set()
                    return end
                self._prepare(frame, slot, copy=True)
            with depth.turn(k):
                self._admit(slot)
                if self.depth_model is not None:
                    self._depth(slot, slot.geom, slot.timings)
            w = self._coarse(slot, buffers=k % IN_FLIGHT)
            self._band_pack(w)
            self._refiner(w)
            with finishing.turn(k):
                return self._end(w)

        ahead: deque[Future] = deque(lanes[k % 2].submit(job, k) for k in range(IN_FLIGHT))
        k = IN_FLIGHT
        complete = False
        try:
            while (matte := ahead.popleft().result()) is not end:
                ahead.append(lanes[k % 2].submit(job, k))  # into frame k - IN_FLIGHT's buffers: that one is done
                k += 1
                last = matte
                yield matte
            complete = True
        finally:
            for f in ahead:  # not started yet: never read another frame after the caller stops
                f.cancel()
            for t in (reading, depth, finishing):
                t.abort()  # frames waiting for a turn a failed frame never took
            for lane in lanes:
                lane.close()
            if not complete:  # forget the frames the lanes made beyond the last one handed out
                self._index = last.index + 1 if last is not None else index
                self._prev_alpha = last.alpha if last is not None else prev_alpha  # (the ring still holds it)
                self._reset_depth()
            self._streaming = False

    def _busy(self) -> bool:
        """An overlapped stream runs, or one of its lanes is still stuck in the caller's iterator."""
        return self._streaming or any(lane.alive() for lane in self._lanes)


class _Turns:
    """Sections that must run in frame order: `with turns.turn(k):` enters once frame k - 1 has left it, or
    raises once `abort()` was called. A frame that fails before its turn never takes it: the frames behind
    it wait until the caller, which waits for frames in order, meets the failure and aborts."""

    def __init__(self):
        self._next = 0
        self._aborted = False
        self._cv = threading.Condition()

    @contextlib.contextmanager
    def turn(self, k: int):
        with self._cv:
            self._cv.wait_for(lambda: self._next >= k or self._aborted)
            if self._aborted:
                raise RuntimeError("wbg_edge: the overlapped stream stopped")
        try:
            yield
        finally:
            with self._cv:
                self._next = max(self._next, k + 1)
                self._cv.notify_all()

    def abort(self) -> None:
        with self._cv:
            self._aborted = True
            self._cv.notify_all()


class _Lane:
    """One daemon thread running submitted jobs in submission order; results and errors come back as Futures.
    Its fused-op calls use `threads` worker threads (the lanes share the cores)."""

    def __init__(self, name: str, threads: int):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = threads
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, *args) -> Future:
        f: Future = Future()
        self._jobs.put((f, fn, args))
        return f

    def _run(self) -> None:
        native.set_thread_budget(self._threads)
        while (job := self._jobs.get()) is not None:
            f, fn, args = job
            if f.set_running_or_notify_cancel():
                try:
                    f.set_result(fn(*args))
                except BaseException as e:  # raised again in the thread that asks for the result
                    f.set_exception(e)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the jobs already submitted (one stuck in a source read is abandoned after `timeout`)."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()
