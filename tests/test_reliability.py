"""Issue 7, bad input and security: every case gives one line naming the file or argument, never a
traceback, never a half-run; real ONNX Runtime sessions, real files written and read back."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import helper
from test_pipeline import _const, _save, _slice, disc_frame, make_bundle

from wbg_edge.bundle import BundleError, sha256_file
from wbg_edge.pipeline import Pipeline, PipelineConfig

FAST = dict(model_res=64, refine_res=64, threads=1)
ROOT = Path(__file__).resolve().parents[1]


def one_line(e: BaseException | str, *words: str) -> str:
    msg = str(e.value if hasattr(e, "value") else e)
    assert "\n" not in msg.strip() and "Traceback" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def edit_manifest(root: Path, change) -> None:
    m = json.loads((root / "manifest.json").read_text())
    change(m)
    (root / "manifest.json").write_text(json.dumps(m))


def rehash(root: Path, file: str) -> None:
    """What someone who swaps a model file by hand does: make the manifest hash match the new file."""
    def fix(m):
        next(a for a in m["artifacts"] if a["file"] == file).update(sha256=sha256_file(root / file))
    edit_manifest(root, fix)


def open_pipeline(root: Path) -> Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the native op may fall back to numpy with a warning
        return Pipeline(PipelineConfig(bundle=str(root), **FAST))


# ------------------------------------------------------------------ ONNX files that break the contract

def _mean(path: Path, inp: str, in_shape: list, out: str, out_shape: list, axis: int = 1) -> None:
    _save(path, [helper.make_node("ReduceMean", [inp], [out], axes=[axis], keepdims=1)], inp, in_shape, out,
          out_shape)


WRONG_ONNX = {  # file -> (writer, words the error must contain)
    "coarse input name": ("matting.onnx", lambda p: _mean(p, "x", ["N", 4, "H", "W"], "alpha", ["N", 1, "H", "W"]),
                          "contract 'rgbd' needs inputs ['input']"),
    "coarse channels": ("matting.onnx", lambda p: _mean(p, "input", ["N", 3, "H", "W"], "alpha", ["N", 1, "H", "W"]),
                        "has 3 channels"),
    "coarse rank": ("matting.onnx", lambda p: _mean(p, "input", [4, "H", "W"], "alpha", [1, "H", "W"], axis=0),
                    "has rank 3"),
    "refiner channels": ("refiner.onnx", lambda p: _mean(p, "input", ["N", 4, "H", "W"], "delta", ["N", 1, "H", "W"]),
                         "contract 'refiner' needs 5"),
    "refiner output name": ("refiner.onnx", lambda p: _mean(p, "input", ["N", 5, "H", "W"], "d", ["N", 1, "H", "W"]),
                            "outputs ['delta']"),
    "depth fixed size": ("depth.onnx", lambda p: _mean(p, "image", [1, 3, 64, 64], "depth", [1, 1, 64, 64]),
                         None),  # a fixed-size depth model is allowed: no manifest dim says otherwise
    "not an ONNX file": ("refiner.onnx", lambda p: p.write_bytes(b"\x08\x07not a protobuf" * 50),
                         "ONNX Runtime could not load the model"),
}


@pytest.mark.parametrize("case", list(WRONG_ONNX))
def test_onnx_with_the_wrong_contract_fails_at_load_in_one_line(tmp_path, case):
    file, write, words = WRONG_ONNX[case]
    root = make_bundle(tmp_path / "b")
    write(root / file)
    rehash(root, file)  # the hash matches, so only the contract check can catch it
    if words is None:
        open_pipeline(root).close()
        return
    with pytest.raises((BundleError, RuntimeError)) as e:
        open_pipeline(root)
    one_line(e, str(root / file), words)


def test_manifest_shape_that_disagrees_with_the_file(tmp_path):
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, lambda m: m["artifacts"][-1]["outputs"].update(delta=["N", 2, "H", "W"]))
    with pytest.raises(BundleError) as e:
        open_pipeline(root)
    one_line(e, "refiner.onnx", "tensor 'delta'", "the manifest declares")


# ------------------------------------------------------------------ manifests edited by hand

def _first(m):
    return m["artifacts"][0]


HAND_EDITS = {
    "hash changed": (lambda m: _first(m).update(sha256="0" * 64), "does not match the manifest"),
    "hash not hex": (lambda m: _first(m).update(sha256="xyz"), "sha256 must be 64 hex digits"),
    "file removed": (lambda m: _first(m).pop("file"), "field 'file' is missing"),
    "stage removed": (lambda m: _first(m).pop("stage"), "field 'stage' is missing"),
    "file a number": (lambda m: _first(m).update(file=7), "'file' must be str, got int"),
    "inputs a string": (lambda m: _first(m).update(inputs="image"), "'inputs' must be dict"),
    "dims not a list": (lambda m: _first(m).update(inputs={"image": "N3HW"}), "must be a list of ints"),
    "fixed_size wrong": (lambda m: _first(m).update(fixed_size=[1, 2, 3]), "fixed_size must be [H, W]"),
    "engine a string": (lambda m: _first(m).update(engine="tensorrt"), "'engine' must be dict or NoneType"),
    "version a bool": (lambda m: _first(m).update(contract_version=True), "'contract_version' must be int"),
    "entry not an object": (lambda m: m["artifacts"].insert(0, "depth.onnx"), "is not an object"),
    "unknown stage": (lambda m: _first(m).update(stage="segmentation"), "but stage 'segmentation'"),
    "unknown contract": (lambda m: _first(m).update(contract="rgba"), "unknown contract 'rgba'"),
    "unknown layout": (lambda m: _first(m).update(layout="CHWN"), "layout 'CHWN'"),
    "NHWC for depth": (lambda m: _first(m).update(layout="NHWC"), "for contract 'rgb' only"),
    "fixed_size for matting": (lambda m: m["artifacts"][1].update(fixed_size=[2, 3]), "for contract 'rgb' only"),
    "schema from the future": (lambda m: m.update(schema=2), "schema 2 is newer than this runtime"),
    "schema a string": (lambda m: m.update(schema="1"), "schema '1', expected 1"),
    "model_res a string": (lambda m: m.update(model_res="256"), "'model_res' has the wrong type"),
    "model_res negative": (lambda m: m.update(model_res=-64), "model_res must be a positive integer"),
    "producer a list": (lambda m: m.update(producer=[]), "'producer' has the wrong type"),
    "base a number": (lambda m: m.update(base=3), "'base' has the wrong type"),
    "path up and out": (lambda m: _first(m).update(file="../x.onnx"), "must be a plain name inside"),
    "absolute path": (lambda m: _first(m).update(file="/etc/hostname"), "must be a plain name inside"),
    "the folder itself": (lambda m: _first(m).update(file="."), "must be a plain name inside"),
    "manifest a list": (lambda m: m.clear(), "manifest schema None"),
}


@pytest.mark.parametrize("case", list(HAND_EDITS))
def test_hand_edited_manifest_is_refused_in_one_line(tmp_path, case):
    change, words = HAND_EDITS[case]
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, change)
    with pytest.raises(BundleError) as e:
        open_pipeline(root)
    one_line(e, str(root), words)


def test_symlink_out_of_the_bundle_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(root / "refiner.onnx", outside)
    os.symlink(outside, root / "refiner.onnx")  # same bytes, so the hash alone would pass
    with pytest.raises(BundleError) as e:
        open_pipeline(root)
    one_line(e, "refiner.onnx", "outside the bundle folder")


# ------------------------------------------------------------------ checkpoints: wrong stage, tampered, pickles

class Payload:
    """Unpickling this creates `marker`: proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _tampered_shape(w: Path) -> None:
    """Same names, kind stamp and file name; one tensor's shape changed (as a hand edit would)."""
    import safetensors.torch as st
    from safetensors import safe_open

    with safe_open(str(w), "pt") as f:
        meta = f.metadata()
    state = st.load_file(str(w))
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = state[name][:, :1].contiguous()
    st.save_file(state, str(w), metadata=meta)


