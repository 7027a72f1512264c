"""Per-stream state: everything a frame inherits from the frames before it, in one object (`StreamState`).

Like Robust Video Matting's recurrent state, it goes into the stages that read it and comes out changed;
nothing else carries memory from frame to frame. `Pipeline.state` shows it, `Pipeline.reset()` forgets
its temporal part (at a scene cut, between videos), and an overlapped stream that the caller stops early
puts it back as it was after the last frame the caller received.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import Geometry


@dataclass
class StreamState:
    """What one stream of frames carries from frame to frame.

    Temporal (forgotten by `reset`): the previous alpha (smoothing, and the alpha a NaN frame keeps), the
    depth cache (reuse for up to `depth_every` frames while the depth input barely moves) and the temporal
    stage's memory (`temporal.Memory`: the last coarse-grid image and filtered coarse alpha).
    Counters (kept by `reset`): frames numbered so far, and frames passed through because a model
    returned NaN / Inf. The arrays are the pipeline's own buffers: read them, copy to keep them.
    """

    index: int = 0                          # the next frame's number
    prev_alpha: np.ndarray | None = None    # float32 (H, W): the last frame's output alpha (a ring buffer)
    depth: np.ndarray | None = None         # float32 2-D: the last depth computed, normalised to [0, 1]
    depth_ref: np.ndarray | None = None     # the depth model's input for it (the motion test's reference)
    depth_age: int = 0                      # frames that have reused it since
    depth_geom: Geometry | None = None      # the frame geometry it was made for
    temporal: Any = None                    # the temporal stage's Memory (None: none yet, or forgotten)
    nonfinite_frames: int = 0               # frames passed through with the previous alpha
    warned_nonfinite: bool = False          # the one warning about them was given

    def reset(self) -> None:
        """Forget the temporal state (previous alpha, reused depth, temporal memory); keep the counters."""
        self.prev_alpha = None
        self.temporal = None
        self.forget_depth()

    def rewind(self, index: int, prev_alpha: np.ndarray | None) -> None:
        """Back to just after frame index - 1, whose alpha was `prev_alpha` (frames made beyond it were never
        received): what cannot be rewound (reused depth, temporal memory) is forgotten."""
        self.index, self.prev_alpha, self.temporal = index, prev_alpha, None
        self.forget_depth()

    def forget_depth(self) -> None:
        """The next frame computes depth (its size changed, or frames were dropped)."""
        self.depth = self.depth_ref = None
        self.depth_age = 0
