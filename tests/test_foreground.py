"""Foreground colours in the fused finish (issue 24): the native op against its numpy reference (bit for bit), what
the estimate recovers on scenes with a known foreground, the RGBA contract (straight alpha), and the argument checks.

The contract is kernels/refine.cuh ("Foreground colours"); the reference is wbg_edge/native_reference.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wbg_edge import native
from wbg_edge import native_reference as ref

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COLOUR_MODES = ["rgba", "composite"]


def out_for(mode: str, h: int, w: int) -> np.ndarray:
    return np.empty({"alpha": (h, w), "rgba": (h, w, 4), "composite": (h, w, 3)}[mode], np.uint8)


def random_case(seed: int, h: int, w: int, hr: int, wr: int, mh: int, mw: int) -> dict:
    """Random inputs whose alpha has solid parts and soft parts (a coarse alpha in [0, 1.3], clamped by the op)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    coarse = np.clip(rng.random((mh, mw), dtype=np.float32) * 1.6 - 0.3, 0, 1).astype(np.float32)
    packed = np.empty((1, 5, hr, wr), np.float32)
    native.refine_pack(frame, None, coarse, packed)
    delta = (rng.standard_normal((1, 1, hr, wr)) * 0.3).astype(np.float32)
    return {"frame": frame, "coarse": coarse, "packed": packed, "delta": delta,
            "bg": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "colour": rng.integers(0, 256, 3, dtype=np.uint8),
            "prev": rng.random((h, w), dtype=np.float32)}


