import pytest

from wbg_edge.gpu import has_cuda_device  # the project's one CUDA detection (driver API, nvidia-smi fallback)


def pytest_collection_modifyitems(config, items):
    if has_cuda_device():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (gpu marker); none found")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
