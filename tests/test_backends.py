"""Backends: ONNX Runtime on the shipped models; TensorRT's machine-independent parts (engine/manifest
matching, device detection, the one-line errors) everywhere, its engines only on a GPU."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from wbg_edge import gpu
from wbg_edge.backends import Backend, BackendOptions, choose_backend, open_backend
from wbg_edge.backends.cuda_memory import open_memory
from wbg_edge.backends.onnxruntime import OrtBackend
from wbg_edge.backends.tensorrt import TensorRTBackend, engine_mismatch
from wbg_edge.bundle import BundleError, default_bundle_dir, load_bundle, sha256_file

NO_GPU = pytest.mark.skipif(gpu.has_cuda_device(), reason="checks the behaviour without a CUDA device")
ADA = gpu.GpuInfo(0, "NVIDIA GeForce RTX 4090", (8, 9))


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(default_bundle_dir())


def engine_bundle(tmp_path, engine: dict):
    """The shipped bundle plus an 'engine' artifact per stage (bytes are junk: nothing may deserialize them)."""
    root = tmp_path / "eng"
    if root.exists():
        root = tmp_path / f"eng{len(list(tmp_path.iterdir()))}"
    shutil.copytree(default_bundle_dir(), root)
    m = json.loads((root / "manifest.json").read_text())
    for a in list(m["artifacts"]):
        f = root / (a["stage"] + ".engine")
        f.write_bytes(b"not an engine " + a["stage"].encode())
        m["artifacts"].append({**a, "file": f.name, "format": "engine", "precision": "fp16",
                               "sha256": sha256_file(f), "engine": engine})
    (root / "manifest.json").write_text(json.dumps(m))
    return load_bundle(root)


# ------------------------------------------------------------------ ONNX Runtime

def test_ort_backend_specs_and_run_into_buffers(bundle):
    b = open_backend("ort", bundle, bundle.find("coarse"), BackendOptions(threads=1))
    assert isinstance(b, Backend) and b.name == "ort-cpu"
    assert list(b.inputs()) == ["input"] and list(b.outputs()) == ["alpha"]
    assert b.inputs()["input"].dtype == np.float32
    x = np.random.default_rng(0).random((1, 4, 64, 96), dtype=np.float32)
    fresh = b.run({"input": x})["alpha"]
    out = np.full((1, 1, 64, 96), -1, np.float32)
    res = b.run({"input": x}, {"alpha": out})
    assert res["alpha"] is out and np.array_equal(out, fresh)
    # a batch view of a bigger buffer works too (the refiner's patch batch)
    big = np.zeros((3, 4, 64, 96), np.float32)
    big[:1] = x
    res2 = b.run({"input": big[:1]}, {"alpha": np.empty((1, 1, 64, 96), np.float32)})
    assert np.array_equal(res2["alpha"], fresh)
    b.close()


def test_ort_backend_runs_from_two_threads_at_once(bundle, in_threads):
    """An overlapped stream runs one session from two threads, each into its own buffers (its own IO binding)."""
    b = open_backend("ort", bundle, bundle.find("coarse"), BackendOptions(threads=1))
    rng = np.random.default_rng(1)
    xs = [rng.random((1, 4, 128, 192), dtype=np.float32) for _ in range(2)]
    want = [b.run({"input": x})["alpha"].copy() for x in xs]
    bad = []

    def work(i: int) -> None:
        out = np.empty((1, 1, 128, 192), np.float32)
        for _ in range(100):
            out.fill(-1)
            if not np.array_equal(b.run({"input": xs[i]}, {"alpha": out})["alpha"], want[i]):
                bad.append(i)

    in_threads(work, 2)
    assert not bad and b.concurrent_runs
    b.close()


def test_every_backend_says_whether_it_runs_from_two_threads():
    """`concurrent_runs` is a written member of the Backend protocol: the pipeline reads it to let an
    overlapped stream's two lanes call a model at once (ONNX Runtime) or in turn (one TensorRT context)."""
    assert "concurrent_runs" in Backend.__annotations__
    assert OrtBackend.concurrent_runs is True and TensorRTBackend.concurrent_runs is False


