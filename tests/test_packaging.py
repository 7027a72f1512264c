"""The wheel claims no generic top-level names: training/ and export/ install as wbg_edge_toolchain.training
and wbg_edge_toolchain.export, and the same files still run as top-level packages from a checkout
(`python -m export.build_engine`, as CI runs it)."""
import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "wbg_edge_toolchain"


def _imports(path: Path):
    """(level, module, names) of every import in a file, lazy ones too."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((0, a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or "", [a.name for a in node.names]


@pytest.mark.parametrize("pkg", ["training", "export"])
def test_toolchain_imports_itself_relatively(pkg):
    """An absolute `import training` / `import export` inside them would break the installed copy (or load a
    second copy under the top-level name); export reaches training through export/_training.py only."""
    bad = []
    for f in sorted((ROOT / pkg).rglob("*.py")):
        if f == ROOT / "export" / "_training.py":
            continue
        for level, mod, _ in _imports(f):
            if level == 0 and mod.split(".")[0] in ("training", "export", PREFIX):
                bad.append(f"{f.relative_to(ROOT)}: {mod}")
    assert bad == []


def test_pyproject_maps_the_toolchain_under_the_prefix():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = cfg["tool"]["scikit-build"]["wheel"]["packages"]
    assert {target.split("/")[0] for target in packages} == {"wbg_edge", PREFIX}
    assert packages[f"{PREFIX}/training"] == "training" and packages[f"{PREFIX}/export"] == "export"
    for name, target in cfg["project"]["scripts"].items():  # each console script's module exists, with main()
        module, func = target.split(":")
        parts = module.split(".")
        src = ROOT / packages["/".join(parts[:2])] if parts[0] == PREFIX else ROOT / parts[0]
        mod = src.joinpath(*parts[2 if parts[0] == PREFIX else 1:])
        path = mod / "__init__.py" if mod.is_dir() else mod.with_suffix(".py")
        assert path.is_file(), f"{name}: {path}"
        assert any(isinstance(n, ast.FunctionDef) and n.name == func for n in ast.parse(path.read_text()).body), name


def test_toolchain_runs_under_the_installed_names(tmp_path):
    """The installed layout (links into the checkout, the checkout itself off sys.path): every module imports
    as wbg_edge_toolchain.*, and no top-level training or export module gets loaded."""
    try:
        (tmp_path / "wbg_edge").symlink_to(ROOT / "wbg_edge", target_is_directory=True)
        (tmp_path / PREFIX).mkdir()
        for pkg in ("training", "export"):
            (tmp_path / PREFIX / pkg).symlink_to(ROOT / pkg, target_is_directory=True)
    except OSError as e:
        pytest.skip(f"no symlinks here ({e})")
    modules = [f"{PREFIX}.{'.'.join(f.relative_to(ROOT).with_suffix('').parts)}"
               for pkg in ("training", "export") for f in sorted((ROOT / pkg).rglob("*.py"))
               if f.name != "__init__.py"]
    code = (f"import importlib, json, sys\n"
            f"sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if p not in ('', {str(ROOT)!r})]\n"
            f"failed = {{}}\n"
            f"for m in {modules!r}:\n"
            f"    try:\n"
            f"        importlib.import_module(m)\n"
            f"    except ImportError as e:\n"
            f"        if getattr(e, 'name', None) in (None, 'training', 'export') or 'relative' in str(e):\n"
            f"            failed[m] = str(e)\n"  # a missing optional dependency is not the layout's fault
            f"from {PREFIX}.export import checkpoints\n"
            f"print(json.dumps({{'failed': failed, 'top_level': sorted(m for m in sys.modules "
            f"if m.split('.')[0] in ('training', 'export')), 'ckpt': str(checkpoints.default_checkpoint_dir())}}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["failed"] == {} and out["top_level"] == []
    assert out["ckpt"] == str(ROOT / "training" / "checkpoints" / "default")


def test_wheel_has_no_top_level_training_or_export(tmp_path):
    """Builds the wheel with CMake switched off (wheel.cmake=false: the Python packages are mapped the same
    way, and the native library is not what this checks), ~15 s with pip's isolated build environment."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--config-settings=wheel.cmake=false",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    if r.returncode and "No matching distribution found for scikit-build-core" in r.stderr + r.stdout:
        pytest.skip("the build backend (scikit-build-core) cannot be fetched here")
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    (whl,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(whl).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"wbg_edge", PREFIX}, tops
    for must in (f"{PREFIX}/training/checkpoint.py", f"{PREFIX}/export/build_engine.py",
                 f"{PREFIX}/export/_training.py", f"{PREFIX}/training/checkpoints/default/refiner.safetensors",
                 "wbg_edge/models/default/manifest.json", "wbg_edge/models/segmenter-refiner/refiner.onnx",
                 *(f"wbg_edge/models/real/{f}" for f in ("manifest.json", "mediapipe_selfie_general.onnx", "LICENSE",
                                                         "NOTICE")),
                 "wbg_edge/data/astronaut.jpg", "wbg_edge/data/PROVENANCE.md"):
        assert must in names, must
    entry_points = next(zipfile.Path(whl, n).read_text() for n in names if n.endswith("entry_points.txt"))
    assert f"wbg-edge-export = {PREFIX}.export.build_engine:main" in entry_points
