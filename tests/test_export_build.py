"""export.build / export.build_engine: bundles that load and verify, TensorRT-RTX engines built without a GPU,
clear one-line failures, and no valid-looking artifact after a failed or interrupted build."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

pytest.importorskip("torch")

import export.build as build_mod  # noqa: E402
from export.build import BuildConfig, BuildError, build  # noqa: E402
from export.checkpoints import random_model, save_checkpoint  # noqa: E402
from wbg_edge.bundle import BundleError, load_bundle, sha256_file, write_bundle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(model_res=64, refine_res=128)  # tiny profiles keep builds and validation fast


def has_trt_rtx() -> bool:
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        return False
    return True


needs_rtx = pytest.mark.skipif(not has_trt_rtx(), reason="tensorrt_rtx not installed")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    for i, k in enumerate(("depth", "matting", "refiner")):
        save_checkpoint(random_model(k, seed=i), d, train={"note": "random init for tests"})
    return d


@pytest.fixture(scope="session")
def onnx_bundle(checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx-bundle")
    return build(BuildConfig(out=out, source=checkpoints, target="onnx", **SMALL))


@pytest.fixture(scope="session")
def rtx_bundles(checkpoints, onnx_bundle, tmp_path_factory):
    """FP32 and FP16 TensorRT-RTX engines of all three models, built once (~0.2 s per engine): FP32 from the
    checkpoints, FP16 from the ONNX bundle (the path an imported model takes)."""
    if not has_trt_rtx():
        pytest.skip("tensorrt_rtx not installed")
    return {p: build(BuildConfig(out=tmp_path_factory.mktemp(f"rtx-{p}"), source=src, target="trt-rtx",
                                 fp16=p == "fp16", **SMALL))
            for p, src in (("fp32", checkpoints), ("fp16", onnx_bundle.bundle.root))}


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def test_onnx_only_bundle_loads_and_verifies(onnx_bundle):
    root = onnx_bundle.bundle.root
    b = load_bundle(root)
    assert {(a.stage, a.precision) for a in b.artifacts} == {(s, p) for s in ("depth", "coarse", "refiner")
                                                              for p in ("fp32", "fp16")}
    for a in b.artifacts:
        b.verify(a)
        assert a.format == "onnx" and a.validation
    assert _files(root) == {a.file for a in b.artifacts} | {"manifest.json", "REPORT.md"}  # no temp, no .onnx.data
    fp32 = {a.stage: a.validation for a in b.artifacts if a.precision == "fp32"}
    assert all(v["torch_vs_onnxruntime_max_abs"] <= 1e-4 for v in fp32.values())
    fp16 = [a.validation for a in b.artifacts if a.precision == "fp16"]
    assert all(v["passed"] and v["mean_abs"] <= 0.5 / 255 and v["p99.9_abs"] <= 2 / 255 for v in fp16)
    # validated at real shapes (explicit), not the 1x1 a shape-less loader would use
    assert all(min(s[2:]) >= 16 for v in fp16 for s in v["shapes"])
    assert "torch" in b.producer and "onnx" in b.producer
    assert "fp16" in (root / "REPORT.md").read_text()


@needs_rtx
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_trt_rtx_engines_built_without_gpu(rtx_bundles, precision):
    b = load_bundle(rtx_bundles[precision].bundle.root)
    engines = [a for a in b.artifacts if a.format == "engine"]
    assert len(engines) == 3 and all(a.precision == precision for a in engines)
    want = {"depth": ("image", "depth", 3), "coarse": ("input", "alpha", 4), "refiner": ("input", "delta", 5)}
    for a in engines:
        b.verify(a)
        assert b.path(a).stat().st_size > 10_000
        e = a.engine
        assert e["module"] == "tensorrt_rtx" and e["flavour"] == "trt-rtx"
        i, o, ch = want[a.stage]
        assert list(e["io"]["inputs"]) == [i] and list(e["io"]["outputs"]) == [o]
        assert e["io"]["inputs"][i]["shape"] == [-1, ch, -1, -1]
        assert e["io"]["inputs"][i]["dtype"] == "float" and e["io"]["outputs"][o]["dtype"] == "float"
        prof = e["profiles"][i]
        assert prof["min"][1] == prof["opt"][1] == prof["max"][1] == ch
        assert all(mn <= op <= mx for mn, op, mx in zip(prof["min"], prof["opt"], prof["max"], strict=True))
        # opt = res x res*16/9 at the stage's resolution (refiner at refine_res), rounded to 32
        assert prof["opt"][2:] == ([128, 224] if a.stage == "refiner" else [64, 128])
        if precision == "fp16":  # strongly typed: built from the FP16 ONNX
            assert e["path"].startswith("strongly typed") and e["built_from"].endswith(".fp16.onnx")
        else:
            assert e["path"] == "fp32 onnx" and not e["built_from"].endswith(".fp16.onnx")
        assert "skipped" in a.validation  # no device here: never deserialized


@needs_rtx
def test_builder_reports_parser_errors_by_node(onnx_bundle):
    import tensorrt_rtx

    from export.tensorrt_builder import BuildOptions, EngineBuildError, build_engine

    m = onnx.load(str(onnx_bundle.bundle.root / "refiner.onnx"))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    conv.op_type = "NoSuchOp"
    with pytest.raises(EngineBuildError) as e:
        build_engine(tensorrt_rtx, m.SerializeToString(), BuildOptions(), name="refiner")
    assert "refiner: ONNX parser failed" in str(e.value) and conv.name in str(e.value)


def test_corrupted_onnx_in_source_bundle_fails_clearly(onnx_bundle, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(onnx_bundle.bundle.root, src)
    (src / "matting.onnx").write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(BundleError, match=r"matting\.onnx: SHA-256"):
        build(BuildConfig(out=tmp_path / "o1", source=src, **SMALL))
    # re-hashed (someone edited the manifest): the ONNX itself is rejected, naming the file
    m = json.loads((src / "manifest.json").read_text())
    for a in m["artifacts"]:
        if a["file"] == "matting.onnx":
            a["sha256"] = sha256_file(src / "matting.onnx")
    (src / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BuildError, match=r"matting\.onnx: not a valid ONNX model"):
        build(BuildConfig(out=tmp_path / "o2", source=src, **SMALL))
    assert not (tmp_path / "o2" / "manifest.json").exists()


def test_interrupted_build_leaves_no_valid_looking_artifact(onnx_bundle, tmp_path, monkeypatch):
    real = build_mod.to_fp16
    calls = []

    def boom(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C (or SIGTERM, which the CLI maps to it) in the middle
        return real(*a, **k)

    monkeypatch.setattr(build_mod, "to_fp16", boom)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build(BuildConfig(out=out, source=onnx_bundle.bundle.root, **SMALL))
    assert _files(out) == set()  # staging folder removed, nothing renamed in


def test_failure_while_committing_leaves_no_manifest(onnx_bundle, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(onnx_bundle.bundle.root, out)  # an older, valid bundle is being replaced

    def fail(_bundle):
        raise OSError("disk full")

    monkeypatch.setattr(build_mod, "write_bundle", fail)
    with pytest.raises(OSError):
        build(BuildConfig(out=out, source=onnx_bundle.bundle.root, **SMALL))
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_build_from_bundle_of_fixed_size_imported_model(tmp_path):
    """An imported coarse model (contract rgb, fixed size) builds like ours (the import_coarse case)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array((__import__("numpy").ones((1, 3, 3, 3), "float32") * 0.1), "w")
    g = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["z"], pads=[1, 1, 1, 1], name="conv"),
                           helper.make_node("Sigmoid", ["z"], ["alpha"], name="sig")], "seg",
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 48, 64])],
                          [helper.make_tensor_value_info("alpha", TensorProto.FLOAT, [1, 1, 48, 64])], [w])
    src = tmp_path / "imported"
    src.mkdir()
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src / "seg.onnx"))
    from wbg_edge.bundle import Artifact, Bundle

    art = Artifact(stage="coarse", file="seg.onnx", format="onnx", precision="fp32", contract="rgb",
                   sha256=sha256_file(src / "seg.onnx"), inputs={"image": [1, 3, 48, 64]},
                   outputs={"alpha": [1, 1, 48, 64]}, fixed_size=(48, 64), size_multiple=1)
    write_bundle(Bundle(root=src, name="imported", artifacts=(art,), provenance={"coarse": {"source": "test"}},
                        base="default", base_stages=("refiner",),  # the refiner comes from the shipped bundle
                        runtime={"patch_context": 4}))
    target = "trt-rtx" if has_trt_rtx() else "onnx"
    res = build(BuildConfig(out=tmp_path / "out", source=src, target=target, fp16=True, **SMALL))
    b = load_bundle(res.bundle.root)
    assert b.base is None and b.stages() == {"coarse", "refiner"}  # complete: every stage it runs, no depth
    assert b.runtime == {"patch_context": 4}  # the source's runtime defaults hold for its engines
    assert b.provenance["coarse"] == {"source": "test"}
    coarse = [a for a in b.artifacts if a.stage == "coarse"]
    assert {a.file for a in coarse} >= {"seg.onnx", "seg.fp16.onnx"}
    assert all(a.fixed_size == (48, 64) and a.contract == "rgb" for a in coarse)
    for a in b.artifacts:
        b.verify(a)
    if target == "trt-rtx":
        eng = b.find("coarse", "engine")
        assert eng is not None and eng.engine["profiles"] == {}  # static input: no profile needed
        b.verify(eng)


