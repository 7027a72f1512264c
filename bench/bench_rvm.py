"""720p speed of bundles against RVM-MobileNetV3, in one run: `Pipeline.process` (the whole pipeline, as live
sources run it) on the built-in clip's frames, and RVM's timing twin (bench/rvm_twin.py: RVM's layers with random
weights; its real weights cannot be fetched here) through ONNX Runtime on the same frames with the same threads.
Runs alternate frame by frame, so load on the machine hits every contender alike.

    python bench/bench_rvm.py [--bundle wbg_edge/models/default --bundle OTHER ...] [--frames 60]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rvm_session(h: int, w: int, threads: int | None):
    import onnxruntime as ort
    import torch
    from rvm_twin import RVMTwin, state_shapes

    torch.manual_seed(0)
    model = RVMTwin().eval()
    shapes = state_shapes(h, w)
    args = (torch.rand(1, 3, h, w), *(torch.zeros(s) for s in shapes))
    buf = io.BytesIO()
    torch.onnx.export(model, args, buf, input_names=["src", "r1", "r2", "r3", "r4"], opset_version=17, dynamo=False,
                      output_names=["pha", "r1o", "r2o", "r3o", "r4o"])
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    state = [np.zeros(s, np.float32) for s in shapes]

    def run(bgr: np.ndarray) -> np.ndarray:
        nonlocal state
        x = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1)[None] * np.float32(1 / 255)
        pha, *state = sess.run(None, {"src": x, **{f"r{i + 1}": s for i, s in enumerate(state)}})
        return pha
    return run


def main(argv: list[str] | None = None) -> int:
    from wbg_edge import Pipeline, PipelineConfig
    from wbg_edge.synthetic import SyntheticClip

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", action="append", default=None, help="bundle folder or name (repeatable)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for every contender")
    a = p.parse_args(argv)
    w, h = map(int, a.size.split("x"))
    clip = SyntheticClip(w, h, a.frames)
    frames = [clip.frame(i)[0] for i in range(a.frames)]
    runners = {}
    for b in a.bundle or ["synthetic"]:
        pipe = Pipeline(PipelineConfig(bundle=b, backend="ort", mode="composite", background="green",
                                       threads=a.threads))
        runners[f"pipeline {b}"] = pipe.process
    runners["RVM-MobileNetV3 twin"] = rvm_session(h, w, a.threads)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for f in frames[:5]:  # warm-up
        for run in runners.values():
            run(f)
    for f in frames:
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(f)
            times[name].append((time.perf_counter() - t0) * 1e3)
    rvm = statistics.median(times["RVM-MobileNetV3 twin"])
    print(f"{w}x{h}, {a.frames} frames, each contender in turn on every frame (ONNX Runtime, CPU)")
    print("| what | median ms/frame | fps | RVM's time / this |")
    print("|---|---|---|---|")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"| {name} | {med:.1f} | {1000 / med:.1f} | {rvm / med:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
