"""Contact sheet of the real-world bundle on real photos: photo | imported coarse | refined | composite.

    python bench/real_world_sheet.py [--bundle DIR] [--out bench/real_world_contact.png] [--colour #RRGGBB]
                                     [--photos evaluation|validation]

Photos: scikit-image's `astronaut` and `camera`, matplotlib's `grace_hopper.jpg` (they ship inside the
installed packages). `--photos validation` uses other sample photos instead (scikit-image's chelsea, coffee,
motorcycle_left; `training.data.photo_scenes.VALIDATION_PHOTOS`): the set the real-world recipe is tuned on,
so that the three evaluation photos are reported once and never tuned on.

The bundle defaults to the installed real-world bundle (`export.import_coarse.real_world_bundle_dir()`),
imported on the fly into a temporary folder when it is not there. The refined
column and the composite come from the public `wbg_edge.pipeline.Pipeline`; without it the sheet shows the
coarse mask only and composites that. Prints a markdown table: agreement of refined and coarse masks
(IoU at 0.5, on the interior = outside the 12 px boundary band, and on the whole photo), the share of
soft pixels (0.02 < alpha < 0.98) in each, and two measures of how well each
matte's edges follow the photo's, in the boundary band: edge agreement (correlation of |grad alpha| and
|grad photo|) and edge contrast (the photo's gradient where the matte changes, over its band mean: > 1 when
the matte's transitions sit on the photo's edges).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.import_coarse import (  # noqa: E402
    import_mediapipe_selfie,
    real_world_bundle_dir,
    sample_photos,
    to_model_input,
)
from training.metrics import contour_band, edge_agreement, edge_contrast  # noqa: E402
from wbg_edge.bundle import load_bundle  # noqa: E402
from wbg_edge.demo import iou as demo_iou  # noqa: E402

ROW = 256  # row height of the sheet, pixels


def coarse_alpha(bundle_dir: Path, rgb: np.ndarray) -> np.ndarray:
    """The imported coarse model alone at its fixed size, resized back to the photo: float32 (H, W)."""
    import onnxruntime as ort
    b = load_bundle(bundle_dir)
    a = b.find("coarse")
    s = ort.InferenceSession(str(b.verify(a)), providers=["CPUExecutionProvider"])
    x = to_model_input(rgb, tuple(a.fixed_size)).transpose(2, 0, 1)[None].copy()
    y = s.run(["alpha"], {"image": x})[0][0, 0]
    return cv2.resize(y, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)


def refined(bundle_dir: Path, bgr: np.ndarray, colour: str):
    """(alpha float32 (H, W), composite BGR u8) from the Pipeline, or None when there is no usable Pipeline."""
    try:
        from wbg_edge.pipeline import Pipeline, PipelineConfig
    except ImportError as e:
        print(f"no wbg_edge.pipeline ({e}); the sheet shows the coarse mask only", file=sys.stderr)
        return None
    with Pipeline(PipelineConfig(bundle=str(bundle_dir), mode="composite", background=colour)) as p:
        m = p.process(bgr)
        return m.alpha.copy(), m.image.copy()


def composite(bgr: np.ndarray, alpha: np.ndarray, colour: str) -> np.ndarray:
    c = colour.lstrip("#")
    bg = np.array([int(c[4:6], 16), int(c[2:4], 16), int(c[0:2], 16)], np.float32)
    a = alpha[..., None]
    return np.clip(bgr * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def tile(img: np.ndarray, label: str) -> np.ndarray:
    if img.ndim == 2:
        img = cv2.cvtColor(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    t = cv2.resize(img, (round(w * ROW / h), ROW), interpolation=cv2.INTER_AREA)
    cv2.rectangle(t, (0, 0), (t.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(t, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def iou(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """IoU of the two mattes thresholded at 0.5, over `where` (all pixels when None)."""
    return demo_iou(a, b) if where is None else demo_iou(a[where], b[where])


def photo_gray(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255


def validation_photos() -> dict[str, np.ndarray]:
    """RGB uint8 sample photos that are neither evaluated on here nor trained on by the real-world recipe."""
    from training.data.photo_scenes import VALIDATION_PHOTOS, photo

    out = {}
    for n in VALIDATION_PHOTOS:
        im = photo(n)
        if im is not None:
            out[Path(n).stem] = np.round(im * 255).astype(np.uint8)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="real-world bundle (default: the installed one, else imported now)")
    ap.add_argument("--out", type=Path, help="sheet PNG (default: bench/real_world_contact.png for the evaluation "
                                             "photos, ./real_world_validation.png for the validation photos)")
    ap.add_argument("--colour", default="#2e7d32", help="composite background colour, #RRGGBB")
    ap.add_argument("--photos", choices=("evaluation", "validation"), default="evaluation",
                    help="evaluation: astronaut, camera, grace_hopper; validation: other sample photos (tuning)")
    a = ap.parse_args(argv)
    if a.out is None:
        a.out = (Path(__file__).resolve().parent / "real_world_contact.png" if a.photos == "evaluation"
                 else Path("real_world_validation.png"))
    tmp = None
    bundle = a.bundle
    if bundle is None:
        bundle = real_world_bundle_dir()
        if not (bundle / "manifest.json").is_file():
            tmp = tempfile.TemporaryDirectory()
            bundle = Path(tmp.name) / "real-world"
            import_mediapipe_selfie(bundle)
    photos = sample_photos() if a.photos == "evaluation" else validation_photos()
    if not photos:
        print("no sample photos (install scikit-image and matplotlib)", file=sys.stderr)
        return 1
    rows, table = [], ["| photo | IoU refined vs coarse (a > 0.5): interior / whole | soft pixels coarse / refined "
                       "| edge agreement coarse / refined | edge contrast coarse / refined |", "|---|---|---|---|---|"]
    for name, rgb in photos.items():
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        ac = coarse_alpha(bundle, rgb)
        r = refined(bundle, bgr, a.colour)
        tiles = [tile(bgr, name), tile(ac, "imported coarse")]
        if r is not None:
            ar, comp = r
            tiles += [tile(ar, "refined"), tile(comp, "composite (refined)")]
            band, gray = contour_band(ac), photo_gray(bgr)  # the 12 px band around the segmenter's contour
            interior = ~band
            soft = [float(((x > 0.02) & (x < 0.98)).mean()) for x in (ac, ar)]
            agree = [edge_agreement(x, gray, band) for x in (ac, ar)]
            contrast = [edge_contrast(x, gray, band) for x in (ac, ar)]
            table.append(f"| {name} | {iou(ac, ar, interior):.3f} / {iou(ac, ar):.3f} | {soft[0]:.1%} / {soft[1]:.1%} "
                         f"| {agree[0]:.3f} / {agree[1]:.3f} | {contrast[0]:.2f} / {contrast[1]:.2f} |")
        else:
            tiles.append(tile(composite(bgr, ac, a.colour), "composite (coarse)"))
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        print("PNG encoding failed", file=sys.stderr)
        return 1
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(png.tobytes())
    b = load_bundle(bundle)
    print(f"wrote {a.out} ({sheet.shape[1]}x{sheet.shape[0]}) from bundle {b.name!r} at {bundle}")
    if len(table) > 2:
        print("\n".join(table))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
