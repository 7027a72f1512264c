"""Cache depth or coarse alpha for a dataset folder as 16-bit PNGs (DIR/depth/, DIR/alpha_coarse/).

    python -m training.cache --kind depth|coarse --data DIR --model FILE [--res 256]

FILE is one of our checkpoints (.safetensors: a depth model for --kind depth, a matting model for
--kind coarse) or an ONNX file run with onnxruntime: a depth model (`image` NCHW, any relative
depth), our matting model (4 channels R,G,B,D; D from DIR/depth/ when cached, else 0), or an
imported segmenter with the `rgb` contract and a fixed input size, read from the ONNX input shape
(NCHW or NHWC); images are resized in and the output resized back. Outputs are stored at the
image's size: depth min-max normalised per image, alpha as is.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .data.folders import DatasetError, FolderDataset, read_gray, read_rgb, write_png16

Predict = Callable[[np.ndarray, np.ndarray | None], np.ndarray]  # (image HxWx3, depth HxW|None) -> HxW


@dataclass(frozen=True)
class CacheConfig:
    kind: str  # depth | coarse
    data: str
    model: str
    res: int = 256  # short side the model runs at (multiple of 32), for models with dynamic sizes


def model_size(h: int, w: int, res: int) -> tuple[int, int]:
    """(H, W) with the short side `res` and both sides multiples of 32."""
    f = res / min(h, w)
    return max(32, round(h * f / 32) * 32), max(32, round(w * f / 32) * 32)


def _normalise(d: np.ndarray) -> np.ndarray:
    return (d - d.min()) / (d.max() - d.min() + 1e-6)


def torch_predictor(cfg: CacheConfig) -> Predict:
    import torch

    from . import checkpoint

    kind = "depth" if cfg.kind == "depth" else "matting"
    model = checkpoint.frozen(checkpoint.load(cfg.model, kind)[0])

    def run(image: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        h, w = model_size(*image.shape[:2], cfg.res)
        planes = [cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)]
        if kind == "matting":
            d = np.zeros((h, w), np.float32) if depth is None else _normalise(cv2.resize(depth, (w, h)))
            planes.append(d[None])
        x = torch.from_numpy(np.ascontiguousarray(np.concatenate(planes, 0)))[None].float()
        with torch.no_grad():
            return model(x)[0, 0].numpy()

    return run


def onnx_predictor(cfg: CacheConfig) -> Predict:
    import onnxruntime as ort

    sess = ort.InferenceSession(cfg.model, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = list(inp.shape)
    if len(shape) != 4:
        raise DatasetError(f"{cfg.model}: expected a 4-d image input, got {inp.name} {shape}")
    nhwc = shape[-1] in (3, 4) and shape[1] not in (3, 4)
    channels = shape[-1] if nhwc else shape[1]
    hw = shape[1:3] if nhwc else shape[2:4]
    fixed = tuple(hw) if all(isinstance(v, int) and v > 0 for v in hw) else None

    def run(image: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        h, w = fixed or model_size(*image.shape[:2], cfg.res)
        x = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        if channels == 4:
            d = np.zeros((h, w), np.float32) if depth is None else _normalise(cv2.resize(depth, (w, h)))
            x = np.concatenate([x, d[..., None]], 2)
        x = x[None] if nhwc else x.transpose(2, 0, 1)[None]
        y = np.asarray(sess.run(None, {inp.name: np.ascontiguousarray(x, np.float32)})[0])[0]
        if y.ndim == 3:  # one plane: channels last when the last axis is the short one; of two classes, the subject
            y = y[..., -1] if y.shape[-1] < y.shape[0] else y[-1]
        return y.astype(np.float32)

    return run


def cache(cfg: CacheConfig, progress: bool = False) -> list[Path]:
    """Write one 16-bit PNG per image into DIR/depth/ or DIR/alpha_coarse/; returns the paths."""
    if cfg.kind not in ("depth", "coarse"):
        raise DatasetError(f"unknown cache kind {cfg.kind!r}; expected depth or coarse")
    model = Path(cfg.model)
    if not model.is_file():
        raise DatasetError(f"{model}: model file not found")
    ds = FolderDataset(cfg.data)
    if ds.layout == "composite":
        raise DatasetError(f"{ds.root}: caches need an image/ folder (composites of fg/ on bg/ change per run)")
    predict = onnx_predictor(cfg) if model.suffix == ".onnx" else torch_predictor(cfg)
    out_dir = ds.root / ("depth" if cfg.kind == "depth" else "alpha_coarse")
    written = []
    from tqdm import tqdm

    for item in tqdm(ds.items, desc=f"cache {cfg.kind}", disable=not progress):
        image = read_rgb(item)
        depth = None
        if cfg.kind == "coarse" and item.stem in ds.depths:
            depth = read_gray(ds.depths[item.stem])
        y = predict(image, depth)
        y = cv2.resize(y, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        y = _normalise(y) if cfg.kind == "depth" else np.clip(y, 0, 1)
        path = out_dir / f"{item.stem}.png"
        write_png16(path, y)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.cache", description=__doc__.split("\n")[0])
    p.add_argument("--kind", required=True, choices=["depth", "coarse"])
    p.add_argument("--data", required=True, help="dataset folder with image/")
    p.add_argument("--model", required=True, help="checkpoint (.safetensors) or ONNX file")
    p.add_argument("--res", type=int, default=256, help="short side for models with dynamic input sizes")
    a = p.parse_args(argv)
    from .checkpoint import CheckpointError

    try:
        paths = cache(CacheConfig(kind=a.kind, data=a.data, model=a.model, res=a.res), progress=True)
    except (DatasetError, CheckpointError) as e:
        print(f"error: {e}")
        return 2
    print(f"wrote {len(paths)} files to {paths[0].parent if paths else a.data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
