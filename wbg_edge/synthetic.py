"""The built-in synthetic clip: a person-like subject (head, neck, torso, swinging arms) walking across a
textured background, with its exact alpha. It backs the `synthetic://` source, the demo and tests;
it needs no camera, GPU, network or files, and imports nothing of the pipeline.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


class SyntheticClip:
    """Deterministic frames: `frame(i) -> (bgr u8 HxWx3, alpha f32 HxW in [0,1])`."""

    def __init__(self, width: int = 1280, height: int = 720, frames: int = 100, fps: float = 25.0, seed: int = 0):
        if width < 16 or height < 16 or frames < 1 or fps <= 0:
            raise ValueError(f"synthetic clip needs width, height >= 16, frames >= 1, fps > 0 "
                             f"(got {width}x{height}, {frames} frames, {fps} fps)")
        self.width, self.height, self.frames, self.fps = int(width), int(height), int(frames), float(fps)
        rng = np.random.default_rng(seed)
        # Background: smooth colour noise + a few hard-edged shapes (so edges exist that are not the subject).
        small = rng.integers(0, 256, (max(height // 24, 2), max(width // 24, 2), 3), dtype=np.uint8)
        bg = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) // 2 + 64  # muted, not garish
        fine = rng.integers(-18, 19, (height, width, 1), dtype=np.int16)
        bg = np.clip(bg.astype(np.int16) + fine, 0, 255).astype(np.uint8)
        for _ in range(6):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            s = int(rng.integers(height // 12, height // 4))
            col = tuple(int(c) for c in rng.integers(30, 230, 3))
            cv2.rectangle(bg, (x, y), (x + s, y + s // 2), col, -1, cv2.LINE_AA)
        self._bg = bg
        yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        shirt = np.array([60, 90, 200], np.float32) * (0.75 + 0.25 * yy)  # BGR, shaded top to bottom
        self._fg = np.broadcast_to(shirt, (height, width, 3)).astype(np.float32)
        self._skin = (120, 160, 215)

    def __len__(self) -> int:
        return self.frames

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        alpha8, skin, hair = self._masks(i)
        return self._compose(alpha8, skin, hair)

    def alpha(self, i: int) -> np.ndarray:
        """Frame i's alpha alone (what `frame(i)[1]` is), without drawing the picture: a few ms instead of ~20 at
        720p, for checking a matte against the truth beside a running stream."""
        return self._masks(i)[0].astype(np.float32) / 255.0

    def _masks(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(alpha u8, skin u8, hair u8) of frame i, (H, W) each."""
        w, h = self.width, self.height
        t = i / self.frames  # one walk there and back per clip; frame n would equal frame 0 (loops cleanly)
        cx = int(w * (0.3 + 0.4 * (0.5 - 0.5 * math.cos(2 * math.pi * t))))
        bob = int(h * 0.01 * math.sin(4 * math.pi * t))
        swing = 25 * math.sin(2 * math.pi * t * 2)
        u = h / 100.0  # one "unit" of the figure
        mask = np.zeros((h, w), np.uint8)
        head_c, head_r = (cx, int(26 * u) + bob), int(10 * u)
        torso = ((cx, int(62 * u) + bob), (int(17 * u), int(27 * u)))
        # Arms: thick lines from the shoulders, swinging in opposite phase.
        for side, phase in ((-1, 1), (1, -1)):
            sx, sy = cx + side * int(14 * u), int(44 * u) + bob
            ang = math.radians(90 - side * 28 + phase * swing)
            ex, ey = int(sx + math.cos(ang) * 34 * u), int(sy + math.sin(ang) * 34 * u)
            cv2.line(mask, (sx, sy), (ex, ey), 255, max(int(6 * u), 1), cv2.LINE_AA)
        cv2.ellipse(mask, torso[0], torso[1], 0, 0, 360, 255, -1, cv2.LINE_AA)
        cv2.rectangle(mask, (cx - int(4 * u), int(32 * u) + bob), (cx + int(4 * u), int(40 * u) + bob), 255, -1)
        skin = np.zeros((h, w), np.uint8)
        cv2.circle(skin, head_c, head_r, 255, -1, cv2.LINE_AA)
        # Hair: a soft, partly transparent fringe over the head, where matting is hard.
        hair = np.zeros((h, w), np.uint8)
        cv2.ellipse(hair, (head_c[0], head_c[1] - int(4 * u)), (int(12 * u), int(9 * u)), 0, 180, 360, 255, -1)
        hy0, hy1 = max(head_c[1] - int(30 * u), 0), min(head_c[1] + int(10 * u), h)
        hx0, hx1 = max(head_c[0] - int(30 * u), 0), min(head_c[0] + int(30 * u), w)
        if hy1 > hy0 and hx1 > hx0:
            hair[hy0:hy1, hx0:hx1] = cv2.GaussianBlur(hair[hy0:hy1, hx0:hx1], (0, 0), max(u * 1.5, 0.5))
        alpha8 = np.maximum(np.maximum(mask, skin), (hair.astype(np.float32) * 0.85).astype(np.uint8))
        return alpha8, skin, hair

    def _compose(self, alpha8: np.ndarray, skin: np.ndarray, hair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.width, self.height
        out = self._bg.copy()
        alpha = np.zeros((h, w), np.float32)
        x, y, bw, bh = cv2.boundingRect(alpha8)
        if bw and bh:  # blend only inside the figure's box: 720p stays a few ms per frame
            sl = np.s_[y:y + bh, x:x + bw]
            a = alpha8[sl].astype(np.float32) / 255.0
            fg = self._fg[sl].copy()
            fg[skin[sl] > 0] = self._skin
            hair_a = hair[sl].astype(np.float32)[..., None] / 255.0
            fg = fg * (1 - hair_a) + np.array([30, 40, 60], np.float32) * hair_a
            a3 = a[..., None]
            out[sl] = np.clip(out[sl].astype(np.float32) * (1 - a3) + fg * a3 + 0.5, 0, 255).astype(np.uint8)
            alpha[sl] = a
        return out, alpha
