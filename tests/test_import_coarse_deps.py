"""export.import_coarse without its optional packages, as a newcomer meets it: the [import] extra missing is
one line naming it and the install command (no traceback), and without the TFLite interpreter the parity
check is reported as not done, loudly and in the manifest. Each module is hidden in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_hidden(hidden: tuple[str, ...], args: list[str], home: Path) -> subprocess.CompletedProcess:
    """python -m export.import_coarse ARGS with the `hidden` top-level modules impossible to import."""
    code = ("import runpy, sys\n"
            "class Hide:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] in {hidden!r}:\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Hide())\n"
            f"sys.argv = ['import_coarse', *{args!r}]\n"
            "runpy.run_module('export.import_coarse', run_name='__main__', alter_sys=True)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WBG_EDGE_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


@pytest.mark.parametrize("hidden", [("onnx",), ("tflite",), ("onnx", "tflite")])
def test_missing_import_extra_is_one_line_with_the_install_command(tmp_path, hidden):
    # a wheel path that does not exist: the check must come before any download or file access
    r = _run_hidden(hidden, ["mediapipe-selfie", "--wheel", str(tmp_path / "none.whl"), "--out", str(tmp_path / "b")],
                    tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert all(name in lines[0] for name in hidden) and "pip install 'wbg-edge[import]'" in lines[0]
    assert not (tmp_path / "b").exists() and not (tmp_path / "wheels").exists()


def test_without_the_tflite_interpreter_parity_is_not_checked_loudly(tmp_path):
    pytest.importorskip("onnx", reason="the [import] extra (onnx) is not installed")
    pytest.importorskip("tflite", reason="the [import] extra (tflite) is not installed")
    from export import import_coarse as ic

    try:
        wheel = ic.fetch_wheel()  # the cached wheel (~/.cache/wbg-edge or $WBG_EDGE_HOME), else a download
    except ic.RegistryUnreachable as e:
        pytest.skip(f"package registry unreachable, cannot download mediapipe {ic.VERSION}: {e}")
    out = tmp_path / "b"
    r = _run_hidden(("ai_edge_litert",), ["mediapipe-selfie", "--wheel", str(wheel), "--out", str(out),
                                          "--no-refiner"], tmp_path)
    assert r.returncode == 0, r.stderr
    warning = [ln for ln in r.stderr.splitlines() if "WARNING" in ln]
    assert len(warning) == 1 and "NOT checked" in warning[0] and "pip install ai-edge-litert" in warning[0]
    validation = json.loads((out / "manifest.json").read_text())["artifacts"][0]["validation"]
    assert validation["parity"] == "not checked" and "ai-edge-litert" in validation["parity_reason"]
    assert "max_abs_diff" not in validation and validation["onnx_checker"] == "ok"
