"""The `wbg-edge demo` job (no camera, GPU, network or files needed).

`run_demo` runs the default bundle on the synthetic clip (`wbg_edge.synthetic`) and writes a composite
video and a contact sheet; it returns what happened and prints nothing (the CLI prints).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .synthetic import SyntheticClip as SyntheticClip  # the clip lived here; kept importable


@dataclass
class DemoResult:
    video: Path
    sheet: Path
    frames: int
    fps: float
    size: tuple[int, int]
    backend: str


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], width: int = 960) -> np.ndarray:
    """Stack (input, alpha, composite) triples as rows of three tiles; returns a BGR u8 image."""
    tiles = []
    for frame, alpha, comp in rows:
        h, w = frame.shape[:2]
        tw = width // 3
        th = max(int(round(h * tw / w)), 1)
        a = alpha if alpha.dtype == np.uint8 else np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8)
        parts = [frame, cv2.cvtColor(a, cv2.COLOR_GRAY2BGR), comp[..., :3]]
        tiles.append(np.hstack([cv2.resize(p, (tw, th), interpolation=cv2.INTER_AREA) for p in parts]))
    return np.vstack(tiles)


def run_demo(out_dir: str | os.PathLike = ".", frames: int = 75, width: int = 1280, height: int = 720,
             config=None, progress=None) -> DemoResult:
    """Run the default bundle on the synthetic clip; write `wbg-edge-demo.mp4` and `wbg-edge-demo.png`.

    `config`: a PipelineConfig (default: the default bundle, composite over a blurred background, frames
    overlapped on two threads).
    `progress(i, n)`, if given, is called after each frame (the CLI uses it for its readout).
    """
    from .pipeline import Pipeline, PipelineConfig
    from .sinks import open_sink
    from .sources import open_source
    from .stream import StreamStats, run_stream

    out_dir = Path(out_dir)
    video, sheet = out_dir / "wbg-edge-demo.mp4", out_dir / "wbg-edge-demo.png"
    if config is None:
        config = PipelineConfig(mode="composite", background="blur", overlap=True)
    src = open_source(f"synthetic://?size={width}x{height}&frames={frames}")
    picks = {0, frames // 3, (2 * frames) // 3, frames - 1}
    rows = []
    stats = StreamStats()
    pipe = Pipeline(config)
    try:
        with src, open_sink(str(video), fps=src.fps) as sink:
            for tick in run_stream(src, pipe, sink, mode="composite", stats=stats):
                if tick.index in picks:  # copies: the pipeline reuses its buffers
                    rows.append((tick.frame.copy(), tick.matte.alpha.copy(), tick.image.copy()))
                if progress is not None:
                    progress(tick.index + 1, frames)
    finally:
        pipe.close()
    cv2.imwrite(str(sheet), contact_sheet(rows))
    backend = getattr(pipe, "backend_name", "?")
    # fps of the stream itself (capture, models, encode), not counting model loading
    return DemoResult(video=video, sheet=sheet, frames=stats.frames, fps=stats.fps, size=(width, height),
                      backend=str(backend))