def test_export_refuses_another_stage_and_tampered_checkpoints(tmp_path, capsys):
    from export.build_engine import main as build_main
    from export.checkpoints import CheckpointError, load_checkpoint, random_model, save_checkpoint

    for k in ("depth", "matting", "refiner"):
        save_checkpoint(random_model(k), tmp_path / "ok")
    shutil.copytree(tmp_path / "ok", tmp_path / "swapped")
    for ext in (".safetensors", ".json"):  # a matting checkpoint where the refiner belongs
        shutil.copy(tmp_path / "ok" / f"matting{ext}", tmp_path / "swapped" / f"refiner{ext}")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "swapped", "refiner")
    one_line(e, "refiner.json", "'matting'", "expected 'refiner'")
    rc = build_main(["--checkpoints", str(tmp_path / "swapped"), "--onnx-only", "--out", str(tmp_path / "o"),
                     "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / "o" / "manifest.json").exists()
    one_line(err.strip().splitlines()[-1], "refiner.json", "'matting'")

    _tampered_shape(tmp_path / "ok" / "refiner.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "ok", "refiner")
    one_line(e, "refiner.safetensors", "weights do not fit", "size mismatch")


def test_training_refuses_another_stage_and_tampered_checkpoints(tmp_path, capsys):
    from training import checkpoint
    from training.models import build_model, default_config
    from training.train import main as train_main

    checkpoint.save(tmp_path / "m", build_model(default_config("matting")), "matting", {})
    matting = tmp_path / "m" / "matting.safetensors"
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load(matting, "refiner")
    one_line(e, str(matting), "a matting checkpoint, but a refiner checkpoint is needed")
    rc = train_main(["--stage", "refiner-wild", "--init", str(matting), "--out", str(tmp_path / "o"),
                     "--no-progress", "--steps", "1"])
    out = capsys.readouterr().out.strip()
    assert rc == 2 and not (tmp_path / "o" / "refiner.safetensors").exists()
    one_line(out, str(matting), "refiner checkpoint is needed")

    _tampered_shape(matting)
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load(matting, "matting")
    one_line(e, str(matting), "weights do not fit")


def test_pickles_named_like_checkpoints_are_refused_without_running(tmp_path, capsys):
    import pickle

    import torch

    from export.checkpoints import CheckpointError, load_checkpoint, random_model, save_checkpoint
    from training import checkpoint
    from training.train import main as train_main

    marker = tmp_path / "pwned"
    save_checkpoint(random_model("refiner"), tmp_path / "c")
    (tmp_path / "c" / "refiner.safetensors").write_bytes(pickle.dumps({"w": Payload(marker)}))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "c", "refiner")
    one_line(e, "refiner.safetensors", "corrupt or unreadable safetensors")
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load(tmp_path / "c", "refiner")
    one_line(e, "refiner.safetensors", "unreadable safetensors file")

    # the trainer's resume state is the one torch.load in the tree: weights_only=True must refuse a planted pickle
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"stage": "matting", "step": 0, "log": [], "optimizer": Payload(marker)}, out / "matting.state.pt")
    rc = train_main(["--stage", "matting", "--out", str(out), "--no-progress", "--steps", "1"])
    msg = capsys.readouterr().out.strip()
    assert rc == 2
    one_line(msg, "matting.state.pt", "not a resume state")
    assert not marker.exists()  # no loader ran the payload


