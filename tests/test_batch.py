"""`wbg-edge batch` with real components: the shipped bundle, real clips, a local Ray and a local pool.

Tiny clips (8-12 frames at 160x96) keep the whole file to well under a minute on 2 cores. Outputs are
written as PNG folders (`format="png"`) so frames compare exactly with the Pipeline run directly.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from wbg_edge.batch import (
    STATE_DIR,
    BatchConfig,
    BatchError,
    Job,
    expand_inputs,
    output_name,
    run_batch,
    split_units,
)

REPO = Path(__file__).resolve().parents[1]
SIZE = (160, 96)


def write_clip(path: Path, frames: int, seed: int, size: tuple[int, int] = SIZE) -> Path:
    """A disc moving over a noisy background; mp4v like a phone or a camera would give."""
    w, h = size
    rng = np.random.default_rng(seed)
    bg = cv2.blur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    assert out.isOpened()
    for i in range(frames):
        f = bg.copy()
        cv2.circle(f, (int(w * (0.25 + 0.5 * i / frames)), h // 2), h // 3, (30 + 20 * seed, 120, 210), -1)
        out.write(f)
    out.release()
    return path


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    c = {f"c{i}": write_clip(d / f"c{i}.mp4", n, i) for i, n in ((1, 8), (2, 10), (3, 12))}
    bad = d / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    c["bad"] = bad
    return c


@pytest.fixture(scope="session")
def pipeline_config():
    from wbg_edge.pipeline import PipelineConfig

    return PipelineConfig()


@pytest.fixture(scope="session")
def reference(pipeline_config):
    """Frames as `wbg-edge run` makes them, computed here without the batch code: every decoded frame
    through one Pipeline, in order, turned into the sink's image as the run loop does."""
    from wbg_edge.pipeline import Pipeline
    from wbg_edge.sources import open_source
    from wbg_edge.stream import output_image

    cache: dict[str, list[np.ndarray]] = {}

    def frames_of(clip: Path) -> list[np.ndarray]:
        if str(clip) not in cache:
            pipe = Pipeline(dataclasses.replace(pipeline_config, threads=1))
            out = []
            with open_source(str(clip), live=False) as src:
                while not src.finished:
                    f = src.read(timeout=1.0)
                    if f is not None:
                        out.append(output_image(pipe.process(f.image), pipe.mode).copy())
            pipe.close()
            cache[str(clip)] = out
        return cache[str(clip)]

    return frames_of


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray (2 CPUs) for the session; `run_batch(ray="auto")` reuses it instead of starting one."""
    ray = pytest.importorskip("ray")
    env = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{REPO}{os.pathsep}{env}" if env else str(REPO)  # Ray workers import wbg_edge
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20, log_to_driver=False)
        yield ray
        ray.shutdown()
    finally:
        if env is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env


def png_frames(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in sorted(folder.glob("*.png"))]


def only_outputs(outdir: Path) -> list[str]:
    """What a user sees in OUTDIR: the outputs and the summary, no temp or partial files."""
    return sorted(p.name for p in outdir.iterdir() if p.name != STATE_DIR)


def assert_three_clips_done(report, out, clips, reference):
    """Every clip done, its frames equal to the Pipeline run directly, and nothing else left in `out`."""
    assert [i.status for i in report.items] == ["done"] * 3, [i.error for i in report.items]
    for name in ("c1", "c2", "c3"):
        got, want = png_frames(out / name), reference(clips[name])
        assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert only_outputs(out) == ["batch-summary.json", "c1", "c2", "c3"]


def run_batch_killing_one(victim, poll_s: float, clips, cfg: BatchConfig, job: Job):
    """Run the three clips while a thread SIGKILLs the first process `victim()` names (it returns a pid
    or None); asserts that one was killed and returns the report."""
    stop, killed = threading.Event(), []

    def killer():
        while not stop.is_set() and not killed:
            pid = victim()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(poll_s)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        report = run_batch([clips["c1"], clips["c2"], clips["c3"]], cfg, job)
    finally:
        stop.set()
        t.join()
    assert killed
    return report


def make_job(cfg, outdir: Path, fmt: str = "png") -> Job:
    return Job(cfg, str(outdir), format=fmt, threads=1)


# ---------------------------------------------------------------- planning (no workers)

def test_list_file_and_names(tmp_path, clips):
    lst = tmp_path / "inputs.txt"
    lst.write_text(f"# takes\n{clips['c1']}\n\n{clips['c2']}\n{clips['c1']}\n")
    assert expand_inputs([lst, clips["c3"]]) == [clips["c1"], clips["c2"], clips["c3"]]
    units = split_units("long.mp4", "long.mp4", "video", 1000, 300, 8)
    assert [(u.start, u.stop, u.warmup) for u in units] == [(0, 333, 0), (333, 667, 8), (667, None, 8)]
    assert len(split_units("a.mp4", "a.mp4", "video", 400, 300, 8)) == 1
    assert [output_name(Path(p), k, f) for p, k, f in (("a/c.mov", "video", "same"), ("c.ts", "video", "same"),
            ("c.mp4", "video", "mov"), ("c.mp4", "video", "png"), ("d/takes", "images", "same"),
            ("takes", "images", "mp4"))] == ["c.mov", "c.mp4", "c.mov", "c", "takes", "takes.mp4"]


def test_clashing_names_refused(tmp_path, clips, pipeline_config):
    other = tmp_path / "x"
    other.mkdir()
    twin = write_clip(other / "c1.mp4", 4, 9)
    with pytest.raises(BatchError, match="clashes"):
        run_batch([clips["c1"], twin], BatchConfig(outdir=tmp_path / "o"), make_job(pipeline_config, tmp_path / "o"))


def test_one_job_per_outdir(tmp_path, clips, pipeline_config):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "o"
    (out / STATE_DIR).mkdir(parents=True)
    with open(out / STATE_DIR / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(BatchError, match="another wbg-edge batch job"):
            run_batch([clips["c1"]], BatchConfig(outdir=out), make_job(pipeline_config, out))


# ---------------------------------------------------------------- Ray

def test_ray_three_clips_match_run_and_corrupt_reported(tmp_path, clips, ray_cluster, pipeline_config, reference):
    out = tmp_path / "out"
    inputs = [clips["c1"], clips["bad"], clips["c2"], clips["c3"]]
    report = run_batch(inputs, BatchConfig(outdir=out, workers=2, ray="auto"), make_job(pipeline_config, out))
    status = {Path(i.input).name: i for i in report.items}
    assert status["bad.mp4"].status == "failed" and "bad.mp4" in status["bad.mp4"].error
    for name in ("c1", "c2", "c3"):
        assert status[f"{name}.mp4"].status == "done", status[f"{name}.mp4"].error
        got, want = png_frames(out / name), reference(clips[name])
        assert len(got) == len(want) > 0
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert np.array_equal(g, w), f"{name} frame {i} differs from the Pipeline run directly"
    assert only_outputs(out) == ["batch-summary.json", "c1", "c2", "c3"]
    summary = json.loads((out / "batch-summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["executor"]) == (3, 1, "ray")


def test_ray_chunks_stitched_in_order(tmp_path, clips, ray_cluster, pipeline_config, reference):
    """A 12-frame clip cut into 3 chunks of 4 (warmed by 2 frames) comes back whole, in order, and (with
    the default config: no smoothing, depth every frame) equal to one pass over the whole clip."""
    out = tmp_path / "out"
    cfg = BatchConfig(outdir=out, workers=2, ray="auto", chunk_frames=4, overlap=2)
    report = run_batch([clips["c3"]], cfg, make_job(pipeline_config, out))
    assert report.items[0].status == "done" and len(report.items[0].units) == 3
    got, want = png_frames(out / "c3"), reference(clips["c3"])
    assert len(got) == len(want) == 12
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(g, w), f"frame {i} differs after stitching"
    assert not (out / STATE_DIR / "parts").exists()


def _ray_actor_pids() -> list[int]:
    """PIDs of the batch's Ray actors (Ray titles its worker processes after the actor class)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"RayUnitWorker" in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray actor processes through /proc")
