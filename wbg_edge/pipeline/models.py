"""The three models as the stages call them: `Model` (a backend bound to one input and one output, with
reused output buffers and batch chunking), `Models` (depth, coarse, refiner and the coarse stage's input
contract) and `open_models` (loads them from a bundle)."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np

from ..backends import Backend, BackendOptions, open_backend
from ..bundle import Artifact, Bundle


class Model:
    """A backend bound to one input and one output name, with output buffers reused per input shape (per
    calling thread: an overlapped stream runs a model from two threads)."""

    def __init__(self, backend: Backend, inp: str, out: str):
        self.backend, self.inp, self.out = backend, inp, out
        spec_in, spec_out = backend.inputs()[inp], backend.outputs()[out]
        self.in_dtype, self.out_dtype = spec_in.dtype, spec_out.dtype
        self._local = threading.local()
        # A backend that cannot run from two threads at once (one TensorRT context) takes them in turn.
        self._lock = contextlib.nullcontext() if backend.concurrent_runs else threading.Lock()
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
        """Run on x; into `out` when given, else into a buffer of this thread kept for x's shape (valid until
        the next call at that shape)."""
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


@dataclass(frozen=True)
class Models:
    """The models one pipeline runs, and how the coarse stage's input is laid out."""

    depth: Model | None           # None: depth off (D = 0), or the bundle has no depth model
    coarse: Model
    refiner: Model
    coarse_contract: str          # "rgbd": R,G,B,D at the model grid | "rgb": RGB at the artifact's own size
    coarse_layout: str            # "NCHW" | "NHWC" (rgb contract)
    coarse_fixed: tuple[int, int] | None  # the rgb contract's fixed input size

    def backends(self) -> list[Backend]:
        return [m.backend for m in (self.depth, self.coarse, self.refiner) if m is not None]


def open_models(kind: str, found: dict[str, tuple[Bundle, Artifact]], options: BackendOptions) -> Models:
    """Load the artifacts of `found` (stage -> (bundle that lists it, artifact)) with backend `kind`;
    depth only when `found` has it. What was opened is closed again when a later one fails."""
    opened: list[Backend] = []

    def load(stage: str) -> Model:
        owner, a = found[stage]
        b = open_backend(kind, owner, a, options)
        opened.append(b)
        return Model(b, next(iter(a.inputs)), next(iter(a.outputs)))

    try:
        depth = load("depth") if "depth" in found else None
        coarse, refiner = load("coarse"), load("refiner")
    except BaseException:
        for b in opened:
            b.close()
        raise
    a = found["coarse"][1]
    return Models(depth, coarse, refiner, a.contract, a.layout.upper(),
                  tuple(a.fixed_size) if a.fixed_size else None)