def test_depth_anything_weights_load_from_safetensors_only(tmp_path):
    pytest.importorskip("transformers")
    import safetensors.torch as st
    import torch
    from test_depth_anything import tiny_model

    from export.depth_anything import DepthAnythingError, load_weights

    tiny_model().save_pretrained(tmp_path / "bin")
    weights = tmp_path / "bin" / "model.safetensors"
    torch.save(st.load_file(str(weights)), tmp_path / "bin" / "pytorch_model.bin")  # the pickle format
    weights.unlink()
    with pytest.raises(DepthAnythingError) as e:
        load_weights(tmp_path / "bin")
    one_line(e, str(tmp_path / "bin"), "cannot load Depth Anything weights")
    tiny_model().save_pretrained(tmp_path / "st")
    assert load_weights(tmp_path / "st") is not None


# ------------------------------------------------------------------ fuzz the frame entry point

DTYPES = [np.uint8] * 10 + [np.int8, np.uint16, np.int32, np.float16, np.float32, np.float64, np.bool_, np.complex64]


@st.composite
def views(draw):
    """Arrays of any rank 0-4, 1-pixel and odd sides, 0-5 channels, any dtype, as views with negative or
    step strides, transposed or Fortran-ordered (what a caller's slicing or a camera buffer looks like)."""
    ndim = draw(st.sampled_from([0, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4]))
    sides = st.one_of(st.just(1), st.integers(0, 3), st.integers(1, 45))
    shape = [draw(sides) for _ in range(ndim)]
    if ndim == 3:
        shape[2] = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from(DTYPES))
    base_shape = [s * 2 if draw(st.booleans()) else s for s in shape]  # room for step slices
    a = np.random.default_rng(draw(st.integers(0, 999))).integers(0, 256, base_shape).astype(dtype)
    index = tuple(slice(None, None, 2) if b != s else slice(None) for b, s in zip(base_shape, shape, strict=True))
    a = a[index]  # (a numpy scalar when ndim == 0: also something a caller may pass)
    for ax in range(ndim):
        if draw(st.booleans()):
            a = np.flip(a, ax)  # negative stride
    if ndim >= 2 and draw(st.booleans()):
        a = np.asfortranarray(a)
    return a


@pytest.fixture(scope="module")
def fuzz_pipelines(tmp_path_factory):
    root = make_bundle(tmp_path_factory.mktemp("fuzz") / "b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipes = {m: Pipeline(PipelineConfig(bundle=str(root), mode=m, **FAST)) for m in ("composite", "rgba")}
    yield pipes
    for p in pipes.values():
        p.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=views(), mode=st.sampled_from(["composite", "rgba"]))
