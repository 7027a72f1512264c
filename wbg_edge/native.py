"""Binding of the fused refine op (kernels/): `refine_pack` before the refiner, `refine_finish` after it.

CPU entry points take numpy arrays and write into caller-owned outputs; they run the native library
(`wbg_edge/_native/libwbg_refine.so`, built by CMake at install time) or, when it is missing, the numpy reference
(`wbg_edge.native_reference`) after one warning. The math contract (sampling, patch rule, rounding) is documented in
`kernels/refine.cuh`. CUDA entry points (`cuda_refine_pack` / `cuda_refine_finish`, from `wbg_edge.native_cuda`)
take raw device pointers and a stream handle; their library is loaded on first use. The ABI, library loading and
argument checks are `wbg_edge.native_abi`.

Every argument is checked before any native call: a bad one raises ValueError / TypeError naming it.
"""

from __future__ import annotations

import ctypes

import numpy as np

from wbg_edge import native_reference as ref

from .native_abi import (  # noqa: F401 (also read through wbg_edge.native: the public ones, and tests / bench)
    _ABI_VERSION,
    _DTYPE_CODE,
    _MAX_DIM,
    _MODE_CODE,
    MODES,
    _array,
    _bind,
    _check_frame,
    _check_patches,
    _check_status,
    _cpu,
    _cpu_lib,
    _fg_cell,
    _find_library,
    _FinishArgs,
    _PackArgs,
    _ptr,
    _size2,
    _threads,
    native_backend,
    set_thread_budget,
    usable_cpus,
)
from .native_cuda import cuda_available, cuda_finish_workspace_bytes, cuda_refine_finish, cuda_refine_pack  # noqa: F401

__all__ = ["refine_pack", "refine_finish", "refine_finish_begin", "FinishJob", "native_backend", "cuda_refine_pack",
           "cuda_refine_finish", "cuda_available", "MODES"]


def _patched_grid(refine_size, patch_size) -> tuple[tuple[int, int], int]:
    """The refine grid and patch side of a call with patches: both must be given, P >= 1."""
    if refine_size is None:
        raise ValueError("refine_size (Hr, Wr) is required with patches")
    p = int(patch_size)
    if p < 1:
        raise ValueError(f"patch_size must be >= 1 with patches, got {patch_size}")
    return _size2("refine_size", refine_size), p


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
        grid, p = _patched_grid(refine_size, patch_size)
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
                  prev_alpha: np.ndarray | None = None, smoothing: float = 0.0, foreground: bool = False,
                  fg_cell: int = ref.FG_CELL) -> None:
    """alpha = clamp(packed[:, 4] + delta[:, 0], 0, 1) on the refine grid, bilinearly upsampled to the frame size,
    optionally smoothed in time (a = smoothing * prev_alpha + (1 - smoothing) * a; prev_alpha may be out_alpha),
    written to out_alpha (float32 H x W, may be None) and, in the same pass, to `out` (may be None) for `mode`:
    "alpha" u8 (H, W); "rgba" u8 (H, W, 4) BGRA, straight alpha; "composite" u8 (H, W, 3) = a*colour + (1-a)*bg
    with background u8 (H, W, 3) BGR or a (3,) BGR colour (Q15 fixed point, within 1 of the float formula). `out`
    may be `frame` itself (each row is read before it is written).

    colour is the frame's, or with `foreground` (needs alpha_coarse) the subject's colour estimated at soft pixels
    (0 < alpha u8 < 255) against a local background made from what alpha_coarse calls background, on a grid of
    `fg_cell`-pixel cells (kernels/refine.cuh); "rgba" then carries that colour with straight alpha, as PNG and
    ProRes 4444 store it.

    With patches (the origins given to refine_pack, int32 (N, 2)), packed is (N, 5, P, P), delta (N, 1, P, P),
    refine_size and alpha_coarse (float32 Ha x Wa) are required, and pixels that are not fully inside refined
    patches take alpha_coarse bilinearly upsampled (rule in kernels/refine.cuh).
    """
    n, p, grid = _check_refined(packed, delta, patches, refine_size)
    f = _FinishCall(frame, out_alpha, patches, n, p, grid, alpha_coarse, mode, background, out, prev_alpha, smoothing,
                    _fg_cell(foreground, fg_cell))
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
                        prev_alpha: np.ndarray | None = None, smoothing: float = 0.0, foreground: bool = False,
                        fg_cell: int = ref.FG_CELL) -> FinishJob:
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
        grid, p = _patched_grid(refine_size, patch_size)
        _array("patches", patches, [np.int32], 2)
        n = patches.shape[0]
        _check_patches(patches, n, p, grid)
    f = _FinishCall(frame, out_alpha, patches, n, p, grid, alpha_coarse, mode, background, out, prev_alpha, smoothing,
                    _fg_cell(foreground, fg_cell))
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
                 background, out, prev_alpha, smoothing, fg_cell: int = 0):
        h, w = _check_frame(frame)
        if fg_cell and alpha_coarse is None:
            raise ValueError("alpha_coarse is required with foreground (its background makes the local colours)")
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
        self.fg_cell = fg_cell

    def args(self) -> _FinishArgs:
        """The native arguments, packed / delta left empty."""
        ac = self.alpha_coarse
        return _FinishArgs(None, 0, None, 0, self.grid[0], self.grid[1], _ptr(self.patches),
                           self.n if self.patches is not None else 0, self.p, _ptr(ac),
                           *(ac.shape if ac is not None else (0, 0)), _ptr(self.frame), self.h, self.w,
                           _ptr(self.prev_alpha), self.smoothing, _ptr(self.out_alpha),
                           _MODE_CODE[self.mode] if self.out is not None else 0, _ptr(self.out),
                           _ptr(self.background), self.bg_colour, self.fg_cell, None, 0)

    def reference(self, packed: np.ndarray, delta: np.ndarray) -> None:
        """The numpy reference into the outputs (no native library)."""
        a, o = ref.finish(packed, delta, self.frame, self.grid, self.patches, self.alpha_coarse, self.mode or "alpha",
                          self.background, self.prev_alpha, self.smoothing, foreground=self.fg_cell > 0,
                          fg_cell=self.fg_cell or ref.FG_CELL)
        if self.out_alpha is not None:
            self.out_alpha[...] = a
        if self.out is not None:
            self.out[...] = o
