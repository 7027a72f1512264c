"""PNG sequences: one file per frame, each at its own size (PNG frames need not share one)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from .base import MODES, SinkBase, SinkError


class PngSink(SinkBase):
    """One PNG per frame (RGBA when given BGRA frames) in a folder (`dir/`) or by a pattern (`dir/%05d.png`).

    In a folder, a frame that came from an image file keeps that file's name (`shot.jpg` -> `shot.png`,
    a second frame of the same name gets `-<frame number>` added); other frames are `frame_000000.png`,
    ... A pattern numbers every frame. Each file appears whole (written under a hidden name, renamed).
    """

    modes = MODES
    prefers = "rgba"
    size_changes = True
    codec, encoder = "png", "opencv"
    threadable = True

    def __init__(self, target: str):
        super().__init__(target)
        if "%" in target:
            if "%" in str(Path(target).parent) or \
                    not re.fullmatch(r"[^%]*%0?\d*d[^%]*\.png", Path(target).name, flags=re.IGNORECASE):
                raise SinkError(f"{target}: a frame pattern needs exactly one %d (e.g. out/%05d.png) and .png")
            self.folder, self.pattern = Path(target).parent, Path(target).name
        else:
            self.folder, self.pattern = Path(target), None
        if self.folder.exists() and not self.folder.is_dir():
            raise SinkError(f"{target}: exists and is not a folder")
        parent = self.folder.parent
        if not self.folder.exists() and not parent.is_dir():
            raise SinkError(f"{target}: parent folder {str(parent)!r} does not exist")
        self._used: set[str] = set()

    def _file_name(self, name: str | None) -> str:
        if self.pattern is not None:
            return self.pattern % self.frames
        if not name:
            return f"frame_{self.frames:06d}.png"
        stem = Path(name).stem
        file = f"{stem}.png"
        if file in self._used:  # a.jpg and a.png in one folder both become a.png
            file = f"{stem}-{self.frames:06d}.png"
        self._used.add(file)
        return file

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        img = self._fit(image)
        self.folder.mkdir(exist_ok=True)
        path = self.folder / self._file_name(name)
        ok, data = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise SinkError(f"{path}: PNG encoding failed")
        tmp = path.with_name(f".{path.name}.partial")
        try:  # one frame never appears half-written
            tmp.write_bytes(data.tobytes())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise SinkError(f"{path}: write failed after {self.frames} frames ({e.strerror or e})") from None
        self.frames += 1
