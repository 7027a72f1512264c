"""`wbg-edge bench`: per-stage latency, end-to-end fps, overhead against the models alone and memory, with
speed options toggled in the same run."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

from .common import (
    CliError,
    add_pipeline_options,
    backend_name,
    float_range,
    int_range,
    make_config,
    note,
    overlap_default,
)

SPEED_OPTIONS = ("patches", "depth_every", "overlap", "depth")


def cmd_bench(args) -> int:
    from ..pipeline import Pipeline
    from ..sources import from_frames
    from ..stream import bench_stream

    if args.json and not Path(args.json).resolve().parent.is_dir():  # say so before a long run, not after it
        raise CliError(f"--json {args.json}: the folder {Path(args.json).resolve().parent} does not exist")
    budget = None if args.frames is not None else args.max_seconds or None
    args.frames = args.frames or 100
    frames = _load_frames(args.input, min(args.frames, args.keep))
    h, w = frames[0].shape[:2]
    base = make_config(args, **overlap_default(args, live=False))  # frames from memory: a file's throughput
    compare = _compare_list(args.compare, base, _has_depth(base))
    variants = [("default", base, args.frames)] + [(*_toggle(base, opt), args.frames) for opt in compare]
    if base.overlap and "overlap" not in compare:  # the sequential run's model time is the models alone:
        variants.append((*_toggle(base, "overlap"), min(args.frames, 100)))  # overlap's overhead line
    results = []
    for name, cfg, n in variants:
        pipe = Pipeline(cfg)
        try:
            src = from_frames(frames, count=args.warmup + n)
            with src:
                r = bench_stream(src, pipe, n, args.warmup, mode=cfg_output(cfg), max_seconds=budget)
        finally:
            pipe.close()
        r.update(variant=name, config=_config_dict(cfg), backend=backend_name(pipe))
        results.append(r)
    for r, (_, cfg, _) in zip(results, variants, strict=True):
        _overhead_against_models_alone(r, cfg, results, variants)
    r0 = results[0]
    print(f"end-to-end: {r0['fps']:.1f} fps ({r0['end_to_end_ms']:.1f} ms/frame, median "
          f"{r0['end_to_end_median_ms']:.1f} ms) at {w}x{h}, {r0['frames']} frames after {args.warmup} warm-up, "
          f"backend {r0['backend']}, {os.cpu_count()} CPU cores")
    print(f"{'stage':<22}{'median ms':>10}")
    for k, v in r0["stages_ms"].items():
        print(f"  {k:<20}{v:>10.2f}")
    if base.overlap:
        print(f"model time {r0['model_ms']:.1f} ms summed over both lanes (two frames at once, each model "
              f"single-threaded beside the other lane's work, so it adds up to more than the frame time)")
    else:
        print(f"model time {r0['model_ms']:.1f} ms")
    print(f"pipeline overhead {_overhead_text(r0)}; latency {r0['latency_median_ms']:.1f} ms median")
    growth = 100.0 * (r0["rss_end_mb"] / r0["rss_after_warmup_mb"] - 1) if r0["rss_after_warmup_mb"] else 0.0
    print(f"memory: RSS {r0['rss_after_warmup_mb']:.0f} MB after warm-up, {r0['rss_end_mb']:.0f} MB at the end "
          f"({growth:+.1f}%), peak {r0['peak_rss_mb']:.0f} MB")
    if r0["frames"] >= 200:
        drift = 100.0 * (r0["last_quarter_ms"] / r0["first_quarter_ms"] - 1)
        print(f"over time: first quarter {r0['first_quarter_ms']:.1f} ms/frame, last quarter "
              f"{r0['last_quarter_ms']:.1f} ms/frame ({drift:+.1f}%)")
    if len(results) > 1:
        print(f"{'variant':<26}{'ms/frame':>10}{'fps':>8}{'model ms':>10}{'overhead':>10}")
        for r in results:
            over = f"{r['overhead_pct']:>9.0f}%" if r["overhead_ms"] is not None else f"{'n/a':>10}"
            print(f"  {r['variant']:<24}{r['end_to_end_ms']:>10.1f}{r['fps']:>8.1f}{r['model_ms']:>10.1f}{over}")
    if args.json:
        doc = {"input": args.input, "size": [w, h], "machine": _machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
               time.gmtime()), "results": results}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cfg_output(cfg) -> str:
    """The mode the Pipeline will produce (composite over 'transparent' is rgba)."""
    from ..settings import effective_mode
    return effective_mode(cfg.mode, cfg.background)


def _has_depth(cfg) -> bool:
    """Whether the bundle of `cfg` has a depth model (else the depth options have nothing to toggle)."""
    from ..bundle import default_bundle_dir, load_bundle
    bundle = load_bundle(cfg.bundle or default_bundle_dir())
    return "depth" in bundle.available_stages()


DEPTH_OPTIONS = ("depth", "depth_every")


def _compare_list(spec: str | None, base, has_depth: bool = True) -> list[str]:
    """The speed options to toggle; the depth ones only where the bundle has a depth model to toggle."""
    if not spec:
        return []
    fields = {f.name for f in dataclasses.fields(base)}
    names = [s.strip().replace("-", "_") for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        if not has_depth:
            note("bench: the bundle has no depth model, so --compare all leaves out depth and depth-every")
        return [o for o in SPEED_OPTIONS if o in fields and (has_depth or o not in DEPTH_OPTIONS)]
    for n in names:
        if n not in SPEED_OPTIONS or n not in fields:
            avail = [o.replace("_", "-") for o in SPEED_OPTIONS if o in fields]
            raise CliError(f"--compare: unknown option {n!r}; choose from {', '.join(avail)} or all")
        if n in DEPTH_OPTIONS and not has_depth:
            raise CliError(f"--compare {n.replace('_', '-')}: the bundle has no depth model, so there is nothing "
                           f"to compare")
    return names


def _overhead_against_models_alone(r: dict, cfg, results: list[dict], variants: list) -> None:
    """An overlapped run's overhead is its frame time beyond the models alone: the model time of the
    sequential run of the same settings (its models run back to back on all cores). Its own model times
    are summed over two lanes that run at once, so frame time minus them means nothing (it was negative), and
    the frame may beat the models alone (0, not negative).
    None where no such sequential run was made."""
    from ..stream import beyond_models_alone

    if not cfg.overlap:
        return
    seq = dataclasses.replace(cfg, overlap=False)
    ref = next((q for q, (_, c, _) in zip(results, variants, strict=True) if c == seq), None)
    r["models_alone_ms"] = ref["model_ms"] if ref else None
    r["overhead_ms"] = beyond_models_alone(r["end_to_end_ms"], ref["model_ms"]) if ref else None
    r["overhead_pct"] = 100.0 * r["overhead_ms"] / r["end_to_end_ms"] if ref else None


def _overhead_text(r: dict) -> str:
    if r["overhead_ms"] is None:
        return "n/a (no sequential run of the same settings to take the models alone from)"
    alone = f" beyond the models alone ({r['models_alone_ms']:.1f} ms, the sequential run)" \
        if "models_alone_ms" in r else ""
    return f"{r['overhead_ms']:.1f} ms ({r['overhead_pct']:.0f}% of the frame){alone}"


def _toggle(base, opt: str):
    v = getattr(base, opt)
    if isinstance(v, bool):
        return f"{opt.replace('_', '-')} {'off' if v else 'on'}", dataclasses.replace(base, **{opt: not v})
    new = 1 if v != 1 else 4  # depth_every: every frame vs the default reuse
    return f"{opt.replace('_', '-')}={new}", dataclasses.replace(base, **{opt: new})


def _load_frames(uri: str, n: int) -> list:
    """Decode up to n frames into memory, so the bench measures processing, not the decoder."""
    from ..sources import open_source
    frames = []
    with open_source(uri) as src:
        while len(frames) < n:
            f = src.read(timeout=1.0)
            if f is None:
                if src.finished:
                    break
                continue
            frames.append(f.image)
    if not frames:
        raise CliError(f"{uri}: no frames")
    return frames


def _config_dict(cfg) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


def _machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "system": platform.platform()}


def add_parser(sub) -> None:
    """Registers `bench`."""
    b = sub.add_parser("bench", help="per-stage latency, end-to-end fps, overhead and memory")
    b.add_argument("-i", "--input", default="synthetic://?size=1280x720&frames=50", metavar="SOURCE",
                   help="frames to use (decoded into memory first; default: the built-in 720p clip)")
    b.add_argument("--frames", type=int_range(1, 10**7), default=None,
                   help="timed frames, exactly (default: 100, or fewer when --max-seconds is reached)")
    b.add_argument("--max-seconds", type=float_range(0, 1e6), default=20.0,
                   help="without --frames, stop timing after this long per variant (default 20; 0: no limit)")
    b.add_argument("--warmup", type=int_range(0, 10**4), default=5, help="untimed frames first (default 5)")
    b.add_argument("--keep", type=int_range(1, 1000), default=60,
                   help="distinct frames held in memory and cycled (default 60)")
    b.add_argument("--compare", metavar="OPTS", default=None,
                   help="also run with each speed option toggled: comma list of "
                        f"{', '.join(o.replace('_', '-') for o in SPEED_OPTIONS)}, or all")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_pipeline_options(b)
    b.set_defaults(func=cmd_bench)
