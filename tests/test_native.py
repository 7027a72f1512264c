"""The fused refine op (wbg_edge.native) against its numpy reference and torch.nn.functional.interpolate.

Contracts under test (kernels/refine.cuh): align_corners=False bilinear sampling, float outputs within 1e-5 of
torch and of the reference, u8 outputs within 1, the patch rule, and argument checks that raise instead of crashing.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wbg_edge import native
from wbg_edge import native_reference as ref

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODES = ["alpha", "rgba", "composite"]


def torch_resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) or (H, W, C) float -> resized with torch interpolate(align_corners=False), float32."""
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    r = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0]
    return (r[0] if a.ndim == 2 else r.permute(1, 2, 0)).numpy()


def case(seed: int, h: int, w: int, hr: int, wr: int, mh: int, mw: int, depth: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "frame": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "depth": rng.random((max(1, mh // 2), max(1, mw // 2)), dtype=np.float32) if depth else None,
        "alpha": rng.random((mh, mw), dtype=np.float32),
        "delta": (rng.standard_normal((1, 1, hr, wr)) * 0.4).astype(np.float32),
        "background": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "prev": rng.random((h, w), dtype=np.float32),
    }


def packed_of(c: dict, hr: int, wr: int, dtype=np.float32) -> np.ndarray:
    out = np.empty((1, 5, hr, wr), dtype)
    native.refine_pack(c["frame"], c["depth"], c["alpha"], out)
    return out


def out_for(mode: str, h: int, w: int) -> np.ndarray:
    return np.empty({"alpha": (h, w), "rgba": (h, w, 4), "composite": (h, w, 3)}[mode], np.uint8)


# sizes from 1 pixel to extreme aspect ratios (1 x 300, 300 x 1)
side = st.integers(1, 64)
sizes = st.one_of(st.tuples(side, side), st.tuples(st.just(1), st.integers(1, 300)),
                  st.tuples(st.integers(1, 300), st.just(1)))


def test_native_library_is_used():
    assert native.native_backend() == "cpu-native", "the native library was not built / found (pip install -e .)"


@SETTINGS
@given(frame=sizes, refine=sizes, model=st.tuples(side, side), depth=st.booleans(), seed=st.integers(0, 2**16))
def test_pack_matches_reference_and_torch(frame, refine, model, depth, seed):
    (h, w), (hr, wr), (mh, mw) = frame, refine, model
    c = case(seed, h, w, hr, wr, mh, mw, depth)
    out = packed_of(c, hr, wr)
    expect = ref.pack(c["frame"], c["depth"], c["alpha"], (hr, wr))
    np.testing.assert_allclose(out, expect, rtol=0, atol=1e-6)
    rgb = torch_resize(c["frame"][..., ::-1].astype(np.float32) / 255, hr, wr).transpose(2, 0, 1)
    d = torch_resize(c["depth"], hr, wr) if depth else np.zeros((hr, wr), np.float32)
    t = np.concatenate([rgb, d[None], torch_resize(c["alpha"], hr, wr)[None]])[None]
    np.testing.assert_allclose(out, t, rtol=0, atol=1e-5)


@SETTINGS
@given(frame=sizes, out=sizes, seed=st.integers(0, 2**16))
def test_frame_planes_are_packs_rgb_planes(frame, out, seed):
    # The models' input is sampled exactly as the pack samples the frame: equal to its R, G, B planes.
    f = np.random.default_rng(seed).integers(0, 256, (*frame, 3), dtype=np.uint8)
    planes = np.empty((3, *out), np.float32)
    native.frame_planes(f, planes)
    packed = np.empty((1, 5, *out), np.float32)
    native.refine_pack(f, None, np.zeros((2, 2), np.float32), packed)
    assert np.array_equal(planes, packed[0, :3])
    assert np.abs(planes - ref.frame_planes(f, *out)).max() <= 1e-5
    assert np.abs(planes - torch_resize(f[..., ::-1] / np.float32(255), *out).transpose(2, 0, 1)).max() <= 1e-5
    half = np.empty((3, *out), np.float16)
    native.frame_planes(f, half)
    assert np.array_equal(half, planes.astype(np.float16))


@pytest.mark.parametrize("out, words", [(np.empty((4, 8, 8), np.float32), "(3, h, w)"),
                                        (np.empty((3, 8, 8), np.float64), "float32 or float16"),
                                        (np.empty((3, 8, 16), np.float32)[:, :, ::2], "C-contiguous")])
def test_frame_planes_rejects_bad_outputs(out, words):
    with pytest.raises((ValueError, TypeError), match=words.replace("(", r"\(").replace(")", r"\)")):
        native.frame_planes(np.zeros((4, 4, 3), np.uint8), out)


@SETTINGS
@given(frame=sizes, refine=sizes, model=st.tuples(side, side), mode=st.sampled_from(MODES),
       smooth=st.sampled_from([None, 0.0, 0.3, 1.0]), colour=st.booleans(), seed=st.integers(0, 2**16))
def test_finish_matches_reference_and_torch(frame, refine, model, mode, smooth, colour, seed):
    (h, w), (hr, wr), (mh, mw) = frame, refine, model
    c = case(seed, h, w, hr, wr, mh, mw)
    packed = packed_of(c, hr, wr)
    bg = c["background"][0, 0].copy() if colour else c["background"]
    prev = c["prev"] if smooth is not None else None
    out_alpha, out = np.empty((h, w), np.float32), out_for(mode, h, w)
    native.refine_finish(packed, c["delta"], c["frame"], out_alpha, mode=mode, background=bg, out=out,
                         prev_alpha=prev, smoothing=smooth or 0.0)
    a_ref, o_ref = ref.finish(packed, c["delta"], c["frame"], mode=mode, background=bg, prev_alpha=prev,
                              smoothing=smooth or 0.0)
    np.testing.assert_allclose(out_alpha, a_ref, rtol=0, atol=1e-6)
    assert np.abs(out.astype(int) - o_ref).max() <= 1

    # the same from torch: clamp on the refine grid, interpolate, smooth, compose
    a = torch_resize(np.clip(packed[0, 4] + c["delta"][0, 0], 0, 1), h, w)
    if prev is not None:
        a = smooth * prev + (1 - smooth) * a
    a = np.clip(a, 0, 1)
    np.testing.assert_allclose(out_alpha, a, rtol=0, atol=1e-5)
    q = np.floor(a * 255 + 0.5)
    expect = {"alpha": q, "rgba": np.dstack([c["frame"], q]),
              "composite": np.floor(a[..., None] * c["frame"] + (1 - a[..., None]) * np.broadcast_to(bg, (h, w, 3))
                                    + 0.5)}[mode]
    assert np.abs(out.astype(int) - expect).max() <= 1


def test_prev_alpha_may_alias_out_alpha():
    c = case(1, 37, 53, 16, 24, 8, 12)
    packed = packed_of(c, 16, 24)
    state = c["prev"].copy()
    expect, _ = ref.finish(packed, c["delta"], c["frame"], prev_alpha=state.copy(), smoothing=0.6)
    native.refine_finish(packed, c["delta"], c["frame"], state, mode=None, prev_alpha=state, smoothing=0.6)
    np.testing.assert_allclose(state, expect, rtol=0, atol=1e-6)


def random_patches(rng, n: int, p: int, hr: int, wr: int) -> np.ndarray:
    return np.stack([rng.integers(0, hr - p + 1, n), rng.integers(0, wr - p + 1, n)], 1).astype(np.int32)


@SETTINGS
@given(frame=sizes, refine=st.tuples(st.integers(4, 48), st.integers(4, 48)), p=st.integers(1, 4),
       n=st.integers(1, 12), mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_patches_match_full_grid_and_reference(frame, refine, p, n, mode, seed):
    (h, w), (hr, wr) = frame, refine
    rng = np.random.default_rng(seed)
    c = case(seed, h, w, hr, wr, 9, 13)
    full = packed_of(c, hr, wr)
    patches = random_patches(rng, n, p, hr, wr)
    gathered = np.empty((n, 5, p, p), np.float32)
    native.refine_pack(c["frame"], c["depth"], c["alpha"], gathered, patches=patches, patch_size=p,
                       refine_size=(hr, wr))
    for k, (y, x) in enumerate(patches):  # a patch is exactly its window of the full grid
        np.testing.assert_array_equal(gathered[k], full[0, :, y:y + p, x:x + p])

    delta = (rng.standard_normal((n, 1, p, p)) * 0.4).astype(np.float32)
    out_alpha, out = np.empty((h, w), np.float32), out_for(mode, h, w)
    native.refine_finish(gathered, delta, c["frame"], out_alpha, patches=patches, refine_size=(hr, wr),
                         alpha_coarse=c["alpha"], mode=mode, background=c["background"], out=out)
    a_ref, o_ref = ref.finish(gathered, delta, c["frame"], (hr, wr), patches, c["alpha"], mode, c["background"])
    np.testing.assert_allclose(out_alpha, a_ref, rtol=0, atol=1e-6)
    assert np.abs(out.astype(int) - o_ref).max() <= 1


def test_patch_rule_tiles_and_outside():
    """Patches tiling the grid give the full-grid result; without any refined tap, the coarse alpha upsampled."""
    h, w, hr, wr, p = 45, 70, 24, 32, 8
    c = case(3, h, w, hr, wr, 12, 16)
    full = packed_of(c, hr, wr)
    tiles = np.array([(y, x) for y in range(0, hr, p) for x in range(0, wr, p)], np.int32)
    gathered = np.stack([full[0, :, y:y + p, x:x + p] for y, x in tiles])
    dtiles = np.stack([c["delta"][0, :, y:y + p, x:x + p] for y, x in tiles])
    a_full, a_tiles = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
    native.refine_finish(full, c["delta"], c["frame"], a_full, mode=None)
    native.refine_finish(gathered, dtiles, c["frame"], a_tiles, patches=tiles, refine_size=(hr, wr),
                         alpha_coarse=c["alpha"], mode=None)
    np.testing.assert_array_equal(a_tiles, a_full)

    one = np.array([[0, 0]], np.int32)  # one patch in the corner: far pixels take the coarse alpha
    a_one = np.empty((h, w), np.float32)
    native.refine_finish(gathered[:1], dtiles[:1], c["frame"], a_one, patches=one, refine_size=(hr, wr),
                         alpha_coarse=c["alpha"], mode=None)
    coarse = np.clip(ref.resize(c["alpha"], h, w), 0, 1)
    np.testing.assert_allclose(a_one[h // 2:, w // 2:], coarse[h // 2:, w // 2:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a_one[:5, :5], a_full[:5, :5], rtol=0, atol=1e-6)


def test_half_precision_buffers():
    c = case(4, 33, 47, 20, 28, 10, 14)
    half = packed_of(c, 20, 28, np.float16)
    expect = ref.pack(c["frame"], c["depth"], c["alpha"], (20, 28))
    np.testing.assert_array_equal(half, expect.astype(np.float16))  # both round to nearest even
    a16, a32 = np.empty((33, 47), np.float32), np.empty((33, 47), np.float32)
    native.refine_finish(half, c["delta"].astype(np.float16), c["frame"], a16, mode=None)
    a_ref, _ = ref.finish(half.astype(np.float32), c["delta"].astype(np.float16).astype(np.float32), c["frame"])
    native.refine_finish(half.astype(np.float32), c["delta"].astype(np.float16), c["frame"], a32, mode=None)
    np.testing.assert_allclose(a16, a_ref, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(a16, a32)


def test_numpy_fallback_warns_once_and_matches(monkeypatch):
    c = case(5, 21, 34, 12, 16, 6, 8)
    a_native = np.empty((21, 34), np.float32)
    packed = packed_of(c, 12, 16)
    native.refine_finish(packed, c["delta"], c["frame"], a_native, mode=None)
    from wbg_edge import native_abi
    monkeypatch.setattr(native_abi, "_cpu", {})  # the loaded library is cached where the loader lives
    monkeypatch.setenv("WBG_EDGE_FORCE_NUMPY", "1")
    with pytest.warns(RuntimeWarning, match="numpy reference"):
        assert native.native_backend() == "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        p2 = packed_of(c, 12, 16)
        a_np = np.empty((21, 34), np.float32)
        native.refine_finish(p2, c["delta"], c["frame"], a_np, mode=None)
    np.testing.assert_allclose(p2, packed, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a_np, a_native, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# bad input: a Python error naming the argument, never a crash

F = np.zeros((10, 12, 3), np.uint8)
D = np.zeros((5, 6), np.float32)
A = np.zeros((5, 6), np.float32)
P = np.zeros((1, 5, 8, 8), np.float32)
DL = np.zeros((1, 1, 8, 8), np.float32)
OA = np.zeros((10, 12), np.float32)

BAD_PACK = [
    ("frame", dict(frame=F.astype(np.float32))),
    ("frame", dict(frame=F[:, :, :2].copy())),
    ("frame", dict(frame=F[:, ::2])),
    ("frame", dict(frame=[[1, 2, 3]])),
    ("depth", dict(depth=D.astype(np.float64))),
    ("depth", dict(depth=D.T)),
    ("alpha_coarse", dict(alpha_coarse=A[None])),
    ("alpha_coarse", dict(alpha_coarse=np.zeros((0, 4), np.float32))),
    ("out", dict(out=np.zeros((1, 4, 8, 8), np.float32))),
    ("out", dict(out=np.zeros((1, 5, 8, 8), np.float64))),
    ("out", dict(out=np.zeros((2, 5, 8, 8), np.float32))),
    ("refine_size", dict(out=np.zeros((2, 5, 4, 4), np.float32), patches=np.zeros((2, 2), np.int32), patch_size=4)),
    ("patch_size", dict(out=np.zeros((2, 5, 4, 4), np.float32), patches=np.zeros((2, 2), np.int32),
                        refine_size=(8, 8))),
    ("patches", dict(out=np.zeros((2, 5, 4, 4), np.float32), patches=np.array([[0, 0], [5, 0]], np.int32),
                     patch_size=4, refine_size=(8, 8))),
    ("patches", dict(out=np.zeros((2, 5, 4, 4), np.float32), patches=np.array([[0, 0], [0, -1]], np.int32),
                     patch_size=4, refine_size=(8, 8))),
    ("patches", dict(out=np.zeros((2, 5, 4, 4), np.float32), patches=np.zeros((2, 2), np.int64), patch_size=4,
                     refine_size=(8, 8))),
    ("patches", dict(out=np.zeros((2, 5, 4, 4), np.float32), patches=np.zeros((3, 2), np.int32), patch_size=4,
                     refine_size=(8, 8))),
]


@pytest.mark.parametrize("name,kw", BAD_PACK)
def test_pack_rejects_bad_arguments(name, kw):
    args = dict(frame=F, depth=D, alpha_coarse=A, out=P.copy())
    args.update(kw)
    with pytest.raises((ValueError, TypeError), match=name):
        native.refine_pack(**args)


BAD_FINISH = [
    ("packed", dict(packed=P[:, :4].copy())),
    ("packed", dict(packed=P.astype(np.float64))),
    ("delta", dict(delta=np.zeros((1, 1, 8, 7), np.float32))),
    ("delta", dict(delta=np.zeros((1, 1, 16, 16), np.float32)[:, :, ::2, ::2])),
    ("frame", dict(frame=F.astype(np.int8))),
    ("out_alpha", dict(out_alpha=np.zeros((10, 11), np.float32))),
    ("out_alpha", dict(out_alpha=np.zeros((10, 12), np.float16))),
    ("mode", dict(mode="rgb")),
    ("background", dict(mode="composite", out=np.zeros((10, 12, 3), np.uint8))),
    ("background", dict(mode="composite", out=np.zeros((10, 12, 3), np.uint8), background=np.zeros((10, 12, 4),
                                                                                                    np.uint8))),
    ("out", dict(mode="rgba", out=np.zeros((10, 12, 3), np.uint8))),
    ("out", dict(mode="alpha", out=np.zeros((10, 12), np.float32))),
    ("prev_alpha", dict(prev_alpha=np.zeros((9, 12), np.float32))),
    ("smoothing", dict(prev_alpha=OA, smoothing=1.5)),
    ("smoothing", dict(prev_alpha=OA, smoothing="a lot")),
    ("refine_size", dict(patches=np.zeros((1, 2), np.int32))),
    ("alpha_coarse", dict(patches=np.zeros((1, 2), np.int32), refine_size=(16, 16))),
    ("patches", dict(patches=np.array([[9, 0]], np.int32), refine_size=(16, 16), alpha_coarse=A)),
    ("out_alpha and out", dict(out_alpha=None)),
]


@pytest.mark.parametrize("name,kw", BAD_FINISH)
def test_finish_rejects_bad_arguments(name, kw):
    args = dict(packed=P, delta=DL, frame=F, out_alpha=OA.copy())
    args.update(kw)
    with pytest.raises((ValueError, TypeError), match=name):
        native.refine_finish(**args)


def test_c_abi_returns_status_instead_of_crashing():
    lib = native._cpu_lib()
    assert lib is not None
    args = native._PackArgs()  # all NULL / zero
    assert lib.wbg_refine_pack_cpu(ctypes.byref(args), 1) == 1  # WBG_ERR_NULL
    fa = native._FinishArgs()
    assert lib.wbg_refine_finish_cpu(ctypes.byref(fa), 1) == 1
    frame, alpha, out = np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2), np.float32), np.zeros((1, 5, 4, 4),
                                                                                                np.float32)
    patches = np.array([[3, 3]], np.int32)  # a 2x2 patch at (3, 3) leaves a 4x4 grid
    args = native._PackArgs(frame.ctypes.data, 4, 4, None, 0, 0, alpha.ctypes.data, 2, 2, 4, 4,
                            patches.ctypes.data, 1, 2, out.ctypes.data, 0)
    assert lib.wbg_refine_pack_cpu(ctypes.byref(args), 1) == 3  # WBG_ERR_PATCH
    args.n_patches, args.patches, args.height = 0, None, -1
    assert lib.wbg_refine_pack_cpu(ctypes.byref(args), 1) == 2  # WBG_ERR_SIZE


# ----------------------------------------------------------------------------------------------------------------
# CUDA: compiled whenever nvcc is present at install time; run only with a GPU

def nvcc_present() -> bool:
    return shutil.which("nvcc") is not None or bool(os.environ.get("CUDACXX"))


@pytest.mark.skipif(not nvcc_present(), reason="no nvcc: the CUDA library is not built")
def test_cuda_library_is_built_and_loads_without_a_device():
    path = native._find_library("wbg_refine_cuda")
    assert path is not None, "nvcc is on PATH but the CUDA refine library was not installed"
    lib = ctypes.CDLL(str(path))  # static cudart: loads even without a driver
    lib.wbg_refine_abi_version.restype = ctypes.c_int
    assert lib.wbg_refine_abi_version() == native._ABI_VERSION
    if not native.cuda_available():  # a one-line error, not a crash, when there is no device
        with pytest.raises(RuntimeError, match="CUDA"):
            native.cuda_refine_pack(1, (4, 4), None, None, 1, (2, 2), 1, (4, 4))


def test_cuda_entry_points_check_pointers():
    with pytest.raises(ValueError, match="frame"):
        native.cuda_refine_pack(0, (4, 4), None, None, 1, (2, 2), 1, (4, 4))
    with pytest.raises(ValueError, match="workspace"):
        native.cuda_refine_finish(1, 1, (8, 8), 1, (4, 4), 1, patches=1, n_patches=1, patch_size=4,
                                  alpha_coarse=1, alpha_size=(2, 2))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("patched", [False, True])
def test_cuda_matches_cpu(mode, patched, device_memory):
    dev, host = device_memory.dev, device_memory.host
    h, w, hr, wr, p = 181, 323, 64, 96, 16
    c = case(7, h, w, hr, wr, 32, 56)
    rng = np.random.default_rng(7)
    patches = random_patches(rng, 9, p, hr, wr) if patched else None
    n, ph, pw = (9, p, p) if patched else (1, hr, wr)
    packed = np.empty((n, 5, ph, pw), np.float32)
    native.refine_pack(c["frame"], c["depth"], c["alpha"], packed, patches=patches, patch_size=p if patched else 0,
                       refine_size=(hr, wr))
    delta = (rng.standard_normal((n, 1, ph, pw)) * 0.4).astype(np.float32)
    a_cpu, o_cpu = np.empty((h, w), np.float32), out_for(mode, h, w)
    native.refine_finish(packed, delta, c["frame"], a_cpu, patches=patches, refine_size=(hr, wr),
                         alpha_coarse=c["alpha"], mode=mode, background=c["background"], out=o_cpu,
                         prev_alpha=c["prev"], smoothing=0.25)

    d = {k: dev(v) for k, v in c.items() if v is not None}
    d_packed, d_delta = dev(np.zeros_like(packed)), dev(delta)
    d_patches = dev(patches) if patched else None
    native.cuda_refine_pack(d["frame"], (h, w), d["depth"], c["depth"].shape, d["alpha"], c["alpha"].shape,
                            d_packed, (hr, wr), patches=d_patches, n_patches=n if patched else 0,
                            patch_size=p if patched else 0)
    np.testing.assert_array_equal(host(d_packed, packed), packed)
    d_a, d_o = dev(np.zeros_like(a_cpu)), dev(np.zeros_like(o_cpu))
    ws = native.cuda_finish_workspace_bytes((hr, wr))
    d_ws = device_memory.alloc(ws)
    native.cuda_refine_finish(d_packed, d_delta, (hr, wr), d["frame"], (h, w), d_a, mode=mode, out=d_o,
                              background=d["background"], prev_alpha=d["prev"], smoothing=0.25, patches=d_patches,
                              n_patches=n if patched else 0, patch_size=p if patched else 0,
                              alpha_coarse=d["alpha"], alpha_size=c["alpha"].shape, workspace=d_ws,
                              workspace_bytes=ws)
    np.testing.assert_allclose(host(d_a, a_cpu), a_cpu, rtol=0, atol=1e-6)
    assert np.abs(host(d_o, o_cpu).astype(int) - o_cpu).max() <= 1


def test_concurrent_calls_from_several_threads_agree(monkeypatch, in_threads):
    """Pipeline stages call pack and finish from different threads at once; the worker pool must serve them all."""
    monkeypatch.setenv("WBG_EDGE_NATIVE_THREADS", "2")
    h, w, hr, wr = 200, 300, 96, 128
    cases = [case(10 + i, h, w, hr, wr, 48, 64) for i in range(4)]
    expect = []
    for c in cases:
        packed = packed_of(c, hr, wr)
        a, _ = ref.finish(packed, c["delta"], c["frame"])
        expect.append((packed, a))
    errors = []

    def work(i: int) -> None:
        c = cases[i]
        for _ in range(10):
            packed = packed_of(c, hr, wr)
            a = np.empty((h, w), np.float32)
            native.refine_finish(packed, c["delta"], c["frame"], a, mode=None)
            if not (np.array_equal(packed, expect[i][0]) and np.allclose(a, expect[i][1], rtol=0, atol=1e-6)):
                errors.append(i)

    in_threads(work, 4)
    assert not errors


def test_thread_budget_is_per_calling_thread(monkeypatch):
    """An overlapped stream's lanes run the op on their share of the cores; other threads keep their default."""
    import threading

    monkeypatch.setenv("WBG_EDGE_NATIVE_THREADS", "2")
    seen = {}

    def lane() -> None:
        native.set_thread_budget(1)
        c = case(3, 60, 80, 32, 64, 16, 32)
        a = np.empty((60, 80), np.float32)
        native.refine_finish(packed_of(c, 32, 64), c["delta"], c["frame"], a, mode=None)  # still works
        seen["lane"] = native._threads()

    t = threading.Thread(target=lane)
    t.start()
    t.join()
    assert seen["lane"] == 1 and native._threads() == 2


@pytest.mark.parametrize("seed", range(12))
def test_constant_blocks_are_exact(seed):
    """A coarse matte that is mostly exactly 0 or 1 (as real ones are) takes the finish's constant-block path:
    its outputs must equal the reference bit for bit, around patches, in every mode, with and without smoothing."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(40, 300)), int(rng.integers(130, 400))  # several 64-column blocks, a partial last one
    hr, wr, p = int(rng.integers(32, 96)), int(rng.integers(64, 128)), int(rng.integers(4, 17))
    coarse = np.zeros((int(rng.integers(8, 48)), int(rng.integers(16, 64))), np.float32)
    ah, aw = coarse.shape
    coarse[ah // 3:, aw // 4: 3 * aw // 4] = 1.0
    coarse[ah // 3 - 1, aw // 4:3 * aw // 4] = 0.5  # a soft edge, as the band the patches cover
    n = int(rng.integers(1, 10))
    patches = np.stack([rng.integers(0, hr - p + 1, n), rng.integers(0, wr - p + 1, n)], 1).astype(np.int32)
    packed = rng.random((n, 5, p, p), dtype=np.float32)
    delta = rng.random((n, 1, p, p), dtype=np.float32) - 0.5
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    prev = rng.random((h, w), dtype=np.float32) if seed % 3 == 0 else None
    s = 0.3 if prev is not None else 0.0
    for mode in MODES:
        for bg in (rng.integers(0, 256, 3, dtype=np.uint8), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)):
            a, out = np.empty((h, w), np.float32), out_for(mode, h, w)
            native.refine_finish(packed, delta, frame, a, patches=patches, refine_size=(hr, wr), alpha_coarse=coarse,
                                 mode=mode, background=bg, out=out, prev_alpha=prev, smoothing=s)
            a_ref, o_ref = ref.finish(packed, delta, frame, (hr, wr), patches, coarse, mode, bg, prev_alpha=prev,
                                      smoothing=s)
            np.testing.assert_array_equal(a, a_ref)
            np.testing.assert_array_equal(out, o_ref)


# ----------------------------------------------------------------------------------------------------------------
# finish begun before the refiner runs (refine_finish_begin / FinishJob.end): the same bytes as refine_finish

def begun_case(seed: int) -> dict:
    """A coarse matte mostly exactly 0 or 1 with a soft edge (the background part is then mostly constant blocks),
    random patches (overlapping, at the borders), a random delta, and either a few or many rows (the end takes
    over rows the background has not reached)."""
    rng = np.random.default_rng(seed)
    h, w = (int(rng.integers(40, 300)), int(rng.integers(130, 400))) if seed % 4 else (720, 1280)
    hr, wr, p = int(rng.integers(32, 96)), int(rng.integers(64, 128)), int(rng.integers(4, 17))
    coarse = np.zeros((int(rng.integers(8, 48)), int(rng.integers(16, 64))), np.float32)
    ah, aw = coarse.shape
    coarse[ah // 3:, aw // 4: 3 * aw // 4] = 1.0
    coarse[ah // 3 - 1, aw // 4:3 * aw // 4] = 0.5
    coarse[-2:, :3] = rng.random((2, 3), dtype=np.float32)  # coarse blocks that are not constant
    n = int(rng.integers(1, 10))
    return {"h": h, "w": w, "grid": (hr, wr), "p": p, "coarse": coarse,
            "patches": random_patches(rng, n, p, hr, wr),
            "packed": rng.random((n, 5, p, p), dtype=np.float32),
            "delta": rng.random((n, 1, p, p), dtype=np.float32) - 0.5,
            "frame": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "prev": rng.random((h, w), dtype=np.float32),
            "colour": rng.integers(0, 256, 3, dtype=np.uint8),
            "bg": rng.integers(0, 256, (h, w, 3), dtype=np.uint8)}


@pytest.mark.parametrize("seed", range(8))
def test_begun_finish_equals_finish(seed):
    """Every mode, both backgrounds, with and without smoothing (prev_alpha aliasing out_alpha too), ended at once
    or after the background had time for its part: alpha and output equal refine_finish's and the reference's."""
    import time

    c = begun_case(seed)
    h, w = c["h"], c["w"]
    for k, mode in enumerate(MODES):
        for bg in (c["colour"], c["bg"]):
            for smooth in (False, True):
                kw = dict(patches=c["patches"], refine_size=c["grid"], alpha_coarse=c["coarse"], mode=mode,
                          background=bg, smoothing=0.3 if smooth else 0.0)
                a, out = (c["prev"].copy() if smooth else np.empty((h, w), np.float32)), out_for(mode, h, w)
                native.refine_finish(c["packed"], c["delta"], c["frame"], a, out=out,
                                     prev_alpha=a if smooth else None, **kw)
                a2, out2 = (c["prev"].copy() if smooth else np.full((h, w), 7, np.float32)), out_for(mode, h, w)
                job = native.refine_finish_begin(c["frame"], a2, patch_size=c["p"], out=out2,
                                                 prev_alpha=a2 if smooth else None, **kw)
                if (k + smooth) % 2:
                    time.sleep(0.01)
                job.end(c["packed"], c["delta"])
                np.testing.assert_array_equal(a2, a)
                np.testing.assert_array_equal(out2, out)
                a_ref, o_ref = ref.finish(c["packed"], c["delta"], c["frame"], c["grid"], c["patches"], c["coarse"],
                                          mode, bg, prev_alpha=c["prev"] if smooth else None,
                                          smoothing=0.3 if smooth else 0.0)
                np.testing.assert_array_equal(a2, a_ref)
                np.testing.assert_array_equal(out2, o_ref)


def test_begun_finish_full_grid_half_precision_and_frame_as_output():
    c = case(6, 90, 150, 24, 40, 12, 20)
    for dtype in (np.float32, np.float16):
        packed, delta = packed_of(c, 24, 40, dtype), c["delta"].astype(dtype)
        a, out = np.empty((90, 150), np.float32), c["frame"].copy()
        native.refine_finish(packed, delta, c["frame"], a, mode="composite", background=c["background"], out=out)
        frame = c["frame"].copy()  # the output may be the frame itself
        a2 = np.empty_like(a)
        job = native.refine_finish_begin(frame, a2, refine_size=(24, 40), mode="composite",
                                         background=c["background"], out=frame)
        job.end(packed, delta)
        np.testing.assert_array_equal(a2, a)
        np.testing.assert_array_equal(frame, out)


def test_begun_finish_is_ended_once_and_checks_its_inputs():
    c = begun_case(1)
    kw = dict(patches=c["patches"], patch_size=c["p"], refine_size=c["grid"], alpha_coarse=c["coarse"], mode="alpha",
              out=out_for("alpha", c["h"], c["w"]))
    job = native.refine_finish_begin(c["frame"], None, **kw)
    with pytest.raises(ValueError, match="packed"):
        job.end(c["packed"][:, :, :-1, :-1], c["delta"][:, :, :-1, :-1])  # not the patch size it was begun with
    with pytest.raises(RuntimeError, match="already ended or cancelled"):
        job.end(c["packed"], c["delta"])
    job = native.refine_finish_begin(c["frame"], None, **kw)
    job.cancel()  # (a pipeline whose refiner returned NaN); returns once nothing more is written
    with pytest.raises(RuntimeError, match="already ended or cancelled"):
        job.end(c["packed"], c["delta"])
    del job
    native.refine_finish_begin(c["frame"], None, **kw)  # dropped without end: cancelled by the collector
    with pytest.raises(ValueError, match="patch_size"):
        native.refine_finish_begin(c["frame"], None, **dict(kw, patch_size=0))
    with pytest.raises(ValueError, match="patches"):
        native.refine_finish_begin(c["frame"], None, **dict(kw, patches=c["patches"] + 1000))
    with pytest.raises(ValueError, match="nothing to write"):
        native.refine_finish_begin(c["frame"], None, **dict(kw, out=None))


def test_begun_finishes_from_several_threads_agree(in_threads):
    """Lanes of an overlapped stream may begin finishes at once: the background thread serves them in turn."""
    cases = [begun_case(10 + i) for i in range(4)]
    expect = []
    for c in cases:
        a = np.empty((c["h"], c["w"]), np.float32)
        native.refine_finish(c["packed"], c["delta"], c["frame"], a, patches=c["patches"], refine_size=c["grid"],
                             alpha_coarse=c["coarse"], mode=None)
        expect.append(a)
    errors = []

    def work(i: int) -> None:
        c = cases[i]
        for _ in range(10):
            a = np.empty((c["h"], c["w"]), np.float32)
            job = native.refine_finish_begin(c["frame"], a, patches=c["patches"], patch_size=c["p"],
                                             refine_size=c["grid"], alpha_coarse=c["coarse"], mode=None)
            job.end(c["packed"], c["delta"])
            if not np.array_equal(a, expect[i]):
                errors.append(i)

    in_threads(work, 4)
    assert not errors


def test_begun_finish_numpy_fallback(monkeypatch):
    c = begun_case(2)
    a = np.empty((c["h"], c["w"]), np.float32)
    native.refine_finish(c["packed"], c["delta"], c["frame"], a, patches=c["patches"], refine_size=c["grid"],
                         alpha_coarse=c["coarse"], mode=None)
    monkeypatch.setattr(native, "_cpu", {"lib": None})
    a2 = np.empty_like(a)
    job = native.refine_finish_begin(c["frame"], a2, patches=c["patches"], patch_size=c["p"], refine_size=c["grid"],
                                     alpha_coarse=c["coarse"], mode=None)
    job.end(c["packed"], c["delta"])
    np.testing.assert_array_equal(a2, a)
