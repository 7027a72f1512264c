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


def test_png_folder_keeps_each_frames_own_size(tmp_path):
    """PNG frames need not share a size: nothing is squashed to the first frame's."""
    with open_sink(f"{tmp_path}/seq/") as sink:
        sink.write(np.zeros((H, W, 3), np.uint8))
        sink.write(np.full((H * 2, W + 3, 4), 9, np.uint8))
        assert sink.size_changes and sink.resized == 0 and sink.size == (W, H)
    assert cv2.imread(str(tmp_path / "seq" / "frame_000000.png")).shape == (H, W, 3)
    assert cv2.imread(str(tmp_path / "seq" / "frame_000001.png"), cv2.IMREAD_UNCHANGED).shape == (H * 2, W + 3, 4)


def test_png_folder_keeps_the_input_names(tmp_path):
    """Frames that came from image files keep their names; a name seen twice (a.jpg, a.png) is made unique;
    frames without a name are numbered; a pattern numbers every frame."""
    img = np.zeros((H, W, 3), np.uint8)
    with open_sink(f"{tmp_path}/seq/") as sink:
        for name in ("b.jpg", "a.png", "a.jpg", None):
            sink.write(img, name)
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == \
        ["a-000002.png", "a.png", "b.png", "frame_000003.png"]
    with open_sink(f"{tmp_path}/pat/%03d.png") as sink:
        sink.write(img, "x.jpg")
    assert [p.name for p in (tmp_path / "pat").iterdir()] == ["000.png"]


@pytest.mark.parametrize("uri, encoder", [("v.mp4", "auto"), ("v.mp4", "opencv"), ("v.avi", "opencv"), ("-", "auto")])
def test_fixed_size_outputs_resize_later_frames_to_the_first_and_count_them(tmp_path, uri, encoder):
    """A video (or raw stream) has one frame size: a frame of another size is resized to it and counted,
    so the caller can say so in one line."""
    if uri == "-":
        r, w = os.pipe()
        sink = RawPipeSink(fd=w)
    else:
        sink = open_sink(str(tmp_path / uri), encoder=encoder)
    with sink:
        for shape in ((H, W, 3), (H * 2, W + 4, 3), (H, W, 3)):
            sink.write(np.zeros(shape, np.uint8))
        assert not sink.size_changes and sink.resized == 1 and sink.size == (W, H) and sink.frames == 3
    if uri == "-":
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            assert len(fh.read()) == 3 * W * H * 3
    else:
        assert count_cv2(tmp_path / uri) == (3, (H, W, 3))


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
    with pytest.raises(SinkError, match=r"a\.mov.*pip install av"):
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


# ---------------------------------------------------------------- what a sink says about itself, with and without PyAV

@pytest.fixture
def no_av(monkeypatch):
    """PyAV made unimportable in this process (`import av` raises ImportError), as where it is not installed."""
    monkeypatch.setitem(sys.modules, "av", None)
    assert not have_av()


