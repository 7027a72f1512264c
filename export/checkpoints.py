"""Checkpoints -> models: `DIR/<kind>.safetensors` + `DIR/<kind>.json` (written by training/train.py).

The JSON describes the weights beside it: {"stage": ..., "model": ModelConfig.to_dict(), "train": {...}}.
Everything that can go wrong (missing file, corrupt weights, a checkpoint of another model) raises
`CheckpointError` whose message is one line naming the file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from training.models import ModelConfig, build_model

# checkpoint kind -> (bundle stage, bundle contract); tensor names live in wbg_edge.bundle.CONTRACTS
KINDS: dict[str, tuple[str, str]] = {"depth": ("depth", "depth"), "matting": ("coarse", "rgbd"),
                                     "refiner": ("refiner", "refiner")}


class CheckpointError(ValueError):
    """A checkpoint that cannot be turned into a model; the message is one line naming the file."""


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    model: nn.Module  # eval mode, float32, CPU
    config: ModelConfig
    meta: dict  # the JSON beside the weights
    path: Path  # the .safetensors file

    @property
    def stage(self) -> str:
        return KINDS[self.kind][0]

    @property
    def contract(self) -> str:
        return KINDS[self.kind][1]


def default_checkpoint_dir() -> Path:
    """Where the shipped checkpoints live: training/checkpoints/default (made by training/recipes)."""
    import training

    return Path(training.__file__).resolve().parent / "checkpoints" / "default"


def has_checkpoints(folder: str | Path, complete: bool = False) -> bool:
    """Does `folder` hold checkpoints (any kind; all three with complete=True)?"""
    folder = Path(folder)
    found = [(folder / f"{k}.safetensors").is_file() for k in KINDS] if folder.is_dir() else [False]
    return all(found) if complete else any(found)


def _paths(path: Path, kind: str | None) -> tuple[Path, Path, str]:
    if path.is_dir():
        if kind is None:
            raise CheckpointError(f"{path}: a checkpoint folder needs a kind ({'|'.join(KINDS)})")
        path = path / f"{kind}.safetensors"
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    expected = kind or path.stem
    if expected not in KINDS:
        raise CheckpointError(f"{path}: cannot tell the model kind from the name; expected one of {sorted(KINDS)}")
    return path, path.with_suffix(".json"), expected


def load_checkpoint(path: str | Path, kind: str | None = None) -> Checkpoint:
    """Load `path` (a .safetensors file, its .json, or a folder plus `kind`) into an eval-mode model."""
    from safetensors.torch import load_file

    wpath, jpath, kind = _paths(Path(path), kind)
    if not wpath.is_file():
        raise CheckpointError(f"{wpath}: checkpoint weights not found")
    if not jpath.is_file():
        raise CheckpointError(f"{jpath}: checkpoint description not found (written beside the weights by train.py)")
    try:
        meta = json.loads(jpath.read_text())
        config = ModelConfig.from_dict(meta["model"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{jpath}: not a checkpoint description ({type(e).__name__}: {e})") from None
    if config.kind != kind:
        raise CheckpointError(f"{jpath}: holds a {config.kind!r} model (stage {meta.get('stage')!r}), "
                              f"expected {kind!r}; wrong checkpoint for this stage")
    try:
        from safetensors import safe_open

        with safe_open(str(wpath), "pt") as f:
            file_kind = (f.metadata() or {}).get("kind")  # train.py also stamps the kind into the weights
        state = load_file(str(wpath))
    except Exception as e:  # safetensors raises its own SafetensorError (not a subclass of ValueError)
        raise CheckpointError(f"{wpath}: corrupt or unreadable safetensors file ({e})") from None
    if file_kind is not None and file_kind != kind:
        raise CheckpointError(f"{wpath}: weights of a {file_kind!r} model, expected {kind!r}; wrong checkpoint "
                              f"for this stage")
    try:
        model = build_model(config)
    except (TypeError, ValueError, RuntimeError) as e:  # a hand-edited description (widths "abc", expand -1)
        raise CheckpointError(f"{jpath}: model description does not build a {kind} model "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise CheckpointError(f"{wpath}: weights do not fit a {kind} model with {config} ({first[:200]})") from None
    return Checkpoint(kind=kind, model=model.float().eval(), config=config, meta=meta, path=wpath)


def load_checkpoints(folder: str | Path) -> dict[str, Checkpoint]:
    """All three checkpoints of a folder, in data-path order (depth, matting, refiner)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    return {k: load_checkpoint(folder, k) for k in KINDS}


def save_checkpoint(model: nn.Module, folder: str | Path, stage: str | None = None, train: dict | None = None) -> Path:
    """Write `model` as a checkpoint (used by tests to make random-init checkpoints); returns the weights path."""
    from safetensors.torch import save_file

    from wbg_edge.bundle import atomic_write_bytes

    config: ModelConfig = model.config
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wpath = folder / f"{config.kind}.safetensors"
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / f".{wpath.name}.tmp"
    save_file(state, str(tmp), metadata={"kind": config.kind, "stage": stage or config.kind})
    tmp.replace(wpath)
    meta = {"stage": stage or config.kind, "model": config.to_dict(), "train": train or {}}
    atomic_write_bytes(wpath.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
    return wpath


def random_model(kind: str, seed: int = 0, config: ModelConfig | None = None) -> nn.Module:
    """A randomly initialised model (PyTorch's init) with non-trivial BatchNorm statistics and affine
    parameters, and non-zero heads, so every layer of the export path changes the output."""
    from training.models import default_config

    torch.manual_seed(seed)
    model = build_model(config or default_config(kind))
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
