"""The TensorRT backend's own logic (shapes, buffer growth, CUDA-graph capture and replay, profile
bounds, the Pipeline on engines) without a GPU: TensorRT and device memory are replaced by small host
stand-ins that compute the same closed-form models as the ONNX files of test_pipeline.py. So the
Pipeline on "engines" must match the Pipeline on ONNX Runtime exactly. Real engines run in the
gpu-marked tests."""

import ctypes
import importlib.machinery
import json
import sys
import threading
import types
import warnings

import numpy as np
import pytest
from test_pipeline import disc_frame, make_bundle

from wbg_edge import gpu
from wbg_edge.backends import BackendOptions, choose_backend
from wbg_edge.backends import cuda_memory as cm
from wbg_edge.backends import tensorrt as trt_backend
from wbg_edge.bundle import Artifact, Bundle, BundleError, load_bundle, sha256_file, write_bundle
from wbg_edge.pipeline import Pipeline, PipelineConfig

DEVICE = gpu.GpuInfo(0, "Fake GPU", (8, 9))
VERSION = "10.99.0"


class HostMemory:
    """cuda_memory adapter over host byte arrays; graphs record the enqueued work and replay it."""

    name = "host"
    supports_graphs = True

    def __init__(self):
        self.bufs: dict[int, np.ndarray] = {}
        self.next = 0x1000
        self.capturing: list | None = None
        self.launches = self.captures = self.mallocs = 0
        self.bound: set[int] = set()

    def bind_thread(self):
        self.bound.add(threading.get_ident())

    def malloc(self, n):
        self.next += 0x1000
        self.bufs[self.next] = np.zeros(n, np.uint8)
        self.mallocs += 1
        return self.next

    def free(self, p):
        del self.bufs[p]

    def stream(self):
        return 7

    def destroy_stream(self, s):
        pass

    def htod_async(self, dst, src, n, s):
        assert self.capturing is None, "copies must stay outside the captured graph"
        ctypes.memmove(self.bufs[dst].ctypes.data, src, n)

    def dtoh_async(self, dst, src, n, s):
        ctypes.memmove(dst, self.bufs[src].ctypes.data, n)

    def synchronize(self, s):
        pass

    def begin_capture(self, s):
        self.capturing = []

    def end_capture(self, s):
        ops, self.capturing = self.capturing, None
        self.captures += 1
        return ops

    def launch(self, graph, s):
        self.launches += 1
        for op in graph:
            op()

    def destroy_graph(self, g):
        pass


def _fn(kind):
    if kind == "depth":
        return lambda x: x.mean(axis=1, keepdims=True)
    if kind == "coarse":
        return lambda x: np.clip((x[:, :1] - np.float32(0.3)) * np.float32(4.0), 0, 1)
    return lambda x: (x[:, 4:5] * (1 - x[:, 4:5])) * (x[:, 1:2] - np.float32(0.5)) * np.float32(2.0)


class FakeContext:
    def __init__(self, engine):
        self.e, self.shape, self.addr = engine, None, {}

    def set_input_shape(self, name, shape):
        lo, _, hi = self.e.get_tensor_profile_shape(name, 0)
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True)):
            return False
        self.shape = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def get_tensor_shape(self, name):
        return self.shape if name == self.e.inp else (self.shape[0], 1, *self.shape[2:])

    def _compute(self):
        mem, e = self.e.mem, self.e
        n = int(np.prod(self.shape))
        x = mem.bufs[self.addr[e.inp]][:n * 4].view(np.float32).reshape(self.shape)
        y = _fn(e.kind)(x).astype(np.float32)
        mem.bufs[self.addr[e.out]][:y.nbytes] = y.reshape(-1).view(np.uint8)

    def execute_async_v3(self, stream):
        if self.e.mem.capturing is not None:
            self.e.mem.capturing.append(self._compute)
        else:
            self._compute()
        return True


class FakeEngine:
    def __init__(self, spec, mem):
        self.kind, self.inp, self.out, self.cin = spec["kind"], spec["in"], spec["out"], spec["cin"]
        self.maxn, self.mem = spec.get("max_batch", 4096), mem
        self.num_io_tensors = 2

    def get_tensor_name(self, i):
        return (self.inp, self.out)[i]

    def get_tensor_mode(self, name):
        return "in" if name == self.inp else "out"

    def get_tensor_dtype(self, name):
        return "f32"

    def get_tensor_shape(self, name):
        return (-1, self.cin if name == self.inp else 1, -1, -1)

    def get_tensor_profile_shape(self, name, profile):
        return [(1, self.cin, 1, 1), (1, self.cin, 256, 448), (self.maxn, self.cin, 2048, 2048)]

    def create_execution_context(self):
        return FakeContext(self)