def test_ort_unknown_or_missing_provider(bundle):
    path = bundle.verify(bundle.find("refiner"))
    with pytest.raises(ValueError, match="provider 'tpu'"):
        OrtBackend(path, BackendOptions(providers=("tpu",)))
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match="'cuda' is not available") as e:
            OrtBackend(path, BackendOptions(providers=("cuda",)))
        assert "\n" not in str(e.value)


def test_ort_unloadable_file_is_one_line(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"not onnx")
    with pytest.raises(RuntimeError, match="junk.onnx: ONNX Runtime could not load") as e:
        OrtBackend(p)
    assert "\n" not in str(e.value)


def test_open_backend_checks_hash_and_format(tmp_path, bundle):
    root = tmp_path / "b"
    shutil.copytree(default_bundle_dir(), root)
    b2 = load_bundle(root)
    (root / "depth.onnx").write_bytes(b"changed")
    with pytest.raises(BundleError, match="depth.onnx: SHA-256"):
        open_backend("ort", b2, b2.find("depth"))
    with pytest.raises(BundleError, match="TensorRT needs an engine"):
        open_backend("trt", bundle, bundle.find("depth"))
    with pytest.raises(ValueError, match="'tpu'"):
        open_backend("tpu", bundle, bundle.find("depth"))


# ------------------------------------------------------------------ backend choice

def test_auto_without_engines_reports_why(bundle):
    c = choose_backend("auto", bundle)
    assert c.kind == "ort" and "no TensorRT engine" in c.reason
    assert choose_backend("ort", bundle).kind == "ort"
    with pytest.raises(BundleError, match="--backend trt: .*no TensorRT engine") as e:
        choose_backend("trt", bundle)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="'gpu'"):
        choose_backend("gpu", bundle)


@NO_GPU
def test_trt_without_gpu_is_one_line(tmp_path):
    b = engine_bundle(tmp_path, {"module": "tensorrt_rtx", "version": "1.7.1.116"})
    assert choose_backend("auto", b).reason == "auto: no CUDA device"
    with pytest.raises(RuntimeError, match="needs a CUDA device") as e:
        choose_backend("trt", b)
    assert "\n" not in str(e.value)
    art = b.find("refiner", "engine")
    for make in (lambda: TensorRTBackend(b.path(art), "tensorrt_rtx"),
                 lambda: TensorRTBackend.from_bundle(b, art),
                 lambda: open_backend("trt", b, art)):
        with pytest.raises(RuntimeError, match="needs a CUDA device, and none was found") as e:
            make()
        assert "\n" not in str(e.value) and "--backend ort" in str(e.value)


@NO_GPU
def test_pipeline_with_trt_backend_without_gpu(tmp_path):
    from wbg_edge.pipeline import Pipeline, PipelineConfig

    b = engine_bundle(tmp_path, {"module": "tensorrt_rtx", "version": "1.7.1.116"})
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        Pipeline(PipelineConfig(bundle=str(b.root), backend="trt"))
    p = Pipeline(PipelineConfig(bundle=str(b.root), backend="auto", threads=1))
    assert p.info()["backend"] == "ort-cpu" and p.info()["backend_reason"] == "auto: no CUDA device"


# ------------------------------------------------------------------ engine / manifest matching (no GPU needed)

TURING = gpu.GpuInfo(0, "Tesla T4", (7, 5))
AOT = "none (ahead-of-time build)"
DEFAULT_CC = "default (portable Ampere and later; SM75 only when asked for)"