def test_fuzz_process_gives_a_matte_or_one_line_value_error(fuzz_pipelines, frame, mode):
    before = frame.copy()
    valid = (frame.dtype == np.uint8 and frame.size > 0
             and (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))))
    try:
        m = fuzz_pipelines[mode].process(frame)
    except ValueError as e:  # anything else (TypeError, cv2.error, IndexError ...) fails the test
        assert not valid, f"valid frame {frame.shape} {frame.dtype} refused: {e}"
        one_line(str(e), "frame must be", str(frame.shape) if isinstance(frame, np.ndarray) else "numpy array")
        event("refused")
        return
    event("processed")
    assert valid, f"invalid frame {frame.shape} {frame.dtype} accepted"
    h, w = frame.shape[:2]
    assert m.alpha.shape == (h, w) and m.alpha.dtype == np.float32
    assert np.isfinite(m.alpha).all() and 0 <= m.alpha.min() and m.alpha.max() <= 1
    assert m.image.shape == (h, w, 3 if mode == "composite" else 4) and m.image.dtype == np.uint8
    assert np.array_equal(frame, before)  # the caller's frame is never written to


# ------------------------------------------------------------------ outputs stay inside the paths the user gave

def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _clip(path: Path, n: int = 3, size=(64, 48)) -> Path:
    w, h = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for i in range(n):
        out.write(np.full((h, w, 3), (60 + 40 * i) % 256, np.uint8))
    out.release()
    return path


CLI_FAST = ["--model-res", "64", "--refine-res", "64"]


def test_batch_writes_only_inside_outdir(tmp_path, monkeypatch, capsys):
    """Inputs named `..`, `x/..`, a symlink, odd characters: every new path lands inside OUTDIR, and `..`
    is named after the folder it points at. Names that would replace OUTDIR's own bookkeeping (or OUTDIR
    itself: a video `..mp4` as PNG frames is `.`) are refused in one line before anything is written."""
    from wbg_edge.cli import main

    work = tmp_path / "work"
    (work / "shots" / "sub").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(work / "shots" / f"{i}.png"), np.full((40, 56, 3), 120 + i, np.uint8))
    clips = tmp_path / "clips"
    clips.mkdir()
    odd = [_clip(clips / name) for name in ("-dash.mp4", "sp ace.mp4", "ünï.mp4", ".hidden.mp4")]
    os.symlink(_clip(tmp_path / "target.mp4"), work / "link.mp4")
    outdir = work / "shots" / "sub" / "out"
    monkeypatch.chdir(work / "shots" / "sub")
    before = _tree(tmp_path)
    rc = main(["batch", "..", "../../shots/sub/..", str(work / "link.mp4"), *map(str, odd), "-o", "out",
               "--workers", "1", *CLI_FAST])
    cap = capsys.readouterr()
    new = _tree(tmp_path) - before
    assert not [p for p in new if not p.is_relative_to(outdir)], "written outside OUTDIR"
    assert rc == 0 and "Traceback" not in cap.err, cap.out + cap.err
    names = {p.name for p in outdir.iterdir()}
    assert {"shots", "link.mp4", "-dash.mp4", "sp ace.mp4", "ünï.mp4", ".hidden.mp4"} <= names, names
    assert len(list((outdir / "shots").glob("*.png"))) == 2  # `..` from shots/sub is shots/
    assert (tmp_path / "target.mp4").stat().st_size > 0 and (work / "link.mp4").is_symlink()

    (clips / ".wbg-batch").mkdir()  # an image folder named like the state folder
    cv2.imwrite(str(clips / ".wbg-batch" / "0.png"), np.zeros((40, 56, 3), np.uint8))
    _clip(clips / "..mp4")
    for args in ([str(clips / ".wbg-batch")], [str(clips / "..mp4"), "--format", "png"]):
        before = _tree(tmp_path)
        rc = main(["batch", *args, "-o", "out2", "--workers", "1", *CLI_FAST])
        err = capsys.readouterr().err
        assert rc != 0 and all(p.is_relative_to(work / "shots" / "sub" / "out2") for p in _tree(tmp_path) - before)
        assert [q.name for q in (work / "shots" / "sub" / "out2").iterdir()] == [".wbg-batch"]  # the job lock only
        one_line(err.strip(), args[0], "not a file name batch can use")


def test_run_writes_only_the_given_path(tmp_path, monkeypatch):
    """`run -o FILE`: the only new path is FILE (its temporary sibling is renamed onto it)."""
    from wbg_edge.cli import main

    clip = _clip(tmp_path / "in.mp4", n=4)
    (tmp_path / "o").mkdir()
    monkeypatch.chdir(tmp_path / "o")
    for target in ("cut.mp4", "frames/"):
        before = _tree(tmp_path)
        assert main(["run", "-i", str(clip), "-o", target, "-q", *CLI_FAST]) == 0
        new = sorted(str(p.relative_to(tmp_path)) for p in _tree(tmp_path) - before)
        pngs = [f"o/frames/frame_{i:06d}.png" for i in range(4)]
        want = ["o/cut.mp4"] if target == "cut.mp4" else ["o/frames", *pngs]
        assert new == want


