"""Grid sizes: from one frame size, the model, depth, coarse and refine grids (`Geometry`), cached per size."""
from __future__ import annotations

from dataclasses import dataclass

MAX_ASPECT = 4  # model / refine grids are at most 4:1, whatever the frame


@dataclass(frozen=True)
class Geometry:
    """Grid sizes (H, W) derived from one frame size."""

    frame: tuple[int, int]
    model: tuple[int, int]    # depth / matting input
    depth: tuple[int, int]    # depth model input
    coarse: tuple[int, int]   # coarse model input (model, or the rgb contract's fixed size)
    refine: tuple[int, int]


def fit(short: int, h: int, w: int, multiple: int = 32) -> tuple[int, int]:
    """(H, W) with short side `short` and the frame's aspect (long side rounded to `multiple`, <= 4:1)."""
    lo, hi = min(h, w), max(h, w)
    long = max(multiple, int(round(short * hi / lo / multiple)) * multiple)
    long = min(max(long, short), short * MAX_ASPECT)
    return (short, long) if h <= w else (long, short)


class Geometries:
    """`geometries(h, w)`: the Geometry of a frame size, made once per size (a few sizes kept)."""

    def __init__(self, model_res: int, depth_res: int, refine_res: int, coarse_fixed: tuple[int, int] | None):
        self.model_res, self.depth_res, self.refine_res = model_res, depth_res, refine_res
        self.coarse_fixed = coarse_fixed
        self._cache: dict[tuple[int, int], Geometry] = {}

    def __call__(self, height: int, width: int) -> Geometry:
        g = self._cache.get((height, width))
        if g is None:
            model = fit(self.model_res, height, width)
            depth = fit(self.depth_res, height, width)
            coarse = self.coarse_fixed or model
            frame_short = -(-min(height, width) // 32) * 32
            # the refine grid: at most the frame's short side (rounded up to 32), at least the model grid
            r_short = min(self.refine_res, max(self.model_res, frame_short))
            g = Geometry((height, width), model, depth, coarse, fit(r_short, height, width))
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[(height, width)] = g
        return g
