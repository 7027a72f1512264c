"""Foreground colours and the halo-free blur (issue 24): quality on held-out generated scenes, and cost at 720p.

    python bench/bench_foreground.py [--scenes 24] [--size 512] [--seconds 8] [--only colour|blur|cost]

colour  Held-out scenes (training/data/synthetic.py, seed 1000: never a training seed) with true F and B, the TRUE
        alpha given to the fused finish (refine grid = frame, delta 0), so the table isolates the colour step; its
        coarse alpha (what the op's background weight reads) is the true alpha area-averaged to half size and
        blurred (sigma 1), like a coarse model's. Each scene is composited onto new backgrounds: a solid colour
        contrasting with the old background (255 - its mean), white, black, and two photos. Error: mean |composite -
        true composite| (u8 units, per channel), true composite = a F + (1 - a) B_new in float, in the boundary band
        (0 < a < 1) and over the whole image; new (--foreground) vs today's plain blend, same op, same alpha.
blur    Mean |Background("blur").fill(...) - the same blur of the TRUE background| in a ring 30 px wide outside the
        subject (alpha 0, within 30 px of alpha > 0): today's (the frame blurred) vs ours (background only, from
        the coarse alpha above).
cost    The fused finish at 720p (a generated scene squashed to 1280x720, coarse alpha 256x448, refine grid 512x896,
        32-px patches on the coarse band as the pipeline picks them), composite over white, interleaved runs with
        foreground on and off: median wall time with the op's default threads, and CPU time on one thread.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cv2
import numpy as np

from training.data.synthetic import SceneConfig, make_scene
from wbg_edge import native
from wbg_edge.band import BandSelector
from wbg_edge.compose import Background

SEED = 1000  # held out: training streams use other seeds


def held_out(i: int, size: int) -> dict:
    """Scene i: frame u8 BGR, true alpha, F and B (BGR, 0..255 float), and a coarse alpha at half size."""
    s = make_scene(SEED, i, SceneConfig(size=size))
    alpha = s["alpha"]
    coarse = cv2.GaussianBlur(cv2.resize(alpha, (size // 2, size // 2), interpolation=cv2.INTER_AREA), (0, 0), 1.0)
    return {"frame": np.round(s["image"][..., ::-1] * 255).astype(np.uint8), "alpha": alpha,
            "fg": s["fg"][..., ::-1] * 255, "bg": s["bg"][..., ::-1] * 255, "coarse": coarse.astype(np.float32)}


def photos(size: int) -> dict[str, np.ndarray]:
    import skimage.data

    out = {}
    for name in ("astronaut", "coffee"):
        im = getattr(skimage.data, name)()[..., :3][..., ::-1]
        side = min(im.shape[:2])
        out[f"photo:{name}"] = cv2.resize(np.ascontiguousarray(im[:side, :side]), (size, size),
                                          interpolation=cv2.INTER_AREA)
    return out


def composite(sc: dict, bg: np.ndarray, foreground: bool) -> np.ndarray:
    """The fused finish in composite mode with the true alpha (full grid the size of the frame, delta 0)."""
    h, w = sc["alpha"].shape
    packed = np.zeros((1, 5, h, w), np.float32)
    packed[0, 4] = sc["alpha"]
    out = np.empty((h, w, 3), np.uint8)
    native.refine_finish(packed, np.zeros((1, 1, h, w), np.float32), sc["frame"], None, alpha_coarse=sc["coarse"],
                         mode="composite", background=bg, out=out, foreground=foreground)
    return out


def table_colour(n: int, size: int) -> None:
    pics = photos(size)
    rows: dict[str, list] = {}
    for i in range(n):
        sc = held_out(i, size)
        a = sc["alpha"][..., None]
        band = (sc["alpha"] > 0) & (sc["alpha"] < 1)
        contrast = np.clip(255 - sc["bg"].mean((0, 1)), 0, 255).astype(np.uint8)
        bgs = {"contrast": contrast, "white": np.full(3, 255, np.uint8), "black": np.zeros(3, np.uint8), **pics}
        for name, bg in bgs.items():
            truth = a * sc["fg"] + (1 - a) * np.broadcast_to(bg, sc["frame"].shape).astype(np.float32)
            err = {fg: np.abs(composite(sc, bg, fg).astype(np.float32) - truth) for fg in (False, True)}
            rows.setdefault(name, []).append([err[True][band].mean(), err[False][band].mean(), err[True].mean(),
                                              err[False].mean()])
    print(f"colour: {n} held-out scenes (seed {SEED}), {size}x{size}, true alpha; mean |composite - truth| (u8)")
    print(f"{'new background':<18}{'band new':>10}{'band today':>12}{'ratio':>8}{'whole new':>11}"
          f"{'whole today':>13}{'ratio':>8}")
    everything = []
    for name, r in rows.items():
        m = np.mean(r, axis=0)
        everything += r
        print(f"{name:<18}{m[0]:>10.3f}{m[1]:>12.3f}{m[0] / m[1]:>8.3f}{m[2]:>11.4f}{m[3]:>13.4f}{m[2] / m[3]:>8.3f}")
    m = np.mean(everything, axis=0)
    print(f"{'all':<18}{m[0]:>10.3f}{m[1]:>12.3f}{m[0] / m[1]:>8.3f}{m[2]:>11.4f}{m[3]:>13.4f}{m[2] / m[3]:>8.3f}")
    print(f"band ratio (bar <= 0.5): {m[0] / m[1]:.3f}; whole-image ratio (bar <= 1): {m[2] / m[3]:.3f}")


def table_blur(n: int, size: int) -> None:
    r = []
    for i in range(n):
        sc = held_out(i, size)
        outside = (sc["alpha"] == 0).astype(np.uint8)
        ring = (outside > 0) & (cv2.distanceTransform(outside, cv2.DIST_L2, 5) <= 30)
        truth = Background("blur").fill(np.round(sc["bg"]).astype(np.uint8)).astype(np.float32)
        today = Background("blur").fill(sc["frame"]).astype(np.float32)
        ours = Background("blur").fill(sc["frame"], sc["coarse"]).astype(np.float32)
        r.append([np.abs(ours - truth)[ring].mean(), np.abs(today - truth)[ring].mean()])
    m = np.mean(r, axis=0)
    print(f"blur: {n} held-out scenes, {size}x{size}; mean |blur - blur of the true background| in the 30 px ring")
    print(f"ours {m[0]:.3f}, today {m[1]:.3f}, ratio {m[0] / m[1]:.3f} (bar <= 0.3)")


def case_720p() -> dict:
    s = make_scene(SEED, 0, SceneConfig(size=1280, p_hair=1.0))
    frame = cv2.resize(np.round(s["image"][..., ::-1] * 255).astype(np.uint8), (1280, 720),
                       interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(s["alpha"], (1280, 720), interpolation=cv2.INTER_AREA)
    coarse = cv2.GaussianBlur(cv2.resize(alpha, (448, 256), interpolation=cv2.INTER_AREA), (0, 0), 1.0)
    grid, p = (512, 896), 32
    patches = BandSelector((256, 448), grid, p).select(coarse)
    packed = np.empty((len(patches), 5, p, p), np.float32)
    native.refine_pack(frame, None, coarse, packed, patches=patches, patch_size=p, refine_size=grid)
    ar = cv2.resize(alpha, grid[::-1], interpolation=cv2.INTER_AREA)  # the refiner's answer: the true alpha
    delta = np.stack([ar[y:y + p, x:x + p] for y, x in patches])[:, None] - packed[:, 4:5]
    return {"frame": frame, "coarse": coarse, "patches": patches, "packed": packed, "delta": delta, "grid": grid}


def table_cost(seconds: float) -> None:
    c = case_720p()
    h, w = c["frame"].shape[:2]
    out, a = np.empty((h, w, 3), np.uint8), np.empty((h, w), np.float32)
    white = np.full(3, 255, np.uint8)

    def finish(fg: bool) -> None:
        native.refine_finish(c["packed"], c["delta"], c["frame"], a, patches=c["patches"], refine_size=c["grid"],
                             alpha_coarse=c["coarse"], mode="composite", background=white, out=out, foreground=fg)

    q = None
    for name, threads, clock in (("wall, default threads", None, time.perf_counter),
                                 ("CPU time, one thread", 1, time.thread_time)):
        native.set_thread_budget(threads)
        t: dict[bool, list[float]] = {False: [], True: []}
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(t[True]) < 20:
            for fg in (False, True):  # interleaved: both see the same machine state
                t0 = clock()
                finish(fg)
                t[fg].append(clock() - t0)
        off, on = (statistics.median(t[k]) * 1e3 for k in (False, True))
        print(f"cost ({name}, {native._threads()} threads, median of {len(t[True])} each): today {off:.3f} ms, "
              f"foreground {on:.3f} ms, +{on - off:.3f} ms per 720p frame (bar <= 1 ms)")
        q = np.floor(a * 255 + 0.5)
    native.set_thread_budget(None)
    print(f"(720p case: {len(c['patches'])} patches, {int(((q > 0) & (q < 255)).sum())} soft pixels)")
    bg = Background("blur")
    t = {False: [], True: []}
    for _ in range(50):
        for fg in (False, True):
            t0 = time.perf_counter()
            bg.fill(c["frame"], c["coarse"] if fg else None)
            t[fg].append(time.perf_counter() - t0)
    print(f"blur background fill at 720p (Python, cv2): today {statistics.median(t[False]) * 1e3:.2f} ms, "
          f"background only {statistics.median(t[True]) * 1e3:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=24)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=8.0, help="timing budget per clock")
    ap.add_argument("--only", choices=["colour", "blur", "cost"])
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"backend {native.native_backend()}, {platform.processor() or platform.machine()}, "
          f"{native.usable_cpus()} CPUs, load average {load:.1f}")
    if args.only in (None, "colour"):
        table_colour(args.scenes, args.size)
    if args.only in (None, "blur"):
        table_blur(args.scenes, args.size)
    if args.only in (None, "cost"):
        table_cost(args.seconds)


if __name__ == "__main__":
    main()