def fake_tensorrt(mem):
    m = types.ModuleType("tensorrt")
    m.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    m.__version__ = VERSION

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                return FakeEngine(json.loads(bytes(data)), mem)
            except ValueError:
                return None  # what tensorrt_rtx does with bytes it cannot read

    m.Logger, m.Runtime = Logger, Runtime
    m.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    m.nptype = lambda dt: np.float32
    return m


@pytest.fixture
def host(monkeypatch):
    mem = HostMemory()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(mem))
    monkeypatch.setattr(trt_backend, "require_cuda_device", lambda what, index=0: DEVICE)
    monkeypatch.setattr(gpu, "cuda_devices", lambda: [DEVICE])
    monkeypatch.setattr(cm, "open_memory", lambda kind="auto", device=0: mem)
    return mem


def engine_bundle(root, max_batch=4096, version=VERSION, gpu_name="Fake GPU"):
    """The toy ONNX bundle of test_pipeline plus one fake engine per stage."""
    make_bundle(root)
    b = load_bundle(root)
    arts = list(b.artifacts)
    for a in b.artifacts:
        spec = {"kind": a.stage, "in": next(iter(a.inputs)), "out": next(iter(a.outputs)),
                "cin": a.inputs[next(iter(a.inputs))][1], "max_batch": max_batch}
        f = root / f"{a.stage}.engine"
        f.write_text(json.dumps(spec))
        arts.append(Artifact(stage=a.stage, file=f.name, format="engine", precision="fp16", contract=a.contract,
                             sha256=sha256_file(f), inputs=a.inputs, outputs=a.outputs,
                             engine={"module": "tensorrt", "version": version, "gpu": gpu_name}))
    write_bundle(Bundle(root=root, name="toy-engines", artifacts=tuple(arts), model_res=128, refine_res=256))
    return load_bundle(root)


def test_backend_runs_replays_a_graph_and_grows_buffers(host, tmp_path):
    b = engine_bundle(tmp_path / "e")
    be = trt_backend.TensorRTBackend.from_bundle(b, b.find("refiner", "engine"), BackendOptions())
    assert be.name == "trt-tensorrt" and list(be.inputs()) == ["input"] and list(be.outputs()) == ["delta"]
    assert be.max_shape("input")[0] == 4096
    rng = np.random.default_rng(0)
    for n in (3, 3, 3, 5, 5, 2):
        x = rng.random((n, 5, 16, 16), dtype=np.float32)
        want = _fn("refiner")(x)
        assert np.allclose(be.run({"input": x})["delta"], want)
        out = np.empty((n, 1, 16, 16), np.float32)
        assert be.run({"input": x}, {"delta": out})["delta"] is out and np.allclose(out, want)
    assert host.captures == 3 and host.launches == 12 - 3  # one capture per shape, replays while it holds
    with pytest.raises(ValueError, match="outside the engine's profile"):
        be.run({"input": np.zeros((5000, 5, 8, 8), np.float32)})
    with pytest.raises(ValueError, match="output buffer 'delta'"):
        be.run({"input": np.zeros((1, 5, 8, 8), np.float32)}, {"delta": np.zeros((2, 1, 8, 8), np.float32)})
    be.close()
    assert host.bufs == {}


def test_unreadable_engine_is_one_line(host, tmp_path):
    p = tmp_path / "x.engine"
    p.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="x.engine: tensorrt 10.99.0 could not deserialize") as e:
        trt_backend.TensorRTBackend(p, "tensorrt")
    assert "python -m export.build_engine" in str(e.value) and "\n" not in str(e.value)


def test_engine_for_another_gpu_or_version_is_refused(host, tmp_path):
    b = engine_bundle(tmp_path / "v", version="10.0.0")
    with pytest.raises(ValueError, match="built with tensorrt 10.0.0, this machine has tensorrt 10.99.0.*"
                                         "python -m export.build_engine --target trt"):
        trt_backend.TensorRTBackend.from_bundle(b, b.find("coarse", "engine"))
    assert "auto: " in choose_backend("auto", b).reason and choose_backend("auto", b).kind == "ort"
    b2 = engine_bundle(tmp_path / "g", gpu_name="Jetson Orin")
    with pytest.raises(ValueError, match="built on Jetson Orin, this GPU is Fake GPU"):
        Pipeline(PipelineConfig(bundle=str(b2.root), backend="trt"))


