"""Backgrounds and the numpy compose (the pass-through path), against their definitions."""

import cv2
import numpy as np
import pytest

from wbg_edge.compose import COLOURS, Background, BackgroundSpec, compose, parse_background


@pytest.mark.parametrize("spec, want", [
    ("transparent", BackgroundSpec("transparent")),
    ("GREEN", BackgroundSpec("colour", colour=COLOURS["green"])),
    ("#102030", BackgroundSpec("colour", colour=(0x30, 0x20, 0x10))),
    ("blur", BackgroundSpec("blur", blur=8)),
    ("blur:4", BackgroundSpec("blur", blur=4)),
])
def test_parse_background(spec, want):
    assert parse_background(spec) == want


@pytest.mark.parametrize("spec", ["#12345", "#gggggg", "blur:1", "blur:x", "no/such/file.png", "chartreuse"])
def test_bad_background_is_one_line(spec):
    with pytest.raises(ValueError, match="background") as e:
        parse_background(spec)
    assert "\n" not in str(e.value) and spec in str(e.value)


def test_colour_background_costs_nothing_per_frame():
    bg = Background("#ff0000")
    out = bg.fill(np.zeros((4, 5, 3), np.uint8))
    assert out.shape == (3,) and tuple(out) == (0, 0, 255)
    assert Background("transparent").fill(np.zeros((4, 5, 3), np.uint8)) is None


def test_image_background_resized_once_per_size(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 20:] = (10, 20, 30)
    path = tmp_path / "bg.png"
    cv2.imwrite(str(path), img)
    bg = Background(str(path))
    a = bg.fill(np.zeros((10, 20, 3), np.uint8))
    assert a.shape == (10, 20, 3) and tuple(a[5, 15]) == (10, 20, 30) and tuple(a[5, 2]) == (0, 0, 0)
    assert bg.fill(np.zeros((10, 20, 3), np.uint8)) is a  # same buffer, not recomputed
    assert bg.fill(np.zeros((7, 9, 3), np.uint8)).shape == (7, 9, 3)


def test_unreadable_image_background(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="x.png.*not a readable image"):
        Background(str(p))


def test_blur_background_is_smooth_and_follows_the_frame():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = Background("blur").fill(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert out.astype(float).std() < frame.astype(float).std() / 4
    assert abs(out.astype(float).mean() - frame.astype(float).mean()) < 3


def test_compose_modes():
    frame = np.full((2, 3, 3), 200, np.uint8)
    alpha = np.array([[0, 0.5, 1], [0.25, 1, 0]], np.float32)
    q = np.floor(alpha * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(compose(frame, alpha, "alpha", None, np.empty((2, 3), np.uint8)), q)
    rgba = compose(frame, alpha, "rgba", None, np.empty((2, 3, 4), np.uint8))
    assert np.array_equal(rgba[..., :3], frame) and np.array_equal(rgba[..., 3], q)
    comp = compose(frame, alpha, "composite", np.array([0, 0, 100], np.uint8), np.empty((2, 3, 3), np.uint8))
    assert tuple(comp[0, 0]) == (0, 0, 100) and tuple(comp[0, 2]) == (200, 200, 200)
    assert tuple(comp[0, 1]) == (100, 100, 150)
    with pytest.raises(ValueError, match="mode"):
        compose(frame, alpha, "x", None, np.empty((2, 3), np.uint8))


def halo_scene():
    """A bright subject (a disc) on a dark, gently varying background, and its coarse alpha at 1/3 size."""
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.stack([20 + xx / w * 30, 30 + yy / h * 20, np.full_like(xx, 40)], -1)
    inside = np.hypot(yy - 130, xx - 160) < 60
    frame = np.where(inside[..., None], np.float32([240, 250, 230]), bg).astype(np.uint8)
    alpha = cv2.resize(inside.astype(np.float32), (w // 3, h // 3), interpolation=cv2.INTER_AREA)
    ring = ~inside & (np.hypot(yy - 130, xx - 160) < 90)
    return frame, bg, alpha, ring


def test_blur_of_the_background_only_has_no_halo():
    """With the coarse alpha, the blurred background near the subject is the background's colour (today's blur of
    the whole frame glows with the subject's); without it, the blur is exactly today's."""
    frame, bg, alpha, ring = halo_scene()
    today = Background("blur").fill(frame).copy()
    ours = Background("blur").fill(frame, alpha)
    truth = Background("blur").fill(bg.astype(np.uint8))
    err_today = np.abs(today.astype(float) - truth)[ring].mean()
    err_ours = np.abs(ours.astype(float) - truth)[ring].mean()
    assert err_today > 30 and err_ours < err_today * 0.1, (err_today, err_ours)
    # the hole behind the subject is filled with the surroundings' colours, not black and not the subject's
    centre = ours[110:150, 140:180].astype(float)
    assert np.abs(centre - bg[110:150, 140:180]).max() < 15
    np.testing.assert_array_equal(Background("blur").fill(frame, None), today)


def test_background_only_without_any_background_is_grey_not_a_crash():
    frame = np.full((40, 60, 3), 200, np.uint8)
    small = cv2.resize(frame, (7, 5), interpolation=cv2.INTER_AREA)
    out = np.empty_like(small)
    from wbg_edge.compose import background_only

    background_only(small, np.ones((10, 15), np.float32), 2.0, out)
    assert (out == 128).all()
