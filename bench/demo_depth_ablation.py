"""Where the default models lose the demo figure: the depth stage or the matting stage.

    python bench/demo_depth_ablation.py [--checkpoints training/checkpoints/default] [--frames 15]

On the built-in 720p clip, at the runtime's model resolution (256 px short side), in torch:
- depth alone: IoU of (our depth > t) against the clip's alpha, the best t of a sweep;
- the matting model fed our depth as the runtime makes it (`training.train.runtime_depth`), an ideal depth (the
  figure near, made from its alpha: what a perfect depth model would give) and D = 0.
IoU (alpha > 0.5) against the clip's alpha at the model resolution, mean and worst frame.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from training.checkpoint import load
from training.train import runtime_depth
from wbg_edge.demo import iou
from wbg_edge.synthetic import SyntheticClip


def model_frames(n: int, short: int = 256) -> list[tuple[torch.Tensor, np.ndarray]]:
    """n frames of the 720p demo clip at the model resolution: (RGB (1, 3, h, w) in [0, 1], alpha (h, w))."""
    clip = SyntheticClip(1280, 720, frames=75)
    size = (round(1280 * short / 720), short)
    out = []
    for i in np.linspace(0, 74, n).astype(int):
        bgr, alpha = clip.frame(int(i))
        rgb = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)[:, :, ::-1].copy()
        out.append((torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255,
                    cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)))
    return out


def summary(v: list[float]) -> str:
    return f"mean {np.mean(v):.3f}, worst {np.min(v):.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", default="training/checkpoints/default")
    p.add_argument("--frames", type=int, default=15)
    a = p.parse_args()
    torch.set_num_threads(1)
    depth_net = load(f"{a.checkpoints}/depth.safetensors", "depth")[0].eval()
    matting = load(f"{a.checkpoints}/matting.safetensors", "matting")[0].eval()
    frames = model_frames(a.frames)
    rows: dict[str, list[float]] = {"our depth": [], "ideal depth": [], "D = 0": []}
    depths = []
    with torch.no_grad():
        for x, alpha in frames:
            ours = runtime_depth(depth_net, x, 2)
            depths.append(ours[0, 0].numpy())
            ideal = torch.from_numpy(cv2.GaussianBlur(alpha, (0, 0), 2) * 0.9 + 0.05)[None, None]
            for name, d in (("our depth", ours), ("ideal depth", ideal), ("D = 0", torch.zeros_like(ours))):
                rows[name].append(iou(matting(torch.cat([x, d], 1)).clamp(0, 1)[0, 0].numpy(), alpha))
    best = max((np.mean([iou((d > t).astype(np.float32), al) for d, (_, al) in zip(depths, frames, strict=True)]), t)
               for t in np.linspace(0.2, 0.8, 13))
    print(f"{a.checkpoints}, demo clip at 256 px, {len(frames)} frames, IoU against its alpha:")
    print(f"  our depth alone, > {best[1]:.2f}: mean {best[0]:.3f}")
    for name, v in rows.items():
        print(f"  matting with {name}: {summary(v)}")


if __name__ == "__main__":
    main()
