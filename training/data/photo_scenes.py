"""Scenes with natural image statistics and segmenter-like masks, for the real-world refiner (issue 13).

A scene is a subject cut from one photo pasted over a crop of another photo (often defocused, as behind a
person), with soft edges and hair-like strands, plus the mask a person segmenter would give for it:

    image, fg, bg  (S,S,3) RGB float32 in [0,1]      alpha, coarse  (S,S) float32 in [0,1]

I = alpha * F + (1 - alpha) * B holds up to the sensor noise added to I. Every scene is a pure function of
(seed, index, photos).

Photos are the ones that ship inside scikit-image and matplotlib, EXCLUDING the three the real-world sheet
evaluates on (astronaut, camera, grace_hopper): the refiner must never see them. A few more are held out
for validation (`VALIDATION_PHOTOS`): validation scenes are built only from those, with another seed.

`segmenter_mask` degrades the ground truth the way MediaPipe's selfie segmenter errs. Measured on its masks
of real portraits (256x256 output): the 10-90% transition is 2.5-4.7 px wide at 256, i.e. the mask is a
low-resolution, smoothly blurred silhouette, upsampled 2-3.5x onto the refine grid (720p: 2x vertically,
3.5x horizontally); its contour wanders a few pixels from the true edge, hair and thin parts are lost or
filled, and it leaves half-confident blobs where it is unsure (hands, held objects).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

EVALUATION_PHOTOS = ("astronaut", "camera", "grace_hopper")  # never used here
# file names inside skimage/data and matplotlib's sample_data
TRAIN_PHOTOS = ("brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg",
                "coins.png", "moon.png", "cell.png", "rocket.jpg", "page.png",
                "microaneurysms.png", "mpl:Minduka_Present_Blue_Pack.png")
VALIDATION_PHOTOS = ("chelsea.png", "coffee.png", "motorcycle_left.png")


@functools.lru_cache(maxsize=32)
def photo(name: str) -> np.ndarray | None:
    """RGB float32 photo from the installed packages' sample data, or None when it is not installed."""
    if any(e in name for e in EVALUATION_PHOTOS):
        raise ValueError(f"{name}: an evaluation photo of the real-world sheet; never train or validate on it")
    try:
        if name.startswith("mpl:"):
            import matplotlib

            path = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / name[4:]
        else:
            import skimage.data

            path = Path(skimage.data.__file__).parent / name
    except ImportError:
        return None
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        return None
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def available(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if photo(n) is not None]


@dataclass(frozen=True)
class SceneConfig:
    size: int = 128
    photos: tuple[str, ...] = TRAIN_PHOTOS
    p_hair: float = 0.4
    p_gray: float = 0.15          # grayscale scenes (old photos, IR cameras)
    p_low_contrast: float = 0.25  # subject and background cut from the same photo: edges with little contrast
    p_bg_blur: float = 0.6        # defocused background
    max_edge_blur: float = 1.2    # sigma of motion / defocus softness of the subject's edge, px
    p_optics: float = 0.3         # lens softness: the whole scene (image and alpha alike) slightly blurred
    max_noise: float = 0.02       # sensor noise std added to the image (real photos are never clean)


@dataclass(frozen=True)
class MaskConfig:
    """How the segmenter-like coarse mask is made (see the module docstring for the measurements)."""

    factor: tuple[float, float] = (2.0, 3.5)     # refine grid / segmenter grid
    blur: tuple[float, float] = (0.6, 1.8)       # Gaussian sigma at segmenter resolution
    max_shift: int = 2                            # uneven erosion / dilation, segmenter pixels
    max_offset: float = 1.0                       # global translation, segmenter pixels
    p_unsure: float = 0.35                        # half-confident blobs on or off the subject
    p_fill_hair: float = 0.5                      # strands are filled solid (else dropped)


def _crop(rng: np.random.Generator, im: np.ndarray, size: int, zoom: tuple[float, float]) -> np.ndarray:
    h, w = im.shape[:2]
    side = int(min(h, w, max(8, size * rng.uniform(*zoom))))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    c = cv2.resize(im[y:y + side, x:x + side], (size, size),
                   interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        c = c[:, ::-1]
    # photometric jitter: gain, bias, gamma
    c = np.clip(c * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1), 0, 1) ** rng.uniform(0.7, 1.4)
    return np.ascontiguousarray(c, dtype=np.float32)


