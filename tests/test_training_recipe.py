"""The default recipe (--quick): same seed -> same bytes; then evaluate and cache on its checkpoints."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from training import evaluate
from training.cache import CacheConfig, cache
from training.data.folders import DatasetError, FolderDataset
from training.recipes.default import QUICK, RecipeConfig, run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    cfgs = [RecipeConfig(out=str(root / name), progress=False, **QUICK) for name in ("a", "b")]
    for cfg in cfgs:
        run(cfg)
    return root


def test_same_seed_same_bytes(quick):
    for kind in ("depth", "matting", "refiner"):
        a = (quick / "a" / f"{kind}.safetensors").read_bytes()
        assert a == (quick / "b" / f"{kind}.safetensors").read_bytes(), kind
        meta = json.loads((quick / "a" / f"{kind}.json").read_text())
        assert meta["model"]["kind"] == kind and "step" in meta["train"] and "seed" in meta["train"]
    assert json.loads((quick / "a" / "refiner.json").read_text())["stage"] == "refiner-synthetic"
    assert json.loads((quick / "a" / "refiner-wild" / "refiner.json").read_text())["stage"] == "refiner-wild"
    assert not list((quick / "a").glob("*.state.pt"))  # nothing big left to commit


def test_from_a_stage_keeps_the_stages_before_it(quick, tmp_path):
    """--from refiner-wild: the depth and matting stages do not run (their files untouched); the refiner stages
    train on their checkpoints as a whole run would."""
    out = tmp_path / "r"
    shutil.copytree(quick / "a", out)
    kept = {p.name: p.read_bytes() for p in out.iterdir() if p.name.startswith(("depth.", "matting."))}
    logs = []
    run(RecipeConfig(out=str(out), progress=False, start="refiner-wild", **{**QUICK, "synthetic_steps": 5}),
        log=logs.append)
    assert [line.split(":")[0] for line in logs] == ["stage refiner-wild", "stage refiner-synthetic"]
    assert {name: (out / name).read_bytes() for name in kept} == kept
    meta = json.loads((out / "refiner.json").read_text())
    assert meta["stage"] == "refiner-synthetic" and meta["train"]["step"] == 5
    with pytest.raises(ValueError, match="--from nothing: expected one of depth, matting, refiner-wild"):
        run(RecipeConfig(out=str(out), progress=False, start="nothing", **QUICK))


def test_evaluate_writes_table_json_and_contact_sheet(quick, tmp_path):
    out = tmp_path / "eval"
    res = evaluate.evaluate(evaluate.EvalConfig(checkpoint=str(quick / "a"), n=4, size=64, out=str(out), sheet_rows=2))
    rows = {(r["region"], r["variant"]): r for r in res["table"]}
    for region in ("whole", "band"):
        for variant in ("coarse", "refined", "coarse-no-depth", "segmenter", "segmenter-refined", "coarse-depthnet",
                        "refined-stage2"):
            r = rows[(region, variant)]
            assert r["n"] == 4 and all(np.isfinite(r[k]) and r[k] >= 0 for k in ("sad", "mse", "grad", "conn"))
    assert rows[("band", "coarse")]["sad"] <= rows[("whole", "coarse")]["sad"] + 1e-9  # band is a subset
    assert json.loads((out / "results.json").read_text())["table"] == res["table"]
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (2 * 64, 5 * 64, 3)
    assert "| band" in evaluate.format_table(res["table"])


class FixedRGB(torch.nn.Module):
    """A stand-in for an imported segmenter: rgb contract, fixed input size, optional NHWC."""

    def __init__(self, nhwc: bool):
        super().__init__()
        self.nhwc = nhwc

    def forward(self, x):
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        y = torch.sigmoid(20 * (x[:, :1] - 0.5))
        return y.permute(0, 2, 3, 1) if self.nhwc else y


def _image_folder(root):
    img = np.zeros((50, 70, 3), np.uint8)
    img[:, 35:] = 255  # right half bright
    for name in ("p", "q"):
        (root / "image").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "image" / f"{name}.png"), img)
    return root


@pytest.mark.parametrize("nhwc", [False, True])
def test_cache_coarse_from_fixed_size_onnx(tmp_path, nhwc):
    data = _image_folder(tmp_path / "data")
    shape = (1, 32, 48, 3) if nhwc else (1, 3, 32, 48)
    onnx_path = tmp_path / "seg.onnx"
    torch.onnx.export(FixedRGB(nhwc), torch.rand(*shape), str(onnx_path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["alpha"])
    paths = cache(CacheConfig(kind="coarse", data=str(data), model=str(onnx_path)))
    assert len(paths) == 2
    a = cv2.imread(str(paths[0]), cv2.IMREAD_UNCHANGED)
    assert a.dtype == np.uint16 and a.shape == (50, 70)
    assert a[:, :30].max() < 2000 and a[:, 40:].min() > 60000  # resized in and out, right half is the subject
    s = FolderDataset(data)[0]
    assert s["coarse"].shape == (50, 70)


def test_cache_depth_and_coarse_from_checkpoints(quick, tmp_path):
    data = _image_folder(tmp_path / "data")
    cache(CacheConfig(kind="depth", data=str(data), model=str(quick / "a" / "depth.safetensors"), res=64))
    cache(CacheConfig(kind="coarse", data=str(data), model=str(quick / "a" / "matting.safetensors"), res=64))
    s = FolderDataset(data)[1]
    assert s["depth"].shape == (50, 70) and s["depth"].min() == 0.0 and s["depth"].max() > 0.999  # min-max
    assert s["coarse"].shape == (50, 70)
    with pytest.raises(Exception, match=r"depth\.safetensors: a depth checkpoint, but a matting"):
        cache(CacheConfig(kind="coarse", data=str(data), model=str(quick / "a" / "depth.safetensors")))
    with pytest.raises(DatasetError, match="nope.onnx"):
        cache(CacheConfig(kind="coarse", data=str(data), model=str(tmp_path / "nope.onnx")))


def test_exported_bundle_records_metrics_it_reproduces(quick, tmp_path):
    """What the recipe does after export (python -m export.recipe): the bundle's held-out fingerprint,
    recomputed equal."""
    pytest.importorskip("onnxruntime")
    from export.recipe import export_default
    from training import bundle_metrics

    if not export_default(quick / "a", tmp_path / "bundle", lambda _m: None):
        pytest.skip("export extra not installed")
    cfg = bundle_metrics.BundleMetricsConfig(n=2)
    rec = bundle_metrics.record(tmp_path / "bundle", tmp_path / "metrics.json", cfg)
    assert json.loads((tmp_path / "metrics.json").read_text()) == rec
    assert {"band_sad_coarse", "band_sad_refined_fp16", "whole_sad_coarse_depthnet"} <= set(rec["metrics"])
    assert bundle_metrics.mismatches(rec, bundle_metrics.compute(tmp_path / "bundle", cfg)) == []


def test_recipe_then_export_from_the_command_line(quick, tmp_path, capsys):
    """python -m export.recipe default --export-only: the bundle from the checkpoints, and the metrics record
    beside them; the training recipe alone names that command."""
    pytest.importorskip("onnx", reason="the [export] extra is not installed")
    from export import recipe
    from training import bundle_metrics
    from training.recipes import default

    out = tmp_path / "ckpt"
    shutil.copytree(quick / "a", out)
    assert recipe.main(["default", "--export-only", "--quick", "--out", str(out), "--bundle", str(tmp_path / "b")]) == 0
    rec = json.loads((out / "eval" / "bundle_metrics.json").read_text())
    assert rec["bundle"] == str(tmp_path / "b") and (tmp_path / "b" / "manifest.json").is_file()
    measured = bundle_metrics.compute(tmp_path / "b", bundle_metrics.BundleMetricsConfig(**rec["config"]))
    assert bundle_metrics.mismatches(rec, measured) == []
    assert (out / "refiner-wild" / "refiner.onnx").is_file()  # stage 2 as ONNX, for the as-run stage 3 vs 2 row
    capsys.readouterr()
    assert default.main(["--quick", "--no-progress", "--out", str(tmp_path / "c")]) == 0
    assert "python -m export.recipe default --export-only --out" in capsys.readouterr().out.strip().splitlines()[-1]


def test_evaluate_a_bundle_as_run(quick, tmp_path, capsys):
    """python -m training.evaluate --bundle: scenes through wbg_edge.Pipeline, per style against the best constant
    alpha, with the three claims' rows (stage 2 from the ONNX the recipe exports)."""
    pytest.importorskip("onnx", reason="the [export] extra is not installed")
    from export import recipe
    from training.evaluate_bundle import BundleEvalConfig, evaluate_bundle

    ck = tmp_path / "ckpt"
    shutil.copytree(quick / "a", ck)
    assert recipe.main(["default", "--export-only", "--quick", "--out", str(ck), "--bundle", str(tmp_path / "b")]) == 0
    stage2 = ck / "refiner-wild" / "refiner.onnx"
    rc = evaluate.main(["--bundle", str(tmp_path / "b"), "--stage2", str(stage2), "--n", "3", "--frame-size", "128",
                        "--style", "in-distribution", "--out", str(tmp_path / "ev")])
    text = capsys.readouterr().out
    assert rc == 0 and "| in-distribution | yes | 3 |" in text and "stage 3 helps transparency" in text
    res = json.loads((tmp_path / "ev" / "as_run.json").read_text())
    row = res["styles"][0]
    runs = row["runs"]
    assert {"pipeline", "coarse", "coarse-no-depth", "pipeline-stage2", "guided"} <= set(runs)
    assert "the refiner beats a guided filter" in text
    assert runs["guided"]["band_sad"] != runs["pipeline"]["band_sad"]  # a run of its own, not the pipeline's again
    assert row["mse_ratio"] == pytest.approx(runs["pipeline"]["whole_mse"] / row["constant_mse"])
    # the best constant is the set's mean alpha: any other constant does worse
    from training.data.synthetic import SceneConfig, make_scene
    gts = [make_scene(1000, i, SceneConfig(size=128))["alpha"] for i in range(3)]
    worse = np.mean([np.mean((g - (row["constant"] + 0.05)) ** 2) * 1000 for g in gts])
    assert row["constant_mse"] < worse
    assert cv2.imread(str(tmp_path / "ev" / "as_run_contact.png")) is not None
    tiles = evaluate_bundle(BundleEvalConfig(bundle=str(tmp_path / "b"), n=2, size=128, styles=("tiles",)))
    assert [r["style"] for r in tiles["styles"]] == ["tiles"] and "pipeline-stage2" not in tiles["styles"][0]["runs"]
    assert evaluate.main(["--bundle", str(tmp_path / "nope")]) == 2
    assert "nope: not a bundle folder" in capsys.readouterr().out
