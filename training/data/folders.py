"""Folder datasets in the layouts people have, returning the same sample dicts as synthetic.py.

    DIR/image/ + DIR/alpha/          pairs (AM-2k, P3M-10k style)
    DIR/fg/ + DIR/alpha/ + DIR/bg/   foregrounds composited on backgrounds (Distinctions-646 / AIM style)
    DIR/image/                       in-the-wild images without ground truth
    optional DIR/depth/, DIR/alpha_coarse/   caches (16-bit PNG) from `python -m training.cache`

Files pair by stem (`image/x.jpg` <-> `alpha/x.png`). Problems raise `DatasetError` with one
line naming the file.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class DatasetError(ValueError):
    """A dataset that cannot be used; the message is one line naming the file."""


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)


def read_rgb(path: Path) -> np.ndarray:
    """(H,W,3) float32 RGB in [0,1] from an 8- or 16-bit file."""
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise DatasetError(f"{path}: unreadable image")
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=2)
    scale = 65535.0 if im.dtype == np.uint16 else 255.0
    return cv2.cvtColor(im[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32) / scale


def read_gray(path: Path) -> np.ndarray:
    """(H,W) float32 in [0,1] from an 8- or 16-bit file (first channel, or alpha of an RGBA file)."""
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise DatasetError(f"{path}: unreadable image")
    if im.ndim == 3:
        im = im[..., 3] if im.shape[2] == 4 else im[..., 0]
    scale = 65535.0 if im.dtype == np.uint16 else 255.0
    return im.astype(np.float32) / scale


def write_png16(path: Path, a: np.ndarray) -> None:
    """(H,W) float in [0,1] -> 16-bit grayscale PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.round(np.clip(a, 0, 1) * 65535).astype(np.uint16)):
        raise DatasetError(f"{path}: cannot write")


class FolderDataset:
    """Indexable folder dataset; `layout` is "pairs", "composite" or "wild"."""

    def __init__(self, root: str | Path, seed: int = 0):
        self.root = Path(root)
        self.seed = seed
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: not a dataset folder")
        sub = {d: self.root / d for d in ("image", "alpha", "fg", "bg", "depth", "alpha_coarse")}
        has = {d: p.is_dir() for d, p in sub.items()}
        if has["fg"]:
            if not (has["alpha"] and has["bg"]):
                raise DatasetError(f"{self.root}: fg/ needs alpha/ and bg/ beside it")
            self.layout, self.items = "composite", list_images(sub["fg"])
            self.backgrounds = list_images(sub["bg"])
            if not self.backgrounds:
                raise DatasetError(f"{sub['bg']}: no background images")
        elif has["image"]:
            self.layout = "pairs" if has["alpha"] else "wild"
            self.items = list_images(sub["image"])
        else:
            raise DatasetError(f"{self.root}: expected image/, image/+alpha/ or fg/+alpha/+bg/")
        if not self.items:
            raise DatasetError(f"{self.root}: no images found")
        self.alphas = self._pair(sub["alpha"], required=True) if self.layout != "wild" else {}
        self.depths = self._pair(sub["depth"], required=False) if has["depth"] else {}
        self.coarse = self._pair(sub["alpha_coarse"], required=False) if has["alpha_coarse"] else {}

    def _pair(self, folder: Path, required: bool) -> dict[str, Path]:
        by_stem = {p.stem: p for p in list_images(folder)}
        if required:
            for item in self.items:
                if item.stem not in by_stem:
                    raise DatasetError(f"{item}: no matching file in {folder}")
        return by_stem

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        out: dict = {"name": item.stem, "flags": {}}
        if self.layout == "composite":
            fg = read_rgb(item)
            alpha = self._gray(self.alphas[item.stem], fg.shape[:2])
            bg_path = self.backgrounds[np.random.default_rng([self.seed, i]).integers(len(self.backgrounds))]
            bg = cv2.resize(read_rgb(bg_path), (fg.shape[1], fg.shape[0]), interpolation=cv2.INTER_AREA)
            out.update(fg=fg, bg=bg, alpha=alpha, image=alpha[..., None] * fg + (1 - alpha[..., None]) * bg)
        else:
            out["image"] = read_rgb(item)
            if self.layout == "pairs":
                out["alpha"] = self._gray(self.alphas[item.stem], out["image"].shape[:2])
        shape = out["image"].shape[:2]
        if item.stem in self.depths:
            out["depth"] = self._gray(self.depths[item.stem], shape, resize=True)
        if item.stem in self.coarse:
            out["coarse"] = self._gray(self.coarse[item.stem], shape, resize=True)
        return out

    @staticmethod
    def _gray(path: Path, shape: tuple[int, int], resize: bool = False) -> np.ndarray:
        a = read_gray(path)
        if a.shape != shape:
            if not resize:  # ground truth must match pixel for pixel; caches may be at model resolution
                raise DatasetError(f"{path}: size {a.shape[1]}x{a.shape[0]} does not match image {shape[1]}x{shape[0]}")
            a = cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        return a
