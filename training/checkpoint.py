"""Self-describing checkpoints, and the one reader of them (training, evaluation and export all load here).

    DIR/<kind>.safetensors   the weights; the kind is stamped in the safetensors metadata too, so a
                             file separated from its description still says what it is
    DIR/<kind>.json          {"stage": ..., "model": ModelConfig.to_dict(), "train": {...config, "step", "seed"}}

A checkpoint is named by its folder plus the kind wanted, its .safetensors file or its .json. The
description is optional: weights alone load with the kind's default ModelConfig. Everything that can go
wrong (missing, corrupt, a checkpoint of another kind, a hand-edited description, weights that do not fit)
raises `CheckpointError`, one line naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from .models import MODELS, ModelConfig, build_model, default_config


class CheckpointError(ValueError):
    """A checkpoint missing, unreadable or of the wrong kind; one line naming the file."""


def resolve(path: str | Path, kind: str | None = None) -> tuple[Path, Path, str]:
    """(weights path, description path, kind) of a folder + kind, a .safetensors or a .json file. Without
    `kind`, a file's stem names it (train.py writes <kind>.safetensors)."""
    p = Path(path)
    if p.is_dir():
        if kind is None:
            raise CheckpointError(f"{p}: a checkpoint folder needs a kind ({'|'.join(MODELS)})")
        p = p / f"{kind}.safetensors"
    elif p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    kind = kind or p.stem
    if kind not in MODELS:
        raise CheckpointError(f"{p}: cannot tell the model kind from the name; expected one of {sorted(MODELS)}")
    return p, p.with_suffix(".json"), kind


def save(out: Path, model: nn.Module, stage: str, train: dict) -> Path:
    from safetensors.torch import save_file

    cfg: ModelConfig = model.config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    wpath = out / f"{cfg.kind}.safetensors"
    # written beside and renamed: a run stopped mid-save leaves the previous checkpoint, not half a file.
    # One metadata key: safetensors keeps metadata in a hash map whose order varies, and bytes must not
    tmp = out / f".{wpath.name}.tmp"
    save_file(state, str(tmp), metadata={"kind": cfg.kind})
    tmp.replace(wpath)
    meta = {"stage": stage, "model": cfg.to_dict(), "train": train}
    jtmp = out / f".{cfg.kind}.json.tmp"
    jtmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    jtmp.replace(wpath.with_suffix(".json"))
    return wpath


def read_meta(path: str | Path, kind: str | None = None) -> tuple[Path, dict]:
    """(weights path, description) of a checkpoint of `kind`, checked without building the model."""
    wpath, jpath, kind = resolve(path, kind)
    if not wpath.is_file():
        raise CheckpointError(f"{wpath}: checkpoint not found")
    meta: dict = {}
    if jpath.is_file():
        try:
            meta = json.loads(jpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{jpath}: unreadable checkpoint description ({e})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
            raise CheckpointError(f"{jpath}: not a checkpoint description (expected an object with a 'model' "
                                  f"object)")
        described = meta["model"].get("kind")
        if described != kind:
            raise CheckpointError(f"{wpath}: a {described} checkpoint, but a {kind} checkpoint is needed here "
                                  f"({jpath.name} holds a {described!r} model of stage {meta.get('stage')!r}, "
                                  f"expected {kind!r})")
    try:
        from safetensors import safe_open

        with safe_open(str(wpath), "pt") as f:
            stamped = (f.metadata() or {}).get("kind")
    except Exception as e:  # safetensors raises several types (not ValueError subclasses) for a corrupt file
        raise CheckpointError(f"{wpath}: corrupt or unreadable safetensors file ({type(e).__name__})") from None
    if stamped is not None and stamped != kind:
        raise CheckpointError(f"{wpath}: weights of a {stamped!r} model, expected {kind!r}; a {stamped} checkpoint, "
                              f"but a {kind} checkpoint is needed here")
    if stamped is None and not meta:  # neither the file nor a description says what this is
        raise CheckpointError(f"{wpath}: a checkpoint of unknown kind (no description beside it, no kind in its "
                              f"metadata), but a {kind} checkpoint is needed here")
    return wpath, meta


def load(path: str | Path, kind: str | None = None) -> tuple[nn.Module, dict]:
    """Build the model a checkpoint describes and load its weights -> (model, description)."""
    wpath, meta = read_meta(path, kind)
    kind = resolve(wpath, kind)[2]
    try:
        cfg = ModelConfig.from_dict(meta["model"]) if meta else default_config(kind)
        model = build_model(cfg)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a hand-edited description
        raise CheckpointError(f"{wpath.with_suffix('.json')}: model description does not build a {kind} "
                              f"model ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    _load_state(model, wpath)
    return model, meta


def load_into(model: nn.Module, path: str | Path) -> dict:
    """Load a checkpoint of the same kind and shape into an existing model -> description."""
    wpath, meta = read_meta(path, model.config.kind)
    _load_state(model, wpath)
    return meta


def _load_state(model: nn.Module, wpath: Path) -> None:
    from safetensors.torch import load_file

    try:
        state = load_file(str(wpath))
    except Exception as e:  # read_meta opened the header; the tensors themselves may still be cut short
        raise CheckpointError(f"{wpath}: corrupt or unreadable safetensors file ({type(e).__name__})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{wpath}: weights do not fit {model.config} ({_first_reason(e)})") from None


def _first_reason(e: Exception) -> str:
    """load_state_dict's first useful line ("size mismatch for ...", "Missing key(s) ..."), shortened."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return next((ln for ln in lines[1:]), lines[0] if lines else type(e).__name__)[:200]


def frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
