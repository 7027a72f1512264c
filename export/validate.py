"""Cross-backend comparison with polygraphy: every artifact against the FP32 ONNX.

Always with explicit input shapes: the feeds are generated at the shapes asked for (polygraphy's
own data loader, given no shapes, turns every dynamic dim into 1 and would validate a 1x1 image).
    - FP32 ONNX vs FP16 ONNX: two ONNX Runtime CPU runners; runs in CI without a GPU.
    - TensorRT / TensorRT-RTX engines vs FP32 ONNX: only where a CUDA device runs them; the device
      is checked first (never create a TensorRT runtime without one).
Errors are reported as {"mean_abs", "p99.9_abs", "max_abs"} over all outputs and feeds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wbg_edge.gpu import has_cuda_device

from .fp16 import Fp16Tolerance, error_stats, within


class ValidationError(RuntimeError):
    """An artifact failed its comparison; one line naming the model."""


@dataclass(frozen=True)
class Comparison:
    reference: str
    candidate: str
    shapes: tuple[tuple[int, ...], ...]  # the explicit input shapes compared
    errors: dict
    passed: bool

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "shapes": [list(s) for s in self.shapes],
                **self.errors, "passed": self.passed}


def _onnxrt_runner(model_bytes: bytes, name: str):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(model_bytes, providers=["cpu"]), name=name)


def _run(runners, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """Outputs of each runner on each feed (polygraphy Comparator, feeds given explicitly)."""
    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.ERROR):  # polygraphy logs every runner at INFO otherwise
        results = Comparator.run(runners, data_loader=feeds)
    out = []
    for _, iterations in results:
        out.append([np.asarray(v) for it in iterations for _, v in sorted(it.items())])
    return out


def compare(ref_runner, test_runner, feeds: list[dict[str, np.ndarray]], tol: Fp16Tolerance) -> Comparison:
    ref, got = _run([ref_runner, test_runner], feeds)
    shapes = tuple(tuple(v.shape) for f in feeds for v in f.values())
    for a, b in zip(ref, got, strict=True):
        if a.shape != b.shape:
            return Comparison(ref_runner.name, test_runner.name, shapes,
                              {"mean_abs": float("inf"), "p99.9_abs": float("inf"), "max_abs": float("inf"),
                               "shape_mismatch": f"{list(a.shape)} vs {list(b.shape)}"}, False)
    errors = error_stats(np.concatenate([a.ravel() for a in ref]), np.concatenate([b.ravel() for b in got]))
    return Comparison(ref_runner.name, test_runner.name, shapes, errors, within(errors, tol))


def compare_onnx(ref_bytes: bytes, test_bytes: bytes, feeds: list[dict[str, np.ndarray]],
                 tol: Fp16Tolerance = Fp16Tolerance(), names: tuple[str, str] = ("onnx-fp32", "onnx-fp16")
                 ) -> Comparison:
    """FP32 ONNX vs another ONNX (the FP16 one), both in ONNX Runtime on the CPU."""
    return compare(_onnxrt_runner(ref_bytes, names[0]), _onnxrt_runner(test_bytes, names[1]), feeds, tol)


def compare_engine(module: str, engine_bytes: bytes, ref_bytes: bytes, feeds: list[dict[str, np.ndarray]],
                   tol: Fp16Tolerance = Fp16Tolerance(), name: str = "engine") -> Comparison:
    """A serialized engine vs the FP32 ONNX. Needs a CUDA device (checked first; raises otherwise)."""
    if not has_cuda_device():
        raise ValidationError(f"{name}: no CUDA device; engines are not deserialized without one")
    from polygraphy import config as pg_config

    pg_config.USE_TENSORRT_RTX = module == "tensorrt_rtx"
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return compare(_onnxrt_runner(ref_bytes, "onnx-fp32"), TrtRunner(EngineFromBytes(engine_bytes), name=name),
                   feeds, tol)
