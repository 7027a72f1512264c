"""The `wbg-edge demo` job (no camera, GPU, network or files needed).

`run_demo` runs two clips into one composite video and one contact sheet: the built-in generated clip
(`wbg_edge.synthetic`) through the generated-scene bundle (`synthetic`), then a real person, scikit-image's
astronaut photo embedded in the package (`wbg_edge.portrait`) panned across the frame, through the real-people
bundle (`real`). It returns what happened and prints nothing (the CLI prints).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .synthetic import SyntheticClip as SyntheticClip  # the clip lived here; kept importable


@dataclass
class DemoPart:
    clip: str             # what was shown: "generated clip" | "real person"
    bundle: str           # the bundle as named, and what runs in it (bundle.describe_bundle)
    frames: int
    fps: float            # of the stream itself (capture, models, encode), not counting model loading
    backend: str
    iou: tuple[float, float] | None = None  # generated clip: (mean, worst frame) IoU of alpha > 0.5 vs its alpha


@dataclass
class DemoResult:
    video: Path
    sheet: Path
    frames: int           # frames, fps and backend of the generated clip (as before the real-person part)
    fps: float
    size: tuple[int, int]
    backend: str
    parts: list[DemoPart] = field(default_factory=list)


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], width: int = 960,
                  labels: list[str] | None = None) -> np.ndarray:
    """Stack (input, alpha, composite) triples as rows of three tiles, each row's label (if any) written on
    its first tile; returns a BGR u8 image."""
    tiles = []
    for i, (frame, alpha, comp) in enumerate(rows):
        h, w = frame.shape[:2]
        tw = width // 3
        th = max(int(round(h * tw / w)), 1)
        a = alpha if alpha.dtype == np.uint8 else np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8)
        parts = [cv2.resize(p, (tw, th), interpolation=cv2.INTER_AREA)
                 for p in (frame, cv2.cvtColor(a, cv2.COLOR_GRAY2BGR), comp[..., :3])]
        if labels and labels[i] and th >= 24:  # white on a dark box: readable on any image
            (lw, lh), _ = cv2.getTextSize(labels[i], cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            cv2.rectangle(parts[0], (0, 0), (lw + 10, lh + 10), (0, 0, 0), -1)
            cv2.putText(parts[0], labels[i], (5, lh + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                        cv2.LINE_AA)
        tiles.append(np.hstack(parts))
    return np.vstack(tiles)


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of alpha > 0.5 (u8 alpha: > 127) and truth > 0.5; 1 when both are empty."""
    a = alpha > (127 if alpha.dtype == np.uint8 else 0.5)
    t = truth > 0.5
    union = np.count_nonzero(a | t)
    return np.count_nonzero(a & t) / union if union else 1.0


def run_demo(out_dir: str | os.PathLike = ".", frames: int = 75, width: int = 1280, height: int = 720,
             config=None, progress=None, person_frames: int = 30) -> DemoResult:
    """Run the generated clip and the real person; write `wbg-edge-demo.mp4` and `wbg-edge-demo.png`.

    `config`: a PipelineConfig (default: composite over a blurred background, frames overlapped on two
    threads). Its bundle runs both clips when it names one; otherwise the generated clip gets the
    generated-scene bundle and the person the real one. `person_frames`: the person clip's length (0: none).
    `progress(i, n)`, if given, is called after each frame (the CLI uses it for its readout).
    """
    from .bundle import describe_bundle
    from .pipeline import Pipeline, PipelineConfig
    from .portrait import PanClip, astronaut
    from .sinks import open_sink
    from .sources import open_source
    from .sources.capture import CaptureSource
    from .sources.readers import ClipReader
    from .stream import StreamStats, run_stream

    out_dir = Path(out_dir)
    video, sheet = out_dir / "wbg-edge-demo.mp4", out_dir / "wbg-edge-demo.png"
    if config is None:
        config = PipelineConfig(mode="composite", background="blur", overlap=True)
    clips = [("generated clip", frames, config,
              lambda: open_source(f"synthetic://?size={width}x{height}&frames={frames}"))]
    if person_frames > 0:
        pan = PanClip(astronaut(), width, height, person_frames)
        clips.append(("real person", person_frames, config if config.bundle else replace(config, bundle="real"),
                      lambda: CaptureSource("astronaut (scikit-image)", lambda: ClipReader(pan, "astronaut"),
                                            live=False)))
    total = sum(n for _, n, _, _ in clips)
    rows, labels, parts = [], [], []
    with open_sink(str(video), fps=25.0) as sink:  # both clips, one after the other, in one video
        for name, n, cfg, opener in clips:
            generated = name == "generated clip"
            picks = {0, n // 3, (2 * n) // 3, n - 1} if generated else {0, n // 2}
            truth, ious = SyntheticClip(width, height, frames) if generated else None, []
            stats, pipe = StreamStats(), Pipeline(cfg)
            bundle = describe_bundle(cfg.bundle, pipe.bundle)
            try:
                with opener() as src:
                    for tick in run_stream(src, pipe, sink, mode="composite", stats=stats):
                        if truth is not None:  # the clip knows its alpha: say how much of it the matte got
                            ious.append(iou(tick.matte.alpha, truth.alpha(tick.index)))
                        if tick.index in picks:  # copies: the pipeline reuses its buffers
                            rows.append((tick.frame.copy(), tick.matte.alpha.copy(), tick.image.copy()))
                            labels.append(f"{name}: bundle {bundle.split(' (')[0].rsplit('/', 1)[-1]}")
                        if progress is not None:
                            progress(sum(p.frames for p in parts) + tick.index + 1, total)
            finally:
                pipe.close()
            parts.append(DemoPart(name, bundle, stats.frames, stats.fps, pipe.backend_name,
                                  (float(np.mean(ious)), float(np.min(ious))) if ious else None))
    cv2.imwrite(str(sheet), contact_sheet(rows, labels=labels))
    gen = parts[0]
    return DemoResult(video=video, sheet=sheet, frames=gen.frames, fps=gen.fps, size=(width, height),
                      backend=gen.backend, parts=parts)
