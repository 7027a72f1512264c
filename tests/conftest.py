import pytest

from wbg_edge.gpu import has_cuda_device  # the project's one CUDA detection (driver API, nvidia-smi fallback)


def pytest_collection_modifyitems(config, items):
    if has_cuda_device():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (gpu marker); none found")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class DeviceMemory:
    """Device buffers for the CUDA twin tests (cuda-python's runtime), freed when the test ends."""

    def __init__(self, rt):
        self.rt, self.pointers = rt, []

    def check(self, r):
        assert int(r[0]) == 0, r
        return r[1] if len(r) > 1 else None

    def alloc(self, nbytes: int) -> int:
        p = self.check(self.rt.cudaMalloc(max(1, nbytes)))
        self.pointers.append(p)
        return p

    def dev(self, a) -> int:
        """A device copy of host array a."""
        p = self.alloc(a.nbytes)
        self.check(self.rt.cudaMemcpy(p, a.ctypes.data, a.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice))
        return p

    def host(self, p: int, like):
        """The device buffer p back as an array shaped like `like`, after the device finished its work."""
        import numpy as np

        self.check(self.rt.cudaDeviceSynchronize())
        out = np.empty_like(like)
        self.check(self.rt.cudaMemcpy(out.ctypes.data, p, out.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        return out


@pytest.fixture
def device_memory():
    """DeviceMemory on the CUDA refine library's device; skips without cuda-python or the built library."""
    rt = pytest.importorskip("cuda.bindings.runtime")
    from wbg_edge import native

    if not native.cuda_available():
        pytest.skip("CUDA refine library not built")
    mem = DeviceMemory(rt)
    yield mem
    for p in mem.pointers:
        rt.cudaFree(p)


@pytest.fixture
def in_threads():
    """run(work, n): work(i) on n threads at once, joined (for the tests of calls made concurrently)."""
    import threading

    def run(work, n: int) -> None:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return run
