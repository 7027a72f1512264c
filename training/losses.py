"""Losses of the recipe. Tensors are NCHW float in [0,1]; `valid` is an (N,) bool mask of the
samples the term applies to (e.g. those that have F and B), and a term over no sample is 0."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(per_sample: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        return per_sample.mean()
    v = valid.to(per_sample.dtype)
    return (per_sample * v).sum() / v.sum().clamp(min=1.0)


def l1_alpha(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |pred - gt|, optionally weighted per pixel (weights are normalised per sample)."""
    err = (pred - gt).abs()
    if weight is None:
        per = err.flatten(1).mean(1)
    else:
        per = (err * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1e-6)
    return _masked_mean(per, valid)


def composition_l1(alpha: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, image: torch.Tensor,
                   valid: torch.Tensor | None = None) -> torch.Tensor:
    """|alpha F + (1 - alpha) B - I|: errors that change the composite matter, others less."""
    comp = alpha * fg + (1 - alpha) * bg
    return _masked_mean((comp - image).abs().flatten(1).mean(1), valid)


def gradient_l1(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between finite differences: sharp edges are rewarded, not only right levels."""
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (gt[..., :, 1:] - gt[..., :, :-1])
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (gt[..., 1:, :] - gt[..., :-1, :])
    return _masked_mean(dx.abs().flatten(1).mean(1) + dy.abs().flatten(1).mean(1), valid)


def edge_band(alpha: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """1 where alpha is fractional or near a 0.5 crossing (dilated by `radius`), else 0."""
    frac = ((alpha > 0.02) & (alpha < 0.98)).float()
    hard = (alpha > 0.5).float()
    k = 2 * radius + 1
    grown = F.max_pool2d(torch.maximum(frac, hard), k, 1, radius)
    shrunk = -F.max_pool2d(-hard, k, 1, radius)
    return torch.clamp(F.max_pool2d(frac, k, 1, radius) + grown - shrunk, 0, 1)


def fractional_interior(alpha: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """1 inside semi-transparent regions (veils, glass): pixels whose whole (2r+1)^2 neighbourhood
    has fractional alpha. Soft edges and strands are too thin to survive, so a loss weighted by this
    rewards keeping see-through areas see-through rather than sharpening them like an edge."""
    frac = ((alpha > 0.02) & (alpha < 0.98)).float()
    return -F.max_pool2d(-frac, 2 * radius + 1, 1, radius)


def flip_consistency(refined: torch.Tensor, refined_of_flipped: torch.Tensor) -> torch.Tensor:
    """The alpha of a mirrored image should be the mirrored alpha."""
    return (refined - refined_of_flipped.flip(-1)).abs().mean()


def scale_consistency(refined: torch.Tensor, refined_of_half: torch.Tensor) -> torch.Tensor:
    """The alpha of a half-size image should be the half-size alpha (compared at half size)."""
    down = F.interpolate(refined, size=refined_of_half.shape[-2:], mode="bilinear", align_corners=False)
    return (down - refined_of_half).abs().mean()


def coarse_agreement(refined: torch.Tensor, coarse: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Away from the coarse edges the refiner has no reason to change anything."""
    away = 1 - edge_band(coarse, radius)
    return ((refined - coarse).abs() * away).sum() / away.sum().clamp(min=1.0)
