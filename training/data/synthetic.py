"""Seeded synthetic scenes of people: foreground F, background B, alpha, depth and composite I.

Every scene is a pure function of (seed, index, SceneConfig), so a data stream is reproducible
from any step on any rank without storing anything. Arrays are float32 in [0,1]:

    image, fg, bg  (H,W,3) RGB        alpha, depth  (H,W)        semi (H,W) bool, veil region
    flags          {"low_contrast", "hair", "semi_transparent" (a see-through region exists), "glass" (a glass is
                   held, maybe all over the body), "people" (how many)}

I = alpha * F + (1 - alpha) * B holds exactly, so the compositional loss is consistent.
Depth is relative inverse depth (larger = nearer): people near, props a little nearer than the
wall or floor behind them, blurred at edges and noisy like the output of a monocular depth model.
The people, their hair, held things and the props are drawn by figures.py.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .figures import figure, hair, hair_colour, held, props, skin_colour

# Photos that ship inside installed packages; split so held-out scenes can use unseen ones.
TRAIN_PHOTOS = ("coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "brick", "grass",
                "gravel", "clock")
HELDOUT_PHOTOS = ("astronaut", "camera", "grace_hopper", "retina", "moon")


@dataclass(frozen=True)
class SceneConfig:
    size: int = 256                 # square side in pixels
    people: tuple[float, ...] = (0.06, 0.7, 0.18, 0.06)  # odds of 0, 1, 2, 3 people in a scene
    p_low_contrast: float = 0.25    # clothes' colours/texture drawn from the background's
    p_hair: float = 0.6             # hair on a head: a cap and thin strands with fractional alpha
    p_semi: float = 0.3             # a held see-through glass (semi-transparent), per person
    camera: bool = True             # defocus, uneven light and sensor noise, as trained (figures.py)
    p_photo_bg: float = 0.4         # photographic background when photos are importable
    photos: tuple[str, ...] = TRAIN_PHOTOS
    depth_noise: float = 0.02       # std of per-pixel depth noise (of the depth target)
    # styles the recipe never trains on (robustness evaluation, see STYLES); the defaults are off
    bg_style: str = "train"         # "train" (textures, photos) | "tiles" (flat tiles, hard grout lines)
    shape_style: str = "train"      # "train" (standing people) | "unseen" (arms raised overhead, lying down)
    noise: float = 0.0              # std of Gaussian sensor noise on the image
    blur: float = 0.0               # sigma of a camera blur (image and alpha alike)
    gain: float = 1.0               # exposure; < 1 is low light (then 8-bit quantised)
    veil_depth: str = "mixed"       # "mixed": depth sees partly through a glass (near and far by its alpha);
                                    # "near": a depth source that reads a glass as solid as the subject


# Unseen styles for `python -m training.evaluate --style NAME`: SceneConfig overrides.
STYLES: dict[str, dict] = {
    "in-distribution": {},
    "photos": {"photos": HELDOUT_PHOTOS, "p_photo_bg": 1.0},  # every background a photo never trained on
    "tiles": {"bg_style": "tiles"},
    "shapes": {"shape_style": "unseen"},  # poses: arms raised overhead, lying down
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
    """A coloured procedural texture: noise, stripes or a gradient between two colours, colour noise of many
    colours, or blobs."""
    c0 = rng.random(3, dtype=np.float32) if c0 is None else c0
    c1 = np.clip(c0 + rng.normal(0, spread, 3).astype(np.float32), 0, 1)
    kind = rng.integers(5 if spread > 0.3 else 3)  # (a low-contrast texture keeps to its colours)
    if kind == 3:  # many colours at once: colour noise at a random scale (confetti to large patches)
        n = int(rng.integers(3, max(4, size // 6)))
        t3 = cv2.resize(rng.random((n, n, 3), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        return np.clip(t3 * rng.uniform(0.4, 1.0) + rng.uniform(0, 0.4), 0, 1).astype(np.float32)
    if kind == 4:  # blobs: overlapping discs and ellipses of many colours on a base colour
        out = np.broadcast_to(c0, (size, size, 3)).copy()
        for _ in range(int(rng.integers(5, 30))):
            cv2.ellipse(out, (int(rng.integers(size)), int(rng.integers(size))),
                        (int(rng.integers(2, size // 5)), int(rng.integers(2, size // 5))), float(rng.uniform(0, 180)),
                        0, 360, tuple(float(v) for v in rng.random(3)), -1, cv2.LINE_AA)
        return out
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


def _tiles(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unseen background style: flat-coloured tiles with grout lines, hard edges everywhere."""
    n = int(rng.integers(3, 12))
    t = cv2.resize(rng.random((n, n, 3), dtype=np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
    yy, xx = np.mgrid[0:size, 0:size]
    step, grout = size / n, max(1, round(size / n * 0.08))
    t[((yy % step) < grout) | ((xx % step) < grout)] = rng.uniform(0.0, 0.3)
    return t


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



def _depth(rng: np.random.Generator, size: int, objects: list[tuple[np.ndarray, float]], noise: float) -> np.ndarray:
    """Inverse depth: a far tilted floor/wall plane, then each object (coverage, nearness) back to front,
    blurred at edges and with a depth model's noise and low-frequency error."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    d = rng.uniform(0.05, 0.2) + rng.uniform(0.0, 0.25) * yy + rng.uniform(-0.05, 0.05) * xx
    for cover, near in objects:
        d = cover * near + (1 - cover) * d
    d = cv2.GaussianBlur(d.astype(np.float32), (0, 0), rng.uniform(1.0, 2.0))
    d += noise * rng.standard_normal((size, size)).astype(np.float32)
    d += 0.04 * (_noise(rng, size, octaves=2, base=3) - 0.5)
    return np.clip(d, 0, 1).astype(np.float32)


def _cheap_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A prop's surface: flat half the time (cheap, and props are often plain), else a texture."""
    if rng.random() < 0.5:
        return np.broadcast_to(rng.random(3, dtype=np.float32), (size, size, 3))
    return _texture(rng, size)


def _clothes(rng: np.random.Generator, size: int, bg: np.ndarray, low_contrast: bool) -> np.ndarray:
    if low_contrast:  # colours and texture drawn close to the background's, as in a grey coat on a grey wall
        near = np.clip(bg.mean((0, 1)) + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)
        return 0.5 * _texture(rng, size, c0=near, spread=0.08) + 0.5 * bg[::-1, ::-1]
    return _texture(rng, size)


def _camera(rng: np.random.Generator, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray):
    """What a camera does, applied so I = aF + (1-a)B still holds: defocus on every layer, uneven light and
    sensor noise on F and B alike (a(F+n) + (1-a)(B+n) = I + n)."""
    size = alpha.shape[0]
    if rng.random() < 0.3:
        sigma = rng.uniform(0.3, 1.2)
        fg, bg, alpha = (cv2.GaussianBlur(x, (0, 0), sigma) for x in (fg, bg, alpha))
    light = np.float32(rng.uniform(0.7, 1.2))
    if rng.random() < 0.4:
        light = light * (0.8 + 0.4 * _noise(rng, size, octaves=2, base=2))[..., None]
    fg, bg = fg * light, bg * light
    if rng.random() < 0.4:
        n = (rng.uniform(0.005, 0.03) * rng.standard_normal((size, size, 3))).astype(np.float32)
        fg, bg = fg + n, bg + n
    return np.clip(fg, 0, 1), np.clip(bg, 0, 1), alpha


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
    pose = "unseen" if cfg.shape_style == "unseen" else "train"
    n_people = int(rng.choice(len(cfg.people), p=np.asarray(cfg.people) / sum(cfg.people)))
    low_contrast = bool(rng.random() < cfg.p_low_contrast)
    skins = [skin_colour(rng) for _ in range(max(n_people, 1))]
    tops = [_clothes(rng, s, bg, low_contrast) for _ in range(n_people)]
    palette = skins + [t.mean((0, 1)) for t in tops]
    depth_objects = []
    scenery = props(rng, s, s, palette, lambda r: _cheap_texture(r, s))  # background: alpha 0
    for col, m in scenery:
        bg = col * m[..., None] + bg * (1 - m[..., None])
        depth_objects.append((m, float(rng.uniform(0.2, 0.4))))
    layers: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros((s, s, 3), np.float32), np.zeros((s, s), np.float32))]
    hair_any = glass_any = False
    semi = np.zeros((s, s), bool)
    for k in range(n_people):  # back to front
        fig = (figure(style, s, s, pose) if pose == "unseen" else figure(rng, s, s))
        near = float(rng.uniform(0.6, 0.9)) + 0.03 * k
        bottom = _clothes(rng, s, bg, low_contrast) if rng.random() < 0.7 else tops[k]
        col = tops[k] * (1 - fig.lower[..., None]) + bottom * fig.lower[..., None]
        col = col * (1 - fig.skin[..., None]) + skins[k] * fig.skin[..., None]
        layers.append((col.astype(np.float32), fig.body))
        cover = fig.body
        if rng.random() < cfg.p_hair:
            strands = hair(rng, fig, s, s)
            layers.append((np.broadcast_to(hair_colour(rng), (s, s, 3)), strands))
            cover = np.maximum(cover, (strands > 0.05) * 0.9)
            hair_any = True
        if fig.hands and rng.random() < 0.15:  # a held phone or bottle: part of the subject
            thing = held(rng, fig, s, s)
            layers.append((_cheap_texture(rng, s), thing))
            cover = np.maximum(cover, thing)
        depth_objects.append((cover, near))
        if fig.hands and rng.random() < cfg.p_semi:  # a held glass: see-through, a semi-transparent region
            glass = held(rng, fig, s, s)
            glass_a = glass * rng.uniform(0.2, 0.6)
            layers.append((_texture(rng, s, spread=0.2), glass_a))
            semi |= glass > 0.5
            glass_any = True
            # depth sees partly through the glass ("mixed") or reads it as solid ("near", an unseen style)
            depth_objects.append((glass_a if cfg.veil_depth == "mixed" else glass, near))
    fg, alpha = _over(layers)
    alpha = np.where(alpha < 0.5 / 255, 0.0, np.where(alpha > 254.5 / 255, 1.0, alpha)).astype(np.float32)
    semi &= (alpha > 0.02) & (alpha < 0.98)  # a glass in front of the body is not see-through there
    semi_any = bool(semi.any())
    if cfg.camera:
        fg, bg, alpha = _camera(rng, fg, bg.astype(np.float32), alpha)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    depth = _depth(rng, s, depth_objects, cfg.depth_noise)
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
            "flags": {"low_contrast": low_contrast and n_people > 0, "hair": hair_any, "semi_transparent": semi_any,
                      "glass": glass_any, "people": n_people}}
