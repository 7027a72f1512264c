"""`python -m export.build_engine`: checkpoints (or a bundle of ONNX) -> validated ONNX / TensorRT bundle.

    python -m export.build_engine --out DIR [--checkpoints DIR] [--target onnx|trt|trt-rtx] [--onnx-only]
        [--fp16] [--model-res 256] [--refine-res 512] [--min HxW --opt HxW --max HxW] [--max-batch 1]
        [--timing-cache FILE] [--workspace MB] [--opt-level 3]

Exit status: 0 on success; 1 with one line naming the model (and file) when a step or a validation
fails; 2 for usage errors. Only this module prints or exits.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from tqdm import tqdm


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x448, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"sides must be positive, got {text!r}")
    return h, w


def parser() -> argparse.ArgumentParser:
    # installed, the console script (wbg-edge-export) names itself
    p = argparse.ArgumentParser(prog="python -m export.build_engine" if __package__ == "export" else None,
                                description="Export checkpoints to ONNX (FP32 + mixed-precision FP16), build TensorRT "
                                            "engines, validate everything and write a bundle (manifest.json).")
    p.add_argument("--checkpoints", type=Path, default=None,
                   help="checkpoint folder (<kind>.safetensors + .json) or a bundle folder of ONNX (e.g. from "
                        "export.import_coarse or export.depth_anything); default: training/checkpoints/default, "
                        "else the shipped bundle")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--target", choices=("onnx", "trt", "trt-rtx"), default=None,
                   help="onnx: ONNX only; trt: TensorRT 10/11 engines on this machine's GPU; trt-rtx: TensorRT for "
                        "RTX engines (builds without a GPU). Default: trt")
    p.add_argument("--onnx-only", action="store_true", help="same as --target onnx")
    p.add_argument("--fp16", action="store_true",
                   help="FP16 engines (TensorRT 11 / RTX: strongly typed from the FP16 ONNX; TensorRT 10: FP32 ONNX + "
                        "FP16 flag). The FP16 ONNX is always made and validated")
    p.add_argument("--model-res", type=int, default=256, help="depth/matting resolution (short side, multiple of 32)")
    p.add_argument("--refine-res", type=int, default=512, help="refiner resolution (multiple of 32)")
    p.add_argument("--min", dest="min_hw", type=_hw, default=None, metavar="HxW",
                   help="smallest input of the engine profile at model resolution (refiner scaled); default res/4")
    p.add_argument("--opt", dest="opt_hw", type=_hw, default=None, metavar="HxW",
                   help="shape the engine is tuned for; default res x res*16/9")
    p.add_argument("--max", dest="max_hw", type=_hw, default=None, metavar="HxW", help="largest input; default 2res")
    p.add_argument("--max-batch", type=int, default=1, help="largest batch of the engine profile")
    p.add_argument("--timing-cache", type=Path, default=None, help="TensorRT timing cache file, read and updated")
    p.add_argument("--workspace", type=int, default=1024, metavar="MB", help="builder workspace limit")
    p.add_argument("--opt-level", type=int, default=3, choices=range(0, 6), help="builder optimization level")
    p.add_argument("--compute-capability", action="append", default=[], metavar="SMxx",
                   help="TensorRT-RTX ahead-of-time target (SM75 for Turing, SM86, SM89, SM120...); repeatable; "
                        "default: portable across Ampere and later")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torch.onnx exporter (torchscript: fast, named dynamic dims; see export/onnx.py)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--name", default="default", help="bundle name in the manifest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


_terminated = False


def _on_sigterm(signum, frame):
    global _terminated
    _terminated = True  # a library may turn the interrupt into its own error (safetensors mid-load does)
    raise KeyboardInterrupt  # so the build's cleanup runs and no half artifact stays behind


def _interrupted() -> int:
    print("build_engine: interrupted; nothing was written to the bundle", file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.onnx_only and args.target not in (None, "onnx"):
        parser().error("--onnx-only conflicts with --target " + args.target)
    target = "onnx" if args.onnx_only else (args.target or "trt")

    from wbg_edge.bundle import BundleError

    from .build import BuildConfig, build, plan_steps
    from .checkpoints import CheckpointError
    from .fp16 import Fp16Error
    from .onnx import OnnxExportError
    from .tensorrt_builder import EngineBuildError

    cfg = BuildConfig(out=args.out, source=args.checkpoints, target=target, fp16=args.fp16,
                      model_res=args.model_res, refine_res=args.refine_res, min_hw=args.min_hw, opt_hw=args.opt_hw,
                      max_hw=args.max_hw, max_batch=args.max_batch, timing_cache=args.timing_cache,
                      workspace_mb=args.workspace, optimization_level=args.opt_level,
                      compute_capabilities=tuple(args.compute_capability), opset=args.opset, exporter=args.exporter,
                      name=args.name)
    signal.signal(signal.SIGTERM, _on_sigterm)
    bar = tqdm(total=plan_steps(cfg), disable=args.quiet, unit="step", file=sys.stderr, leave=False, delay=1.0)

    def step(msg: str) -> None:
        bar.set_description(msg)
        bar.update(1)

    from .build import resolve_source

    if args.checkpoints is None:
        try:
            src, kind = resolve_source(None)
        except RuntimeError:
            src, kind = None, None
        if kind == "bundle":
            print(f"build_engine: note: no complete checkpoints in training/checkpoints/default; building the "
                  f"shipped bundle {src}", file=sys.stderr)
    try:
        result = build(cfg, step)
    except (CheckpointError, BundleError, OnnxExportError, Fp16Error, EngineBuildError, RuntimeError, OSError) as e:
        bar.close()
        if _terminated:
            return _interrupted()
        print(f"build_engine: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.close()
        return _interrupted()
    bar.close()
    n_eng = sum(a.format == "engine" for a in result.bundle.artifacts)
    print(f"wrote {args.out}/manifest.json: {len(result.bundle.artifacts) - n_eng} ONNX, {n_eng} engines "
          f"({target}) in {result.seconds:.1f} s; see {args.out}/REPORT.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
