"""The matting and refiner stages learn on the depth the runtime feeds them: `runtime_depth` is the
pipeline's own depth (same weights, same sampling, same normalisation), and a worse depth is made on demand."""
import numpy as np
import pytest
import torch

from training import checkpoint
from training.train import TrainConfig, TrainError, perturb_depth, runtime_depth, train
from wbg_edge import Pipeline, PipelineConfig

CKPT = "training/checkpoints/default"


def test_runtime_depth_equals_the_pipelines_depth():
    rng = np.random.default_rng(3)
    frame = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    frame[64:200, 80:170] = (40, 90, 200)  # something to find
    net = checkpoint.frozen(checkpoint.load(CKPT, "depth")[0])
    x = torch.from_numpy(frame[..., ::-1].astype(np.float32).transpose(2, 0, 1).copy() / 255)[None]
    ours = runtime_depth(net, x, 2)[0, 0].numpy()
    with Pipeline(PipelineConfig(bundle="synthetic", backend="ort", mode="alpha", model_res=256, threads=1)) as pipe:
        pipe.process(frame)
        theirs = pipe.state.depth  # at the depth model's resolution, normalised: before the upsample
    assert theirs.shape == (128, 128)
    up = torch.nn.functional.interpolate(torch.from_numpy(theirs)[None, None], size=(256, 256), mode="bilinear",
                                         align_corners=False)[0, 0].numpy()
    assert np.abs(ours - up).max() < 1e-3


def test_perturbed_depth_is_worse_but_kept_in_range_and_dropped_depth_stays_zero():
    d = torch.rand(4, 1, 32, 32)
    d[3] = 0  # dropped: D = 0 means "no depth", it must stay so
    out = perturb_depth(d, np.random.default_rng(0), p=1.0)
    assert out.min() >= 0 and out.max() <= 1 and torch.equal(out[3], d[3])
    assert all((out[i] - d[i]).abs().mean() > 0.01 for i in range(3))
    assert torch.equal(perturb_depth(d, np.random.default_rng(0), p=0.0), d)


def test_depth_source_model_needs_a_depth_checkpoint(tmp_path):
    with pytest.raises(TrainError, match="depth.safetensors: --depth-source model needs a depth checkpoint"):
        train(TrainConfig(stage="matting", out=str(tmp_path), steps=1, batch_size=1, crop=64, depth_source="model",
                          progress=False))


def test_the_recipe_trains_matting_and_refiner_on_the_runtime_depth():
    from training.recipes.default import RecipeConfig, stages

    by_stage = {tc.stage: tc for tc in stages(RecipeConfig())}
    assert by_stage["depth"].depth_source == "scene"  # the depth model learns the generator's depth
    for name in ("matting", "refiner-wild", "refiner-synthetic"):
        tc = by_stage[name]
        assert tc.depth_source == "model" and tc.depth_dropout > 0 and tc.p_depth_noise > 0, name
    assert by_stage["matting"].crop == by_stage["depth"].crop == 256  # the runtime's model resolution


def test_a_matting_stage_on_model_depth_trains(tmp_path):
    """depth, then matting on that depth model's output: a real (tiny) run of both stages."""
    base = dict(out=str(tmp_path), batch_size=2, crop=64, progress=False, save_every=1000)
    train(TrainConfig(stage="depth", steps=2, **base))
    model = train(TrainConfig(stage="matting", steps=2, depth_source="model", p_depth_noise=0.5, **base))
    assert (tmp_path / "matting.safetensors").is_file() and model.config.kind == "matting"
