"""Checkpoints (or a bundle of ONNX) -> a validated bundle: FP32 + FP16 ONNX, engines, manifest, report.

The library side of `python -m export.build_engine`; the CLI fills `BuildConfig` and prints.

Steps per model, in data-path order (depth, matting/coarse, refiner):
    1. FP32 ONNX: exported from the checkpoint (ORT vs PyTorch parity) or taken from the source bundle
       (its SHA-256 verified against its manifest, then checked again);
    2. FP16 ONNX: mixed precision, FP32 I/O, validated against the FP32 ONNX with polygraphy (ORT CPU)
       at real shapes; named layers kept FP32 until it meets DESIGN.md section 7;
    3. engines (target trt | trt-rtx): one shared builder; validated against the FP32 ONNX where a
       CUDA device runs them.
Atomicity: everything is written into a hidden staging folder inside `out`, then the old manifest is
removed, the files are renamed into place, and the manifest is written last (atomically). A failed or
interrupted build removes its staging folder and never leaves a manifest that lists half-written files.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx

from wbg_edge.bundle import (
    CONTRACTS,
    Artifact,
    Bundle,
    BundleError,
    atomic_write_bytes,
    default_bundle_dir,
    load_bundle,
    sha256_file,
    write_bundle,
)

from .checkpoints import KINDS, CheckpointError, default_checkpoint_dir, has_checkpoints, load_checkpoint
from .fp16 import Fp16Error, Fp16Tolerance, to_fp16
from .onnx import OnnxOptions, check_and_infer, export_onnx, generated_input, io_shapes
from .tensorrt_builder import EngineBuildError
from .validate import ValidationError, compare_engine, compare_onnx

HW = tuple[int, int]
TARGETS = ("onnx", "trt", "trt-rtx")


class BuildError(RuntimeError):
    """The build cannot go on; one line, naming the model where there is one."""


@dataclass(frozen=True)
class BuildConfig:
    out: Path
    source: Path | None = None  # checkpoint folder or bundle folder; None = the shipped checkpoints
    target: str = "onnx"  # "onnx" | "trt" | "trt-rtx"
    fp16: bool = False  # engine precision (the FP16 ONNX is always made and validated)
    model_res: int = 256
    refine_res: int = 512
    min_hw: HW | None = None  # profile shapes at model resolution; the refiner's are scaled
    opt_hw: HW | None = None
    max_hw: HW | None = None
    max_batch: int = 1
    timing_cache: Path | None = None
    workspace_mb: int = 1024
    optimization_level: int = 3
    compute_capabilities: tuple[str, ...] = ()
    opset: int = 18
    exporter: str = "torchscript"
    name: str = "default"
    tolerance: Fp16Tolerance = field(default_factory=Fp16Tolerance)


@dataclass(frozen=True)
class Model:
    """One model to build, whatever its source."""

    name: str  # file stem: depth | matting | refiner | an imported model's name
    stage: str
    contract: str
    fp32: onnx.ModelProto
    size_multiple: int
    fixed_size: HW | None
    res: int  # the resolution its profile is centred on (model_res or refine_res)
    validation: dict  # what is known of the FP32 ONNX (parity vs PyTorch, or the source's record)
    provenance: dict | None = None


@dataclass(frozen=True)
class BuildResult:
    bundle: Bundle
    report: str
    seconds: float


def resolve_source(source: Path | None) -> tuple[Path, str]:
    """(folder, "checkpoints" | "bundle"); the default is the shipped checkpoints when all three are there
    (training writes them one stage at a time), else the shipped bundle."""
    if source is None:
        ckpt = default_checkpoint_dir()
        return (ckpt, "checkpoints") if has_checkpoints(ckpt, complete=True) else (default_bundle_dir(), "bundle")
    source = Path(source)
    if (source / "manifest.json").is_file():
        return source, "bundle"
    if has_checkpoints(source) or source.suffix in (".safetensors", ".json"):
        return source, "checkpoints"
    raise BuildError(f"{source}: neither a checkpoint folder (<kind>.safetensors + .json) nor a bundle "
                     f"(manifest.json)")


def round_to(v: float, m: int) -> int:
    return max(m, int(round(v / m)) * m)


def profile_hw(cfg: BuildConfig, model: Model) -> tuple[HW, HW, HW]:
    """(min, opt, max) H x W for a model: the CLI's shapes (model resolution) scaled to the model's own
    resolution and rounded to its size multiple; defaults centre on 16:9 landscape at that resolution."""
    if model.fixed_size:
        return model.fixed_size, model.fixed_size, model.fixed_size
    r, m = model.res, model.size_multiple
    scale = model.res / cfg.model_res

    def pick(given: HW | None, default: HW) -> HW:
        h, w = (given[0] * scale, given[1] * scale) if given else default
        return round_to(h, m), round_to(w, m)

    mn = pick(cfg.min_hw, (r / 4, r / 4))
    op = pick(cfg.opt_hw, (r, r * 16 / 9))
    mx = pick(cfg.max_hw, (2 * r, 2 * r))
    if not all(a <= b <= c for a, b, c in zip(mn, op, mx, strict=True)):
        raise BuildError(f"{model.name}: profile needs min <= opt <= max per side, got {mn} {op} {mx}")
    return mn, op, mx


def _input(model: Model) -> tuple[str, int]:
    ins, _ = io_shapes(model.fp32)
    (name, dims), = ins.items()
    return name, int(dims[1])


def feeds_for(cfg: BuildConfig, model: Model) -> list[dict[str, np.ndarray]]:
    """Validation inputs at real shapes: the opt shape (batch 1) and the min shape (batch max_batch)."""
    name, ch = _input(model)
    mn, op, _ = profile_hw(cfg, model)
    ins, _ = io_shapes(model.fp32)
    static_n = ins[name][0] if isinstance(ins[name][0], int) else None
    out = []
    for i, ((h, w), n) in enumerate(((op, 1), (mn, static_n or cfg.max_batch))):
        out.append({name: generated_input(ch, n, h, w, seed=100 + i)})
    return out


def models_from_checkpoints(cfg: BuildConfig, folder: Path, step: Callable[[str], None]) -> list[Model]:
    models = []
    ckpts = {kind: load_checkpoint(folder, kind) for kind in KINDS}  # a wrong one fails before minutes of export
    for kind, ckpt in ckpts.items():
        step(f"{kind}: export ONNX")
        exp = export_onnx(ckpt.model, kind, OnnxOptions(opset=cfg.opset, exporter=cfg.exporter))
        levels = len(ckpt.config.widths) if kind != "refiner" else 1
        models.append(Model(name=kind, stage=ckpt.stage, contract=ckpt.contract, fp32=exp.model,
                            size_multiple=max(32, 2 ** levels), fixed_size=None,
                            res=cfg.refine_res if kind == "refiner" else cfg.model_res,
                            validation={"torch_vs_onnxruntime_max_abs": exp.parity_max_abs,
                                        "shapes": [list(s) for s in exp.parity_shapes], "tolerance": 1e-4},
                            provenance={"checkpoint": str(ckpt.path), "sha256": sha256_file(ckpt.path),
                                        "stage": ckpt.meta.get("stage"), "model": ckpt.config.to_dict()}))
    return models


def models_from_bundle(cfg: BuildConfig, folder: Path, step: Callable[[str], None]) -> list[Model]:
    """The FP32 ONNX of every stage the bundle resolves (its own, then its base's, e.g. an imported coarse
    model over the shipped depth and refiner): the output bundle is complete and needs no base."""
    bundle = load_bundle(folder)
    models = []
    for stage in ("depth", "coarse", "refiner"):
        found = bundle.resolve(stage, "onnx", "fp32")
        if found is None:
            continue
        holder, art = found
        name = Path(art.file).name.removesuffix(".onnx").removesuffix(".fp32")
        step(f"{name}: read ONNX")
        path, data = holder.path(art), holder.verified_bytes(art)
        try:  # the verified bytes, not the path: weights from an unlisted external-data file stay out
            proto = onnx.load_model_from_string(data)
            if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
                raise ValueError("weights in an external-data file the manifest does not list")
            proto = check_and_infer(proto, f"{path}", strict=False)
        except Exception as e:  # a corrupt file must fail as one line naming it
            raise BuildError(f"{path}: not a valid ONNX model ({type(e).__name__}: {str(e).splitlines()[0]})"
                             ) from None
        models.append(Model(name=name, stage=stage, contract=art.contract, fp32=proto,
                            size_multiple=art.size_multiple, fixed_size=art.fixed_size,
                            res=cfg.refine_res if stage == "refiner" else cfg.model_res,
                            validation={"source": str(path), **(art.validation or {})},
                            provenance=holder.provenance.get(stage) or {"bundle": str(holder.root)}))
    if not models:
        raise BuildError(f"{folder}: bundle lists no FP32 ONNX model")
    return models


def _versions(extra: dict | None = None) -> dict:
    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxslim", "onnxconverter-common", "polygraphy", "nvidia-modelopt"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {**out, **(extra or {})}


def _check_target(cfg: BuildConfig):
    """Import the TensorRT module for the target, or fail in one line before any work is done."""
    if cfg.target == "onnx":
        return None
    from wbg_edge.gpu import has_cuda_device

    from .tensorrt_builder import import_trt

    alt = "use --onnx-only for a validated ONNX bundle, or --target trt-rtx to build TensorRT for RTX engines " \
          "without a GPU"
    try:
        trt = import_trt(cfg.target)
    except ImportError:
        pkg = {"trt": "TensorRT (module tensorrt; pip extra [trt] on a GPU machine, JetPack on Jetson)",
               "trt-rtx": "TensorRT for RTX (pip install tensorrt-rtx)"}[cfg.target]
        raise BuildError(f"{pkg} is not installed; {alt if cfg.target == 'trt' else 'use --onnx-only'}") from None
    if cfg.target == "trt" and not has_cuda_device():
        raise BuildError(f"no CUDA device found (checked with the CUDA driver): --target trt builds engines on the "
                         f"GPU that runs them; {alt}")
    return trt


def plan_steps(cfg: BuildConfig, n_models: int = 3) -> int:
    """How many `step` calls a build makes (for a progress bar)."""
    return n_models * (2 + (cfg.target != "onnx")) + 1


def build(cfg: BuildConfig, step: Callable[[str], None] = lambda _: None) -> BuildResult:
    """Run the whole build; raises BuildError / CheckpointError / BundleError / ValidationError with one line."""
    t0 = time.perf_counter()
    if cfg.target not in TARGETS:
        raise BuildError(f"unknown target {cfg.target!r}; expected one of {TARGETS}")
    if cfg.model_res % 32 or cfg.refine_res % 32:
        raise BuildError(f"--model-res {cfg.model_res} and --refine-res {cfg.refine_res} must be multiples of 32")
    trt = _check_target(cfg)
    source, kind = resolve_source(cfg.source)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stage_dir = Path(tempfile.mkdtemp(prefix=".wbg-build-", dir=out))
    try:
        models = (models_from_checkpoints if kind == "checkpoints" else models_from_bundle)(cfg, source, step)
        artifacts, engine_rows = [], []
        for model in models:
            try:
                artifacts += _build_model(cfg, model, trt, stage_dir, step, engine_rows)
            except (BuildError, ValidationError, BundleError, CheckpointError, EngineBuildError, Fp16Error):
                raise  # already one line naming the model
            except Exception as e:  # anything unforeseen still fails in one line naming the model
                first = (str(e).strip().splitlines() or [""])[0]
                raise BuildError(f"{model.name}: {type(e).__name__}: {first}") from e
        gpu = None
        if trt is not None:
            from wbg_edge.gpu import cuda_device_name

            gpu = cuda_device_name()
        producer = _versions({trt.__name__.split(".")[0]: str(trt.__version__)} if trt is not None else None)
        producer["gpu"] = gpu or "none"
        provenance = {m.stage: m.provenance for m in models if m.provenance}
        provenance["source"] = {"kind": kind, "path": str(source)}
        # the runtime defaults a source bundle asks for (e.g. patch context) hold for its engines too
        runtime = load_bundle(source).runtime if kind == "bundle" else {}
        bundle = Bundle(root=out, name=cfg.name, artifacts=tuple(artifacts), model_res=cfg.model_res,
                        refine_res=cfg.refine_res, producer=producer, provenance=provenance, runtime=runtime)
        report = render_report(cfg, bundle, engine_rows, time.perf_counter() - t0)
        atomic_write_bytes(stage_dir / "REPORT.md", report.encode())
        step("write bundle")
        _commit(stage_dir, out, bundle)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
    return BuildResult(bundle=bundle, report=report, seconds=time.perf_counter() - t0)


def _commit(stage_dir: Path, out: Path, bundle: Bundle) -> None:
    """Old manifest out first (so no manifest ever lists a mix), files renamed in, new manifest last."""
    (out / "manifest.json").unlink(missing_ok=True)
    for p in stage_dir.iterdir():
        p.replace(out / p.name)
    write_bundle(bundle)


def _artifact(model: Model, file: str, fmt: str, precision: str, path: Path, validation: dict,
              engine: dict | None = None) -> Artifact:
    _, ins, outs = CONTRACTS[model.contract]
    shapes_in, shapes_out = io_shapes(model.fp32)
    return Artifact(stage=model.stage, file=file, format=fmt, precision=precision, contract=model.contract,
                    sha256=sha256_file(path), inputs={k: shapes_in[k] for k in ins},
                    outputs={k: shapes_out[k] for k in outs}, size_multiple=model.size_multiple,
                    fixed_size=model.fixed_size, engine=engine, validation=validation)


def _build_model(cfg: BuildConfig, model: Model, trt, stage_dir: Path, step, engine_rows: list) -> list[Artifact]:
    feeds = feeds_for(cfg, model)
    fp32_bytes = model.fp32.SerializeToString()
    f32 = stage_dir / f"{model.name}.onnx"
    atomic_write_bytes(f32, fp32_bytes)
    arts = [_artifact(model, f32.name, "onnx", "fp32", f32, model.validation)]

    step(f"{model.name}: FP16 ONNX")
    res = to_fp16(model.fp32, lambda p: compare_onnx(fp32_bytes, p.SerializeToString(), feeds, cfg.tolerance).errors,
                  tol=cfg.tolerance, feeds=feeds)
    fp16 = check_and_infer(res.model, f"{model.name} (fp16)", strict=False)
    fp16_bytes = fp16.SerializeToString()
    cmp = compare_onnx(fp32_bytes, fp16_bytes, feeds, cfg.tolerance)  # the record, via polygraphy
    if not (res.passed and cmp.passed):
        raise ValidationError(f"{model.name}: FP16 ONNX fails DESIGN section 7 even with "
                              f"{len(res.kept_fp32_nodes)} layers kept FP32: mean |diff| "
                              f"{cmp.errors['mean_abs'] * 255:.3f}/255, p99.9 {cmp.errors['p99.9_abs'] * 255:.3f}/255")
    f16 = stage_dir / f"{model.name}.fp16.onnx"
    atomic_write_bytes(f16, fp16_bytes)
    arts.append(_artifact(model, f16.name, "onnx", "fp16", f16,
                          {**cmp.to_dict(), "converter": res.converter, "kept_fp32_nodes": list(res.kept_fp32_nodes),
                           "tolerance": {"mean_abs": cfg.tolerance.mean, "p99.9_abs": cfg.tolerance.p999}}))
    if trt is not None:
        step(f"{model.name}: {cfg.target} engine")
        arts.append(_engine(cfg, model, trt, stage_dir, fp32_bytes, fp16_bytes, feeds, engine_rows))
    return arts


def _engine(cfg: BuildConfig, model: Model, trt, stage_dir: Path, fp32_bytes: bytes, fp16_bytes: bytes, feeds,
            engine_rows: list) -> Artifact:
    from wbg_edge.gpu import cuda_device_name

    from .tensorrt_builder import BuildOptions, build_engine, onnx_precision_for

    precision = "fp16" if cfg.fp16 else "fp32"
    src = onnx_precision_for(trt, precision)
    name, ch = _input(model)
    ins, _ = io_shapes(model.fp32)
    mn, op, mx = profile_hw(cfg, model)
    dims = ins[name]

    def full(hw: HW, n: int) -> tuple[int, ...]:
        return (dims[0] if isinstance(dims[0], int) else n, ch, *hw)

    opts = BuildOptions(precision=precision, profiles={name: (full(mn, 1), full(op, 1), full(mx, cfg.max_batch))},
                        workspace_mb=cfg.workspace_mb, optimization_level=cfg.optimization_level,
                        timing_cache=cfg.timing_cache, compute_capabilities=cfg.compute_capabilities)
    built = build_engine(trt, fp16_bytes if src == "fp16" else fp32_bytes, opts, name=model.name)
    file = f"{model.name}.{precision}.{cfg.target}.engine"
    path = stage_dir / file
    atomic_write_bytes(path, built.data)
    device = cuda_device_name()
    if device is not None:
        cmp = compare_engine(built.module, built.data, fp32_bytes, feeds, cfg.tolerance, name=f"{model.name} engine")
        if not cmp.passed:
            raise ValidationError(f"{model.name}: {cfg.target} {precision} engine vs FP32 ONNX: mean |diff| "
                                  f"{cmp.errors['mean_abs'] * 255:.3f}/255, p99.9 "
                                  f"{cmp.errors['p99.9_abs'] * 255:.3f}/255 (DESIGN section 7)")
        validation = cmp.to_dict()
    else:
        validation = {"skipped": "no CUDA device: built ahead of time, not run (engines are never deserialized "
                                 "without a device)"}
    engine = {"module": built.module, "version": built.version, "flavour": built.flavour,
              "gpu": device or "none (ahead-of-time build)", "path": built.path,
              "built_from": f"{model.name}{'.fp16' if src == 'fp16' else ''}.onnx", "profiles": built.profiles,
              "io": {"inputs": built.inputs, "outputs": built.outputs}, "build_seconds": round(built.seconds, 3),
              "timing_cache": built.timing_cache, "optimization_level": cfg.optimization_level,
              "workspace_mb": cfg.workspace_mb}
    if cfg.compute_capabilities:
        engine["compute_capabilities"] = list(cfg.compute_capabilities)
    elif built.flavour == "trt-rtx":  # TensorRT-RTX docs: default AOT engines run on SM 8.0+ (not Turing)
        engine["compute_capabilities"] = "default (portable Ampere and later; SM75 only when asked for)"
    engine_rows.append((model.name, file, built.seconds, built.path))
    return _artifact(model, file, "engine", precision, path, validation, engine)


def render_report(cfg: BuildConfig, bundle: Bundle, engine_rows: list, seconds: float) -> str:
    lines = [f"# Build report: {bundle.name}", "",
             f"- target: {cfg.target}; model_res {cfg.model_res}, refine_res {cfg.refine_res}; "
             f"built in {seconds:.1f} s",
             f"- producer: {json.dumps(bundle.producer)}", "",
             "| file | stage | precision | validation |", "|---|---|---|---|"]
    for a in bundle.artifacts:
        v = a.validation or {}
        if "torch_vs_onnxruntime_max_abs" in v:
            text = f"ORT vs PyTorch max \\|diff\\| {v['torch_vs_onnxruntime_max_abs']:.2e}"
        elif "mean_abs" in v:
            text = (f"vs FP32 ONNX: mean {v['mean_abs'] * 255:.4f}/255, p99.9 {v['p99.9_abs'] * 255:.4f}/255, "
                    f"max {v['max_abs'] * 255:.4f}/255" + (f"; {len(v['kept_fp32_nodes'])} layers kept FP32"
                                                         if v.get("kept_fp32_nodes") else ""))
        else:
            text = v.get("skipped") or ("from " + v["source"] if "source" in v else "-")
        lines.append(f"| {a.file} | {a.stage} | {a.precision} | {text} |")
    if engine_rows:
        lines += ["", "| engine | build s | precision path |", "|---|---|---|"]
        lines += [f"| {f} | {s:.2f} | {p} |" for _, f, s, p in engine_rows]
    return "\n".join(lines) + "\n"


__all__ = ["BuildConfig", "BuildError", "BuildResult", "build", "plan_steps", "resolve_source", "CheckpointError",
           "BundleError", "ValidationError"]
