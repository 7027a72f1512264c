"""Held-out numbers of an exported ONNX bundle, computed by the runtime itself: each scene goes through
`wbg_edge.pipeline.Pipeline` (ONNX Runtime, one thread) as a frame, and its Matte's alpha is measured. No
torch model is involved, and no matting step is re-implemented here.

The default recipe's export step (python -m export.recipe default) records them beside its checkpoints;
tests/test_shipped_bundle.py recomputes them from the committed ONNX files and fails when the files, the
runtime's numerics or the recorded numbers changed.

    python -m training.bundle_metrics [--bundle wbg_edge/models/default] [--write FILE]

A few small scenes (n=6 at 256x256, seed 1000, held out from training's seed 0), so it runs in a few
seconds on a CI core: a fingerprint of the bundle's behaviour, not its quality report (that is
training.evaluate with n=48 at 256x256). The bundle runs three ways, each a bundle folder the runtime
loads as it would any other (made in a temporary folder from the manifest's own artifacts):
    refined_fp32   the bundle as shipped (the runtime picks the FP32 ONNX)
    refined_fp16   its FP16 refiner (depth and matting FP32)
    coarse         its refiner replaced by one whose delta is 0: the coarse matte as the runtime upsamples it
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import metrics
from .data.synthetic import SceneConfig, make_scene

RECORD = "training/checkpoints/default/eval/bundle_metrics.json"
RTOL, ATOL = 1e-3, 1e-5  # ORT CPU kernels differ across CPUs by ~1e-6 in alpha; a retrained model by far more


@dataclass(frozen=True)
class BundleMetricsConfig:
    n: int = 6
    size: int = 256     # frame and refine resolution; depth and matting run at half (model resolution: at 64 px
    #                     the people-trained models find little, and a changed refiner would change little)
    seed: int = 1000
    band_radius: int = 8


def _zero_refiner(inputs: dict, outputs: dict) -> bytes:
    """A refiner graph with the contract's names whose delta is 0 everywhere (opset 17, ONNX Runtime CPU)."""
    from onnx import TensorProto, helper

    (inp,), (out,) = inputs, outputs
    i64 = TensorProto.INT64
    consts = [helper.make_tensor("c0", i64, [1], [4]), helper.make_tensor("c1", i64, [1], [5]),
              helper.make_tensor("axis", i64, [1], [1]), helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    g = helper.make_graph(
        [helper.make_node("Slice", [inp, "c0", "c1", "axis"], ["a"]), helper.make_node("Mul", ["a", "zero"], [out])],
        "zero_refiner",
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["N", 5, "H", "W"])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 1, "H", "W"])], consts)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def variants(bundle: str | Path, tmp: Path, stage2: str | Path | None = None) -> dict[str, Path]:
    """Bundle folders for the three runs (see the module docstring), written under `tmp`; with `stage2` (a
    refiner ONNX file, the recipe's stage-2 refiner) a fourth, "stage2", with that refiner in place."""
    from wbg_edge.bundle import load_bundle, sha256_file, write_bundle

    b = load_bundle(bundle)
    onnx = {(a.stage, a.precision): a for a in b.artifacts if a.format == "onnx"}
    fp32 = [onnx[(s, "fp32")] for s in ("depth", "coarse") if (s, "fp32") in onnx]
    refiner = onnx[("refiner", "fp32")]
    zero = tmp / "coarse" / "refiner.zero.onnx"
    zero.parent.mkdir(parents=True)
    zero.write_bytes(_zero_refiner(refiner.inputs, refiner.outputs))
    chosen = {"refined_fp32": [*fp32, refiner], "refined_fp16": [*fp32, onnx[("refiner", "fp16")]],
              "coarse": [*fp32, replace(refiner, file=zero.name, sha256=sha256_file(zero), validation=None)]}
    if stage2 is not None:
        other = tmp / "stage2" / "refiner.stage2.onnx"
        other.parent.mkdir(parents=True)
        shutil.copyfile(stage2, other)
        chosen["stage2"] = [*fp32, replace(refiner, file=other.name, sha256=sha256_file(other), validation=None)]
    roots = {}
    for name, arts in chosen.items():
        root = tmp / name
        root.mkdir(exist_ok=True)
        for a in arts:
            if not (root / a.file).exists():
                shutil.copyfile(b.verify(a), root / a.file)  # hash checked against the shipped manifest
        write_bundle(replace(b, root=root, artifacts=tuple(arts), base=None, base_stages=None))
        roots[name] = root
    return roots


