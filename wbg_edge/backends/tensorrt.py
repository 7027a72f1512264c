"""Native TensorRT backend: TensorRT 10/11 and TensorRT for RTX engines (the module comes from the
manifest artifact's `engine.module`). Device buffers, one CUDA stream, async copies, and a CUDA
graph replayed while input shapes stay fixed.

Engines are not portable across GPUs or TensorRT versions (DESIGN.md section 6): the manifest's
`engine` entry records what built it, and `engine_mismatch` compares that with this machine
before any TensorRT object exists. Nothing GPU-side is imported at module import time, and no
TensorRT runtime is created without a CUDA device (tensorrt_lean 11 segfaults, tensorrt_rtx
returns None).

Manifest fields read (artifact["engine"], as export/build.py writes them):
    module                "tensorrt" | "tensorrt_lean" | "tensorrt_rtx"
    version               the module's __version__ at build time (must equal the installed one)
    flavour               "trt10" | "trt11" | "trt-rtx" (picks the rebuild --target)
    gpu                   device name at build time; "none (ahead-of-time build)" / absent: not tied to one GPU
                          (TensorRT for RTX engines are never tied to a device name)
    compute_capabilities  ["SM86", ...] ahead-of-time targets, or "default (...)": Ampere (SM 8.0) and later
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..bundle import Artifact, Bundle, BundleError
from ..gpu import GpuInfo, require_cuda_device
from . import BackendOptions, TensorSpec

MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_rtx")


def _installed_version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # not installed, or its libraries fail to load
        return None


def rebuild_hint(bundle: Bundle, artifact: Artifact) -> str:
    eng = artifact.engine or {}
    rtx = eng.get("module") == "tensorrt_rtx" or eng.get("flavour") == "trt-rtx"
    return f"rebuild it on this machine: python -m export.build_engine --target {'trt-rtx' if rtx else 'trt'} " \
           f"--out {bundle.root}"


def _sm_list(value) -> list[str] | None:
    """Compute capabilities as "8.6" strings from "SM86" / "8.6" / [..]; None when not a list of them."""
    items = value if isinstance(value, list | tuple) else [value]
    out = []
    for v in items:
        t = str(v).upper().removeprefix("SM").strip()
        if "." not in t and t.isdigit() and len(t) >= 2:
            t = f"{t[:-1]}.{t[-1]}"
        try:
            major, minor = (int(x) for x in t.split("."))
        except ValueError:
            return None
        out.append(f"{major}.{minor}")
    return out


def engine_mismatch(bundle: Bundle, artifact: Artifact, device: GpuInfo | None,
                    installed_version: str | None = ...) -> str | None:
    """Why this engine cannot run here (one line with the rebuild command), or None if it matches.

    Pure Python: needs no GPU and creates no TensorRT object, so it is tested everywhere."""
    eng = artifact.engine
    path = bundle.path(artifact)
    if not isinstance(eng, dict) or not eng.get("module"):
        return f"{path}: manifest entry has no engine.module; {rebuild_hint(bundle, artifact)}"
    module = eng["module"]
    if module not in MODULES:
        return f"{path}: engine.module {module!r} is not one of {list(MODULES)}; {rebuild_hint(bundle, artifact)}"
    have = _installed_version(module) if installed_version is ... else installed_version
    if have is None:
        pkg = {"tensorrt_rtx": "tensorrt-rtx"}.get(module, module.replace("_", "-"))
        return f"{path}: built with {module} {eng.get('version', '?')}, which is not installed (pip install {pkg})"
    built = str(eng.get("version", ""))
    if built != have:
        return (f"{path}: built with {module} {built or '?'}, this machine has {module} {have}; "
                f"{rebuild_hint(bundle, artifact)}")
    if device is None:
        return f"{path}: no CUDA device to run the engine on"
    ccs = eng.get("compute_capabilities", eng.get("compute_capability"))
    if ccs:
        sms = _sm_list(ccs)
        if sms is not None and device.sm not in sms:
            return (f"{path}: built for compute capability {', '.join(sms)}, this GPU ({device.name}) is "
                    f"{device.sm}; {rebuild_hint(bundle, artifact)}")
        if sms is None and str(ccs).startswith("default") and device.compute_capability < (8, 0):
            return (f"{path}: built for Ampere (SM 8.0) and later, this GPU ({device.name}) is {device.sm}; "
                    f"{rebuild_hint(bundle, artifact)} --compute-capability SM{device.sm.replace('.', '')}")
    gpu = str(eng.get("gpu") or "")
    tied = gpu and gpu.lower() != "any" and not gpu.lower().startswith("none")
    if module != "tensorrt_rtx" and tied and gpu != device.name:
        return f"{path}: built on {gpu}, this GPU is {device.name}; {rebuild_hint(bundle, artifact)}"
    return None


class TensorRTBackend:
    """Runs one engine on host arrays: H2D copies, enqueue (or graph replay), D2H copies, one sync."""

    concurrent_runs = False  # one execution context, stream and set of device buffers: runs take turns

    def __init__(self, path: str | Path, module: str = "tensorrt", options: BackendOptions = BackendOptions(),
                 data: bytes | None = None):  # data: the engine bytes checked against the manifest
        self.path = Path(path)
        # Device check first: never create a TensorRT runtime without a CUDA device.
        self.device = require_cuda_device(f"TensorRT engine {self.path}", options.device)
        if module not in MODULES:
            raise ValueError(f"{self.path}: TensorRT module {module!r} is not one of {list(MODULES)}")
        try:
            trt = importlib.import_module(module)
        except ImportError:
            raise RuntimeError(f"{self.path}: needs python module {module!r}, which is not installed") from None
        from .cuda_memory import open_memory

        self._trt = trt
        self._mem = open_memory(options.memory, options.device)
        self.name = f"trt-{module}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data if data is not None else self.path.read_bytes())
        if self._engine is None:
            raise BundleError(f"{self.path}: {module} {trt.__version__} could not deserialize the engine "
                              f"(built for another GPU or TensorRT version?); rebuild it with "
                              f"python -m export.build_engine")
        self._context = self._engine.create_execution_context()
        self._stream = self._mem.stream()
        self._use_graph = options.cuda_graph and getattr(self._mem, "supports_graphs", False)
        self._graph = None
        self._graph_shapes: dict | None = None
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device ptr, capacity bytes)
        self._shapes: dict[str, tuple] = {}
        self._inputs: dict[str, TensorSpec] = {}
        self._outputs: dict[str, TensorSpec] = {}
        for i in range(self._engine.num_io_tensors):
            n = self._engine.get_tensor_name(i)
            spec = TensorSpec(n, tuple(self._engine.get_tensor_shape(n)),
                              np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))))
            is_input = self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs)[n] = spec

    @classmethod
    def from_bundle(cls, bundle: Bundle, artifact: Artifact, options: BackendOptions = BackendOptions()):
        device = require_cuda_device(f"TensorRT engine {bundle.path(artifact)}", options.device)
        why = engine_mismatch(bundle, artifact, device)
        if why:
            raise BundleError(why)
        return cls(bundle.path(artifact), artifact.engine["module"], options, data=bundle.verified_bytes(artifact))

    def inputs(self) -> dict[str, TensorSpec]:
        return dict(self._inputs)

    def max_shape(self, name: str) -> tuple[int, ...] | None:
        """The largest input shape the engine's optimisation profile 0 accepts (None: unknown)."""
        try:
            return tuple(self._engine.get_tensor_profile_shape(name, 0)[2])
        except Exception:  # not an input, or no profile
            return None

    def outputs(self) -> dict[str, TensorSpec]:
        return dict(self._outputs)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, cap = self._buffers.get(name, (0, 0))
        if nbytes > cap:  # grow only; addresses change, so any captured graph is stale
            if ptr:
                self._mem.free(ptr)
            ptr = self._mem.malloc(nbytes)
            self._buffers[name] = (ptr, nbytes)
            self._context.set_tensor_address(name, ptr)
            self._drop_graph()
        return ptr

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._mem.destroy_graph(self._graph)
        self._graph, self._graph_shapes = None, None

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream):
            raise RuntimeError(f"{self.path}: TensorRT execute_async_v3 failed")

    def run(self, feeds: Mapping[str, np.ndarray],
            out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        self._mem.bind_thread()  # an overlapped Pipeline.stream runs models on its own threads
        shapes = {}
        for name, spec in self._inputs.items():
            if name not in feeds:
                raise ValueError(f"{self.path}: missing input {name!r}")
            a = np.ascontiguousarray(feeds[name], dtype=spec.dtype)
            shapes[name] = a.shape
            if self._shapes.get(name) != a.shape:
                if not self._context.set_input_shape(name, a.shape):
                    raise ValueError(f"{self.path}: input {name!r} shape {a.shape} is outside the engine's profile")
                self._shapes[name] = a.shape
                self._drop_graph()
            ptr = self._buffer(name, a.nbytes)
            self._mem.htod_async(ptr, a.ctypes.data, a.nbytes, self._stream)
            feeds = {**feeds, name: a}  # keep the converted array alive until the sync below
        results = {}
        for name, spec in self._outputs.items():
            shape = tuple(self._context.get_tensor_shape(name))
            dst = out.get(name) if out is not None else None
            if dst is None:
                dst = np.empty(shape, spec.dtype)
            elif dst.dtype != spec.dtype or not dst.flags.c_contiguous or dst.size != int(np.prod(shape)):
                raise ValueError(f"{self.path}: output buffer {name!r} must be C-contiguous {spec.dtype} "
                                 f"of shape {shape}, got {dst.dtype} {dst.shape}")
            self._buffer(name, dst.nbytes)
            results[name] = dst
        if not self._use_graph:
            self._enqueue()
        elif self._graph is not None and self._graph_shapes == shapes:
            self._mem.launch(self._graph, self._stream)
        else:
            # First run at these shapes goes straight (TensorRT may allocate or tune during it);
            # then capture one enqueue into a graph that later frames replay.
            self._enqueue()
            self._mem.synchronize(self._stream)
            try:
                self._mem.begin_capture(self._stream)
                self._enqueue()
                self._graph = self._mem.end_capture(self._stream)
                self._graph_shapes = shapes
            except RuntimeError:
                self._use_graph = False  # engine not capturable here: plain enqueue from now on
                self._graph = None
                try:
                    self._mem.end_capture(self._stream)
                except RuntimeError:
                    pass
        for name, dst in results.items():
            self._mem.dtoh_async(dst.ctypes.data, self._buffers[name][0], dst.nbytes, self._stream)
        self._mem.synchronize(self._stream)
        return results

    def close(self) -> None:
        if getattr(self, "_mem", None) is None:
            return
        self._drop_graph()
        for ptr, _ in self._buffers.values():
            self._mem.free(ptr)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            self._mem.destroy_stream(self._stream)
            self._stream = None
        self._context = self._engine = self._runtime = None
        self._mem = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
