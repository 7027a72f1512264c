"""Depth Anything V2 (transformers) -> ONNX with our depth contract, as a bundle `build_engine` can build.

    python -m export.depth_anything --weights DIR --out DIR [--base BUNDLE | --depth-only] [--opset 18]

Weights come from a local folder in the Hugging Face layout (config.json + model.safetensors), e.g. a
download of depth-anything/Depth-Anything-V2-Small-hf; nothing is fetched. The graph:

    image  float (N, 3, H, W) RGB in [0, 1], H and W multiples of 14 (the ViT patch size)
    depth  float (N, 1, H, W) relative inverse depth (larger = nearer), any scale

ImageNet normalisation is done inside the graph. The stock head upsamples to
`(int(patch_height * patch_size), int(patch_width * patch_size))`: Python ints that freeze the
output size at export time. `DepthAnythingOnnx` runs the same backbone, neck and head layers but
upsamples to the input's own (traced) size, which equals the stock size for sides that are
multiples of 14, so the output follows the input. The manifest records `size_multiple: 14`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PATCH = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DepthAnythingError(RuntimeError):
    """One line naming the folder or file at fault."""


class DepthAnythingOnnx(nn.Module):
    """Wraps a `DepthAnythingForDepthEstimation`: image in [0,1] (N,3,H,W) -> depth (N,1,H,W)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        self.patch = int(model.config.patch_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean) / self.std
        feats = self.model.backbone.forward_with_filtered_kwargs(x, output_hidden_states=False,
                                                                 output_attentions=False).feature_maps
        ph, pw = x.shape[2] // self.patch, x.shape[3] // self.patch
        hidden = self.model.neck(feats, ph, pw)
        head = self.model.head
        y = head.conv1(hidden[head.head_in_index])
        # the fix: follow the input's size (traced), not Python ints computed at export time
        y = F.interpolate(y, size=image.shape[-2:], mode="bilinear", align_corners=True)
        y = head.activation1(head.conv2(y))
        return head.activation2(head.conv3(y)) * head.max_depth


