#!/usr/bin/env python
"""Flicker maps on one panned package photo: per row, image | alpha | |delta alpha| x5, where delta alpha is the
change from the previous frame after undoing the known motion (what the flicker figure averages).

    python bench/flicker_maps.py --rows mediapipe,ours --out bench/flicker_maps.png [--photo astronaut]
    PYTHONPATH=<old checkout> python bench/flicker_maps.py --rows ours --label "ours before" \\
        --out bench/flicker_before.png --append-to bench/flicker_maps.png   (a row from another version)

Clip: the acceptance clip (the photo at frame height, +3 px/frame on grey, 1280 x 720), frames 0..FRAME; tiles
are 256 x 144, each row labelled.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FRAME = 24          # the frame shown (the memory has had 24 frames)
TILE = (256, 144)


def label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def row(model, name: str, clip) -> np.ndarray:
    frame, maps, size, _ref = clip
    prev = a = None
    for t in range(FRAME + 1):
        prev, a = a, model(frame(t))
    # the previous alpha moved by the known motion into this frame: the change the flicker figure counts
    shift = maps[FRAME][:, 2] - maps[FRAME - 1][:, 2]
    moved = cv2.warpAffine(prev, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), prev.shape[::-1],
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    delta = np.clip(np.abs(a - moved) * 5, 0, 1)
    tiles = [frame(FRAME), a, delta]
    out = []
    for i, t in enumerate(tiles):
        t8 = t if t.dtype == np.uint8 else cv2.cvtColor((t * 255 + 0.5).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        t8 = cv2.resize(t8, TILE, interpolation=cv2.INTER_AREA)
        out.append(label(t8, [f"{name}: image", "alpha", "|delta alpha| x5"][i]))
    return np.hstack(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", default=str(ROOT.parent / "shared" / "acceptance" / "lib"))
    ap.add_argument("--bundle", default=str(Path.home() / ".cache" / "wbg-edge" / "bundles" / "real-world"))
    ap.add_argument("--photo", default="astronaut")
    ap.add_argument("--rows", default="mediapipe,ours", help="mediapipe | ours | NAME=key:value,... (real_people)")
    ap.add_argument("--label", help="the row label when one row is made (default: its variant name)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--append-to", help="stack the rows under this PNG (e.g. rows made by another version)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    import real_people as rp
    rv = rp.lib(a.lib)
    photo = next(((b, r) for n, b, r in rv.photos("public", Path(a.lib) / "real") if n == a.photo), None)
    if photo is None:
        print(f"--photo {a.photo}: not one of the package photos")
        return 2
    clip = rv.clip("public", photo[0], photo[1], None)
    onnx = str(Path(a.bundle) / "mediapipe_selfie_general.onnx")
    rows = []
    for v in a.rows.split(";") if ";" in a.rows else a.rows.split(","):
        m = rp.parse_variant(v, rv, a.bundle, onnx)
        rows.append(row(m, a.label or ("MediaPipe alone" if v == "mediapipe" else m.name), clip))
    img = np.vstack(rows)
    if a.append_to:
        img = np.vstack([cv2.imread(a.append_to), img])
    cv2.imwrite(a.out, img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{a.out}: {img.shape[1]}x{img.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
