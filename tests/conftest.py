import shutil
import subprocess

import pytest


def has_cuda_device() -> bool:
    """True when an NVIDIA driver reports at least one GPU (checked without importing any CUDA library)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def pytest_collection_modifyitems(config, items):
    if has_cuda_device():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (gpu marker); none found")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
