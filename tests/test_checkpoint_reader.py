"""One checkpoint reader (training/checkpoint.py) for training and export: every form that either of the two
former readers accepted still loads through both entries, and a corrupt file fails in one line naming it."""
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")
import safetensors.torch as st  # noqa: E402
import torch  # noqa: E402

from export import checkpoints as export_ckpt  # noqa: E402
from training import checkpoint  # noqa: E402

ROOT_PROBE = Path(__file__).resolve().parents[1] / "training/checkpoints/probes/context-depth3000"


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def written(tmp_path):
    model = export_ckpt.random_model("refiner", seed=3)
    checkpoint.save(tmp_path, model, "refiner-synthetic", {"step": 7})
    return tmp_path, model


@pytest.mark.parametrize("form", ["folder+kind", "weights", "description", "weights, kind from the name"])
def test_every_form_loads_through_both_entries(written, form):
    folder, model = written
    path, kind = {"folder+kind": (folder, "refiner"), "weights": (folder / "refiner.safetensors", "refiner"),
                  "description": (folder / "refiner.json", "refiner"),
                  "weights, kind from the name": (folder / "refiner.safetensors", None)}[form]
    loaded, meta = checkpoint.load(path, kind)
    assert _same(loaded, model) and meta["train"]["step"] == 7 and meta["stage"] == "refiner-synthetic"
    c = export_ckpt.load_checkpoint(path, kind)
    assert _same(c.model, model) and not c.model.training and c.stage == "refiner" and c.contract == "refiner"
    assert c.path == folder / "refiner.safetensors" and c.meta == meta


def test_weights_without_a_description_load_with_the_default_config(written):
    """Training accepted weights alone (the kind stamped in the file); export used to refuse them."""
    folder, model = written
    (folder / "refiner.json").unlink()
    assert _same(checkpoint.load(folder, "refiner")[0], model)
    c = export_ckpt.load_checkpoint(folder, "refiner")
    assert _same(c.model, model) and c.meta == {} and c.config == model.config


def test_weights_without_a_kind_stamp_load_by_their_description(written):
    folder, model = written
    w = folder / "refiner.safetensors"
    st.save_file(st.load_file(str(w)), str(w))  # no metadata: the description alone says what it is
    assert _same(checkpoint.load(folder, "refiner")[0], model)
    assert _same(export_ckpt.load_checkpoint(folder, "refiner").model, model)
    (folder / "refiner.json").unlink()  # now nothing says what it is
    with pytest.raises(checkpoint.CheckpointError, match="unknown kind") as e:
        export_ckpt.load_checkpoint(folder, "refiner")
    assert str(w) in str(e.value) and "\n" not in str(e.value)


def test_one_error_type():
    assert export_ckpt.CheckpointError is checkpoint.CheckpointError


@pytest.mark.parametrize("damage", ["truncated weights", "cut tensor data", "not json", "not an object"])
def test_corrupt_checkpoint_fails_in_one_line_naming_the_file(written, damage):
    folder, _ = written
    w, j = folder / "refiner.safetensors", folder / "refiner.json"
    if damage == "truncated weights":
        w.write_bytes(w.read_bytes()[:100])
        named = w
    elif damage == "cut tensor data":  # the header is intact, the tensors end early
        w.write_bytes(w.read_bytes()[:-64])
        named = w
    elif damage == "not json":
        j.write_text("{not json")
        named = j
    else:
        j.write_text(json.dumps(["refiner"]))
        named = j
    for load in (lambda: checkpoint.load(folder, "refiner"), lambda: export_ckpt.load_checkpoint(folder, "refiner"),
                 lambda: checkpoint.load_into(export_ckpt.random_model("refiner"), folder)):
        with pytest.raises(checkpoint.CheckpointError) as e:
            load()
        msg = str(e.value)
        assert msg.startswith(f"{named}: ") and "\n" not in msg and len(msg) < 400, msg


def test_a_folder_needs_a_kind_and_a_name_must_say_one(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="needs a kind"):
        checkpoint.load(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="cannot tell the model kind"):
        export_ckpt.load_checkpoint(tmp_path / "weights.safetensors")


def test_matting_context_blocks_travel_in_the_description(tmp_path):
    """TinyUNet's frame-wide context blocks (ModelConfig.context) are part of a checkpoint's description: one
    written before the field existed (no "context" key, like the shipped ones) rebuilds without them, one with
    them (training/checkpoints/probes/context-depth3000) rebuilds with them."""
    from training.models import ModelConfig, build_model

    for name, config in (("old", ModelConfig("matting", widths=(8, 16, 24, 32))),
                         ("new", ModelConfig("matting", widths=(8, 16, 24, 32), context=(2, 4)))):
        model = build_model(config)
        checkpoint.save(tmp_path / name, model, "matting", {})
        if name == "old":  # as written before ModelConfig had the field
            desc = tmp_path / name / "matting.json"
            meta = json.loads(desc.read_text())
            del meta["model"]["context"]
            desc.write_text(json.dumps(meta))
        loaded, _ = checkpoint.load(tmp_path / name, "matting")
        assert loaded.config == config and _same(loaded, model)
        assert len(loaded.net.context) == len(config.context)
    assert checkpoint.load(ROOT_PROBE, "matting")[0].config.context == (2, 4)  # the committed probe loads
