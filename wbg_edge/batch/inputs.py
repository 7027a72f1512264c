"""The inputs of a batch job: list files, folders of videos, image folders, and what each one holds.

A folder that holds videos stands for its videos (each its own input and output, in name order);
images beside them are left out with a note, since a clip with a poster or thumbnails is far more
common than a frame sequence stored among clips. A folder with no video is one image-sequence input.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .model import LIST_EXTS


def _exts() -> tuple[set[str], set[str]]:
    from wbg_edge.sources import IMAGE_EXTS, VIDEO_EXTS

    return IMAGE_EXTS, VIDEO_EXTS


def image_files(folder: Path) -> list[Path]:
    """The images of a folder input, as `open_source` reads them (sorted by name)."""
    images, _ = _exts()
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in images)


def folder_videos(folder: Path) -> list[Path]:
    """The video files directly inside `folder`, sorted by name."""
    _, videos = _exts()
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in videos)


def expand_inputs(paths: Iterable[str | os.PathLike], notes: list[str] | None = None) -> list[Path]:
    """Videos and image folders as given; a list file (.txt/.lst) adds the paths it lists, one a line
    (relative to the list file; blank lines and # comments skipped); a folder holding videos adds its
    videos (the images in it are left out, one line about them appended to `notes`). Order kept,
    duplicates dropped."""
    listed: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix.lower() in LIST_EXTS:
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line).expanduser()
                    listed.append(q if q.is_absolute() else p.parent / q)
        else:
            listed.append(p)
    out: list[Path] = []
    for p in listed:
        videos = folder_videos(p) if p.is_dir() else []
        if not videos:
            out.append(p)
            continue
        out += videos
        left = image_files(p)
        if left and notes is not None:
            notes.append(f"{p}: a folder of videos; its {len(left)} image file(s) are left out (an image "
                         f"sequence needs a folder of its own)")
    seen: set[Path] = set()
    uniq = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            uniq.append(p)
    return uniq


def probe(inp: Path) -> tuple[str, int]:
    """(kind, frame count estimate) of an input, opened by `open_source` as the workers will open it.
    Raises OSError with a one-line reason naming the input (missing, corrupt, empty)."""
    from wbg_edge.sources import SourceError, open_source

    if not inp.exists():
        raise OSError(f"{inp}: no such file or folder")
    kind = "images" if inp.is_dir() else "video"
    try:
        with open_source(str(inp), live=False) as src:
            while src.read(timeout=1.0) is None:
                if src.finished:
                    raise OSError(f"{inp}: no decodable frame (corrupt or empty)")
            return kind, max(int(src.count or 1), 1)
    except SourceError as e:
        raise OSError(str(e)) from None
