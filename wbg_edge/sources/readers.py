"""The readers a CaptureSource drives, one per kind of input (see `base.Reader` for the contract):
OpenCV capture (cameras, video files, network streams, GStreamer), image files, the synthetic clip,
frames in memory."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..images import IMAGE_EXTS, quiet_opencv, read_image, to_bgr
from ..synthetic import SyntheticClip
from .base import SourceError


class CvReader:
    """cv2.VideoCapture: cameras, files, network streams, GStreamer pipelines."""

    frame_name = None

    def __init__(self, target, name: str, api: int = cv2.CAP_ANY, params: Sequence[int] = ()):
        self.name, self.skipped = name, []
        with quiet_opencv():
            self.cap = cv2.VideoCapture(target, api, list(params)) if params else cv2.VideoCapture(target, api)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(f"{name}: cannot open")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 1000 else 0.0
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.count = n if n > 0 else None

    def grab(self) -> np.ndarray | None:
        ok, img = self.cap.read()
        return to_bgr(img) if ok and img is not None and img.size else None

    def close(self) -> None:
        self.cap.release()


class ImageReader:
    """A sorted list of image files; files that do not decode are skipped and reported."""

    def __init__(self, files: list[Path], name: str, fps: float = 25.0):
        self.files, self.name, self.fps, self.count = files, name, fps, len(files)
        self.skipped: list[str] = []
        self.frame_name: str | None = None
        self._i = 0
        if not files:
            raise SourceError(f"{name}: no image files ({', '.join(sorted(IMAGE_EXTS))})")

    def grab(self) -> np.ndarray | None:
        while self._i < len(self.files):
            p = self.files[self._i]
            self._i += 1
            img = read_image(p)
            if img is not None:
                self.frame_name = p.name
                return to_bgr(img)
            self.skipped.append(p.name)
        return None

    def close(self) -> None:
        pass


class ClipReader:
    """Frames of a generated clip (len(clip) frames, `clip.frame(i)` -> (image, ...), `clip.fps`), then the end."""

    frame_name = None

    def __init__(self, clip, name: str = "clip"):
        self.clip, self.name, self.fps, self.count, self.skipped, self._i = clip, name, clip.fps, len(clip), [], 0

    def grab(self) -> np.ndarray | None:
        if self._i >= self.count:
            return None
        self._i += 1
        return self.clip.frame(self._i - 1)[0]

    def close(self) -> None:
        pass


def synthetic_reader(name: str, width: int, height: int, frames: int, fps: float, seed: int) -> ClipReader:
    """The built-in generated clip (synthetic://) as a reader."""
    return ClipReader(SyntheticClip(width, height, frames, fps, seed), name)


class MemoryReader:
    """Frames already in memory, repeated to `count` frames (benchmarks: no decode cost; a decoded image)."""

    def __init__(self, frames: Sequence[np.ndarray], count: int, fps: float, name: str = "memory",
                 frame_name: str | None = None):
        if not frames:
            raise SourceError(f"{name}: no frames")
        self.frames, self.count, self.fps, self.name, self._i = [to_bgr(f) for f in frames], count, fps, name, 0
        self.frame_name, self.skipped = frame_name, []

    def grab(self) -> np.ndarray | None:
        if self._i >= self.count:
            return None
        self._i += 1
        return self.frames[(self._i - 1) % len(self.frames)]

    def close(self) -> None:
        pass