def test_changed_engine_is_refused_before_deserializing(host, tmp_path, monkeypatch):
    b = engine_bundle(tmp_path / "h")
    art = b.find("refiner", "engine")
    (b.root / art.file).write_text((b.root / art.file).read_text().replace('"max_batch": 4096', '"max_batch": 4097'))
    deserialized, init = [], FakeEngine.__init__

    def record(self, spec, mem):
        deserialized.append(spec["kind"])
        init(self, spec, mem)

    monkeypatch.setattr(FakeEngine, "__init__", record)
    with pytest.raises(BundleError, match=r"refiner\.engine: SHA-256 .* does not match the manifest") as e:
        Pipeline(PipelineConfig(bundle=str(b.root), backend="trt"))
    assert "\n" not in str(e.value) and "refiner" not in deserialized  # refused on its hash, not given to TensorRT


def test_engine_with_the_wrong_contract_is_refused_at_load(host, tmp_path):
    """An engine whose input has 4 channels where the refiner contract needs 5 (and a manifest edited to
    match its new hash): one line at load, not a shape error mid-stream."""
    b = engine_bundle(tmp_path / "c")
    art = b.find("refiner", "engine")
    spec = json.loads((b.root / art.file).read_text())
    (b.root / art.file).write_text(json.dumps(dict(spec, cin=4)))
    m = json.loads((b.root / "manifest.json").read_text())
    next(a for a in m["artifacts"] if a["file"] == art.file)["sha256"] = sha256_file(b.root / art.file)
    (b.root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"refiner\.engine: input 'input' has 4 channels .* needs 5") as e:
        Pipeline(PipelineConfig(bundle=str(b.root), backend="trt"))
    assert "\n" not in str(e.value) and host.bufs == {}  # nothing left allocated on the device


@pytest.mark.parametrize("patches", [True, False])
def test_pipeline_on_engines_matches_onnx_runtime(host, tmp_path, patches):
    b = engine_bundle(tmp_path / "p")
    kw = dict(bundle=str(b.root), patches=patches, patch_size=16, mode="composite", threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_trt = Pipeline(PipelineConfig(backend="auto", **kw))
        on_ort = Pipeline(PipelineConfig(backend="ort", **kw))
    assert on_trt.info()["backend"] == "trt-tensorrt" and on_trt.info()["backend_kind"] == "trt"
    for i in range(4):
        f = disc_frame(240, 320, cx=140 + 9 * i)
        a, o = on_trt.process(f), on_ort.process(f)
        assert np.allclose(a.alpha, o.alpha, atol=1e-6) and np.abs(a.image.astype(int) - o.image).max() <= 1
        assert a.refined == o.refined


def test_overlapped_stream_on_engines_matches_onnx_runtime(host, tmp_path):
    """Two lanes share each engine's one context (taken in turn) and bind the device in their own threads."""
    b = engine_bundle(tmp_path / "o")
    kw = dict(bundle=str(b.root), patch_size=16, mode="composite", threads=1, smoothing=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_trt = Pipeline(PipelineConfig(backend="trt", overlap=True, **kw))
        on_ort = Pipeline(PipelineConfig(backend="ort", **kw))
    frames = [disc_frame(240, 320, cx=120 + 7 * i) for i in range(8)]
    got = [m.copy() for m in on_trt.stream(frames)]
    want = [on_ort.process(f).copy() for f in frames]
    for a, o in zip(got, want, strict=True):
        assert np.allclose(a.alpha, o.alpha, atol=1e-6) and np.abs(a.image.astype(int) - o.image).max() <= 1
    assert len(host.bound - {threading.get_ident()}) == 2  # both lanes made the device current for themselves


def test_profile_batch_limit_falls_back_to_the_full_grid(host, tmp_path):
    b = engine_bundle(tmp_path / "m", max_batch=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = Pipeline(PipelineConfig(bundle=str(b.root), backend="trt", patch_size=16))
    m = p.process(disc_frame(240, 320))
    assert m.refined == 1.0 and not m.passthrough