def test_ray_actor_killed_is_retried(tmp_path, clips, ray_cluster, pipeline_config, reference):
    """SIGKILL one Ray actor mid-job: Ray restarts it and retries its Unit; outputs whole, none doubled."""
    out = tmp_path / "out"

    def victim():  # an actor, once it has had half a second to start work
        pids = _ray_actor_pids()
        if pids:
            time.sleep(0.5)
        return pids[0] if pids else None

    report = run_batch_killing_one(victim, 0.05, clips, BatchConfig(outdir=out, workers=2, ray="auto"),
                                   make_job(pipeline_config, out))
    assert_three_clips_done(report, out, clips, reference)


# ---------------------------------------------------------------- local pool

def test_local_pool_video_output_and_resume(tmp_path, clips, pipeline_config):
    out = tmp_path / "out"
    inputs = [clips["c1"], clips["c2"], clips["bad"]]
    job = make_job(pipeline_config, out, fmt="same")
    report = run_batch(inputs, BatchConfig(outdir=out, workers=2), job)
    assert [i.status for i in report.items] == ["done", "done", "failed"]
    for name, n in (("c1", 8), ("c2", 10)):
        cap = cv2.VideoCapture(str(out / f"{name}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        cap.release()
    again = run_batch(inputs, BatchConfig(outdir=out, workers=2, resume=True), job)
    assert [i.status for i in again.items] == ["skipped", "skipped", "failed"]
    os.utime(clips["c2"])  # a touched input is done again
    third = run_batch(inputs, BatchConfig(outdir=out, workers=2, resume=True), job)
    assert [i.status for i in third.items] == ["skipped", "done", "failed"]
    assert only_outputs(out) == ["batch-summary.json", "c1.mp4", "c2.mp4"]


def as_images(video: Path, folder: Path, ext: str) -> int:
    """The video's frames as img000<ext>, img001<ext> ... in folder; how many."""
    cap = cv2.VideoCapture(str(video))
    n = 0
    while (ok := cap.read())[0]:
        cv2.imwrite(str(folder / f"img{n:03d}{ext}"), ok[1])
        n += 1
    return n


def test_image_folder_gives_a_folder(tmp_path, clips, pipeline_config):
    """An image folder comes back as a folder of as many PNGs; with --format mp4 as a video."""
    frames = tmp_path / "takes"
    frames.mkdir()
    n = as_images(clips["c1"], frames, ".jpg")
    out = tmp_path / "out"
    run_batch([frames], BatchConfig(outdir=out, workers=1), make_job(pipeline_config, out, fmt="same"))
    assert len(png_frames(out / "takes")) == n == 8
    run_batch([frames], BatchConfig(outdir=out, workers=1), make_job(pipeline_config, out, fmt="mp4"))
    cap = cv2.VideoCapture(str(out / "takes.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n


def test_local_pool_worker_killed_is_retried(tmp_path, clips, pipeline_config, reference):
    """SIGKILL a pool worker mid-Unit: the Units running then are retried alone, the others run again;
    outputs whole, none doubled, nothing reported failed."""
    import multiprocessing

    out = tmp_path / "out"

    def victim():  # a pool worker, once a Unit is running (its marker file exists)
        kids = multiprocessing.active_children()
        return kids[0].pid if kids and list((out / STATE_DIR / "tmp").glob("running-*")) else None

    report = run_batch_killing_one(victim, 0.01, clips, BatchConfig(outdir=out, workers=2),
                                   make_job(pipeline_config, out))
    assert_three_clips_done(report, out, clips, reference)


def test_killed_job_resumes_without_duplicates(tmp_path, pipeline_config):
    """Kill a running job (whole process group) once its first output is complete (its record written);
    --resume skips what is complete and finishes the rest, leaving no duplicate or partial file."""
    src = tmp_path / "in"
    src.mkdir()
    clips = [write_clip(src / f"k{i}.mp4", 24, i, size=(320, 192)) for i in range(4)]
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from wbg_edge.batch import BatchConfig, Job, run_batch
        from wbg_edge.pipeline import PipelineConfig
        if __name__ == "__main__":
            out = Path({str(out)!r})
            cfg = BatchConfig(outdir=out, workers=1, resume="--resume" in sys.argv)
            r = run_batch({[str(c) for c in clips]!r}, cfg,
                          Job(PipelineConfig(), str(out), format="png", threads=1), stream=sys.stderr)
            print(",".join(i.status for i in r.items))
    """)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any((out / STATE_DIR / f"{c.stem}.json").is_file() for c in clips):  # first output complete
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"job ended before it could be killed: {proc.communicate()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = only_outputs(out)
    assert 1 <= len(first) < len(clips)
    done = subprocess.run([sys.executable, "-c", script, "--resume"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    statuses = done.stdout.strip().splitlines()[-1].split(",")
    assert statuses.count("skipped") >= len(first) and set(statuses) <= {"skipped", "done"}
    assert only_outputs(out) == sorted(["batch-summary.json"] + [c.stem for c in clips])
    for c in clips:
        assert len(png_frames(out / c.stem)) == 24
    assert not (out / STATE_DIR / "tmp").exists()


# ---------------------------------------------------------------- the command line

def test_cli_batch_equals_cli_run(tmp_path, clips, capsys):
    """`wbg-edge batch` and `wbg-edge run` with the same options write the same frames (PNG, lossless)."""
    from wbg_edge.cli import main

    out = tmp_path / "batch"
    rc = main(["batch", str(clips["c1"]), str(clips["bad"]), str(clips["c2"]), "-o", str(out), "--workers", "2",
               "--format", "png", "--mode", "composite", "--background", "blue"])
    cap = capsys.readouterr()
    assert rc == 1 and "bad.mp4" in cap.err and "Traceback" not in cap.err
    assert "2 done, 0 skipped, 1 failed" in cap.out
    for name in ("c1", "c2"):
        ran = tmp_path / f"run-{name}"
        assert main(["run", "-i", str(clips[name]), "-o", f"{ran}/", "--mode", "composite", "--background", "blue",
                     "-q"]) == 0
        got, want = png_frames(out / name), png_frames(ran)
        assert len(got) == len(want) > 0
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True)), f"{name}: batch != run"


def assert_within_one_level(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    assert len(got) == len(want) > 0, what
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert np.abs(g.astype(np.int16) - w).max() <= 1, f"{what} frame {i} differs"


def test_cli_batch_size_4_equals_cli_run(tmp_path, clips, capsys):
    """--batch-size 4 (frames through Pipeline.process_batch) writes what `wbg-edge run` writes, frame for
    frame, for a video and an image folder, with temporal smoothing on."""
    from wbg_edge.cli import main

    folder = tmp_path / "takes"
    folder.mkdir()
    as_images(clips["c2"], folder, ".png")
    opts = ["--mode", "composite", "--background", "blue", "--smoothing", "0.4"]
    out = tmp_path / "batch"
    assert main(["batch", str(clips["c1"]), str(folder), "-o", str(out), "--workers", "1", "--format", "png",
                 "--batch-size", "4", "--chunk-frames", "0", *opts]) == 0
    assert "2 done" in capsys.readouterr().out
    for name, src in (("c1", clips["c1"]), ("takes", folder)):
        ran = tmp_path / f"run-{name}"
        assert main(["run", "-i", str(src), "-o", f"{ran}/", *opts, "-q"]) == 0
        assert_within_one_level(png_frames(out / name), png_frames(ran), f"{name}: batch-size 4 vs run:")


def test_batch_size_with_chunks_local_pool(tmp_path, clips, pipeline_config, reference):
    """Chunks of 4 frames warmed by 2 go through process_batch as 4 + 2: stitched whole, equal to the run."""
    out = tmp_path / "out"
    cfg = BatchConfig(outdir=out, workers=1, chunk_frames=4, overlap=2, batch_size=4)
    report = run_batch([clips["c3"]], cfg, make_job(pipeline_config, out))
    assert report.items[0].status == "done" and len(report.items[0].units) == 3
    assert_within_one_level(png_frames(out / "c3"), reference(clips["c3"]), "c3 chunked, batch-size 4:")
    with pytest.raises(BatchError, match="--batch-size") as e:
        run_batch([clips["c3"]], dataclasses.replace(cfg, batch_size=0), make_job(pipeline_config, out))
    assert "\n" not in str(e.value)


def test_cli_ray_missing_is_one_line(tmp_path, clips, capsys, monkeypatch):
    from wbg_edge.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [batch] extra were not installed
    rc = main(["batch", str(clips["c1"]), "-o", str(tmp_path / "o"), "--ray", "auto"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "wbg-edge[batch]" in err
