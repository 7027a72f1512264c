"""The shipped real-people bundle (wbg_edge/models/real): MediaPipe's selfie segmenter converted to ONNX by
export.import_coarse, with its licence and provenance beside it, the refiner from segmenter-refiner, and the
embedded demo photo with its provenance."""
from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from wbg_edge.bundle import load_bundle, sha256_file, shipped_bundle_dir

ROOT = Path(__file__).resolve().parents[1]
REAL = shipped_bundle_dir("real")
GENERAL_TFLITE_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"  # in every 0.10.14 wheel


def test_every_file_matches_its_manifest():
    b = load_bundle(REAL)
    assert b.name == "real" and b.base == "segmenter-refiner" and b.base_stages == ("refiner",)
    assert sorted(p.name for p in REAL.iterdir()) == ["LICENSE", "NOTICE", "manifest.json",
                                                      "mediapipe_selfie_general.onnx"]
    coarse = b.find("coarse")
    assert b.verify(coarse).stat().st_size < 500_000  # ~443 KB
    holder, refiner = b.resolve("refiner")
    assert holder.root == shipped_bundle_dir("segmenter-refiner") and holder.verify(refiner)
    files = b.provenance["coarse"]["files"]
    assert files == {"LICENSE": sha256_file(REAL / "LICENSE"), "NOTICE": sha256_file(REAL / "NOTICE")}


def test_licence_and_provenance():
    b = load_bundle(REAL)
    p, v = b.provenance["coarse"], b.find("coarse").validation
    licence = (REAL / "LICENSE").read_text()
    assert licence.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in licence
    assert licence == p["licence_text"] and p["licence_file"] == "mediapipe-0.10.14.dist-info/LICENSE"
    assert p["package"] == "mediapipe==0.10.14" and p["wheel"].startswith("mediapipe-0.10.14-")
    assert p["path_in_wheel"] == "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
    assert p["tflite_sha256"] == GENERAL_TFLITE_SHA256
    assert v["parity"] == "checked" and v["max_abs_diff"] < 1e-4 and v["mean_abs_diff"] < 1e-6
    assert set(v["images"]) == {"astronaut", "camera", "grace_hopper"}
    notice = (REAL / "NOTICE").read_text()
    for must in (p["wheel"], p["wheel_sha256"], p["path_in_wheel"], p["tflite_sha256"], p["converter"],
                 b.find("coarse").sha256, f"max |diff| {v['max_abs_diff']:.1e}", "Apache License, Version 2.0",
                 f"Made with:       {p['command']}"):
        assert must in notice, must
    # the converted file carries its origin too, for copies made without the manifest
    meta = ort.InferenceSession(str(REAL / "mediapipe_selfie_general.onnx"),
                                providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert meta["tflite_sha256"] == GENERAL_TFLITE_SHA256 and "Apache" in meta["licence"]


def test_made_by_the_importer_as_recorded(tmp_path):
    """The recorded command, rerun from the same wheel into another folder, gives the same bytes."""
    pytest.importorskip("tflite", reason="the [import] extra (tflite) is not installed")
    pytest.importorskip("onnx", reason="the [import] extra (onnx) is not installed")
    pytest.importorskip("ai_edge_litert", reason="the parity check recorded in the manifest needs ai-edge-litert")
    from export import import_coarse as ic

    p = load_bundle(REAL).provenance["coarse"]
    try:
        wheel = ic.fetch_wheel()
    except ic.RegistryUnreachable as e:
        pytest.skip(f"package registry unreachable, cannot download mediapipe {ic.VERSION}: {e}")
    if sha256_file(wheel) != p["wheel_sha256"]:
        pytest.skip(f"the cached wheel {wheel.name} is another platform's than {p['wheel']} (the .tflite is the same)")
    argv = shlex.split(p["command"].removeprefix("python -m export.import_coarse "))
    assert argv[argv.index("--out") + 1] == "wbg_edge/models/real"
    argv[argv.index("--out") + 1] = str(tmp_path / "real")
    assert ic.main([*argv, "--wheel", str(wheel)]) == 0
    for name in ("mediapipe_selfie_general.onnx", "LICENSE"):
        assert (tmp_path / "real" / name).read_bytes() == (REAL / name).read_bytes(), name
    again = json.loads((tmp_path / "real" / "manifest.json").read_text())
    shipped = json.loads((REAL / "manifest.json").read_text())
    for doc in (again, shipped):  # the command names its --out, NOTICE quotes it; the rest is the same
        doc["provenance"]["coarse"].pop("command")
        doc["provenance"]["coarse"]["files"].pop("NOTICE")
    assert again == shipped


def test_the_demo_photo_is_the_one_recorded():
    from wbg_edge.portrait import ASTRONAUT, astronaut

    record = (ASTRONAUT.parent / "PROVENANCE.md").read_text()
    assert hashlib.sha256(ASTRONAUT.read_bytes()).hexdigest() in record and "public domain" in record
    assert astronaut().shape == (512, 512, 3) and ASTRONAUT.stat().st_size < 100_000
    skimage = pytest.importorskip("skimage.data")
    diff = np.abs(astronaut().astype(int) - skimage.astronaut()[..., ::-1])
    assert diff.mean() < 3  # the same photo, JPEG-compressed
