"""Generator, crops, segmenter-like degradation and folder datasets (incl. bad input)."""
from dataclasses import replace

import cv2
import numpy as np
import pytest

from training.data.augment import AugmentConfig, augment, boundary_pixels, crop_window
from training.data.degrade import degrade_alpha
from training.data.folders import DatasetError, FolderDataset
from training.data.stream import DataConfig, Stream
from training.data.synthetic import SceneConfig, make_scene

CFG = SceneConfig(size=96)


def test_scene_is_reproducible_and_consistent():
    a, b, c = make_scene(3, 7, CFG), make_scene(3, 7, CFG), make_scene(3, 8, CFG)
    for k in ("image", "fg", "bg", "alpha", "depth"):
        assert np.array_equal(a[k], b[k])
        assert a[k].dtype == np.float32 and a[k].min() >= 0 and a[k].max() <= 1
    assert not np.array_equal(a["image"], c["image"])
    comp = a["alpha"][..., None] * a["fg"] + (1 - a["alpha"][..., None]) * a["bg"]
    np.testing.assert_allclose(a["image"], comp, atol=1e-6)


def test_scenes_have_the_promised_properties():
    scenes = [make_scene(0, i, CFG) for i in range(40)]
    flags = [s["flags"] for s in scenes]
    assert any(f["hair"] for f in flags) and any(f["semi_transparent"] for f in flags)
    assert any(f["low_contrast"] for f in flags) and not all(f["low_contrast"] for f in flags)
    people = [f["people"] for f in flags]
    assert 0 in people and 1 in people and max(people) >= 2  # nobody, one person, several: nothing to count on
    for s in scenes:
        a = s["alpha"]
        if s["flags"]["people"] == 0:
            assert a.max() == 0  # an empty room is all background
            continue
        assert ((a > 0.05) & (a < 0.95)).any()  # soft edges: fractional alpha exists
        assert s["depth"][a > 0.95].mean() > s["depth"][a < 0.05].mean() + 0.2  # people near
    hair = [s for s, f in zip(scenes, flags, strict=True) if f["hair"]][0]
    assert ((hair["alpha"] > 0.05) & (hair["alpha"] < 0.6)).sum() > 20  # thin strands, fractional
    semi = [s for s, f in zip(scenes, flags, strict=True) if f["semi_transparent"]][0]
    assert semi["semi"].any() and semi["alpha"][semi["semi"]].mean() < 0.95
    low = [s for s, f in zip(scenes, flags, strict=True) if f["low_contrast"]]
    high = [s for s, f in zip(scenes, flags, strict=True) if not f["low_contrast"] and f["people"]]

    def contrast(s):  # the clothes' colour against the background's, where the person is
        body = s["alpha"] > 0.5
        return np.abs(s["fg"][body].mean(0) - s["bg"][~body].mean(0)).sum()
    assert np.mean([contrast(s) for s in low]) < np.mean([contrast(s) for s in high])


def test_people_are_not_where_a_shortcut_would_find_them():
    """What the generator varies so a model cannot cheat: where people stand (some cut by the frame's
    edges), how big they are, and props that take the people's colours but are background."""
    scenes = [make_scene(0, i, SceneConfig(size=128)) for i in range(60)]
    present = [s for s in scenes if s["flags"]["people"]]
    cut = [s for s in present if max(s["alpha"][:, 0].max(), s["alpha"][:, -1].max(), s["alpha"][-1].max()) > 0.5]
    assert 0.1 < len(cut) / len(present) < 0.9
    centres = [np.argwhere(s["alpha"] > 0.5).mean(0)[1] / 128 for s in present if (s["alpha"] > 0.5).any()]
    assert min(centres) < 0.3 and max(centres) > 0.7
    areas = [float((s["alpha"] > 0.5).mean()) for s in present]
    assert min(areas) < 0.08 and max(areas) > 0.3
    # background pixels close to a person's skin colour exist (props in the people's palette)
    from training.data.figures import SKIN
    near_skin = [float((np.abs(s["bg"][s["alpha"] < 0.01][:, None, :] - SKIN[None]).max(2) < 0.08).mean())
                 for s in scenes]
    assert sum(v > 0.01 for v in near_skin) >= 3


def _crosses(alpha, y, x, c):
    return len(boundary_pixels(alpha[y:y + c, x:x + c])) > 0


def test_boundary_aware_crops_cross_the_boundary_more_often_than_uniform():
    c = 40
    scenes = [make_scene(1, i, SceneConfig(size=160, p_hair=0.0, p_semi=0.0)) for i in range(12)]
    rates = {}
    for frac in (0.0, 0.9):
        rng = np.random.default_rng(0)
        hits = 0
        for k in range(240):
            a = scenes[k % len(scenes)]["alpha"]
            y, x = crop_window(rng, a, c, frac)
            hits += _crosses(a, y, x, c)
        rates[frac] = hits / 240
    assert rates[0.9] > rates[0.0] + 0.15, rates


