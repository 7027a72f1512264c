"""Sinks write real files that OpenCV / PyAV read back; failures leave playable output."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wbg_edge.sinks import PngSink, RawPipeSink, SinkError, VideoSink, have_av, open_sink

needs_av = pytest.mark.skipif(not have_av(), reason="PyAV (the [video] extra) is not installed")
W, H = 96, 64


def frames_bgra(n=8, w=W, h=H):
    out = []
    for i in range(n):
        f = np.zeros((h, w, 4), np.uint8)
        f[..., 0] = 40 + 10 * i
        f[..., 1] = 120
        f[..., 2] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        yy, xx = np.mgrid[:h, :w]
        f[..., 3] = np.clip(255 - np.hypot(yy - h / 2, xx - (10 + 8 * i)) * 6, 0, 255).astype(np.uint8)
        out.append(f)
    return out


def count_cv2(path) -> tuple[int, tuple]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, img = cap.read()
        if not ok:
            break
        n, shape = n + 1, img.shape
    cap.release()
    return n, shape


@pytest.mark.parametrize("name, encoder", [("out.mp4", "auto"), ("out.mp4", "opencv"), ("out.avi", "opencv"),
                                           pytest.param("out.mkv", "av", marks=needs_av)])
def test_video_file_round_trips_through_opencv(tmp_path, name, encoder):
    path = tmp_path / name
    with open_sink(str(path), fps=25, encoder=encoder) as sink:
        for f in frames_bgra(9):
            sink.write(f[..., :3].copy())
        assert not path.exists()  # written under a temporary name until close
    assert count_cv2(path) == (9, (H, W, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no leftovers


def test_alpha_only_video(tmp_path):
    path = tmp_path / "alpha.mp4"
    with open_sink(str(path), fps=25) as sink:
        for f in frames_bgra(5):
            sink.write(f[..., 3].copy())
    n, shape = count_cv2(path)
    assert (n, shape) == (5, (H, W, 3))


@needs_av
@pytest.mark.parametrize("name, codec, tol", [("a.mov", None, 1.0), ("q.mov", "qtrle", 0.0)])
def test_mov_keeps_alpha_through_pyav(tmp_path, name, codec, tol):
    import av
    src = frames_bgra(6)
    with open_sink(str(tmp_path / name), fps=25, codec=codec) as sink:
        for f in src:
            sink.write(f)
    with av.open(str(tmp_path / name)) as c:
        got = [fr.to_ndarray(format="bgra") for fr in c.decode(video=0)]
    assert len(got) == 6
    for a, b in zip(got, src, strict=True):
        assert np.abs(a[..., 3].astype(int) - b[..., 3]).mean() <= tol
    assert count_cv2(tmp_path / name)[0] == 6  # OpenCV plays it too (without alpha)


@needs_av
def test_webm_vp9_keeps_alpha_with_libvpx_decoder(tmp_path):
    import av
    src = frames_bgra(6)
    with open_sink(str(tmp_path / "a.webm"), fps=25) as sink:
        for f in src:
            sink.write(f)
    with av.open(str(tmp_path / "a.webm")) as c:
        ctx = av.CodecContext.create("libvpx-vp9", "r")  # the default vp9 decoder drops alpha (DESIGN 6)
        got = [fr.to_ndarray(format="bgra") for p in c.demux(video=0) for fr in ctx.decode(p)]
    assert len(got) == 6
    assert np.abs(got[3][..., 3].astype(int) - src[3][..., 3]).mean() < 4


@pytest.mark.parametrize("target", ["seq/", "seq/%04d.png"])
def test_png_sequence_round_trips_rgba_exactly(tmp_path, target):
    src = frames_bgra(4)
    with open_sink(f"{tmp_path}/{target}") as sink:
        for f in src:
            sink.write(f)
    files = sorted((tmp_path / "seq").glob("*.png"))
    assert len(files) == 4
    for p, f in zip(files, src, strict=True):
        assert np.array_equal(cv2.imread(str(p), cv2.IMREAD_UNCHANGED), f)
    if "%" in target:
        assert files[0].name == "0000.png"


def test_raw_pipe_byte_count():
    r, w = os.pipe()
    sink = RawPipeSink(fd=w)
    src = frames_bgra(3)
    for f in src:
        sink.write(f[..., :3].copy())
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    assert len(data) == 3 * W * H * 3 and sink.pix_fmt == "bgr24"
    assert data[: W * H * 3] == src[0][..., :3].tobytes()


def test_raw_pipe_closed_by_reader_is_a_clean_error():
    r, w = os.pipe()
    os.close(r)
    sink = RawPipeSink(fd=w)
    with pytest.raises(SinkError, match="pipe closed"):
        sink.write(np.zeros((H, W, 3), np.uint8))
    os.close(w)


def test_size_change_mid_stream_is_resized(tmp_path):
    with open_sink(f"{tmp_path}/seq/") as sink:
        sink.write(np.zeros((H, W, 3), np.uint8))
        sink.write(np.zeros((H * 2, W + 3, 3), np.uint8))
        assert sink.resized == 1
    assert cv2.imread(str(tmp_path / "seq" / "frame_000001.png")).shape == (H, W, 3)


def test_write_error_still_leaves_a_playable_file(tmp_path):
    path = tmp_path / "cut.mp4"
    sink = open_sink(str(path), fps=25)
    for f in frames_bgra(4):
        sink.write(f[..., :3].copy())
    with pytest.raises(SinkError):
        sink.write(np.zeros((H, W, 3), np.float32))  # a bad frame mid-stream
    sink.close()
    assert count_cv2(path)[0] == 4


def test_no_frames_leaves_no_file(tmp_path):
    VideoSink(str(tmp_path / "empty.mp4")).close()
    PngSink(f"{tmp_path}/none/").close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("uri, words", [
    ("/no/such/dir/out.mp4", "does not exist"),
    ("out.xyz", "unknown video type"),
    ("out.png", "PNG sequence needs a folder"),
    ("seq/%d%d.png", "exactly one %d"),
    ("seq%d/x.png", "exactly one %d"),
    ("seq/../%s.png", "exactly one %d"),
    ("vcam2://x", "unknown output scheme"),
])
def test_bad_outputs_are_one_line_errors(tmp_path, monkeypatch, uri, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SinkError) as e:
        open_sink(uri)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_window_without_display_and_missing_vcam(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        with pytest.raises(SinkError, match="window"):
            open_sink("window")
    try:
        import pyvirtualcam  # noqa: F401
    except ImportError:
        with pytest.raises(SinkError, match="pyvirtualcam"):
            open_sink("vcam://")


def test_alpha_container_without_pyav_says_how_to_get_it(tmp_path):
    with pytest.raises(SinkError, match=r"wbg-edge\[video\]"):
        VideoSink(str(tmp_path / "a.mov"), encoder="opencv")


def test_disk_full_stops_with_a_message_and_keeps_frames(tmp_path):
    """A real write failure: the file size limit (RLIMIT_FSIZE) makes writes fail with EFBIG, as a
    full disk does with ENOSPC. The PNG frames written before the failure stay readable."""
    script = textwrap.dedent(f"""
        import resource, signal, sys, numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        from wbg_edge.sinks import open_sink, SinkError
        sink = open_sink({f"{tmp_path}/seq/"!r})
        rng = np.random.default_rng(0)
        try:
            for i in range(5):  # flat frames compress to ~1 kB; noise does not (~120 kB > the limit)
                img = np.zeros((200, 200, 3), np.uint8) if i < 2 else rng.integers(0, 255, (200, 200, 3), np.uint8)
                sink.write(img)
        except SinkError as e:
            print("ERR", e)
            sys.exit(3)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 3, p.stderr
    assert p.stdout.startswith("ERR") and "write failed" in p.stdout and p.stdout.count("\n") == 1
    files = sorted((tmp_path / "seq").glob("*.png"))
    assert len(files) == 2 and all(cv2.imread(str(f)) is not None for f in files)
    assert not list((tmp_path / "seq").glob(".*partial"))


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.int64, np.bool_]),
       shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), transpose=st.booleans())
def test_any_array_is_written_or_refused_in_one_line(dtype, shape, transpose):
    """Fuzz the sink entry point: whatever array arrives, the sink writes it or raises SinkError."""
    img = np.zeros(shape, dtype)
    if transpose and img.ndim >= 2:
        img = np.swapaxes(img, 0, 1)  # non-contiguous
    r, w = os.pipe()
    sink = RawPipeSink(fd=w)
    try:
        sink.write(img)
        ok = True
    except SinkError as e:
        ok = False
        assert "\n" not in str(e)
    finally:
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            data = fh.read()
    valid = dtype == np.uint8 and img.ndim in (2, 3) and (img.ndim == 2 or img.shape[2] in (3, 4))
    assert ok == valid
    if ok:
        assert len(data) == img.size
