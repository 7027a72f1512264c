"""Backgrounds for the composite output, and the numpy compose used when the fused finish is skipped.

A background spec is a string, so the CLI flag maps onto it 1:1:
    "transparent"            no background (RGBA output)
    "green", "#00B140", ...  a solid colour (named or #RRGGBB)
    "blur" / "blur:<k>"      the frame's background, blurred (cheap: downscale by k, blur, upscale); given the
                             coarse alpha, only what it calls background is blurred and the hole behind the subject
                             is filled from its surroundings, so the subject does not glow into it
    <path>                   an image file, resized to the frame
The fused finish (`native.refine_finish`) composites over what `Background.fill` returns: a (3,)
BGR colour (no per-frame work at all) or an (H, W, 3) u8 buffer owned by the Background and
refilled only when it has to be (blur: every frame; image: when the frame size changes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .images import read_image, to_bgr
from .native_reference import FG_GAIN, FG_RAMP

# BGR, so they go straight into the u8 BGR data path.
COLOURS: dict[str, tuple[int, int, int]] = {
    "green": (64, 177, 0), "blue": (255, 71, 0), "black": (0, 0, 0), "white": (255, 255, 255),
    "gray": (128, 128, 128), "grey": (128, 128, 128), "red": (0, 0, 255),
}
BLUR_FACTOR = 8


@dataclass(frozen=True)
class BackgroundSpec:
    kind: str                                   # "transparent" | "colour" | "image" | "blur"
    colour: tuple[int, int, int] = (0, 0, 0)    # BGR, for "colour"
    path: str = ""                              # for "image"
    blur: int = BLUR_FACTOR                     # downscale factor, for "blur"


def parse_background(spec: str | os.PathLike) -> BackgroundSpec:
    """Parse a background string (see module doc); one-line ValueError naming it when it is none of them."""
    s = str(spec).strip()
    low = s.lower()
    if low in ("transparent", "none", ""):
        return BackgroundSpec("transparent")
    if low in COLOURS:
        return BackgroundSpec("colour", colour=COLOURS[low])
    if low.startswith("#"):
        h = low[1:]
        if len(h) != 6 or any(c not in "0123456789abcdef" for c in h):
            raise ValueError(f"background {s!r}: a colour must be #RRGGBB")
        r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
        return BackgroundSpec("colour", colour=(b, g, r))
    if low == "blur" or low.startswith("blur:"):
        k = low.partition(":")[2] or str(BLUR_FACTOR)
        if not k.isdigit() or not 2 <= int(k) <= 64:
            raise ValueError(f"background {s!r}: blur factor must be an integer in [2, 64]")
        return BackgroundSpec("blur", blur=int(k))
    if Path(s).is_file():
        if read_image(s) is None:  # checked here, so a bad file fails with the arguments, not at frame 1
            raise ValueError(f"background {s!r}: not a readable image file (corrupt or truncated?)")
        return BackgroundSpec("image", path=s)
    raise ValueError(f"background {s!r} is not 'transparent', a colour name ({', '.join(sorted(COLOURS))}), "
                     f"#RRGGBB, 'blur[:k]', or an existing image file")


class Background:
    """Owns the background buffer for one output size; `fill(frame)` returns what to composite over."""

    def __init__(self, spec: BackgroundSpec | str):
        self.spec = spec if isinstance(spec, BackgroundSpec) else parse_background(spec)
        self._image: np.ndarray | None = None
        self._buf: np.ndarray | None = None
        self._small: np.ndarray | None = None
        self._colour = np.array(self.spec.colour, np.uint8)
        if self.spec.kind == "image":
            img = read_image(self.spec.path)
            if img is None:
                raise ValueError(f"background {self.spec.path!r}: not a readable image file")
            self._image = to_bgr(img)

    @property
    def transparent(self) -> bool:
        return self.spec.kind == "transparent"

    def fill(self, frame: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray | None:
        """(3,) u8 colour, or an (H, W, 3) u8 BGR buffer matching `frame`; None when transparent. `alpha` (float32,
        any size, e.g. the coarse alpha): the blur is made of the background alone (see `background_only`)."""
        kind = self.spec.kind
        if kind == "transparent":
            return None
        if kind == "colour":
            return self._colour
        h, w = frame.shape[:2]
        fresh = self._buf is None or self._buf.shape[:2] != (h, w)
        if fresh:
            self._buf = np.empty((h, w, 3), np.uint8)
        if kind == "image":
            if fresh:
                cv2.resize(self._image, (w, h), dst=self._buf, interpolation=cv2.INTER_AREA)
            return self._buf
        # blur: a small blur on a 1/k image then a bilinear upscale looks like a large blur, at ~1/k^2 the cost
        k = self.spec.blur
        sw, sh = max(1, w // k), max(1, h // k)
        if self._small is None or self._small.shape[:2] != (sh, sw):
            self._small = np.empty((sh, sw, 3), np.uint8)
        cv2.resize(frame, (sw, sh), dst=self._small, interpolation=cv2.INTER_AREA)
        if alpha is None:
            cv2.GaussianBlur(self._small, (0, 0), 2.0, dst=self._small)
        else:
            background_only(self._small, alpha, 2.0, out=self._small)
        cv2.resize(self._small, (w, h), dst=self._buf, interpolation=cv2.INTER_LINEAR)
        return self._buf


def background_only(small: np.ndarray, alpha: np.ndarray, sigma: float, out: np.ndarray) -> np.ndarray:
    """The Gaussian blur of `small` (u8 BGR) made of background pixels only, into `out` (u8, may be `small`).

    Normalised convolution: blur(w * I) / blur(w), with the fused op's background weight w = clamp(1 - 4a, 0, 1)^2
    of `alpha` resized to `small`; where the blurred weight is low (behind the subject) the colour is filled from the
    surroundings by push-pull over a Gaussian pyramid, each level trusting its own normalised colour by
    min(1, 4 * its weight) (the op's rule, native_reference.background_grid)."""
    h, w = small.shape[:2]
    a = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA) if alpha.shape != (h, w) else alpha
    t = np.clip(1.0 - FG_RAMP * np.clip(a, 0.0, 1.0), 0.0, 1.0)
    wt = (t * t).astype(np.float32)
    num = cv2.GaussianBlur(small.astype(np.float32) * wt[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(wt, (0, 0), sigma)
    nums, dens = [num], [den]
    while min(nums[-1].shape[:2]) > 1:  # push: the pyramid of weighted colours and weights
        nums.append(cv2.pyrDown(nums[-1]))
        dens.append(cv2.pyrDown(dens[-1]))
    top = dens[-1][..., None]
    b = np.where(top > 0, nums[-1] / np.maximum(top, 1e-12), np.float32(128.0))
    for n, d in zip(reversed(nums[:-1]), reversed(dens[:-1]), strict=True):  # pull: each level from the one above
        up = cv2.pyrUp(b, dstsize=(n.shape[1], n.shape[0]))
        c = np.minimum(d * FG_GAIN, 1.0)[..., None]
        b = up + c * (n / np.maximum(d, 1e-12)[..., None] - up)
    np.copyto(out, np.clip(b + 0.5, 0, 255).astype(np.uint8))
    return out


def compose(frame: np.ndarray, alpha: np.ndarray, mode: str, background: np.ndarray | None,
            out: np.ndarray) -> np.ndarray:
    """Output for `mode` from a full-resolution alpha (float32 (H, W) in [0, 1]) into `out`; the same
    rounding as the fused finish. Used where no refiner output exists (pass-through frames)."""
    q = np.floor(np.clip(alpha, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    if mode == "alpha":
        out[...] = q
    elif mode == "rgba":
        out[..., :3] = frame
        out[..., 3] = q
    elif mode == "composite":
        a = alpha[..., None].astype(np.float32)
        bg = np.broadcast_to(background, frame.shape).astype(np.float32)
        out[...] = np.floor(bg + a * (frame.astype(np.float32) - bg) + np.float32(0.5))
    else:
        raise ValueError(f"mode must be 'alpha', 'rgba' or 'composite', got {mode!r}")
    return out