def stock_depth(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The transformers forward on the same normalised input, (N,1,H,W): the reference twin."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return model(pixel_values=(image - mean) / std).predicted_depth.unsqueeze(1)


def load_weights(folder: str | Path) -> nn.Module:
    """A DepthAnythingForDepthEstimation from a local folder (never the network)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise DepthAnythingError(f"{folder}: no config.json (expected a local Hugging Face model folder)")
    try:
        from transformers import DepthAnythingForDepthEstimation
    except ImportError:
        raise DepthAnythingError("transformers is not installed (pip install 'wbg-edge[depth-anything]')") from None
    try:
        # safetensors only: a pytorch_model.bin is a pickle, and loading one can run code
        return DepthAnythingForDepthEstimation.from_pretrained(str(folder), local_files_only=True,
                                                               use_safetensors=True).float().eval()
    except (OSError, ValueError, KeyError) as e:
        raise DepthAnythingError(f"{folder}: cannot load Depth Anything weights ({str(e).splitlines()[0]})") from None


@dataclass(frozen=True)
class DepthAnythingExport:
    onnx: bytes
    parity_max_abs: float  # ORT vs the stock transformers forward, relative to the output range
    shapes: tuple[tuple[int, int], ...]


def export_depth_anything(model: nn.Module, opset: int = 18, sample_hw: tuple[int, int] = (98, 140),
                          check_hw: tuple[tuple[int, int], ...] = ((70, 126), (112, 84)),
                          tol: float = 1e-4) -> DepthAnythingExport:
    """Export with dynamic N/H/W and check ONNX Runtime against the stock forward at other sizes."""
    import io
    import warnings

    import onnx

    from .onnx import check_and_infer, ort_session, slim

    for h, w in (sample_hw, *check_hw):
        if h % PATCH or w % PATCH:
            raise DepthAnythingError(f"sizes must be multiples of {PATCH}, got {h}x{w}")
    wrapper = DepthAnythingOnnx(model)
    sample = torch.rand(1, 3, *sample_hw, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    dyn = {0: "N", 2: "H", 3: "W"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (sample,), buf, dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=["depth"], dynamic_axes={"image": dyn, "depth": dyn})
    proto = onnx.load_from_string(buf.getvalue())
    for vi, c in ((proto.graph.input[0], 3), (proto.graph.output[0], 1)):
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if i == 1:
                d.dim_value = c
            else:
                d.dim_param = dyn[i]
    proto = check_and_infer(slim(check_and_infer(proto, "depth-anything")), "depth-anything (after onnxslim)")
    data = proto.SerializeToString()
    sess = ort_session(data)
    worst = 0.0
    for i, (h, w) in enumerate(check_hw):
        x = torch.rand(1 + i % 2, 3, h, w, generator=torch.Generator().manual_seed(10 + i))
        with torch.no_grad():
            ref = stock_depth(model, x).numpy()
        got = sess.run(None, {"image": x.numpy()})[0]
        if got.shape != ref.shape:
            raise DepthAnythingError(f"depth-anything: ONNX output {got.shape} != stock {ref.shape} for input "
                                     f"{tuple(x.shape)}: the output size is frozen")
        worst = max(worst, float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-6)))
    if not worst <= tol:
        raise DepthAnythingError(f"depth-anything: ONNX Runtime vs transformers relative max |diff| {worst:.3g} > "
                                 f"{tol:g}")
    return DepthAnythingExport(onnx=data, parity_max_abs=worst, shapes=check_hw)


def write_bundle_dir(exp: DepthAnythingExport, weights: Path, out: Path, base: str | None = "default") -> Path:
    """A bundle holding Depth Anything as its depth stage; the other stages come from `base` ("default" =
    the shipped bundle, or a folder path; None = depth only), which `Bundle.resolve` follows.

    Written in a staging folder and renamed in, manifest last: an interrupted import leaves no manifest.
    """
    from wbg_edge.bundle import (
        Artifact,
        Bundle,
        atomic_write_bytes,
        default_bundle_dir,
        load_bundle,
        sha256_file,
        write_bundle,
    )

    out.mkdir(parents=True, exist_ok=True)
    model_res, refine_res = 252, 504
    if base is not None:
        if base != "default":
            base = os.path.relpath(Path(base).resolve(), out.resolve())  # the manifest stores it relative
        b = load_bundle(Path(out, base) if base != "default" else default_bundle_dir())
        model_res, refine_res = b.model_res, b.refine_res
    stage_dir = Path(tempfile.mkdtemp(prefix=".wbg-import-", dir=out))
    try:
        atomic_write_bytes(stage_dir / "depth_anything.onnx", exp.onnx)
        art = Artifact(stage="depth", file="depth_anything.onnx", format="onnx", precision="fp32", contract="depth",
                       sha256=sha256_file(stage_dir / "depth_anything.onnx"), inputs={"image": ["N", 3, "H", "W"]},
                       outputs={"depth": ["N", 1, "H", "W"]}, size_multiple=PATCH,
                       validation={"onnxruntime_vs_transformers_rel_max_abs": exp.parity_max_abs,
                                   "shapes": [list(s) for s in exp.shapes]})
        wfiles = sorted(p for p in weights.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
        provenance = {"depth": {"source": "depth-anything-v2 (transformers)", "weights": str(weights),
                                "files": {p.name: sha256_file(p) for p in wfiles},
                                "note": f"input sides must be multiples of {PATCH}"}}
        (out / "manifest.json").unlink(missing_ok=True)
        for p in stage_dir.iterdir():
            p.replace(out / p.name)
        versions = {}
        for pkg in ("torch", "transformers", "onnx", "onnxruntime", "onnxslim"):
            try:
                versions[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                pass
        return write_bundle(Bundle(root=out, name="depth-anything-v2", artifacts=(art,), model_res=model_res,
                                   refine_res=refine_res, producer=versions, provenance=provenance, base=base))
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from wbg_edge.bundle import BundleError

    p = argparse.ArgumentParser(prog="python -m export.depth_anything",
                                description="Import Depth Anything V2 (local transformers weights) as the depth stage.")
    p.add_argument("--weights", type=Path, required=True, help="local folder with config.json + model.safetensors")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write (then: python -m "
                                                             "export.build_engine --checkpoints OUT ...)")
    p.add_argument("--base", default="default",
                   help="bundle the other stages come from: 'default' (shipped) or a folder")
    p.add_argument("--depth-only", action="store_true", help="write only the depth model")
    p.add_argument("--opset", type=int, default=18)
    args = p.parse_args(argv)
    try:
        exp = export_depth_anything(load_weights(args.weights), opset=args.opset)
        mpath = write_bundle_dir(exp, args.weights, args.out, None if args.depth_only else args.base)
    except (DepthAnythingError, BundleError, OSError) as e:
        print(f"depth_anything: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {mpath} (Depth Anything V2 depth stage; ORT vs transformers rel. max |diff| "
          f"{exp.parity_max_abs:.2e}; input sides must be multiples of {PATCH})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
