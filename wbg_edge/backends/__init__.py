"""One seam for running a model: the `Backend` protocol, and the choice between backends.

A backend is loaded from one bundle artifact, reports its input/output specs by tensor name,
and runs a dict of named host arrays (optionally writing into caller-owned output arrays, so the
pipeline's hot path allocates nothing). A stage never knows which backend runs it (DESIGN.md 2).

    ort   ONNX Runtime: CPU everywhere; CUDA / TensorRT execution providers when installed
    trt   native TensorRT 10/11 or TensorRT for RTX engines (module from the manifest)
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..bundle import Artifact, Bundle, BundleError, check_io

BACKENDS = ("auto", "ort", "trt")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or str / None for dynamic dims
    dtype: np.dtype


@dataclass(frozen=True)
class BackendOptions:
    threads: int | None = None       # ORT intra-op threads (None: all cores)
    spin: bool = False               # ORT worker threads spin between runs (lower latency when idle, more CPU)
    providers: tuple[str, ...] = ()  # ORT: () = best available of ("tensorrt", "cuda", "cpu")
    memory: str = "auto"             # TensorRT device memory: "auto" | "cuda-python" | "pycuda"
    cuda_graph: bool = True          # TensorRT: replay a CUDA graph while input shapes stay fixed
    device: int = 0


@runtime_checkable
class Backend(Protocol):
    name: str               # e.g. "ort-cpu", "trt-tensorrt" (for info / logs)
    # True when `run` may be called from several threads at once, each call with its own `out` arrays (an
    # InferenceSession); False when calls must take turns (one TensorRT execution context, stream and set of
    # device buffers): the pipeline then holds a lock around them. The overlapped stream runs each model from
    # two threads.
    concurrent_runs: bool

    def inputs(self) -> dict[str, TensorSpec]: ...

    def outputs(self) -> dict[str, TensorSpec]: ...

    def max_shape(self, name: str) -> tuple[int, ...] | None:
        """Largest accepted shape of input `name` (TensorRT profiles), None when unbounded or unknown."""
        ...

    def run(self, feeds: Mapping[str, np.ndarray],
            out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run on host arrays keyed by input name. With `out`, results are written into those
        arrays (shapes must match) and returned; otherwise fresh arrays are returned."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendChoice:
    kind: str    # "ort" | "trt"
    reason: str  # one line, for `info` / `bench` / logs


def _engines_usable(bundle: Bundle, stages: set[str]) -> str | None:
    """None when every stage has an engine this machine can run, else why not (one line)."""
    from ..gpu import cuda_devices
    from .tensorrt import engine_mismatch

    engines = {s: bundle.resolve(s, "engine") for s in stages}
    missing = sorted(s for s, found in engines.items() if found is None)
    if missing:
        return f"bundle {bundle.root} has no TensorRT engine for {', '.join(missing)}"
    devices = cuda_devices()
    if not devices:
        return "no CUDA device"
    for owner, a in engines.values():
        module = (a.engine or {}).get("module", "tensorrt")
        if importlib.util.find_spec(module) is None:
            return f"python module {module!r} (for {a.file}) is not installed"
        why = engine_mismatch(owner, a, devices[0])
        if why:
            return why
    return None


def choose_backend(requested: str, bundle: Bundle, stages: set[str] | None = None) -> BackendChoice:
    """auto: trt when the bundle has engines for every stage, a CUDA device and the TensorRT module
    are present and the engines match this machine; else ort. Explicit trt fails loudly (one line)."""
    if requested not in BACKENDS:
        raise ValueError(f"backend {requested!r} is not one of {list(BACKENDS)}")
    if stages is None:
        base = bundle.base_bundle()
        stages = bundle.stages() | (base.stages() if base is not None else set())
    if requested == "ort":
        return BackendChoice("ort", "requested")
    why_not = _engines_usable(bundle, stages)
    if requested == "trt":
        if why_not:
            if why_not == "no CUDA device":
                raise RuntimeError("--backend trt needs a CUDA device, and none was found; use --backend ort")
            raise BundleError(f"--backend trt: {why_not}")
        return BackendChoice("trt", "requested")
    if why_not is None:
        return BackendChoice("trt", "auto: engines, CUDA device and TensorRT found")
    return BackendChoice("ort", f"auto: {why_not}")


def open_backend(kind: str, bundle: Bundle, artifact: Artifact,
                 options: BackendOptions = BackendOptions()) -> Backend:
    """Verify the artifact against the hash in `bundle`'s manifest (the bundle that lists it), then
    load it with backend `kind`."""
    if kind == "ort":
        if artifact.format != "onnx":
            raise BundleError(f"{bundle.path(artifact)}: ONNX Runtime needs an .onnx artifact, got {artifact.format}")
        from .onnxruntime import OrtBackend
        backend = OrtBackend(bundle.path(artifact), options, data=bundle.verified_bytes(artifact))
    elif kind == "trt":
        if artifact.format != "engine":
            raise BundleError(f"{bundle.path(artifact)}: TensorRT needs an engine artifact, got {artifact.format}")
        from .tensorrt import TensorRTBackend
        backend = TensorRTBackend.from_bundle(bundle, artifact, options)
    else:
        raise ValueError(f"backend {kind!r} is not one of ['ort', 'trt']")
    try:  # a file whose hash matches a hand-edited manifest can still break the contract
        check_io(artifact, {n: s.shape for n, s in backend.inputs().items()},
                 {n: s.shape for n, s in backend.outputs().items()}, bundle.path(artifact))
    except BundleError:
        backend.close()
        raise
    return backend
