"""Each stage trains a few steps on generated data and its loss goes down on a fixed batch;
wrong checkpoints stop with one line naming the file; resuming gives the same bytes."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from training import checkpoint
from training.data.augment import AugmentConfig
from training.data.stream import DataConfig, Stream
from training.models import build_model, default_config
from training.train import Chain, TrainConfig, data_stream, main, parse_args, stage_loss, train

BASE = TrainConfig(steps=40, batch_size=4, crop=64, lr=5e-3, log_every=5, progress=False, seed=0)


def fixed_loss(cfg: TrainConfig, model, matting) -> float:
    """Stage loss on held-out batches (another seed), same coarse/dropout draws every call."""
    stream = Stream(DataConfig(augment=AugmentConfig(crop=cfg.crop)), seed=777)
    total = 0.0
    with torch.no_grad():
        for k in range(3):
            loss, _ = stage_loss(replace(cfg, depth_dropout=0.0), model, matting, stream.batch(k, 4),
                                 np.random.default_rng(k))
            total += loss.item()
    return total / 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stages")


def _check_stage(stage, out):
    cfg = replace(BASE, stage=stage, out=str(out))
    matting = None
    if stage.startswith("refiner"):
        matting = checkpoint.frozen(checkpoint.load(out, "matting")[0])
    torch.manual_seed(0)
    start = build_model(default_config(cfg.kind)).train()
    before = fixed_loss(cfg, start, matting)
    model = train(cfg).train()
    after = fixed_loss(cfg, model, matting)
    assert after < before, (stage, before, after)
    meta = checkpoint.read_meta(out, cfg.kind)[1]
    assert meta["stage"] == stage and meta["train"]["step"] == cfg.steps and meta["model"]["kind"] == cfg.kind
    assert (out / f"{stage}.loss.png").is_file() and (out / f"{stage}.log.json").is_file()
    return model


def test_depth_stage(run_dir):
    _check_stage("depth", run_dir)


def test_matting_then_refiner_stages(run_dir):
    _check_stage("matting", run_dir)
    synthetic = run_dir / "synthetic"  # same frozen matting, refiner from scratch (the recipe chains them)
    synthetic.mkdir()
    for suffix in (".safetensors", ".json"):
        (synthetic / f"matting{suffix}").write_bytes((run_dir / f"matting{suffix}").read_bytes())
    _check_stage("refiner-wild", run_dir)
    _check_stage("refiner-synthetic", synthetic)


def test_joint_stage_trains_depth_and_matting_through_the_matte(run_dir, tmp_path):
    """joint starts from the depth and matting stages' models, lowers the chained loss, writes both checkpoints."""
    if not (run_dir / "depth.json").is_file():
        _check_stage("depth", run_dir)
    if not (run_dir / "matting.json").is_file():
        _check_stage("matting", run_dir)
    out = tmp_path / "joint"
    out.mkdir()
    for name in ("depth.safetensors", "depth.json", "matting.safetensors", "matting.json"):
        (out / name).write_bytes((run_dir / name).read_bytes())
    cfg = replace(BASE, stage="joint", out=str(out))
    start = Chain(checkpoint.load(out, "depth")[0], checkpoint.load(out, "matting")[0]).train()
    before = fixed_loss(cfg, start, None)
    model = train(cfg).train()
    assert fixed_loss(cfg, model, None) < before
    for kind in ("depth", "matting"):
        meta = checkpoint.read_meta(out, kind)[1]
        assert meta["stage"] == "joint" and meta["train"]["step"] == cfg.steps and meta["model"]["kind"] == kind
        assert (out / f"{kind}.safetensors").read_bytes() != (run_dir / f"{kind}.safetensors").read_bytes()
    assert (out / "joint.loss.png").is_file()
    with pytest.raises(ValueError, match=r"depth\.safetensors: stage joint starts from the depth and matting"):
        train(replace(cfg, out=str(tmp_path / "empty")))


def test_wrong_checkpoint_for_the_stage(tmp_path, capsys):
    torch.manual_seed(0)
    checkpoint.save(tmp_path / "d", build_model(default_config("depth")), "depth", {})
    bad = tmp_path / "d" / "depth.safetensors"
    cfg = replace(BASE, stage="refiner-synthetic", out=str(tmp_path / "o"), init=str(bad), steps=1)
    with pytest.raises(checkpoint.CheckpointError, match=r"depth\.safetensors: a depth checkpoint, but a refiner"):
        train(cfg)
    rc = main(["--stage", "refiner-synthetic", "--init", str(bad), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().out.strip()
    assert rc == 2 and str(bad) in err and "\n" not in err


def test_refiner_stage_without_matting_says_so(tmp_path):
    cfg = replace(BASE, stage="refiner-wild", out=str(tmp_path), steps=1)
    with pytest.raises(ValueError, match=r"matting\.safetensors: stage refiner-wild needs a matting checkpoint"):
        train(cfg)


def test_resume_gives_the_same_bytes(tmp_path):
    cfg = replace(BASE, stage="matting", steps=6, crop=32, batch_size=2)
    train(replace(cfg, out=str(tmp_path / "a")))
    train(replace(cfg, out=str(tmp_path / "b"), stop_at=3))
    assert checkpoint.read_meta(tmp_path / "b", "matting")[1]["train"]["step"] == 3
    train(replace(cfg, out=str(tmp_path / "b")))
    a = (tmp_path / "a" / "matting.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "matting.safetensors").read_bytes()
    train(replace(cfg, out=str(tmp_path / "c"), seed=1))
    assert a != (tmp_path / "c" / "matting.safetensors").read_bytes()


def test_cli_help_names_stages_and_loss_weights(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for word in ("depth", "matting", "refiner-wild", "refiner-synthetic", "--lambda-alpha", "--lambda-comp",
                 "--epochs", "--steps", "--init", "--seed"):
        assert word in text
    cfg = parse_args(["--stage", "matting", "--lambda-comp", "0.5", "--data", "synthetic", "x"])
    assert cfg.lambda_comp == 0.5 and cfg.lambda_alpha == 1.0 and cfg.data == ("synthetic", "x")


def test_semi_weight_marks_veil_interiors_not_soft_edges():
    import cv2

    from training.losses import fractional_interior

    a = np.zeros((64, 64), np.float32)
    a[:, 40:] = 1.0
    a = cv2.GaussianBlur(a, (0, 0), 1.5)  # a soft subject edge, fractional over ~6 px
    cv2.circle(a, (16, 32), 10, 0.4, -1)  # a veil of alpha 0.4
    w = fractional_interior(torch.from_numpy(a)[None, None])[0, 0].numpy()
    assert w[32, 16] == 1 and w[32, 21] == 1 and w[32, 27] == 0 and w[:, 34:].max() == 0 and w[5, 5] == 0
    assert parse_args(["--stage", "refiner-synthetic", "--lambda-semi", "20"]).lambda_semi == 20


def test_p_semi_puts_veils_in_more_scenes_and_the_default_keeps_the_stream():
    cfg = replace(BASE, crop=32)
    assert data_stream(cfg).scene == Stream(DataConfig(augment=AugmentConfig(crop=32)), 0).scene  # same bytes
    def veils(c):
        return sum(bool(data_stream(c).sample(i)["flags"]["semi_transparent"]) for i in range(40))

    assert veils(replace(cfg, p_semi=0.9)) > veils(cfg) + 10
    assert parse_args(["--stage", "refiner-synthetic", "--p-semi", "0.8"]).p_semi == 0.8
