"""Self-describing checkpoints: OUT/<kind>.safetensors + OUT/<kind>.json.

    <kind>.json = {"stage": ..., "model": ModelConfig.to_dict(), "train": {...config, "step", "seed"}}

The kind is also stored in the safetensors metadata, so a file separated from its JSON still says
what it is. Loading checks the kind and raises `CheckpointMismatch` (one line naming the file).
"""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from training.models import ModelConfig, build_model, default_config


class CheckpointMismatch(ValueError):
    """A checkpoint missing, unreadable or of the wrong kind; one line naming the file."""


def weights_path(path: str | Path, kind: str) -> Path:
    """A .safetensors file, or a folder holding <kind>.safetensors."""
    p = Path(path)
    return p / f"{kind}.safetensors" if p.is_dir() else p


def save(out: Path, model: nn.Module, stage: str, train: dict) -> Path:
    from safetensors.torch import save_file

    cfg: ModelConfig = model.config
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    wpath = out / f"{cfg.kind}.safetensors"
    # one metadata key: safetensors keeps metadata in a hash map whose order varies, and bytes must not
    save_file(state, str(wpath), metadata={"kind": cfg.kind})
    meta = {"stage": stage, "model": cfg.to_dict(), "train": train}
    (out / f"{cfg.kind}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return wpath


def read_meta(path: str | Path, kind: str) -> tuple[Path, dict]:
    """(weights path, json meta) of a checkpoint expected to be of `kind`."""
    wpath = weights_path(path, kind)
    if not wpath.is_file():
        raise CheckpointMismatch(f"{wpath}: checkpoint not found")
    jpath = wpath.with_suffix(".json")
    meta: dict = {}
    if jpath.is_file():
        try:
            meta = json.loads(jpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointMismatch(f"{jpath}: unreadable checkpoint description ({e})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("model", {}), dict):
            raise CheckpointMismatch(f"{jpath}: not a checkpoint description (expected an object with a 'model' "
                                     f"object)")
    try:
        from safetensors import safe_open

        with safe_open(str(wpath), "pt") as f:
            file_kind = (f.metadata() or {}).get("kind")
    except Exception as e:  # safetensors raises several types for a corrupt file
        raise CheckpointMismatch(f"{wpath}: unreadable safetensors file ({type(e).__name__})") from None
    found = file_kind or meta.get("model", {}).get("kind")
    if found != kind:
        raise CheckpointMismatch(f"{wpath}: a {found or 'unknown'} checkpoint, but a {kind} checkpoint is needed here")
    return wpath, meta


def load(path: str | Path, kind: str) -> tuple[nn.Module, dict]:
    """Build the model a checkpoint describes and load its weights -> (model, meta)."""
    from safetensors.torch import load_file

    wpath, meta = read_meta(path, kind)
    try:
        cfg = ModelConfig.from_dict(meta["model"]) if "model" in meta else default_config(kind)
        model = build_model(cfg)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a hand-edited description
        raise CheckpointMismatch(f"{wpath.with_suffix('.json')}: model description does not build a {kind} "
                                 f"model ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    try:
        model.load_state_dict(load_file(str(wpath)))
    except RuntimeError as e:
        raise CheckpointMismatch(f"{wpath}: weights do not fit {cfg} ({_first_reason(e)})") from None
    return model, meta


def load_into(model: nn.Module, path: str | Path) -> dict:
    """Load a checkpoint of the same kind and shape into an existing model -> meta."""
    from safetensors.torch import load_file

    wpath, meta = read_meta(path, model.config.kind)
    try:
        model.load_state_dict(load_file(str(wpath)))
    except RuntimeError as e:
        raise CheckpointMismatch(f"{wpath}: weights do not fit {model.config} ({_first_reason(e)})") from None
    return meta


def _first_reason(e: Exception) -> str:
    """load_state_dict's first useful line ("size mismatch for ...", "Missing key(s) ..."), shortened."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return next((ln for ln in lines[1:]), lines[0] if lines else type(e).__name__)[:200]


def frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model

