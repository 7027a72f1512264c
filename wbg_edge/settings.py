"""One settings object: what the user asks for, and what the pipeline runs with.

`PipelineConfig` (frozen) is the request. Each field carries its own metadata (help, range, choices, flag
names), from which the CLI flags of `run`, `bench`, `batch` and `demo` are generated (`add_flags`) and
against which the config validates itself, so a range is written once. `resolve()` turns a config, the
bundle's manifest and the sink's needs into `Resolved` (frozen), made once and passed down.

Each rule lives here and nowhere else:
- which backgrounds mean "no background" (`is_transparent`), so the output carries alpha;
- the mode the pipeline makes (`effective_mode`: composite over nothing is RGBA);
- the mode a sink gets when the user names none, and which modes a sink refuses (`output_mode`);
- overlap on for files (throughput), off for live sources (latency) unless the user says (`overlap_for`);
- model / refine / depth resolutions and patch context: the flag, else the bundle's, else the default;
- the temporal filter and the refine step: the flag, else the bundle's runtime hint, else by the coarse stage's
  contract (`temporal_for`, `refine_for`).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compose import BackgroundSpec, parse_background

MODES = ("alpha", "rgba", "composite")
TRANSPARENT = ("transparent", "none", "")
# The temporal filter's default strength for an rgb segmenter (a per-frame segmenter flickers; a matting model
# trained with our refiner keeps its outputs unless asked). bench/real_people.md has the measurements.
TEMPORAL_RGB = 0.8
REFINE = ("model", "guided", "none")


def _opt(default: Any, help: str, *, lo: float | None = None, hi: float | None = None, hi_open: bool = False,
         multiple: int = 1, choices: Sequence[str] | None = None, flags: Sequence[str] = (),
         metavar: str | None = None):
    """A config field with the metadata its flag, its GStreamer property and its validation are made from."""
    meta = {"help": help, "lo": lo, "hi": hi, "hi_open": hi_open, "multiple": multiple,
            "choices": tuple(choices) if choices else None, "flags": tuple(flags), "metavar": metavar}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PipelineConfig:
    """What to run. Every field is one CLI flag (`--model-res` for `model_res`) and one GStreamer property."""

    bundle: str | None = _opt(None, "model bundle: real (a person segmenter, for real people), synthetic (trained "
                              "on generated scenes) or a folder (default: synthetic; run and batch: real)",
                              metavar="NAME|DIR")
    backend: str = _opt("auto", "inference backend: auto (trt when engines, a CUDA device and TensorRT exist), "
                        "ort or trt", choices=("auto", "ort", "trt"))
    model_res: int | None = _opt(None, "short side for depth and matting, a multiple of 32 (default: the bundle's)",
                                 lo=32, hi=2048, multiple=32, metavar="N")
    refine_res: int | None = _opt(None, "short side of the refine grid, a multiple of 32 (default: the bundle's, "
                                  "at most the frame's)", lo=32, hi=4096, multiple=32, metavar="N")
    depth: bool = _opt(True, "run the depth model (--no-depth: D = 0; the matting model learnt with depth dropout)")
    depth_res: int | None = _opt(None, "short side of the depth input, a multiple of 32 (default: model-res / 2)",
                                 lo=32, hi=2048, multiple=32, metavar="N")
    depth_every: int = _opt(1, "reuse depth for up to K frames while the scene is still", lo=1, hi=1000,
                            metavar="K")
    depth_motion: float = _opt(0.02, "recompute reused depth when the mean change of its input exceeds F",
                               lo=0.0, hi=1.0, metavar="F")
    patches: bool = _opt(True, "refine only the boundary band in patches (--no-patches: the full grid)")
    patch_size: int = _opt(32, "patch side P on the refine grid, a multiple of 8", lo=8, hi=512, multiple=8,
                           metavar="P")
    patch_context: int | None = _opt(None, "refine pixels of context around each patch, even (the refiner sees "
                                     "(P + 2C)^2 and only the inner P x P is kept; default: the bundle's)",
                                     lo=0, hi=64, multiple=2, metavar="C")
    band_dilation: int = _opt(2, "boundary band dilation in coarse pixels", lo=0, hi=64, metavar="N")
    full_grid_above: float = _opt(0.6, "refine the full grid when the band covers more than this fraction",
                                  lo=0.0, hi=1.0, metavar="F")
    smoothing: float = _opt(0.0, "temporal smoothing of alpha, 0 (off) .. <1: a = s * previous + (1 - s) * current",
                            lo=0.0, hi=1.0, hi_open=True, metavar="F")
    temporal: float | None = _opt(None, "motion-compensated temporal filter of the coarse alpha, 0 (off) .. <1: the "
                                  "previous alpha, moved along the optical flow, is blended in with this weight where "
                                  "the image agrees with it (default: the bundle's hint, else "
                                  f"{TEMPORAL_RGB} for an rgb segmenter, off for a matting model)",
                                  lo=0.0, hi=1.0, hi_open=True, metavar="F")
    refine: str | None = _opt(None, "what takes the coarse alpha to the frame: model (the bundle's refiner on the "
                              "boundary band), guided (a guided filter with the frame's colours: edges follow the "
                              "image, no patches) or none (upsampled as it is) (default: the bundle's hint, else "
                              "guided for an rgb segmenter, model for a matting model)", choices=REFINE)
    mode: str = _opt("composite", "what to make: composite (BGR over the background), rgba (BGRA) or alpha "
                     "(default for run: rgba for .mov/.webm/PNG outputs, composite otherwise)", choices=MODES,
                     flags=("--output", "--mode"))
    background: str = _opt("green", "transparent | colour name or #RRGGBB | blur[:k] | image file", metavar="BG")
    foreground: bool = _opt(True, "estimate the subject's colours at soft edges, so the old background does not "
                            "show through on the new one, and blur only the background for blur[:k] (--no-foreground: "
                            "the frame's own colours, as before)")
    overlap: bool = _opt(False, "two frames at once on two threads: more fps, a frame more latency "
                         "(run's default: on for files and folders, off for live sources)",
                         flags=("--overlap", "--threaded"))
    threads: int | None = _opt(None, "ONNX Runtime threads per model (default: all cores; half with --overlap)",
                               lo=1, hi=1024, metavar="N")
    spin: bool = _opt(False, "ONNX Runtime threads spin between runs: lower latency on an idle machine, but they "
                      "steal the cores the rest of the pipeline needs")

    def __post_init__(self):
        _bundle_by_name(self)
        for f in dataclasses.fields(self):
            check_value(f, getattr(self, f.name))
        parse_background(self.background)  # fails early, naming the spec


def _bundle_by_name(config: PipelineConfig) -> None:
    """A shipped bundle's name (bundle.BUNDLE_NAMES: real, synthetic) becomes its folder, so everything that
    reads `config.bundle` (the pipeline, batch records, bench, GStreamer) gets a folder."""
    if isinstance(config.bundle, str):
        from .bundle import bundle_location
        object.__setattr__(config, "bundle", bundle_location(config.bundle))  # frozen: set once, here


def _kind(f: dataclasses.Field) -> type:
    t = str(f.type)
    return bool if t.startswith("bool") else int if t.startswith("int") else float if t.startswith("float") else str


def check_value(f: dataclasses.Field, v: Any) -> None:
    """One-line ValueError naming the field when `v` is outside what its metadata allows."""
    m, kind = f.metadata, _kind(f)
    if v is None and "None" in str(f.type):
        return
    if kind is bool:
        if not isinstance(v, bool):
            raise ValueError(f"{f.name} must be True or False, got {v!r}")
        return
    if m.get("choices") and v not in m["choices"]:
        raise ValueError(f"{f.name} must be one of {list(m['choices'])}, got {v!r}")
    if kind is str:
        if not isinstance(v, str):
            raise ValueError(f"{f.name} must be a string, got {v!r}")
        return
    ok_type = isinstance(v, int) and not isinstance(v, bool) if kind is int else \
        isinstance(v, (int, float)) and not isinstance(v, bool)
    lo, hi, mult = m.get("lo"), m.get("hi"), m.get("multiple") or 1
    inside = ok_type and (lo is None or v >= lo) and (hi is None or (v < hi if m.get("hi_open") else v <= hi))
    if not inside or (kind is int and v % mult):
        what = "an integer" if kind is int else "a number"
        rng = f" in [{lo:g}, {hi:g}{')' if m.get('hi_open') else ']'}" if lo is not None and hi is not None else ""
        extra = f", a multiple of {mult}" if mult > 1 else ""
        raise ValueError(f"{f.name} must be {what}{rng}{extra}, got {v!r}")


# ---------------------------------------------------------------- CLI flags from the fields

def flag_names(f: dataclasses.Field) -> tuple[str, ...]:
    return f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)


def _arg_type(f: dataclasses.Field):
    kind = _kind(f)

    def parse(s: str):
        if f.name == "bundle":
            from .bundle import BUNDLE_NAMES
            if s not in BUNDLE_NAMES and not Path(s).is_dir():
                raise argparse.ArgumentTypeError(f"{s}: no such bundle folder (or name: real, synthetic)")
            return s
        if f.name == "background":
            try:
                parse_background(s)
            except (ValueError, OSError) as e:
                raise argparse.ArgumentTypeError(str(e)) from None
            return s
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not {'an integer' if kind is int else 'a number'}") from None
        try:
            check_value(f, v)
        except ValueError as e:
            must = str(e).removeprefix(f"{f.name} ").rpartition(", got")[0]
            raise argparse.ArgumentTypeError(f"{s} is out of range: {must}") from None
        return v
    return parse


def add_flags(parser: argparse.ArgumentParser, skip: Sequence[str] = (), title: str | None = None) -> None:
    """One flag per PipelineConfig field (dest = the field name, default None = "not given": the config's
    default, or the rule that decides it, applies). Fields in `skip` (or whose flag the parser already has)
    are left out."""
    g = parser.add_argument_group(title or "pipeline (PipelineConfig fields; omitted flags keep the defaults)")
    taken = set(parser._option_string_actions)  # argparse has no public way to ask
    for f in dataclasses.fields(PipelineConfig):
        names = [n for n in flag_names(f) if n not in taken]
        if f.name in skip or not names:
            continue
        m = f.metadata
        if _kind(f) is bool:
            g.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=m["help"])
        elif m.get("choices"):
            g.add_argument(*names, dest=f.name, choices=m["choices"], default=None, help=m["help"])
        else:
            g.add_argument(*names, dest=f.name, type=_arg_type(f), default=None, metavar=m.get("metavar"),
                           help=m["help"])


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The PipelineConfig fields the user set on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(PipelineConfig)
            if getattr(args, f.name, None) is not None}


def config_from(values: dict[str, Any], **overrides) -> PipelineConfig:
    """PipelineConfig from given values plus `overrides` (keys that are not fields are ignored)."""
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    kw = {k: v for k, v in {**values, **overrides}.items() if k in names}
    return PipelineConfig(**kw)


# ---------------------------------------------------------------- the rules

def is_transparent(background: str | os.PathLike | None) -> bool:
    """'transparent' or 'none' (or nothing named): there is no background to composite over."""
    return str(background if background is not None else "").strip().lower() in TRANSPARENT


def effective_mode(mode: str, background: str | None) -> str:
    """What the pipeline makes for `mode`: a composite over no background is BGRA."""
    return "rgba" if mode == "composite" and is_transparent(background) else mode


def output_mode(mode: str | None, background: str | None, sink_modes: Sequence[str], sink_prefers: str,
                where: str) -> str:
    """The mode to make for a sink: `mode` if named, else composite when a background was named, rgba for
    'transparent'/'none', else what the sink stores best. One-line ValueError when the sink cannot store it."""
    if mode is None:
        mode = sink_prefers if background is None else "composite"
    mode = effective_mode(mode, background if background is not None else "green")
    if mode not in sink_modes:
        hint = " (no alpha channel there; write .mov, .webm or a PNG folder/ for rgba)" if mode == "rgba" else ""
        raise ValueError(f"{where}: cannot store --output {mode}{hint}; it takes {', '.join(sink_modes)}")
    return mode


def overlap_for(live: bool, requested: bool | None) -> bool:
    """Overlap a file's frames (throughput), not a live source's (latency), unless the user said."""
    return (not live) if requested is None else requested


@dataclass(frozen=True)
class Resolved:
    """The settings a Pipeline runs with: its config, and every value the config left to the bundle."""

    config: PipelineConfig
    mode: str                     # what the pipeline makes (effective_mode)
    background: BackgroundSpec
    model_res: int
    refine_res: int
    depth_res: int
    patch_context: int
    depth: bool                   # the depth model runs (asked for and in the bundle)
    temporal: float = 0.0         # strength of the temporal filter on the coarse alpha (0: off)
    refine: str = "model"         # what takes the coarse alpha to the frame (REFINE)


def temporal_for(config: PipelineConfig, bundle_runtime: dict, coarse_contract: str) -> float:
    """The temporal filter's strength: the config's, else the bundle's runtime hint "temporal", else on
    (TEMPORAL_RGB) for an rgb segmenter and off for a matting model (whose outputs stay as they were)."""
    if config.temporal is not None:
        return float(config.temporal)
    hint = bundle_runtime.get("temporal")
    if isinstance(hint, (int, float)) and not isinstance(hint, bool) and 0 <= hint < 1:
        return float(hint)
    return TEMPORAL_RGB if coarse_contract == "rgb" else 0.0


def refine_for(config: PipelineConfig, bundle_runtime: dict, coarse_contract: str) -> str:
    """The refine step: the config's, else the bundle's runtime hint "refine", else the guided filter for an rgb
    segmenter (measured on real people, bench/real_people.md: the refiner hardens what the segmenter is unsure
    of, flickers and costs 3x its time) and the refiner for a matting model (trained with it)."""
    if config.refine is not None:
        return config.refine
    hint = bundle_runtime.get("refine")
    if hint in REFINE:
        return hint
    return "guided" if coarse_contract == "rgb" else "model"


def resolve(config: PipelineConfig, bundle_model_res: int, bundle_refine_res: int, bundle_runtime: dict,
            bundle_has_depth: bool, coarse_contract: str = "rgbd") -> Resolved:
    """`config` completed from the bundle's manifest (its resolutions and runtime hints) and the coarse
    stage's contract."""
    model_res = config.model_res or bundle_model_res
    return Resolved(config=config, mode=effective_mode(config.mode, config.background),
                    background=parse_background(config.background), model_res=model_res,
                    refine_res=config.refine_res or bundle_refine_res,
                    depth_res=config.depth_res or max(32, (model_res // 2) // 32 * 32),
                    patch_context=(config.patch_context if config.patch_context is not None
                                   else int(bundle_runtime.get("patch_context", 0))),
                    depth=config.depth and bundle_has_depth,
                    temporal=temporal_for(config, bundle_runtime, coarse_contract),
                    refine=refine_for(config, bundle_runtime, coarse_contract))
