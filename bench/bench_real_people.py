#!/usr/bin/env python
"""Speed of the real-people pipeline at 720p with the person filling a third of the frame or more, against
MediaPipe's selfie segmenter alone, all in one run (interleaved frame by frame: the same background load).

    python bench/bench_real_people.py [--bundle DIR] [--frames 96] [--json out.json]

Frames: the package photos astronaut, camera and grace_hopper, each scaled to the frame's width and cropped to its
height (the person fills 35-55% of the frame), moving 3 px/frame; the person's share of the frame is printed
(from the acceptance library's reference masks when found).
Rows (median and 90th percentile ms per frame of `process`, one frame at a time, and fps = 1000 / median):
  MediaPipe alone          its ONNX (ONNX Runtime, the threads ours uses) with the usual pre/post: INTER_AREA
                           squash to 256x256, RGB / 255, the output upsampled bilinearly to the frame
  MediaPipe model only     the ONNX Runtime call alone
  ours, per frame          the real-people pipeline without the temporal state (temporal 0)
  ours                     the real-people pipeline as it runs by default (temporal state on)
  ours before              the pipeline as it was (the refiner on the boundary band, no temporal state)
  ours, overlapped         the default pipeline streaming on two lanes (wall time per frame: throughput)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from wbg_edge.pipeline import Pipeline, PipelineConfig  # noqa: E402

W, H, STEP = 1280, 720, 3


def photos() -> list[tuple[str, np.ndarray]]:
    import matplotlib
    import skimage.data
    hopper = cv2.imread(str(Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"))
    return [("astronaut", np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])),
            ("camera", cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2BGR)), ("grace_hopper", hopper)]


def fill(bgr: np.ndarray, n: int) -> list[np.ndarray]:
    """The photo scaled to the frame width, cropped to its height, moving down STEP px/frame."""
    s = W / bgr.shape[1]
    img = cv2.resize(bgr, (W, round(bgr.shape[0] * s)), interpolation=cv2.INTER_LINEAR)
    top = max(0, (img.shape[0] - H) // 2 - STEP * (n // 2))
    return [np.ascontiguousarray(img[min(top + STEP * t, img.shape[0] - H):][:H]) for t in range(n)]


def person_share(lib: Path) -> dict[str, float]:
    """The person's share of the middle frame of each clip, from the reference masks (if found)."""
    out = {}
    for name in ("astronaut", "camera", "grace_hopper"):
        p = lib / "real" / f"{name}_rvm.png"
        if p.is_file():
            ref = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            r = cv2.resize(ref, (W, round(ref.shape[0] * W / ref.shape[1])))
            top = (r.shape[0] - H) // 2
            out[name] = float((r[top:top + H] > 127).mean())
    return out


class MediaPipe:
    """The segmenter alone: as the acceptance harness runs it."""

    def __init__(self, onnx: str, threads: int, pre: bool = True):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self.s = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
        self.inp = self.s.get_inputs()[0].name
        self.pre = pre
        self.x = np.zeros((1, 3, 256, 256), np.float32)

    def __call__(self, bgr: np.ndarray):
        if not self.pre:
            return self.s.run(None, {self.inp: self.x})[0]
        x = cv2.resize(bgr, (256, 256), interpolation=cv2.INTER_AREA)
        x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1)[None] * np.float32(1 / 255)
        a = self.s.run(None, {self.inp: x})[0][0, 0]
        return cv2.resize(a, bgr.shape[1::-1], interpolation=cv2.INTER_LINEAR)


class Ours:
    def __init__(self, cfg: PipelineConfig):
        self.p = Pipeline(cfg)

    def __call__(self, bgr: np.ndarray):
        return self.p.process(bgr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=str(Path.home() / ".cache" / "wbg-edge" / "bundles" / "real-world"))
    ap.add_argument("--frames", type=int, default=96, help="frames per row (after 8 warm-up frames)")
    ap.add_argument("--lib", default=str(ROOT.parent / "shared" / "acceptance" / "lib"))
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    onnx = Path(a.bundle) / "mediapipe_selfie_general.onnx"
    if not onnx.is_file():
        print(f"--bundle {a.bundle}: no mediapipe_selfie_general.onnx (python -m export.import_coarse "
              f"mediapipe-selfie makes it)")
        return 2
    threads = os.cpu_count() or 1  # what ours' ONNX Runtime sessions use by default
    ph = photos()
    per = max(1, (a.frames + 8) // 3)
    frames = [f for _, bgr in ph for f in fill(bgr, per)]
    cfg = PipelineConfig(bundle=a.bundle, mode="composite")
    rows = {"MediaPipe alone": MediaPipe(str(onnx), threads),
            "MediaPipe model only": MediaPipe(str(onnx), threads, pre=False),
            "ours, per frame (temporal 0)": Ours(PipelineConfig(bundle=a.bundle, mode="composite", temporal=0.0)),
            "ours (default, temporal state)": Ours(cfg),
            "ours before (refiner, no temporal)": Ours(PipelineConfig(bundle=a.bundle, mode="composite",
                                                                      refine="model", temporal=0.0))}
    ms: dict[str, list[float]] = {k: [] for k in rows}
    for i, f in enumerate(frames):  # interleaved: each row sees the same load
        for k, fn in rows.items():
            t0 = time.perf_counter()
            fn(f)
            if i >= 8:
                ms[k].append((time.perf_counter() - t0) * 1e3)
    over = Pipeline(PipelineConfig(bundle=a.bundle, mode="composite", overlap=True))
    for _ in over.stream(frames[:8]):
        pass
    t0 = time.perf_counter()
    for _ in over.stream(frames[8:]):
        pass
    ms["ours, overlapped (throughput)"] = [(time.perf_counter() - t0) * 1e3 / len(frames[8:])]
    info = Ours(cfg).p.info()
    base = statistics.median(ms["MediaPipe alone"])
    print(f"# {len(frames) - 8} frames 1280x720 (the package photos filling the frame, moving); "
          f"{threads} ONNX Runtime threads; bundle {info['bundle_name']}: temporal {info['temporal']}, "
          f"refine {Ours(cfg).p.settings.refine}")
    shares = person_share(Path(a.lib))
    if shares:
        print("# person's share of the frame: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    print("| pipeline | median ms | p90 ms | fps | x MediaPipe alone |")
    print("|---|---|---|---|---|")
    out = {}
    for k, v in ms.items():
        med = statistics.median(v)
        p90 = float(np.percentile(v, 90)) if len(v) > 1 else med
        out[k] = {"median_ms": med, "p90_ms": p90}
        print(f"| {k} | {med:.1f} | {p90:.1f} | {1000 / med:.0f} | {med / base:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
