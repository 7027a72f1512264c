"""Sources with real inputs: OpenCV-written videos, image folders, sockets that never answer."""
from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from contextlib import contextmanager

import cv2
import numpy as np
import pytest

from wbg_edge.sources import CaptureSource, Source, SourceError, from_frames, gstreamer_available, open_source, to_bgr


def write_clip(path, n=10, w=160, h=96, fps=25):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert out.isOpened()
    for i in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        cv2.circle(f, (10 + 12 * i, h // 2), 20, (50, 120, 220), -1)
        out.write(f)
    out.release()
    return path


def drain(src: Source, limit: float = 20.0) -> list:
    frames, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < limit:
        f = src.read(timeout=0.2)
        if f is None:
            if src.finished:
                return frames
            continue
        frames.append(f)
    raise AssertionError("source did not finish")


def test_video_file_keeps_every_frame(tmp_path):
    p = write_clip(tmp_path / "in.mp4", n=12)
    with open_source(str(p)) as src:
        assert not src.live and src.count == 12 and src.fps == pytest.approx(25, rel=0.01)
        frames = drain(src)
    assert len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    assert all(f.image.shape == (96, 160, 3) and f.image.dtype == np.uint8 for f in frames)


def test_synthetic_clip_needs_no_files():
    with open_source("synthetic://?size=128x72&frames=6&fps=30") as src:
        frames = drain(src)
        assert src.fps == 30
    assert len(frames) == 6 and frames[0].image.shape == (72, 128, 3)
    assert not np.array_equal(frames[0].image, frames[2].image)  # the subject moves (and loops back)


def test_image_folder_sorted_converted_and_bad_files_reported(tmp_path):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "b.png"), rng.integers(0, 255, (40, 50), dtype=np.uint8))  # grey
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 255, (40, 50, 4), dtype=np.uint8))  # BGRA
    cv2.imwrite(str(tmp_path / "c.png"), rng.integers(0, 65535, (40, 50, 3), dtype=np.uint16))  # 16-bit
    (tmp_path / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path)) as src:
        frames = drain(src)
        problems = src.stats.problems
    assert len(frames) == 3
    assert all(f.image.shape == (40, 50, 3) and f.image.dtype == np.uint8 for f in frames)
    assert len(problems) == 1 and "d.png" in problems[0]


def test_frames_of_image_files_carry_their_names(tmp_path):
    """A frame read from an image file carries the file's name (a PNG folder output keeps it); video and
    synthetic frames carry none."""
    for name in ("b.jpg", "a.png"):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 100, np.uint8))
    with open_source(str(tmp_path)) as src:
        assert [f.name for f in drain(src)] == ["a.png", "b.jpg"]
    with open_source(str(tmp_path / "b.jpg")) as src:
        assert [f.name for f in drain(src)] == ["b.jpg"]
    with open_source("synthetic://?size=32x24&frames=2") as src:
        assert [f.name for f in drain(src)] == [None, None]
    clip = write_clip(tmp_path / "v.mp4", n=2)
    with open_source(str(clip)) as src:
        assert [f.name for f in drain(src)] == [None, None]


def test_to_bgr_handles_channels_and_dtypes():
    assert to_bgr(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_bgr(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
    assert to_bgr(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    assert to_bgr(np.full((4, 5, 3), 65535, np.uint16)).max() == 255
    assert to_bgr(np.full((4, 5, 3), 2.0, np.float32)).max() == 255


@pytest.mark.parametrize("uri, words", [
    ("/no/such/clip.mp4", "no such file"),
    ("7", "camera 7"),
    ("/dev/video99", "camera /dev/video99"),
    ("ftp2://host/x", "unknown source scheme"),
    ("", "empty source"),
])
def test_bad_sources_are_one_line_errors(uri, words):
    with pytest.raises(SourceError) as e:
        open_source(uri)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unreadable_and_truncated_files(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match="junk.mp4"):
        open_source(str(junk))
    bad_png = tmp_path / "one.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(SourceError, match="one.png"):
        open_source(str(bad_png))
    # A video cut in half: either refused with a one-line error or read up to the cut, with a note.
    full = write_clip(tmp_path / "full.mp4", n=20).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) // 2])
    try:
        src = open_source(str(cut))
    except SourceError as e:
        assert "cut.mp4" in str(e)
        return
    with src:
        try:
            frames = drain(src)
        except SourceError as e:
            assert "cut.mp4" in str(e)
            return
    assert len(frames) < 20


def test_gstreamer_string_without_gstreamer_says_so():
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="GStreamer"):
        open_source("videotestsrc ! videoconvert ! appsink")
    with pytest.raises(SourceError, match="GStreamer"):
        open_source("csi://0")  # a Jetson CSI camera is a GStreamer pipeline too


def test_url_that_never_answers_times_out():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)  # accepts connections (kernel backlog) but never sends a byte
    port = srv.getsockname()[1]
    t0 = time.perf_counter()
    try:
        with pytest.raises(SourceError, match="127.0.0.1"):
            open_source(f"http://127.0.0.1:{port}/live", open_timeout=1.0)
    finally:
        srv.close()
    assert time.perf_counter() - t0 < 6


