"""Binding of the fused refine op (kernels/): `refine_pack` before the refiner, `refine_finish` after it.

CPU entry points take numpy arrays and write into caller-owned outputs; they run the native library
(`wbg_edge/_native/libwbg_refine.so`, built by CMake at install time) or, when it is missing, the numpy reference
(`wbg_edge.native_reference`) after one warning. The math contract (sampling, patch rule, rounding) is documented in
`kernels/refine.cuh`. CUDA entry points (`cuda_refine_pack` / `cuda_refine_finish`) take raw device pointers and a
stream handle; their library is loaded on first use.

Every argument is checked here before any native call: a bad one raises ValueError / TypeError naming it.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from wbg_edge import native_reference as ref

__all__ = ["refine_pack", "refine_finish", "refine_finish_begin", "FinishJob", "native_backend", "cuda_refine_pack",
           "cuda_refine_finish", "cuda_available", "MODES"]

MODES = ref.MODES
_MODE_CODE = {None: 0, "alpha": 1, "rgba": 2, "composite": 3}
_DTYPE_CODE = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
_ABI_VERSION = 3
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


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


# --------------------------------------------------------------------------------------------------------------------
# CPU entry points

def refine_pack(frame: np.ndarray, depth: np.ndarray | None, alpha_coarse: np.ndarray, out: np.ndarray,
                patches: np.ndarray | None = None, patch_size: int = 0,
                refine_size: tuple[int, int] | None = None) -> None:
    """Resample frame (u8 HxWx3 BGR), depth (float32 Hd x Wd in [0, 1]; None means D = 0) and alpha_coarse
    (float32 Ha x Wa) onto the refine grid and write R, G, B (/255), D, alpha_coarse into `out`.

    Full grid (patches None): out is float32/float16 (1, 5, Hr, Wr) and sets the grid size.
    Patches: patches int32 (N, 2) of (y, x) origins on the virtual grid `refine_size` = (Hr, Wr); out is
    (N, 5, P, P) with P = patch_size; each patch is the window [y, y+P) x [x, x+P) of the full-grid result.
    """
    h, w = _check_frame(frame)
    if depth is not None:
        _array("depth", depth, [np.float32], 2)
    _array("alpha_coarse", alpha_coarse, [np.float32], 2)
    _array("out", out, [np.float32, np.float16], 4, writeable=True)
    if out.shape[1] != 5:
        raise ValueError(f"out must have 5 channels (N, 5, H, W), got shape {out.shape}")
    if patches is None:
        if out.shape[0] != 1:
            raise ValueError(f"out must be (1, 5, Hr, Wr) without patches, got shape {out.shape}")
        grid = (out.shape[2], out.shape[3])
        if refine_size is not None and _size2("refine_size", refine_size) != grid:
            raise ValueError(f"refine_size {tuple(refine_size)} does not match out {out.shape}")
        n, p = 0, 0
    else:
        if refine_size is None:
            raise ValueError("refine_size (Hr, Wr) is required with patches")
        grid = _size2("refine_size", refine_size)
        p = int(patch_size)
        if p < 1:
            raise ValueError(f"patch_size must be >= 1 with patches, got {patch_size}")
        n = out.shape[0]
        if out.shape[2:] != (p, p):
            raise ValueError(f"out must be (N, 5, {p}, {p}) for patch_size {p}, got shape {out.shape}")
        _check_patches(patches, n, p, grid)

    lib = _cpu_lib()
    if lib is None:
        out[...] = ref.pack(frame, depth, alpha_coarse, grid, patches, p)
        return
    args = _PackArgs(_ptr(frame), h, w, _ptr(depth), *(depth.shape if depth is not None else (0, 0)),
                     _ptr(alpha_coarse), *alpha_coarse.shape, grid[0], grid[1],
                     _ptr(patches), n, p, _ptr(out), _DTYPE_CODE[out.dtype])
    _check_status(lib.wbg_refine_pack_cpu(ctypes.byref(args), _threads()), "refine_pack")


def frame_planes(frame: np.ndarray, out: np.ndarray) -> None:
    """The R, G, B planes (/255) of frame (u8 H x W x 3 BGR) bilinearly resampled to out's size, written to out
    (float32/float16 (3, h, w), C-contiguous): a model input in one pass, sampled exactly as refine_pack samples."""
    h, w = _check_frame(frame)
    _array("out", out, [np.float32, np.float16], 3, writeable=True)
    if out.shape[0] != 3:
        raise ValueError(f"out must be (3, h, w), got shape {out.shape}")
    lib = _cpu_lib()
    if lib is None:
        out[...] = ref.frame_planes(frame, out.shape[1], out.shape[2])
        return
    _check_status(lib.wbg_frame_planes_cpu(_ptr(frame), h, w, _ptr(out), out.shape[1], out.shape[2],
                                           _DTYPE_CODE[out.dtype], _threads()), "frame_planes")


def refine_finish(packed: np.ndarray, delta: np.ndarray, frame: np.ndarray, out_alpha: np.ndarray | None,
                  patches: np.ndarray | None = None, refine_size: tuple[int, int] | None = None,
                  alpha_coarse: np.ndarray | None = None, mode: str | None = "alpha",
                  background: np.ndarray | None = None, out: np.ndarray | None = None,
                  prev_alpha: np.ndarray | None = None, smoothing: float = 0.0) -> None:
    """alpha = clamp(packed[:, 4] + delta[:, 0], 0, 1) on the refine grid, bilinearly upsampled to the frame size,
    optionally smoothed in time (a = smoothing * prev_alpha + (1 - smoothing) * a; prev_alpha may be out_alpha),
    written to out_alpha (float32 H x W, may be None) and, in the same pass, to `out` (may be None) for `mode`:
    "alpha" u8 (H, W); "rgba" u8 (H, W, 4) BGRA, straight alpha; "composite" u8 (H, W, 3) = a*frame + (1-a)*bg with
    background u8 (H, W, 3) BGR or a (3,) BGR colour (Q15 fixed point, within 1 of the float formula). `out` may be
    `frame` itself (each row is read before it is written).

    With patches (the origins given to refine_pack, int32 (N, 2)), packed is (N, 5, P, P), delta (N, 1, P, P),
    refine_size and alpha_coarse (float32 Ha x Wa) are required, and pixels that are not fully inside refined
    patches take alpha_coarse bilinearly upsampled (rule in kernels/refine.cuh).
    """
    n, p, grid = _check_refined(packed, delta, patches, refine_size)
    f = _FinishCall(frame, out_alpha, patches, n, p, grid, alpha_coarse, mode, background, out, prev_alpha, smoothing)
    lib = _cpu_lib()
    if lib is None:
        f.reference(packed, delta)
        return
    args = f.args()
    args.packed, args.packed_dtype = _ptr(packed), _DTYPE_CODE[packed.dtype]
    args.delta, args.delta_dtype = _ptr(delta), _DTYPE_CODE[delta.dtype]
    _check_status(lib.wbg_refine_finish_cpu(ctypes.byref(args), _threads()), "refine_finish")


def refine_finish_begin(frame: np.ndarray, out_alpha: np.ndarray | None, patches: np.ndarray | None = None,
                        patch_size: int = 0, refine_size: tuple[int, int] | None = None,
                        alpha_coarse: np.ndarray | None = None, mode: str | None = "alpha",
                        background: np.ndarray | None = None, out: np.ndarray | None = None,
                        prev_alpha: np.ndarray | None = None, smoothing: float = 0.0) -> FinishJob:
    """refine_finish started before the refiner has run (same arguments, without packed / delta; `patch_size` and
    `refine_size` say what packed will be). The output blocks that read no refined cell (the patch rule: most of a
    frame) need only the frame, the coarse alpha and the patch origins: they are made now, on a background thread
    at the lowest priority, so they fill the cores the refiner leaves idle. `FinishJob.end(packed, delta)` then makes
    the rest: the outputs are exactly those of refine_finish. Until end (or cancel) returns, every array given here
    must stay alive and unchanged, and the outputs untouched; the job keeps references to them."""
    if patches is None:
        if refine_size is None:
            raise ValueError("refine_size (Hr, Wr) is required to begin a finish")
        n, p, grid = 1, 0, _size2("refine_size", refine_size)
    else:
        if refine_size is None:
            raise ValueError("refine_size (Hr, Wr) is required with patches")
        grid = _size2("refine_size", refine_size)
        p = int(patch_size)
        if p < 1:
            raise ValueError(f"patch_size must be >= 1 with patches, got {patch_size}")
        _array("patches", patches, [np.int32], 2)
        n = patches.shape[0]
        _check_patches(patches, n, p, grid)
    f = _FinishCall(frame, out_alpha, patches, n, p, grid, alpha_coarse, mode, background, out, prev_alpha, smoothing)
    return FinishJob(f)


class FinishJob:
    """A finish begun by `refine_finish_begin`: call `end(packed, delta)` once the refiner has run, or `cancel()`."""

    def __init__(self, call: _FinishCall):
        self._call = call
        self._handle: int | None = None
        self._lib = _cpu_lib()
        if self._lib is not None:
            status = ctypes.c_int(0)
            self._args = call.args()  # (kept: the arrays it points to live in self._call)
            self._handle = self._lib.wbg_refine_finish_begin_cpu(ctypes.byref(self._args), ctypes.byref(status))
            _check_status(status.value, "refine_finish_begin")
        self._open = True

    def end(self, packed: np.ndarray, delta: np.ndarray) -> None:
        """Finish with the refiner's output (shapes as refine_finish takes them); the outputs are complete on return."""
        if not self._open:
            raise RuntimeError("FinishJob.end: this finish was already ended or cancelled")
        c = self._call
        want = (c.n, 5, c.p, c.p) if c.patches is not None else (1, 5, *c.grid)
        try:  # (the patches were checked by begin)
            _array("packed", packed, [np.float32, np.float16], 4)
            _array("delta", delta, [np.float32, np.float16], 4)
            if packed.shape != want or delta.shape != (want[0], 1, *want[2:]):
                raise ValueError(f"packed {packed.shape} / delta {delta.shape} do not match the begun finish "
                                 f"({want} / {(want[0], 1, *want[2:])})")
        except (TypeError, ValueError):
            self.cancel()
            raise
        self._open = False
        if self._handle is None:
            c.reference(packed, delta)
            return
        handle, self._handle = self._handle, None
        _check_status(self._lib.wbg_refine_finish_end_cpu(handle, _ptr(packed), _DTYPE_CODE[packed.dtype],
                                                          _ptr(delta), _DTYPE_CODE[delta.dtype], _threads()),
                      "refine_finish")

    def cancel(self) -> None:
        """Stop: returns once nothing more is written to the outputs (which then hold part of a result)."""
        self._open = False
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._lib.wbg_refine_finish_end_cpu(handle, None, 0, None, 0, 1)

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self.cancel()


