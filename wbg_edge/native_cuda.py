"""CUDA entry points of the fused op: raw device pointers (int), sizes and a stream handle (int, 0 = the default
stream); the library is loaded on first use. Argument checks and the ABI live in `wbg_edge.native_abi`."""
from __future__ import annotations

import ctypes

import numpy as np

from . import native_reference as ref
from .native_abi import (
    _MODE_CODE,
    MODES,
    _bind,
    _check_status,
    _cuda,
    _fg_cell,
    _find_library,
    _FinishArgs,
    _lock,
    _PackArgs,
    _size2,
)

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


def cuda_finish_workspace_bytes(refine_size: tuple[int, int], frame_size: tuple[int, int] | None = None,
                                foreground: bool = False, fg_cell: int = ref.FG_CELL, patches: bool = True) -> int:
    """Device workspace cuda_refine_finish needs: with patches the refined grid and patch index map, with
    `foreground` (frame_size needed) the background pyramid after it."""
    hr, wr = _size2("refine_size", refine_size)
    n = hr * wr * 8 if patches else 0
    if _fg_cell(foreground, fg_cell):
        if frame_size is None:
            raise ValueError("frame_size is required for the foreground workspace")
        h, w = _size2("frame_size", frame_size)
        n += 16 * sum(lh * lw for lh, lw in ref.fg_levels(*ref.fg_grid_size(h, w, fg_cell)))  # W, M: 4 floats
    return n


def cuda_refine_finish(packed: int, delta: int, refine_size: tuple[int, int], frame: int,
                       frame_size: tuple[int, int], out_alpha: int | None, mode: str | None = "alpha",
                       out: int | None = None, background: int | None = None, background_is_colour: bool = False,
                       prev_alpha: int | None = None, smoothing: float = 0.0, patches: int | None = None,
                       n_patches: int = 0, patch_size: int = 0, alpha_coarse: int | None = None,
                       alpha_size: tuple[int, int] | None = None, workspace: int | None = None,
                       workspace_bytes: int = 0, packed_dtype: str = "float32", delta_dtype: str = "float32",
                       stream: int = 0, foreground: bool = False, fg_cell: int = ref.FG_CELL) -> None:
    """refine_finish on device buffers; with patches it needs alpha_coarse and a workspace of
    cuda_finish_workspace_bytes(refine_size) bytes; with `foreground` (the CPU op's foreground colours, rgba and
    composite) alpha_coarse and cuda_finish_workspace_bytes(refine_size, frame_size, True, fg_cell, patches=...)
    bytes. Asynchronous on `stream`."""
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
    cell = _fg_cell(foreground, fg_cell) if mode in ("rgba", "composite") and out else 0
    if cell:
        _dptr("alpha_coarse", alpha_coarse)
        ah, aw = _size2("alpha_size", alpha_size)
        need = cuda_finish_workspace_bytes((hr, wr), (h, w), True, cell, patches=bool(patches))
        _dptr("workspace", workspace)
        if workspace_bytes < need:
            raise ValueError(f"workspace_bytes must be >= {need} (patches and foreground)")
    if mode == "composite":
        _dptr("background", background)
    if out is None and out_alpha is None:
        raise ValueError("nothing to write: out_alpha and out are both None")
    args = _FinishArgs(_dptr("packed", packed), codes[str(packed_dtype)], _dptr("delta", delta),
                       codes[str(delta_dtype)], hr, wr, _dptr("patches", patches, False), n_patches, patch_size,
                       _dptr("alpha_coarse", alpha_coarse, False), ah, aw, _dptr("frame", frame), h, w,
                       _dptr("prev_alpha", prev_alpha, False), s, _dptr("out_alpha", out_alpha, False),
                       _MODE_CODE[mode] if out else 0, _dptr("out", out, False),
                       _dptr("background", background, False), int(bool(background_is_colour)), cell,
                       _dptr("workspace", workspace, False), int(workspace_bytes))
    lib = _cuda_lib()
    _check_status(lib.wbg_refine_finish_cuda(ctypes.byref(args), ctypes.c_void_p(stream or None)),
                  "cuda_refine_finish")
