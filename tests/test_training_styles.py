"""Unseen generator styles for the robustness evaluation: each changes what it says and nothing else."""
import numpy as np
import pytest

from training.data.synthetic import STYLES, SceneConfig, make_scene
from training.evaluate import EvalConfig, evaluate

SIZE = 96


def scene(style: str, i: int = 1) -> dict:
    return make_scene(1000, i, SceneConfig(size=SIZE, **STYLES[style]))


def test_styles_are_valid_scenes_and_differ_from_training():
    base = scene("in-distribution")
    for name in STYLES:
        s = scene(name)
        assert s["image"].shape == (SIZE, SIZE, 3) and s["alpha"].shape == (SIZE, SIZE)
        assert 0 <= s["image"].min() and s["image"].max() <= 1 and 0 <= s["alpha"].min() and s["alpha"].max() <= 1
        assert np.array_equal(s["image"], scene(name)["image"])  # seeded like the rest
        if name == "near-veils":  # only a veil's depth changes (tests/test_data.py checks that the rest does not)
            i = next(i for i in range(40) if scene("in-distribution", i)["flags"]["semi_transparent"])
            assert not np.array_equal(scene(name, i)["depth"], scene("in-distribution", i)["depth"])
        elif name != "in-distribution":
            assert not np.array_equal(s["image"], base["image"]), name


def test_each_style_changes_only_its_part():
    base = scene("in-distribution")
    tiles, noise, low, blur = scene("tiles"), scene("noise"), scene("low-light"), scene("blur")
    assert np.array_equal(tiles["alpha"], base["alpha"]) and not np.array_equal(tiles["bg"], base["bg"])
    assert np.array_equal(noise["alpha"], base["alpha"]) and 0.02 < np.std(noise["image"] - base["image"]) < 0.08
    assert np.array_equal(low["alpha"], base["alpha"]) and low["image"].mean() < 0.4 * base["image"].mean()
    assert len(np.unique(low["image"])) <= 256  # 8-bit levels, as a camera delivers
    assert np.abs(np.diff(blur["alpha"], axis=1)).max() < np.abs(np.diff(base["alpha"], axis=1)).max()
    shapes = [scene("shapes", i)["alpha"] for i in range(6)]
    assert all(not np.array_equal(a, make_scene(1000, i, SceneConfig(size=SIZE))["alpha"])
               for i, a in enumerate(shapes))


def test_evaluate_rejects_an_unknown_style():
    with pytest.raises(ValueError, match="--style 'nope'"):
        evaluate(EvalConfig(style="nope", n=1))