def _check_refined(packed, delta, patches, refine_size) -> tuple[int, int, tuple[int, int]]:
    """(n, patch size or 0, refine grid) of the refiner's input / output pair."""
    _array("packed", packed, [np.float32, np.float16], 4)
    _array("delta", delta, [np.float32, np.float16], 4)
    n, c, ph, pw = packed.shape
    if c != 5:
        raise ValueError(f"packed must have 5 channels (N, 5, H, W), got shape {packed.shape}")
    if delta.shape != (n, 1, ph, pw):
        raise ValueError(f"delta must be {(n, 1, ph, pw)} to match packed, got shape {delta.shape}")
    if patches is None:
        if n != 1:
            raise ValueError(f"packed must be (1, 5, Hr, Wr) without patches, got shape {packed.shape}")
        if refine_size is not None and _size2("refine_size", refine_size) != (ph, pw):
            raise ValueError(f"refine_size {tuple(refine_size)} does not match packed {packed.shape}")
        return n, 0, (ph, pw)
    if refine_size is None:
        raise ValueError("refine_size (Hr, Wr) is required with patches")
    grid = _size2("refine_size", refine_size)
    if ph != pw:
        raise ValueError(f"packed patches must be square (N, 5, P, P), got shape {packed.shape}")
    _check_patches(patches, n, ph, grid)
    return n, ph, grid


