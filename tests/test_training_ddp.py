"""torchrun with two gloo processes on CPU: DistributedDataParallel keeps the replicas identical."""
import subprocess
import sys

from safetensors.torch import load_file

from training.models import build_model, default_config


def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "training.train", "--stage", "matting", "--steps", "4", "--batch-size", "2", "--crop", "32",
           "--out", str(out), "--save-all-ranks", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1",
                       **__import__("os").environ})
    assert r.returncode == 0, r.stderr[-2000:]
    w0 = load_file(str(out / "matting.safetensors"))
    w1 = load_file(str(out / "rank1" / "matting.safetensors"))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert (w0[k] == w1[k]).all(), k
    init = build_model(default_config("matting")).state_dict()
    assert any(not (w0[k] == init[k]).all() for k in w0 if w0[k].is_floating_point())  # it did train
