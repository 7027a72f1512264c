"""export/: checkpoints -> ONNX (contract names, dynamic N/H/W, ORT parity) -> mixed-precision FP16 ONNX."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from export.checkpoints import CheckpointError, load_checkpoint, load_checkpoints, random_model, save_checkpoint  # noqa: E402
from export.fp16 import Fp16Tolerance, to_fp16  # noqa: E402
from export.onnx import IO, export_onnx, generated_input, io_shapes, ort_session  # noqa: E402
from export.validate import compare_onnx  # noqa: E402

KINDS = ("depth", "matting", "refiner")


@pytest.fixture(scope="module")
def exported():
    return {k: export_onnx(random_model(k, seed=i), k) for i, k in enumerate(KINDS)}


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_contract_and_parity(exported, kind):
    e = exported[kind]
    in_name, out_name, ch = IO[kind]
    assert io_shapes(e.model) == ({in_name: ["N", ch, "H", "W"]}, {out_name: ["N", 1, "H", "W"]})
    assert e.parity_max_abs <= 1e-4
    assert max(o.version for o in e.model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    # one self-contained file: no initializer points at external data
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in e.model.graph.initializer)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_dims_follow_the_input(exported, kind):
    sess = ort_session(exported[kind].to_bytes())
    in_name, _, ch = IO[kind]
    for n, h, w in ((1, 32, 32), (3, 64, 160), (1, 256, 448)):
        y = sess.run(None, {in_name: generated_input(ch, n, h, w, seed=1)})[0]
        assert y.shape == (n, 1, h, w)


def test_matting_output_is_clamped_in_graph(exported):
    sess = ort_session(exported["matting"].to_bytes())
    y = sess.run(None, {"input": generated_input(4, 1, 64, 64, 0) * 50 - 25})[0]
    assert y.min() >= 0.0 and y.max() <= 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_fp16_onnx_within_design_tolerance(exported, kind):
    e = exported[kind]
    ch = IO[kind][2]
    feeds = [{IO[kind][0]: generated_input(ch, 1, 96, 160, 3)}, {IO[kind][0]: generated_input(ch, 2, 64, 64, 4)}]
    ref = e.to_bytes()
    res = to_fp16(e.model, lambda p: compare_onnx(ref, p.SerializeToString(), feeds).errors, feeds=feeds)
    assert res.passed
    fp16 = res.model
    onnx.checker.check_model(fp16)
    f32 = onnx.TensorProto.FLOAT
    assert all(v.type.tensor_type.elem_type == f32 for v in list(fp16.graph.input) + list(fp16.graph.output))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer), "nothing was converted"
    cmp = compare_onnx(ref, fp16.SerializeToString(), feeds)
    assert cmp.passed and cmp.errors["mean_abs"] <= 0.5 / 255 and cmp.errors["p99.9_abs"] <= 2 / 255
    if kind == "matting":  # the final clamp stays FP32
        assert any(n.startswith("/Clip") or "Clip" in n for n in res.kept_fp32_nodes)


def test_fp16_keeps_named_layers_fp32_when_tolerance_fails(exported):
    e = exported["refiner"]
    feeds = [{"input": generated_input(5, 1, 64, 64, 0)}]
    ref = e.to_bytes()
    strict = Fp16Tolerance(mean=1e-12, p999=1e-12)
    res = to_fp16(e.model, lambda p: compare_onnx(ref, p.SerializeToString(), feeds, strict).errors,
                  tol=strict, max_rounds=2)
    assert not res.passed
    names = {n.name for n in e.model.graph.node}
    assert res.kept_fp32_nodes and set(res.kept_fp32_nodes) <= names


def test_checkpoint_roundtrip(tmp_path):
    for i, k in enumerate(KINDS):
        save_checkpoint(random_model(k, seed=i), tmp_path, train={"steps": 0})
    ckpts = load_checkpoints(tmp_path)
    assert [c.stage for c in ckpts.values()] == ["depth", "coarse", "refiner"]
    assert [c.contract for c in ckpts.values()] == ["depth", "rgbd", "refiner"]


def test_wrong_stage_checkpoint_is_refused(tmp_path):
    w = save_checkpoint(random_model("matting"), tmp_path)
    w.rename(tmp_path / "refiner.safetensors")
    w.with_suffix(".json").rename(tmp_path / "refiner.json")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path, "refiner")
    msg = str(e.value)
    assert "refiner.json" in msg and "'matting'" in msg and "\n" not in msg


def test_corrupt_checkpoint_is_refused(tmp_path):
    w = save_checkpoint(random_model("depth"), tmp_path)
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="depth.safetensors"):
        load_checkpoint(w)
    (tmp_path / "depth.json").write_text(json.dumps({"stage": "depth"}))
    with pytest.raises(CheckpointError, match="depth.json"):
        load_checkpoint(tmp_path, "depth")


def test_generated_inputs_are_in_contract_range():
    x = generated_input(5, 2, 32, 64, 0)
    assert x.dtype == np.float32 and x.shape == (2, 5, 32, 64) and 0 <= x.min() and x.max() <= 1


def test_reads_checkpoints_written_by_training(tmp_path):
    ckpt_mod = pytest.importorskip("training.checkpoint")
    ckpt_mod.save(tmp_path, random_model("refiner"), stage="refiner", train={"step": 1})
    c = load_checkpoint(tmp_path, "refiner")
    assert c.stage == "refiner" and c.meta["train"]["step"] == 1


def test_weights_stamped_with_another_kind_are_refused(tmp_path):
    import safetensors.torch as st

    w = save_checkpoint(random_model("matting"), tmp_path)
    st.save_file(st.load_file(str(w)), str(w), metadata={"kind": "depth"})
    with pytest.raises(CheckpointError, match=r"matting\.safetensors: weights of a 'depth' model"):
        load_checkpoint(tmp_path, "matting")


def test_modelopt_autocast_gets_real_shaped_calibration_and_falls_back(exported, monkeypatch):
    import export.fp16 as fp16

    e = exported["matting"]
    feeds = [{"input": generated_input(4, 1, 96, 160, 0)}]
    ref = e.to_bytes()
    seen = []

    def fake_autocast(proto, keep, calib):
        seen.append([v.shape for f in calib for v in f.values()])
        return fp16._convert_occ(proto, keep)

    monkeypatch.setattr(fp16, "modelopt_available", lambda: True)
    monkeypatch.setattr(fp16, "_convert_modelopt", fake_autocast)
    res = to_fp16(e.model, lambda p: compare_onnx(ref, p.SerializeToString(), feeds).errors, feeds=feeds)
    assert res.converter == "modelopt-autocast" and seen[0] == [(1, 4, 96, 160)]

    def broken(*_):
        raise ImportError("cupy missing")

    monkeypatch.setattr(fp16, "_convert_modelopt", broken)
    res = to_fp16(e.model, lambda p: compare_onnx(ref, p.SerializeToString(), feeds).errors, feeds=feeds)
    assert res.passed and res.converter.startswith("onnxconverter-common (modelopt-autocast failed: cupy missing")


def test_fp16_keeps_a_node_that_takes_one_shared_constant_twice():
    """A Slice kept FP32 whose starts and axes are the same shared initializer (onnxslim merges equal constants;
    the five-level matting model has one): each kept node gets one FP32 copy, and the graph stays valid."""
    from onnx import TensorProto, helper

    from export.fp16 import convert

    inits = [helper.make_tensor("one", TensorProto.INT64, [1], [1]),
             helper.make_tensor("two", TensorProto.INT64, [1], [3])]
    nodes = [helper.make_node("Slice", ["x", "one", "two", "one"], ["a"], name="keep_me"),
             helper.make_node("Slice", ["x", "one", "two", "one"], ["b"], name="other"),
             helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], inits)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fp16, _ = convert(proto, keep_nodes=("keep_me",), converter="onnxconverter-common")
    onnx.checker.check_model(fp16, full_check=True)
    x = np.random.default_rng(0).random((1, 4, 2, 2)).astype(np.float32)
    got = ort_session(fp16.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, 2 * x[:, 1:3], atol=1e-3)
