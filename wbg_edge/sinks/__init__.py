"""Frame sinks: one URI picks the writer (the jetson-utils `videoOutput` idea).

    open_sink("out.mp4")          H.264 through PyAV (OpenCV's mp4v without it); .mkv, .avi (MJPG), .m4v too
    open_sink("out.mov")          ProRes 4444 with alpha through PyAV (codec="qtrle" for lossless RLE)
    open_sink("out.webm")         VP9 with alpha (yuva420p) through PyAV; read it back with libvpx-vp9
    open_sink("frames/"), "frames/%05d.png"   PNG sequence (RGBA when given BGRA frames)
    open_sink("-"), "pipe:"       raw frames on stdout, for `| ffmpeg -f rawvideo ...`
    open_sink("display://"), "window"         an OpenCV window (needs a GUI build of OpenCV and a display)
    open_sink("vcam://")          virtual camera through the optional pyvirtualcam
    open_sink("null")             discard (benchmarks)

Contract (the `Sink` protocol, `base.py`): `write(image)` takes uint8 HxW (alpha or grey), HxWx3 BGR or
HxWx4 BGRA. Every sink says what it can keep: the output modes it stores (`modes`, `prefers`), alpha
(`keeps_alpha`), whether frames may change size (`size_changes`: a PNG folder keeps each frame's size;
video, the raw pipe and the camera resize later frames to the first one's, counted in `resized`), what
encodes (`codec`, `encoder`), and whether it may be written from another thread (`threadable`).

Files appear whole: a video is written under a visible `.partial-<pid>` name and renamed on `close()`
(which finalizes what was written, also after an error), and a killed run's partial file plays up to
about its last second (`video.py` says how); a PNG frame is renamed into place when complete.
Nothing is written outside the folder of the path given. Implementations: `video.py`, `png.py`, `live.py`.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import MODES, Sink, SinkBase, SinkClosed, SinkError, have_av
from .live import NullSink, RawPipeSink, VirtualCamSink, WindowSink
from .png import PngSink
from .video import VideoSink

__all__ = ["MODES", "NullSink", "PngSink", "RawPipeSink", "Sink", "SinkBase", "SinkClosed", "SinkError",
           "VideoSink", "VirtualCamSink", "WindowSink", "have_av", "open_sink"]


def open_sink(uri: str, fps: float = 25.0, *, codec: str | None = None, encoder: str = "auto") -> Sink:
    """Open the output named by `uri` (see module docstring). `encoder`: auto | av | opencv (video files)."""
    uri = str(uri).strip()
    low = uri.lower()
    if low in ("-", "pipe:", "pipe:1", "stdout"):
        return RawPipeSink()
    if low in ("null", "null://", "none", "/dev/null"):
        return NullSink()
    if low in ("window", "display", "screen") or low.startswith(("display://", "window://")):
        return WindowSink()
    if low.startswith(("vcam://", "virtualcam://")):
        dev = uri.split("://", 1)[1] or None
        return VirtualCamSink(fps, dev)
    if not uri:
        raise SinkError("empty output: give a file, a folder/ for PNGs, '-' for stdout, 'window' or 'null'")
    if "://" in uri:
        raise SinkError(f"{uri}: unknown output scheme (display://, vcam://, null://, or a path)")
    if uri.endswith(("/", os.sep)) or "%" in uri or Path(uri).is_dir() or Path(uri).suffix.lower() == ".png":
        if Path(uri).suffix.lower() == ".png" and "%" not in uri:
            raise SinkError(f"{uri}: a PNG sequence needs a folder (out/) or a pattern (out/%05d.png)")
        return PngSink(uri)
    return VideoSink(uri, fps, codec=codec, encoder=encoder)