class _FinishCall:
    """The checked arguments of one refine_finish, but the refiner's input and output."""

    def __init__(self, frame, out_alpha, patches, n: int, p: int, grid: tuple[int, int], alpha_coarse, mode,
                 background, out, prev_alpha, smoothing):
        h, w = _check_frame(frame)
        if patches is not None:
            if alpha_coarse is None:
                raise ValueError("alpha_coarse is required with patches (it fills the pixels outside them)")
            _array("alpha_coarse", alpha_coarse, [np.float32], 2)
        elif alpha_coarse is not None:
            _array("alpha_coarse", alpha_coarse, [np.float32], 2)
        if mode not in _MODE_CODE:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if out_alpha is not None:
            _array("out_alpha", out_alpha, [np.float32], 2, writeable=True)
            if out_alpha.shape != (h, w):
                raise ValueError(f"out_alpha must be {(h, w)} (the frame size), got shape {out_alpha.shape}")
        if prev_alpha is not None:
            _array("prev_alpha", prev_alpha, [np.float32], 2)
            if prev_alpha.shape != (h, w):
                raise ValueError(f"prev_alpha must be {(h, w)} (the frame size), got shape {prev_alpha.shape}")
        try:
            s = float(smoothing)
        except (TypeError, ValueError):
            raise TypeError(f"smoothing must be a number, got {smoothing!r}") from None
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
        bg_colour = 0
        if mode == "composite":
            if background is None:
                raise ValueError('background is required for mode="composite"')
            _array("background", background, [np.uint8],
                   background.ndim if isinstance(background, np.ndarray) else 3)
            if background.shape == (3,):
                bg_colour = 1
            elif background.shape != (h, w, 3):
                raise ValueError(f"background must be {(h, w, 3)} BGR or a (3,) colour, got shape {background.shape}")
        if out is not None:
            if mode is None:
                raise ValueError("out given but mode is None")
            want = {"alpha": (h, w), "rgba": (h, w, 4), "composite": (h, w, 3)}[mode]
            _array("out", out, [np.uint8], len(want), writeable=True)
            if out.shape != want:
                raise ValueError(f'out must be {want} for mode="{mode}", got shape {out.shape}')
        if out is None and out_alpha is None:
            raise ValueError("nothing to write: out_alpha and out are both None")
        self.frame, self.out_alpha, self.patches, self.alpha_coarse = frame, out_alpha, patches, alpha_coarse
        self.mode, self.background, self.out, self.prev_alpha, self.smoothing = mode, background, out, prev_alpha, s
        self.n, self.p, self.grid, self.h, self.w, self.bg_colour = n, p, grid, h, w, bg_colour

    def args(self) -> _FinishArgs:
        """The native arguments, packed / delta left empty."""
        ac = self.alpha_coarse
        return _FinishArgs(None, 0, None, 0, self.grid[0], self.grid[1], _ptr(self.patches),
                           self.n if self.patches is not None else 0, self.p, _ptr(ac),
                           *(ac.shape if ac is not None else (0, 0)), _ptr(self.frame), self.h, self.w,
                           _ptr(self.prev_alpha), self.smoothing, _ptr(self.out_alpha),
                           _MODE_CODE[self.mode] if self.out is not None else 0, _ptr(self.out),
                           _ptr(self.background), self.bg_colour, None, 0)

    def reference(self, packed: np.ndarray, delta: np.ndarray) -> None:
        """The numpy reference into the outputs (no native library)."""
        a, o = ref.finish(packed, delta, self.frame, self.grid, self.patches, self.alpha_coarse, self.mode or "alpha",
                          self.background, self.prev_alpha, self.smoothing)
        if self.out_alpha is not None:
            self.out_alpha[...] = a
        if self.out is not None:
            self.out[...] = o