def _noise(rng: np.random.Generator, size: int, base: int) -> np.ndarray:
    return cv2.resize(rng.random((base, base), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)


def _silhouette(rng: np.random.Generator, size: int, ss: int = 4) -> np.ndarray:
    """Person-like or blob silhouette drawn at ss x and area-downsampled: float alpha with a ~1 px soft edge."""
    big = size * ss
    m = np.zeros((big, big), np.uint8)
    if rng.random() < 0.5:  # head and shoulders standing on the bottom edge, shoulders anywhere
        cx = big * rng.uniform(0.2, 0.8)
        hr = big * rng.uniform(0.1, 0.3)
        hy = big * rng.uniform(0.2, 0.5)
        cv2.ellipse(m, (int(cx), int(hy)), (int(hr * rng.uniform(0.75, 0.95)), int(hr)), rng.uniform(-20, 20),
                    0, 360, 255, -1, cv2.LINE_AA)
        sw = hr * rng.uniform(1.8, 3.5)
        cv2.ellipse(m, (int(cx + rng.normal(0, hr * 0.2)), big), (int(sw), int(big - hy - hr * 0.5)), 0, 180, 360,
                    255, -1, cv2.LINE_AA)
        cv2.rectangle(m, (int(cx - hr * 0.45), int(hy)), (int(cx + hr * 0.45), int(hy + 1.8 * hr)), 255, -1)
    else:  # smooth noise blob (arms, held objects, torsos seen close)
        yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big
        r = np.hypot(xx - rng.uniform(0.3, 0.7), yy - rng.uniform(0.3, 0.7))
        field = _noise(rng, big, int(rng.integers(3, 7))) * rng.uniform(0.3, 0.7) + (rng.uniform(0.3, 0.5) - r)
        m = ((field > 0.2) * 255).astype(np.uint8)
    if m.mean() < 255 * 0.03:
        cv2.circle(m, (big // 2, big // 2), big // 4, 255, -1)
    return cv2.resize(m.astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_AREA)


def _strands(rng: np.random.Generator, alpha: np.ndarray, n: int, ss: int = 4) -> np.ndarray:
    """Hair-like strands growing out of the silhouette's edge: fractional alpha, 1-2 px wide at ss x."""
    size = alpha.shape[0]
    contours, _ = cv2.findContours((alpha > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros_like(alpha)
    pts = np.concatenate([c[:, 0] for c in contours], 0).astype(np.float64)
    ys, xs = np.nonzero(alpha > 0.5)
    centre = np.array([xs.mean(), ys.mean()])
    big = np.zeros((size * ss, size * ss), np.uint8)
    start = int(rng.integers(len(pts)))  # strands come in tufts: one stretch of the contour
    span = max(1, int(len(pts) * rng.uniform(0.05, 0.4)))
    for _ in range(n):
        p = pts[(start + int(rng.integers(span))) % len(pts)]
        ang = np.arctan2(*(p - centre)[::-1]) + rng.normal(0, 0.6)
        length, curve = size * rng.uniform(0.03, 0.15), [p]
        for _ in range(10):
            ang += rng.normal(0, 0.25)
            p = p + length / 10 * np.array([np.cos(ang), np.sin(ang)])
            curve.append(p)
        cv2.polylines(big, [(np.array(curve) * ss).astype(np.int32)], False, 255, int(rng.integers(1, 3)),
                      cv2.LINE_AA)
    return cv2.resize(big.astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_AREA)


def make_scene(seed: int, index: int, cfg: SceneConfig = SceneConfig(), mask: MaskConfig = MaskConfig()) -> dict:
    """One scene: image, fg, bg (S,S,3), alpha, coarse (S,S); a pure function of (seed, index, cfg, mask)."""
    rng = np.random.default_rng([seed, index, 13])
    names = available(cfg.photos)
    if len(names) < 2:
        raise ValueError(f"need at least two of {cfg.photos} (install scikit-image and matplotlib)")
    s = cfg.size
    i, j = rng.choice(len(names), 2, replace=False)
    if rng.random() < cfg.p_low_contrast:  # there the refiner can only keep the mask's guess, not snap
        j = i
    bg = _crop(rng, photo(names[i]), s, (0.5, 3.0))
    if rng.random() < cfg.p_bg_blur:
        bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(0.8, 4.0))
    fg = _crop(rng, photo(names[j]), s, (0.3, 2.0))
    if rng.random() < 0.5:  # subjects are often lit differently from the background
        fg = np.clip(fg * rng.uniform(0.4, 1.0, 3).astype(np.float32), 0, 1)
    alpha = _silhouette(rng, s)
    if rng.random() < 0.5 and cfg.max_edge_blur > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.3, cfg.max_edge_blur))
    hair = np.zeros_like(alpha)
    if rng.random() < cfg.p_hair:
        hair = _strands(rng, alpha, int(rng.integers(10, 60)))
        colour = np.clip(fg[alpha > 0.5].mean(0) * rng.uniform(0.3, 1.3) + rng.normal(0, 0.05, 3), 0, 1)
        w = hair[..., None] * (1 - alpha[..., None])  # strands over the background only
        fg = (fg * alpha[..., None] + colour.astype(np.float32) * w) / np.maximum(alpha[..., None] + w, 1e-6)
        alpha = alpha + hair * (1 - alpha)
    if rng.random() < cfg.p_gray:
        fg = np.repeat(fg.mean(2, keepdims=True), 3, 2)
        bg = np.repeat(bg.mean(2, keepdims=True), 3, 2)
    fg, bg, alpha = (np.ascontiguousarray(x, dtype=np.float32) for x in (fg, bg, np.clip(alpha, 0, 1)))
    image = fg * alpha[..., None] + bg * (1 - alpha[..., None])
    coarse = segmenter_mask(rng, alpha, hair, mask)
    if rng.random() < cfg.p_optics:  # blurring the scene blurs the image and its alpha alike
        sigma = rng.uniform(0.3, 0.8)
        image, fg, bg, alpha = (cv2.GaussianBlur(x, (0, 0), sigma) for x in (image, fg, bg, alpha))
    if cfg.max_noise > 0:
        image = np.clip(image + rng.normal(0, rng.uniform(0, cfg.max_noise), image.shape), 0, 1).astype(np.float32)
    return {"image": image, "fg": fg, "bg": bg, "alpha": alpha, "coarse": coarse}


def segmenter_mask(rng: np.random.Generator, alpha: np.ndarray, hair: np.ndarray | None = None,
                   cfg: MaskConfig = MaskConfig()) -> np.ndarray:
    """Ground truth (S,S) -> what a low-resolution person segmenter outputs, upsampled back: (S,S) float32."""
    h, w = alpha.shape
    f = rng.uniform(*cfg.factor)
    lh, lw = max(4, round(h / f)), max(4, round(w / f))
    a = alpha
    if hair is not None and hair.any():  # fine strands: lost (the body alone) or filled solid
        body = np.clip((alpha - hair) / np.maximum(1 - hair, 1e-6), 0, 1)
        a = body if rng.random() > cfg.p_fill_hair else np.maximum(
            body, cv2.GaussianBlur(hair, (0, 0), 2.0) > 0.05).astype(np.float32)
    small = cv2.resize(a, (lw, lh), interpolation=cv2.INTER_AREA)
    m = (small > rng.uniform(0.35, 0.65)).astype(np.float32)
    r = int(rng.integers(-cfg.max_shift, cfg.max_shift + 1))
    if r:  # the contour wanders: eroded or dilated in part of the image
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1,) * 2)
        moved = cv2.dilate(m, k) if r > 0 else cv2.erode(m, k)
        region = _noise(rng, max(lh, lw), 4)[:lh, :lw] > 0.45
        m = np.where(region, moved, m)
    if rng.random() < cfg.p_unsure:  # half-confident blobs where the segmenter is unsure
        for _ in range(int(rng.integers(1, 4))):
            c = (int(rng.integers(lw)), int(rng.integers(lh)))
            blob = np.zeros_like(m)
            cv2.ellipse(blob, c, (int(rng.integers(2, max(3, lw // 6))), int(rng.integers(2, max(3, lh // 6)))),
                        rng.uniform(0, 180), 0, 360, 1.0, -1)
            m = np.where(blob > 0, rng.uniform(0.2, 0.8), m).astype(np.float32)
    m = cv2.GaussianBlur(m, (0, 0), rng.uniform(*cfg.blur))
    # sub-pixel translation of the whole mask, then bilinear upsampling as the runtime does
    t = np.float32([[1, 0, rng.uniform(-cfg.max_offset, cfg.max_offset)],
                    [0, 1, rng.uniform(-cfg.max_offset, cfg.max_offset)]])
    m = cv2.warpAffine(m, t, (lw, lh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1).astype(np.float32)
