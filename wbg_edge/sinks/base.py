"""What a sink can keep and how it says so: the `Sink` protocol, its errors, and `SinkBase`, which
holds the members every sink shares (frame count, the first frame's size, resizing to it)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

MODES = ("composite", "rgba", "alpha")


class SinkError(RuntimeError):
    """A sink that cannot be opened or written; the message is one line naming the output."""


class SinkClosed(Exception):
    """The consumer ended the stream on purpose (window closed, `q` pressed): stop without error."""


class Sink(Protocol):
    """Where frames go: what `run_stream`, the CLI and batch write to. `open_sink(uri)` makes one."""

    where: str                     # the output as messages name it (a path, "stdout", "window", ...)
    modes: tuple[str, ...]         # the output modes it can store: "composite", "rgba", "alpha"
    prefers: str                   # the mode to write when the user names none
    keeps_alpha: bool              # stores the alpha channel of rgba frames (True exactly when "rgba" is in modes)
    size_changes: bool             # True: a frame of another size is stored at its own size; False: resized to `size`
    size: tuple[int, int] | None   # (width, height) of the first frame written; None before it
    frames: int                    # frames written so far
    resized: int                   # frames resized to `size` (always 0 where size_changes is True)
    codec: str | None              # FFmpeg's name for the encoder writing the frames (libx264, mpeg4, mjpeg, png...)
    #                                or None where frames are not encoded (raw pipe, window, camera, null)
    encoder: str | None            # the library that encodes: "av" (PyAV) or "opencv"; None where nothing is encoded
    pix_fmt: str | None            # the raw pipe's pixel format on the wire (bgr24, bgra, gray) once a frame is
    #                                written; None for every other sink
    note: str | None               # one remark for the user on how the output is written (a fallback), or None;
    #                                the same text for every sink of one kind, so a caller can say it once
    threadable: bool               # write() may run on another thread than the caller's (files, pipes: yes;
    #                                a GUI window: no)
    closed: bool                   # close() was called; write() then raises SinkError

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        """Store one uint8 frame: HxW (alpha or grey), HxWx3 BGR or HxWx4 BGRA. `name` is the input frame's
        file name when it has one (image folders), kept by sinks that store a file per frame."""
        ...

    def close(self) -> None:
        """Finalize what was written (also after a write error) and release the output; safe twice."""
        ...

    def __enter__(self) -> Sink: ...

    def __exit__(self, *exc) -> None: ...


def have_av() -> bool:
    """PyAV importable: H.264, alpha video and MP4 that plays after a kill (fragmented)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class SinkBase:
    """The members every sink shares (see `Sink`); subclasses set the class attributes that differ."""

    modes: tuple[str, ...] = MODES
    prefers = "composite"
    size_changes = False
    codec: str | None = None
    encoder: str | None = None
    pix_fmt: str | None = None
    note: str | None = None
    threadable = False

    def __init__(self, where: str):
        self.where = where
        self.size: tuple[int, int] | None = None
        self.frames = self.resized = 0
        self.closed = False

    @property
    def keeps_alpha(self) -> bool:
        return "rgba" in self.modes

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """A checked frame of an open sink; the first one fixes `size`, later ones of another size are
        resized to it unless this sink stores every size."""
        if self.closed:
            raise SinkError(f"{self.where}: write after close")
        img = check_u8(image, self.where)
        h, w = img.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif (w, h) != self.size and not self.size_changes:
            self.resized += 1
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        return img

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- helpers for the implementations

def check_u8(img: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3) or \
            (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise SinkError(f"{where}: frames must be uint8 HxW, HxWx3 or HxWx4 "
                        f"(got {getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')})")
    return np.ascontiguousarray(img)


def as_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def as_bgra(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:  # an alpha matte on its own: white with that alpha
        out = np.full((*img.shape, 4), 255, np.uint8)
        out[..., 3] = img
        return out
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    return img


def check_target(path: Path, where: str) -> None:
    """One-line errors before anything is written: a folder given as a file, a missing or read-only folder."""
    if path.exists() and path.is_dir():
        raise SinkError(f"{where}: is a folder; give a file name (or a folder for a PNG sequence: end with '/')")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SinkError(f"{where}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise SinkError(f"{where}: folder {str(parent)!r} is not writable")