# --------------------------------------------------------------------------------------------------------------------
# CUDA entry points: raw device pointers (int), sizes, a stream handle (int, 0 = default stream)

def _cuda_lib() -> ctypes.CDLL:
    with _lock:
        if "lib" not in _cuda:
            path = _find_library("wbg_refine_cuda")
            if path is None:
                _cuda["error"] = ("CUDA refine library not built (install with the CUDA toolkit's nvcc on PATH "
                                  "or CUDACXX set)")
            else:
                try:
                    _cuda["lib"] = _bind(ctypes.CDLL(str(path)), "cuda")
                except (OSError, AttributeError) as e:
                    _cuda["error"] = f"CUDA refine library {path.name} does not load ({e}); is a driver installed?"
            if "lib" in _cuda:
                lib = _cuda["lib"]
                lib.wbg_refine_cuda_device_count.restype = ctypes.c_int
                if lib.wbg_refine_cuda_device_count() < 1:
                    del _cuda["lib"]
                    _cuda["error"] = "no CUDA device found"
        if "lib" not in _cuda:
            _cuda.setdefault("lib_missing", True)
            raise RuntimeError(_cuda["error"])
        return _cuda["lib"]  # type: ignore[return-value]


def cuda_available() -> bool:
    """True when the CUDA library loads and sees a device (never raises)."""
    try:
        _cuda_lib()
        return True
    except RuntimeError:
        return False


def _dptr(name: str, v, required: bool = True) -> int | None:
    if v is None or v == 0:
        if required:
            raise ValueError(f"{name} is a null device pointer")
        return None
    if not isinstance(v, int) or v < 0:
        raise TypeError(f"{name} must be a device pointer (int), got {v!r}")
    return v