def _cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "export.build_engine", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def test_cli_trt_without_tensorrt_or_gpu_is_one_clear_line(tmp_path):
    from wbg_edge.gpu import has_cuda_device

    try:
        import tensorrt  # noqa: F401
        have_trt = True
    except ImportError:
        have_trt = False
    if have_trt and has_cuda_device():
        pytest.skip("TensorRT and a GPU are present")
    r = _cli("--target", "trt", "--out", str(tmp_path / "x"), "--quiet")
    assert r.returncode == 1
    assert "--onnx-only" in r.stderr and "--target trt-rtx" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_cli_onnx_only_from_checkpoints_and_failure_names_model(checkpoints, tmp_path):
    r = _cli("--checkpoints", str(checkpoints), "--onnx-only", "--out", str(tmp_path / "b"), "--model-res", "64",
             "--refine-res", "128", "--quiet")
    assert r.returncode == 0, r.stderr
    load_bundle(tmp_path / "b")
    bad = tmp_path / "bad"
    shutil.copytree(checkpoints, bad)
    (bad / "depth.safetensors").write_bytes(b"not weights")
    r = _cli("--checkpoints", str(bad), "--onnx-only", "--out", str(tmp_path / "c"), "--quiet")
    assert r.returncode == 1 and "depth.safetensors" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "c" / "manifest.json").exists()


def test_sigterm_mid_build_leaves_nothing(checkpoints, tmp_path):
    import signal
    import time

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "export.build_engine", "--checkpoints", str(checkpoints),
                             "--onnx-only", "--out", str(out), "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.name.startswith(".wbg-build-") for p in out.iterdir()):
            break  # the build is under way (staging folder made, export running)
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _files(out) == set()
