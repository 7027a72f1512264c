"""A reproducible stream of training batches from the generator and/or folder datasets.

Sample number i of a run is a pure function of (seed, i): batch b on rank r of `world` ranks
holds samples (b * world + r) * batch_size + k. So resuming at a step, or running on N ranks,
replays exactly the same data without any sampler state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .augment import AugmentConfig, augment
from .folders import FolderDataset
from .synthetic import SceneConfig, make_scene

KEYS3 = ("image", "fg", "bg")
KEYS1 = ("alpha", "depth", "coarse")


@dataclass(frozen=True)
class DataConfig:
    sources: tuple[str, ...] = ("synthetic",)  # "synthetic" or dataset folders
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    scene: SceneConfig | None = None  # None: generator scenes at 1.25x the crop side


class Stream:
    def __init__(self, cfg: DataConfig, seed: int):
        self.cfg, self.seed = cfg, seed
        size = cfg.augment.crop + cfg.augment.crop // 4
        self.scene = cfg.scene or SceneConfig(size=size)
        self.folders = {s: FolderDataset(s, seed) for s in cfg.sources if s != "synthetic"}

    def sample(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index, 1])
        src = self.cfg.sources[int(rng.integers(len(self.cfg.sources)))]
        if src == "synthetic":
            s = make_scene(self.seed, index, self.scene)
        else:
            ds = self.folders[src]
            s = ds[int(rng.integers(len(ds)))]
        return augment(rng, s, self.cfg.augment)

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        first = (step * world + rank) * batch_size
        return collate([self.sample(first + k) for k in range(batch_size)])


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack samples to NCHW tensors; a key missing in a sample is zeros plus has_<key> = False."""
    h, w = samples[0]["image"].shape[:2]
    out: dict[str, torch.Tensor] = {}
    for k in KEYS3 + KEYS1:
        c = 3 if k in KEYS3 else 1
        has = [s.get(k) is not None for s in samples]
        arr = np.zeros((len(samples), c, h, w), np.float32)
        for i, s in enumerate(samples):
            if has[i]:
                v = s[k]
                arr[i] = v.transpose(2, 0, 1) if v.ndim == 3 else v[None]
        out[k] = torch.from_numpy(arr)
        out[f"has_{k}"] = torch.tensor(has)
    out["low_contrast"] = torch.tensor([bool(s.get("flags", {}).get("low_contrast", False)) for s in samples])
    return out
