"""Depth Anything V2 importer: a tiny randomly initialised transformers model, exported with a truly dynamic output."""
from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from export.depth_anything import DepthAnythingError, export_depth_anything, load_weights, write_bundle_dir  # noqa: E402
from export.onnx import ort_session  # noqa: E402
from wbg_edge.bundle import load_bundle  # noqa: E402


def tiny_model():
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            patch_size=14, image_size=56, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                              fusion_hidden_size=16, head_hidden_size=8, patch_size=14)
    torch.manual_seed(0)
    return DepthAnythingForDepthEstimation(cfg).eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("da-weights")
    tiny_model().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def exported(weights):
    return export_depth_anything(load_weights(weights))


@pytest.mark.parametrize("hw", [(56, 56), (140, 252), (252, 448)])
def test_output_follows_input_size(exported, hw):
    sess = ort_session(exported.onnx)
    x = np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)
    y = sess.run(None, {"image": x})[0]
    assert y.shape == (1, 1, *hw)
    assert np.isfinite(y).all()


def test_matches_transformers_forward(exported):
    assert exported.parity_max_abs <= 1e-4


def test_stock_head_freezes_output_size_at_export():
    """Why the wrapper exists: the stock forward exported the same way keeps the export-time size."""
    model = tiny_model()

    class Stock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            return self.m(pixel_values=x).predicted_depth.unsqueeze(1)

    buf = io.BytesIO()
    dyn = {0: "N", 2: "H", 3: "W"}
    with pytest.warns(Warning):
        torch.onnx.export(Stock(), (torch.rand(1, 3, 98, 140),), buf, dynamo=False, opset_version=18,
                          input_names=["image"], output_names=["depth"], dynamic_axes={"image": dyn, "depth": dyn})
    y = ort_session(buf.getvalue()).run(None, {"image": np.zeros((1, 3, 56, 84), np.float32)})[0]
    assert y.shape[2:] == (98, 140)


def test_bundle_over_the_shipped_one_resolves_all_stages(exported, weights, tmp_path):
    write_bundle_dir(exported, weights, tmp_path / "b")
    b = load_bundle(tmp_path / "b")
    assert b.base == "default" and [a.file for a in b.artifacts] == ["depth_anything.onnx"]
    holder, art = b.resolve("depth")
    assert holder is b and art.size_multiple == 14
    assert b.resolve("coarse") is not None and b.resolve("refiner") is not None


def test_bundle_records_multiple_of_14_and_builds(exported, weights, tmp_path):
    write_bundle_dir(exported, weights, tmp_path / "b", base=None)
    b = load_bundle(tmp_path / "b")
    (a,) = b.artifacts
    assert a.stage == "depth" and a.contract == "depth" and a.size_multiple == 14
    b.verify(a)
    assert "multiples of 14" in b.provenance["depth"]["note"]
    from export.build import BuildConfig, build

    res = build(BuildConfig(out=tmp_path / "built", source=tmp_path / "b", target="onnx", model_res=64))
    fp16 = res.bundle.find("depth", "onnx", "fp16")
    assert fp16 is not None and fp16.size_multiple == 14 and fp16.validation["passed"]
    assert all(s[2] % 14 == 0 and s[3] % 14 == 0 for s in fp16.validation["shapes"])


def test_sizes_not_multiple_of_14_are_refused(weights):
    with pytest.raises(DepthAnythingError, match="multiples of 14"):
        export_depth_anything(load_weights(weights), sample_hw=(100, 140))


def test_missing_weights_folder_is_one_line(tmp_path):
    with pytest.raises(DepthAnythingError, match="no config.json"):
        load_weights(tmp_path)
