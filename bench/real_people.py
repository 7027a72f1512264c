#!/usr/bin/env python
"""Real people, stills and motion: MediaPipe selfie alone against our pipeline in several settings, in one run.

Clips (48 frames, 1280x720, built by the acceptance library real_video.py from the package photos astronaut,
camera, grace_hopper, with their reference masks *_rvm.png):
  pan    the photo at frame height panning +3 px/frame over grey (the acceptance set)
  zoom   the photo at 62% zooming 1.0 -> 1.15 while moving diagonally over a blurred photo (skimage coffee),
         brightness ramping x0.92 -> x1.08 (the hidden set's motion, on our own canvas)
  rot    the photo at 62% turning -8 -> +8 degrees over the same canvas
  noise  the pan with camera-like noise (N(0, 6 levels) per pixel and channel, new every frame)
Each alpha is warped back by the known motion: flicker = mean |a_t - a_(t-1)| x1000 over the photo (and in the
15 px band around the reference edge), IoU (a > 0.5 vs ref > 0.5) averaged over frames.
Stills: each photo alone scaled to a 720 px short side, one frame from a fresh pipeline: IoU and boundary-band
error (mean |a - ref| in that band).
Occluded: the pans with a grey pole sweeping across in front of the person at 27 px/frame: mean alpha where the
pole hides the person (x1000: a temporal memory that ignores the image would keep the person there).
After a cut: 24 frames of one pan, then another photo's pan: mean IoU of the 4 frames after the cut.

    python bench/real_people.py [--kinds pan,zoom,rot] [--variants NAME ...] [--lib DIR]
Variants: mediapipe | ours | ours-before (refine model, temporal 0: the pipeline as it ran before) |
          NAME=key:value,key:value (PipelineConfig fields, e.g. t0.8-model=temporal:0.8,refine:model)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
N_ROT = 8.0  # degrees either side
NOISE = 6.0  # camera noise of the "noise" clips (levels, per pixel and channel)


def lib(path: str):
    sys.path.insert(0, path)
    import real_video  # the acceptance library: clips, measure, MediaPipe, references
    return real_video


def canvas() -> np.ndarray:
    import skimage.data
    c = cv2.resize(np.ascontiguousarray(skimage.data.coffee()[..., ::-1]), (1280, 720), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(c, (0, 0), 4)


def noisy_clip(clip, sigma):
    """The clip with camera-like noise: N(0, sigma) per pixel and channel, new every frame (seeded)."""
    frame, maps, size, ref2 = clip

    def noisy(t):
        f = frame(t).astype(np.float32)
        f += np.random.default_rng(t).normal(0, sigma, f.shape).astype(np.float32)
        return np.clip(f + 0.5, 0, 255).astype(np.uint8)
    return noisy, maps, size, ref2


def rot_clip(rv, bgr, ref, canv):
    """The photo at 62% of the frame turning about its centre, over canv; (frame(t), maps, size, ref)."""
    h, w = bgr.shape[:2]
    s0 = min(0.62 * rv.W / w, 0.62 * rv.H / h)
    w2, h2 = round(w * s0), round(h * s0)
    img = cv2.resize(bgr, (w2, h2), interpolation=cv2.INTER_AREA)
    ref2 = cv2.resize(ref, (w2, h2), interpolation=cv2.INTER_LINEAR)
    maps = []
    for t in range(rv.N):
        a = cv2.getRotationMatrix2D((w2 / 2, h2 / 2), -N_ROT + 2 * N_ROT * t / (rv.N - 1), 1.0)
        a[0, 2] += rv.W / 2 - w2 / 2
        a[1, 2] += rv.H / 2 - h2 / 2
        maps.append(a.astype(np.float32))
    back, ones = canv.astype(np.float32), np.ones((h2, w2), np.float32)

    def frame(t):
        m = cv2.warpAffine(ones, maps[t], (rv.W, rv.H))[..., None]
        f = back * (1 - m) + cv2.warpAffine(img, maps[t], (rv.W, rv.H)).astype(np.float32) * m
        return np.clip(f + 0.5, 0, 255).astype(np.uint8)
    return frame, maps, (w2, h2), ref2


class Ours:
    def __init__(self, name: str, bundle: str, **kw):
        from wbg_edge.pipeline import Pipeline, PipelineConfig
        self.name = name
        self.pipe = Pipeline(PipelineConfig(bundle=bundle, mode="alpha", **kw))

    def reset(self):
        self.pipe.reset()

    def __call__(self, bgr):
        return self.pipe.process(bgr).alpha.copy()


def parse_variant(v: str, rv, bundle: str, onnx: str):
    if v == "mediapipe":
        return rv.MediaPipe(onnx)
    if v == "ours":
        return Ours("ours", bundle)
    if v == "ours-before":
        return Ours(v, bundle, refine="model", temporal=0.0)
    name, _, spec = v.partition("=")
    kw = {}
    for item in filter(None, spec.split(",")):
        k, _, x = item.partition(":")
        kw[k] = x if k in ("refine", "mode", "background") else (float(x) if "." in x else int(x))
    return Ours(name, bundle, **kw)


def stills(model, rv, refs):
    iou, err = [], []
    for _name, bgr, ref in rv.photos("public", refs):
        s = 720 / min(bgr.shape[:2])
        size = (round(bgr.shape[1] * s), round(bgr.shape[0] * s))
        img = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        r = cv2.resize(ref, size, interpolation=cv2.INTER_LINEAR)
        model.reset()
        a = model(img)
        iou.append(rv.iou(a, r))
        err.append(float(np.abs(a - r)[rv.band_of(r)].mean()))
    return statistics.fmean(iou), statistics.fmean(err)


def occluded(rv, model, clip) -> float:
    """The pan with a grey pole (60 px wide) sweeping across the frame in front of the person, 27 px/frame: the
    mean alpha where the pole hides the person (x1000; 0 is right, a memory that ignores what it sees keeps the
    person there)."""
    frame, maps, size, ref2 = clip
    model.reset()
    ghost = []
    for t in range(rv.N):
        f = frame(t).copy()
        x = round(t * (rv.W + 60) / (rv.N - 1)) - 60
        pole = np.zeros(f.shape[:2], np.float32)
        pole[:, max(0, x):max(0, x + 60)] = 1
        f[pole > 0] = (90, 100, 110)
        a = model(f)
        back = cv2.warpAffine(pole, maps[t], size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        hidden = back & (ref2 > 0.5)
        if hidden.sum() > 1000:
            ghost.append(float(cv2.warpAffine(a, maps[t], size, flags=cv2.WARP_INVERSE_MAP)[hidden].mean()))
    return 1e3 * statistics.fmean(ghost)


def after_cut(rv, model, a_clip, b_clip) -> float:
    """24 frames of one pan, then the other pan from its frame 24: mean IoU of the 4 frames after the cut."""
    model.reset()
    for t in range(24):
        model(a_clip[0](t))
    frame, maps, size, ref2 = b_clip
    ious = [rv.iou(cv2.warpAffine(model(frame(t)), maps[t], size, flags=cv2.WARP_INVERSE_MAP), ref2)
            for t in range(24, 28)]
    return statistics.fmean(ious)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", default=str(ROOT.parent / "shared" / "acceptance" / "lib"),
                    help="the acceptance library folder (real_video.py, real/*_rvm.png)")
    ap.add_argument("--bundle", default=str(Path.home() / ".cache" / "wbg-edge" / "bundles" / "real-world"))
    ap.add_argument("--kinds", default="pan,zoom,rot")
    ap.add_argument("--variants", nargs="+", default=["mediapipe", "ours-before", "ours"])
    a = ap.parse_args(argv)
    if not (Path(a.lib) / "real_video.py").is_file():
        print(f"--lib {a.lib}: no real_video.py there")
        return 2
    rv = lib(a.lib)
    refs = Path(a.lib) / "real"
    onnx = str(Path(a.bundle) / "mediapipe_selfie_general.onnx")
    models = [parse_variant(v, rv, a.bundle, onnx) for v in a.variants]
    kinds = a.kinds.split(",")
    canv = canvas()
    clips = []
    for name, bgr, ref in rv.photos("public", refs):
        for kind in kinds:
            c = (rv.clip("public", bgr, ref, None) if kind == "pan" else
                 noisy_clip(rv.clip("public", bgr, ref, None), NOISE) if kind == "noise" else
                 rv.clip("hidden", bgr, ref, canv) if kind == "zoom" else rot_clip(rv, bgr, ref, canv))
            clips.append((kind, name, c))
    pans = [c for kind, _n, c in clips if kind == "pan"] or [rv.clip("public", b, r, None)
                                                             for _n, b, r in rv.photos("public", refs)]
    head = " | ".join(f"{k} flicker / band / IoU" for k in kinds)
    print(f"| variant | stills IoU | stills band error | {head} | occluded x1000 | IoU after a cut |")
    print("|---|---|---|" + "---|" * (len(kinds) + 2))
    for m in models:
        t0 = time.perf_counter()
        res: dict[str, list] = {k: [] for k in kinds}
        for kind, _name, c in clips:
            res[kind].append(rv.measure(m, *c))
        si, se = stills(m, rv, refs)
        cells = [f"{statistics.fmean(r['flicker'] for r in rs):.1f} / {statistics.fmean(r['band'] for r in rs):.1f}"
                 f" / {statistics.fmean(r['iou'] for r in rs):.3f}" for rs in res.values()]
        occ = statistics.fmean(occluded(rv, m, c) for c in pans)
        cut = statistics.fmean(after_cut(rv, m, pans[i - 1], pans[i]) for i in range(len(pans)))
        print(f"| {m.name} | {si:.3f} | {se:.3f} | " + " | ".join(cells) + f" | {occ:.0f} | {cut:.3f} |", flush=True)
        print(f"<!-- {m.name}: {time.perf_counter() - t0:.0f} s -->", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
