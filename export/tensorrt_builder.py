"""One TensorRT engine builder for TensorRT 10, TensorRT 11 and TensorRT for RTX (module passed in).

Written only against the API the three share: `Builder`, `create_network(0)`, `OnnxParser`,
optimization profiles, builder config (optimization level, workspace pool, timing cache) and
`build_serialized_network`. Nothing here creates a runtime or deserializes an engine, so it is safe
without a GPU (TensorRT for RTX builds ahead of time on a CPU-only machine).

Precision by flavour (DESIGN.md section 5):
    TensorRT 11, TensorRT-RTX  strongly typed: the mixed-precision FP16 ONNX carries the precision
    TensorRT 10                weakly typed: the FP32 ONNX plus BuilderFlag.FP16
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from wbg_edge.bundle import atomic_write_bytes

Shape = tuple[int, ...]


class EngineBuildError(RuntimeError):
    """Parsing or building failed; one line naming the model (and the ONNX nodes at fault)."""


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"  # "fp32" | "fp16"
    # input name -> (min, opt, max) full shapes; one optimization profile covers them all
    profiles: dict[str, tuple[Shape, Shape, Shape]] = field(default_factory=dict)
    workspace_mb: int = 1024
    optimization_level: int = 3
    timing_cache: Path | None = None  # read if present, written back after the build
    compute_capabilities: tuple[str, ...] = ()  # TensorRT-RTX ahead-of-time targets, e.g. ("SM86",)


@dataclass(frozen=True)
class BuiltEngine:
    data: bytes
    flavour: str  # "trt10" | "trt11" | "trt-rtx"
    module: str
    version: str
    path: str  # which precision path built it (recorded in the manifest)
    inputs: dict  # name -> {"dtype": str, "shape": [..]} as the network declares them (-1 = dynamic)
    outputs: dict
    profiles: dict  # name -> {"min": [..], "opt": [..], "max": [..]} read back from the profile
    seconds: float
    timing_cache: str  # "none" | "new" | "reused" | "n/a (no-op in TensorRT-RTX)"


def flavour(trt: ModuleType) -> str:
    if trt.__name__.split(".")[0] == "tensorrt_rtx":
        return "trt-rtx"
    major = int(str(trt.__version__).split(".")[0])
    return "trt10" if major < 11 else "trt11"


def strongly_typed(trt: ModuleType) -> bool:
    return flavour(trt) != "trt10"


def onnx_precision_for(trt: ModuleType, precision: str) -> str:
    """Which ONNX ("fp32" | "fp16") this flavour builds for the requested engine precision."""
    return "fp16" if precision == "fp16" and strongly_typed(trt) else "fp32"


def precision_path(trt: ModuleType, precision: str) -> str:
    if precision != "fp16":
        return "fp32 onnx"
    return "strongly typed mixed-precision fp16 onnx" if strongly_typed(trt) else "fp32 onnx + BuilderFlag.FP16"


def _make_logger(trt: ModuleType):
    class Collect(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg).strip().splitlines()[0] if str(msg).strip() else "")

    return Collect()


def parser_errors(parser) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        node = e.node_name() or (f"#{e.node()}" if e.node() >= 0 else "?")
        out.append(f"node {node!r} ({e.node_operator() or '?'}): {e.desc()}")
    return out


def _dims(t) -> list[int]:
    return [int(d) for d in t.shape]


def build_engine(trt: ModuleType, onnx_bytes: bytes, opts: BuildOptions, name: str = "model") -> BuiltEngine:
    """Parse `onnx_bytes` and build a serialized engine; raises EngineBuildError naming `name`."""
    t0 = time.perf_counter()
    fl = flavour(trt)
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errs = parser_errors(parser) or logger.errors or ["unknown parser error"]
        raise EngineBuildError(f"{name}: ONNX parser failed: " + "; ".join(errs))
    config = builder.create_builder_config()
    config.builder_optimization_level = int(opts.optimization_level)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    if opts.precision == "fp16" and not strongly_typed(trt):
        config.set_flag(trt.BuilderFlag.FP16)
    if fl == "trt-rtx" and opts.compute_capabilities:
        config.num_compute_capabilities = len(opts.compute_capabilities)
        for i, cc in enumerate(opts.compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, cc), i)

    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
    profile = builder.create_optimization_profile()
    recorded = {}
    for iname, tensor in inputs.items():
        dims = _dims(tensor)
        if all(d >= 0 for d in dims):
            continue  # static input: no profile needed
        if iname not in opts.profiles:
            raise EngineBuildError(f"{name}: input {iname!r} has dynamic shape {dims} but no min/opt/max profile")
        mn, op, mx = (tuple(int(v) for v in s) for s in opts.profiles[iname])
        for s in (mn, op, mx):
            if len(s) != len(dims) or any(d >= 0 and d != v for d, v in zip(dims, s, strict=True)):
                raise EngineBuildError(f"{name}: profile shape {list(s)} does not fit input {iname!r} {dims}")
        if not (all(a <= b <= c for a, b, c in zip(mn, op, mx, strict=True))):
            raise EngineBuildError(f"{name}: profile for {iname!r} needs min <= opt <= max, got {mn} {op} {mx}")
        profile.set_shape(iname, mn, op, mx)
        got = profile.get_shape(iname)
        recorded[iname] = {k: [int(v) for v in s] for k, s in zip(("min", "opt", "max"), got, strict=True)}
    if recorded:
        config.add_optimization_profile(profile)

    cache_state = "none"
    if fl == "trt-rtx":
        cache_state = "n/a (no-op in TensorRT-RTX)" if opts.timing_cache else "none"
    elif opts.timing_cache is not None:
        path = Path(opts.timing_cache)
        blob = path.read_bytes() if path.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, False)
        cache_state = "reused" if blob else "new"

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{name}: TensorRT ({fl}) built no engine: " + ("; ".join(logger.errors[-3:])
                                                                             or "no error logged"))
    data = bytes(memoryview(serialized))
    if fl != "trt-rtx" and opts.timing_cache is not None:
        atomic_write_bytes(opts.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))

    def spec(t):
        return {"dtype": str(t.dtype).split(".")[-1].lower(), "shape": _dims(t)}

    return BuiltEngine(data=data, flavour=fl, module=trt.__name__.split(".")[0], version=str(trt.__version__),
                       path=precision_path(trt, opts.precision), inputs={k: spec(v) for k, v in inputs.items()},
                       outputs={k: spec(v) for k, v in outputs.items()}, profiles=recorded,
                       seconds=time.perf_counter() - t0, timing_cache=cache_state)


def import_trt(target: str) -> ModuleType:
    """`trt` -> tensorrt, `trt-rtx` -> tensorrt_rtx; ImportError when missing (the CLI turns it into one line)."""
    import importlib

    return importlib.import_module({"trt": "tensorrt", "trt-rtx": "tensorrt_rtx"}[target])
