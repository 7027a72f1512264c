"""Boundary-band patch selection against its definition: a tile is chosen when any band pixel
(lo <= a <= hi, dilated by r coarse pixels) lies in the coarse block under it."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wbg_edge.band import BandSelector


def brute_force(alpha, refine_size, p, r):
    hc, wc = alpha.shape
    hr, wr = refine_size
    band = (alpha >= 1 / 255) & (alpha <= 254 / 255)
    ys, xs = np.nonzero(band)
    dil = np.zeros_like(band)
    for y, x in zip(ys, xs, strict=True):
        dil[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1] = True
    ty, tx = -(-hr // p), -(-wr // p)
    rows = [min(t * p * hc // hr, hc - 1) for t in range(ty + 1)]
    cols = [min(t * p * wc // wr, wc - 1) for t in range(tx + 1)]
    rows[-1], cols[-1] = hc, wc
    out = []
    for i in range(ty):
        for j in range(tx):
            if dil[rows[i]:max(rows[i + 1], rows[i] + 1), cols[j]:max(cols[j + 1], cols[j] + 1)].any():
                out.append((min(i * p, hr - p), min(j * p, wr - p)))
    return np.array(out, np.int32).reshape(-1, 2)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([((16, 28), (32, 56), 4), ((16, 28), (32, 56), 8), ((24, 40), (48, 80), 16),
                        ((20, 36), (64, 96), 32), ((17, 29), (40, 72), 8), ((32, 32), (32, 32), 8)]),
       st.integers(0, 3), st.integers(0, 2**31 - 1), st.integers(0, 6))
def test_selection_matches_the_definition(sizes, r, seed, blobs):
    coarse, refine, p = sizes
    rng = np.random.default_rng(seed)
    a = (rng.random(coarse) < 0.5).astype(np.float32) if blobs == 0 else np.zeros(coarse, np.float32)
    for _ in range(blobs):  # a few soft pixels here and there, some at the borders
        a[rng.integers(coarse[0]), rng.integers(coarse[1])] = rng.uniform(0.0, 1.0)
    got = BandSelector(coarse, refine, p, r).select(a)
    want = brute_force(a, refine, p, r)
    assert sorted(map(tuple, got)) == sorted(map(tuple, want))
