"""A training recipe that ends in a bundle: train (training/recipes), export the checkpoints, record.

    python -m export.recipe default [--quick] [--out DIR] [--bundle DIR | --no-bundle] [--export-only] [...]
    python -m export.recipe real-world [--quick] [--out DIR] [--bundle DIR | --no-bundle] [--export-only] [...]

Every flag but --bundle / --no-bundle / --export-only is the training recipe's own (`python -m
training.recipes.<name> --help`); training never imports export, so the step from checkpoints to a bundle
lives here. `default` writes FP32 + FP16 ONNX of its three models (export/build.py), validated, and records
the bundle's held-out numbers beside its checkpoints (what tests/test_shipped_bundle.py reproduces);
`real-world` writes the one-stage refiner bundle that imported segmenters borrow, asking the runtime for
the patch context the refiner learnt with. --export-only skips training and exports the checkpoints
already in --out.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from ._training import checkpoint, recipe_modules

BUNDLES = {"default": "wbg_edge/models/default", "real-world": "wbg_edge/models/segmenter-refiner"}
METRICS = Path("eval") / "bundle_metrics.json"  # beside the default recipe's checkpoints


def export_default(checkpoints: Path, bundle: Path, log) -> bool:
    """The default recipe's bundle (export/build.py): FP32 + FP16 ONNX, validated, manifest. False, with
    the command to rerun, when the [export] extra is missing (the checkpoints are complete regardless)."""
    try:
        from .build import BuildConfig, build
    except ImportError as e:
        log(f"bundle not written ({e}); install the [export] extra, then run: python -m export.recipe default "
            f"--export-only --out {checkpoints} --bundle {bundle}")
        return False
    result = build(BuildConfig(out=bundle, source=checkpoints, target="onnx", name="default"))
    log(f"bundle written to {bundle} in {result.seconds:.0f} s")
    return True


def export_stage2(checkpoints: Path, log) -> Path | None:
    """The stage-2 refiner (kept by the recipe in CHECKPOINTS/refiner-wild/) as ONNX beside its weights, so
    `python -m training.evaluate --bundle ... --stage2 FILE` can put stage 2 against stage 3 as run."""
    folder = checkpoints / "refiner-wild"
    if not (folder / "refiner.safetensors").is_file():
        return None
    from .onnx import export_onnx

    model, _ = checkpoint.load(folder, "refiner")
    path = folder / "refiner.onnx"
    path.write_bytes(export_onnx(model, "refiner").model.SerializeToString())
    log(f"stage-2 refiner written to {path}")
    return path


def record_metrics(checkpoints: Path, bundle: Path, log) -> Path:
    """The bundle's held-out numbers, run through the runtime, written beside the checkpoints."""
    path = checkpoints / METRICS
    recipe_modules().bundle_metrics.record(bundle, path)
    log(f"bundle metrics recorded in {path}")
    return path


def export_real_world(checkpoints: Path, bundle: Path, log) -> None:
    """FP32 + FP16 ONNX of the refiner alone, validated, with a manifest (export/build.py on a one-stage
    source bundle) asking the runtime for the patch context the refiner learnt with."""
    from wbg_edge.bundle import Artifact, Bundle, sha256_file, write_bundle

    from .build import BuildConfig, build
    from .onnx import export_onnx

    model, meta = checkpoint.load(checkpoints, "refiner")
    model.eval()
    context = int(meta.get("train", {}).get("context", 0))
    exp = export_onnx(model, "refiner")
    wpath = checkpoints / "refiner.safetensors"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        (src / "refiner.onnx").write_bytes(exp.model.SerializeToString())
        art = Artifact(stage="refiner", file="refiner.onnx", format="onnx", precision="fp32", contract="refiner",
                       sha256=sha256_file(src / "refiner.onnx"), inputs={"input": ["N", 5, "H", "W"]},
                       outputs={"delta": ["N", 1, "H", "W"]}, size_multiple=32,
                       validation={"torch_vs_onnxruntime_max_abs": exp.parity_max_abs, "tolerance": 1e-4})
        prov = {"refiner": {"checkpoint": str(wpath), "sha256": sha256_file(wpath), "stage": meta.get("stage"),
                            "model": model.config.to_dict(), "recipe": "training.recipes.real_world"}}
        write_bundle(Bundle(root=src, name="segmenter-refiner", artifacts=(art,), provenance=prov,
                            runtime={"patch_context": context}))
        result = build(BuildConfig(out=bundle, source=src, target="onnx", name="segmenter-refiner"))
    b = result.bundle
    # the temporary source folder is gone: record where the weights really came from
    provenance = {**b.provenance, "source": {"kind": "checkpoints", "path": str(checkpoints)}}
    for a in b.artifacts:
        if a.validation and "source" in a.validation:
            a.validation["source"] = str(wpath)
    write_bundle(replace(b, provenance=provenance))
    (bundle / "REPORT.md").unlink(missing_ok=True)  # names the temporary folder; the manifest says it all
    log(f"bundle written to {bundle} in {result.seconds:.0f} s")


def parser() -> argparse.ArgumentParser:
    mods = recipe_modules()
    p = argparse.ArgumentParser(prog="python -m export.recipe", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="recipe", required=True, metavar="{default,real-world}")
    for name, mod in (("default", mods.default), ("real-world", mods.real_world)):
        s = sub.add_parser(name, parents=[mod.parser(add_help=False)], help=mod.__doc__.split("\n")[0],
                           description=mod.__doc__.split("\n")[0])
        s.add_argument("--bundle", default=BUNDLES[name], help=f"bundle folder to write (default {BUNDLES[name]})")
        s.add_argument("--no-bundle", dest="bundle", action="store_const", const=None, help="checkpoints only")
        s.add_argument("--export-only", action="store_true", help="no training: export the checkpoints in --out")
        s.set_defaults(module=mod, subparser=s)
    return p


def main(argv: list[str] | None = None) -> int:
    from wbg_edge.bundle import BundleError

    a = parser().parse_args(argv)
    cfg = a.module.config(a, a.subparser)
    out = Path(cfg.out)
    # every export step's error is a RuntimeError with one line naming the model (as build_engine reports them)
    errors = (*recipe_modules().errors, BundleError, RuntimeError, OSError)
    try:
        if not a.export_only:
            a.module.run(cfg, log=print)
        if a.bundle is None:
            print(f"checkpoints in {out}; no bundle written (--no-bundle)")
        elif a.recipe == "default":
            if not export_default(out, Path(a.bundle), print):
                return 1
            record_metrics(out, Path(a.bundle), print)
            export_stage2(out, print)
        else:
            export_real_world(out, Path(a.bundle), print)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
