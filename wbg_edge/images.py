"""Still images: decode one file quietly, and bring any decoded image to BGR u8.

Shared by the sources (image files and folders) and the backgrounds (`compose`), so neither has to
import the other.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".exr", ".pgm", ".ppm"}


@contextlib.contextmanager
def quiet_opencv():
    """No OpenCV log lines on stderr while opening or decoding: a bad input is reported once, by name,
    in our own one-line error (the CLI sets OPENCV_LOG_LEVEL too, but only before cv2 is imported)."""
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(level)


def to_bgr(img: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, BGR, BGRA; uint8/uint16/float) -> C-contiguous BGR uint8."""
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        else:  # float images (EXR) are taken as [0, 1]
            img = np.clip(np.nan_to_num(img.astype(np.float32)) * 255 + 0.5, 0, 255).astype(np.uint8)
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)


def _truncated(data: np.ndarray, suffix: str) -> bool:
    """A PNG without its IEND chunk or a JPEG without its end marker was cut short. libjpeg would decode
    it anyway (grey below the cut) and both libraries print to stderr, so refuse it before decoding."""
    tail = data[-1024:].tobytes().rstrip(b"\0")  # some cameras pad JPEGs with zeros
    if suffix == ".png":
        return b"IEND" not in tail[-12:]
    if suffix in (".jpg", ".jpeg"):
        return b"\xff\xd9" not in tail[-64:]
    return False


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """The decoded image (as stored: any depth and channel count), or None when the file is missing,
    not an image, or cut short; never prints (sources and backgrounds report bad files by name)."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    if not data.size or _truncated(data, Path(path).suffix.lower()):
        return None
    with quiet_opencv():
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return img if img is not None and img.size else None
