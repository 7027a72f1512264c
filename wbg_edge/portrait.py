"""A real person with no camera, network or extra package: the astronaut photo that ships with scikit-image
(Eileen Collins, NASA; public domain), embedded as `wbg_edge/data/astronaut.jpg` (provenance in
`wbg_edge/data/PROVENANCE.md`), and `PanClip`, which pans it across a grey canvas the way the real-footage
checks do (the photo scaled to the frame height, +3 px a frame). The demo runs it through the `real` bundle.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ASTRONAUT = Path(__file__).resolve().parent / "data" / "astronaut.jpg"


def astronaut() -> np.ndarray:
    """The embedded photo, BGR uint8 (512, 512, 3)."""
    img = cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{ASTRONAUT}: the embedded demo photo is missing or unreadable; reinstall wbg-edge")
    return img


class PanClip:
    """Deterministic frames: the photo, scaled to fit the frame height, moving `step` px right per frame over
    flat grey, centred on the middle frame. `frame(i) -> (bgr u8 HxWx3, the photo's box (x, y, w, h))`."""

    def __init__(self, photo: np.ndarray, width: int = 1280, height: int = 720, frames: int = 24, step: int = 3,
                 grey: int = 128, fps: float = 25.0):
        if width < 16 or height < 16 or frames < 1:
            raise ValueError(f"pan clip needs width, height >= 16 and frames >= 1 (got {width}x{height}, {frames})")
        h, w = photo.shape[:2]
        s = min(height / h, width / w)
        self.size = (max(round(w * s), 1), max(round(h * s), 1))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        self.photo = cv2.resize(photo, self.size, interpolation=interp)
        self.width, self.height, self.frames, self.step, self.grey, self.fps = width, height, frames, step, grey, fps
        # the travel fits inside the frame: a smaller step when the photo leaves little room
        room = width - self.size[0]
        self.step = min(step, room // max(frames - 1, 1)) if room > 0 else 0

    def __len__(self) -> int:
        return self.frames

    def box(self, i: int) -> tuple[int, int, int, int]:
        pw, ph = self.size
        x = (self.width - pw) // 2 - self.step * (self.frames // 2) + self.step * i
        x = min(max(x, 0), self.width - pw)
        return x, (self.height - ph) // 2, pw, ph

    def frame(self, i: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        x, y, pw, ph = b = self.box(i)
        out = np.full((self.height, self.width, 3), self.grey, np.uint8)
        out[y:y + ph, x:x + pw] = self.photo
        return out, b
