"""Contact sheet of the foreground colours and the halo-free blur (issue 24) on real photos: today vs new.

    python bench/foreground_sheet.py [--bundle DIR] [--out bench/foreground_contact.png]

Photos: scikit-image's `astronaut` and `camera`, matplotlib's `grace_hopper.jpg`. The matte and every composite come
from the public `wbg_edge.pipeline.Pipeline` with the real-world bundle (default: the installed one, else the
shipped default bundle), once with `foreground=False` (today: the frame's colours, the frame blurred) and once with
the default `foreground=True`, over white, black, a photo (scikit-image's `coffee`) and `blur`. Each row: the photo
with the crop marked, then the crop (the top of the subject's outline: hair against the old background) for each
background, today left of new.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.import_coarse import real_world_bundle_dir, sample_photos  # noqa: E402
from wbg_edge.pipeline import Pipeline  # noqa: E402
from wbg_edge.settings import PipelineConfig  # noqa: E402

TILE = 168  # tile side, pixels


def crop_box(alpha: np.ndarray) -> tuple[int, int, int]:
    """(y, x, side): a square a sixth of the short side on the top of the subject (the largest region the matte
    calls foreground), where hair meets the old background."""
    h, w = alpha.shape
    s = min(h, w) // 6
    n, labels, stats, _ = cv2.connectedComponentsWithStats((alpha > 0.5).astype(np.uint8))
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if n > 1 else 0
    ys, xs = np.nonzero(labels == k)
    top = ys.min()
    x0 = int(np.median(xs[ys < top + max(4, s // 8)]))
    return int(np.clip(top - s // 2, 0, h - s)), int(np.clip(x0 - s // 2, 0, w - s)), s


def label(img: np.ndarray, text: str) -> np.ndarray:
    t = img.copy()
    cv2.rectangle(t, (0, 0), (t.shape[1], 15), (0, 0, 0), -1)
    cv2.putText(t, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="bundle folder (default: the installed real-world bundle, else the "
                                                 "shipped default)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "foreground_contact.png")
    a = ap.parse_args(argv)
    bundle = a.bundle or real_world_bundle_dir()
    bundle_arg = str(bundle) if (bundle / "manifest.json").is_file() else None
    import skimage.data

    with tempfile.TemporaryDirectory() as tmp:
        photo_bg = str(Path(tmp) / "coffee.png")
        cv2.imwrite(photo_bg, skimage.data.coffee()[..., ::-1])
        backgrounds = {"white": "white", "black": "black", "photo": photo_bg, "blur": "blur"}
        pipes = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, spec in backgrounds.items():
                for fg in (False, True):
                    pipes[name, fg] = Pipeline(PipelineConfig(bundle=bundle_arg, mode="composite", background=spec,
                                                              foreground=fg))
        rows = []
        for pname, rgb in sample_photos().items():
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            outs = {k: p.process(bgr).copy() for k, p in pipes.items()}
            y, x, s = crop_box(outs["white", True].alpha)
            overview = bgr.copy()
            cv2.rectangle(overview, (x, y), (x + s, y + s), (0, 255, 255), max(2, s // 40))
            tiles = [label(cv2.resize(overview, (TILE, TILE), interpolation=cv2.INTER_AREA), pname)]
            for name in backgrounds:
                for fg in (False, True):
                    c = outs[name, fg].image[y:y + s, x:x + s]
                    tiles.append(label(cv2.resize(c, (TILE, TILE), interpolation=cv2.INTER_CUBIC),
                                       f"{name} {'new' if fg else 'today'}"))
            rows.append(np.hstack(tiles))
        for p in pipes.values():
            p.close()
    sheet = np.vstack(rows)
    cv2.imwrite(str(a.out), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {a.out} ({sheet.shape[1]}x{sheet.shape[0]}, {a.out.stat().st_size // 1024} KB), bundle "
          f"{bundle_arg or 'shipped default'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
