"""PyTorch -> one self-contained ONNX file per model, with the tensor contracts of DESIGN.md section 3.

Exporter choice: the TorchScript exporter (`torch.onnx.export(..., dynamo=False)`) by default. On our
models it takes ~0.2 s (the dynamo exporter ~13 s), writes the dynamic dims under the names we give
(N, H, W) instead of symbols (s0, s53), always returns one self-contained proto (no external
`.onnx.data`), and the Resize sizes it emits follow the input shape, so H and W stay truly dynamic.
`exporter="dynamo"` is kept for models the tracer cannot handle; its dims are renamed to N/H/W and
external data is disabled. After export: ONNX checker, shape inference, onnxslim, checker again, and
ONNX Runtime vs PyTorch on generated inputs (max |diff| recorded; DESIGN asks <= 1e-4).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from torch import nn

from wbg_edge.bundle import CONTRACTS

# checkpoint kind -> (input name, output name, input channels); names from the bundle contracts
IO: dict[str, tuple[str, str, int]] = {
    "depth": (CONTRACTS["depth"][1][0], CONTRACTS["depth"][2][0], 3),
    "matting": (CONTRACTS["rgbd"][1][0], CONTRACTS["rgbd"][2][0], 4),
    "refiner": (CONTRACTS["refiner"][1][0], CONTRACTS["refiner"][2][0], 5),
}
DYNAMIC_DIMS = {0: "N", 2: "H", 3: "W"}


class OnnxExportError(RuntimeError):
    """Export, checking or parity failed; one line naming the model."""


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = 18
    exporter: str = "torchscript"  # "torchscript" | "dynamo"
    slim: bool = True
    # (N, H, W) of the generated parity inputs: two shapes, neither the export sample's, so a
    # frozen dimension shows up as an error instead of passing by coincidence
    parity_shapes: tuple[tuple[int, int, int], ...] = ((1, 64, 96), (2, 96, 64))
    parity_tol: float = 1e-4
    sample_hw: tuple[int, int] = (64, 64)
    seed: int = 0


@dataclass(frozen=True)
class OnnxExport:
    kind: str
    model: onnx.ModelProto
    parity_max_abs: float  # ORT vs PyTorch, max over the parity shapes
    parity_shapes: tuple[tuple[int, int, int], ...]

    def to_bytes(self) -> bytes:
        return self.model.SerializeToString()


def _torch_export(model: nn.Module, kind: str, opts: OnnxOptions) -> onnx.ModelProto:
    in_name, out_name, ch = IO[kind]
    sample = torch.rand(1, ch, *opts.sample_hw, generator=torch.Generator().manual_seed(opts.seed))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; we chose it on purpose
        if opts.exporter == "torchscript":
            torch.onnx.export(model, (sample,), buf, dynamo=False, opset_version=opts.opset,
                              input_names=[in_name], output_names=[out_name],
                              dynamic_axes={in_name: DYNAMIC_DIMS, out_name: DYNAMIC_DIMS},
                              do_constant_folding=True)
            return onnx.load_from_string(buf.getvalue())
        if opts.exporter == "dynamo":
            dim = torch.export.Dim.DYNAMIC
            prog = torch.onnx.export(model, (sample,), dynamo=True, opset_version=opts.opset,
                                     input_names=[in_name], output_names=[out_name],
                                     dynamic_shapes=({0: dim, 2: dim, 3: dim},), external_data=False,
                                     optimize=True, verbose=False)
            return prog.model_proto
    raise OnnxExportError(f"{kind}: unknown exporter {opts.exporter!r} (torchscript|dynamo)")


def declare_io(proto: onnx.ModelProto, kind: str) -> None:
    """Write the contract's I/O shapes [N, C, H, W] onto the graph (the tracer leaves output dims as symbols)."""
    _, _, ch = IO[kind]
    for vi, c in [(v, ch) for v in proto.graph.input] + [(v, 1) for v in proto.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != 4:
            continue
        for i, d in enumerate(dims):
            if i == 1:
                d.dim_value = c
            else:
                d.dim_param = DYNAMIC_DIMS[i]


def check_and_infer(proto: onnx.ModelProto, what: str, strict: bool = True) -> onnx.ModelProto:
    """ONNX checker + shape inference (strict for our own graphs; lenient for third-party ones)."""
    try:
        onnx.checker.check_model(proto, full_check=strict)
        return onnx.shape_inference.infer_shapes(proto, check_type=strict, strict_mode=strict)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise OnnxExportError(f"{what}: ONNX check failed: {str(e).splitlines()[0]}") from None


def slim(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(proto)


def io_shapes(proto: onnx.ModelProto) -> tuple[dict, dict]:
    """({input: dims}, {output: dims}) with str for dynamic dims, as the manifest records them."""
    def dims(vi):
        return [d.dim_param if not d.HasField("dim_value") else int(d.dim_value)
                for d in vi.type.tensor_type.shape.dim]
    inits = {i.name for i in proto.graph.initializer}
    return ({vi.name: dims(vi) for vi in proto.graph.input if vi.name not in inits},
            {vi.name: dims(vi) for vi in proto.graph.output})


def ort_session(model_bytes: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def generated_input(ch: int, n: int, h: int, w: int, seed: int) -> np.ndarray:
    """(n, ch, h, w) inputs in the contract's range [0, 1]: smooth structure plus noise, like a real frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = np.stack([(np.sin(6 * xx * (c + 1) + 3 * yy) + 1) / 2 for c in range(ch)])
    x = 0.7 * base[None] + 0.3 * rng.random((n, ch, h, w))
    return x.clip(0, 1).astype(np.float32)


def torch_vs_ort(model: nn.Module, kind: str, model_bytes: bytes, shapes, seed: int = 0) -> float:
    """max |ORT - PyTorch| over generated inputs of the given (N, H, W) shapes."""
    sess = ort_session(model_bytes)
    in_name = IO[kind][0]
    worst = 0.0
    for i, (n, h, w) in enumerate(shapes):
        x = generated_input(IO[kind][2], n, h, w, seed + i)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(None, {in_name: x})[0]
        if got.shape != ref.shape:
            raise OnnxExportError(f"{kind}: ONNX output shape {got.shape} != PyTorch {ref.shape} for input "
                                  f"{x.shape}; a dimension was frozen at export")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export_onnx(model: nn.Module, kind: str, opts: OnnxOptions = OnnxOptions()) -> OnnxExport:
    """Export, check, slim and verify one model; raises OnnxExportError when parity exceeds the tolerance."""
    if kind not in IO:
        raise OnnxExportError(f"unknown model kind {kind!r}; expected one of {sorted(IO)}")
    model = model.float().eval()
    proto = _torch_export(model, kind, opts)
    declare_io(proto, kind)
    proto = check_and_infer(proto, kind)
    if opts.slim:
        proto = check_and_infer(slim(proto), f"{kind} (after onnxslim)")
    ins, outs = io_shapes(proto)
    in_name, out_name, ch = IO[kind]
    want = ({in_name: ["N", ch, "H", "W"]}, {out_name: ["N", 1, "H", "W"]})
    if (ins, outs) != want:
        raise OnnxExportError(f"{kind}: exported I/O {ins} -> {outs}, contract needs {want[0]} -> {want[1]}")
    err = torch_vs_ort(model, kind, proto.SerializeToString(), opts.parity_shapes, opts.seed)
    if not err <= opts.parity_tol:
        raise OnnxExportError(f"{kind}: ONNX Runtime vs PyTorch max |diff| {err:.3g} > {opts.parity_tol:g}")
    return OnnxExport(kind=kind, model=proto, parity_max_abs=err, parity_shapes=opts.parity_shapes)
