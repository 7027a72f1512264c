"""Losses: hand values, zero where the physics says zero, masks respected."""
import pytest
import torch

from training import losses


def test_l1_alpha_by_hand_and_masks():
    pred = torch.tensor([[[[0.0, 1.0]]], [[[0.5, 0.5]]]])
    gt = torch.zeros_like(pred)
    assert losses.l1_alpha(pred, gt).item() == pytest.approx((0.5 + 0.5) / 2)
    assert losses.l1_alpha(pred, gt, torch.tensor([True, False])).item() == pytest.approx(0.5)
    assert losses.l1_alpha(pred, gt, torch.tensor([False, False])).item() == 0.0
    w = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])
    assert losses.l1_alpha(pred, gt, weight=w).item() == pytest.approx((0.0 + 0.5) / 2)


def test_composition_zero_for_true_alpha_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    fg, bg = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    alpha = torch.rand(2, 1, 8, 8, generator=g)
    image = alpha * fg + (1 - alpha) * bg
    assert losses.composition_l1(alpha, fg, bg, image).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.composition_l1(1 - alpha, fg, bg, image).item() > 0.01


def test_flip_and_scale_consistency():
    x = torch.rand(1, 1, 8, 8)
    sym = x + x.flip(-1)
    assert losses.flip_consistency(sym, sym).item() == pytest.approx(0.0)
    assert losses.flip_consistency(x, x).item() > 0
    const = torch.full((1, 1, 8, 8), 0.3)
    assert losses.scale_consistency(const, torch.full((1, 1, 4, 4), 0.3)).item() == pytest.approx(0.0, abs=1e-7)


def test_coarse_agreement_ignores_the_edge_band():
    coarse = torch.zeros(1, 1, 32, 32)
    coarse[..., 8:24, 8:24] = 1.0
    changed_on_edge = coarse.clone()
    changed_on_edge[..., 8, 8:24] = 0.5  # on the edge: free
    assert losses.coarse_agreement(changed_on_edge, coarse).item() == 0.0
    changed_far = coarse.clone()
    changed_far[..., 0, 0] = 1.0  # far from any edge: penalised
    assert losses.coarse_agreement(changed_far, coarse).item() > 0
