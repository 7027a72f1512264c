"""The temporal stage: the coarse alpha filtered over time along the optical flow, on the coarse grid.

A per-frame segmenter decides every frame anew, so where it is unsure (a flag behind a person, a helmet,
hair) its output switches from frame to frame. Here the previous frame's filtered alpha is moved to the
current frame along the optical flow (DIS, current -> previous, on the coarse grid's luminance) and blended in:

    a = a_t + k * (warp(a_prev) - a_t),   k = strength * trust

`trust` is 1 where the previous colours, moved by the same flow and corrected for the global brightness
change, match the current ones, falls to 0 where it differs by RESIDUAL_HI levels (an occlusion, a hand that
moved faster than the flow saw, a flow error) and is 0 where the flow points outside the previous frame. Where
standing still explains the image as well as the flow (a still scene, a flat region) the memory is not moved
(the flow of noise is noise). Where the current segmenter is confident and the previous alpha was not, or the
other way round, each gets the weight of its certainty (a half-sure alpha never overrides a sure one). A scene
cut (a third of the grid mismatching) starts the memory afresh, as `reset()` and a new frame size do.

Measured on 48-frame 720p clips of real photos (pan, zoom over a textured canvas with a lighting ramp, turn,
camera noise), bench/real_people.py: 2.3-3.5x less flicker than the segmenter alone and a higher IoU. Without
the residual gate a pole sweeping in front of the person leaves 2.1x more ghost alpha behind it and the frames
after a cut keep the old scene; without the certainty weighting 1.2x the ghost. About 2 ms a frame on the
256 x 256 grid of MediaPipe's selfie segmenter.

The memory (`Memory`: the last luminance and filtered alpha on the coarse grid) lives in `StreamState.temporal`;
the stage runs in frame order (an overlapped stream takes it in turns; a batch frame by frame).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .buffers import Work
from .state import StreamState

RESIDUAL_LO, RESIDUAL_HI = 8, 32       # colour levels (0..255, 5x5 mean): full trust .. none. Sensor noise and
#                                        the interpolation of a moved image stay under 8; 32 is another surface
RESIDUAL_BLUR = 5                      # the residual's mean window (px of the coarse grid): noise averages out
CUT_SHARE = 0.3                        # a scene cut: this share of the grid or more mismatches (residual above
#                                        RESIDUAL_HI; moving people, zooms and turns stay under 1%, cuts 60-80%)
STILL_MARGIN = 3                       # levels: standing still wins unless the flow explains the image better
CERTAINTY_FLOOR = 0.25                 # the weight of a fully unsure alpha against a sure one (1 / (floor + 1) : 4)


@dataclass
class Memory:
    """What the temporal stage keeps between frames (the pipeline's own arrays, updated in place)."""

    frame: tuple[int, int]    # the frame size it was made at
    gray: np.ndarray          # u8 (h, w): the last frame's luminance on the coarse grid (what the flow reads)
    look: np.ndarray          # u8 (h, w, 3): its colours there (what the residual compares)
    alpha: np.ndarray         # float32 (h, w): the last filtered coarse alpha
    cuts: int = 0             # scene cuts seen since it started (diagnostics)


class Flow:
    """The stage's tools for one coarse grid: the optical flow and scratch buffers (no memory of frames)."""

    def __init__(self, shape: tuple[int, int]):
        h, w = shape
        self.shape = shape
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        # The preset stops 2 pyramid levels above the grid (a 64 x 64 flow field for a 256 x 256 segmenter). A
        # coarser field misplaces edges by a fraction of a pixel every frame, and the recursion carries that
        # k / (1 - k) times over (4x at 0.8): stop where the field is still 64 px on its short side.
        self.dis.setFinestScale(max(0, min(2, int(np.log2(max(min(h, w), 1) / 64)))))
        self.gy, self.gx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.flow = np.zeros((h, w, 2), np.float32)
        self.mx, self.my = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
        self.warped = np.empty((h, w), np.float32)
        self.look, self.moved, self.diff = (np.empty((h, w, 3), np.uint8) for _ in range(3))
        self.gray, self.res, self.res_still = (np.empty((h, w), np.uint8) for _ in range(3))
        self.lut: tuple[float, np.ndarray] | None = None  # (strength, trust by residual level)

    def trust(self, strength: float) -> np.ndarray:
        """strength * trust for each residual level 0..255: 1 up to RESIDUAL_LO, 0 from RESIDUAL_HI."""
        if self.lut is None or self.lut[0] != strength:
            r = np.arange(256, dtype=np.float32)
            self.lut = strength, (strength * np.clip((RESIDUAL_HI - r) / (RESIDUAL_HI - RESIDUAL_LO), 0, 1)
                                  ).astype(np.float32)
        return self.lut[1]


class Temporal:
    """`temporal(w, state)`: the stage for one pipeline (its strength, and Flow tools per coarse grid). Called
    in frame order only, so one set of tools serves both lanes of an overlapped stream."""

    def __init__(self, strength: float):
        self.strength = float(strength)
        self._tools: Flow | None = None

    def tools(self, shape: tuple[int, int]) -> Flow:
        if self._tools is None or self._tools.shape != shape:
            self._tools = Flow(shape)
        return self._tools

    def __call__(self, w: Work, state: StreamState) -> None:
        if w.bad:
            return  # a NaN frame keeps the memory as it was (finish passes the previous alpha through)
        t0 = time.perf_counter()
        a = w.alpha_coarse
        f = self.tools(a.shape)
        colours(w, f.look)
        cv2.cvtColor(f.look, cv2.COLOR_BGR2GRAY, dst=f.gray)
        mem = state.temporal
        if not isinstance(mem, Memory) or mem.alpha.shape != a.shape or mem.frame != w.slot.geom.frame:
            mem = state.temporal = Memory(w.slot.geom.frame, np.empty_like(f.gray), np.empty_like(f.look),
                                          np.empty_like(a))
            f.flow.fill(0)  # DIS starts from the flow buffer it is given: a new stream starts from no motion
        elif not blend(a, f, mem, self.strength):
            mem.cuts += 1
        np.copyto(mem.gray, f.gray)
        np.copyto(mem.look, f.look)
        np.copyto(mem.alpha, a)
        w.tm["temporal"] = (time.perf_counter() - t0) * 1e3


def colours(w: Work, out: np.ndarray) -> None:
    """The frame's colours (u8 BGR) on the coarse alpha's grid, from what the coarse model was given."""
    slot = w.slot
    if slot.coarse_small is not None:  # rgb contract: the u8 image the segmenter saw
        src = slot.coarse_small
    else:  # rgbd contract: the float R, G, B planes at the model grid
        rgb = slot.model_in[0, :3]
        src = np.clip(rgb[::-1].transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
    if src.shape != out.shape:
        cv2.resize(src, out.shape[1::-1], dst=out, interpolation=cv2.INTER_AREA)
    else:
        np.copyto(out, src)


def residual(cur: np.ndarray, prev: np.ndarray, gain: float, f: Flow, out: np.ndarray) -> np.ndarray:
    """|cur - gain * prev| of u8 colour images (h, w, 3), channel by channel (a person and a grey pole of the same
    luminance differ), their mean, averaged over RESIDUAL_BLUR px: u8 levels."""
    if abs(gain - 1.0) > 1e-3:
        prev = cv2.convertScaleAbs(prev, alpha=gain)
    cv2.absdiff(cur, prev, dst=f.diff)
    cv2.cvtColor(f.diff, cv2.COLOR_BGR2GRAY, dst=out)  # (a weighted mean of the channels' differences)
    return cv2.blur(out, (RESIDUAL_BLUR, RESIDUAL_BLUR), dst=out)


def blend(a: np.ndarray, f: Flow, mem: Memory, strength: float) -> bool:
    """a (the current coarse alpha, in place) blended with the memory moved along the flow; False (a left as it
    is) at a scene cut."""
    f.dis.calc(f.gray, mem.gray, f.flow)  # current -> previous: where each current pixel was
    np.add(f.gx, f.flow[..., 0], out=f.mx)
    np.add(f.gy, f.flow[..., 1], out=f.my)
    m1, m2 = cv2.convertMaps(f.mx, f.my, cv2.CV_16SC2)  # (fixed point: both remaps run ~2x faster)
    cv2.remap(mem.alpha, m1, m2, cv2.INTER_LINEAR, dst=f.warped, borderMode=cv2.BORDER_REPLICATE)
    cv2.remap(mem.look, m1, m2, cv2.INTER_LINEAR, dst=f.moved, borderMode=cv2.BORDER_REPLICATE)
    # a global brightness change (exposure, a lighting ramp) is not a mismatch
    gain = sum(cv2.mean(f.look)[:3]) / max(sum(cv2.mean(mem.look)[:3]), 1.0)
    res = residual(f.look, f.moved, gain, f, f.res)
    if cv2.countNonZero(cv2.compare(res, RESIDUAL_HI, cv2.CMP_GT)) >= CUT_SHARE * res.size:
        return False
    h, w = a.shape
    inside = cv2.bitwise_and(cv2.inRange(f.mx, 0, w - 1), cv2.inRange(f.my, 0, h - 1))
    # Where standing still explains the image as well as the flow does (a still scene, a flat region), take the
    # memory where it is: the flow of noise or of a flat region is noise, and warping by it every frame would
    # let the memory drift and blur.
    still_res = residual(f.look, mem.look, gain, f, f.res_still)
    still = cv2.compare(still_res, cv2.add(res, STILL_MARGIN), cv2.CMP_LE)
    np.copyto(f.warped, mem.alpha, where=still > 0)
    np.copyto(res, still_res, where=still > 0)
    k = cv2.LUT(res, f.trust(strength))  # strength * trust, 0 where the flow leaves the previous frame
    k[cv2.bitwise_or(inside, still) == 0] = 0
    # certainty weighting: precision 1 / (floor + 4 a (1 - a)) for the current and the moved previous alpha
    pc = 1.0 / (CERTAINTY_FLOOR + 4 * a * (1 - a))
    pp = 1.0 / (CERTAINTY_FLOOR + 4 * f.warped * (1 - f.warped))
    kp = k * pp
    k = kp / (kp + (1 - k) * pc)
    a += k * (f.warped - a)
    return True
