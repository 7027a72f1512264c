"""Held-out numbers of an exported ONNX bundle, computed the way the runtime runs it: ONNX Runtime,
numpy and OpenCV only (no torch model is involved).

The default recipe records them beside its evaluation when it writes the shipped bundle;
tests/test_shipped_bundle.py recomputes them from the committed ONNX files and fails when either
the files or the recorded numbers changed.

    python -m training.bundle_metrics [--bundle wbg_edge/models/default] [--write FILE]

A few small scenes (n=6 at 128x128, seed 1000, held out from training's seed 0), so it runs in
about a second on a CI core: a fingerprint of the bundle's behaviour, not its quality report
(that is training.evaluate with n=48 at 256x256).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from . import metrics
from .data.synthetic import SceneConfig, make_scene

RECORD = "training/checkpoints/default/eval/bundle_metrics.json"
RTOL, ATOL = 1e-3, 1e-5  # ORT CPU kernels differ across CPUs by ~1e-6 in alpha; a retrained model by far more


@dataclass(frozen=True)
class BundleMetricsConfig:
    n: int = 6
    size: int = 128     # refine resolution; matting and depth run at half (model resolution)
    seed: int = 1000
    band_radius: int = 8


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # deterministic and polite on a shared CI box
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(sess, x: np.ndarray) -> np.ndarray:
    return sess.run(None, {sess.get_inputs()[0].name: x[None].astype(np.float32)})[0][0, 0]


def _chw(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 0, 1) if a.ndim == 3 else a[None]


def _norm(d: np.ndarray) -> np.ndarray:
    return (d - d.min()) / (d.max() - d.min() + 1e-6)  # the runtime's per-frame depth normalisation


def compute(bundle: str | Path, cfg: BundleMetricsConfig = BundleMetricsConfig()) -> dict[str, float]:
    """Mean per scene: boundary-band SAD and gradient error of the coarse and refined mattes (FP32
    and FP16 refiner), whole-image SAD of the coarse matte fed by the bundle's own depth model."""
    bundle = Path(bundle)
    depth, matting = _session(bundle / "depth.onnx"), _session(bundle / "matting.onnx")
    refiners = {"fp32": _session(bundle / "refiner.onnx"), "fp16": _session(bundle / "refiner.fp16.onnx")}
    s, h = cfg.size, cfg.size // 2
    acc: dict[str, list[float]] = {}
    for i in range(cfg.n):
        sc = make_scene(cfg.seed, i, SceneConfig(size=s))
        img, gt = sc["image"], sc["alpha"]
        small = cv2.resize(img, (h, h), interpolation=cv2.INTER_AREA)
        d = _norm(sc["depth"])
        coarse = cv2.resize(_run(matting, np.concatenate([_chw(small), _chw(cv2.resize(d, (h, h),
                            interpolation=cv2.INTER_AREA))])), (s, s), interpolation=cv2.INTER_LINEAR)
        d_net = _norm(_run(depth, _chw(small)))
        coarse_dn = cv2.resize(_run(matting, np.concatenate([_chw(small), _chw(d_net)])), (s, s),
                               interpolation=cv2.INTER_LINEAR)
        band = metrics.boundary_band(gt, cfg.band_radius)
        x = np.concatenate([_chw(img), _chw(d), _chw(coarse)])
        out = {"coarse": coarse, **{f"refined_{p}": np.clip(coarse + _run(r, x), 0, 1) for p, r in refiners.items()}}
        for name, a in out.items():
            acc.setdefault(f"band_sad_{name}", []).append(metrics.sad(a, gt, band))
            acc.setdefault(f"band_grad_{name}", []).append(metrics.gradient_error(a, gt, band))
        acc.setdefault("whole_sad_coarse_depthnet", []).append(metrics.sad(coarse_dn, gt))
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
