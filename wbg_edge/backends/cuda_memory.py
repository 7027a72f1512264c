"""Device memory, streams and CUDA graphs for the TensorRT backend, behind one tiny adapter.

Two implementations: cuda-python (`cuda.bindings.runtime`, NVIDIA's maintained binding; a wheel
that imports without a GPU) by default, and pycuda when installed (common on Jetson; it needs a
driver to import). Pointers and stream handles are plain ints, which is what TensorRT takes.
"""
from __future__ import annotations

import importlib.util
import threading

ADAPTERS = ("auto", "cuda-python", "pycuda")


class CudaPython:
    name = "cuda-python"

    def __init__(self, device: int = 0):
        from cuda.bindings import runtime as cudart

        self._rt = cudart
        self._device = device
        self._bound = threading.local()
        self.bind_thread()

    def bind_thread(self) -> None:
        """Make the device current in the calling thread (the runtime API's device is per thread)."""
        if getattr(self._bound, "done", False):
            return
        self._check(self._rt.cudaSetDevice(self._device), "cudaSetDevice")
        self._bound.done = True

    def _check(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA {what} failed: {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._check(self._rt.cudaFree(ptr), "cudaFree")

    def stream(self) -> int:
        return int(self._check(self._rt.cudaStreamCreateWithFlags(self._rt.cudaStreamNonBlocking),
                               "cudaStreamCreate"))

    def destroy_stream(self, stream: int) -> None:
        self._check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def htod_async(self, dst: int, src_host_ptr: int, nbytes: int, stream: int) -> None:
        self._check(self._rt.cudaMemcpyAsync(dst, src_host_ptr, nbytes,
                                             self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "H2D copy")

    def dtoh_async(self, dst_host_ptr: int, src: int, nbytes: int, stream: int) -> None:
        self._check(self._rt.cudaMemcpyAsync(dst_host_ptr, src, nbytes,
                                             self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "D2H copy")

    def synchronize(self, stream: int) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    # CUDA graphs: capture what is enqueued on `stream` between begin and end, replay with launch.
    supports_graphs = True

    def begin_capture(self, stream: int) -> None:
        self._check(self._rt.cudaStreamBeginCapture(
            stream, self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture")

    def end_capture(self, stream: int):
        graph = self._check(self._rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        exe = self._check(self._rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        self._check(self._rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
        return exe

    def launch(self, graph_exec, stream: int) -> None:
        self._check(self._rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph_exec) -> None:
        self._check(self._rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")


class PyCuda:
    """pycuda: exercised only on GPU machines (it does not import without a driver)."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, device: int = 0):
        import pycuda.driver as drv

        drv.init()
        self._drv = drv
        self._ctx = drv.Device(device).retain_primary_context()
        self._bound = threading.local()
        self.bind_thread()
        self._allocs: dict[int, object] = {}
        self._streams: dict[int, object] = {}

    def bind_thread(self) -> None:
        """Make the context current in the calling thread (a driver context is per thread)."""
        if getattr(self._bound, "done", False):
            return
        self._ctx.push()
        self._bound.done = True

    def malloc(self, nbytes: int) -> int:
        a = self._drv.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        a = self._allocs.pop(ptr, None)
        if a is not None:
            a.free()

    def stream(self) -> int:
        s = self._drv.Stream()
        self._streams[s.handle] = s
        return s.handle

    def destroy_stream(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def htod_async(self, dst: int, src_host_ptr: int, nbytes: int, stream: int) -> None:
        self._drv.memcpy_htod_async(dst, _HostView(src_host_ptr, nbytes), self._streams[stream])

    def dtoh_async(self, dst_host_ptr: int, src: int, nbytes: int, stream: int) -> None:
        self._drv.memcpy_dtoh_async(_HostView(dst_host_ptr, nbytes), src, self._streams[stream])

    def synchronize(self, stream: int) -> None:
        self._streams[stream].synchronize()


def _HostView(ptr: int, nbytes: int):
    """A writable buffer over host memory at `ptr` (pycuda copies take buffers, not pointers)."""
    import ctypes

    return (ctypes.c_uint8 * nbytes).from_address(ptr)


def open_memory(kind: str = "auto", device: int = 0):
    """The adapter `kind`; auto = cuda-python when installed, else pycuda. One-line error when neither is."""
    if kind not in ADAPTERS:
        raise ValueError(f"CUDA memory adapter {kind!r} is not one of {list(ADAPTERS)}")
    have_cp = importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None
    have_pc = importlib.util.find_spec("pycuda") is not None
    if kind == "auto":
        kind = "cuda-python" if have_cp else "pycuda" if have_pc else ""
        if not kind:
            raise RuntimeError("the TensorRT backend needs cuda-python (pip install cuda-python) or pycuda")
    if kind == "cuda-python":
        if not have_cp:
            raise RuntimeError("CUDA memory adapter 'cuda-python' is not installed (pip install cuda-python)")
        return CudaPython(device)
    if not have_pc:
        raise RuntimeError("CUDA memory adapter 'pycuda' is not installed (pip install pycuda)")
    return PyCuda(device)
