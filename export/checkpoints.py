"""Checkpoints -> models for the bundle: training's one checkpoint reader (training/checkpoint.py), plus
which bundle stage and tensor contract each kind of model becomes.

Everything that can go wrong (missing file, corrupt weights, a checkpoint of another model) raises
`CheckpointError` whose message is one line naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ._training import checkpoint, models

ModelConfig = models.ModelConfig
CheckpointError = checkpoint.CheckpointError

# checkpoint kind -> (bundle stage, bundle contract); tensor names live in wbg_edge.bundle.CONTRACTS
KINDS: dict[str, tuple[str, str]] = {"depth": ("depth", "depth"), "matting": ("coarse", "rgbd"),
                                     "refiner": ("refiner", "refiner")}


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    model: nn.Module  # eval mode, float32, CPU
    config: ModelConfig
    meta: dict  # the JSON beside the weights ({} when there is none)
    path: Path  # the .safetensors file

    @property
    def stage(self) -> str:
        return KINDS[self.kind][0]

    @property
    def contract(self) -> str:
        return KINDS[self.kind][1]


def default_checkpoint_dir() -> Path:
    """Where the shipped checkpoints live: training/checkpoints/default (made by training/recipes)."""
    return Path(checkpoint.__file__).resolve().parent / "checkpoints" / "default"


def has_checkpoints(folder: str | Path, complete: bool = False) -> bool:
    """Does `folder` hold checkpoints (any kind; all three with complete=True)?"""
    folder = Path(folder)
    found = [(folder / f"{k}.safetensors").is_file() for k in KINDS] if folder.is_dir() else [False]
    return all(found) if complete else any(found)


def load_checkpoint(path: str | Path, kind: str | None = None) -> Checkpoint:
    """Load `path` (a .safetensors file, its .json, or a folder plus `kind`) into an eval-mode model."""
    wpath, _, kind = checkpoint.resolve(path, kind)
    model, meta = checkpoint.load(wpath, kind)
    return Checkpoint(kind=kind, model=model.float().eval(), config=model.config, meta=meta, path=wpath)


def load_checkpoints(folder: str | Path) -> dict[str, Checkpoint]:
    """All three checkpoints of a folder, in data-path order (depth, matting, refiner)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    return {k: load_checkpoint(folder, k) for k in KINDS}


def save_checkpoint(model: nn.Module, folder: str | Path, stage: str | None = None, train: dict | None = None) -> Path:
    """Write `model` as a checkpoint the way training does (used by tests to make random-init checkpoints)."""
    return checkpoint.save(Path(folder), model, stage or model.config.kind, train or {})


def random_model(kind: str, seed: int = 0, config: ModelConfig | None = None) -> nn.Module:
    """A randomly initialised model (PyTorch's init) with non-trivial BatchNorm statistics and affine
    parameters, and non-zero heads, so every layer of the export path changes the output."""
    torch.manual_seed(seed)
    model = models.build_model(config or models.default_config(kind))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.05)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.Conv2d) and m.out_channels == 1 and not m.weight.abs().sum():
                m.weight.copy_(0.1 * torch.randn(m.weight.shape, generator=g))  # the refiner's zero head
    return model.eval()
