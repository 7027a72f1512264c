"""People for the generator: articulated figures (head, neck, torso, arms, legs) in random poses, sizes and
places, with hair, held see-through glasses and held opaque objects; and background props.

The matting models must find people by their shape, not by a cue the generator happens to leave: so the
figures vary in scale (a head and shoulders to a whole body), touch or cross the frame's edges, come alone,
in twos and threes or not at all, and wear colours drawn from the background as often as not; props (boxes,
discs, poles, panels) are background even when they take the skin's or the clothes' colours and have
sharp edges. Pure functions of an rng: a scene stays a function of (seed, index).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Figure:
    """One person, drawn at full frame size. Masks are float32 in [0,1] (anti-aliased)."""

    body: np.ndarray                 # clothes and skin: opaque
    skin: np.ndarray                 # head, neck and hands (subset of body)
    lower: np.ndarray                # legs / trousers (subset of body), coloured apart from the top
    head: tuple[float, float, float]  # centre x, y and radius in pixels
    hands: list[tuple[float, float]]
    unit: float                      # pixels per 1/100 of the figure's height


def _line(m: np.ndarray, a, b, thick: float) -> None:
    cv2.line(m, (int(a[0] * 4), int(a[1] * 4)), (int(b[0] * 4), int(b[1] * 4)), 255, max(1, int(thick)),
             cv2.LINE_AA, shift=2)


def _circle(m: np.ndarray, c, r: float) -> None:
    cv2.circle(m, (int(c[0] * 4), int(c[1] * 4)), max(1, int(r * 4)), 255, -1, cv2.LINE_AA, shift=2)


def _limb(rng, m: np.ndarray, start, length: float, angle: float, bend: float, thick: float):
    """Two segments from `start` (angle in degrees from straight down, positive outward); returns the end."""
    a1 = math.radians(angle)
    mid = (start[0] + math.sin(a1) * length / 2, start[1] + math.cos(a1) * length / 2)
    a2 = math.radians(angle + bend)
    end = (mid[0] + math.sin(a2) * length / 2, mid[1] + math.cos(a2) * length / 2)
    _line(m, start, mid, thick)
    _line(m, mid, end, thick * rng.uniform(0.8, 0.95))
    _circle(m, mid, thick * 0.45)
    return end


def figure(rng: np.random.Generator, h: int, w: int, pose: str = "train") -> Figure:
    """A person at a random place and size. pose "train": standing, arms from hanging to held out sideways;
    "unseen" (never trained, for evaluation): arms raised above the head, or the whole figure lying."""
    if rng.random() < 0.5:  # all of the figure in the frame, or nearly
        tall = h * rng.uniform(0.3, 0.85)     # whole-body height (head to feet)
        u = tall / 100.0
        hx, hy = w * rng.uniform(0.25, 0.75), rng.uniform(u * 12, h - u * 90)
    else:  # cut by the frame's bottom (a bust when it is big) and, near a side, by that side
        tall = h * rng.uniform(0.3, 1.5)
        u = tall / 100.0
        hx, hy = w * rng.uniform(-0.05, 1.05), h * rng.uniform(0.08, 0.55)
    body = np.zeros((h, w), np.uint8)
    skin = np.zeros((h, w), np.uint8)
    lower = np.zeros((h, w), np.uint8)
    hr = u * rng.uniform(8.5, 12.0)
    cv2.ellipse(skin, (int(hx * 4), int(hy * 4)), (int(hr * rng.uniform(0.8, 0.95) * 4), int(hr * 4)), 0, 0, 360,
                255, -1, cv2.LINE_AA, shift=2)
    sy = hy + hr + u * rng.uniform(5, 9)          # shoulder line
    _line(skin, (hx, hy + hr * 0.5), (hx, sy + u * 2), u * rng.uniform(6, 9))  # neck
    sw = u * rng.uniform(12, 19)                  # half shoulder width
    hw = sw * rng.uniform(0.65, 1.0)              # half hip width
    hip_y = sy + u * rng.uniform(34, 44)
    lean = u * rng.uniform(-3, 3)
    torso = np.array([(hx - sw, sy + u * 3), (hx - sw * 0.7, sy - u), (hx + sw * 0.7, sy - u), (hx + sw, sy + u * 3),
                      (hx + hw + lean, hip_y), (hx - hw + lean, hip_y)])
    cv2.fillPoly(body, [(torso * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    for side in (-1, 1):
        _circle(body, (hx + side * sw * 0.85, sy + u * 3), u * 5)
    hands = []
    raised = pose == "unseen" and rng.random() < 0.5
    for side in (-1, 1):
        if raised:
            angle, bend = rng.uniform(130, 175), rng.uniform(-20, 20)
        else:
            angle, bend = rng.uniform(-8, 75), rng.uniform(-10, 100)
        start = (hx + side * sw * 0.85, sy + u * 3)
        thick = u * rng.uniform(5.5, 8.5)
        end = _limb(rng, body, start, u * rng.uniform(52, 62), side * angle, side * bend, thick)
        _circle(skin, end, thick * 0.6)
        hands.append(end)
    lower_kind = rng.random()
    if lower_kind < 0.55:  # legs; else a long coat, or nothing below the hips (a bust, someone behind a
        for side in (-1, 1):  # counter): a body need not go on to the frame's bottom
            start = (hx + side * hw * 0.5 + lean, hip_y - u * 2)
            _limb(rng, lower, start, u * rng.uniform(44, 52), side * rng.uniform(0, 14),
                  side * rng.uniform(-10, 5), u * rng.uniform(9, 12))
    elif lower_kind < 0.75:
        coat = np.array([(hx - hw + lean, hip_y - u), (hx + hw + lean, hip_y - u),
                         (hx + hw * 1.2 + lean, hip_y + u * 30), (hx - hw * 1.2 + lean, hip_y + u * 30)])
        cv2.fillPoly(lower, [(coat * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    body = np.maximum(np.maximum(body, skin), lower)
    out = [m.astype(np.float32) / 255 for m in (body, skin, lower)]
    if pose == "unseen" and not raised:  # lying down: the figure turned about its middle
        c = (float(hx), float(hy + tall * 0.4))
        rot = cv2.getRotationMatrix2D(c, float(rng.choice([-1, 1]) * rng.uniform(65, 110)), 1.0)
        out = [cv2.warpAffine(m, rot, (w, h), flags=cv2.INTER_LINEAR) for m in out]
        hx, hy = rot @ np.array([hx, hy, 1.0])
        hands = [tuple(rot @ np.array([x, y, 1.0])) for x, y in hands]
    return Figure(out[0], out[1], out[2], (float(hx), float(hy), float(hr)), hands, u)


def hair(rng: np.random.Generator, fig: Figure, h: int, w: int, ss: int = 3) -> np.ndarray:
    """Hair on the figure's head: a solid cap (maybe long, down the sides) and strands with fractional alpha
    (drawn 1-2 px wide at ss x resolution and area-downsampled)."""
    hx, hy, hr = fig.head
    cap = np.zeros((h, w), np.uint8)
    grow = rng.uniform(1.0, 1.25)
    cv2.ellipse(cap, (int(hx * 4), int((hy - hr * 0.15) * 4)), (int(hr * grow * 4), int(hr * grow * 4)), 0, 180, 360,
                255, -1, cv2.LINE_AA, shift=2)
    if rng.random() < 0.4:  # long hair down both sides
        for side in (-1, 1):
            _line(cap, (hx + side * hr * 0.8, hy - hr * 0.2), (hx + side * hr * 1.05, hy + hr * rng.uniform(1.5, 3.5)),
                  hr * rng.uniform(0.4, 0.7))
    big = np.zeros((h * ss, w * ss), np.uint8)
    for _ in range(int(rng.integers(20, 80))):
        ang = rng.uniform(-math.pi, 0) + rng.normal(0, 0.3)  # out of the top half
        p = np.array([hx + math.cos(ang) * hr * grow, hy - hr * 0.15 + math.sin(ang) * hr * grow])
        length = hr * rng.uniform(0.3, 1.4)
        pts = [p]
        for _ in range(10):
            ang += rng.normal(0, 0.2)
            p = p + length / 10 * np.array([math.cos(ang), math.sin(ang)])
            pts.append(p)
        cv2.polylines(big, [(np.array(pts) * ss).astype(np.int32)], False, 255, int(rng.integers(1, 3)), cv2.LINE_AA)
    strands = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return np.maximum(cap.astype(np.float32) / 255, strands)


def held(rng: np.random.Generator, fig: Figure, h: int, w: int) -> np.ndarray:
    """A held object's mask at one hand: a glass, a bottle or a phone."""
    m = np.zeros((h, w), np.uint8)
    x, y = fig.hands[int(rng.integers(len(fig.hands)))]
    u = fig.unit
    bw, bh = u * rng.uniform(6, 12), u * rng.uniform(10, 22)
    box = np.array([(x - bw, y - bh), (x + bw, y - bh), (x + bw * rng.uniform(0.7, 1.0), y + bh * 0.3),
                    (x - bw * rng.uniform(0.7, 1.0), y + bh * 0.3)])
    cv2.fillPoly(m, [(box * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    return m.astype(np.float32) / 255


def props(rng: np.random.Generator, h: int, w: int, palette: list[np.ndarray], texture) -> list[tuple]:
    """Background props with sharp edges, [(colour (H,W,3), mask (H,W) float)]: boxes, discs, poles, panels,
    a third of them in a colour of the figures' palette (skin, clothes), so colour alone tells nothing."""
    out = []
    for _ in range(int(rng.integers(0, 7))):
        m = np.zeros((h, w), np.uint8)
        kind = rng.integers(4)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        s = min(h, w) * rng.uniform(0.06, 0.45)
        if kind == 0:
            rect = ((cx, cy), (s, s * rng.uniform(0.3, 2.0)), rng.uniform(0, 90) if rng.random() < 0.3 else 0)
            cv2.fillPoly(m, [cv2.boxPoints(rect).astype(np.int32)], 255, cv2.LINE_AA if rng.random() < 0.5 else 8)
        elif kind == 1:
            cv2.ellipse(m, (int(cx), int(cy)), (int(s / 2), int(s / 2 * rng.uniform(0.5, 1.2))), rng.uniform(0, 180),
                        0, 360, 255, -1, cv2.LINE_AA)
        elif kind == 2:  # pole, lamp stand or door frame: long and thin
            cv2.line(m, (int(cx), int(cy - s)), (int(cx + rng.uniform(-s, s) * 0.3), int(cy + s * 2)), 255,
                     max(2, int(s * rng.uniform(0.05, 0.2))), cv2.LINE_AA)
        else:  # polygon
            n = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            pts = np.stack([cx + s / 2 * np.cos(ang), cy + s / 2 * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(m, [pts], 255, cv2.LINE_AA)
        if palette and rng.random() < 0.35:
            c = palette[int(rng.integers(len(palette)))]
            col = np.broadcast_to(np.clip(c + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32), (h, w, 3))
        else:
            col = texture(rng)
        out.append((col, m.astype(np.float32) / 255))
    return out


SKIN = np.array([[0.95, 0.80, 0.70], [0.85, 0.65, 0.50], [0.65, 0.45, 0.32], [0.42, 0.28, 0.20], [0.90, 0.72, 0.60]],
                np.float32)
HAIR = np.array([[0.08, 0.06, 0.05], [0.30, 0.20, 0.12], [0.75, 0.62, 0.38], [0.55, 0.55, 0.55], [0.55, 0.25, 0.12]],
                np.float32)


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    return np.clip(SKIN[int(rng.integers(len(SKIN)))] * rng.uniform(0.8, 1.15) + rng.normal(0, 0.03, 3), 0, 1)


def hair_colour(rng: np.random.Generator) -> np.ndarray:
    return np.clip(HAIR[int(rng.integers(len(HAIR)))] + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)
