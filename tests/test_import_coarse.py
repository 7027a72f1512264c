"""export.import_coarse + export.tflite_to_onnx: MediaPipe selfie segmentation as an imported coarse stage.

The wheel (~36 MB) is downloaded once into ~/.cache/wbg-edge/wheels (or $WBG_EDGE_HOME/wheels) and reused;
tests that need it skip, saying so, only when the package registry cannot be reached.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite", reason="the [import] extra (tflite) is not installed")
pytest.importorskip("onnx", reason="the [import] extra (onnx) is not installed")
ort = pytest.importorskip("onnxruntime")

from export import import_coarse as ic  # noqa: E402
from export.tflite_to_onnx import ConversionError, convert, op_histogram  # noqa: E402
from wbg_edge.bundle import default_bundle_dir, load_bundle, sha256_file, shipped_bundle_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel() -> Path:
    try:
        return ic.fetch_wheel()
    except ic.RegistryUnreachable as e:
        pytest.skip(f"package registry unreachable, cannot download mediapipe {ic.VERSION}: {e}")


@pytest.fixture(scope="module")
def general(wheel, tmp_path_factory):
    out = tmp_path_factory.mktemp("rw") / "bundle"
    return ic.import_mediapipe_selfie(out, variant="general", wheel=wheel)


def _run(onnx_path: Path, x_chw: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return s.run(["alpha"], {"image": x_chw[None].astype(np.float32)})[0]


# -- end to end from the wheel ------------------------------------------------------------------------
def test_import_writes_bundle_with_provenance(general, wheel):
    b = load_bundle(general.bundle.root)
    assert b.stages() == {"coarse"} and b.name == "real-world"
    assert sorted(p.name for p in b.root.glob("*.onnx")) == [general.artifact.file]
    # the refiner comes from the shipped segmenter-refiner bundle (trained for segmenter masks on photos),
    # named as the base; no depth (ours, trained on generated scenes, misleads the refiner on real photos)
    assert b.base == "segmenter-refiner" and b.base_stages == ("refiner",)
    holder, ref = b.resolve("refiner")
    assert holder.root == shipped_bundle_dir("segmenter-refiner") and holder.verify(ref)
    assert holder.provenance["refiner"]["recipe"] == "training.recipes.real_world"
    assert b.resolve("depth") is None and b.available_stages() == {"coarse", "refiner"}
    a = b.find("coarse")
    b.verify(a)
    assert (a.contract, a.layout, a.fixed_size) == ("rgb", "NCHW", (256, 256))
    assert a.inputs == {"image": [1, 3, 256, 256]} and a.outputs == {"alpha": [1, 1, 256, 256]}
    p = b.provenance["coarse"]
    assert p["wheel"] == wheel.name and p["wheel"].startswith("mediapipe-0.10.14-")
    assert p["wheel_sha256"] == sha256_file(wheel)
    assert p["path_in_wheel"] == "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
    assert p["tflite_sha256"] == ic.VARIANTS["general"][2]  # identical in every platform's wheel
    assert "Apache License" in p["licence_text"] and "Apache" in p["licence"]
    assert p["converter"].startswith("export.tflite_to_onnx ")
    assert "Convolution2DTransposeBias" in p["tflite_ops"]
    raw = json.loads((b.root / "manifest.json").read_text())
    assert raw["artifacts"][0]["validation"]["onnx_checker"] == "ok"


def test_parity_with_tflite_interpreter_on_real_photos(general):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert (the TFLite interpreter) is not installed")
    v = general.validation
    assert v["parity"] == "checked"
    assert set(v["images"]) >= {"astronaut", "camera", "grace_hopper"}, "sample photos missing (skimage, matplotlib)"
    assert v["max_abs_diff"] < 1e-4 and v["mean_abs_diff"] < 1e-6
    assert all(e["iou"] > 0.999 for e in v["images"].values())


def test_finds_the_person_in_grace_hopper(general):
    photos = ic.sample_photos()
    if "grace_hopper" not in photos:
        pytest.skip("matplotlib's grace_hopper.jpg is not available")
    x = ic.to_model_input(photos["grace_hopper"], (256, 256)).transpose(2, 0, 1)
    y = _run(general.bundle.root / general.artifact.file, x)[0, 0]
    assert y.min() >= 0 and y.max() <= 1
    assert y[85:171, 85:171].mean() > 0.9
    assert np.concatenate([y[:10, :10].ravel(), y[:10, -10:].ravel()]).mean() < 0.1


def test_reproducible_bit_for_bit(general, wheel, tmp_path):
    """Same wheel -> same ONNX bytes, also from a fresh interpreter with another hash seed."""
    onnx_bytes = (general.bundle.root / general.artifact.file).read_bytes()
    again = ic.import_mediapipe_selfie(tmp_path / "b", wheel=wheel, check=False)
    assert (again.bundle.root / again.artifact.file).read_bytes() == onnx_bytes
    code = ("import sys, hashlib; from export.import_coarse import read_wheel, to_onnx, VARIANTS; "
            "w = read_wheel(sys.argv[1], VARIANTS['general'][0]); "
            "print(hashlib.sha256(to_onnx(w, 'general').SerializeToString()).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    r = subprocess.run([sys.executable, "-c", code, str(wheel)], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == hashlib.sha256(onnx_bytes).hexdigest() == general.artifact.sha256


def test_landscape_variant(wheel, tmp_path):
    r = ic.import_mediapipe_selfie(tmp_path / "l", variant="landscape", wheel=wheel)
    assert r.artifact.fixed_size == (144, 256)
    assert r.artifact.inputs == {"image": [1, 3, 144, 256]}
    if "max_abs_diff" in r.validation:
        assert r.validation["max_abs_diff"] < 1e-4
    assert "MEAN" in r.bundle.provenance["coarse"]["tflite_ops"]


def test_real_world_bundle_copies_refiner_and_depth(wheel, tmp_path):
    out = tmp_path / "rw"
    r = ic.import_mediapipe_selfie(out, wheel=wheel, refiner_bundle=default_bundle_dir(), depth=True, check=False)
    b = load_bundle(out)
    assert b.name == "real-world" and b.stages() == {"coarse", "refiner", "depth"}
    for a in b.artifacts:
        b.verify(a)
    assert b.find("coarse").contract == "rgb"
    assert set(r.bundle.provenance) == {"coarse", "refiner", "depth"}
    # Re-import without depth: the manifest drops it and the stale file goes too.
    ic.import_mediapipe_selfie(out, wheel=wheel, refiner_bundle=default_bundle_dir(), depth=False, check=False)
    b = load_bundle(out)
    assert b.stages() == {"coarse", "refiner"}
    assert sorted(p.name for p in out.glob("*.onnx")) == sorted(a.file for a in b.artifacts)


def test_cli(wheel, tmp_path, capsys):
    assert ic.main(["mediapipe-selfie", "--wheel", str(wheel), "--out", str(tmp_path / "c"), "--no-check"]) == 0
    assert "base bundle 'segmenter-refiner'" in capsys.readouterr().out
    assert load_bundle(tmp_path / "c").base == "segmenter-refiner"
    # with our depth model: depth and the refiner that learnt with it, from the default bundle, with context
    assert ic.main(["mediapipe-selfie", "--wheel", str(wheel), "--out", str(tmp_path / "c"), "--no-check",
                    "--depth"]) == 0
    b = load_bundle(tmp_path / "c")
    assert (b.base, b.base_stages, b.runtime) == ("default", ("refiner", "depth"), {"patch_context": 4})
    assert b.resolve("refiner")[0].root == default_bundle_dir()
    assert ic.main(["mediapipe-selfie", "--wheel", str(wheel), "--out", str(tmp_path / "c"), "--no-check",
                    "--no-refiner"]) == 0
    b = load_bundle(tmp_path / "c")
    assert b.base is None and b.stages() == {"coarse"} and b.name == "mediapipe-selfie-general"
    assert ic.main(["mediapipe-selfie", "--wheel", str(tmp_path / "nope.whl"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("import_coarse:") and "not found" in err and "\n" not in err


def test_licence_and_notice_go_beside_the_converted_file(general, wheel, tmp_path):
    """Apache-2.0 redistribution of a modified file: the wheel's LICENSE verbatim, a NOTICE saying what was
    changed and where it came from, both hashed in the manifest; --name and the command recorded."""
    root = general.bundle.root
    p = load_bundle(root).provenance["coarse"]
    with zipfile.ZipFile(wheel) as z:
        assert (root / "LICENSE").read_bytes() == z.read("mediapipe-0.10.14.dist-info/LICENSE")
    notice = (root / "NOTICE").read_text()
    for must in (wheel.name, sha256_file(wheel), p["path_in_wheel"], ic.VARIANTS["general"][2], p["converter"],
                 general.artifact.sha256, "Apache License, Version 2.0", ic.parity_line(general.validation)):
        assert must in notice, must
    assert p["files"] == {"LICENSE": sha256_file(root / "LICENSE"), "NOTICE": sha256_file(root / "NOTICE")}
    assert ic.main(["mediapipe-selfie", "--wheel", str(wheel), "--out", str(tmp_path / "n"), "--no-check",
                    "--name", "mine"]) == 0
    b = load_bundle(tmp_path / "n")
    command = f"python -m export.import_coarse mediapipe-selfie --out {tmp_path / 'n'} --no-check --name mine"
    assert b.name == "mine" and b.provenance["coarse"]["command"] == command  # the wheel's local path left out
    assert f"Made with:       {command}" in (tmp_path / "n" / "NOTICE").read_text()


def test_default_paths_follow_wbg_edge_home(monkeypatch, tmp_path):
    monkeypatch.setenv("WBG_EDGE_HOME", str(tmp_path))
    assert ic.real_world_bundle_dir() == tmp_path / "bundles" / "real-world"
    assert ic.wheel_cache_dir() == tmp_path / "wheels"


# -- clear one-line errors ----------------------------------------------------------------------------
def test_wheel_without_the_model_or_not_a_zip(tmp_path):
    fake = tmp_path / "mediapipe-0.10.14-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("mediapipe-0.10.14.dist-info/LICENSE", "Apache License")
    with pytest.raises(ic.ImportCoarseError, match="selfie_segmentation.tflite is not in the wheel"):
        ic.read_wheel(fake, ic.VARIANTS["general"][0])
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ic.ImportCoarseError, match="not a valid wheel"):
        ic.read_wheel(bad, ic.VARIANTS["general"][0])


def test_unreachable_registry_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "0")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(ic.RegistryUnreachable, match="cannot reach the package registry.*--wheel PATH") as e:
        ic.fetch_wheel(tmp_path / "empty-cache")
    assert "\n" not in str(e.value)


def test_converter_rejects_non_tflite():
    with pytest.raises(ConversionError, match="not a TFLite flatbuffer"):
        convert(b"\x00" * 64)


# -- the custom-op rewrite against the TFLite interpreter ---------------------------------------------
def _one_op_tflite(x_shape, w: np.ndarray, b: np.ndarray, options: bytes) -> bytes:
    """A TFLite model whose only op is MediaPipe's Convolution2DTransposeBias (x NHWC, w OHWI, b O)."""
    import flatbuffers
    import tflite as T
    fb = flatbuffers.Builder(4096)

    def ivec(start, values):
        start(fb, len(values))
        for v in reversed(values):
            fb.PrependInt32(int(v))
        return fb.EndVector()

    def buffer(data: bytes | None):
        vec = fb.CreateByteVector(data) if data else None
        T.BufferStart(fb)
        if vec is not None:
            T.BufferAddData(fb, vec)
        return T.BufferEnd(fb)

    n, h, wd, _ = x_shape
    o, kh, kw, _ = w.shape
    out_shape = [n, h * 2, wd * 2, o]
    buffers = [buffer(None), buffer(w.astype("<f4").tobytes()), buffer(b.astype("<f4").tobytes())]
    tensors = []
    for name, shape, buf in [("x", x_shape, 0), ("w", w.shape, 1), ("b", b.shape, 2), ("y", out_shape, 0)]:
        nm = fb.CreateString(name)
        sh = ivec(T.TensorStartShapeVector, shape)
        T.TensorStart(fb)
        T.TensorAddShape(fb, sh)
        T.TensorAddType(fb, T.TensorType.FLOAT32)
        T.TensorAddBuffer(fb, buf)
        T.TensorAddName(fb, nm)
        tensors.append(T.TensorEnd(fb))
    code = fb.CreateString("Convolution2DTransposeBias")
    T.OperatorCodeStart(fb)
    T.OperatorCodeAddDeprecatedBuiltinCode(fb, T.BuiltinOperator.CUSTOM)
    T.OperatorCodeAddBuiltinCode(fb, T.BuiltinOperator.CUSTOM)
    T.OperatorCodeAddCustomCode(fb, code)
    T.OperatorCodeAddVersion(fb, 1)
    opcode = T.OperatorCodeEnd(fb)
    ins, outs = ivec(T.OperatorStartInputsVector, [0, 1, 2]), ivec(T.OperatorStartOutputsVector, [3])
    opts = fb.CreateByteVector(options)
    T.OperatorStart(fb)
    T.OperatorAddOpcodeIndex(fb, 0)
    T.OperatorAddInputs(fb, ins)
    T.OperatorAddOutputs(fb, outs)
    T.OperatorAddCustomOptions(fb, opts)
    op = T.OperatorEnd(fb)

    def tvec(start, items):
        start(fb, len(items))
        for it in reversed(items):
            fb.PrependUOffsetTRelative(it)
        return fb.EndVector()

    t_vec = tvec(T.SubGraphStartTensorsVector, tensors)
    op_vec = tvec(T.SubGraphStartOperatorsVector, [op])
    g_in, g_out = ivec(T.SubGraphStartInputsVector, [0]), ivec(T.SubGraphStartOutputsVector, [3])
    T.SubGraphStart(fb)
    T.SubGraphAddTensors(fb, t_vec)
    T.SubGraphAddInputs(fb, g_in)
    T.SubGraphAddOutputs(fb, g_out)
    T.SubGraphAddOperators(fb, op_vec)
    graph = T.SubGraphEnd(fb)
    codes = tvec(T.ModelStartOperatorCodesVector, [opcode])
    graphs = tvec(T.ModelStartSubgraphsVector, [graph])
    bufs = tvec(T.ModelStartBuffersVector, buffers)
    T.ModelStart(fb)
    T.ModelAddVersion(fb, 3)
    T.ModelAddOperatorCodes(fb, codes)
    T.ModelAddSubgraphs(fb, graphs)
    T.ModelAddBuffers(fb, bufs)
    fb.Finish(T.ModelEnd(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def test_transpose_conv_bias_rewrite_matches_tflite_interpreter():
    """The custom op alone, random weights, several channels: ONNX ConvTranspose vs the interpreter's kernel."""
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 12, 20, 16)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 16)).astype(np.float32)  # O, KH, KW, I
    b = rng.standard_normal(3).astype(np.float32)
    model = _one_op_tflite(x.shape, w, b, struct.pack("<3i", 1, 2, 2))  # SAME, stride 2 x 2
    assert op_histogram(model) == {"Convolution2DTransposeBias": 1}
    it = litert.Interpreter(model_content=model)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])  # (1, 24, 40, 3) NHWC
    onnx_model = convert(model, clamp=False)  # no [0, 1] clamp: compare the raw op
    s = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = s.run(["alpha"], {"image": x.transpose(0, 3, 1, 2).copy()})[0]
    np.testing.assert_allclose(y.transpose(0, 2, 3, 1), ref, atol=1e-5, rtol=1e-5)
    # and a numpy reference of the op's definition: out[2i+a, 2j+c, o] = sum_k x[i, j, k] w[o, a, c, k] + b[o]
    npref = np.einsum("nijk,oack->niajco", x, w).reshape(1, 24, 40, 3) + b
    np.testing.assert_allclose(ref, npref, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("copy", [True, False], ids=["copied-refiner", "base-bundle"])
def test_pipeline_runs_real_world_bundle(wheel, tmp_path, copy):
    """The public Pipeline API runs an imported real-world bundle on a real portrait."""
    pipeline = pytest.importorskip("wbg_edge.pipeline", reason="wbg_edge.pipeline is not there yet")
    from wbg_edge.bundle import BundleError
    photos = ic.sample_photos()
    if "grace_hopper" not in photos:
        pytest.skip("matplotlib's grace_hopper.jpg is not available")
    out = tmp_path / "rw"
    ic.import_mediapipe_selfie(out, wheel=wheel, refiner_bundle=shipped_bundle_dir("segmenter-refiner") if copy
                               else None, check=False)
    try:
        p = pipeline.Pipeline(pipeline.PipelineConfig(bundle=str(out), mode="alpha", threads=2))
    except BundleError as e:
        if copy or "no 'refiner' stage" not in str(e):
            raise
        pytest.skip(f"the runtime does not take stages from a base bundle yet: {e}")
    with p:
        matte = p.process(np.ascontiguousarray(photos["grace_hopper"][..., ::-1]))
    assert p.info()["coarse_contract"] == "rgb"
    alpha = matte.alpha
    h, w = alpha.shape
    assert alpha.shape == photos["grace_hopper"].shape[:2] and 0 <= alpha.min() and alpha.max() <= 1
    assert alpha[h // 3: 2 * h // 3, w // 3: 2 * w // 3].mean() > 0.9
    assert np.concatenate([alpha[:20, :20].ravel(), alpha[:20, -20:].ravel()]).mean() < 0.1


def test_real_world_bundle_takes_the_refiners_patch_context(general, wheel, tmp_path):
    """The refiner's runtime hint travels into the real-world bundle and sets the Pipeline's tile context;
    an explicit config value wins. The segmenter refiner learnt 32x32 patches with 4 px of context."""
    from wbg_edge.pipeline import Pipeline, PipelineConfig

    b = load_bundle(general.bundle.root)
    assert b.runtime == load_bundle(shipped_bundle_dir("segmenter-refiner")).runtime == {"patch_context": 4}
    assert Pipeline(PipelineConfig(bundle=str(b.root))).patch_context == 4
    assert Pipeline(PipelineConfig(bundle=str(b.root), patch_context=2)).patch_context == 2
    # the default refiner (whole-crop training) needs 4 px of context on photos, copied or borrowed
    ic.import_mediapipe_selfie(tmp_path / "d", wheel=wheel, refiner_bundle=default_bundle_dir(), check=False)
    assert load_bundle(tmp_path / "d").runtime == {"patch_context": 4}
    assert Pipeline(PipelineConfig(bundle=str(tmp_path / "d"))).patch_context == 4
    assert Pipeline(PipelineConfig()).patch_context == 0  # the shipped default bundle asks for none


# -- the shipped segmenter refiner and its recipe -----------------------------------------------------
def test_segmenter_refiner_bundle_is_shipped_and_checked(tmp_path):
    b = load_bundle(shipped_bundle_dir("segmenter-refiner"))
    assert b.name == "segmenter-refiner" and b.stages() == {"refiner"} and b.base is None
    assert {a.precision for a in b.artifacts} == {"fp32", "fp16"}
    for a in b.artifacts:
        assert b.verify(a).stat().st_size < 64_000  # small enough to ship in the wheel
        assert a.contract == "refiner" and a.inputs == {"input": ["N", 5, "H", "W"]}
    assert b.find("refiner", precision="fp16").validation["passed"]
    # a real-world bundle borrowing a tampered refiner is refused by hash, as everywhere else
    import shutil

    from wbg_edge.bundle import Bundle, BundleError
    shutil.copytree(b.root, tmp_path / "ref")
    f = tmp_path / "ref" / "refiner.onnx"
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    (tmp_path / "rw").mkdir()
    rw = Bundle(root=tmp_path / "rw", name="rw", artifacts=(), base="../ref", base_stages=("refiner",))
    holder, a = rw.resolve("refiner")
    with pytest.raises(BundleError, match="refiner.onnx: SHA-256 .* does not match the manifest"):
        holder.verify(a)


def test_segmenter_refiner_beats_the_mask_on_held_out_scenes():
    """The shipped refiner, run as the runtime runs it (32x32 band tiles with 4 px of context, D = 0), on
    scenes from photos it never saw with segmenter-like masks: boundary SAD and gradient error below the mask's."""
    pytest.importorskip("skimage")
    pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")  # refine_tiles' module
    from training.data.photo_scenes import VALIDATION_PHOTOS, SceneConfig, make_scene
    from training.metrics import gradient_error, sad
    from training.recipes.real_world import refine_tiles

    b = load_bundle(shipped_bundle_dir("segmenter-refiner"))
    s = ort.InferenceSession(str(b.verify(b.find("refiner", precision="fp32"))), providers=["CPUExecutionProvider"])
    totals = np.zeros(4)
    for i in range(4):
        sc = make_scene(99, i, SceneConfig(size=128, photos=VALIDATION_PHOTOS))
        gt, coarse = sc["alpha"], sc["coarse"]
        refined = refine_tiles(lambda x: s.run(["delta"], {"input": x})[0], sc["image"], coarse, 32,
                               b.runtime["patch_context"])
        unknown = (gt > 0.01) & (gt < 0.99)
        totals += [sad(coarse, gt, unknown), sad(refined, gt, unknown),
                   gradient_error(coarse, gt, unknown), gradient_error(refined, gt, unknown)]
    assert totals[1] < totals[0] and totals[3] < totals[2], totals


def test_real_world_recipe_quick_is_deterministic(tmp_path):
    """--quick trains, validates and (python -m export.recipe real-world) exports a loadable bundle; the same
    seed gives the same weights."""
    pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")
    pytest.importorskip("skimage", reason="scikit-image (its sample photos make the scenes) is not installed")
    from export import recipe
    from training.recipes import real_world

    args = ["--quick", "--no-progress", "--out", str(tmp_path / "a"), "--bundle", str(tmp_path / "bundle")]
    assert recipe.main(["real-world", *args]) == 0
    b = load_bundle(tmp_path / "bundle")
    assert b.stages() == {"refiner"} and b.runtime == {"patch_context": 4}
    s = ort.InferenceSession(str(b.verify(b.find("refiner"))), providers=["CPUExecutionProvider"])
    assert s.run(["delta"], {"input": np.zeros((3, 5, 32, 32), np.float32)})[0].shape == (3, 1, 32, 32)
    ev = json.loads((tmp_path / "a" / "eval.json").read_text())["validation"]
    assert {"sad_mask", "sad_refined", "grad_mask", "grad_refined"} <= set(ev)
    assert real_world.main(["--quick", "--no-progress", "--out", str(tmp_path / "b")]) == 0  # training alone
    a, b = ((tmp_path / d / "refiner.safetensors").read_bytes() for d in "ab")
    assert a == b


def test_scenes_never_use_the_evaluation_photos():
    from training.data import photo_scenes

    for name in (*photo_scenes.TRAIN_PHOTOS, *photo_scenes.VALIDATION_PHOTOS):
        assert not any(e in name for e in photo_scenes.EVALUATION_PHOTOS)
    assert not set(photo_scenes.TRAIN_PHOTOS) & set(photo_scenes.VALIDATION_PHOTOS)
    with pytest.raises(ValueError, match="evaluation photo"):
        photo_scenes.photo("astronaut.png")