def _file_codec(path) -> str:
    """The codec stored in the file, as FFmpeg names it (read back by PyAV when present, else OpenCV's FourCC)."""
    if have_av():
        import av
        with av.open(str(path)) as c:
            return c.streams.video[0].codec_context.codec.name
    cap = cv2.VideoCapture(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower()
    cap.release()
    return {"mp4v": "mpeg4", "fmp4": "mpeg4", "mjpg": "mjpeg"}.get(fourcc, fourcc)


DECODER_OF = {"libx264": "h264", "mpeg4": "mpeg4", "mjpeg": "mjpeg", "prores_ks": "prores", "qtrle": "qtrle",
              "libvpx-vp9": "vp9"}


@pytest.mark.parametrize("name, encoder, codec", [
    ("o.mp4", "opencv", None), ("o.avi", "opencv", None), ("o.mkv", "opencv", None), ("o.avi", "opencv", "mp4v"),
    pytest.param("o.mp4", "av", None, marks=needs_av), pytest.param("o.avi", "av", None, marks=needs_av),
    pytest.param("o.mkv", "av", "mpeg4", marks=needs_av)])
def test_what_a_video_sink_announces_is_what_it_writes(tmp_path, name, encoder, codec):
    """`codec` / `encoder` are read before the first frame (the CLI announces them); the file holds that codec
    (an .avi through OpenCV was announced as mp4v and written as MJPG)."""
    sink = open_sink(str(tmp_path / name), encoder=encoder, codec=codec)
    announced = (sink.codec, sink.encoder)
    with sink:
        for f in frames_bgra(3):
            sink.write(f[..., :3].copy())
    assert announced[1] == encoder
    assert _file_codec(tmp_path / name) == DECODER_OF[announced[0]]


@pytest.mark.parametrize("with_av", [pytest.param(True, marks=needs_av), False])
def test_unknown_codec_is_refused_when_opened_in_one_line(tmp_path, monkeypatch, with_av):
    """`--codec nosuchcodec` was ignored without PyAV (and with it failed at close with a NoneType message)."""
    if not with_av:
        monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(SinkError) as e:
        open_sink(str(tmp_path / "o.mp4"), codec="nosuchcodec")
    msg = str(e.value)
    assert "nosuchcodec" in msg and "o.mp4" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_without_pyav_video_is_written_by_opencv_with_one_note(tmp_path, no_av):
    """No PyAV: .mp4 and .avi still work through OpenCV; each sink says what it writes, in a note that is the same
    for every file of a kind (so a caller says it once); alpha containers are refused in one line."""
    notes = []
    for name in ("a.mp4", "b.mp4", "c.avi"):
        with open_sink(str(tmp_path / name)) as sink:
            assert sink.encoder == "opencv" and sink.note and "PyAV is not installed" in sink.note
            notes.append(sink.note)
            sink.write(np.zeros((H, W, 3), np.uint8))
        assert count_cv2(tmp_path / name)[0] == 1
    assert notes[0] == notes[1] and "mp4v" in notes[0] and "MJPG" in notes[2] and "mp4v" not in notes[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.avi"]  # no mirror left behind
    with pytest.raises(SinkError, match="pip install av"):
        open_sink(str(tmp_path / "d.webm"))


@needs_av
def test_with_pyav_there_is_no_note(tmp_path):
    for name in ("a.mp4", "b.mov", "c.avi"):
        assert open_sink(str(tmp_path / name)).note is None


def test_every_sink_declares_the_same_members(tmp_path):
    """The Sink protocol's members, read directly (no getattr) on every kind of sink, before and after a frame."""
    from typing import get_type_hints

    from wbg_edge.sinks import NullSink, Sink

    members = set(get_type_hints(Sink)) | {"keeps_alpha"}
    r, w = os.pipe()
    sinks = [open_sink(str(tmp_path / "v.mp4")), open_sink(str(tmp_path / "v.avi"), encoder="opencv"),
             open_sink(f"{tmp_path}/seq/"), RawPipeSink(fd=w), NullSink()]
    for sink in sinks:
        for m in members:
            assert hasattr(sink, m), (type(sink).__name__, m)
        assert sink.size is None and sink.frames == 0 and sink.resized == 0 and not sink.closed
        assert sink.keeps_alpha == ("rgba" in sink.modes) and sink.prefers in sink.modes
        with sink:
            sink.write(np.zeros((H, W, 3), np.uint8))
        assert sink.size == (W, H) and sink.frames == 1 and sink.closed
        with pytest.raises(SinkError, match="write after close"):
            sink.write(np.zeros((H, W, 3), np.uint8))
    os.close(r)
    os.close(w)
    assert [s.pix_fmt for s in sinks] == [None, None, None, "bgr24", None]
    assert [s.codec is None for s in sinks] == [False, False, False, True, True]
    assert [s.threadable for s in sinks] == [True, True, True, True, False]
