"""The fused op's C ABI (kernels/wbg_refine.h) seen from Python: argument structs, finding and binding the
CPU and CUDA libraries, the worker-thread budget, and the argument checks every entry point runs first
(`wbg_edge.native` holds the CPU entry points, `wbg_edge.native_cuda` the CUDA ones)."""
from __future__ import annotations

import ctypes
import importlib.metadata
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from wbg_edge import native_reference as ref

MODES = ref.MODES
_MODE_CODE = {None: 0, "alpha": 1, "rgba": 2, "composite": 3}
_DTYPE_CODE = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
_ABI_VERSION = 4
_MAX_DIM = 1 << 20  # keeps every index product well inside int64 and every single dimension inside int32

_STATUS = {1: "null pointer", 2: "bad size", 3: "patch outside the refine grid", 4: "bad argument",
           5: "out of memory", 6: "CUDA error"}


# --------------------------------------------------------------------------------------------------------------------
# C ABI (kernels/wbg_refine.h); the field order here must match the header exactly.

class _PackArgs(ctypes.Structure):
    _fields_ = [
        ("frame", ctypes.c_void_p), ("height", ctypes.c_int32), ("width", ctypes.c_int32),
        ("depth", ctypes.c_void_p), ("depth_h", ctypes.c_int32), ("depth_w", ctypes.c_int32),
        ("alpha", ctypes.c_void_p), ("alpha_h", ctypes.c_int32), ("alpha_w", ctypes.c_int32),
        ("refine_h", ctypes.c_int32), ("refine_w", ctypes.c_int32),
        ("patches", ctypes.c_void_p), ("n_patches", ctypes.c_int32), ("patch_size", ctypes.c_int32),
        ("out", ctypes.c_void_p), ("out_dtype", ctypes.c_int32),
    ]


class _FinishArgs(ctypes.Structure):
    _fields_ = [
        ("packed", ctypes.c_void_p), ("packed_dtype", ctypes.c_int32),
        ("delta", ctypes.c_void_p), ("delta_dtype", ctypes.c_int32),
        ("refine_h", ctypes.c_int32), ("refine_w", ctypes.c_int32),
        ("patches", ctypes.c_void_p), ("n_patches", ctypes.c_int32), ("patch_size", ctypes.c_int32),
        ("alpha", ctypes.c_void_p), ("alpha_h", ctypes.c_int32), ("alpha_w", ctypes.c_int32),
        ("frame", ctypes.c_void_p), ("height", ctypes.c_int32), ("width", ctypes.c_int32),
        ("prev_alpha", ctypes.c_void_p), ("smoothing", ctypes.c_float),
        ("out_alpha", ctypes.c_void_p),
        ("mode", ctypes.c_int32), ("out", ctypes.c_void_p),
        ("background", ctypes.c_void_p), ("background_is_colour", ctypes.c_int32),
        ("fg_cell", ctypes.c_int32),
        ("workspace", ctypes.c_void_p), ("workspace_bytes", ctypes.c_size_t),
    ]


def _library_candidates(stem: str) -> list[Path]:
    """Where the built library may be, in order: $WBG_EDGE_NATIVE_DIR; every `__path__` entry of `wbg_edge._native`
    (a non-editable install: the package folder; a scikit-build-core editable install: the CMake install tree in
    site-packages first, then the source folder, so a stale in-tree build never shadows the installed one); the
    folder beside this file; the files the installed distribution records."""
    names = [f"lib{stem}.so", f"lib{stem}.dylib", f"{stem}.dll"]
    dirs: list[Path] = []
    if os.environ.get("WBG_EDGE_NATIVE_DIR"):
        dirs.append(Path(os.environ["WBG_EDGE_NATIVE_DIR"]))
    try:
        import wbg_edge._native as pkg

        dirs += [Path(p) for p in getattr(pkg, "__path__", [])]
    except ImportError:
        pass
    dirs.append(Path(__file__).resolve().parent / "_native")
    out = [d / n for d in dirs for n in names]
    try:
        dist = importlib.metadata.distribution("wbg-edge")
        for f in dist.files or []:
            if f.name in names and "_native" in f.parts:
                out.append(Path(str(dist.locate_file(f))))
    except importlib.metadata.PackageNotFoundError:
        pass
    return out


def _find_library(stem: str) -> Path | None:
    for p in _library_candidates(stem):
        if p.is_file():
            return p
    return None


def _bind(lib: ctypes.CDLL, suffix: str) -> ctypes.CDLL:
    for name, argtype in (("pack", _PackArgs), ("finish", _FinishArgs)):
        fn = getattr(lib, f"wbg_refine_{name}_{suffix}")
        fn.argtypes = [ctypes.POINTER(argtype), ctypes.c_void_p if suffix == "cuda" else ctypes.c_int]
        fn.restype = ctypes.c_int
    if suffix == "cpu":
        lib.wbg_refine_finish_begin_cpu.argtypes = [ctypes.POINTER(_FinishArgs), ctypes.POINTER(ctypes.c_int)]
        lib.wbg_refine_finish_begin_cpu.restype = ctypes.c_void_p
        lib.wbg_refine_finish_end_cpu.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                                  ctypes.c_int32, ctypes.c_int]
        lib.wbg_refine_finish_end_cpu.restype = ctypes.c_int
        lib.wbg_frame_planes_cpu.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p,
                                             ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_int]
        lib.wbg_frame_planes_cpu.restype = ctypes.c_int
    lib.wbg_refine_abi_version.restype = ctypes.c_int
    lib.wbg_refine_abi_version.argtypes = []
    if lib.wbg_refine_abi_version() != _ABI_VERSION:
        raise OSError(f"ABI version {lib.wbg_refine_abi_version()} != {_ABI_VERSION} (stale build; reinstall)")
    return lib


