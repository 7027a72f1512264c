"""ONNX Runtime backend: CPU everywhere, CUDA / TensorRT execution providers when the GPU build is
installed. With caller-owned output arrays it runs through IO binding, so nothing is allocated."""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import BackendOptions, TensorSpec

_PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
              "cpu": "CPUExecutionProvider"}
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(uint8)": np.uint8, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def _providers(wanted: tuple[str, ...], available: list[str]) -> list[str]:
    if not wanted:
        gpu_eps = [p for p in _PROVIDERS.values() if p in available and p != _PROVIDERS["cpu"]]
        if gpu_eps:
            from ..gpu import has_cuda_device

            if not has_cuda_device():  # onnxruntime-gpu on a machine without a GPU: CPU, no noisy EP failures
                gpu_eps = []
        return gpu_eps + [_PROVIDERS["cpu"]]
    unknown = [w for w in wanted if w not in _PROVIDERS]
    if unknown:
        raise ValueError(f"ONNX Runtime provider {unknown[0]!r} is not one of {list(_PROVIDERS)}")
    missing = [w for w in wanted if _PROVIDERS[w] not in available]
    if missing:
        raise RuntimeError(f"ONNX Runtime provider {missing[0]!r} is not available in this onnxruntime build "
                           f"(available: {', '.join(available)})")
    return [_PROVIDERS[w] for w in wanted]


class OrtBackend:
    concurrent_runs = True  # an InferenceSession may run from several threads at once

    def __init__(self, path: str | os.PathLike, options: BackendOptions = BackendOptions(),
                 data: bytes | None = None):
        """`data`: the model's bytes, already checked against the manifest (loaded instead of `path`, which
        then only names it in messages; a model from bytes cannot pull in unlisted external-data files)."""
        import onnxruntime as ort

        self.path = Path(path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = options.threads or os.cpu_count() or 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if not options.spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = _providers(options.providers, ort.get_available_providers())
        # TensorRT EP: FP16 kernels (the ONNX keeps FP32 I/O); no engine cache, so nothing is written to disk.
        providers = [(p, {"trt_fp16_enable": True}) if p == _PROVIDERS["tensorrt"] else p for p in providers]
        try:
            self._session = ort.InferenceSession(data if data is not None else str(self.path), so,
                                                 providers=providers)
        except Exception as e:  # ORT raises its own exception types; keep it to one line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeError(f"{self.path}: ONNX Runtime could not load the model ({msg})") from None
        self.provider = self._session.get_providers()[0]  # the EP that actually loaded first
        self.name = "ort-" + next((k for k, v in _PROVIDERS.items() if v == self.provider), self.provider)
        self._on_cpu = self.provider == _PROVIDERS["cpu"]
        self._inputs = {i.name: TensorSpec(i.name, tuple(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                        for i in self._session.get_inputs()}
        self._outputs = {o.name: TensorSpec(o.name, tuple(o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
                         for o in self._session.get_outputs()}
        self._local = threading.local()  # an IO binding per calling thread: runs from two threads at once

    def inputs(self) -> dict[str, TensorSpec]:
        return dict(self._inputs)

    def outputs(self) -> dict[str, TensorSpec]:
        return dict(self._outputs)

    def max_shape(self, name: str) -> tuple[int, ...] | None:
        return None  # dynamic dims are unbounded in ONNX Runtime

    def run(self, feeds: Mapping[str, np.ndarray],
            out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        if out is None or not self._on_cpu:
            res = self._session.run(None, dict(feeds))
            res = dict(zip(self._outputs, res, strict=True))
            if out is None:
                return res
            for k, v in out.items():
                np.copyto(v, res[k].reshape(v.shape))
            return dict(out)
        # CPU IO binding: ORT reads the inputs and writes the outputs in place (no copies, no allocations).
        b = getattr(self._local, "binding", None)
        if b is None:
            b = self._local.binding = self._session.io_binding()
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        for k, v in feeds.items():
            b.bind_cpu_input(k, v)
        for k, v in out.items():
            b.bind_output(k, "cpu", 0, v.dtype, v.shape, v.ctypes.data)
        self._session.run_with_iobinding(b)
        return dict(out)

    def close(self) -> None:
        self._session = None
