"""Sinks that are not files: raw frames on stdout, an OpenCV window, a virtual camera, and null."""
from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from .base import MODES, SinkBase, SinkClosed, SinkError, as_bgr


class RawPipeSink(SinkBase):
    """Raw frames on stdout: bgr24 (composite), bgra (rgba) or gray (alpha), frame after frame, all at the
    first frame's size (a raw stream has one size).

    Read with: ffmpeg -f rawvideo -pix_fmt <sink.pix_fmt> -s WxH -r FPS -i - out.mp4
    """

    modes = MODES
    prefers = "composite"
    threadable = True

    def __init__(self, fd: int | None = None):
        super().__init__("stdout")
        self.fd = sys.stdout.fileno() if fd is None else fd

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        img = self._fit(image)
        fmt = {2: "gray"}.get(img.ndim) or ("bgr24" if img.shape[2] == 3 else "bgra")
        if self.pix_fmt is None:
            self.pix_fmt = fmt
        elif fmt != self.pix_fmt:
            raise SinkError(f"stdout: pixel format changed from {self.pix_fmt} to {fmt} mid-stream")
        view = memoryview(img.reshape(-1))
        try:
            while view:  # os.write may write less than asked on a pipe
                view = view[os.write(self.fd, view):]
        except BrokenPipeError:
            raise SinkError(f"stdout: the reading end of the pipe closed after {self.frames} frames") from None
        except OSError as e:
            raise SinkError(f"stdout: write failed after {self.frames} frames ({e.strerror or e})") from None
        self.frames += 1


class WindowSink(SinkBase):
    """An OpenCV window, on the thread that opened it; `q` or Esc ends the stream (raises SinkClosed)."""

    modes = ("composite", "alpha")
    prefers = "composite"
    size_changes = True  # the window shows each frame as it comes

    def __init__(self, title: str = "wbg-edge"):
        super().__init__("window")
        self.title = title
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SinkError("window: no display (DISPLAY is not set); write to a file, '-' or 'null' instead")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise SinkError("window: this OpenCV has no GUI support (opencv-python-headless); "
                            "install opencv-python or write to a file") from None

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        img = self._fit(image)
        cv2.imshow(self.title, as_bgr(img))
        self.frames += 1
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise SinkClosed()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass


class VirtualCamSink(SinkBase):
    """A virtual webcam through pyvirtualcam (optional), opened on the first frame at its size."""

    modes = ("composite",)
    prefers = "composite"

    def __init__(self, fps: float = 25.0, device: str | None = None):
        super().__init__("vcam://")
        try:
            import pyvirtualcam
        except ImportError:
            raise SinkError("vcam://: the virtual camera needs pyvirtualcam (pip install pyvirtualcam) "
                            "and its OS driver (v4l2loopback on Linux, OBS on Windows/macOS)") from None
        self._mod, self.fps, self.device, self._cam = pyvirtualcam, fps or 25.0, device, None

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        img = self._fit(image)
        if self._cam is None:
            try:
                self._cam = self._mod.Camera(width=img.shape[1], height=img.shape[0], fps=self.fps,
                                             device=self.device, fmt=self._mod.PixelFormat.BGR)
            except Exception as e:
                raise SinkError(f"vcam://: cannot open the virtual camera ({e})") from None
        self._cam.send(as_bgr(img))
        self.frames += 1

    def close(self) -> None:
        if not self.closed and self._cam is not None:
            self._cam.close()
        self.closed = True


class NullSink(SinkBase):
    """Discards frames, counting them (benchmarks)."""

    modes = MODES
    prefers = "composite"
    size_changes = True

    def __init__(self):
        super().__init__("null")

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        self._fit(image)
        self.frames += 1
