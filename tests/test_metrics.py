"""Matting metrics against values worked out by hand on tiny arrays."""
import numpy as np
import pytest

from training import metrics


def test_sad_and_mse_by_hand():
    pred = np.array([[0.0, 0.5], [1.0, 1.0]])
    gt = np.array([[0.0, 1.0], [1.0, 0.0]])
    # |diff| = 0, .5, 0, 1 -> sum 1.5 ; squared 0, .25, 0, 1 -> mean .3125
    assert metrics.sad(pred, gt) == pytest.approx(1.5 / 1000)
    assert metrics.mse(pred, gt) == pytest.approx(312.5)
    top = np.array([[True, True], [False, False]])
    assert metrics.sad(pred, gt, top) == pytest.approx(0.5 / 1000)
    assert metrics.mse(pred, gt, top) == pytest.approx(125.0)


def test_gradient_error_by_hand():
    ramp = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    flat = np.zeros_like(ramp)
    # central differences: |grad ramp| = 1 everywhere, |grad flat| = 0 -> 6 * 1^2
    assert metrics.gradient_error(ramp, flat, sigma=0) == pytest.approx(6 / 1000)
    assert metrics.gradient_error(ramp, ramp, sigma=0) == 0.0
    # the Gaussian-derivative version agrees on a ramp's interior slope
    wide = np.tile(np.arange(20, dtype=float) / 20, (20, 1))
    inner = np.zeros_like(wide, bool)
    inner[5:15, 5:15] = True
    assert metrics.gradient_error(wide, np.zeros_like(wide), inner) == pytest.approx(100 * (1 / 20) ** 2 / 1000,
                                                                                      rel=1e-3)


def test_connectivity_error_by_hand():
    gt = np.array([[1.0, 1.0, 1.0]])
    pred = np.array([[1.0, 0.0, 1.0]])
    # omega at every threshold is one end pixel; the other two drop out at t=0.1 -> level 0.
    # phi_pred = [1, 1, 0], phi_gt = [1, 0, 0] (or mirrored) -> one pixel differs by 1
    assert metrics.connectivity_error(pred, gt) == pytest.approx(1 / 1000)
    assert metrics.connectivity_error(gt, gt) == 0.0


def test_boundary_band_by_hand():
    gt = np.zeros((7, 7))
    gt[2:5, 2:5] = 1.0
    band = metrics.boundary_band(gt, radius=0)
    assert band.sum() == 8 and not band[3, 3]  # the ring of the 3x3 square, not its centre
    assert metrics.boundary_band(gt, radius=1).sum() > 8
    soft = np.zeros((5, 5))
    soft[2, 2] = 0.5
    assert metrics.boundary_band(soft, radius=0).sum() == 1


def test_all_metrics_zero_for_perfect_prediction():
    rng = np.random.default_rng(0)
    gt = rng.random((16, 16))
    assert all(v == 0.0 for v in metrics.all_metrics(gt, gt).values())
