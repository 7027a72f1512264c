"""`wbg-edge demo`: the generated clip through the synthetic bundle, then a real person (the embedded astronaut,
panned) through the real one, into one video and one contact sheet."""
from __future__ import annotations

import cv2
import numpy as np

from wbg_edge import Pipeline
from wbg_edge.demo import iou, run_demo
from wbg_edge.pipeline import PipelineConfig
from wbg_edge.portrait import PanClip, astronaut
from wbg_edge.synthetic import SyntheticClip

W, H = 320, 180


def _person_alpha_tiles(sheet: np.ndarray, rows_before: int, n: int) -> list[np.ndarray]:
    """The alpha tiles (middle third) of the person's rows; tiles are W x H here (sheet width 960)."""
    return [sheet[(rows_before + i) * H:(rows_before + i + 1) * H, W:2 * W, 0].astype(np.float32) / 255
            for i in range(n)]


def _face_and_canvas(alpha: np.ndarray, clip: PanClip, i: int) -> tuple[float, float]:
    x, y, w, h = clip.box(i)
    return (float(alpha[y + h // 10: y + h // 4, x + int(w * 0.38): x + int(w * 0.5)].mean()),
            float(alpha[:, : x - 4].mean()))


def test_demo_has_a_real_person_through_the_real_bundle(tmp_path):
    cfg = PipelineConfig(mode="composite", background="blur", threads=2)
    res = run_demo(tmp_path, frames=4, width=W, height=H, config=cfg, person_frames=6)
    assert [(p.clip, p.bundle.split(" (")[0], p.frames) for p in res.parts] == \
        [("generated clip", "synthetic", 4), ("real person", "real", 6)]
    assert (res.frames, res.backend) == (4, res.parts[0].backend)  # the generated clip's, as before
    cap = cv2.VideoCapture(str(res.video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10  # both clips, one video
    sheet = cv2.imread(str(res.sheet))
    assert sheet.shape == (6 * H, 3 * W, 3)  # 4 rows of the generated clip, 2 of the person (frames 0 and 3)
    clip = PanClip(astronaut(), W, H, 6)
    for alpha, i in zip(_person_alpha_tiles(sheet, 4, 2), (0, 3), strict=True):
        face, canvas = _face_and_canvas(alpha, clip, i)
        assert face > 0.85 and canvas < 0.1, (i, face, canvas)


def test_a_named_bundle_runs_both_clips(tmp_path):
    """--bundle synthetic: the person goes through the generated-scene models too (which do not find her)."""
    cfg = PipelineConfig(mode="composite", background="blur", threads=2, bundle="synthetic")
    res = run_demo(tmp_path, frames=1, width=W, height=H, config=cfg, person_frames=2)
    assert [p.bundle.split(" (")[0] for p in res.parts] == ["synthetic", "synthetic"]
    sheet = cv2.imread(str(res.sheet))
    # one row of the 1-frame generated clip, then the person
    face, _ = _face_and_canvas(_person_alpha_tiles(sheet, 1, 1)[0], PanClip(astronaut(), W, H, 2), 0)
    assert face < 0.5, face


def test_person_frames_zero_leaves_the_person_out(tmp_path):
    res = run_demo(tmp_path, frames=2, width=W, height=H, config=PipelineConfig(threads=2), person_frames=0)
    assert [p.clip for p in res.parts] == ["generated clip"]


def test_pan_clip_moves_the_photo_inside_the_frame():
    clip = PanClip(astronaut(), 1280, 720, frames=48)
    boxes = [clip.box(i) for i in range(48)]
    assert boxes[0][2:] == (720, 720) and {b[1] for b in boxes} == {0}
    assert [b[0] for b in boxes] == [boxes[0][0] + 3 * i for i in range(48)]  # +3 px a frame
    assert boxes[0][0] >= 0 and boxes[-1][0] + 720 <= 1280
    frame, (x, y, w, h) = clip.frame(5)
    assert frame.shape == (720, 1280, 3) and (frame[:, : x] == 128).all() and (frame[:, x + w:] == 128).all()
    small = PanClip(astronaut(), 128, 96, frames=40)  # little room: a smaller step, still inside
    assert all(0 <= small.box(i)[0] and small.box(i)[0] + small.size[0] <= 128 for i in range(40))


def test_iou_counts_pixels_over_half():
    truth = np.zeros((4, 4), np.float32)
    truth[:2] = 1.0
    alpha = np.zeros((4, 4), np.uint8)
    alpha[:1] = 255
    alpha[3, 3] = 128  # just over half in u8
    assert iou(alpha, truth) == 4 / 9 and iou(alpha.astype(np.float32) / 255, truth) == 4 / 9
    assert iou(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.float32)) == 1.0


def test_demo_reports_the_iou_of_what_it_showed(tmp_path):
    """The demo's IoU is that of the frames it ran, against the clip's own alpha (recomputed here frame by
    frame through Pipeline.process)."""
    res = run_demo(tmp_path, frames=3, width=W, height=H, config=PipelineConfig(threads=2), person_frames=0)
    clip = SyntheticClip(W, H, 3)
    with Pipeline(PipelineConfig(threads=2, mode="alpha")) as pipe:
        ious = [iou(pipe.process(clip.frame(i)[0]).alpha, clip.frame(i)[1]) for i in range(3)]
    mean, worst = res.parts[0].iou
    assert abs(mean - np.mean(ious)) < 1e-3 and abs(worst - min(ious)) < 1e-3


def test_the_default_bundle_finds_the_demo_figure():
    """The newcomer's first sight at 720p: the shipped bundle's matte against the clip's own alpha. A floor under
    what it does now (mean 0.88 on these frames; the bundle before it: 0.41), not yet issue 21's bar (mean >= 0.95,
    every frame >= 0.9, the acceptance check demo-matte): its arms are still missed."""
    clip = SyntheticClip(1280, 720, 40)
    with Pipeline(PipelineConfig(threads=2, mode="alpha")) as pipe:
        ious = [iou(pipe.process(clip.frame(i)[0]).alpha, clip.frame(i)[1]) for i in (0, 7, 13, 26, 33)]
    assert np.mean(ious) >= 0.85 and min(ious) >= 0.75, ious


def test_clip_alpha_alone_is_the_frames_alpha():
    clip = SyntheticClip(W, H, 9)
    for i in (0, 4, 8):
        np.testing.assert_array_equal(clip.alpha(i), clip.frame(i)[1])
