"""The `wbgedge` GStreamer element in real pipelines: gst-launch-1.0 and gst-inspect-1.0 in subprocesses,
and appsrc ! wbgedge ! appsink driven by tests/gst_harness.py under the Python that GStreamer's plugin
loader embeds (PyGObject is not in this venv). The element must give what Pipeline.process gives on the
same frames. Tests that need GStreamer are skipped, with the reason, where it, its Python plugin loader
or PyGObject is missing; the property and diagnosis tests run everywhere.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from wbg_edge import Pipeline, PipelineConfig
from wbg_edge.gst import diagnose, loader_library, loader_python, path_without_venvs, plugin_path, site_packages
from wbg_edge.gst.embedded import add_system_gi
from wbg_edge.gst.props import SKIPPED, config_from, output_format, properties

REPO = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).resolve().parent / "gst_harness.py"
OURS = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _system_python(ver: str) -> str | None:
    """The system interpreter the loader embeds (it has PyGObject; a pyenv or venv python3 does not)."""
    for d in ("/usr/bin", "/usr/local/bin", "/bin"):
        if os.access(f"{d}/python{ver}", os.X_OK):
            return f"{d}/python{ver}"
    return None


def _missing() -> tuple[str | None, str | None]:
    """(why GStreamer tests cannot run here or None, the loader's Python)"""
    if not (shutil.which("gst-launch-1.0") and shutil.which("gst-inspect-1.0")):
        return "GStreamer is not installed (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good ...)", None
    lib = loader_library()
    if lib is None:
        return "GStreamer's Python plugin loader is missing (apt-get install gstreamer1.0-python3-plugin-loader)", None
    ver = loader_python(lib)
    if ver != OURS:
        return f"GStreamer's plugin loader embeds Python {ver}, these tests run on {OURS}", None
    py = _system_python(ver)
    probe = "import gi; gi.require_version('GstApp', '1.0'); gi.require_version('GstVideo', '1.0')"
    if py is None or subprocess.run([py, "-c", probe], capture_output=True).returncode != 0:
        return f"PyGObject for the loader's Python {ver} is missing (apt-get install python3-gst-1.0)", None
    return None, py


WHY, SYSTEM_PY = _missing()
needs_gst = pytest.mark.skipif(WHY is not None, reason=WHY or "")


@pytest.fixture(scope="module")
def gst_env(tmp_path_factory) -> dict[str, str]:
    env = dict(os.environ)
    # no venv on PATH: this venv may lack wbg_edge_gst.pth (a source checkout); test_activated_venv covers that
    env.update(GST_PLUGIN_PATH=str(plugin_path()), PATH=path_without_venvs(env.get("PATH", "")),
               PYTHONPATH=site_packages(),  # (wbg_edge itself: installed there, or this checkout via the plugin)
               GST_REGISTRY=str(tmp_path_factory.mktemp("gst") / "registry.bin"))
    env.pop("VIRTUAL_ENV", None)
    return env


def launch(pipeline: str, env: dict, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["gst-launch-1.0", *shlex.split(pipeline)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _frame(i: int, h: int = 64, w: int = 90) -> np.ndarray:
    """A bright blob moving over a gradient: a mask with edges, different from frame to frame."""
    f = np.zeros((h, w, 3), np.uint8)
    f[:] = np.linspace(30, 90, w, dtype=np.uint8)[None, :, None]
    cv2.ellipse(f, (w // 4 + 12 * i, h // 2), (w // 7, h * 3 // 8), 0, 0, 360, (180, 200, 230), -1)
    return f


# ---------------------------------------------------------------- no GStreamer needed

def test_every_config_field_is_a_property():
    props = {p.field: p for p in properties()}
    fields = [f for f in dataclasses.fields(PipelineConfig) if f.name not in SKIPPED]
    assert [f.name for f in fields] == list(props)
    assert props["mode"].name == "output" and props["model_res"].name == "model-res"
    for f in fields:
        p, lo, hi = props[f.name], f.metadata["lo"], f.metadata["hi"]
        spec = p.gspec(3)
        if p.kind in (int, float):  # (type, nick, blurb, min, max, default, flags); None: a value below lo
            assert (spec[3], spec[4]) == ((p.none if f.default is None else lo), hi)
            assert spec[3] <= spec[5] <= spec[4] and (f.default is not None or p.none < lo)
        assert p.to_config(p.default) == f.default


def test_config_from_properties_names_the_property():
    cfg = config_from({"output": "alpha", "model-res": 64, "patch-context": -1, "bundle": ""})
    assert (cfg.mode, cfg.model_res, cfg.patch_context, cfg.bundle) == ("alpha", 64, None, None)
    with pytest.raises(ValueError, match=r"^output must be one of"):
        config_from({"output": "foo"})
    with pytest.raises(ValueError, match=r"^model-res must be an integer in \[32, 2048\], a multiple of 32"):
        config_from({"model-res": 33})
    with pytest.raises(ValueError, match=r"^smoothing must be a number in \[0, 1\)"):
        config_from({"smoothing": 1.0})
    assert [output_format(m, "green") for m in ("composite", "rgba", "alpha")] == ["BGR", "BGRA", "GRAY8"]
    assert output_format("composite", "transparent") == "BGRA"


def test_plugin_folder_is_what_the_loader_scans():
    assert (plugin_path() / "python" / "wbgedge.py").is_file()
    assert (plugin_path() / "wbg_edge_gst.pth").read_text().startswith("import sys; sys.orig_argv or ")


def test_system_gi_only_in_an_embedded_interpreter(monkeypatch, tmp_path):
    fake = tmp_path / "dist-packages"
    (fake / "gi").mkdir(parents=True)
    (fake / "gi" / "__init__.py").write_text("")
    assert add_system_gi([str(fake)]) is None  # the python command: sys.orig_argv is set
    monkeypatch.setattr(sys, "orig_argv", [])
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not (Path(p) / "gi").is_dir()])
    assert add_system_gi([str(tmp_path / "nothing"), str(fake)]) == str(fake)
    assert sys.path[-1] == str(fake)


def test_diagnose_without_gstreamer(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    why = diagnose()
    assert why.startswith("wbgedge does not load: GStreamer is not installed")
    assert "apt-get install" in why and "gstreamer1.0-python3-plugin-loader" in why


# ---------------------------------------------------------------- gst-inspect, gst-launch

@needs_gst
def test_inspect_lists_every_property(gst_env):
    r = subprocess.run(["gst-inspect-1.0", "wbgedge"], env=gst_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for p in properties():
        assert re.search(rf"^\s+{p.name}\s+:", r.stdout, re.M), p.name
    for name in ("fps", "latency-ms"):
        assert re.search(rf"^\s+{name}\s+:.*\n\s+flags: readable\s*$", r.stdout, re.M), name
    assert "format: { (string)BGR, (string)BGRx, (string)BGRA, (string)RGB, (string)RGBA }" in r.stdout


@needs_gst
def test_diagnose_says_it_loads(monkeypatch, gst_env):
    for k in ("PATH", "PYTHONPATH", "GST_REGISTRY"):  # (not the user's registry: it may remember a failure)
        monkeypatch.setenv(k, gst_env[k])
    why = diagnose()
    assert why.startswith("wbgedge loads (GStreamer 1.") and f"GST_PLUGIN_PATH={plugin_path()}" in why, why


@needs_gst
def test_frames_in_frames_out_across_a_size_change(gst_env, tmp_path):
    # two streams of different sizes, one after the other: caps change mid-stream, a new stream, EOS at the end
    r = launch(f"concat name=c ! videoconvert ! wbgedge output=alpha model-res=64 ! pngenc ! multifilesink "
               f"location={tmp_path}/f%03d.png "
               "videotestsrc num-buffers=4 pattern=ball ! video/x-raw,width=96,height=64 ! c. "
               "videotestsrc num-buffers=3 pattern=ball ! video/x-raw,width=66,height=50 ! c.", gst_env)
    assert r.returncode == 0, r.stdout + r.stderr
    sizes = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape for p in sorted(tmp_path.glob("f*.png"))]
    assert sizes == [(64, 96)] * 4 + [(50, 66)] * 3


def _error_line(r: subprocess.CompletedProcess) -> str:
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out, out
    lines = [s for s in out.splitlines() if s.startswith("ERROR: from element")]
    assert len(lines) == 1, out
    return lines[0].split(": ", 2)[2]


@needs_gst
def test_missing_bundle_fails_with_one_line(gst_env):
    r = launch("videotestsrc num-buffers=3 ! videoconvert ! wbgedge bundle=/nonexistent/bundle ! fakesink", gst_env)
    line = _error_line(r)
    assert line.startswith("/nonexistent/bundle: bundle folder does not exist") and "manifest.json" in line


@needs_gst
def test_broken_model_file_fails_naming_it(gst_env, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "wbg_edge" / "models" / "default", bundle)
    onnx = bundle / "matting.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])
    line = _error_line(launch(f"videotestsrc num-buffers=3 ! videoconvert ! wbgedge bundle={bundle} ! fakesink",
                              gst_env))
    assert str(onnx) in line and "SHA-256" in line, line


@needs_gst
@pytest.mark.parametrize("prop, says", [("output=foo", "bad property: output must be one of"),
                                        ("smoothing=1", "bad property: smoothing must be a number in [0, 1)")])
def test_bad_property_fails_naming_it(gst_env, prop, says):
    line = _error_line(launch(f"videotestsrc num-buffers=2 ! videoconvert ! wbgedge {prop} ! fakesink", gst_env))
    assert line.startswith(says), line


# ---------------------------------------------------------------- appsrc ! wbgedge ! appsink

FRAMES = {f"f{i}": _frame(i) for i in range(4)} | {f"g{i}": _frame(i, 50, 66) for i in range(2)}
JOBS = [  # (props, input format, frames, flushing seek before these indices)
    ({"output": "alpha"}, "BGR", ["f0", "f1", "f2", "f3"], []),
    *[({"output": "alpha"}, fmt, ["f0", "f1"], []) for fmt in ("RGB", "BGRx", "BGRA", "RGBA")],
    ({"output": "composite", "background": "blue"}, "BGR", ["f0", "f1"], []),
    ({"output": "rgba"}, "RGB", ["f0", "f1"], []),
    ({"output": "composite", "background": "transparent"}, "BGR", ["f0"], []),
    ({"output": "alpha", "smoothing": 0.6}, "BGR", ["f0", "f1", "f2", "f3"], [2]),
    ({"output": "alpha"}, "BGR", ["f0", "g0", "g1", "f1"], []),
]


@pytest.fixture(scope="module")
def harness(gst_env, tmp_path_factory) -> list[tuple[list[np.ndarray], dict]]:
    """Runs every job of JOBS in one process (one start-up): per job, the output frames and the metadata."""
    tmp = tmp_path_factory.mktemp("harness")
    np.savez(tmp / "in.npz", **FRAMES)
    jobs = [{"props": {"model-res": 64, **props}, "format": fmt, "order": order, "seek_before": seeks}
            for props, fmt, order, seeks in JOBS]
    (tmp / "job.json").write_text(json.dumps({"frames": str(tmp / "in.npz"), "out": str(tmp / "out.npz"),
                                              "jobs": jobs}))
    r = subprocess.run([SYSTEM_PY, str(HARNESS), str(tmp / "job.json")], env=gst_env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = np.load(tmp / "out.npz")
    return [([out[f"j{j}_{i}"] for i in range(len(order)) if f"j{j}_{i}" in out], json.loads(str(out[f"j{j}_meta"])))
            for j, (_, _, order, _) in enumerate(JOBS)]


def _expected(props: dict, order: list[str], seeks=(), reset=True) -> list[np.ndarray]:
    """Pipeline.process on the same frames (a flushing seek = reset)."""
    values = {"model-res": 64, **props}
    with Pipeline(config_from(values)) as pipe:
        return [(pipe.reset() if i in seeks and reset else None, pipe.process(FRAMES[n]).image.copy())[1]
                for i, n in enumerate(order)]


def _same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, (i, g.shape, w.shape)
        off = np.abs(g.astype(np.int16) - w).max()
        assert off <= 1, f"frame {i}: off by {off}"


@needs_gst
@pytest.mark.parametrize("j", range(len(JOBS) - 2))
def test_output_equals_pipeline_process(harness, j):
    props, fmt, order, _ = JOBS[j]
    frames, meta = harness[j]
    assert meta["errors"] == []
    _same(frames, _expected(props, order))
    want = output_format(props["output"], props.get("background", "green"))
    assert {b["format"] for b in meta["buffers"]} == {want}


@needs_gst
def test_timestamps_offsets_and_metas_are_kept(harness):
    frames, meta = harness[0]
    assert len(frames) == 4 and meta["eos"]
    ns = 10**9 // 25
    for i, b in enumerate(meta["buffers"]):
        assert (b["pts"], b["dts"], b["duration"]) == (1000 + i * ns, 500 + i * ns, ns)
        assert (b["offset"], b["offset_end"], b["ref"], b["discont"]) == (i, i + 1, 7000 + i, i == 0)


@needs_gst
def test_latency_query_adds_the_processing_time(harness):
    _, meta = harness[0]
    (live_up, min_up, _), (live, min_total, max_total) = meta["latency"]
    assert live == live_up and 0 < min_total - min_up < 10**10 and max_total >= min_total
    assert meta["fps"] > 0 and meta["latency_ms"] > 0


@needs_gst
def test_flushing_seek_clears_smoothing(harness):
    props, _, order, seeks = JOBS[-2]
    frames, meta = harness[-2]
    assert meta["errors"] == [] and meta["buffers"][2]["discont"]
    _same(frames, _expected(props, order, seeks))
    carried = _expected(props, order, seeks, reset=False)[2]  # what frame 2 would be had the seek not reset
    assert np.abs(frames[2].astype(np.int16) - carried).max() > 1


@needs_gst
def test_new_size_mid_stream(harness):
    props, _, order, _ = JOBS[-1]
    frames, meta = harness[-1]
    assert meta["errors"] == []
    assert [f.shape for f in frames] == [(64, 90), (50, 66), (50, 66), (64, 90)]
    _same(frames, _expected(props, order))


# ---------------------------------------------------------------- README examples, activated venv

def _readme_examples() -> list[str]:
    """The gst-launch commands of README.md's "In GStreamer" section that read input.mp4."""
    section = re.search(r"^## In GStreamer\n(.*?)(?=^## |\Z)", (REPO / "README.md").read_text(), re.M | re.S)
    assert section, "README.md has no '## In GStreamer' section"
    return [s for s in section[1].splitlines() if s.startswith("gst-launch-1.0 ") and "input.mp4" in s]


def _have(element: str, env: dict) -> bool:
    return subprocess.run(["gst-inspect-1.0", element], env=env, capture_output=True).returncode == 0


@needs_gst
def test_readme_examples_run(gst_env, tmp_path):
    examples = _readme_examples()
    assert len(examples) == 3, examples
    # JPEG in QuickTime: plugins-good alone can decode it (no H.264 decoder there); decodebin does not mind the name
    r = launch("videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=160,height=120,framerate=25/1 "
               "! jpegenc ! qtmux ! filesink location=input.mp4", gst_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    skipped = []
    for cmd in examples:
        needs = [e for e in ("x264enc",) if f" {e} " in cmd and not _have(e, gst_env)]
        if needs:
            skipped.append(f"{needs[0]} missing (gstreamer1.0-plugins-ugly)")
            continue
        r = launch(cmd.removeprefix("gst-launch-1.0 "), gst_env, cwd=tmp_path)
        assert r.returncode == 0, cmd + "\n" + r.stdout + r.stderr
        out = re.findall(r"location=(\S+)", cmd)[-1]
        if out.endswith(".png"):
            pngs = sorted(tmp_path.glob(out.replace("%05d", "*")))
            assert len(pngs) == 10 and cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED).shape == (120, 160)
        elif out.endswith(".mov"):  # PNG samples in QuickTime: demux them back and look for the alpha channel
            r = launch(f"filesrc location={out} ! qtdemux ! multifilesink location=mov-%03d.png", gst_env,
                       cwd=tmp_path)
            pngs = sorted(tmp_path.glob("mov-*.png"))
            assert len(pngs) == 10 and cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED).shape == (120, 160, 4)
        else:
            cap = cv2.VideoCapture(str(tmp_path / out))
            n = 0
            while cap.read()[0]:
                n += 1
            assert n == 10 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 160
    if skipped:
        pytest.skip("; ".join(skipped) + " (the other examples ran)")


@needs_gst
def test_activated_venv_needs_and_gets_the_pth(gst_env, tmp_path, monkeypatch):
    """With a venv's bin/ first on PATH, GStreamer's embedded Python runs as that venv: without
    wbg_edge_gst.pth no Python element loads at all; with it, wbgedge does."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "a_paths.pth").write_text(f"{REPO}\n{site_packages()}\n")  # what pip install -e would give
    env = dict(gst_env, PATH=f"{venv / 'bin'}{os.pathsep}{gst_env['PATH']}", PYTHONPATH="")
    cmd = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! videoconvert ! wbgedge model-res=64 ! fakesink"
    r = launch(cmd, dict(env, GST_REGISTRY=str(tmp_path / "without.bin")))
    assert r.returncode != 0 and "pygobject initialization failed" in r.stderr, r.stdout + r.stderr
    # that registry now remembers the failure, whatever the environment: diagnose says so
    monkeypatch.setenv("GST_REGISTRY", str(tmp_path / "without.bin"))
    for k in ("PATH", "PYTHONPATH"):
        monkeypatch.setenv(k, gst_env[k])
    assert "remembers an earlier failure" in diagnose()
    shutil.copy(plugin_path() / "wbg_edge_gst.pth", site)
    r = launch(cmd, dict(env, GST_REGISTRY=str(tmp_path / "with.bin")))
    assert r.returncode == 0, r.stdout + r.stderr
