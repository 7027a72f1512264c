"""Every code block of README.md works as written.

Python blocks run as they are, in a folder holding the `talk.mp4` they read. Each command line of a shell
block is either run here as written (in that folder, with small clips named as the README names them),
or checked without running: `wbg-edge ...` lines are parsed by the real CLI parser, `python -m MODULE ...`
lines must name options that `python -m MODULE --help` lists. A line that needs a camera, a network stream,
a GPU, a cluster or hours of training is in `CHECK_ONLY`; one the test does not know fails it, so a new
README command is either run here or given a reason.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import write_clip

from wbg_edge.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, re.S | re.M)

# Lines checked without running, by the start of the line, with why.
CHECK_ONLY = {
    "python3 -m venv .venv": "the set-up commands: .ci/run runs them as written on every CI run",
    "wbg-edge run -i 0 ": "needs a camera",
    "wbg-edge run -i rtsp://": "needs a network stream",
    "wbg-edge run -i csi://": "needs a Jetson camera",
    "wbg-edge batch list.txt -o matted/ --ray": "starts Ray (the acceptance check 'batch' runs --ray auto)",
    "wbg-edge batch list.txt -o /shared": "needs a Ray cluster",
    "python -m training.": "hours of training or the user's data; options checked against --help",
    "python -m export.": "builds from checkpoints / downloads wheels; CI runs build_engine; options checked",
    "torchrun ": "several processes or machines; options checked against training.train --help",
    "sudo ": "installs system packages (.ci/run installs GStreamer the same way)",
    "export GST_PLUGIN_PATH": "environment for the lines below; tests/test_gst.py sets the same",
    "export PYTHONPATH": "environment for the lines below; tests/test_gst.py sets the same",
    "gst-inspect-1.0 wbgedge": "tests/test_gst.py lists the element's properties with it",
    "gst-launch-1.0 filesrc location=input.mp4": "tests/test_gst.py runs these examples from README.md's text",
    "gst-launch-1.0 v4l2src": "needs a camera (and v4l2loopback for the virtual one)",
    "gst-launch-1.0 nvarguscamerasrc": "needs a Jetson",
}


def shell_lines(lang: str, body: str) -> list[str]:
    """Command lines of a shell block (comments and continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", body)
    return [ln.split("  #")[0].strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def all_lines() -> list[str]:
    return [ln for lang, body in BLOCKS if lang in ("bash", "sh", "console") for ln in shell_lines(lang, body)]


@pytest.fixture
def workdir(tmp_path) -> tuple[Path, dict]:
    """A folder with the inputs the README names, and `wbg-edge` on PATH running this checkout."""
    for name in ("talk.mp4", "clip.mp4"):
        write_clip(tmp_path / name, n=6)
    (tmp_path / "takes").mkdir()
    write_clip(tmp_path / "takes" / "a.mp4", n=6)
    (tmp_path / "lectures").mkdir()
    write_clip(tmp_path / "lectures" / "b.mp4", n=6)
    (tmp_path / "list.txt").write_text("talk.mp4\nclip.mp4\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "wbg-edge"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m wbg_edge "$@"\n')
    exe.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return tmp_path, env


def test_readme_has_blocks():
    assert any(lang == "python" for lang, _ in BLOCKS) and len(all_lines()) > 10


@pytest.mark.parametrize("i", [i for i, (lang, _) in enumerate(BLOCKS) if lang == "python"])
def test_python_block_runs_as_written(i, workdir):
    cwd, env = workdir
    p = subprocess.run([sys.executable, "-c", BLOCKS[i][1]], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


RUN = [ln for ln in all_lines() if not any(ln.startswith(k) for k in CHECK_ONLY)]


@pytest.mark.parametrize("line", RUN)
def test_command_runs_as_written(line, workdir):
    cwd, env = workdir
    assert line.startswith("wbg-edge "), f"README line neither run here nor in CHECK_ONLY: {line}"
    p = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{line}\n{p.stderr[-2000:]}"


@pytest.mark.parametrize("line", [ln for ln in all_lines() if ln.startswith("wbg-edge ") and ln not in RUN])
def test_wbg_edge_line_parses(line):
    argv = shlex.split(line.split("|")[0])[1:]
    args = build_parser().parse_args(argv)
    assert args.func is not None


MODULE_LINES = [ln for ln in all_lines() if re.search(r"(python3? |torchrun .*)-m (training|export)\.", ln)]


@pytest.mark.parametrize("line", MODULE_LINES)
def test_module_line_names_real_options(line):
    module = re.search(r"-m ((?:training|export)\.[\w.]+)", line).group(1)
    tail = line.split(module, 1)[1]
    words = tail.split()
    command = words[:next((i for i, w in enumerate(words) if not re.fullmatch(r"\w[\w-]*", w)), len(words))]
    p = subprocess.run([sys.executable, "-m", module, *command, "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-2000:]
    for opt in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", tail):
        assert opt in p.stdout, f"{module} has no option {opt} (README: {line})"
