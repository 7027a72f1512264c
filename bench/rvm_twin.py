"""A timing twin of RVM-MobileNetV3 (Robust Video Matting, Lin et al. 2021), written from the paper's
description: the same layers, shapes and operations, random weights. Its weights cannot be fetched here (no model
hub), and time does not depend on them, so this twin stands in for RVM in `bench/bench_rvm.py`'s speed
comparison. It says nothing about RVM's quality.

    encoder   MobileNetV3-Large (output stride 16: the last stage dilated), features at 1/2, 1/4, 1/8, 1/16
    LR-ASPP   960 -> 128 channels
    decoder   ConvGRU on half the channels at 1/16, 1/8, 1/4, 1/2; output block at the downsampled input size
    refiner   Deep Guided Filter up to the full frame (the downsample ratio is 0.25 at 720p)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cbr(cin, cout, k=1, s=1, groups=1, act: type[nn.Module] | None = nn.ReLU, dilation=1):
    layers = [nn.Conv2d(cin, cout, k, s, dilation * (k - 1) // 2, dilation=dilation, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act()] if act else []))


class SqueezeExcite(nn.Module):
    def __init__(self, c):
        super().__init__()
        mid = max(8, (c // 4 + 4) // 8 * 8)
        self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, mid, 1), nn.ReLU(), nn.Conv2d(mid, c, 1),
                                nn.Hardsigmoid())

    def forward(self, x):
        return x * self.fc(x)


class Bneck(nn.Module):
    def __init__(self, cin, k, exp, cout, se, act, s, dilation=1):
        super().__init__()
        layers = [] if exp == cin else [cbr(cin, exp, act=act)]
        layers += [cbr(exp, exp, k, s, groups=exp, act=act, dilation=dilation)]
        layers += [SqueezeExcite(exp)] if se else []
        layers += [cbr(exp, cout, act=None)]
        self.block, self.res = nn.Sequential(*layers), s == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.res else y


RE, HS = nn.ReLU, nn.Hardswish
# MobileNetV3-Large (k, expansion, out, SE, activation, stride, dilation); the last stage dilated as in RVM
LARGE = [(3, 16, 16, False, RE, 1, 1), (3, 64, 24, False, RE, 2, 1), (3, 72, 24, False, RE, 1, 1),
         (5, 72, 40, True, RE, 2, 1), (5, 120, 40, True, RE, 1, 1), (5, 120, 40, True, RE, 1, 1),
         (3, 240, 80, False, HS, 2, 1), (3, 200, 80, False, HS, 1, 1), (3, 184, 80, False, HS, 1, 1),
         (3, 184, 80, False, HS, 1, 1), (3, 480, 112, True, HS, 1, 1), (3, 672, 112, True, HS, 1, 1),
         (5, 672, 160, True, HS, 1, 2), (5, 960, 160, True, HS, 1, 2), (5, 960, 160, True, HS, 1, 2)]


class ConvGRU(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ih = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.hh = nn.Conv2d(2 * c, c, 3, padding=1)

    def forward(self, x, h):
        r, z = torch.sigmoid(self.ih(torch.cat([x, h], 1))).chunk(2, 1)
        c = torch.tanh(self.hh(torch.cat([x, r * h], 1)))
        h = (1 - z) * h + z * c
        return h, h


class Up(nn.Module):
    def __init__(self, cin, skip, cout):
        super().__init__()
        self.conv = cbr(cin + skip + 3, cout, 3)
        self.gru = ConvGRU(cout // 2)

    def forward(self, x, skip, src, h):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.conv(torch.cat([x, skip, src], 1))
        a, b = x.chunk(2, 1)
        b, h = self.gru(b, h)
        return torch.cat([a, b], 1), h


class RVMTwin(nn.Module):
    """(src 720p RGB, four recurrent states) -> (alpha at full size, new states); downsample ratio fixed."""

    def __init__(self, ratio: float = 0.25):
        super().__init__()
        self.ratio = ratio
        self.stem = cbr(3, 16, 3, 2, act=HS)
        cin, blocks = 16, []
        for k, exp, out, se, act, s, d in LARGE:
            blocks.append(Bneck(cin, k, exp, out, se, act, s, d))
            cin = out
        self.blocks = nn.ModuleList(blocks)
        self.last = cbr(160, 960, act=HS)
        self.aspp_a, self.aspp_b = cbr(960, 128), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(960, 128, 1),
                                                                  nn.Sigmoid())
        self.gru16 = ConvGRU(64)
        self.up8, self.up4, self.up2 = Up(128, 40, 80), Up(80, 24, 40), Up(40, 16, 32)
        self.out = nn.Sequential(cbr(32 + 3, 16, 3), cbr(16, 16, 3))
        self.project = nn.Conv2d(16, 4, 1)
        self.guide = nn.Sequential(cbr(4 * 2 + 16, 16), cbr(16, 16), nn.Conv2d(16, 4, 1))

    def forward(self, src, r1, r2, r3, r4):
        small = F.interpolate(src, scale_factor=self.ratio, mode="bilinear", align_corners=False)
        x, feats = self.stem(small), []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in (0, 2, 5):
                feats.append(x)
        f1, f2, f3 = feats
        x = self.aspp_a(self.last(x)) * self.aspp_b(self.last(x))
        a, b = x.chunk(2, 1)
        b, r4 = self.gru16(b, r4)
        x = torch.cat([a, b], 1)
        s2 = F.avg_pool2d(small, 2, ceil_mode=True)
        s4 = F.avg_pool2d(s2, 2, ceil_mode=True)
        s8 = F.avg_pool2d(s4, 2, ceil_mode=True)
        x, r3 = self.up8(x, f3, s8, r3)
        x, r2 = self.up4(x, f2, s4, r2)
        x, r1 = self.up2(x, f1, s2, r1)
        x = F.interpolate(x, size=small.shape[-2:], mode="bilinear", align_corners=False)
        hid = self.out(torch.cat([x, small], 1))
        fgr_pha = self.project(hid)
        # Deep Guided Filter: a local linear model fitted at low resolution, applied at full resolution
        low = torch.cat([small, small.mean(1, keepdim=True)], 1)
        mean_x, mean_y = F.avg_pool2d(low, 3, 1, 1), F.avg_pool2d(fgr_pha, 3, 1, 1)
        cov = F.avg_pool2d(low * fgr_pha, 3, 1, 1) - mean_x * mean_y
        var = F.avg_pool2d(low * low, 3, 1, 1) - mean_x * mean_x
        A = self.guide(torch.cat([cov, var, hid], 1))
        b = mean_y - A * mean_x
        A, b = (F.interpolate(t, size=src.shape[-2:], mode="bilinear", align_corners=False) for t in (A, b))
        fine = torch.cat([src, src.mean(1, keepdim=True)], 1)
        out = A * fine + b
        return out[:, 3:4].clamp(0, 1), r1, r2, r3, r4


def state_shapes(h: int, w: int, ratio: float = 0.25) -> list[tuple[int, ...]]:
    """The recurrent states' shapes for an h x w frame: 16, 20, 40, 64 channels at 1/2, 1/4, 1/8, 1/16 of the
    downsampled frame."""
    sh, sw = round(h * ratio), round(w * ratio)
    sizes = [(-(-sh // f), -(-sw // f)) for f in (2, 4, 8, 16)]
    return [(1, c, *s) for c, s in zip((16, 20, 40, 64), sizes, strict=True)]
