"""Import a pretrained person segmenter as the coarse stage of a bundle (issue 13).

    python -m export.import_coarse mediapipe-selfie [--variant general|landscape] [--wheel PATH] [--out DIR]
                                   [--name NAME] [--with-refiner [BUNDLE_DIR] | --no-refiner] [--depth]

Exit status 0; 1 when the [import] extra is missing; 2 when the import fails (one line saying why).

MediaPipe's selfie segmentation (Apache-2.0) ships as .tflite files inside the `mediapipe==0.10.14` wheel
on PyPI. The wheel is only downloaded (`pip download --no-deps`) and opened as a zip: mediapipe is never
installed (it pins protobuf < 5 and numpy < 2). The .tflite is converted by `export.tflite_to_onnx` to the
coarse `rgb` contract:

    image  float32 (1, 3, H, W) RGB in [0, 1] at the model's fixed size (general 256x256, landscape 144x256)
    alpha  float32 (1, 1, H, W) in [0, 1]

then checked (ONNX checker, parity against the TFLite interpreter on real photos) and written with a manifest
entry recording its provenance (wheel name and SHA-256, path in the wheel, licence text, converter version).
Beside it go `LICENSE` (the wheel's own licence file, verbatim) and `NOTICE` (what the file is, where it came
from, what the conversion changed, the parity figure), as Apache-2.0 asks of a redistributed, modified file;
the manifest records their SHA-256. The bundle shipped as `wbg_edge/models/real` is this importer's output:

    python -m export.import_coarse mediapipe-selfie --name real --out wbg_edge/models/real
Conversion is deterministic: the same wheel gives the same bytes. It needs the [import] extra (onnx, tflite;
checked first, one line naming what is missing). The parity check needs the TFLite interpreter
(`ai-edge-litert`, not in the extra: it has no wheels for some platforms); without it the manifest records
`"parity": "not checked"` and the CLI says so in a warning line.

A "real-world" bundle is this coarse model plus our refiner for segmenter masks: the shipped
`segmenter-refiner` bundle (trained by `training/recipes/real_world.py` on natural-photo scenes with
MediaPipe-like masks). By default the folder holds only the imported ONNX and its manifest names that bundle
as `base`, from which the runtime takes the refiner (`wbg_edge.bundle.Bundle.resolve`, hashes checked against
the base's manifest), and copies its `runtime` hints (patch context); `--depth` borrows our depth model from
the shipped `default` bundle instead (whose refiner learnt with depth). `--with-refiner [BUNDLE_DIR]` copies
the refiner (and depth with --depth) in, making the folder self-contained. Installed real-world bundles live
in `real_world_bundle_dir()` = `$WBG_EDGE_HOME/bundles/real-world` (WBG_EDGE_HOME defaults to
~/.cache/wbg-edge), the importer's default --out.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from wbg_edge.bundle import (
    Artifact,
    Bundle,
    BundleError,
    atomic_write_bytes,
    load_bundle,
    real_world_bundle_dir,
    sha256_file,
    shipped_bundle_dir,
    wbg_edge_home,
    write_bundle,
)

PACKAGE = "mediapipe"
VERSION = "0.10.14"
SOURCES = ("mediapipe-selfie",)
# variant -> (path inside the wheel, ONNX file name in the bundle, SHA-256 of the .tflite in every 0.10.14 wheel)
VARIANTS = {
    "general": ("mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
                "mediapipe_selfie_general.onnx",
                "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"),
    "landscape": ("mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
                  "mediapipe_selfie_landscape.onnx",
                  "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd"),
}
# The .tflite files are identical in every platform's wheel (checked: manylinux x86_64 / aarch64, macOS
# universal2, win_amd64), so when this platform has no wheel we fetch this one instead.
FALLBACK_PLATFORM = ("manylinux_2_17_x86_64", "3.11")
# Parity with the TFLite interpreter (XNNPACK). Both sit within ~2-5e-5 of a float64 evaluation of the graph.
PARITY_MAX_ABS = 1e-4
PARITY_MEAN_ABS = 1e-6
_UNREACHABLE = re.compile(r"NewConnectionError|Failed to establish|Temporary failure in name resolution|"
                          r"Name or service not known|Network is unreachable|ProxyError|ConnectTimeout|"
                          r"Read timed out|Could not fetch URL|SSLError|ConnectionError", re.I)


class ImportCoarseError(RuntimeError):
    """The import cannot go on; the message is one line."""


class RegistryUnreachable(ImportCoarseError):
    """pip could not reach the package index to download the wheel."""


class MissingDependency(ImportCoarseError):
    """An optional package the import needs is not installed."""


IMPORT_EXTRA = ("onnx", "tflite")
INSTALL_EXTRA = "pip install 'wbg-edge[import]'"
INSTALL_INTERPRETER = "pip install ai-edge-litert"


def require_import_extra() -> None:
    """The [import] extra's modules, imported before any download or conversion (an installed but broken
    module, e.g. onnx against an incompatible protobuf, counts as missing too)."""
    missing = []
    for name in IMPORT_EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependency(f"importing a segmenter needs {' and '.join(missing)} (the [import] extra), "
                                f"not installed here: {INSTALL_EXTRA}")


def wheel_cache_dir() -> Path:
    return wbg_edge_home() / "wheels"


# -- the wheel ----------------------------------------------------------------------------------------
def _cached_wheels(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"{PACKAGE}-{VERSION}-*.whl"))


def _pip_download(dest: Path, extra: list[str]) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--retries", "1", "--timeout", "30", "-d", str(dest), *extra]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as e:
        raise ImportCoarseError(f"cannot run pip to download {PACKAGE}=={VERSION}: {e}") from None
    except subprocess.TimeoutExpired:
        raise RegistryUnreachable(f"pip download {PACKAGE}=={VERSION} took over 10 minutes; "
                                  f"download the wheel yourself and pass --wheel PATH") from None
    return r.returncode, r.stdout + r.stderr


def fetch_wheel(cache: Path | None = None) -> Path:
    """The mediapipe 0.10.14 wheel from the cache, or downloaded into it (this platform's, else a fixed one)."""
    cache = Path(cache) if cache is not None else wheel_cache_dir()
    found = _cached_wheels(cache)
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        rc, log = _pip_download(Path(tmp), [])
        if rc != 0 and not _UNREACHABLE.search(log):  # e.g. no wheel for this Python / platform
            plat, py = FALLBACK_PLATFORM
            rc, log = _pip_download(Path(tmp), ["--platform", plat, "--python-version", py])
        if rc != 0:
            last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "no output")
            if _UNREACHABLE.search(log):
                raise RegistryUnreachable(f"cannot reach the package registry to download {PACKAGE}=={VERSION} "
                                          f"({last}); pass --wheel PATH")
            raise ImportCoarseError(f"no {PACKAGE}=={VERSION} wheel found ({last}); pass --wheel PATH")
        got = _cached_wheels(Path(tmp))
        if not got:
            raise ImportCoarseError(f"pip download left no {PACKAGE}-{VERSION}-*.whl in {tmp}")
        final = cache / got[0].name
        os.replace(got[0], final)  # same filesystem: readers never see a half-written wheel
    return final