class _StallingReader:
    """Gives `n` frames, then blocks in grab() the way a dead network decoder does."""

    frame_name, skipped = None, []

    def __init__(self, n=3, fps=25.0):
        self.n, self.fps, self.count, self.release = n, fps, None, threading.Event()

    def grab(self):
        if self.n > 0:
            self.n -= 1
            return np.zeros((8, 8, 3), np.uint8)
        self.release.wait(30)
        return None

    def close(self):
        self.release.set()


def test_stalled_file_reader_times_out_instead_of_hanging():
    src = CaptureSource("stall-test", lambda: _StallingReader(3), live=False, stall_timeout=0.5)
    t0 = time.perf_counter()
    got = 0
    with pytest.raises(SourceError, match="stalled"):
        while time.perf_counter() - t0 < 10:
            if src.read(timeout=0.1) is not None:
                got += 1
    assert got == 3 and time.perf_counter() - t0 < 5
    src.close()


def test_stalled_live_reader_is_reopened_and_counted():
    src = CaptureSource("stall-live", lambda: _StallingReader(2), live=True, stall_timeout=0.4, backoff=(0.05, 0.1))
    got, t0 = 0, time.perf_counter()
    while got < 5 and time.perf_counter() - t0 < 10:
        if src.read(timeout=0.1) is not None:
            got += 1
    src.close()
    assert got == 5 and src.stats.stalls >= 1 and src.stats.reconnects >= 1


def test_live_source_reconnects_after_end_with_backoff(tmp_path):
    """A live source that ends (camera unplugged, stream dropped) is reopened: here a real file
    marked live plays again after each end, each reopen counted."""
    p = write_clip(tmp_path / "cam.mp4", n=4)
    src = open_source(str(p), live=True)
    src.backoff = (0.01, 0.05)
    got, t0 = [], time.perf_counter()
    while len(got) < 10 and time.perf_counter() - t0 < 15:
        f = src.read(timeout=0.1)
        if f is not None:
            got.append(f)
            time.sleep(0.01)
    src.close()
    assert len(got) == 10 and src.stats.reconnects >= 1


def test_live_source_that_never_comes_back_gives_up():
    opened = []

    def opener():
        if opened:
            raise SourceError("gone: cannot open")
        opened.append(1)
        return _ListReader([np.zeros((8, 8, 3), np.uint8)] * 2)

    src = CaptureSource("gone", opener, live=True, max_retries=2, backoff=(0.01, 0.02))
    with pytest.raises(SourceError, match="gave up after 2"):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 10:
            src.read(timeout=0.1)
    src.close()


def test_live_source_keeps_only_the_newest_frame():
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(200)]
    src = CaptureSource("fast-camera", lambda: _ListReader(frames), live=True)
    time.sleep(0.3)  # the consumer is slow: the capture thread must not queue up stale frames
    f = src.read(timeout=1.0)
    src.close()
    assert f is not None and src.stats.dropped > 0 and f.index > 100


class _ListReader:
    frame_name, skipped = None, []

    def __init__(self, frames):
        self.frames, self.fps, self.count = list(frames), 25.0, len(frames)

    def grab(self):
        return self.frames.pop(0) if self.frames else None

    def close(self):
        pass


def test_from_frames_cycles_to_count():
    frames = [np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)]
    with from_frames(frames, count=5) as src:
        got = drain(src)
    assert [int(f.image[0, 0, 0]) for f in got] == [0, 1, 0, 1, 0]


@contextmanager
def http_video(tmp_path, behaviour: str):
    """A local HTTP server for an MJPG AVI (header first, frames in order). behaviour:
    'hang' sends half the file and then holds the connection open without sending anything;
    'drop' sends half and closes on the first request (a disconnect), the whole file afterwards."""
    path = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 96))
    for i in range(30):
        f = np.full((96, 160, 3), 60, np.uint8)
        cv2.circle(f, (5 * i, 48), 15, (0, 0, 255), -1)
        out.write(f)
    out.release()
    data, hits, release = path.read_bytes(), [], threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if behaviour == "hang" or len(hits) == 1:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                if behaviour == "hang":
                    release.wait(20)
            else:
                self.wfile.write(data)

    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()


def test_url_that_stops_answering_mid_stream_does_not_hang(tmp_path):
    with http_video(tmp_path, "hang") as (base, _):
        t0 = time.perf_counter()
        src = open_source(f"{base}/clip.avi", open_timeout=2.0, stall_timeout=4.0)
        frames = []
        try:
            frames = drain(src, limit=20)
            note = " ".join(src.stats.problems)
        except SourceError as e:  # the stall detector may fire before FFmpeg's read time-out
            note = str(e)
        src.close()
    assert 0 < len(frames) < 30 and "clip.avi" in note
    assert time.perf_counter() - t0 < 12


def test_network_stream_that_drops_is_reconnected(tmp_path):
    with http_video(tmp_path, "drop") as (base, hits):
        src = open_source(f"{base}/live", open_timeout=2.0)  # no file extension: a live stream
        src.backoff = (0.05, 0.2)
        got, t0 = 0, time.perf_counter()
        while got < 40 and time.perf_counter() - t0 < 20:
            if src.read(timeout=0.2) is not None:
                got += 1
        src.close()
    assert src.live and got == 40 and src.stats.reconnects >= 1 and len(hits) >= 2