def test_augment_keeps_keys_in_sync_and_composite_valid():
    s = make_scene(0, 2, CFG)
    out = augment(np.random.default_rng(1), s, AugmentConfig(crop=64, jitter=0.2))
    assert out["image"].shape == (64, 64, 3) and out["alpha"].shape == (64, 64) and out["depth"].shape == (64, 64)
    comp = out["alpha"][..., None] * out["fg"] + (1 - out["alpha"][..., None]) * out["bg"]
    np.testing.assert_allclose(out["image"], comp, atol=1e-6)


def test_segmenter_like_degradation():
    # a person filling a good part of the frame: the mask a segmenter makes at low resolution keeps most of it
    gt = max((make_scene(0, i, SceneConfig(size=128))["alpha"] for i in range(40)), key=lambda a: (a > 0.5).mean())
    outs = [degrade_alpha(np.random.default_rng(i), gt) for i in range(8)]
    for d in outs:
        assert d.shape == gt.shape and d.min() >= 0 and d.max() <= 1
        inter = ((d > 0.5) & (gt > 0.5)).sum()
        union = ((d > 0.5) | (gt > 0.5)).sum()
        assert 0.6 < inter / union < 1.0  # still the subject, but wrong at the edges
    assert np.mean([np.abs(d - gt).mean() for d in outs]) > 0.005
    np.testing.assert_array_equal(outs[0], degrade_alpha(np.random.default_rng(0), gt))


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def _rgb(h, w, v=100):
    return np.full((h, w, 3), v, np.uint8)


def test_folder_layouts(tmp_path):
    pairs = tmp_path / "pairs"
    _write(pairs / "image" / "a.jpg", _rgb(40, 50))
    _write(pairs / "alpha" / "a.png", np.full((40, 50), 255, np.uint8))
    _write(pairs / "depth" / "a.png", np.full((20, 25), 30000, np.uint16))
    ds = FolderDataset(pairs)
    s = ds[0]
    assert ds.layout == "pairs" and s["alpha"].shape == (40, 50) and s["alpha"].max() == 1.0
    assert s["depth"].shape == (40, 50) and abs(s["depth"].mean() - 30000 / 65535) < 1e-3  # 16-bit, resized
    comp = tmp_path / "comp"
    _write(comp / "fg" / "f.png", _rgb(30, 30, 200))
    _write(comp / "alpha" / "f.png", np.full((30, 30), 128, np.uint8))
    _write(comp / "bg" / "b.jpg", _rgb(60, 80, 0))
    s = FolderDataset(comp)[0]
    assert s["image"].shape == (30, 30, 3) and abs(s["image"].mean() - 128 / 255 * 200 / 255) < 0.01
    wild = tmp_path / "wild"
    _write(wild / "image" / "w.png", _rgb(32, 32))
    assert FolderDataset(wild).layout == "wild" and "alpha" not in FolderDataset(wild)[0]
    b = Stream(DataConfig(sources=(str(wild), str(pairs)), augment=AugmentConfig(crop=32)), 0).batch(0, 12)
    assert b["image"].shape == (12, 3, 32, 32)
    assert b["has_alpha"].any() and not b["has_alpha"].all()  # mixed sources, masked keys


def test_missing_alpha_names_the_file(tmp_path):
    _write(tmp_path / "image" / "a.png", _rgb(8, 8))
    _write(tmp_path / "image" / "b.png", _rgb(8, 8))
    _write(tmp_path / "alpha" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"b\.png") as e:
        FolderDataset(tmp_path)
    assert "\n" not in str(e.value)


def test_mismatched_size_names_the_file(tmp_path):
    _write(tmp_path / "image" / "a.png", _rgb(8, 8))
    _write(tmp_path / "alpha" / "a.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(DatasetError, match=r"alpha/a\.png.*does not match") as e:
        FolderDataset(tmp_path)[0]
    assert "\n" not in str(e.value)


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"bad\.png: unreadable"):
        FolderDataset(tmp_path)[0]


def test_veil_depth_sees_partly_through():
    """Over the background, a veil's depth lies between the background's and the subject's (mixed by its alpha);
    the near-veils style reads it as solid as the subject. Everything but the depth is the same scene."""
    checked = 0
    for i in range(40):
        mixed, near = make_scene(2000, i, CFG), make_scene(2000, i, replace(CFG, veil_depth="near"))
        for k in ("image", "alpha", "fg", "bg"):
            np.testing.assert_array_equal(mixed[k], near[k])
        if not mixed["flags"]["glass"]:  # no glass: the same depth too
            np.testing.assert_array_equal(mixed["depth"], near["depth"])
            continue
        see_through = mixed["semi"] & (mixed["alpha"] < 0.8)
        if see_through.sum() < 20:  # the veil lies over the subject
            continue
        checked += 1
        far = (mixed["alpha"] == 0)
        subject = (mixed["alpha"] == 1) & ~mixed["semi"]
        d, dn = mixed["depth"], near["depth"]
        assert d[far].mean() < d[see_through].mean() < dn[see_through].mean() <= d[subject].mean() + 0.05
    assert checked >= 3