def scene(h: int = 96, w: int = 128, seed: int = 0) -> dict:
    """A textured subject (a disc with a soft edge 6 px wide) over a dark red wall with a gentle gradient, I = a F +
    (1 - a) B rounded to u8, its coarse alpha at 1/2 resolution, and the alpha as the refiner's full grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip((h * 0.3 - r) / 6 + 0.5, 0, 1).astype(np.float32)
    fg = np.stack([90 + 60 * np.sin(xx / 7), 160 + 40 * np.cos(yy / 5), 200 + 30 * np.sin((xx + yy) / 9)], -1)
    bg = np.float32([30, 40, 120]) + (xx / w * 40)[..., None] + rng.normal(0, 1.0, (h, w, 3))
    frame = np.clip(np.round(alpha[..., None] * fg + (1 - alpha[..., None]) * bg), 0, 255).astype(np.uint8)
    coarse = alpha.reshape(h // 2, 2, w // 2, 2).mean((1, 3)).astype(np.float32)
    packed = np.zeros((1, 5, h, w), np.float32)
    packed[0, 4] = alpha
    return {"frame": frame, "alpha": alpha, "fg": fg.astype(np.float32), "bg": bg.astype(np.float32),
            "coarse": coarse, "packed": packed, "delta": np.zeros((1, 1, h, w), np.float32)}


@SETTINGS
@given(h=st.integers(1, 80), w=st.integers(1, 120), refine=st.tuples(st.integers(1, 40), st.integers(1, 40)),
       model=st.tuples(st.integers(1, 30), st.integers(1, 30)), mode=st.sampled_from(COLOUR_MODES),
       cell=st.integers(1, 64), smooth=st.booleans(), colour=st.booleans(), seed=st.integers(0, 2**16))
def test_native_matches_reference_bit_for_bit(h, w, refine, model, mode, cell, smooth, colour, seed):
    c = random_case(seed, h, w, *refine, *model)
    bg = c["colour"] if colour else c["bg"]
    prev = c["prev"] if smooth else None
    a, out = np.empty((h, w), np.float32), out_for(mode, h, w)
    native.refine_finish(c["packed"], c["delta"], c["frame"], a, alpha_coarse=c["coarse"], mode=mode, background=bg,
                         out=out, prev_alpha=prev, smoothing=0.3 if smooth else 0.0, foreground=True, fg_cell=cell)
    a_ref, o_ref = ref.finish(c["packed"], c["delta"], c["frame"], alpha_coarse=c["coarse"], mode=mode,
                              background=bg, prev_alpha=prev, smoothing=0.3 if smooth else 0.0, foreground=True,
                              fg_cell=cell)
    np.testing.assert_array_equal(a, a_ref)
    np.testing.assert_array_equal(out, o_ref)


@pytest.mark.parametrize("h, w, cell", [(720, 1280, 8), (181, 320, 16), (130, 256, 64), (64, 96, 1), (50, 70, 3)])
def test_native_matches_reference_on_every_cell_path(h, w, cell):
    """Cells all k wide (the vector sums, in 16 bits while they fit) and not (the per-cell sums), with patches."""
    rng = np.random.default_rng(h + w + cell)
    mh, mw, hr, wr, p = max(2, h // 3), max(2, w // 3), max(16, h // 2), max(16, w // 2), 16
    c = random_case(cell, h, w, hr, wr, mh, mw)
    n = 6
    patches = np.stack([rng.integers(0, hr - p + 1, n), rng.integers(0, wr - p + 1, n)], 1).astype(np.int32)
    packed = np.empty((n, 5, p, p), np.float32)
    native.refine_pack(c["frame"], None, c["coarse"], packed, patches=patches, patch_size=p, refine_size=(hr, wr))
    delta = (rng.standard_normal((n, 1, p, p)) * 0.3).astype(np.float32)
    for mode in COLOUR_MODES:
        a, out = np.empty((h, w), np.float32), out_for(mode, h, w)
        native.refine_finish(packed, delta, c["frame"], a, patches=patches, refine_size=(hr, wr),
                             alpha_coarse=c["coarse"], mode=mode, background=c["bg"], out=out, foreground=True,
                             fg_cell=cell)
        a_ref, o_ref = ref.finish(packed, delta, c["frame"], (hr, wr), patches, c["coarse"], mode, c["bg"],
                                  foreground=True, fg_cell=cell)
        np.testing.assert_array_equal(out, o_ref)


def test_only_soft_pixels_change_and_alpha_mode_ignores_it():
    c = random_case(3, 60, 90, 60, 90, 20, 30)
    c["delta"] *= 8  # most refined cells clamp to 0 or 1: solid pixels and soft ones between them
    kw = dict(alpha_coarse=c["coarse"], background=c["bg"])
    outs = {}
    for fg in (False, True):
        for mode in ("alpha", *COLOUR_MODES):
            a, out = np.empty((60, 90), np.float32), out_for(mode, 60, 90)
            native.refine_finish(c["packed"], c["delta"], c["frame"], a, mode=mode, out=out, foreground=fg, **kw)
            outs[fg, mode] = (a, out)
    np.testing.assert_array_equal(outs[True, "alpha"][1], outs[False, "alpha"][1])
    q = outs[False, "alpha"][1]
    soft = (q > 0) & (q < 255)
    assert 0.1 < soft.mean() < 0.9  # the case has both
    for mode in COLOUR_MODES:
        np.testing.assert_array_equal(outs[True, mode][0], outs[False, mode][0])  # the alpha itself never changes
        changed = (outs[True, mode][1] != outs[False, mode][1]).any(-1)
        assert changed[soft].mean() > 0.5 and not changed[~soft].any()


def test_recovers_the_foreground_and_removes_the_old_background():
    s = scene()
    q = np.floor(s["alpha"] * 255 + 0.5)
    soft = (q > 0) & (q < 255)
    firm = soft & (s["alpha"] > 0.3)
    rgba = out_for("rgba", *s["alpha"].shape)
    native.refine_finish(s["packed"], s["delta"], s["frame"], None, alpha_coarse=s["coarse"], mode="rgba", out=rgba,
                         foreground=True)
    err = np.abs(rgba[..., :3].astype(np.float32) - s["fg"])[firm]
    plain = np.abs(s["frame"].astype(np.float32) - s["fg"])[firm]
    assert err.mean() < 3 and err.mean() < plain.mean() / 5
    # composited on white: the dark/red old background no longer shows through at the edge
    white = np.full(3, 255, np.uint8)
    a = s["alpha"][..., None]
    truth = a * s["fg"] + (1 - a) * 255
    for fg, bound in ((True, 2.0), (False, None)):
        comp = out_for("composite", *s["alpha"].shape)
        native.refine_finish(s["packed"], s["delta"], s["frame"], None, alpha_coarse=s["coarse"], mode="composite",
                             background=white, out=comp, foreground=fg)
        e = np.abs(comp.astype(np.float32) - truth)[soft].mean()
        if bound:
            new = e
            assert new < bound
        else:
            assert new < e / 4, (new, e)


def test_rgba_carries_straight_alpha():
    """RGBA holds F and alpha unassociated (PNG / ProRes 4444): compositing it over a background with the straight
    formula gives the composite output exactly, and the alpha channel is the matte's, with or without foreground."""
    s = scene(seed=1)
    h, w = s["alpha"].shape
    rgba, rgba_off, comp = out_for("rgba", h, w), out_for("rgba", h, w), out_for("composite", h, w)
    bg = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    kw = dict(alpha_coarse=s["coarse"])
    native.refine_finish(s["packed"], s["delta"], s["frame"], None, mode="rgba", out=rgba, foreground=True, **kw)
    native.refine_finish(s["packed"], s["delta"], s["frame"], None, mode="rgba", out=rgba_off, **kw)
    a = np.empty((h, w), np.float32)
    native.refine_finish(s["packed"], s["delta"], s["frame"], a, mode="composite", background=bg, out=comp,
                         foreground=True, **kw)
    np.testing.assert_array_equal(rgba[..., 3], rgba_off[..., 3])
    a15 = (a * np.float32(32767) + np.float32(0.5)).astype(np.int32)[..., None]
    f, b = rgba[..., :3].astype(np.int32), bg.astype(np.int32)
    np.testing.assert_array_equal(comp, (b + (((f - b) * a15 + 16384) >> 15)).astype(np.uint8))
    # premultiplied colours would be darker than the frame wherever alpha is soft; straight ones are not
    soft = (rgba[..., 3] > 20) & (rgba[..., 3] < 235)
    assert rgba[..., :3][soft].astype(float).mean() > 0.9 * s["fg"][soft].mean()


