"""The three models of the recipe, sized for real time on an edge CPU or GPU.

Pure nn.Modules: no I/O, no state beyond weights. Forward signatures follow the tensor
contracts of DESIGN.md section 3 (NCHW float32, H and W multiples of 32):

    DepthNet       image (N,3,H,W) RGB in [0,1]          -> depth (N,1,H,W) relative inverse depth
    MattingModel   input (N,4,H,W) R,G,B,D in [0,1]      -> alpha (N,1,H,W) clamped to [0,1]
    RefinerModel   input (N,5,H,W) R,G,B,D,alpha_coarse  -> delta (N,1,H,W) unclamped residual

All blocks are depthwise-separable (inverted-residual style) so a 448x256 frame costs a few
milliseconds; `ModelConfig` holds the widths and travels inside every checkpoint.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """What is needed to rebuild a model from its weights; saved beside them."""

    kind: str  # "depth" | "matting" | "refiner"
    widths: tuple[int, ...] = field(default=(8, 16, 24, 32))
    expand: int = 2  # inverted-residual expansion factor
    context: tuple[int, ...] = ()  # dilations of residual blocks at the deepest level (TinyUNet): frame-wide context

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> ModelConfig:
        return ModelConfig(kind=d["kind"], widths=tuple(d["widths"]), expand=int(d.get("expand", 2)),
                           context=tuple(int(v) for v in d.get("context", ())))


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1,
                act: bool = True) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise (stride 1 or 2) -> 1x1 project; residual when shapes agree."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 2, dilation: int = 1):
        super().__init__()
        mid = cin * expand
        self.block = nn.Sequential(
            conv_bn_act(cin, mid, k=1),
            conv_bn_act(mid, mid, k=3, stride=stride, groups=mid, dilation=dilation),
            conv_bn_act(mid, cout, k=1, act=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class TinyUNet(nn.Module):
    """Stride-2 stem, encoder of stride-2 inverted residuals, decoder of bilinear upsampling +
    skip + block, head at 1/2 resolution, then one bilinear upsample to the input size.

    Full-resolution layers dominate CPU time (measured: 19.7 ms -> a few ms at 448x256), and the
    refiner owns the full-resolution edges, so nothing here runs at full resolution. With widths
    of length L the input sides should be multiples of 2**(L+1) (32 for four widths).
    """

    def __init__(self, cin: int, cout: int, widths: tuple[int, ...], expand: int = 2, context: tuple[int, ...] = ()):
        super().__init__()
        self.stem = conv_bn_act(cin, widths[0], k=3, stride=2)
        self.down = nn.ModuleList()
        prev = widths[0]
        for w in widths[1:]:
            self.down.append(InvertedResidual(prev, w, stride=2, expand=expand))
            prev = w
        self.context = nn.Sequential(*(InvertedResidual(prev, prev, stride=1, expand=expand, dilation=d)
                                       for d in context))
        self.up = nn.ModuleList()
        skips = list(widths[:-1])  # skip of each level, deepest last
        for skip in reversed(skips):
            self.up.append(InvertedResidual(prev + skip, skip, stride=1, expand=1))
            prev = skip
        self.head = nn.Conv2d(prev, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.stem(x)
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(x)
        x = self.context(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


class DepthNet(nn.Module):
    """RGB -> relative inverse depth in (0,1) (larger = nearer); any scale is allowed by the contract."""

    in_channels = 3

    def __init__(self, config: ModelConfig = ModelConfig("depth")):
        super().__init__()
        self.config = config
        self.net = TinyUNet(3, 1, config.widths, config.expand, config.context)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image))


class MattingModel(nn.Module):
    """R,G,B,D -> coarse alpha, clamped to [0,1] inside the graph (stage 1 of the recipe)."""

    in_channels = 4

    def __init__(self, config: ModelConfig = ModelConfig("matting")):
        super().__init__()
        self.config = config
        self.net = TinyUNet(4, 1, config.widths, config.expand, config.context)
        nn.init.constant_(self.net.head.bias, 0.5)  # start mid-range so clamp passes gradients

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(x), 0.0, 1.0)


class RefinerModel(nn.Module):
    """R,G,B,D,alpha_coarse -> residual delta (stages 2 and 3).

    Runs on boundary patches at twice the matting resolution (e.g. a batch of 70 patches of
    32x32), so it is shallow: a thin full-resolution path that sees edges, plus one stride-2
    context level projected to the thin width, upsampled, added, and fused by depthwise + 1x1.
    Final alpha is clamp(alpha_coarse + delta, 0, 1), computed outside (the fused op, or `refine`).
    """

    in_channels = 5

    def __init__(self, config: ModelConfig = ModelConfig("refiner", widths=(8, 16))):
        super().__init__()
        self.config = config
        w0, w1 = config.widths[0], config.widths[-1]
        self.stem = conv_bn_act(5, w0, k=3)
        self.context = nn.Sequential(
            conv_bn_act(w0, w1, k=3, stride=2),
            InvertedResidual(w1, w1, stride=1, expand=config.expand, dilation=2),
            conv_bn_act(w1, w0, k=1, act=False),  # project before upsampling: full-res bytes are the cost
        )
        self.fuse = nn.Sequential(conv_bn_act(w0, w0, k=3, groups=w0), conv_bn_act(w0, w0, k=1))
        self.head = nn.Conv2d(w0, 1, 1)
        nn.init.zeros_(self.head.weight)  # start as identity: delta = 0
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        c = F.interpolate(self.context(s), size=s.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.fuse(s + c))


def refine(alpha_coarse: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The recipe's residual update; the coarse alpha is detached so stage 1 is never moved."""
    return torch.clamp(alpha_coarse.detach() + delta, 0.0, 1.0)


MODELS: dict[str, type[nn.Module]] = {"depth": DepthNet, "matting": MattingModel, "refiner": RefinerModel}


def build_model(config: ModelConfig) -> nn.Module:
    """Registry lookup: stage name -> constructor (segment-anything style)."""
    if config.kind not in MODELS:
        raise ValueError(f"unknown model kind {config.kind!r}; expected one of {sorted(MODELS)}")
    return MODELS[config.kind](config)


def default_config(kind: str) -> ModelConfig:
    # depth runs at half the model resolution, so it can be the widest; five levels give the matting model
    # the whole frame as context (a figure is told from a prop by its shape). Measured at 720p (ORT, 2 threads):
    # depth 1.9 ms at 224x128, matting 6.5 ms at 448x256 (the four-level (8, 16, 24, 32) one took 4.6 ms).
    return {"depth": ModelConfig("depth", widths=(16, 32, 48, 64, 96)),
            "matting": ModelConfig("matting", widths=(16, 24, 32, 48, 64)),
            "refiner": ModelConfig("refiner", widths=(8, 16))}[kind]
