"""`wbg-edge batch` follows `wbg-edge run`'s rules for backgrounds and containers, and takes folders of videos.

Each test runs the real command (the shipped bundle, tiny clips) and compares with `run` where the
rule is run's: the output mode is decided once, in wbg_edge.settings, for both commands.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_batch import png_frames, write_clip

from wbg_edge.batch import STATE_DIR, BatchConfig, BatchError, Job, expand_inputs, run_batch
from wbg_edge.cli import main
from wbg_edge.settings import PipelineConfig
from wbg_edge.sinks import have_av


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("rules") / "c1.mp4", 8, 1)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_same_frames(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    assert len(got) == len(want) > 0, what
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True)), what


@pytest.mark.parametrize("background", ["none", "transparent"])
def test_no_background_keeps_alpha_in_png(tmp_path, clip, capsys, background):
    """`--background none|transparent --format png`: every frame BGRA, as `run` writes them."""
    out = tmp_path / "batch"
    rc, stdout, err = run_cli(capsys, "batch", clip, "-o", out, "--workers", "1", "--background", background,
                              "--format", "png")
    assert rc == 0 and "1 done" in stdout, err
    got = png_frames(out / "c1")
    assert len(got) == 8 and all(f.ndim == 3 and f.shape[2] == 4 for f in got)
    assert any(f[..., 3].min() < 128 < f[..., 3].max() for f in got)  # a matte, not an opaque frame
    ran = tmp_path / "run"
    assert run_cli(capsys, "run", "-i", clip, "-o", f"{ran}/", "--background", background, "-q")[0] == 0
    assert_same_frames(got, png_frames(ran), f"batch vs run, --background {background}")


def test_no_flags_makes_what_run_makes(tmp_path, clip, capsys):
    """No --output and no --background: PNG outputs keep alpha (run's default for them)."""
    out = tmp_path / "batch"
    assert run_cli(capsys, "batch", clip, "-o", out, "--workers", "1", "--format", "png")[0] == 0
    ran = tmp_path / "run"
    assert run_cli(capsys, "run", "-i", clip, "-o", f"{ran}/", "-q")[0] == 0
    assert png_frames(out / "c1")[0].shape[2] == 4
    assert_same_frames(png_frames(out / "c1"), png_frames(ran), "batch vs run without flags")


@pytest.mark.parametrize("flags", [["--background", "transparent"], ["--background", "none"],
                                   ["--output", "rgba"]])
def test_alpha_into_mp4_refused_before_any_work(tmp_path, clip, capsys, flags):
    """An mp4 has no alpha channel: one line naming the input and what keeps alpha; nothing written."""
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "batch", clip, "-o", out, *flags)
    lines = err.strip().splitlines()
    assert rc == 1 and stdout == "" and "Traceback" not in err
    assert len(lines) == 1 and str(clip) in lines[0] and "--format mov, webm or png" in lines[0], err
    assert not list(out.glob("*")) or [p.name for p in out.iterdir()] == [STATE_DIR]
    assert not (out / STATE_DIR / "tmp").exists()


def test_alpha_into_mp4_refused_by_the_library(tmp_path, clip):
    job = Job(PipelineConfig(background="none"), str(tmp_path / "o"), format="same")
    with pytest.raises(BatchError, match="cannot store --output rgba"):
        run_batch([clip], BatchConfig(outdir=tmp_path / "o"), job)


@pytest.mark.skipif(not have_av(), reason="needs PyAV for .mov with alpha")
def test_no_background_keeps_alpha_in_mov(tmp_path, clip, capsys):
    import av

    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "batch", clip, "-o", out, "--workers", "1", "--background", "none",
                              "--format", "mov")
    assert rc == 0, err
    with av.open(str(out / "c1.mov")) as c:
        frames = [f.to_ndarray(format="bgra") for f in c.decode(video=0)]
    assert len(frames) == 8 and any(f[..., 3].min() < 128 < f[..., 3].max() for f in frames)


def test_folder_of_videos(tmp_path, capsys):
    """A folder holding videos is its videos (images beside them are left out, said in one line); a folder
    of images stays one image-sequence input; a list file naming the folder does the same."""
    takes = tmp_path / "takes"
    takes.mkdir()
    write_clip(takes / "b.mp4", 6, 2)
    write_clip(takes / "a.mp4", 5, 3)
    cv2.imwrite(str(takes / "poster.jpg"), np.zeros((8, 8, 3), np.uint8))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((96, 160, 3), 60 * i, np.uint8))
    notes: list[str] = []
    assert expand_inputs([takes, frames], notes) == [takes / "a.mp4", takes / "b.mp4", frames]
    assert len(notes) == 1 and "1 image file" in notes[0] and str(takes) in notes[0]
    lst = tmp_path / "list.txt"
    lst.write_text("takes\n")
    assert expand_inputs([lst]) == [takes / "a.mp4", takes / "b.mp4"]

    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "batch", takes, frames, "-o", out, "--workers", "2")
    assert rc == 0 and "3 done, 0 skipped, 0 failed" in stdout, stdout + err
    assert "poster" not in stdout and "image file(s) are left out" in err
    for name, n in (("a.mp4", 5), ("b.mp4", 6)):
        cap = cv2.VideoCapture(str(out / name))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        cap.release()
    assert len(png_frames(out / "frames")) == 3
    summary = json.loads((out / "batch-summary.json").read_text())
    assert [i["output"] for i in summary["items"]] == ["a.mp4", "b.mp4", "frames"]
