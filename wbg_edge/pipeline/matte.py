"""What the pipeline hands back for one frame: the `Matte`, and the names of its per-stage timings."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

MODEL_STAGES = ("depth", "coarse", "refiner")
STAGES = ("preprocess", "depth", "normalise", "coarse", "temporal", "band", "pack", "refiner", "guided", "finish")


@dataclass
class Matte:
    """One processed frame. Arrays belong to the pipeline (valid for two more frames; `copy()` to keep)."""

    alpha: np.ndarray            # float32 (H, W) in [0, 1]
    image: np.ndarray            # u8: alpha (H, W) | BGRA (H, W, 4) | composite BGR (H, W, 3), per `mode`
    mode: str
    timings: dict[str, float]    # per-stage ms: preprocess depth normalise coarse temporal band pack refiner
    #                              guided finish total ...
    index: int                   # frame number in this pipeline
    refined: float = 1.0         # fraction of the refine grid that went through the refiner
    passthrough: bool = False    # a model returned NaN/Inf: the frame was passed through with the previous alpha

    @property
    def foreground(self) -> np.ndarray | None:
        """BGRA u8 (straight alpha) in rgba mode."""
        return self.image if self.mode == "rgba" else None

    @property
    def composite(self) -> np.ndarray | None:
        """BGR u8 over the background in composite mode."""
        return self.image if self.mode == "composite" else None

    def copy(self) -> Matte:
        return replace(self, alpha=self.alpha.copy(), image=self.image.copy(), timings=dict(self.timings))


def totals(matte: Matte, total_ms: float) -> Matte:
    """Complete a Matte's timings: every stage present (0 when skipped), `total` (the frame's work, or its
    share of a batch's wall time), `models` (depth + coarse + refiner) and `overhead` (total - models)."""
    tm = matte.timings
    for key in ("coarse", "temporal", "band", "pack", "refiner", "guided", "finish"):
        tm.setdefault(key, 0.0)
    tm["total"] = total_ms
    tm["models"] = tm["depth"] + tm["coarse"] + tm["refiner"]
    tm["overhead"] = tm["total"] - tm["models"]
    return matte
