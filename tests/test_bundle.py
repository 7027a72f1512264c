"""The manifest contract: hand-edited manifests, changed files and base bundles give one-line errors."""

import json
import shutil

import pytest

from wbg_edge.bundle import BundleError, atomic_write_bytes, default_bundle_dir, load_bundle, sha256_file


@pytest.fixture
def bundle_copy(tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(default_bundle_dir(), dst)
    return dst


def edit_manifest(root, change):
    m = json.loads((root / "manifest.json").read_text())
    change(m)
    (root / "manifest.json").write_text(json.dumps(m))


def test_shipped_bundle_verifies():
    b = load_bundle(default_bundle_dir())
    assert {"depth", "coarse", "refiner"} <= b.stages()
    for a in b.artifacts:
        assert b.verify(a).is_file()


def test_changed_file_fails_hash_check(bundle_copy):
    b = load_bundle(bundle_copy)
    a = b.find("refiner")
    with open(bundle_copy / a.file, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"refiner.*SHA-256 .* does not match") as e:
        b.verify(a)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["artifacts"][0].update(contract="nonsense"), "unknown contract"),
        (lambda m: m["artifacts"][0].update(contract_version=99), "contract version 99"),
        (lambda m: m["artifacts"][0].pop("sha256"), "malformed"),
        (lambda m: m["artifacts"][0].update(file="../../etc/passwd"), "plain name inside the bundle"),
        (lambda m: m.update(schema=7), "schema 7"),
        (lambda m: m.update(artifacts=[]), "no artifacts"),
    ],
)
def test_hand_edited_manifest_is_refused(bundle_copy, change, message):
    edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError, match=message) as e:
        load_bundle(bundle_copy)
    assert "manifest.json" in str(e.value) and "\n" not in str(e.value)


def test_wrong_tensor_names_for_contract(bundle_copy):
    def rename(m):
        art = next(a for a in m["artifacts"] if a["contract"] == "refiner")
        art["outputs"] = {"alpha": art["outputs"].pop("delta")}

    edit_manifest(bundle_copy, rename)
    with pytest.raises(BundleError, match="contract 'refiner' needs"):
        load_bundle(bundle_copy)


def test_not_json_and_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)


def based_bundle(root, **fields):
    """An imported-style bundle: only a coarse file of its own, the rest from the shipped bundle."""
    root.mkdir()
    src = load_bundle(default_bundle_dir())
    coarse = src.find("coarse")
    shutil.copy(src.path(coarse), root / "seg.onnx")
    entry = dict(coarse.to_dict(), file="seg.onnx", sha256=sha256_file(root / "seg.onnx"))
    manifest = {"schema": 1, "name": "rw", "base": "default", "artifacts": [entry], **fields}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_base_bundle_supplies_missing_stages(tmp_path):
    own = tmp_path / "rw"
    based_bundle(own)
    b = load_bundle(own)
    holder, art = b.resolve("coarse")
    assert holder.root == own and art.file == "seg.onnx"
    holder, art = b.resolve("refiner")
    assert holder.root == default_bundle_dir() and holder.verify(art).is_file()
    assert b.resolve("coarse", format="engine") is None


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # not bytes: the write fails midway
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # no temp file left behind


def test_base_stages_limit_what_is_borrowed(tmp_path):
    own = tmp_path / "rw"
    manifest = based_bundle(own, base_stages=["refiner"])
    b = load_bundle(own)
    assert b.available_stages() == {"coarse", "refiner"}
    assert b.resolve("depth") is None and b.resolve("refiner")[0].root == default_bundle_dir()
    manifest["base_stages"] = ["refiner", "nonsense"]
    (own / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="base_stages must be"):
        load_bundle(own)


def test_runtime_hints_are_checked(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.update(runtime={"patch_context": 4}))
    assert load_bundle(bundle_copy).runtime == {"patch_context": 4}
    edit_manifest(bundle_copy, lambda m: m.update(runtime={"patch_context": "4", "rm -rf": 1}))
    with pytest.raises(BundleError, match="runtime must map"):
        load_bundle(bundle_copy)