# ------------------------------------------------------------------ truncated images and videos, non-image files

@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> Path:
    """Good and damaged copies of one picture in five formats and of one clip."""
    d = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (0, 0), 3)
    for ext in ("png", "jpg", "webp", "bmp", "tif"):
        cv2.imwrite(str(d / f"full.{ext}"), img)
        data = (d / f"full.{ext}").read_bytes()
        (d / f"half.{ext}").write_bytes(data[: len(data) // 2])
    (d / "text.jpg").write_text("not an image\n" * 20)
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not a video either\n")
    data = _clip(d / "full.mp4", n=12, size=(80, 60)).read_bytes()
    (d / "half.mp4").write_bytes(data[: len(data) // 2])
    (d / "head.mp4").write_bytes(data[:200])
    return d


@pytest.mark.parametrize("name", ["half.png", "half.jpg", "half.webp", "half.bmp", "half.tif", "text.jpg", "empty.png",
                                  "notes.txt", "half.mp4", "head.mp4"])
def test_damaged_input_is_one_line_on_stderr(damaged, tmp_path, name, capfd):
    """Through `wbg-edge run`; capfd also catches what OpenCV, libpng or libjpeg print from C. Videos run
    in a fresh process: FFmpeg's log level is fixed by whoever opened a video first in this one."""
    from wbg_edge.cli import main

    args = ["run", "-i", str(damaged / name), "-o", str(tmp_path / "out.mp4"), "-q", *CLI_FAST]
    if name.endswith((".mp4", ".txt")):
        r = subprocess.run([sys.executable, "-m", "wbg_edge", *args], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        rc, err = r.returncode, r.stderr
    else:
        rc, err = main(args), capfd.readouterr().err
    assert rc == 1 and not (tmp_path / "out.mp4").exists()
    one_line(err.strip(), name, "not a readable")


def test_truncated_jpeg_in_a_folder_is_skipped_and_named(damaged, tmp_path):
    from test_sources import drain

    from wbg_edge.sources import open_source

    folder = tmp_path / "shots"
    folder.mkdir()
    for i, name in enumerate(["full.jpg", "half.jpg", "full.png", "half.png"]):
        shutil.copy(damaged / name, folder / f"{i}-{name}")
    with open_source(str(folder)) as src:
        frames = drain(src)
        problems = src.stats.problems
    assert len(frames) == 2 and all(f.image.shape == (60, 80, 3) for f in frames)
    assert len(problems) == 1 and "skipped 2 unreadable image(s)" in problems[0] and "1-half.jpg" in problems[0]


# ------------------------------------------------------------------ the command line: every subcommand

@pytest.mark.parametrize("args, words", [
    (["run", "-i", "synthetic://", "-o", "null", "--patch-context", "128"], "--patch-context: 128 is out of range"),
    (["run", "-i", "synthetic://", "-o", "null", "--patch-size", "7"], "--patch-size: 7 is out of range"),
    (["run", "-i", "synthetic://", "-o", "null", "--threads", "0"], "--threads: 0 is out of range"),
    (["run", "-i", "synthetic://", "-o", "null", "--depth-every", "0"], "--depth-every: 0 is out of range"),
    (["run", "-i", "synthetic://", "-o", "null", "--depth-motion", "2"], "--depth-motion: 2 is out of range"),
    (["run", "-i", "synthetic://", "-o", "null", "--background", "#12345"], "a colour must be #RRGGBB"),
    (["run", "-i", "synthetic://", "-o", "null", "--background", "/no/bg.png"], "'/no/bg.png' is not"),
    (["run", "-i", "synthetic://", "-o", "null", "--mode", "xyz"], "invalid choice: 'xyz'"),
    (["run", "-i", "synthetic://?size=0x0", "-o", "null"], "synthetic clip needs width, height >= 16"),
    (["run", "-i", "synthetic://", "-o", "null", "--model-res", "abc"], "--model-res"),
    (["bench", "--bogus"], "unrecognized arguments: --bogus"),
    (["bench", "--warmup", "-1"], "--warmup: -1 is out of range"),
    (["bench", "--compare", "nonsense"], "--compare: unknown option 'nonsense'"),
    (["bench", "-i", "/no/such.mp4"], "/no/such.mp4: no such file"),
    (["bench", "--json", "/no/dir/b.json"], "--json /no/dir/b.json: the folder /no/dir does not exist"),
    (["batch", "x.mp4", "-o", "out", "--bogus"], "unrecognized arguments: --bogus"),
    (["batch", "x.mp4", "-o", "out", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["batch", "x.mp4", "-o", "out", "--format", "xyz"], "--format: invalid choice: 'xyz'"),
    (["batch", "x.mp4", "-o", "out", "--chunk-frames", "-1"], "--chunk-frames and --chunk-overlap must be >= 0"),
    (["batch", "x.mp4", "-o", "out", "--model-res", "50"], "--model-res: 50 is out of range"),
    (["batch", "-o", "out"], "required: INPUT"),
    (["batch", "x.mp4"], "required: -o/--outdir"),
    (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    (["demo", "--frames", "0"], "--frames: 0 is out of range"),
    (["demo", "--model-res", "7"], "--model-res: 7 is out of range"),
])
def test_cli_bad_arguments_are_one_line(tmp_path, monkeypatch, capsys, args, words):
    from wbg_edge.cli import main

    monkeypatch.chdir(tmp_path)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc in (1, 2)
    one_line(err.strip(), words)
    assert [p.name for p in tmp_path.iterdir()] in ([], ["out"])  # (batch takes its lock before checking)


def test_cli_batch_missing_input_names_it(tmp_path, capsys):
    from wbg_edge.cli import main

    rc = main(["batch", str(tmp_path / "gone.mp4"), "-o", str(tmp_path / "out"), *CLI_FAST])
    cap = capsys.readouterr()
    assert rc == 1 and "Traceback" not in cap.err
    assert [ln for ln in cap.err.splitlines() if "gone.mp4: no such file" in ln]
    assert not (tmp_path / "out" / "gone.mp4").exists()


# ------------------------------------------------------------------ security: no unsafe loads, no shell strings

def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that run a shell on a string or unpickle: what no path of ours may do with user files."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if kw.get("shell") == "True" or name in ("os.system", "os.popen", "eval", "exec", "pickle.load",
                                                  "pickle.loads", "torch.jit.load", "commands.getoutput"):
            found.append((node.lineno, name))
        elif name.endswith("torch.load") and kw.get("weights_only") != "True":
            found.append((node.lineno, f"{name} without weights_only=True"))
        elif name.endswith(("np.load", "numpy.load")) and kw.get("allow_pickle") == "True":
            found.append((node.lineno, f"{name}(allow_pickle=True)"))
    return found


def test_no_shell_strings_or_pickle_loads_in_the_tree():
    bad = []
    for folder in ("wbg_edge", "export", "training", "bench", "kernels"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            bad += [f"{f.relative_to(ROOT)}:{line}: {what}" for line, what in _unsafe_calls(ast.parse(f.read_text()))]
    assert not bad, bad
    planted = ast.parse("import torch, subprocess\ntorch.load(p)\nsubprocess.run(c, shell=True)\n")
    assert len(_unsafe_calls(planted)) == 2  # the scan itself can see them


# ------------------------------------------------------------------ faults end to end: a model that returns NaN

def test_nan_frames_mid_stream_lose_nothing_and_are_reported_once(tmp_path, capfd):
    """`wbg-edge run` over 30 frames, every 5th so dark that the toy matting model returns NaN: all 30
    frames are written (6 with the previous alpha), one warning line says how many."""
    from wbg_edge.cli import main

    root = make_bundle(tmp_path / "nan", coarse="nan")
    frames = tmp_path / "in"
    frames.mkdir()
    for i in range(30):
        img = np.full((96, 128, 3), 3, np.uint8) if i % 5 == 4 else disc_frame(96, 128, cx=40 + 2 * i)
        cv2.imwrite(str(frames / f"{i:03d}.png"), img)
    with pytest.warns(RuntimeWarning) as caught:
        rc = main(["run", "-i", str(frames), "-o", str(tmp_path / "out") + "/", "--bundle", str(root), "--mode",
                   "alpha", *CLI_FAST])
    err = capfd.readouterr().err
    assert rc == 0, err
    written = sorted((tmp_path / "out").glob("*.png"))
    assert len(written) == 30
    assert len([w for w in caught if "NaN/Inf" in str(w.message)]) == 1  # warned once, when it first happens
    summary = [ln for ln in err.splitlines() if "NaN/Inf" in ln]
    assert len(summary) == 1 and "on 6 frames" in summary[0], err  # and counted at the end
    a3, a4 = (cv2.imread(str(written[i]), cv2.IMREAD_UNCHANGED) for i in (3, 4))
    assert np.array_equal(a3, a4)  # the NaN frame kept the alpha of the frame before it


def test_inf_from_the_refiner_passes_frames_through(tmp_path):
    """The refiner stage, not only the coarse one, is checked: delta = 1 / (0 * a) is +Inf everywhere."""
    root = make_bundle(tmp_path / "inf")
    nodes = _slice("input", "a", 4) + [_const("k0", 0.0), _const("k1", 1.0),
                                    helper.make_node("Mul", ["a", "k0"], ["z"]),
                                    helper.make_node("Div", ["k1", "z"], ["delta"])]
    _save(root / "refiner.onnx", nodes, "input", ["N", 5, "H", "W"], "delta", ["N", 1, "H", "W"])
    rehash(root, "refiner.onnx")
    p = open_pipeline(root)
    frame = disc_frame(96, 128)
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        mattes = [p.process(frame).copy() for _ in range(3)]
    assert all(m.passthrough for m in mattes) and p.nonfinite_frames == 3
    assert all((m.alpha == 1).all() and np.array_equal(m.composite, frame) for m in mattes)  # nothing cut away


def _external_refiner(root: Path) -> None:
    """A 1x1-conv refiner whose weights are saved beside it in weights.bin (hash of the .onnx updated)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    w = numpy_helper.from_array(np.full((1, 5, 1, 1), 0.01, np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["delta"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 5, "H", "W"])],
                          [helper.make_tensor_value_info("delta", TensorProto.FLOAT, ["N", 1, "H", "W"])],
                          initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, str(root / "refiner.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (root / "weights.bin").is_file()
    rehash(root, "refiner.onnx")


@pytest.mark.parametrize("cwd", ["elsewhere", "bundle"])
def test_onnx_weights_from_an_unlisted_file_are_refused(tmp_path, monkeypatch, cwd):
    """An .onnx whose weights live in a sibling external-data file: the manifest hashes only the .onnx,
    so the runtime loads the verified bytes and such a model cannot pull the unhashed file in."""
    root = make_bundle(tmp_path / "b")
    _external_refiner(root)
    monkeypatch.chdir(root if cwd == "bundle" else tmp_path)  # (ORT looks for it beside a path-less model too)
    with pytest.raises(RuntimeError) as e:
        open_pipeline(root)
    one_line(e, str(root / "refiner.onnx"), "ONNX Runtime could not load the model")


def test_build_engine_refuses_external_data_from_a_source_bundle(tmp_path, capsys):
    """`export.build_engine --checkpoints BUNDLE` reads the verified bytes too: an .onnx whose weights
    sit in an unlisted file fails in one line, and no bundle is written."""
    from export.build_engine import main as build_main

    root = make_bundle(tmp_path / "b")
    _external_refiner(root)
    rc = build_main(["--checkpoints", str(root), "--onnx-only", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and not (tmp_path / "o" / "manifest.json").exists()
    one_line(err.splitlines()[-1], "refiner.onnx", "external-data file the manifest does not list")


# ------------------------------------------------------------------ fuzz hand-edited manifests

JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 600), st.floats(allow_nan=True),
                        st.text(max_size=6), st.lists(st.integers(-1, 5), max_size=5),
                        st.dictionaries(st.text(max_size=4), st.integers(0, 3), max_size=2))


@st.composite
def manifest_edits(draw):
    """A few random edits of a valid manifest: a field dropped or replaced by any JSON value, top level,
    in an artifact entry, or inside its inputs / outputs / fixed_size."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "artifact", "io"]))
        key = draw(st.sampled_from({
            "top": ["schema", "name", "model_res", "refine_res", "artifacts", "producer", "base", "base_stages",
                    "runtime"],
            "artifact": ["stage", "file", "format", "precision", "contract", "sha256", "inputs", "outputs",
                         "contract_version", "size_multiple", "fixed_size", "layout", "engine"],
            "io": ["inputs", "outputs"]}[where]))
        edits.append((where, key, draw(st.integers(0, 2)), draw(st.booleans()), draw(JSON_VALUES)))
    return edits


def _apply(m: dict, edits) -> None:
    for where, key, i, drop, value in edits:
        arts = m.get("artifacts")
        target = m
        if where != "top":
            if not isinstance(arts, list) or not arts or not isinstance(arts[i % len(arts)], dict):
                continue
            target = arts[i % len(arts)]
            if where == "io":
                if not isinstance(target.get(key), dict) or not target[key]:
                    continue
                target, key = target[key], next(iter(target[key]))
        if drop:
            target.pop(key, None)
        else:
            target[key] = value


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("manifest-fuzz") / "b")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=manifest_edits())
def test_fuzz_hand_edited_manifests(pristine, tmp_path_factory, edits):
    """Any edit gives a working pipeline or a one-line BundleError naming the bundle; nothing else."""
    root = tmp_path_factory.mktemp("m") / "b"
    shutil.copytree(pristine, root)
    edit_manifest(root, lambda m: _apply(m, edits))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = Pipeline(PipelineConfig(bundle=str(root), threads=1))  # the manifest's own resolutions
    except BundleError as e:
        one_line(str(e), str(root))
        event("refused")
        return
    with p:  # accepted: then it must also run
        m = p.process(disc_frame(48, 64))
        assert m.alpha.shape == (48, 64) and np.isfinite(m.alpha).all()
    event("still valid")


@pytest.mark.parametrize("description, words", [
    ("[1, 2]", "not a checkpoint description"),
    ('{"model": 5}', "not a checkpoint description"),
    ('{"model": {"kind": "matting", "nonsense": 1}}', "model description does not build a matting model"),
    ('{"model": {"kind": "matting", "widths": "abc"}}', "model description does not build a matting model"),
    ('{"model": {"kind": "matting", "widths": [4, 8]}}', "weights do not fit"),
    ('{"model": {"kind": "matting", "widths": [8, 16], "expand": -1}}', "does not build a matting model"),
    ("{not json", "unreadable checkpoint description"),
])
def test_training_checkpoint_with_an_edited_description(tmp_path, description, words):
    from training import checkpoint
    from training.models import build_model, default_config

    checkpoint.save(tmp_path, build_model(default_config("matting")), "matting", {})
    (tmp_path / "matting.json").write_text(description)
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load(tmp_path, "matting")
    one_line(e, "matting.", words)


@pytest.mark.parametrize("change, words", [
    (lambda m: m["model"].update(widths="abc"), "model description does not build a matting model"),
    (lambda m: m["model"].update(expand=-1), "model description does not build a matting model"),
    (lambda m: m["model"].update(widths=[4, 8]), "weights do not fit"),
    (lambda m: m.update(model=5), "not a checkpoint description"),
])
def test_export_checkpoint_with_an_edited_description(tmp_path, change, words):
    from export.checkpoints import CheckpointError, load_checkpoint, random_model, save_checkpoint

    save_checkpoint(random_model("matting"), tmp_path)
    meta = json.loads((tmp_path / "matting.json").read_text())
    change(meta)
    (tmp_path / "matting.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path, "matting")
    assert len(str(e.value)) < 400
    one_line(e, "matting.", words)


def test_output_that_is_the_input_is_refused(tmp_path, monkeypatch, capsys):
    """`run -i c.mp4 -o ./c.mp4` and `batch c.mp4 shots/ -o .` used to replace the input by the output (for
    an image folder, the rename deleted the original pictures). Refused in one line, inputs untouched."""
    from wbg_edge.cli import main

    monkeypatch.chdir(tmp_path)
    clip = _clip(tmp_path / "c.mp4")
    (tmp_path / "shots").mkdir()
    cv2.imwrite(str(tmp_path / "shots" / "0.png"), np.full((40, 56, 3), 120, np.uint8))
    before = {p: p.read_bytes() for p in (clip, tmp_path / "shots" / "0.png")}
    for args in (["run", "-i", "c.mp4", "-o", "./c.mp4"], ["batch", "c.mp4", "-o", "."],
                 ["batch", "shots", "-o", str(tmp_path)]):
        rc = main([*args, *CLI_FAST])
        err = capsys.readouterr().err
        assert rc == 1
        one_line(err.strip(), "is the input itself")
        assert {p: p.read_bytes() for p in before} == before
        assert [p.name for p in (tmp_path / "shots").iterdir()] == ["0.png"]


@pytest.mark.parametrize("name", ["half.png", "half.jpg", "text.jpg", "empty.png", "notes.txt"])
def test_bad_background_image_is_refused_with_the_arguments(damaged, tmp_path, name, capfd):
    from wbg_edge.cli import main

    rc = main(["run", "-i", str(damaged / "full.png"), "-o", str(tmp_path / "out") + "/", "--background",
               str(damaged / name), "-q", *CLI_FAST])
    err = capfd.readouterr().err
    assert rc == 2 and not (tmp_path / "out").exists()  # an argument error: nothing opened, nothing written
    one_line(err.strip(), "--background", name, "not a readable image file")


def _run_options() -> list[tuple[str, bool]]:
    """(long option, takes a value) for every `run` option but input, output, help and --live (a live
    source that ends is reopened for as long as it gives frames, by design: a 2-frame clip never ends)."""
    from wbg_edge.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    return sorted((o, a.nargs != 0) for a in run._actions for o in a.option_strings
                  if o.startswith("--") and o not in ("--help", "--input", "--out", "--output-path", "--live"))


VALUES = ["-1", "0", "1", "3", "7", "32", "64", "100", "1e9", "nan", "inf", "abc", "", "#zz", "0.5", "2", "/no/x"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=st.lists(st.tuples(st.sampled_from(_run_options()), st.sampled_from(VALUES)), max_size=4))
def test_fuzz_run_options_run_or_give_one_line(opts, capsys):
    """Random `run` options and values on a 2-frame synthetic clip: the run completes (0), or an argument
    (2) or config (1) error in one line; never a traceback."""
    from wbg_edge.cli import main

    args = [x for (o, takes_value), v in opts for x in ((o, v) if takes_value else (o,))]
    rc = main(["run", "-i", "synthetic://?size=64x48&frames=2", "-o", "null", "-q", *args])
    err = capsys.readouterr().err
    assert rc in (0, 1, 2), (args, err)
    assert "Traceback" not in err, err
    if rc:
        one_line(err.strip())
    event(f"rc {rc}")
