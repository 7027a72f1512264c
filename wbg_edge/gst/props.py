"""The `wbgedge` element's properties, made from PipelineConfig's field metadata (no GStreamer needed here).

Each config field is one property, named as its first CLI flag without the dashes (`model_res` ->
`model-res`, `mode` -> `output`). GObject properties cannot hold None: a field whose default is None
("the bundle's value") gets a sentinel outside its range (0, or -1 when 0 is a valid value), which maps
back to None. Ranges GObject can express (lo, hi) are declared; the rest (multiples, an open upper end,
choices, background specs) is checked when the element starts, by PipelineConfig itself, so a rule is
still written once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..settings import PipelineConfig, effective_mode, flag_names

# overlap runs two frames at once inside Pipeline.stream(); the element calls process() per buffer.
SKIPPED = ("overlap",)
OUTPUT_FORMAT = {"composite": "BGR", "rgba": "BGRA", "alpha": "GRAY8"}
INPUT_FORMATS = ("BGR", "BGRx", "BGRA", "RGB", "RGBA")
INT_MAX = 2**31 - 1
DOUBLE_MAX = 1.7976931348623157e308


def _kind(f: dataclasses.Field) -> type:
    t = str(f.type)
    return bool if t.startswith("bool") else int if t.startswith("int") else float if t.startswith("float") else str


@dataclass(frozen=True)
class Prop:
    name: str          # kebab-case property name
    field: str         # PipelineConfig field
    kind: type         # bool | int | float | str
    default: Any       # the GObject default (the sentinel when the field's default is None)
    none: Any          # the value that means None ("not set"), or ... when the field cannot be None
    lo: float | None
    hi: float | None
    blurb: str

    def gspec(self, flags: int) -> tuple:
        """The PyGObject `__gproperties__` entry."""
        if self.kind in (int, float):
            big = INT_MAX if self.kind is int else DOUBLE_MAX
            lo = self.none if self.none is not ... else (self.lo if self.lo is not None else -big)
            hi = self.hi if self.hi is not None else big
            return (self.kind, self.name, self.blurb, self.kind(lo), self.kind(hi), self.default, flags)
        return (self.kind, self.name, self.blurb, self.default, flags)

    def to_config(self, value: Any) -> Any:
        return None if self.none is not ... and value == self.none else value

    def from_config(self, value: Any) -> Any:
        return self.none if value is None and self.none is not ... else value


def _prop(f: dataclasses.Field) -> Prop:
    m, kind = f.metadata, _kind(f)
    name = flag_names(f)[0].removeprefix("--")
    blurb = m["help"]
    if m.get("choices"):
        blurb += f" [{' | '.join(m['choices'])}]"
    none: Any = ...
    if f.default is None:
        none = None if kind is str else (0 if (m.get("lo") or 0) > 0 else -1)
        if kind is not str:
            blurb += f" ({none}: not set)"
    default = f.default if f.default is not None else none
    return Prop(name, f.name, kind, default, none, m.get("lo"), m.get("hi"), blurb)


def properties() -> list[Prop]:
    """One property per PipelineConfig field (but SKIPPED), in field order."""
    return [_prop(f) for f in dataclasses.fields(PipelineConfig) if f.name not in SKIPPED]


def config_from(values: dict[str, Any]) -> PipelineConfig:
    """PipelineConfig from property values by property name; one-line ValueError naming the property."""
    props = {p.name: p for p in properties()}
    kw = {props[k].field: props[k].to_config(v) for k, v in values.items()}
    if kw.get("bundle") == "":
        kw["bundle"] = None
    try:
        return PipelineConfig(**kw)
    except ValueError as e:
        msg = str(e)
        for p in props.values():  # the config names fields; the user set properties
            if p.name != p.field and msg.startswith(p.field + " "):
                msg = p.name + msg[len(p.field):]
        raise ValueError(msg) from None


def output_format(mode: str, background: str | None) -> str | None:
    """The src pad's video format for the `output` and `background` properties (None: `mode` is not one)."""
    return OUTPUT_FORMAT.get(effective_mode(mode, background))