def test_background_grid_fills_the_hole_from_the_surroundings():
    h, w = 80, 120
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = (20, 120, 220)
    alpha = np.zeros((h // 4, w // 4), np.float32)
    alpha[5:15, 10:20] = 1.0  # a subject in the middle; its pixels are another colour
    frame[20:60, 40:80] = (250, 0, 0)
    grid = ref.background_grid(frame, alpha, 8)
    assert grid.shape == (10, 15, 3)
    np.testing.assert_allclose(grid, np.broadcast_to(np.float32([20, 120, 220]), grid.shape), atol=0.05)
    # no background anywhere: the neutral grey
    np.testing.assert_array_equal(ref.background_grid(frame, np.ones((4, 4), np.float32), 8), 128)


def test_begun_finish_with_foreground_equals_finish():
    import time

    rng = np.random.default_rng(5)
    h, w, hr, wr, p = 150, 260, 64, 112, 16
    c = random_case(5, h, w, hr, wr, 32, 56)
    n = 10
    patches = np.stack([rng.integers(0, hr - p + 1, n), rng.integers(0, wr - p + 1, n)], 1).astype(np.int32)
    packed = np.empty((n, 5, p, p), np.float32)
    native.refine_pack(c["frame"], None, c["coarse"], packed, patches=patches, patch_size=p, refine_size=(hr, wr))
    delta = (rng.standard_normal((n, 1, p, p)) * 0.3).astype(np.float32)
    kw = dict(patches=patches, refine_size=(hr, wr), alpha_coarse=c["coarse"], foreground=True)
    for mode in COLOUR_MODES:
        for wait in (False, True):
            a, out = np.empty((h, w), np.float32), out_for(mode, h, w)
            native.refine_finish(packed, delta, c["frame"], a, mode=mode, background=c["bg"], out=out, **kw)
            a2, out2 = np.empty((h, w), np.float32), out_for(mode, h, w)
            job = native.refine_finish_begin(c["frame"], a2, patch_size=p, mode=mode, background=c["bg"], out=out2,
                                             **kw)
            if wait:
                time.sleep(0.01)
            job.end(packed, delta)
            np.testing.assert_array_equal(a2, a)
            np.testing.assert_array_equal(out2, out)
    # the output may be the frame itself: the background grid is made from the frame before anything is written
    a, out = np.empty((h, w), np.float32), out_for("composite", h, w)
    native.refine_finish(packed, delta, c["frame"], a, mode="composite", background=c["bg"], out=out, **kw)
    frame = c["frame"].copy()
    job = native.refine_finish_begin(frame, None, patch_size=p, mode="composite", background=c["bg"], out=frame, **kw)
    job.end(packed, delta)
    np.testing.assert_array_equal(frame, out)
    frame = c["frame"].copy()
    native.refine_finish(packed, delta, frame, None, mode="composite", background=c["bg"], out=frame, **kw)
    np.testing.assert_array_equal(frame, out)


def test_numpy_fallback_with_foreground(monkeypatch):
    c = random_case(9, 40, 70, 20, 35, 10, 18)
    out = out_for("composite", 40, 70)
    kw = dict(alpha_coarse=c["coarse"], mode="composite", background=c["colour"], foreground=True, fg_cell=4)
    native.refine_finish(c["packed"], c["delta"], c["frame"], None, out=out, **kw)
    from wbg_edge import native_abi

    monkeypatch.setattr(native_abi, "_cpu", {})  # the loaded library is cached where the loader lives
    monkeypatch.setenv("WBG_EDGE_FORCE_NUMPY", "1")
    with pytest.warns(RuntimeWarning, match="numpy reference"):
        assert native.native_backend() == "numpy"
    out2 = out_for("composite", 40, 70)
    native.refine_finish(c["packed"], c["delta"], c["frame"], None, out=out2, **kw)
    np.testing.assert_array_equal(out2, out)


@pytest.mark.parametrize("kw, err, words", [
    (dict(alpha_coarse=None), ValueError, "alpha_coarse is required with foreground"),
    (dict(fg_cell=0), ValueError, "fg_cell"),
    (dict(fg_cell=65), ValueError, "fg_cell"),
    (dict(fg_cell=2.5), ValueError, "fg_cell"),
    (dict(foreground="yes"), TypeError, "foreground"),
])
def test_bad_foreground_arguments(kw, err, words):
    c = random_case(1, 10, 12, 5, 6, 4, 4)
    args = dict(alpha_coarse=c["coarse"], mode="rgba", out=out_for("rgba", 10, 12), foreground=True) | kw
    with pytest.raises(err, match=words):
        native.refine_finish(c["packed"], c["delta"], c["frame"], None, **args)


def test_c_abi_rejects_foreground_without_coarse_alpha():
    import ctypes

    lib = native._cpu_lib()
    c = random_case(2, 8, 8, 4, 4, 4, 4)
    out = out_for("rgba", 8, 8)
    args = native._FinishArgs(c["packed"].ctypes.data, 0, c["delta"].ctypes.data, 0, 4, 4, None, 0, 0, None, 0, 0,
                              c["frame"].ctypes.data, 8, 8, None, 0.0, None, 2, out.ctypes.data, None, 0, 8, None, 0)
    assert lib.wbg_refine_finish_cpu(ctypes.byref(args), 1) == 1  # WBG_ERR_NULL: no alpha
    args.fg_cell = 65
    assert lib.wbg_refine_finish_cpu(ctypes.byref(args), 1) == 4  # WBG_ERR_ARG


def test_cuda_entry_point_checks_the_foreground_workspace():
    """Checked before any device call, so this runs without a GPU."""
    with pytest.raises(ValueError, match="workspace"):
        native.cuda_refine_finish(1, 1, (8, 8), 1, (40, 60), None, mode="rgba", out=1, alpha_coarse=1,
                                  alpha_size=(4, 6), foreground=True, workspace=1, workspace_bytes=16)
    with pytest.raises(ValueError, match="alpha_coarse"):
        native.cuda_refine_finish(1, 1, (8, 8), 1, (40, 60), None, mode="composite", out=1, background=1,
                                  foreground=True)
    need = native.cuda_finish_workspace_bytes((8, 8), (40, 60), foreground=True, fg_cell=8, patches=False)
    assert need == 16 * sum(h * w for h, w in ref.fg_levels(5, 8))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", COLOUR_MODES)
@pytest.mark.parametrize("patched", [False, True])
@pytest.mark.parametrize("cell", [8, 3])
def test_cuda_foreground_matches_cpu_bit_for_bit(mode, patched, cell, device_memory):
    """The CUDA twin of the foreground path (same refine.cuh math): outputs equal the CPU op's, byte for byte."""
    dev, host = device_memory.dev, device_memory.host
    h, w, hr, wr, p, n = 181, 323, 64, 96, 16, 9
    rng = np.random.default_rng(7)
    c = random_case(7, h, w, hr, wr, 32, 56)
    if patched:
        patches = np.stack([rng.integers(0, hr - p + 1, n), rng.integers(0, wr - p + 1, n)], 1).astype(np.int32)
        packed = np.empty((n, 5, p, p), np.float32)
        native.refine_pack(c["frame"], None, c["coarse"], packed, patches=patches, patch_size=p, refine_size=(hr, wr))
        delta = (rng.standard_normal((n, 1, p, p)) * 0.3).astype(np.float32)
    else:
        patches, packed, delta = None, c["packed"], c["delta"]
    a_cpu, o_cpu = np.empty((h, w), np.float32), out_for(mode, h, w)
    native.refine_finish(packed, delta, c["frame"], a_cpu, patches=patches, refine_size=(hr, wr),
                         alpha_coarse=c["coarse"], mode=mode, background=c["bg"], out=o_cpu, prev_alpha=c["prev"],
                         smoothing=0.25, foreground=True, fg_cell=cell)
    d = {k: dev(c[k]) for k in ("frame", "coarse", "bg", "prev")}
    d_packed, d_delta = dev(packed), dev(delta)
    d_patches = dev(patches) if patched else None
    d_a, d_o = dev(np.zeros_like(a_cpu)), dev(np.zeros_like(o_cpu))
    ws = native.cuda_finish_workspace_bytes((hr, wr), (h, w), foreground=True, fg_cell=cell, patches=patched)
    d_ws = device_memory.alloc(ws)
    native.cuda_refine_finish(d_packed, d_delta, (hr, wr), d["frame"], (h, w), d_a, mode=mode, out=d_o,
                              background=d["bg"], prev_alpha=d["prev"], smoothing=0.25, patches=d_patches,
                              n_patches=n if patched else 0, patch_size=p if patched else 0,
                              alpha_coarse=d["coarse"], alpha_size=c["coarse"].shape, workspace=d_ws,
                              workspace_bytes=ws, foreground=True, fg_cell=cell)
    np.testing.assert_array_equal(host(d_a, a_cpu), a_cpu)
    np.testing.assert_array_equal(host(d_o, o_cpu), o_cpu)


def test_pipeline_default_carries_foreground_colours_and_off_keeps_the_frame():
    """Through the shipped pipeline: RGBA colours are the frame's where the matte is solid and the estimate at soft
    pixels (config foreground=True, the default); foreground=False keeps the frame's own colours everywhere, and the
    composite then equals today's plain blend of the same alpha."""
    import warnings

    import cv2

    from wbg_edge.pipeline import Pipeline
    from wbg_edge.settings import PipelineConfig
    from wbg_edge.synthetic import SyntheticClip

    frame = cv2.GaussianBlur(SyntheticClip(320, 240, 4).frame(1)[0], (0, 0), 1.5)  # a figure the bundle finds
    out = {}
    for fg in (True, False):
        for mode, bg in (("rgba", "transparent"), ("composite", "white")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = Pipeline(PipelineConfig(model_res=128, refine_res=256, mode=mode, background=bg, foreground=fg))
            out[fg, mode] = p.process(frame).copy()
            p.close()
    assert PipelineConfig().foreground is True
    on, off = out[True, "rgba"], out[False, "rgba"]
    np.testing.assert_array_equal(on.alpha, off.alpha)
    np.testing.assert_array_equal(off.image[..., :3], frame)
    q = off.image[..., 3]
    solid = (q == 0) | (q == 255)
    np.testing.assert_array_equal(on.image[..., :3][solid], frame[solid])
    assert (on.image[..., :3] != frame).any(-1)[~solid].mean() > 0.1  # (nearly solid ones round to the same)
    # off: the composite is the plain blend (Q15) of the frame over white with the same alpha
    a15 = (out[False, "composite"].alpha * np.float32(32767) + np.float32(0.5)).astype(np.int32)[..., None]
    plain = (255 + (((frame.astype(np.int32) - 255) * a15 + 16384) >> 15)).astype(np.uint8)
    np.testing.assert_array_equal(out[False, "composite"].image, plain)
