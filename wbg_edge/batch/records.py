"""Resume records: what made a finished output, and a finished chunk of an unfinished one.

`OUTDIR/.wbg-batch/<output name>.json` records a finished output (input size/mtime, bundle manifest
hash, options hash, output mode, frame count, output bytes); `--resume` skips an output whose record
matches. A chunked video's finished chunks live in `OUTDIR/.wbg-batch/parts/<name>/<index>/` (lossless
PNGs) with a record `<index>.json` beside each, so a job interrupted halfway through a long video
resumes from its finished chunks. Records are written by the driver once the output (or part) is in
place, so a record never vouches for something that is not there.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from .inputs import image_files
from .model import STATE_DIR, Item, Job, Unit


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def input_fingerprint(inp: Path) -> str:
    """Changes when the input changes: size + mtime of the file, or of every image of a folder."""
    files = image_files(inp) if inp.is_dir() else [inp]
    return _sha([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])


def bundle_fingerprint(pipeline_config: Any) -> str:
    """SHA-256 of the bundle's manifest.json (which holds every model file's SHA-256). A bundle that
    does not load stops the job here with the bundle's one-line BundleError, before any worker starts."""
    from wbg_edge.bundle import default_bundle_dir, load_bundle

    root = Path(getattr(pipeline_config, "bundle", None) or default_bundle_dir())
    load_bundle(root)
    return hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()


def options_fingerprint(job: Job) -> str:
    cfg = job.pipeline_config
    cfg_d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg)
    return _sha({"pipeline": cfg_d, "mode": job.output_mode, "format": job.format})


def record_path(outdir: Path, name: str) -> Path:
    return outdir / STATE_DIR / f"{name}.json"


def part_dir(outdir: Path, unit: Unit) -> Path:
    return outdir / STATE_DIR / "parts" / unit.name / f"{unit.index:05d}"


def _read(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def is_complete(outdir: Path, item: Item, want: dict) -> bool:
    """The output exists and its record was made from this input, bundle and options."""
    out_p = outdir / item.name
    rec = _read(record_path(outdir, item.name)) if out_p.exists() else None
    return rec is not None and all(rec.get(k) == v for k, v in want.items()) \
        and rec.get("output_bytes") == tree_bytes(out_p)


def recorded_frames(outdir: Path, name: str) -> int:
    return int((_read(record_path(outdir, name)) or {}).get("frames", 0))


def write_record(outdir: Path, name: str, want: dict, frames: int, finished: str) -> None:
    rec = dict(want, frames=frames, output=name, output_bytes=tree_bytes(outdir / name), finished=finished)
    atomic_json(record_path(outdir, name), rec)


def _part_want(unit: Unit, want: dict) -> dict:
    return dict(want, unit=dataclasses.asdict(unit))


def finished_part(outdir: Path, unit: Unit, want: dict) -> int | None:
    """Frames of this Unit's part when an earlier job finished it from the same input, bundle, options
    and chunk bounds; None when it must be made (again)."""
    d = part_dir(outdir, unit)
    rec = _read(d.with_suffix(".json"))
    if rec is None or not d.is_dir() or any(rec.get(k) != v for k, v in _part_want(unit, want).items()):
        return None
    frames = rec.get("frames")
    return frames if isinstance(frames, int) and frames == len(list(d.glob("*.png"))) else None


def write_part_record(outdir: Path, unit: Unit, want: dict, frames: int) -> None:
    atomic_json(part_dir(outdir, unit).with_suffix(".json"), dict(_part_want(unit, want), frames=frames))


def tree_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size


def atomic_json(path: Path, obj: Any) -> None:
    from wbg_edge.bundle import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())