_lock = threading.Lock()
_cpu: dict[str, object] = {}
_cuda: dict[str, object] = {}


def _cpu_lib() -> ctypes.CDLL | None:
    """The CPU library, or None after one warning when it cannot be loaded (then the numpy reference runs)."""
    with _lock:
        if "lib" not in _cpu:
            path = _find_library("wbg_refine")
            lib, why = None, "not built (install the package with a C++ compiler: pip install .)"
            if path is not None and not os.environ.get("WBG_EDGE_FORCE_NUMPY"):
                try:
                    lib = _bind(ctypes.CDLL(str(path)), "cpu")
                except (OSError, AttributeError) as e:
                    lib, why = None, f"{path.name} does not load: {e}"
            elif os.environ.get("WBG_EDGE_FORCE_NUMPY"):
                why = "WBG_EDGE_FORCE_NUMPY is set"
            if lib is None:
                warnings.warn(f"wbg_edge.native: native refine library {why}; using the slower numpy reference",
                              RuntimeWarning, stacklevel=3)
            _cpu["lib"] = lib
        return _cpu["lib"]  # type: ignore[return-value]


def native_backend() -> str:
    """'cpu-native' when the compiled library serves refine_pack / refine_finish, else 'numpy'."""
    return "cpu-native" if _cpu_lib() is not None else "numpy"


_local = threading.local()


def set_thread_budget(n: int | None) -> None:
    """Worker threads for the CPU op's calls made from the current thread (None: the default, see _threads)."""
    _local.threads = n


def _threads() -> int:
    """Worker threads for the CPU op: the calling thread's budget, $WBG_EDGE_NATIVE_THREADS, else the CPUs this
    process may use."""
    if getattr(_local, "threads", None):
        return max(1, int(_local.threads))
    env = os.environ.get("WBG_EDGE_NATIVE_THREADS")
    if env:
        return max(1, int(env))
    return usable_cpus()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _check_status(code: int, what: str) -> None:
    if code != 0:
        raise RuntimeError(f"{what}: native op failed ({_STATUS.get(code, f'status {code}')})")


# --------------------------------------------------------------------------------------------------------------------
# argument checks (shared by the CPU entry points)

def _array(name: str, a, dtypes, ndim: int, writeable: bool = False) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in [np.dtype(d) for d in dtypes]:
        want = " or ".join(np.dtype(d).name for d in dtypes)
        raise TypeError(f"{name} must be {want}, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if a.size == 0 or any(s > _MAX_DIM for s in a.shape):
        raise ValueError(f"{name} has an empty or oversized shape {a.shape}")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return a


def _size2(name: str, v) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (height, width) pair, got {v!r}") from None
    if not (1 <= h <= _MAX_DIM and 1 <= w <= _MAX_DIM):
        raise ValueError(f"{name} must be positive, got {(h, w)}")
    return h, w


def _check_frame(frame) -> tuple[int, int]:
    _array("frame", frame, [np.uint8], 3)
    if frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) BGR, got shape {frame.shape}")
    return frame.shape[0], frame.shape[1]


def _check_patches(patches, n: int, p: int, refine_size: tuple[int, int]) -> np.ndarray:
    _array("patches", patches, [np.int32], 2)
    if patches.shape != (n, 2):
        raise ValueError(f"patches must be (N, 2) int32 (y, x) origins with N = {n}, got shape {patches.shape}")
    hr, wr = refine_size
    if p > hr or p > wr:
        raise ValueError(f"patch_size {p} is larger than refine_size {refine_size}")
    y, x = patches[:, 0], patches[:, 1]
    bad = (y < 0) | (x < 0) | (y > hr - p) | (x > wr - p)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"patches[{k}] = {tuple(int(v) for v in patches[k])} puts a {p}x{p} patch outside the "
                         f"refine grid {refine_size}")
    return patches


def _fg_cell(foreground, fg_cell) -> int:
    """The ABI's fg_cell: 0 without foreground colours, else the grid's cell side (checked)."""
    if not isinstance(foreground, (bool, np.bool_)):
        raise TypeError(f"foreground must be True or False, got {foreground!r}")
    if not foreground:
        return 0
    if isinstance(fg_cell, bool) or not isinstance(fg_cell, (int, np.integer)) or not 1 <= fg_cell <= 64:
        raise ValueError(f"fg_cell must be an integer in [1, 64], got {fg_cell!r}")
    return int(fg_cell)


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


# --------------------------------------------------------------------------------------------------------------------
# CPU entry points
