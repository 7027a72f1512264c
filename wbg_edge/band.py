"""Boundary-band patch selection: refine only where alpha_coarse is neither 0 nor 1.

The band is `lo < alpha < hi` at coarse resolution, dilated by `dilation` coarse pixels (edges
move between resolutions, and the refiner needs a little context). The refine grid (Hr, Wr) is
cut into P x P tiles; a tile is selected when any band pixel falls inside it. Origins are clamped
so the last row / column of tiles stays inside the grid when P does not divide it.
"""
from __future__ import annotations

import cv2
import numpy as np

BAND_LO = 1.0 / 255.0
BAND_HI = 254.0 / 255.0


class BandSelector:
    """Per-size scratch buffers for patch selection (the pipeline keeps one per frame size)."""

    def __init__(self, coarse_size: tuple[int, int], refine_size: tuple[int, int], patch_size: int,
                 dilation: int = 2, lo: float = BAND_LO, hi: float = BAND_HI):
        hc, wc = coarse_size
        hr, wr = refine_size
        p = int(patch_size)
        if p < 1 or p > min(hr, wr):
            raise ValueError(f"patch_size {patch_size} must be in [1, {min(hr, wr)}] for refine size {refine_size}")
        self.coarse_size, self.refine_size, self.patch_size = (hc, wc), (hr, wr), p
        self.lo, self.hi = float(lo), float(hi)
        self._mask = np.empty((hc, wc), np.uint8)
        self._dilated = np.empty((hc, wc), np.uint8)
        r = max(0, int(dilation))
        self._kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1)) if r else None
        ty, tx = -(-hr // p), -(-wr // p)
        # tile t covers refine rows [t*P, (t+1)*P) = coarse rows [t*P*hc/hr, ...): reduceat start indices
        self._row_starts = np.minimum((np.arange(ty) * p * hc) // hr, hc - 1).astype(np.intp)
        self._col_starts = np.minimum((np.arange(tx) * p * wc) // wr, wc - 1).astype(np.intp)
        # When the tiles cut the coarse grid into equal blocks (the usual case: refine = 2 x model resolution),
        # one dilation by (block + 2r) anchored at (r, r) leaves each block's "any band pixel" at its first
        # pixel: the same answer as dilating and then taking block maxima, about 5x faster.
        self._block_kernel = None
        bh, bw = hc // ty, wc // tx
        if bh * ty == hc and bw * tx == wc and p * hc == bh * hr and p * wc == bw * wr:
            self._block_kernel = np.ones((bh + 2 * r, bw + 2 * r), np.uint8)
            self._anchor = (r, r)
        oy = np.minimum(np.arange(ty) * p, hr - p).astype(np.int32)
        ox = np.minimum(np.arange(tx) * p, wr - p).astype(np.int32)
        # int32 (tiles, 2): every tile's (y, x) origin, row by row (select returns a subset, in this order)
        self.origins = np.stack(np.meshgrid(oy, ox, indexing="ij"), axis=-1).reshape(-1, 2)
        self.max_patches = ty * tx

    def select(self, alpha_coarse: np.ndarray) -> np.ndarray:
        """int32 (N, 2) (y, x) patch origins on the refine grid covering the dilated band."""
        if alpha_coarse.shape != self.coarse_size:
            raise ValueError(f"alpha_coarse shape {alpha_coarse.shape} != {self.coarse_size}")
        cv2.inRange(alpha_coarse, self.lo, self.hi, dst=self._mask)  # 255 where lo <= a <= hi
        if self._block_kernel is not None:
            cv2.dilate(self._mask, self._block_kernel, dst=self._dilated, anchor=self._anchor)
            tiles = self._dilated[np.ix_(self._row_starts, self._col_starts)]
            return self.origins[tiles.reshape(-1) > 0]
        m = self._mask
        if self._kernel is not None:
            cv2.dilate(self._mask, self._kernel, dst=self._dilated)
            m = self._dilated
        tiles = np.maximum.reduceat(np.maximum.reduceat(m, self._row_starts, axis=0), self._col_starts, axis=1)
        return self.origins[tiles.reshape(-1) > 0]
