"""GPU checks of export/ (marker `gpu`; skipped without a CUDA device). Record the figures in bench/RESULTS.md.

TensorRT 11 engines built from the FP16 ONNX (strongly typed), parity against the FP32 ONNX (done by
the build itself with polygraphy), timing-cache reuse making the second build faster, per-model latency.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

pytest.importorskip("torch")

from export.build import BuildConfig, build  # noqa: E402
from export.checkpoints import random_model, save_checkpoint  # noqa: E402


def _trt():
    trt = pytest.importorskip("tensorrt")
    return trt, int(trt.__version__.split(".")[0])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt-gpu")
    for i, k in enumerate(("depth", "matting", "refiner")):
        save_checkpoint(random_model(k, seed=i), d)
    return d


@pytest.fixture(scope="module")
def fp16_build(checkpoints, tmp_path_factory):
    _trt()
    return build(BuildConfig(out=tmp_path_factory.mktemp("trt-fp16"), source=checkpoints, target="trt", fp16=True))


def test_fp16_engines_follow_the_flavour_and_match_onnx(fp16_build):
    trt, major = _trt()
    engines = [a for a in fp16_build.bundle.artifacts if a.format == "engine"]
    assert len(engines) == 3
    for a in engines:
        if major >= 11:
            assert a.engine["path"].startswith("strongly typed") and a.engine["built_from"].endswith(".fp16.onnx")
        else:
            assert a.engine["path"] == "fp32 onnx + BuilderFlag.FP16"
        v = a.validation
        assert v["passed"] and v["mean_abs"] <= 0.5 / 255 and v["p99.9_abs"] <= 2 / 255, (a.file, v)
        assert a.engine["gpu"] and "none" not in a.engine["gpu"]


def test_fp32_engines_match_onnx(checkpoints, tmp_path):
    _trt()
    res = build(BuildConfig(out=tmp_path / "b", source=checkpoints, target="trt"))
    for a in res.bundle.artifacts:
        if a.format == "engine":
            assert a.validation["passed"] and a.validation["max_abs"] <= 1e-3, (a.file, a.validation)


def test_timing_cache_reuse_makes_second_build_faster(checkpoints, tmp_path):
    _trt()
    cache = tmp_path / "timing.cache"
    cfg = dict(source=checkpoints, target="trt", fp16=True, timing_cache=cache, optimization_level=3)
    first = build(BuildConfig(out=tmp_path / "a", **cfg))
    assert cache.is_file() and cache.stat().st_size > 0
    second = build(BuildConfig(out=tmp_path / "b", **cfg))

    def engine_seconds(r):
        return sum(a.engine["build_seconds"] for a in r.bundle.artifacts if a.format == "engine")

    assert {a.engine["timing_cache"] for a in second.bundle.artifacts if a.format == "engine"} == {"reused"}
    t1, t2 = engine_seconds(first), engine_seconds(second)
    print(f"engine build seconds: first {t1:.2f}, with reused timing cache {t2:.2f}")
    assert t2 < t1


def test_latency_per_model(fp16_build):
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner


    rows = []
    for a in fp16_build.bundle.artifacts:
        if a.format != "engine":
            continue
        data = fp16_build.bundle.path(a).read_bytes()
        name = a.file.split(".")[0]
        prof = next(iter(a.engine["profiles"].values()))
        opt = tuple(prof["opt"])
        x = np.random.default_rng(0).random(opt, dtype=np.float32)
        with TrtRunner(EngineFromBytes(data)) as runner:
            feed = {next(iter(a.inputs)): x}
            for _ in range(10):
                runner.infer(feed)
            times = []
            for _ in range(50):
                t = time.perf_counter()
                runner.infer(feed)
                times.append(time.perf_counter() - t)
        rows.append((name, opt, 1e3 * float(np.median(times))))
    for name, opt, ms in rows:
        print(f"latency {name} {list(opt)}: {ms:.3f} ms (median of 50, host-synchronous, incl. copies)")
    assert len(rows) == 3 and all(ms > 0 for *_, ms in rows)

