"""Seeded synthetic scenes: foreground F, background B, alpha, depth and composite I.

Every scene is a pure function of (seed, index, SceneConfig), so a data stream is reproducible
from any step on any rank without storing anything. Arrays are float32 in [0,1]:

    image, fg, bg  (H,W,3) RGB        alpha, depth  (H,W)        semi (H,W) bool, veil region
    flags          {"low_contrast", "hair", "semi_transparent"}

I = alpha * F + (1 - alpha) * B holds exactly, so the compositional loss is consistent.
Depth is relative inverse depth (larger = nearer): subject near, background far, blurred at
edges and noisy like the output of a monocular depth model.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

# Photos that ship inside installed packages; split so held-out scenes can use unseen ones.
TRAIN_PHOTOS = ("coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "brick", "grass",
                "gravel", "clock")
HELDOUT_PHOTOS = ("astronaut", "camera", "grace_hopper", "retina", "moon")


@dataclass(frozen=True)
class SceneConfig:
    size: int = 256                 # square side in pixels
    p_low_contrast: float = 0.25    # foreground colours/texture drawn from the background's
    p_hair: float = 0.5             # thin strands with fractional alpha
    p_semi: float = 0.3             # a semi-transparent veil overlapping the subject
    p_photo_bg: float = 0.4         # photographic background when photos are importable
    photos: tuple[str, ...] = TRAIN_PHOTOS
    depth_noise: float = 0.03       # std of per-pixel depth noise
    # styles the recipe never trains on (robustness evaluation, see STYLES); the defaults are off
    bg_style: str = "train"         # "train" (textures, photos) | "tiles" (flat tiles, hard grout lines)
    shape_style: str = "train"      # "train" (person, blob, polygon) | "unseen" (rings with a hole, thin limbs)
    noise: float = 0.0              # std of Gaussian sensor noise on the image
    blur: float = 0.0               # sigma of a camera blur (image and alpha alike)
    gain: float = 1.0               # exposure; < 1 is low light (then 8-bit quantised)
    veil_depth: str = "mixed"       # "mixed": depth sees partly through a veil (near and far by its alpha);
                                    # "near": a depth source that reads a veil as solid as the subject


# Unseen styles for `python -m training.evaluate --style NAME`: SceneConfig overrides.
STYLES: dict[str, dict] = {
    "in-distribution": {},
    "photos": {"photos": HELDOUT_PHOTOS, "p_photo_bg": 1.0},  # every background a photo never trained on
    "tiles": {"bg_style": "tiles"},
    "shapes": {"shape_style": "unseen"},
    "noise": {"noise": 0.05},
    "blur": {"blur": 1.5},
    "low-light": {"gain": 0.25, "noise": 0.01},
    "near-veils": {"veil_depth": "near"},
}


@functools.lru_cache(maxsize=32)
def _photo(name: str) -> np.ndarray | None:
    """An RGB float photo from scikit-image or matplotlib sample data, or None if unavailable."""
    try:
        if name == "grace_hopper":
            import matplotlib.cbook as cbook

            with cbook.get_sample_data("grace_hopper.jpg") as f:
                buf = np.frombuffer(f.read(), np.uint8)
            im = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        else:
            import skimage.data

            im = getattr(skimage.data, name)()
    except Exception:  # optional source: a missing package or file just removes this photo
        return None
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=2)
    return np.ascontiguousarray(im[..., :3]).astype(np.float32) / 255.0


def available_photos(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if _photo(n) is not None]


def _noise(rng: np.random.Generator, size: int, octaves: int = 4, base: int = 4) -> np.ndarray:
    """Fractal value noise in [0,1], (size,size)."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = base * 2**o
        grid = rng.random((n, n), dtype=np.float32)
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    return np.clip((out - out.min()) / (np.ptp(out) + 1e-6), 0, 1)


def _texture(rng: np.random.Generator, size: int, c0: np.ndarray | None = None, spread: float = 0.6) -> np.ndarray:
    """A coloured procedural texture: noise, stripes or a gradient between two colours."""
    c0 = rng.random(3, dtype=np.float32) if c0 is None else c0
    c1 = np.clip(c0 + rng.normal(0, spread, 3).astype(np.float32), 0, 1)
    kind = rng.integers(3)
    if kind == 0:
        t = _noise(rng, size, octaves=int(rng.integers(2, 6)), base=int(rng.integers(2, 8)))
    elif kind == 1:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        th = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 12) * (np.cos(th) * xx + np.sin(th) * yy))
        t = 0.7 * t + 0.3 * _noise(rng, size, octaves=3)
    else:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        th = rng.uniform(0, 2 * np.pi)
        t = np.cos(th) * xx + np.sin(th) * yy
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
    return (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)


def _photo_crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    return crop[:, ::-1].copy() if rng.random() < 0.5 else crop