@dataclass(frozen=True)
class WheelContents:
    wheel: Path
    wheel_sha256: str
    member: str
    tflite: bytes
    licence_file: str
    licence_text: str
    licence_name: str  # the METADATA `License:` field, e.g. "Apache 2.0"


def read_wheel(wheel: Path, member: str) -> WheelContents:
    """Read one model file and the licence from the wheel (a zip); nothing is installed or extracted."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise ImportCoarseError(f"{wheel}: wheel file not found")
    try:
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            if member not in names:
                raise ImportCoarseError(f"{wheel.name}: {member} is not in the wheel "
                                        f"(mediapipe {VERSION} ships it; 1.x releases do not)")
            data = z.read(member)
            lic = sorted(n for n in names if re.search(r"\.dist-info/(licenses/)?(LICEN[CS]E|COPYING)[^/]*$", n))
            if not lic:
                raise ImportCoarseError(f"{wheel.name}: no licence file in the wheel's .dist-info")
            licence_text = z.read(lic[0]).decode("utf-8", "replace")
            meta = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
            licence_name = ""
            if meta:
                m = re.search(r"^License: *(.+)$", z.read(meta).decode("utf-8", "replace"), re.M)
                licence_name = m.group(1).strip() if m else ""
    except zipfile.BadZipFile:
        raise ImportCoarseError(f"{wheel}: not a valid wheel (zip) file") from None
    return WheelContents(wheel, sha256_file(wheel), member, data, lic[0], licence_text, licence_name)


# -- validation ---------------------------------------------------------------------------------------
def sample_photos() -> dict[str, np.ndarray]:
    """Real photos that ship inside installed packages (RGB uint8), those that are available."""
    photos = {}
    try:
        import skimage.data
        photos["astronaut"] = skimage.data.astronaut()
        photos["camera"] = np.repeat(skimage.data.camera()[..., None], 3, axis=2)
    except ImportError:
        pass
    try:
        import cv2
        import matplotlib
        p = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        img = cv2.imread(str(p))
        if img is not None:
            photos["grace_hopper"] = img[..., ::-1].copy()
    except ImportError:
        pass
    return photos


def to_model_input(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """RGB uint8 (h, w, 3) -> float32 (h', w', 3) in [0, 1] at the model size (area resampling)."""
    import cv2
    return cv2.resize(rgb, (hw[1], hw[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def tflite_reference(tflite_bytes: bytes):
    """A callable running the original model in the TFLite interpreter (NHWC in/out), or None if unavailable."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    it = Interpreter(model_content=tflite_bytes)  # the default resolver runs MediaPipe's custom op via XNNPACK
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(x_nhwc: np.ndarray) -> np.ndarray:
        it.set_tensor(i, x_nhwc)
        it.invoke()
        return it.get_tensor(o).copy()
    return run