def cuda_refine_pack(frame: int, frame_size: tuple[int, int], depth: int | None, depth_size: tuple[int, int] | None,
                     alpha_coarse: int, alpha_size: tuple[int, int], out: int, refine_size: tuple[int, int],
                     out_dtype: str = "float32", patches: int | None = None, n_patches: int = 0,
                     patch_size: int = 0, stream: int = 0) -> None:
    """refine_pack on device buffers (same layouts as the CPU op; `patches` is a device int32 (N, 2) buffer whose
    origins the caller has validated against refine_size). Asynchronous on `stream`."""
    h, w = _size2("frame_size", frame_size)
    hr, wr = _size2("refine_size", refine_size)
    dh, dw = _size2("depth_size", depth_size) if depth else (0, 0)
    ah, aw = _size2("alpha_size", alpha_size)
    dt = {"float32": 0, "float16": 1}.get(str(np.dtype(out_dtype)))
    if dt is None:
        raise TypeError(f"out_dtype must be float32 or float16, got {out_dtype!r}")
    if patches:
        if n_patches < 1 or not 1 <= patch_size <= min(hr, wr):
            raise ValueError(f"n_patches / patch_size invalid: {n_patches}, {patch_size} for refine_size {(hr, wr)}")
    else:
        n_patches, patch_size = 0, 0
    args = _PackArgs(_dptr("frame", frame), h, w, _dptr("depth", depth, False), dh, dw,
                     _dptr("alpha_coarse", alpha_coarse), ah, aw, hr, wr, _dptr("patches", patches, False),
                     n_patches, patch_size, _dptr("out", out), dt)
    lib = _cuda_lib()
    _check_status(lib.wbg_refine_pack_cuda(ctypes.byref(args), ctypes.c_void_p(stream or None)), "cuda_refine_pack")


def cuda_finish_workspace_bytes(refine_size: tuple[int, int]) -> int:
    """Device workspace cuda_refine_finish needs with patches (refined grid + patch index map)."""
    hr, wr = _size2("refine_size", refine_size)
    return hr * wr * 8


def cuda_refine_finish(packed: int, delta: int, refine_size: tuple[int, int], frame: int,
                       frame_size: tuple[int, int], out_alpha: int | None, mode: str | None = "alpha",
                       out: int | None = None, background: int | None = None, background_is_colour: bool = False,
                       prev_alpha: int | None = None, smoothing: float = 0.0, patches: int | None = None,
                       n_patches: int = 0, patch_size: int = 0, alpha_coarse: int | None = None,
                       alpha_size: tuple[int, int] | None = None, workspace: int | None = None,
                       workspace_bytes: int = 0, packed_dtype: str = "float32", delta_dtype: str = "float32",
                       stream: int = 0) -> None:
    """refine_finish on device buffers; with patches it needs alpha_coarse and a workspace of
    cuda_finish_workspace_bytes(refine_size) bytes. Asynchronous on `stream`."""
    hr, wr = _size2("refine_size", refine_size)
    h, w = _size2("frame_size", frame_size)
    codes = {"float32": 0, "float16": 1}
    if str(packed_dtype) not in codes or str(delta_dtype) not in codes:
        raise TypeError("packed_dtype / delta_dtype must be 'float32' or 'float16'")
    if mode not in _MODE_CODE:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    s = float(smoothing)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
    ah = aw = 0
    if patches:
        if n_patches < 1 or not 1 <= patch_size <= min(hr, wr):
            raise ValueError(f"n_patches / patch_size invalid: {n_patches}, {patch_size} for refine_size {(hr, wr)}")
        _dptr("alpha_coarse", alpha_coarse)
        ah, aw = _size2("alpha_size", alpha_size)
        _dptr("workspace", workspace)
        if workspace_bytes < cuda_finish_workspace_bytes((hr, wr)):
            raise ValueError(f"workspace_bytes must be >= {cuda_finish_workspace_bytes((hr, wr))}")
    else:
        n_patches, patch_size = 0, 0
    if mode == "composite":
        _dptr("background", background)
    if out is None and out_alpha is None:
        raise ValueError("nothing to write: out_alpha and out are both None")
    args = _FinishArgs(_dptr("packed", packed), codes[str(packed_dtype)], _dptr("delta", delta),
                       codes[str(delta_dtype)], hr, wr, _dptr("patches", patches, False), n_patches, patch_size,
                       _dptr("alpha_coarse", alpha_coarse, False), ah, aw, _dptr("frame", frame), h, w,
                       _dptr("prev_alpha", prev_alpha, False), s, _dptr("out_alpha", out_alpha, False),
                       _MODE_CODE[mode] if out else 0, _dptr("out", out, False),
                       _dptr("background", background, False), int(bool(background_is_colour)),
                       _dptr("workspace", workspace, False), int(workspace_bytes))
    lib = _cuda_lib()
    _check_status(lib.wbg_refine_finish_cuda(ctypes.byref(args), ctypes.c_void_p(stream or None)),
                  "cuda_refine_finish")