def _subject_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Binary subject silhouette (person-like, blob or polygon), uint8 {0,1}."""
    m = np.zeros((size, size), np.uint8)
    kind = rng.integers(3)
    cx = int(size * rng.uniform(0.3, 0.7))
    if kind == 0:  # head and shoulders, standing on the bottom edge
        head_r = int(size * rng.uniform(0.09, 0.16))
        head_y = int(size * rng.uniform(0.25, 0.45))
        cv2.circle(m, (cx, head_y), head_r, 1, -1)
        cv2.ellipse(m, (cx, size), (int(size * rng.uniform(0.22, 0.4)), int(size - head_y - head_r * 0.6)),
                    0, 180, 360, 1, -1)
        cv2.rectangle(m, (cx - head_r // 2, head_y), (cx + head_r // 2, head_y + 2 * head_r), 1, -1)
    elif kind == 1:  # thresholded smooth noise blob around the centre
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        r = np.hypot(xx - cx / size, yy - rng.uniform(0.4, 0.6))
        field = _noise(rng, size, octaves=3, base=3) * 0.5 + (0.45 - r)
        m = (field > 0.25).astype(np.uint8)
    else:  # random star-shaped polygon
        n = int(rng.integers(5, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = size * rng.uniform(0.15, 0.38, n)
        cy = size * rng.uniform(0.4, 0.6)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    if m.sum() < size * size * 0.02:  # never an empty scene
        cv2.circle(m, (size // 2, size // 2), size // 5, 1, -1)
    return m


def _strands(rng: np.random.Generator, mask: np.ndarray, n: int, ss: int = 4) -> np.ndarray:
    """Hair-like strands growing out of the mask boundary, drawn 1 px wide at ss x resolution
    and area-downsampled, so their alpha is fractional (about 1/ss per strand)."""
    size = mask.shape[0]
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = np.concatenate([c[:, 0] for c in contours], 0)
    big = np.zeros((size * ss, size * ss), np.uint8)
    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean(), ys.mean()])
    for _ in range(n):
        p = pts[rng.integers(len(pts))].astype(np.float64)
        d = p - centre
        ang = np.arctan2(d[1], d[0]) + rng.normal(0, 0.5)
        length = size * rng.uniform(0.03, 0.12)
        steps = 12
        curve = [p]
        for _ in range(steps):
            ang += rng.normal(0, 0.25)
            p = p + length / steps * np.array([np.cos(ang), np.sin(ang)])
            curve.append(p)
        poly = (np.array(curve) * ss).astype(np.int32)
        cv2.polylines(big, [poly], False, 255, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    return cv2.resize(big.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)


def _tiles(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unseen background style: flat-coloured tiles with grout lines, hard edges everywhere."""
    n = int(rng.integers(3, 12))
    t = cv2.resize(rng.random((n, n, 3), dtype=np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
    yy, xx = np.mgrid[0:size, 0:size]
    step, grout = size / n, max(1, round(size / n * 0.08))
    t[((yy % step) < grout) | ((xx % step) < grout)] = rng.uniform(0.0, 0.3)
    return t


def _unseen_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unseen subject shapes, uint8 {0,1}: a ring (background shows through its hole) or thin limbs."""
    m = np.zeros((size, size), np.uint8)
    c = (int(size * rng.uniform(0.35, 0.65)), int(size * rng.uniform(0.4, 0.6)))
    if rng.random() < 0.5:
        r = int(size * rng.uniform(0.2, 0.35))
        cv2.circle(m, c, r, 1, -1)
        cv2.circle(m, c, int(r * rng.uniform(0.4, 0.7)), 0, -1)
    else:
        for _ in range(int(rng.integers(3, 7))):
            ang, length = rng.uniform(0, 2 * np.pi), size * rng.uniform(0.2, 0.45)
            end = (int(c[0] + length * np.cos(ang)), int(c[1] + length * np.sin(ang)))
            cv2.line(m, c, end, 1, int(rng.integers(3, max(4, size // 25))))
        cv2.circle(m, c, max(2, size // 16), 1, -1)
    return m


def _over(layers: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Porter-Duff 'over' of (colour, alpha) layers, back to front -> (premultiplied-free F, alpha)."""
    h, w = layers[0][1].shape
    prem = np.zeros((h, w, 3), np.float32)
    a = np.zeros((h, w), np.float32)
    for col, al in layers:
        prem = col * al[..., None] + prem * (1 - al[..., None])
        a = al + a * (1 - al)
    fg = prem / np.maximum(a[..., None], 1e-6)
    return np.clip(fg, 0, 1), np.clip(a, 0, 1)


def _depth(rng: np.random.Generator, size: int, solid: np.ndarray, noise: float) -> np.ndarray:
    """Inverse depth: a far tilted floor/wall plane, a near subject, blurred edges and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    far = rng.uniform(0.05, 0.2) + rng.uniform(0.0, 0.25) * yy + rng.uniform(-0.05, 0.05) * xx
    near = rng.uniform(0.7, 0.9) + rng.uniform(-0.08, 0.08) * (yy - 0.5)
    d = solid * near + (1 - solid) * far
    d = cv2.GaussianBlur(d.astype(np.float32), (0, 0), rng.uniform(1.0, 3.0))
    d += noise * rng.standard_normal((size, size)).astype(np.float32)
    d += 0.05 * (_noise(rng, size, octaves=2, base=3) - 0.5)  # low-frequency error of a depth model
    return np.clip(d, 0, 1).astype(np.float32)


def make_scene(seed: int, index: int, cfg: SceneConfig = SceneConfig()) -> dict:
    """Scene number `index` of the stream `seed`; identical for identical arguments."""
    rng = np.random.default_rng([seed, index])
    s = cfg.size
    photos = available_photos(cfg.photos)
    if photos and rng.random() < cfg.p_photo_bg:
        bg = _photo_crop(rng, _photo(photos[int(rng.integers(len(photos)))]), s)
    else:
        bg = _texture(rng, s)
    style = np.random.default_rng([seed, index, 7])  # unseen styles draw here: the base scene stays the same
    if cfg.bg_style == "tiles":
        bg = _tiles(style, s)
    low_contrast = bool(rng.random() < cfg.p_low_contrast)
    if low_contrast:  # subject colours and texture drawn close to the background's mean colour
        fg_col = _texture(rng, s, c0=np.clip(bg.mean((0, 1)) + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32),
                          spread=0.08)
        fg_col = 0.5 * fg_col + 0.5 * bg[::-1, ::-1]
    else:
        fg_col = _texture(rng, s)

    mask = _subject_mask(rng, s)
    if cfg.shape_style == "unseen":
        mask = _unseen_mask(style, s)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), rng.uniform(0.4, 1.5))
    layers = [(fg_col, soft)]
    hair = bool(rng.random() < cfg.p_hair)
    if hair:
        strands = _strands(rng, mask, int(rng.integers(15, 60)))
        hair_col = np.clip(fg_col.mean((0, 1)) * rng.uniform(0.3, 1.2) + rng.normal(0, 0.05, 3), 0, 1)
        layers.append((np.broadcast_to(hair_col.astype(np.float32), (s, s, 3)), strands))
    semi_transparent = bool(rng.random() < cfg.p_semi)
    semi = np.zeros((s, s), bool)
    if semi_transparent:  # a veil or glass pane overlapping the subject's edge
        ys, xs = np.nonzero(mask)
        k = int(rng.integers(len(ys)))
        veil = np.zeros((s, s), np.uint8)
        cv2.ellipse(veil, (int(xs[k]), int(ys[k])), (int(s * rng.uniform(0.08, 0.2)), int(s * rng.uniform(0.08, 0.2))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
        semi = veil.astype(bool)
        veil_a = cv2.GaussianBlur(veil.astype(np.float32), (0, 0), 1.0) * rng.uniform(0.25, 0.7)
        layers.append((_texture(rng, s, spread=0.2), veil_a))
    # the subject and hair without the veil: what a depth source that sees partly through the veil finds near
    opaque = _over(layers[:-1])[1] if semi_transparent and cfg.veil_depth == "mixed" else None
    fg, alpha = _over(layers)
    alpha = np.where(alpha < 0.5 / 255, 0.0, np.where(alpha > 254.5 / 255, 1.0, alpha))  # cut Gaussian tails
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    if opaque is None:
        solid = np.maximum(soft, (alpha > 0.05).astype(np.float32) * 0.9)  # hair strands read as near
    else:  # a see-through veil: its depth is near and far weighted by its alpha (as a time-of-flight return
        # mixes the veil and what lies behind it), not that of the subject
        solid = np.maximum(np.maximum(soft, (opaque > 0.05).astype(np.float32) * 0.9), veil_a)
    depth = _depth(rng, s, solid, cfg.depth_noise)
    if cfg.blur > 0:  # an out-of-focus camera: the matte is as soft as the picture
        image, fg, bg, alpha = (cv2.GaussianBlur(x, (0, 0), cfg.blur) for x in (image, fg, bg, alpha))
    if cfg.gain != 1.0:  # low light: every layer darker by the same factor, so I = aF + (1-a)B still holds
        image, fg, bg = image * cfg.gain, fg * cfg.gain, bg * cfg.gain
    if cfg.noise > 0:  # sensor noise (on the image only: the composite equation no longer holds exactly)
        image = image + cfg.noise * style.standard_normal(image.shape).astype(np.float32)
    if cfg.noise > 0 or cfg.gain != 1.0:  # what an 8-bit camera delivers
        image = np.round(np.clip(image, 0, 1) * 255) / 255
    return {"image": image.astype(np.float32), "fg": fg.astype(np.float32), "bg": bg.astype(np.float32),
            "alpha": alpha.astype(np.float32), "depth": depth, "semi": semi & (alpha > 0.02) & (alpha < 0.98),
            "flags": {"low_contrast": low_contrast, "hair": hair, "semi_transparent": semi_transparent}}
