"""wbg_edge.settings: one config, its flags made from its fields, and each output rule written once."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

import wbg_edge
from wbg_edge.settings import PipelineConfig, add_flags, config_from, given, output_mode, resolve

FIELDS = {f.name: f for f in dataclasses.fields(PipelineConfig)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_flags(p)
    return p


def test_top_level_api():
    from wbg_edge import Matte, Pipeline
    from wbg_edge import PipelineConfig as Top
    assert Top is PipelineConfig and Pipeline.__name__ == "Pipeline" and Matte.__name__ == "Matte"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        wbg_edge.Nope  # noqa: B018


@pytest.mark.parametrize("name", [n for n, f in FIELDS.items() if f.metadata["lo"] is not None])
def test_flag_and_config_share_one_range(name):
    """A bound is written once: the config and its generated flag accept and refuse the same values."""
    f = FIELDS[name]
    m = f.metadata
    is_int = str(f.type).startswith("int")
    step = m["multiple"] if is_int else 1e-3
    ok = [m["lo"], m["hi"] - (step if m["hi_open"] else 0)]
    bad = [m["lo"] - step, m["hi"] + (0 if m["hi_open"] else step)]
    if is_int and m["multiple"] > 1:
        bad.append(m["lo"] + 1)
    flag = "--" + name.replace("_", "-")
    for v in ok:
        assert getattr(PipelineConfig(**{name: v}), name) == v
        assert getattr(parser().parse_args([flag, str(v)]), name) == v
    for v in bad:
        with pytest.raises(ValueError, match=name):
            PipelineConfig(**{name: v})
        with pytest.raises(argparse.ArgumentError, match="out of range"):
            parser().parse_args([flag, str(v)])


def test_flags_cover_every_field_and_omitted_flags_keep_defaults():
    args = parser().parse_args([])
    assert set(FIELDS) <= set(vars(args))
    assert given(args) == {} and config_from(given(args)) == PipelineConfig()
    args = parser().parse_args(["--no-depth", "--output", "alpha", "--threaded", "--background", "blur:4"])
    assert config_from(given(args)) == PipelineConfig(depth=False, mode="alpha", overlap=True, background="blur:4")


def test_skip_and_flags_the_parser_already_has():
    p = argparse.ArgumentParser()
    p.add_argument("--overlap", type=int)  # e.g. batch's chunk overlap, in frames
    add_flags(p, skip=("mode",))
    assert p.parse_args(["--overlap", "8"]).overlap == 8  # not replaced by the pipeline's boolean
    assert p.parse_args(["--threaded"]).overlap is True
    assert not hasattr(p.parse_args([]), "mode")


VIDEO = (("composite", "alpha"), "composite")   # what an mp4 stores, and prefers
ALPHA = (("composite", "rgba", "alpha"), "rgba")  # a .mov / .webm / PNG folder


@pytest.mark.parametrize("mode, background, sink, want", [
    (None, None, VIDEO, "composite"),
    (None, None, ALPHA, "rgba"),
    (None, "blur", ALPHA, "composite"),
    (None, "transparent", ALPHA, "rgba"),
    (None, "none", ALPHA, "rgba"),
    (None, "NONE ", ALPHA, "rgba"),
    ("composite", "none", ALPHA, "rgba"),  # nothing to composite over
    ("alpha", "transparent", VIDEO, "alpha"),
    (None, "transparent", VIDEO, "cannot store --output rgba (no alpha channel there"),
    (None, "none", VIDEO, "cannot store --output rgba"),
    ("rgba", None, VIDEO, "cannot store --output rgba"),
])
def test_output_mode(mode, background, sink, want):
    if want.startswith("cannot"):
        with pytest.raises(ValueError, match=r"out\.mp4: " + want.replace("(", r"\(")):
            output_mode(mode, background, *sink, "out.mp4")
    else:
        assert output_mode(mode, background, *sink, "out.mp4") == want


def test_resolve_takes_what_the_config_leaves_to_the_bundle():
    r = resolve(PipelineConfig(background="none"), 256, 512, {"patch_context": 4}, bundle_has_depth=True)
    assert (r.mode, r.model_res, r.refine_res, r.depth_res, r.patch_context, r.depth) == \
        ("rgba", 256, 512, 128, 4, True)
    r = resolve(PipelineConfig(model_res=320, refine_res=640, depth_res=96, patch_context=0, mode="alpha"),
                256, 512, {"patch_context": 4}, bundle_has_depth=False)
    assert (r.mode, r.model_res, r.refine_res, r.depth_res, r.patch_context, r.depth) == \
        ("alpha", 320, 640, 96, 0, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.mode = "rgba"
