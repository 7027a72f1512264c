"""TensorRT backend on a real GPU: engines built here from the toy ONNX models of test_pipeline.py, run
through TensorRTBackend (device buffers, stream, CUDA graph) and the Pipeline, against ONNX Runtime."""

import importlib.util
import warnings

import numpy as np
import pytest
from test_pipeline import disc_frame, make_bundle

from wbg_edge import gpu
from wbg_edge.backends import BackendOptions
from wbg_edge.backends.tensorrt import TensorRTBackend
from wbg_edge.bundle import Artifact, Bundle, load_bundle, sha256_file, write_bundle
from wbg_edge.pipeline import Pipeline, PipelineConfig

pytestmark = pytest.mark.gpu


def _trt_module():
    """tensorrt when installed; else tensorrt_rtx where it supports the GPU (SM 8.0+, not SM 9.0)."""
    dev = gpu.cuda_devices()[0]
    if importlib.util.find_spec("tensorrt") is not None:
        return "tensorrt"
    if importlib.util.find_spec("tensorrt_rtx") is not None and dev.compute_capability >= (8, 0) \
            and dev.compute_capability[0] != 9:
        return "tensorrt_rtx"
    pytest.skip(f"no TensorRT flavour installed that runs on {dev.name} (SM {dev.sm})")


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    import importlib

    from export.tensorrt_builder import BuildOptions, build_engine

    module = _trt_module()
    trt = importlib.import_module(module)
    root = make_bundle(tmp_path_factory.mktemp("gpu") / "toy")
    b = load_bundle(root)
    arts = list(b.artifacts)
    for a in b.artifacts:
        name, (_, c, *_) = next(iter(a.inputs.items()))
        prof = {name: ((1, c, 32, 32), (1, c, 256, 448), (512, c, 1024, 1024))}
        built = build_engine(trt, (root / a.file).read_bytes(), BuildOptions(precision="fp32", profiles=prof), a.file)
        f = root / f"{a.stage}.engine"
        f.write_bytes(built.data)
        arts.append(Artifact(stage=a.stage, file=f.name, format="engine", precision="fp32", contract=a.contract,
                             sha256=sha256_file(f), inputs=a.inputs, outputs=a.outputs,
                             engine={"module": built.module, "version": built.version, "flavour": built.flavour,
                                     "gpu": gpu.cuda_devices()[0].name}))
    write_bundle(Bundle(root=root, name="toy-gpu", artifacts=tuple(arts), model_res=128, refine_res=256))
    return load_bundle(root)


@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
def test_engine_runs_and_replays_its_graph(engines, memory):
    if memory == "pycuda" and importlib.util.find_spec("pycuda") is None:
        pytest.skip("pycuda not installed")
    art = engines.find("refiner", "engine")
    be = TensorRTBackend.from_bundle(engines, art, BackendOptions(memory=memory))
    rng = np.random.default_rng(0)
    for n in (4, 4, 4, 9):
        x = rng.random((n, 5, 32, 32), dtype=np.float32)
        a = x[:, 4:5]
        want = 2 * a * (1 - a) * (x[:, 1:2] - 0.5)
        out = np.empty((n, 1, 32, 32), np.float32)
        be.run({"input": x}, {"delta": out})
        assert np.abs(out - want).max() < 1e-4
    be.close()


@pytest.mark.parametrize("patches", [True, False])
def test_pipeline_on_engines_matches_onnx_runtime(engines, patches):
    kw = dict(bundle=str(engines.root), patches=patches, patch_size=16, mode="composite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_trt = Pipeline(PipelineConfig(backend="trt", **kw))
        on_ort = Pipeline(PipelineConfig(backend="ort", **kw))
    assert on_trt.info()["backend_kind"] == "trt"
    for i in range(3):
        f = disc_frame(360, 640, cx=300 + 11 * i)
        a, o = on_trt.process(f), on_ort.process(f)
        assert np.abs(a.alpha - o.alpha).max() < 2e-3