# -- names: --bundle real|synthetic|DIR and PipelineConfig(bundle=...) --------------------------------------
def test_names_resolve_to_the_shipped_bundles(tmp_path):
    from wbg_edge.bundle import BUNDLE_NAMES, bundle_location, shipped_bundle_dir
    from wbg_edge.pipeline import PipelineConfig

    assert bundle_location("real") == str(shipped_bundle_dir("real"))
    assert bundle_location("synthetic") == bundle_location("default") == str(default_bundle_dir())
    assert bundle_location(str(tmp_path)) == str(tmp_path) and bundle_location(tmp_path) == str(tmp_path)
    assert load_bundle(bundle_location("real")).name == "real"
    # the config holds the folder, so every reader of config.bundle (pipeline, batch, bench, gst) gets one
    assert PipelineConfig(bundle="real").bundle == str(shipped_bundle_dir("real"))
    assert PipelineConfig(bundle="synthetic") == PipelineConfig(bundle=str(default_bundle_dir()))
    assert PipelineConfig().bundle is None  # the Python API's default stays the generated-scene bundle
    assert set(BUNDLE_NAMES) == {"real", "synthetic", "default"}


def test_a_name_wins_over_a_same_named_folder_here(tmp_path, monkeypatch):
    """`real` means the shipped bundle wherever it is typed; ./real is the folder."""
    from wbg_edge.bundle import shipped_bundle_dir
    from wbg_edge.pipeline import PipelineConfig

    shutil.copytree(default_bundle_dir(), tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    assert PipelineConfig(bundle="real").bundle == str(shipped_bundle_dir("real"))
    assert PipelineConfig(bundle="./real").bundle == "./real"
    assert load_bundle(PipelineConfig(bundle="./real").bundle).name == "default"


def test_pipeline_runs_the_real_bundle_by_name():
    """The shipped real bundle runs from its name: MediaPipe's segmenter (rgb contract, hash-checked here) and
    the refiner from its base segmenter-refiner; no depth."""

    from wbg_edge.pipeline import Pipeline, PipelineConfig
    from wbg_edge.portrait import PanClip, astronaut

    frame, (x, y, w, h) = PanClip(astronaut(), 640, 360, frames=1).frame(0)
    with Pipeline(PipelineConfig(bundle="real", mode="alpha", threads=2)) as p:
        alpha = p.process(frame).alpha
    assert p.bundle.name == "real" and p.info()["coarse_contract"] == "rgb"
    assert p.bundle.available_stages() == {"coarse", "refiner"}
    face = alpha[y + h // 10: y + h // 4, x + int(w * 0.38): x + int(w * 0.5)]
    assert face.mean() > 0.9, face.mean()          # the astronaut's face
    assert alpha[:, : max(x - 4, 1)].mean() < 0.05  # the grey canvas left of the photo


def test_describe_names_what_runs(tmp_path):
    from wbg_edge.bundle import BUNDLE_NAMES, describe_bundle, shipped_bundle_dir

    real = load_bundle(shipped_bundle_dir("real"))
    assert describe_bundle("real", real) == f"real ({BUNDLE_NAMES['real'][1]})"
    assert describe_bundle(None, load_bundle(default_bundle_dir())).startswith("synthetic (")
    # what the name's description says is what the manifest holds
    assert real.provenance["coarse"]["source"] == "mediapipe-selfie" and real.base == "segmenter-refiner"
    assert BUNDLE_NAMES["real"][1].startswith("MediaPipe selfie segmenter + temporal and guided filters")
    # a folder: its path, its manifest name, and where each stage comes from
    shutil.copytree(shipped_bundle_dir("real"), tmp_path / "rw")
    assert describe_bundle(str(tmp_path / "rw"), load_bundle(tmp_path / "rw")) == \
        f"{tmp_path / 'rw'} ('real': coarse + refiner from segmenter-refiner)"
