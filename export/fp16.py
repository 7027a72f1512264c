"""FP32 ONNX -> mixed-precision FP16 ONNX with FP32 I/O (DESIGN.md section 5).

Kept in FP32: graph inputs/outputs, reductions, normalisations, Resize (its scale/size inputs must
stay FP32) and the final clamp (the Clip that produces an output; ReLU6 Clips inside run FP16).
Default converter: onnxconverter-common. When NVIDIA ModelOpt is importable, its AutoCast is used
instead, fed with calibration inputs of real shape (with 1x1 placeholders it fails on Resize).
The result is compared with the FP32 model in ONNX Runtime on the CPU (DESIGN.md section 7:
mean |diff| <= 0.5/255, p99.9 <= 2/255); when it fails, nodes are kept FP32 by name, walking back
from the outputs, until it passes. The names kept are recorded in the manifest.
"""
from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

# op types never run in FP16 (on top of onnxconverter-common's own block list)
FP32_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceLogSumExp",
            "ReduceSumSquare", "BatchNormalization", "InstanceNormalization", "LayerNormalization",
            "GroupNormalization", "LpNormalization", "Softmax", "LogSoftmax", "Resize", "Pow", "Sqrt",
            "Exp", "Log", "Erf")
# ops that are kept FP32 when they produce a graph output (the final clamp; ReLU6 inside stays FP16)
FP32_OUTPUT_OPS = ("Clip", "Sigmoid", "Min", "Max")


class Fp16Error(RuntimeError):
    """FP16 conversion or its parity failed; one line naming the model."""


@dataclass(frozen=True)
class Fp16Tolerance:
    mean: float = 0.5 / 255
    p999: float = 2 / 255


@dataclass(frozen=True)
class Fp16Result:
    model: onnx.ModelProto
    converter: str  # "onnxconverter-common" | "modelopt-autocast"
    errors: dict  # {"mean_abs": .., "p99.9_abs": .., "max_abs": ..} vs the FP32 model (ORT CPU)
    kept_fp32_nodes: tuple[str, ...] = field(default=())
    passed: bool = True


def modelopt_available() -> bool:
    return importlib.util.find_spec("modelopt") is not None and \
        importlib.util.find_spec("modelopt.onnx.autocast") is not None


def _unshare_initializers(proto: onnx.ModelProto, nodes: set[str]) -> None:
    """Give nodes kept FP32 their own copy of initializers they share with FP16 nodes.

    Exporters and onnxslim merge equal constants (the 0 of every ReLU6 Clip and of the final clamp, the
    zero biases of a Conv and a LayerNormalization); a shared initializer cannot be both FP16 and FP32,
    and the converter then writes a type-inconsistent graph.
    """
    inits = {i.name: i for i in proto.graph.initializer}
    users: dict[str, int] = {}
    for n in proto.graph.node:
        for x in n.input:
            users[x] = users.get(x, 0) + 1
    for n in proto.graph.node:
        if n.name not in nodes:
            continue
        copies: dict[str, str] = {}  # a node may take one initializer twice (a Slice's starts and axes)
        for j, x in enumerate(n.input):
            if x in inits and users[x] > 1:
                if x not in copies:
                    copy = onnx.TensorProto()
                    copy.CopyFrom(inits[x])
                    copy.name = copies[x] = f"{x}__fp32_{n.name}"
                    proto.graph.initializer.append(copy)
                n.input[j] = copies[x]
    used = {x for n in proto.graph.node for x in n.input} | {o.name for o in proto.graph.output}
    kept = [i for i in proto.graph.initializer if i.name in used]
    if len(kept) != len(proto.graph.initializer):  # originals whose every consumer now has its own copy
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)


def _convert_occ(proto: onnx.ModelProto, keep_nodes: tuple[str, ...]) -> onnx.ModelProto:
    from onnxconverter_common import float16

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    del proto.graph.value_info[:]  # stale FP32 value_info confuses the converter's cast insertion
    block_ops = list(float16.DEFAULT_OP_BLOCK_LIST) + list(FP32_OPS)
    _unshare_initializers(proto, {n.name for n in proto.graph.node if n.op_type in block_ops} | set(keep_nodes))
    out = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=block_ops,
                                           node_block_list=list(keep_nodes))
    _restore_fp32_outputs(out)
    return out


