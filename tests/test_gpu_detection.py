"""wbg_edge.gpu, the one CUDA detection (runtime, export, tests/conftest.py): the driver API through
cuda-python, nvidia-smi without it, never an exception. Machines without a GPU stand in for the driver
with a small fake of the binding's calls, and for nvidia-smi with a script on PATH."""
import os
import stat
import sys
import types

import pytest

from wbg_edge import gpu

OK, NO_DEVICE = 0, 100  # CUDA_SUCCESS, CUDA_ERROR_NO_DEVICE


def fake_driver(devices, init=OK, raise_on_init=None):
    """The cuda.bindings.driver calls gpu.py makes, answering for `devices` [(name, (major, minor), bytes)]."""
    attr = types.SimpleNamespace(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR="major",
                                 CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR="minor")

    def cu_init(flags):
        if raise_on_init:
            raise raise_on_init
        return (init,)

    return types.SimpleNamespace(
        CUresult=types.SimpleNamespace(CUDA_SUCCESS=OK), CUdevice_attribute=attr, cuInit=cu_init,
        cuDeviceGetCount=lambda: (OK, len(devices)), cuDeviceGet=lambda i: (OK, i),
        cuDeviceGetName=lambda n, d: (OK, devices[d][0].encode() + b"\0" * (n - len(devices[d][0]))),
        cuDeviceGetAttribute=lambda a, d: (OK, devices[d][1][0 if a == "major" else 1]),
        cuDeviceTotalMem=lambda d: (OK, devices[d][2]))


@pytest.fixture
def binding(monkeypatch):
    def install(driver):
        pkg = types.ModuleType("cuda.bindings")
        pkg.driver = driver
        monkeypatch.setitem(sys.modules, "cuda.bindings", pkg)
        monkeypatch.setitem(sys.modules, "cuda.bindings.driver", driver)
    return install


def test_devices_through_the_driver_api(binding):
    binding(fake_driver([("NVIDIA H100 80GB HBM3", (9, 0), 80 << 30), ("NVIDIA L4", (8, 9), 24 << 30)]))
    devs = gpu.cuda_devices()
    assert devs == [gpu.GpuInfo(0, "NVIDIA H100 80GB HBM3", (9, 0), 80 << 30),
                    gpu.GpuInfo(1, "NVIDIA L4", (8, 9), 24 << 30)]
    assert gpu.has_cuda_device() and gpu.cuda_device_name() == "NVIDIA H100 80GB HBM3"
    assert gpu.cuda_device_name(1) == "NVIDIA L4" and gpu.cuda_device_name(2) is None
    assert gpu.require_cuda_device("x", 1).sm == "8.9"


@pytest.mark.parametrize("driver", [fake_driver([], init=NO_DEVICE), fake_driver([("x", (8, 0), 1)], raise_on_init=
                                    RuntimeError('"cuda" is an NVIDIA driver library and can only be found ...'))])
def test_a_binding_without_driver_or_device_is_no_device_and_never_raises(binding, driver, tmp_path, monkeypatch):
    binding(driver)
    _fake_smi(tmp_path, monkeypatch, "0, Should Not Be Asked, 9.0, 81559\n")  # same missing driver: not asked
    assert gpu.cuda_devices() == [] and not gpu.has_cuda_device() and gpu.cuda_device_name() is None
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        gpu.require_cuda_device("x.engine")


def _fake_smi(tmp_path, monkeypatch, output: str, rc: int = 0):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {rc}\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in nvidia-smi is a shell script")
def test_without_the_binding_nvidia_smi_answers(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # import fails: cuda-python not installed
    _fake_smi(tmp_path, monkeypatch, "0, NVIDIA H200, 9.0, 143771\n1, garbage line\n")
    assert gpu.cuda_devices() == [gpu.GpuInfo(0, "NVIDIA H200", (9, 0), 143771 << 20)]
    _fake_smi(tmp_path, monkeypatch, "NVIDIA-SMI has failed", rc=9)
    assert gpu.cuda_devices() == []


def test_without_binding_or_nvidia_smi_there_is_no_device(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi
    assert gpu.cuda_devices() == [] and gpu.cuda_device_name() is None
