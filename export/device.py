"""Is there a CUDA device? Asked before any TensorRT runtime is created or an engine deserialized.

Measured (DESIGN.md section 5): without a device `tensorrt_lean` 11 segfaults and `tensorrt_rtx`
returns None, so every runtime-side step checks here first. The check uses the CUDA driver API
through cuda-python (imports without a GPU), falling back to `nvidia-smi -L`.
"""
from __future__ import annotations

import shutil
import subprocess


def cuda_device_count() -> int:
    try:
        from cuda.bindings import driver
    except ImportError:
        driver = None
    if driver is not None:
        try:
            (err,) = driver.cuInit(0)
            if err != driver.CUresult.CUDA_SUCCESS:
                return 0
            err, n = driver.cuDeviceGetCount()
            return int(n) if err == driver.CUresult.CUDA_SUCCESS else 0
        except Exception:  # a driver library that cannot load reads as "no device"
            return 0
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return out.stdout.count("GPU ") if out.returncode == 0 else 0


def cuda_device_name() -> str | None:
    """Name of device 0, or None without a device."""
    if cuda_device_count() == 0:
        return None
    try:
        from cuda.bindings import driver

        err, dev = driver.cuDeviceGet(0)
        err, name = driver.cuDeviceGetName(128, dev)
        return name.split(b"\0", 1)[0].decode() if err == driver.CUresult.CUDA_SUCCESS else "cuda:0"
    except Exception:
        return "cuda:0"
