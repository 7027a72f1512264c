"""CUDA device detection that never needs a GPU to import and never raises.

Used before anything touches TensorRT: creating a TensorRT runtime or deserializing an engine
without a CUDA device crashes (`tensorrt_lean` 11 segfaults) or fails silently (`tensorrt_rtx`
returns None), DESIGN.md section 5. So every GPU path asks here first.
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


def _via_cuda_bindings() -> list[GpuInfo] | None:
    """Devices through cuda-python's runtime API; None when the binding or the driver is missing."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return None
    try:
        err, count = cudart.cudaGetDeviceCount()
        if err != cudart.cudaError_t.cudaSuccess:
            return []
        devices = []
        for i in range(count):
            err, prop = cudart.cudaGetDeviceProperties(i)
            if err != cudart.cudaError_t.cudaSuccess:
                continue
            name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
            devices.append(GpuInfo(i, name.strip("\x00 "), (int(prop.major), int(prop.minor)),
                                   int(prop.totalGlobalMem)))
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
    found = _via_cuda_bindings()
    return found if found is not None else _via_nvidia_smi()


def has_cuda_device() -> bool:
    return bool(cuda_devices())


def require_cuda_device(what: str, index: int = 0) -> GpuInfo:
    """The device `index`, or a one-line RuntimeError saying `what` needs a CUDA device."""
    devices = cuda_devices()
    if not devices:
        raise RuntimeError(f"{what} needs a CUDA device, and none was found (no NVIDIA driver or GPU); "
                           f"use the ONNX Runtime backend (--backend ort)")
    if index >= len(devices):
        raise RuntimeError(f"{what}: CUDA device {index} requested but only {len(devices)} found")
    return devices[index]
