"""`wbg-edge run` outputs through real subprocesses: a SIGKILL mid-stream leaves a file that plays, with and
without PyAV; what is announced is what is written; bad codecs and mixed-size image folders."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from wbg_edge.sinks import have_av

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model-res", "64", "--refine-res", "64"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
# The CLI in a process where `import av` fails, as where PyAV is not installed (have_av() imports it).
NO_AV = 'import sys; sys.modules["av"] = None; from wbg_edge.cli import main; sys.exit(main(sys.argv[1:]))'
needs_av = pytest.mark.skipif(not have_av(), reason="PyAV is not installed")
LONG = "synthetic://?size=128x96&frames=100000"


def wbg_edge(*args, no_av=False):
    return [sys.executable, *(["-c", NO_AV] if no_av else ["-m", "wbg_edge"]), *args]


def frames_in(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def kill_once_written(cmd, folder: Path, pattern: str, min_bytes: int) -> Path:
    """Start `cmd`, wait until a file matching `pattern` in `folder` holds `min_bytes`, SIGKILL the process."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        t0 = time.time()
        while time.time() - t0 < 90:
            found = [p for p in folder.glob(pattern) if p.stat().st_size >= min_bytes]
            if found:
                break
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before it was killed: {proc.stderr.read().decode()}")
            time.sleep(0.05)
        else:
            raise AssertionError(f"no {pattern} of {min_bytes} bytes after 90 s")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return found[0]


@needs_av
def test_sigkill_mid_stream_leaves_a_visible_mp4_that_plays(tmp_path):
    """PyAV writes MP4 fragmented: killed mid-stream, the partial file (a visible name beside the target) plays
    up to its last fragment, in OpenCV and in PyAV; the target itself is never a half-written file."""
    import av

    out = tmp_path / "live.mp4"
    part = kill_once_written(wbg_edge("run", "-i", LONG, "-o", str(out), *FAST, "-q"), tmp_path,
                             "live.partial-*.mp4", 20_000)
    assert not out.exists() and not part.name.startswith(".")
    assert [p.name for p in tmp_path.iterdir()] == [part.name]
    assert frames_in(part) >= 1
    with av.open(str(part)) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 1


def test_sigkill_mid_stream_without_pyav_leaves_a_matroska_copy_that_plays(tmp_path):
    """OpenCV cannot fragment MP4 (its index comes last: a killed .mp4 has no moov atom and is lost), so without
    PyAV the frames also go to <name>.partial-<pid>.mkv, which plays after the kill."""
    out = tmp_path / "live.mp4"
    mkv = kill_once_written(wbg_edge("run", "-i", LONG, "-o", str(out), *FAST, "-q", no_av=True), tmp_path,
                            "live.partial-*.mkv", 100_000)
    assert not out.exists()
    assert frames_in(mkv) >= 1


def test_without_pyav_a_finished_run_leaves_only_the_target(tmp_path):
    out = tmp_path / "o.mp4"
    p = subprocess.run(wbg_edge("run", "-i", "synthetic://?size=128x96&frames=12", "-o", str(out), *FAST,
                                no_av=True), capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr
    assert [x.name for x in tmp_path.iterdir()] == ["o.mp4"] and frames_in(out) == 12


def test_unknown_codec_without_pyav_fails_in_one_line_naming_it(tmp_path):
    """`--codec nosuchcodec` was ignored without PyAV (an mp4v file was written)."""
    p = subprocess.run(wbg_edge("run", "-i", "synthetic://?size=64x48&frames=3", "-o", str(tmp_path / "o.mp4"),
                                "--codec", "nosuchcodec", *FAST, no_av=True),
                       capture_output=True, text=True, env=ENV, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "nosuchcodec" in lines[-1] and len([ln for ln in lines if "nosuchcodec" in ln]) == 1
    assert list(tmp_path.iterdir()) == []


@needs_av
def test_unknown_codec_with_pyav_fails_before_the_first_frame(tmp_path):
    p = subprocess.run(wbg_edge("run", "-i", "synthetic://?size=64x48&frames=3", "-o", str(tmp_path / "o.mp4"),
                                "--codec", "nosuchcodec", *FAST), capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 1 and "nosuchcodec" in p.stderr.strip().splitlines()[-1]
    assert "NoneType" not in p.stderr and list(tmp_path.iterdir()) == []


def test_avi_without_pyav_announces_what_it_writes(tmp_path):
    """An .avi through OpenCV is MJPG: nothing on stderr may say mp4v."""
    out = tmp_path / "o.avi"
    p = subprocess.run(wbg_edge("run", "-i", "synthetic://?size=64x48&frames=3", "-o", str(out), *FAST,
                                no_av=True), capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"MJPG"
    cap.release()
    assert "MJPG" in p.stderr and "mp4v" not in p.stderr.lower()


def test_image_folder_of_mixed_sizes_to_png_folder_keeps_sizes_and_names(tmp_path):
    """`run -i shots/ -o out/`: every frame at its own size under its own name, no resize warning (frames were
    squashed to the first size and renamed frame_000000.png ...)."""
    d = tmp_path / "shots"
    d.mkdir()
    rng = np.random.default_rng(2)
    sizes = {"wide.png": (60, 160), "small.jpg": (40, 48), "tall.png": (120, 64)}
    for name, (h, w) in sizes.items():
        cv2.imwrite(str(d / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    p = subprocess.run(wbg_edge("run", "-i", str(d), "-o", f"{tmp_path}/out/", "--background", "transparent", *FAST),
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr
    got = {f.name: cv2.imread(str(f), cv2.IMREAD_UNCHANGED).shape for f in (tmp_path / "out").iterdir()}
    assert got == {Path(n).stem + ".png": (h, w, 4) for n, (h, w) in sizes.items()}
    assert "resized" not in p.stderr and "PyAV" not in p.stderr