@pytest.mark.parametrize("engine, installed, device, words", [
    ({"module": "tensorrt", "version": "10.3.0", "gpu": "NVIDIA GeForce RTX 4090"}, "10.3.0", ADA, None),
    ({"module": "tensorrt", "version": "10.3.0"}, "11.0.0", ADA, "built with tensorrt 10.3.0, this machine has "
                                                                 "tensorrt 11.0.0"),
    ({"module": "tensorrt", "version": "10.3.0", "gpu": "Orin"}, "10.3.0", ADA, "built on Orin, this GPU is"),
    ({"module": "tensorrt", "version": "10.3.0", "gpu": AOT}, "10.3.0", ADA, None),
    ({"module": "tensorrt", "version": "10.3.0", "compute_capabilities": ["SM87"]}, "10.3.0", ADA,
     "compute capability 8.7, this GPU"),
    ({"module": "tensorrt_rtx", "version": "1.7", "flavour": "trt-rtx", "compute_capabilities": ["SM86", "SM89"],
      "gpu": AOT}, "1.7", ADA, None),
    ({"module": "tensorrt_rtx", "version": "1.7", "compute_capabilities": ["SM120"]}, "1.7", ADA, "12.0"),
    ({"module": "tensorrt_rtx", "version": "1.7", "compute_capabilities": DEFAULT_CC, "gpu": AOT}, "1.7", ADA, None),
    ({"module": "tensorrt_rtx", "version": "1.7", "compute_capabilities": DEFAULT_CC}, "1.7", TURING,
     "Ampere (SM 8.0) and later, this GPU (Tesla T4) is 7.5"),
    ({"module": "tensorrt_rtx", "version": "1.7", "gpu": "NVIDIA RTX A6000"}, "1.7", ADA, None),
    ({"module": "tensorrt_lean", "version": "11.0"}, None, ADA, "not installed (pip install tensorrt-lean)"),
    ({"module": "onnxruntime", "version": "1"}, "1", ADA, "engine.module 'onnxruntime' is not one of"),
    ({}, "1", ADA, "no engine.module"),
])
def test_engine_mismatch(tmp_path, engine, installed, device, words):
    b = engine_bundle(tmp_path, engine)
    art = b.find("coarse", "engine")
    why = engine_mismatch(b, art, device, installed_version=installed)
    if words is None:
        assert why is None
    else:
        assert words in why and "\n" not in why and art.file in why
        if "not installed" not in why:
            assert "python -m export.build_engine --target" in why and str(b.root) in why


def test_rebuild_hint_names_the_target(tmp_path):
    b = engine_bundle(tmp_path, {"module": "tensorrt_rtx", "version": "0.1"})
    why = engine_mismatch(b, b.find("depth", "engine"), ADA)  # installed tensorrt_rtx differs from 0.1
    assert "--target trt-rtx" in why
    why = engine_mismatch(b, b.find("depth", "engine"), TURING, installed_version="0.1")
    assert why is None
    b = engine_bundle(tmp_path / "t", {"module": "tensorrt_rtx", "version": "0.1", "compute_capabilities": DEFAULT_CC})
    why = engine_mismatch(b, b.find("depth", "engine"), TURING, installed_version="0.1")
    assert why.endswith("--target trt-rtx --out " + str(b.root) + " --compute-capability SM75")


@NO_GPU
def test_engine_mismatch_against_installed_module(tmp_path):
    """The real installed tensorrt_rtx version is read without creating any TensorRT object."""
    import tensorrt_rtx

    b = engine_bundle(tmp_path, {"module": "tensorrt_rtx", "version": tensorrt_rtx.__version__})
    assert engine_mismatch(b, b.find("depth", "engine"), ADA) is None
    assert "no CUDA device" in engine_mismatch(b, b.find("depth", "engine"), None)


# ------------------------------------------------------------------ device detection, memory adapter

@NO_GPU
def test_no_device_detected_here():
    assert gpu.cuda_devices() == [] and not gpu.has_cuda_device()
    with pytest.raises(RuntimeError, match="x.engine needs a CUDA device") as e:
        gpu.require_cuda_device("x.engine")
    assert "\n" not in str(e.value)


def test_gpu_info_sm():
    assert ADA.sm == "8.9" and dataclasses.replace(ADA, compute_capability=(12, 1)).sm == "12.1"


def test_memory_adapter_errors():
    with pytest.raises(ValueError, match="'cupy'"):
        open_memory("cupy")
    import importlib.util

    if importlib.util.find_spec("pycuda") is None:
        with pytest.raises(RuntimeError, match="'pycuda' is not installed"):
            open_memory("pycuda")


# ------------------------------------------------------------------ on a GPU

@pytest.mark.gpu
def test_cuda_python_memory_round_trip():
    mem = open_memory("cuda-python")
    s = mem.stream()
    a = np.arange(1000, dtype=np.float32)
    b = np.zeros_like(a)
    ptr = mem.malloc(a.nbytes)
    mem.htod_async(ptr, a.ctypes.data, a.nbytes, s)
    mem.dtoh_async(b.ctypes.data, ptr, b.nbytes, s)
    mem.synchronize(s)
    mem.free(ptr)
    mem.destroy_stream(s)
    assert np.array_equal(a, b)
    assert gpu.cuda_devices()[0].compute_capability[0] >= 5