def _restore_fp32_outputs(proto: onnx.ModelProto) -> None:
    """Make every graph output FP32 again.

    onnxconverter-common 1.16 with keep_io_types casts the output of a blocked (FP32) final node down
    to FP16 and declares the graph output FP16; the contract says FP32 I/O.
    """
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    producers = {o: n for n in proto.graph.node for o in n.output}
    for vi in proto.graph.output:
        tt = vi.type.tensor_type
        if tt.elem_type != f16:
            continue
        node = producers.get(vi.name)
        cast_to = [a for a in node.attribute if a.name == "to"] if node is not None and node.op_type == "Cast" else []
        if cast_to:
            cast_to[0].i = f32
        elif node is not None:
            hidden = f"{vi.name}__fp16"
            node.output[list(node.output).index(vi.name)] = hidden
            proto.graph.node.append(onnx.helper.make_node("Cast", [hidden], [vi.name], to=f32,
                                                          name=f"{vi.name}__to_fp32"))
        tt.elem_type = f32


def _convert_modelopt(proto: onnx.ModelProto, keep_nodes: tuple[str, ...],
                      feeds: list[dict[str, np.ndarray]]) -> onnx.ModelProto:
    from modelopt.onnx.autocast import convert_to_mixed_precision

    with tempfile.TemporaryDirectory() as tmp:
        src, calib = Path(tmp) / "model.onnx", Path(tmp) / "calib.npz"
        src.write_bytes(proto.SerializeToString())
        np.savez(calib, **feeds[0])  # real-shaped calibration inputs
        return convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16",
                                          nodes_to_exclude=[f"^{n}$" for n in keep_nodes] or None,
                                          op_types_to_exclude=list(FP32_OPS), keep_io_types=True,
                                          calibration_data=str(calib))


def convert(proto: onnx.ModelProto, keep_nodes: tuple[str, ...] = (), converter: str = "auto",
            feeds: list[dict[str, np.ndarray]] | None = None) -> tuple[onnx.ModelProto, str]:
    """One conversion; returns (model, converter name)."""
    if converter == "auto":
        converter = "modelopt-autocast" if modelopt_available() and feeds else "onnxconverter-common"
    if converter == "modelopt-autocast":
        try:
            return _convert_modelopt(proto, keep_nodes, feeds or []), converter
        except Exception as e:  # optional dependency with heavy extras: fall back, and say so in the record
            note = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            return _convert_occ(proto, keep_nodes), f"onnxconverter-common (modelopt-autocast failed: {note})"
    return _convert_occ(proto, keep_nodes), "onnxconverter-common"


def error_stats(ref: np.ndarray, got: np.ndarray) -> dict:
    d = np.abs(got.astype(np.float64) - ref.astype(np.float64)).ravel()
    return {"mean_abs": float(d.mean()), "p99.9_abs": float(np.quantile(d, 0.999)), "max_abs": float(d.max())}


def within(errors: dict, tol: Fp16Tolerance) -> bool:
    return errors["mean_abs"] <= tol.mean and errors["p99.9_abs"] <= tol.p999


def output_nodes(proto: onnx.ModelProto) -> tuple[str, ...]:
    """Names of the final-clamp style nodes that write a graph output (kept FP32)."""
    outs = {o.name for o in proto.graph.output}
    return tuple(n.name for n in proto.graph.node if n.op_type in FP32_OUTPUT_OPS and set(n.output) & outs)


def _backward_nodes(proto: onnx.ModelProto) -> list[str]:
    """Node names from the outputs backwards (the head first): the order in which layers are kept FP32."""
    return [n.name for n in reversed(proto.graph.node) if n.name]


def _name_nodes(proto: onnx.ModelProto) -> None:
    for i, n in enumerate(proto.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"


def to_fp16(proto: onnx.ModelProto, compare: Callable[[onnx.ModelProto], dict], tol: Fp16Tolerance = Fp16Tolerance(),
            converter: str = "auto", feeds: list[dict[str, np.ndarray]] | None = None,
            max_rounds: int = 8) -> Fp16Result:
    """Convert, compare with `compare(fp16_proto) -> error stats`, and keep more layers FP32 until it passes.

    Round k keeps the last 2**(k-1) named nodes FP32 (after round 0 with none). A result that
    never passes is returned with passed=False; the caller decides (the CLI fails naming the model).
    """
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    _name_nodes(proto)
    order = _backward_nodes(proto)
    always = output_nodes(proto)
    keep: tuple[str, ...] = always
    for k in range(max_rounds + 1):
        fp16, used = convert(proto, keep, converter, feeds)
        errors = compare(fp16)
        if within(errors, tol):
            return Fp16Result(fp16, used, errors, keep, True)
        if len(keep) >= len(order):
            break
        keep = always + tuple(n for n in order[: 2 ** k] if n not in always)
    return Fp16Result(fp16, used, errors, keep, False)
