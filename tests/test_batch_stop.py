"""Stopping `wbg-edge batch`: real processes, real signals, the local pool.

The first SIGINT / SIGTERM ends the job after the frames in flight: finished outputs recorded (so
`--resume` skips them), nothing half-made in OUTDIR, reported as interrupted, exit 130. A second
signal ends it at once, workers included. A chunked video stopped halfway resumes from its chunks.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_batch import REPO, assert_within_one_level, only_outputs, pipeline_config, png_frames, reference, write_clip

from wbg_edge.batch import STATE_DIR, BatchConfig, Job, run_batch

__all__ = ["pipeline_config", "reference"]  # fixtures used here

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir() or os.name != "posix",
                                reason="POSIX signals and process groups, looked up in /proc")


ENV = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def batch_cmd(*argv) -> list[str]:
    return [sys.executable, "-m", "wbg_edge", "batch", *map(str, argv)]


def start_batch(*argv) -> subprocess.Popen:
    """`wbg-edge batch ...` in a session of its own (its process group holds the driver and its workers)."""
    return subprocess.Popen(batch_cmd(*argv), env=ENV, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def live_in_group(pgid: int, grace_s: float = 5.0) -> list[int]:
    """Processes of the group still running after `grace_s` (the driver's exit closes the pipe that ends
    multiprocessing's resource tracker, a moment later); zombies left for init to reap do not count."""
    deadline = time.monotonic() + grace_s
    while (pids := _group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def _group(pgid: int) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)": state ppid pgrp ...
        if p.name.isdigit() and int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(p.name))
    return pids


def wait_for(what, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if proc.poll() is not None:
            pytest.fail(f"the job ended first: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the job")
        time.sleep(0.02)


def running(out: Path, name: str) -> bool:
    """Frames of output `name` (--format png) are being written in its staging folder."""
    return any((out / STATE_DIR / "tmp").glob(f"*/{name}/*.png"))


def end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_first_sigint_stops_after_frames_in_flight_and_resume_continues(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    clips = [write_clip(src / "a.mp4", 8, 1), write_clip(src / "b.mp4", 300, 2), write_clip(src / "c.mp4", 8, 3)]
    out = tmp_path / "out"
    args = [*clips, "-o", out, "--workers", "1", "--format", "png", "--chunk-frames", "0"]
    proc = start_batch(*args)
    try:  # a is finished and recorded, b is under way, c waits
        wait_for(lambda: (out / STATE_DIR / "a.json").is_file() and running(out, "b"), proc)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGINT)  # the driver alone, as a supervisor or `kill -INT` would
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        end(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr.strip().splitlines()[-1]
    assert "3 done" not in stdout and "0 failed, 2 interrupted" in stdout
    summary = json.loads((out / "batch-summary.json").read_text())
    items = {Path(i["input"]).stem: i for i in summary["items"]}
    assert summary["stopped_early"] and [items[k]["status"] for k in "abc"] == ["done", "interrupted", "interrupted"]
    made = re.search(r"stopped (\d+) frames into it", items["b"]["error"])
    assert made and int(made.group(1)) < 300, items["b"]["error"]  # not run to its end
    assert only_outputs(out) == ["a", "batch-summary.json"]  # nothing half-made
    assert not live_in_group(proc.pid)

    again = subprocess.run(batch_cmd(*args, "--resume"), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    items = {Path(i["input"]).stem: i for i in json.loads((out / "batch-summary.json").read_text())["items"]}
    assert [items[k]["status"] for k in "abc"] == ["skipped", "done", "done"]
    assert [len(png_frames(out / k)) for k in "abc"] == [8, 300, 8]


def test_second_ctrl_c_stops_at_once(tmp_path):
    """Ctrl-C twice at a terminal (SIGINT to the whole process group, workers too): the job ends within
    seconds although each 720p clip takes half a minute, no worker is left, nothing half-made in OUTDIR."""
    src = tmp_path / "in"
    src.mkdir()
    clips = [write_clip(src / f"hd{i}.mp4", 150, i, size=(1280, 720)) for i in range(2)]
    out = tmp_path / "out"
    proc = start_batch(*clips, "-o", out, "--workers", "2", "--format", "png")
    try:
        wait_for(lambda: running(out, "hd0") and running(out, "hd1"), proc)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.15)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        end(proc)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert "interrupted" in stderr.strip().splitlines()[-1]
    assert took < 10, f"took {took:.1f} s after the second Ctrl-C"
    assert not live_in_group(proc.pid)
    assert [p.name for p in out.iterdir() if p.name not in (STATE_DIR, "batch-summary.json")] == []


def test_stopped_chunked_video_resumes_from_its_finished_chunks(tmp_path, pipeline_config, reference):
    """Stop a job once the first chunk of a 40-frame video (10 chunks of 4) is recorded: the chunks
    finished by then are kept; --resume runs only the others and stitches all of them in order."""
    clip = write_clip(tmp_path / "long.mp4", 40, 4)
    out = tmp_path / "out"
    cfg = BatchConfig(outdir=out, workers=1, chunk_frames=4, overlap=2)
    job = Job(pipeline_config, str(out), format="png", threads=1)
    stop, seen = threading.Event(), threading.Event()

    def watch():
        while not seen.is_set():
            if list((out / STATE_DIR / "parts" / "long").glob("*.json")):
                stop.set()
                return
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        first = run_batch([clip], cfg, job, stop=stop)
    finally:
        seen.set()
        t.join()
    item = first.items[0]
    assert first.interrupted and item.status == "interrupted" and "rerun with --resume" in item.error
    kept = int(re.search(r"(\d+) of 10 chunks kept", item.error).group(1))
    assert 1 <= kept < 10
    assert only_outputs(out) == ["batch-summary.json"]

    second = run_batch([clip], BatchConfig(outdir=out, workers=1, chunk_frames=4, overlap=2, resume=True), job)
    assert not second.interrupted and second.items[0].status == "done"
    assert second.items[0].resumed_units == kept
    assert_within_one_level(png_frames(out / "long"), reference(clip), "resumed chunks stitched:")
    assert only_outputs(out) == ["batch-summary.json", "long"] and not (out / STATE_DIR / "parts").exists()
