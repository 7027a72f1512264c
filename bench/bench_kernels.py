"""Fused refine op (pack + finish) vs the best naive cv2.resize + numpy composition, on the CPU; on a GPU, the CUDA
op's achieved bandwidth as a fraction of the device's copy bandwidth. In rgba / composite mode also the fused op
with foreground colours (issue 24; `fused+fg`), timed in the same interleaved runs. These inputs are a worst case for
it: the random delta leaves nearly every pixel soft (bench/bench_foreground.py times a real band).

    python bench/bench_kernels.py [--seconds 4] [--mode composite] [--clock auto|wall|cpu]

Per frame size: median of many interleaved runs of each path (same process, same inputs), and their ratio.
The last lines are the ratios (`fused vs naive: N.Nx`), which acceptance reads.

Clock: `wall` times each run with perf_counter, both paths with their default threads (latency on an idle
machine). `cpu` times the calling thread's CPU time with both paths on that one thread (cv2.setNumThreads(1),
WBG_EDGE_NATIVE_THREADS=1): the work each path does, which is what an oversubscribed machine can still measure
(there, wall-clock mostly measures how long the scheduler keeps the process waiting). `auto` (default) picks
`wall` unless the 1-minute load average exceeds the CPUs this process may use, and says which it used.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cv2
import numpy as np

from wbg_edge import native

SIZES = [(720, 1280), (1080, 1920)]
REFINE = (512, 512)


def model_size(h: int, w: int, short: int = 256) -> tuple[int, int]:
    """Model resolution of DESIGN.md section 1: short side `short`, sides multiples of 32."""
    s = short / min(h, w)
    return max(32, round(h * s / 32) * 32), max(32, round(w * s / 32) * 32)


def inputs(h: int, w: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mh, mw = model_size(h, w)
    yy, xx = np.mgrid[0:mh, 0:mw].astype(np.float32)
    alpha = np.clip(1.5 - np.hypot((yy - mh / 2) / (mh / 3), (xx - mw / 2) / (mw / 4)), 0, 1).astype(np.float32)
    return {
        "frame": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "background": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "depth": rng.random((mh // 2, mw // 2), dtype=np.float32),
        "alpha": alpha,
        "delta": (rng.standard_normal((1, 1) + REFINE) * 0.1).astype(np.float32),
    }


def naive(x: dict, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The best straightforward composition we could write: cv2 for every resize, in-place numpy elsewhere."""
    h, w = x["frame"].shape[:2]
    hr, wr = REFINE
    rgb = cv2.cvtColor(cv2.resize(x["frame"], (wr, hr), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    d = cv2.resize(x["depth"], (wr, hr), interpolation=cv2.INTER_LINEAR)
    a = cv2.resize(x["alpha"], (wr, hr), interpolation=cv2.INTER_LINEAR)
    packed = np.concatenate([rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255), d[None], a[None]])[None]
    # ... the refiner runs here ...
    ar = np.clip(packed[0, 4] + x["delta"][0, 0], 0, 1)
    alpha = cv2.resize(ar, (w, h), interpolation=cv2.INTER_LINEAR)
    if mode == "alpha":
        return alpha, (alpha * 255 + 0.5).astype(np.uint8)
    if mode == "rgba":
        return alpha, np.dstack([x["frame"], (alpha * 255 + 0.5).astype(np.uint8)])
    f = x["frame"].astype(np.float32)
    b = x["background"].astype(np.float32)
    f -= b
    f *= alpha[..., None]
    f += b
    f += 0.5
    return alpha, f.astype(np.uint8)


def fused(x: dict, mode: str, bufs: dict, foreground: bool = False) -> None:
    native.refine_pack(x["frame"], x["depth"], x["alpha"], bufs["packed"])
    native.refine_finish(bufs["packed"], x["delta"], x["frame"], bufs["alpha"], mode=mode,
                         background=x["background"] if mode == "composite" else None, out=bufs["out"],
                         alpha_coarse=x["alpha"], foreground=foreground)


def bench_cpu(h: int, w: int, mode: str, seconds: float, clock) -> float:
    x = inputs(h, w)
    shape = {"alpha": (h, w), "rgba": (h, w, 4), "composite": (h, w, 3)}[mode]
    bufs = {"packed": np.empty((1, 5) + REFINE, np.float32), "alpha": np.empty((h, w), np.float32),
            "out": np.empty(shape, np.uint8)}
    fused(x, mode, bufs)
    a_ref, o_ref = naive(x, mode)
    # same op, so the two must agree (cv2 quantises its resize weights, hence the loose bound)
    assert np.abs(bufs["alpha"] - a_ref).max() < 0.02 and np.abs(bufs["out"].astype(int) - o_ref).max() <= 6
    fg = mode != "alpha"
    tf, tn, tg = [], [], []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(tf) < 5:  # interleaved, so all see the same machine state
        t0 = clock()
        fused(x, mode, bufs)
        t1 = clock()
        naive(x, mode)
        t2 = clock()
        if fg:
            fused(x, mode, bufs, foreground=True)
        t3 = clock()
        tf.append(t1 - t0)
        tn.append(t2 - t1)
        tg.append(t3 - t2)
    mf, mn, mg = (statistics.median(t) * 1e3 for t in (tf, tn, tg))
    with_fg = f", fused+fg {mg:.2f} ms (+{mg - mf:.2f})" if fg else ""
    print(f"frame {w}x{h}, refine {REFINE[1]}x{REFINE[0]}, mode {mode}: fused {mf:.2f} ms, naive {mn:.2f} ms"
          f"{with_fg} (median of {len(tf)} interleaved runs each)")
    return mn / mf


def bench_gpu(mode: str, seconds: float) -> None:
    """CUDA op bandwidth vs a device-to-device copy (needs cuda-python and a GPU; skipped otherwise)."""
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        print("gpu: skipped (cuda-python not installed)")
        return
    if not native.cuda_available():
        print("gpu: skipped (no CUDA device or CUDA refine library)")
        return

    def ck(r):
        err = r[0] if isinstance(r, tuple) else r
        if int(err) != 0:
            raise RuntimeError(f"CUDA call failed: {err}")
        return r[1] if isinstance(r, tuple) and len(r) > 1 else None

    def timed(fn, n: int) -> float:
        start, stop = ck(rt.cudaEventCreate()), ck(rt.cudaEventCreate())
        fn()
        ck(rt.cudaEventRecord(start, 0))
        for _ in range(n):
            fn()
        ck(rt.cudaEventRecord(stop, 0))
        ck(rt.cudaEventSynchronize(stop))
        return ck(rt.cudaEventElapsedTime(start, stop)) / 1e3 / n

    big = 256 << 20
    src, dst = ck(rt.cudaMalloc(big)), ck(rt.cudaMalloc(big))
    kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
    copy_bw = 2 * big / timed(lambda: ck(rt.cudaMemcpyAsync(dst, src, big, kind, 0)), 20)
    print(f"gpu: device copy bandwidth {copy_bw / 1e9:.0f} GB/s")
    for h, w in SIZES:
        _bench_gpu_size(rt, ck, timed, h, w, mode, seconds, copy_bw)
    ck(rt.cudaFree(src))
    ck(rt.cudaFree(dst))


def _bench_gpu_size(rt, ck, timed, h: int, w: int, mode: str, seconds: float, copy_bw: float) -> None:
    x = inputs(h, w)
    hr, wr = REFINE
    out_c = {"alpha": 1, "rgba": 4, "composite": 3}[mode]
    d = {}
    for k, v in x.items():
        d[k] = ck(rt.cudaMalloc(v.nbytes))
        ck(rt.cudaMemcpy(d[k], v.ctypes.data, v.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice))
    packed, alpha, out = (ck(rt.cudaMalloc(n)) for n in (5 * hr * wr * 4, h * w * 4, h * w * out_c))

    def run_pack():
        native.cuda_refine_pack(d["frame"], (h, w), d["depth"], x["depth"].shape, d["alpha"], x["alpha"].shape,
                                packed, REFINE)

    def run_finish():
        native.cuda_refine_finish(packed, d["delta"], REFINE, d["frame"], (h, w), alpha, mode=mode, out=out,
                                  background=d["background"])

    ws_bytes = native.cuda_finish_workspace_bytes(REFINE, (h, w), foreground=True, patches=False)
    ws = ck(rt.cudaMalloc(ws_bytes))

    def run_finish_fg():
        native.cuda_refine_finish(packed, d["delta"], REFINE, d["frame"], (h, w), alpha, mode=mode, out=out,
                                  background=d["background"], alpha_coarse=d["alpha"], alpha_size=x["alpha"].shape,
                                  workspace=ws, workspace_bytes=ws_bytes, foreground=True)

    n = max(20, int(seconds * 100))
    tp, tf = timed(run_pack, n), timed(run_finish, n)
    if mode != "alpha":
        print(f"gpu frame {w}x{h} finish+fg: {timed(run_finish_fg, n) * 1e6:.0f} us (finish {tf * 1e6:.0f} us)")
    ck(rt.cudaFree(ws))
    # bytes that must move at least once: outputs written, inputs read (the frame only where sampled)
    pack_bytes = 5 * hr * wr * 4 + min(h * w * 3, 4 * 3 * hr * wr) + x["depth"].nbytes + x["alpha"].nbytes
    fin_bytes = 2 * hr * wr * 4 + h * w * 3 * (2 if mode == "composite" else 1) + h * w * (4 + out_c)
    for name, t, b in (("pack", tp, pack_bytes), ("finish", tf, fin_bytes)):
        print(f"gpu frame {w}x{h} {name}: {t * 1e6:.0f} us, {b / t / 1e9:.0f} GB/s = "
              f"{100 * b / t / copy_bw:.0f}% of copy bandwidth")
    for p in list(d.values()) + [packed, alpha, out]:
        ck(rt.cudaFree(p))


def pick_clock(choice: str) -> tuple[str, str]:
    """('wall' | 'cpu', why)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if choice != "auto":
        return choice, f"--clock {choice} (load average {load:.1f} on {cpus} CPUs)"
    if load > cpus:
        return "cpu", (f"load average {load:.1f} on {cpus} CPUs: oversubscribed, so wall-clock would time the "
                       f"scheduler; timing CPU time, both paths on this one thread (--clock wall to force)")
    return "wall", f"load average {load:.1f} on {cpus} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="timing budget per frame size")
    ap.add_argument("--mode", default="composite", choices=native.MODES)
    ap.add_argument("--clock", default="auto", choices=["auto", "wall", "cpu"])
    args = ap.parse_args()
    kind, why = pick_clock(args.clock)
    if kind == "cpu":
        cv2.setNumThreads(1)
        os.environ["WBG_EDGE_NATIVE_THREADS"] = "1"
    # cpu: the calling thread's CPU time (both paths run on it alone), so idle library threads cannot add noise
    clock = time.thread_time if kind == "cpu" else time.perf_counter
    print(f"backend {native.native_backend()}, {platform.processor() or platform.machine()}, "
          f"cv2 threads {cv2.getNumThreads()}, numpy {np.__version__}, cv2 {cv2.__version__}")
    print(f"clock: {kind} ({why})")
    bench_gpu(args.mode, args.seconds)
    ratios = [(h, w, bench_cpu(h, w, args.mode, args.seconds, clock)) for h, w in SIZES]
    for h, w, r in ratios:
        print(f"fused vs naive at {w}x{h} ({args.mode}, {kind} clock): {r:.1f}x")
    print(f"slowest ratio: {min(r for _, _, r in ratios):.1f}x")


if __name__ == "__main__":
    main()