def validate(onnx_bytes: bytes, tflite_bytes: bytes, hw: tuple[int, int]) -> dict:
    """ONNX checker, then onnxruntime vs the TFLite interpreter on real photos; raises if they disagree."""
    import onnx
    import onnxruntime as ort
    try:
        onnx.checker.check_model(onnx.load_from_string(onnx_bytes), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ImportCoarseError(f"converted ONNX fails the ONNX checker: {str(e).splitlines()[0]}") from None
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    ref = tflite_reference(tflite_bytes)
    photos = sample_photos()
    if not photos:  # still exercise the graph on a deterministic image
        photos = {"noise": np.random.default_rng(0).integers(0, 256, (hw[0], hw[1], 3), dtype=np.uint8)}
    report: dict = {"onnx_checker": "ok", "reference": None, "images": {}}
    if ref is not None:
        report["reference"] = f"ai-edge-litert {version('ai-edge-litert')} TFLite interpreter"
    worst_max, means = 0.0, []
    for name, img in photos.items():
        x = to_model_input(img, hw)
        y = sess.run(["alpha"], {"image": x.transpose(2, 0, 1)[None].copy()})[0][0, 0]
        entry = {"alpha_mean": round(float(y.mean()), 6)}
        if ref is not None:
            r = ref(x[None])[0, :, :, 0]
            d = np.abs(y - r)
            a, b = y > 0.5, r > 0.5
            entry.update(max_abs_diff=float(d.max()), mean_abs_diff=float(d.mean()),
                         iou=float((a & b).sum() / max((a | b).sum(), 1)))
            worst_max = max(worst_max, entry["max_abs_diff"])
            means.append(entry["mean_abs_diff"])
        report["images"][name] = entry
    if ref is None:
        report.update(parity="not checked", parity_reason=f"ai-edge-litert (the TFLite interpreter) is not "
                                                          f"installed: {INSTALL_INTERPRETER}")
        return report
    report.update(parity="checked", max_abs_diff=worst_max, mean_abs_diff=float(np.mean(means)),
                  tolerance={"max_abs": PARITY_MAX_ABS, "mean_abs": PARITY_MEAN_ABS})
    if worst_max > PARITY_MAX_ABS or report["mean_abs_diff"] > PARITY_MEAN_ABS:
        raise ImportCoarseError(f"converted ONNX disagrees with the TFLite interpreter: max |diff| {worst_max:.2e}, "
                                f"mean {report['mean_abs_diff']:.2e} (tolerance {PARITY_MAX_ABS:g} / "
                                f"{PARITY_MEAN_ABS:g})")
    return report


# -- the bundle ---------------------------------------------------------------------------------------
def to_onnx(src: WheelContents, variant: str):
    """The converted model (`onnx.ModelProto`); its serialization depends only on the .tflite bytes."""
    import onnx

    from .tflite_to_onnx import convert
    model = convert(src.tflite, graph_name=f"mediapipe_selfie_{variant}")
    # Provenance travels inside the file too, for copies made without the manifest.
    onnx.helper.set_model_props(model, {
        "source": f"{PACKAGE}=={VERSION}:{src.member}", "tflite_sha256": hashlib.sha256(src.tflite).hexdigest(),
        "licence": src.licence_name or src.licence_file, "contract": "rgb image (1,3,H,W) in [0,1] -> alpha (1,1,H,W)"})
    return model


def parity_line(v: dict) -> str:
    """The parity figure in words (the CLI's line, NOTICE's)."""
    if v.get("parity") != "checked":
        return f"parity not checked ({v.get('parity_reason', '')})"
    return (f"max |diff| {v['max_abs_diff']:.1e}, mean {v['mean_abs_diff']:.1e} vs TFLite on "
            f"{', '.join(v['images'])}")


def notice_text(src: WheelContents, variant: str, onnx_name: str, onnx_sha256: str, converter: str, note: str,
                validation: dict, base: str | None, command: str | None) -> str:
    """NOTICE for a converted file: Apache-2.0 section 4 asks a redistributed, modified file to carry the
    licence, a notice that it was changed, and any NOTICE of the original (the wheel has none)."""
    v = validation
    parity = parity_line(v)
    if v.get("parity") == "checked":
        parity += f" (the {v['reference']}; tolerance {PARITY_MAX_ABS:g} max, {PARITY_MEAN_ABS:g} mean)"
    rows = [("Source package", f"{PACKAGE}=={VERSION} (PyPI), opened as a zip, never installed"),
            ("Source wheel", src.wheel.name), ("Wheel SHA-256", src.wheel_sha256),
            ("Model in wheel", src.member), (".tflite SHA-256", hashlib.sha256(src.tflite).hexdigest()),
            ("Licence", f"{src.licence_name or 'see LICENSE'}: LICENSE here is the wheel's {src.licence_file}"),
            ("Converted file", onnx_name), ("ONNX SHA-256", onnx_sha256), ("Converter", f"{converter} (wbg-edge)"),
            ("Changes", note), ("Parity", parity)]
    if command:
        rows.append(("Made with", command))
    if base:
        rows.append(("Other stages", f"from the wbg-edge bundle {base!r} (ours, trained by wbg-edge)"))
    width = max(len(k) for k, _ in rows) + 2
    head = (f"{onnx_name} is MediaPipe's selfie segmentation model ({variant} variant), Copyright The MediaPipe\n"
            f"Authors, licensed under the Apache License, Version 2.0 (LICENSE). It was converted from TFLite to\n"
            f"ONNX by wbg-edge; the conversion changes the format, not what the model computes (parity below).\n")
    return head + "\n" + "".join(f"{k + ':':<{width}}{v}\n" for k, v in rows)


@dataclass(frozen=True)
class ImportResult:
    bundle: Bundle
    artifact: Artifact
    validation: dict
    seconds: dict


def _copy_stage(src: Bundle, stage: str, out: Path) -> tuple[Bundle, Artifact]:
    """Copy one stage's ONNX (from `src` or its base) into `out`, checked against the manifest that lists it."""
    found = src.resolve(stage, "onnx")
    if found is None:
        raise ImportCoarseError(f"{src.root}: bundle has no {stage} ONNX to copy")
    holder, a = found
    atomic_write_bytes(out / a.file, holder.verify(a).read_bytes())
    return holder, a


def base_for(depth: bool) -> str:
    """The shipped bundle a real-world bundle borrows from: our refiner for segmenter masks (trained without
    depth), or with depth the default bundle's depth and refiner (which learnt with depth)."""
    return "default" if depth else "segmenter-refiner"


def refiner_hints(holder: Bundle) -> dict:
    """Runtime hints (patch context) travel with the refiner. The segmenter refiner learnt 32x32 patches with
    4 px of context and its manifest asks for that; the default refiner learnt on whole crops and asks for
    none, but its zero-padded 32x32 tiles show seams on real photos without 4 px of context
    (bench/RESULTS.md), so a real-world bundle built on it asks for 4."""
    if holder.runtime:
        return dict(holder.runtime)
    return {"patch_context": 4} if holder.name == "default" else {}


def import_mediapipe_selfie(out: str | os.PathLike, *, variant: str = "general", wheel: str | os.PathLike | None = None,
                            refiner_bundle: str | os.PathLike | None = None, depth: bool = False,
                            base: str | None = "auto", check: bool = True, name: str | None = None,
                            command: str | None = None) -> ImportResult:
    """Convert MediaPipe selfie segmentation into a bundle at `out` (see the module docstring).

    The refiner and depth stages of the real-world bundle come from either
      - `refiner_bundle`: copied from that bundle (and depth too when `depth`): a self-contained folder; or
      - `base` (when no `refiner_bundle`): the manifest names a base bundle (a shipped one by name, or a
        folder) and borrows its refiner (and depth when `depth`) through `base_stages` (`Bundle.resolve`);
        nothing is copied. "auto" (the default) is `base_for(depth)`: "segmenter-refiner" (our refiner for
        segmenter masks, no depth), or "default" with depth.
    With neither, the bundle holds only the coarse model.
    `name`: the manifest's name (default "real-world", or "mediapipe-selfie-<variant>" for the coarse model
    alone); `command`: how it was made, recorded in NOTICE and the manifest.
    Depth is off by default: our depth model learns from generated scenes, and on real photos its depth
    pulls the refiner away from the segmenter (measured on the three sample photos: IoU with the coarse
    mask 0.55-0.83 with it, 0.98-0.99 without; bench/RESULTS.md)."""
    require_import_extra()
    import onnx

    from .tflite_to_onnx import CONVERTER_VERSION, OPSET, op_histogram
    if base == "auto":
        base = base_for(depth)
    if variant not in VARIANTS:
        raise ImportCoarseError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    member, onnx_name, _ = VARIANTS[variant]
    out = Path(out)
    t0 = time.perf_counter()
    whl = Path(wheel) if wheel is not None else fetch_wheel()
    src = read_wheel(whl, member)
    t1 = time.perf_counter()
    model = to_onnx(src, variant)
    onnx_bytes = model.SerializeToString()
    t2 = time.perf_counter()
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    h, w = dims[2], dims[3]
    if dims[:2] != [1, 3] or out_dims != [1, 1, h, w]:
        raise ImportCoarseError(f"{member}: expected (1,3,H,W) -> (1,1,H,W) after conversion, got {dims} -> {out_dims}")
    report = validate(onnx_bytes, src.tflite, (h, w)) if check else {"parity": "not checked",
                                                                     "parity_reason": "--no-check"}
    t3 = time.perf_counter()

    ref = load_bundle(refiner_bundle) if refiner_bundle is not None else None
    # A bad base fails here, before anything is written.
    base_b = Bundle(root=out, name="", artifacts=(), base=base).base_bundle() if ref is None else None
    old = None
    if (out / "manifest.json").is_file():
        try:
            old = load_bundle(out)
        except BundleError:
            old = None
    atomic_write_bytes(out / onnx_name, onnx_bytes)
    converter = f"export.tflite_to_onnx {CONVERTER_VERSION}"
    note = ("layout NHWC -> NCHW inside the graph; float16 weights widened to float32; "
            "Convolution2DTransposeBias -> ConvTranspose with bias; output clamped to [0, 1]")
    legal = {"LICENSE": src.licence_text.encode(),
             "NOTICE": notice_text(src, variant, onnx_name, hashlib.sha256(onnx_bytes).hexdigest(), converter, note,
                                   report, ref.name if ref is not None else base, command).encode()}
    for fname, data in legal.items():
        atomic_write_bytes(out / fname, data)
    coarse = Artifact(stage="coarse", file=onnx_name, format="onnx", precision="fp32", contract="rgb",
                      sha256=hashlib.sha256(onnx_bytes).hexdigest(), inputs={"image": [1, 3, h, w]},
                      outputs={"alpha": [1, 1, h, w]}, fixed_size=(h, w), layout="NCHW", validation=report)
    artifacts = [coarse]
    provenance = {"coarse": {
        "source": "mediapipe-selfie", "variant": variant, "package": f"{PACKAGE}=={VERSION}",
        "wheel": src.wheel.name, "wheel_sha256": src.wheel_sha256, "path_in_wheel": member,
        "tflite_sha256": hashlib.sha256(src.tflite).hexdigest(),
        "tflite_ops": dict(sorted(op_histogram(src.tflite).items())),
        "licence": src.licence_name, "licence_file": src.licence_file, "licence_text": src.licence_text,
        "converter": converter, "note": note,
        "files": {k: hashlib.sha256(v).hexdigest() for k, v in legal.items()}}}
    if command:
        provenance["coarse"]["command"] = command
    model_res, refine_res, default_name, base_name = 256, 512, f"mediapipe-selfie-{variant}", None
    runtime = {}
    if ref is not None:
        stages = ["refiner"] + (["depth"] if depth and ref.resolve("depth", "onnx") is not None else [])
        for stage in stages:
            holder, a = _copy_stage(ref, stage, out)
            artifacts.append(a)
            provenance[stage] = {"bundle": holder.name, "producer": holder.producer}
        model_res, refine_res, default_name = ref.model_res, ref.refine_res, "real-world"
        runtime = refiner_hints(ref)
    elif base_b is not None:
        model_res, refine_res, default_name, base_name = base_b.model_res, base_b.refine_res, "real-world", base
        runtime = refiner_hints(base_b)
    bundle = Bundle(root=out, name=name or default_name, artifacts=tuple(artifacts), model_res=model_res,
                    refine_res=refine_res,
                    producer={"onnx": onnx.__version__, "tflite": version("tflite"), "opset": OPSET,
                              "converter": f"export.tflite_to_onnx {CONVERTER_VERSION}"},
                    provenance=provenance, base=base_name,
                    base_stages=("refiner", "depth") if depth else ("refiner",) if base_name else None,
                    runtime=runtime)
    write_bundle(bundle)
    if old is not None:  # files the previous manifest listed and this one does not
        keep = {a.file for a in artifacts}
        for a in old.artifacts:
            if a.file not in keep:
                (out / a.file).unlink(missing_ok=True)
    t4 = time.perf_counter()
    return ImportResult(bundle, coarse, report, {"wheel": t1 - t0, "convert": t2 - t1, "validate": t3 - t2,
                                                 "write": t4 - t3})


# -- CLI ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    # installed, the console script (wbg-edge-import) names itself
    p = argparse.ArgumentParser(prog="python -m export.import_coarse" if __package__ == "export" else None,
                                description=__doc__.splitlines()[0])
    p.add_argument("source", choices=SOURCES)
    p.add_argument("--variant", choices=sorted(VARIANTS), default="general",
                   help="general: 256x256 input; landscape: 144x256 input")
    p.add_argument("--wheel", type=Path, help=f"a {PACKAGE}-{VERSION} wheel file (default: download into the cache)")
    p.add_argument("--out", type=Path, help=f"bundle folder (default: {real_world_bundle_dir()})")
    p.add_argument("--name", help="the bundle's name in its manifest (default: real-world)")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--with-refiner", nargs="?", type=Path, const=shipped_bundle_dir("segmenter-refiner"),
                     metavar="BUNDLE_DIR",
                     help="copy the refiner (and depth) from this bundle into the output, making it self-contained "
                          "(no value: the shipped segmenter-refiner bundle, which has no depth). Default: copy "
                          "nothing and name a shipped bundle as the manifest's base, so the runtime takes the "
                          "refiner from it: segmenter-refiner, or default (refiner and depth) with --depth")
    ref.add_argument("--no-refiner", action="store_true", help="write only the imported coarse model, no base")
    p.add_argument("--depth", action="store_true",
                   help="also use our depth model (trained on generated scenes: off by default for real footage)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the parity check against the TFLite interpreter")
    argv = sys.argv[1:] if argv is None else list(argv)
    a = p.parse_args(argv)
    out = a.out if a.out is not None else real_world_bundle_dir()
    # how it was made, for NOTICE (the wheel's path is this machine's; its name and hash are recorded anyway)
    shown = [x for i, x in enumerate(argv) if x != "--wheel" and (i == 0 or argv[i - 1] != "--wheel")
             and not x.startswith("--wheel=")]
    command = "python -m export.import_coarse " + shlex.join(shown)
    from .tflite_to_onnx import ConversionError
    try:
        r = import_mediapipe_selfie(out, variant=a.variant, wheel=a.wheel, refiner_bundle=a.with_refiner,
                                    depth=a.depth, base=None if a.no_refiner else base_for(a.depth),
                                    check=a.check, name=a.name, command=command)
    except MissingDependency as e:
        print(f"import_coarse: {e}", file=sys.stderr)
        return 1
    except (ImportCoarseError, ConversionError, BundleError) as e:
        print(f"import_coarse: {e}", file=sys.stderr)
        return 2
    v = r.validation
    parity = parity_line(v)
    if a.check and v.get("parity") != "checked":  # asked for and not done: never only a quiet note
        print(f"import_coarse: WARNING: the converted model was NOT checked against the TFLite interpreter "
              f"({v['parity_reason']}); the manifest records parity: not checked", file=sys.stderr)
    stages = ", ".join(f"{x.stage}={x.file}" for x in r.bundle.artifacts)
    if r.bundle.base is not None:
        stages += f"; other stages from base bundle {r.bundle.base!r}"
    print(f"wrote {r.bundle.root} ({stages}); {r.artifact.fixed_size[0]}x{r.artifact.fixed_size[1]} rgb; {parity}; "
          f"convert {r.seconds['convert']:.2f} s, validate {r.seconds['validate']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