def as_frame(rgb: np.ndarray) -> np.ndarray:
    """A generated scene (float RGB in [0, 1]) as the u8 BGR frame a camera would give."""
    return np.ascontiguousarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1])


def compute(bundle: str | Path, cfg: BundleMetricsConfig = BundleMetricsConfig()) -> dict[str, float]:
    """Mean per scene: boundary-band SAD and gradient error of the runtime's alpha for each way of running
    the bundle, and whole-image SAD of its coarse matte (the depth model's depth feeding the matting model)."""
    from wbg_edge.pipeline import Pipeline, PipelineConfig

    scenes = [make_scene(cfg.seed, i, SceneConfig(size=cfg.size)) for i in range(cfg.n)]
    acc: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="wbg-bundle-metrics-") as tmp:
        for name, root in variants(bundle, Path(tmp)).items():
            pc = PipelineConfig(bundle=str(root), backend="ort", model_res=cfg.size // 2, depth_res=cfg.size // 2,
                                refine_res=cfg.size, mode="alpha", threads=1)
            with Pipeline(pc) as pipe:
                for sc in scenes:
                    pipe.reset()  # scenes are unrelated frames: no smoothing or depth carried over
                    alpha, gt = pipe.process(as_frame(sc["image"])).alpha, sc["alpha"]
                    band = metrics.boundary_band(gt, cfg.band_radius)
                    acc.setdefault(f"band_sad_{name}", []).append(metrics.sad(alpha, gt, band))
                    acc.setdefault(f"band_grad_{name}", []).append(metrics.gradient_error(alpha, gt, band))
                    if name == "coarse":
                        acc.setdefault("whole_sad_coarse_depthnet", []).append(metrics.sad(alpha, gt))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def record(bundle: str | Path, path: str | Path, cfg: BundleMetricsConfig = BundleMetricsConfig()) -> dict:
    """Compute and write {config, tolerance, sha256 of the manifest, metrics} as JSON."""
    from wbg_edge.bundle import sha256_file

    rec = {"bundle": str(bundle), "manifest_sha256": sha256_file(Path(bundle) / "manifest.json"),
           "config": asdict(cfg), "rtol": RTOL, "atol": ATOL, "metrics": compute(bundle, cfg)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return rec


def mismatches(recorded: dict, measured: dict[str, float]) -> list[str]:
    """One line per metric that is missing or off by more than rtol * |recorded| + atol."""
    rt, at = recorded["rtol"], recorded["atol"]
    out = [f"{k}: recorded but not measured" for k in recorded["metrics"] if k not in measured]
    for k, v in measured.items():
        ref = recorded["metrics"].get(k)
        if ref is None:
            out.append(f"{k}: measured {v:.6f} but not recorded")
        elif abs(v - ref) > rt * abs(ref) + at:
            out.append(f"{k}: measured {v:.6f}, recorded {ref:.6f} (tolerance {rt:g} relative + {at:g})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bundle_metrics", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="wbg_edge/models/default")
    p.add_argument("--write", default=None, help=f"record the numbers here (the recipe writes {RECORD})")
    a = p.parse_args(argv)
    if not (Path(a.bundle) / "manifest.json").is_file():
        print(f"error: {a.bundle}: not a bundle folder (expected manifest.json and ONNX files)")
        return 2
    res = record(a.bundle, a.write)["metrics"] if a.write else compute(a.bundle)
    print(json.dumps(res, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
