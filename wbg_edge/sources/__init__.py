"""Frame sources: one URI picks the reader (the jetson-utils `videoSource` idea).

    open_source("0"), "/dev/video0"       camera (live)
    open_source("csi://0")                Jetson CSI camera through a GStreamer pipeline (live)
    open_source("clip.mp4"), "img.png"    video or image file (every frame)
    open_source("frames/")                image folder, sorted by name (every frame)
    open_source("rtsp://..."), "http://"  network stream through FFmpeg with open/read time-outs (live)
    open_source("v4l2src ! ... ! appsink")  GStreamer pipeline string (needs OpenCV built with GStreamer)
    open_source("synthetic://?size=640x360&frames=50&fps=25")  built-in clip, no files needed

Contract (the `Source` protocol, `base.py`): `read(timeout) -> Frame | None`. `None` means no frame
arrived within `timeout` (not an error; check `source.finished` for the end of the stream). Frames are
C-contiguous BGR uint8 HxWx3 whatever the input (grey, BGRA, 16-bit images are converted); a frame
from an image file carries its file name (`Frame.name`), which a PNG folder output keeps.

Every source is a `CaptureSource` (`capture.py`): a capture thread reads ahead into a bounded queue,
keeping only the newest frame for a live input and every frame for a file. The readers, one per kind
of input, are in `readers.py`; this file picks one from the URI.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from ..images import IMAGE_EXTS, read_image, to_bgr
from .base import Frame, Reader, Source, SourceError, SourceStats
from .capture import CaptureSource
from .readers import ClipReader, CvReader, ImageReader, MemoryReader, synthetic_reader  # noqa: F401 (ClipReader: public)

__all__ = ["IMAGE_EXTS", "NET_SCHEMES", "VIDEO_EXTS", "CaptureSource", "Frame", "Reader", "Source", "SourceError",
           "SourceStats", "from_frames", "gstreamer_available", "open_source", "read_image", "to_bgr"]

NET_SCHEMES = {"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".y4m"}


# ---------------------------------------------------------------- the factory

def gstreamer_available() -> bool:
    """True when this OpenCV was built with GStreamer (pip wheels are not; JetPack's is)."""
    return bool(re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()))


def _csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            f"appsink drop=true max-buffers=1")


def open_source(uri: str, *, live: bool | None = None, open_timeout: float = 10.0,
                stall_timeout: float | None = None, max_retries: int = 8) -> Source:
    """Open `uri` (see module docstring). `live` overrides the default (True for cameras and streams):
    a live source drops stale frames and reconnects; a non-live one keeps every frame and ends."""
    uri = str(uri).strip()
    if not uri:
        raise SourceError("empty source: give a camera index, a file, a folder or a URL")
    opener, default_live = _resolve(uri, open_timeout)
    return CaptureSource(uri, opener, default_live if live is None else live, open_timeout=open_timeout,
                         stall_timeout=stall_timeout, max_retries=max_retries)


def from_frames(frames: Sequence[np.ndarray], count: int | None = None, fps: float = 25.0) -> Source:
    """A non-live source over frames in memory, repeated up to `count` frames (for benchmarks)."""
    n = len(frames) if count is None else int(count)
    return CaptureSource("memory", lambda: MemoryReader(frames, n, fps), live=False)


def _resolve(uri: str, open_timeout: float) -> tuple[Callable[[], Reader], bool]:
    scheme = urlparse(uri).scheme.lower() if "://" in uri else ""
    ms = int(open_timeout * 1000)
    if scheme == "synthetic":
        q = parse_qs(urlparse(uri).query)
        try:
            w, h = (int(v) for v in q.get("size", ["1280x720"])[0].lower().split("x"))
            n, fps = int(q.get("frames", ["100"])[0]), float(q.get("fps", ["25"])[0])
            seed = int(q.get("seed", ["0"])[0])
        except ValueError:
            raise SourceError(f"{uri}: bad synthetic:// options; use ?size=WxH&frames=N&fps=F&seed=S") from None
        return (lambda: synthetic_reader(uri, w, h, n, fps, seed)), False
    if scheme == "csi":
        return _resolve(_csi_pipeline(int(uri.split("://", 1)[1] or 0)), open_timeout)
    if "!" in uri and scheme == "":
        if not gstreamer_available():
            raise SourceError("GStreamer pipeline given, but this OpenCV was built without GStreamer "
                              "(pip wheels are; use a system OpenCV with GStreamer, e.g. JetPack's)")
        return (lambda: CvReader(uri, "GStreamer pipeline", cv2.CAP_GSTREAMER)), True
    if scheme in NET_SCHEMES:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        live = not (scheme in ("http", "https") and Path(urlparse(uri).path).suffix.lower() in VIDEO_EXTS)
        return (lambda: CvReader(uri, uri, cv2.CAP_FFMPEG, params)), live
    if scheme == "file":
        uri = urlparse(uri).path
    elif scheme:
        raise SourceError(f"{uri}: unknown source scheme {scheme!r} (camera index, file, folder, "
                          f"rtsp://, http://, csi://, synthetic:// or a GStreamer pipeline)")
    if re.fullmatch(r"\d+", uri) or uri.startswith("/dev/video"):
        index = int(uri) if uri.isdigit() else uri
        api = cv2.CAP_V4L2 if os.name == "posix" and not _is_macos() else cv2.CAP_ANY
        if isinstance(index, str) and not os.path.exists(index):
            raise SourceError(f"camera {uri}: no such device")

        def open_cam():
            try:
                return CvReader(index, f"camera {uri}", api)
            except SourceError:
                raise SourceError(f"camera {uri}: cannot open (no camera there, or it is busy)") from None
        return open_cam, True
    p = Path(uri).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())
        return (lambda: ImageReader(files, uri)), False
    if not p.exists():
        raise SourceError(f"{uri}: no such file or folder")
    if not os.access(p, os.R_OK):
        raise SourceError(f"{uri}: not readable (permission denied)")
    if p.suffix.lower() in IMAGE_EXTS:
        def open_image():
            img = read_image(p)
            if img is None:
                raise SourceError(f"{uri}: not a readable image (corrupt or truncated?)")
            return MemoryReader([img], 1, 25.0, uri, frame_name=p.name)
        return open_image, False

    def open_file():
        try:
            return CvReader(str(p), uri, cv2.CAP_FFMPEG)
        except SourceError:
            raise SourceError(f"{uri}: not a readable video (unknown format, truncated or damaged)") from None
    return open_file, False


def _is_macos() -> bool:
    return sys.platform == "darwin"
