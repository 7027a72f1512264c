"""The one TensorRT builder across flavours, with a host stand-in for the module (no TensorRT, no GPU needed):
TensorRT 10 builds the FP32 ONNX with BuilderFlag.FP16; TensorRT 11 / RTX build the FP16 ONNX strongly typed;
the timing cache is read and written back (not for RTX, where it is a no-op)."""
from __future__ import annotations

import types

import pytest

from export.tensorrt_builder import BuildOptions, EngineBuildError, build_engine, onnx_precision_for, precision_path


def fake_trt(name: str, version: str, parse_ok: bool = True):
    calls: dict = {"flags": [], "profiles": {}, "cache_in": None}

    class Tensor:
        def __init__(self, n, shape):
            self.name, self.shape, self.dtype = n, shape, "DataType.FLOAT"

    class Network:
        num_inputs = num_outputs = 1

        def get_input(self, i):
            return Tensor("input", (-1, 4, -1, -1))

        def get_output(self, i):
            return Tensor("alpha", (-1, 1, -1, -1))

    class Err:
        def node_name(self):
            return "/head/Conv"

        def node(self):
            return 7

        def node_operator(self):
            return "Conv"

        def desc(self):
            return "unsupported"

    class Parser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, net, logger):
            pass

        def parse(self, data):
            calls["onnx"] = data
            return parse_ok

        def get_error(self, i):
            return Err()

    class Profile:
        def set_shape(self, n, a, b, c):
            calls["profiles"][n] = (a, b, c)

        def get_shape(self, n):
            return calls["profiles"][n]

    class Cache:
        def serialize(self):
            return b"cache-bytes"

    class Config:
        builder_optimization_level = 0

        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = size

        def set_flag(self, f):
            calls["flags"].append(f)

        def add_optimization_profile(self, p):
            calls["added"] = True

        def create_timing_cache(self, blob):
            calls["cache_in"] = blob
            return Cache()

        def set_timing_cache(self, c, ignore):
            pass

        def get_timing_cache(self):
            return Cache()

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            assert flags == 0  # the shared API: no explicit-batch or strongly-typed flags
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, net, cfg):
            return b"engine"

    class ILogger:
        class Severity:
            ERROR, INTERNAL_ERROR = 1, 0

        def __init__(self):
            pass

    m = types.ModuleType(name)
    m.__version__ = version
    m.Builder, m.OnnxParser, m.ILogger = Builder, Parser, ILogger
    m.MemoryPoolType = types.SimpleNamespace(WORKSPACE="ws")
    m.BuilderFlag = types.SimpleNamespace(FP16="FP16")
    return m, calls


PROFILE = {"input": ((1, 4, 64, 64), (1, 4, 256, 448), (1, 4, 512, 512))}


@pytest.mark.parametrize("name,version,src,flag", [("tensorrt", "10.3.0", "fp32", True),
                                                    ("tensorrt", "11.0.0", "fp16", False),
                                                    ("tensorrt_rtx", "1.7.1", "fp16", False)])
def test_precision_path_by_flavour(name, version, src, flag, tmp_path):
    trt, calls = fake_trt(name, version)
    assert onnx_precision_for(trt, "fp16") == src and onnx_precision_for(trt, "fp32") == "fp32"
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    built = build_engine(trt, b"onnx", BuildOptions(precision="fp16", profiles=PROFILE, timing_cache=cache,
                                                    workspace_mb=64), name="matting")
    assert (calls["flags"] == ["FP16"]) == flag
    assert built.path == precision_path(trt, "fp16")
    assert built.profiles["input"]["opt"] == [1, 4, 256, 448] and calls["workspace"] == 64 << 20
    if name == "tensorrt_rtx":
        assert calls["cache_in"] is None and built.timing_cache.startswith("n/a")
    else:
        assert calls["cache_in"] == b"old" and built.timing_cache == "reused" and cache.read_bytes() == b"cache-bytes"


def test_parser_errors_and_missing_profile_are_one_line():
    trt, _ = fake_trt("tensorrt", "10.3.0", parse_ok=False)
    with pytest.raises(EngineBuildError, match=r"matting: ONNX parser failed: node '/head/Conv' \(Conv\): unsupported"):
        build_engine(trt, b"x", BuildOptions(profiles=PROFILE), name="matting")
    trt, _ = fake_trt("tensorrt", "11.0.0")
    with pytest.raises(EngineBuildError, match="input 'input' has dynamic shape"):
        build_engine(trt, b"x", BuildOptions(), name="matting")
