"""The one CUDA device detection (runtime, export toolchain and tests ask here); never needs a GPU to
import and never raises.

Asked before anything touches TensorRT: creating a TensorRT runtime or deserializing an engine
without a CUDA device crashes (`tensorrt_lean` 11 segfaults) or fails silently (`tensorrt_rtx`
returns None), DESIGN.md section 5. The check uses the CUDA driver API through cuda-python: it needs
only the driver's libcuda (not the CUDA runtime library) and imports without a GPU. Without
cuda-python it falls back to `nvidia-smi`. A binding that is installed but finds no driver reads as
"no device" (no fallback: nvidia-smi would come from the same missing driver).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int = 0  # bytes; 0 when unknown

    @property
    def sm(self) -> str:
        """Compute capability as "8.9"."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def _via_driver_api() -> list[GpuInfo] | None:
    """Devices through cuda-python's driver API; None when the binding is not installed."""
    try:
        from cuda.bindings import driver
    except ImportError:
        return None
    ok = driver.CUresult.CUDA_SUCCESS
    attr = driver.CUdevice_attribute
    try:
        (err,) = driver.cuInit(0)
        if err != ok:
            return []
        err, count = driver.cuDeviceGetCount()
        if err != ok:
            return []
        devices = []
        for i in range(int(count)):
            err, dev = driver.cuDeviceGet(i)
            if err != ok:
                continue
            _, raw = driver.cuDeviceGetName(128, dev)
            _, major = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
            _, minor = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
            err_mem, mem = driver.cuDeviceTotalMem(dev)
            name = raw.split(b"\0", 1)[0].decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            devices.append(GpuInfo(i, name.strip() or f"cuda:{i}", (int(major), int(minor)),
                                   int(mem) if err_mem == ok else 0))
        return devices
    except Exception:  # the binding raises its own loader errors when no driver library exists
        return []


def _via_nvidia_smi() -> list[GpuInfo]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,compute_cap,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    devices = []
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        try:
            major, minor = (int(x) for x in parts[2].split("."))
            devices.append(GpuInfo(int(parts[0]), parts[1], (major, minor), int(float(parts[3])) << 20))
        except (IndexError, ValueError):
            continue
    return devices


def cuda_devices() -> list[GpuInfo]:
    """Visible CUDA devices; [] when there is no driver, no device or no way to ask."""
    found = _via_driver_api()
    return found if found is not None else _via_nvidia_smi()


def has_cuda_device() -> bool:
    return bool(cuda_devices())


def cuda_device_name(index: int = 0) -> str | None:
    """Name of device `index` (what an engine built on it records), or None without one."""
    devices = cuda_devices()
    return devices[index].name if index < len(devices) else None


def require_cuda_device(what: str, index: int = 0) -> GpuInfo:
    """The device `index`, or a one-line RuntimeError saying `what` needs a CUDA device."""
    devices = cuda_devices()
    if not devices:
        raise RuntimeError(f"{what} needs a CUDA device, and none was found (no NVIDIA driver or GPU); "
                           f"use the ONNX Runtime backend (--backend ort)")
    if index >= len(devices):
        raise RuntimeError(f"{what}: CUDA device {index} requested but only {len(devices)} found")
    return devices[index]
