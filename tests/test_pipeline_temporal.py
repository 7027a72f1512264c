"""The temporal stage and the guided refine step (what an rgb segmenter's pipeline runs by default), with real
ONNX Runtime sessions: the tiny closed-form rgb segmenter of test_pipeline (alpha = clip(2 R - 0.5, 0, 1) on a
64 x 96 grid), and the real-world bundle's MediaPipe segmenter on a real photo where it is installed."""

import warnings
from itertools import pairwise

import cv2
import numpy as np
import pytest
from test_pipeline import assert_batch_equals_process, disc_frame, make_bundle, toy_pipeline

from wbg_edge.bundle import real_world_bundle_dir
from wbg_edge.demo import iou
from wbg_edge.pipeline import Pipeline, PipelineConfig
from wbg_edge.pipeline.temporal import Memory
from wbg_edge.settings import TEMPORAL_RGB, refine_for, temporal_for


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("temporal") / "rgb", coarse="rgb", depth=False, refiner="conv")


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("temporal") / "rgbd")


def noisy(frame, rng, sigma=25.0):
    """The frame with sensor noise: what makes a per-frame segmenter's soft pixels flicker."""
    return np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)


def moving_disc(n=16, step=3, seed=0):
    rng = np.random.default_rng(seed)
    return [noisy(disc_frame(cx=110 + step * t), rng) for t in range(n)]


def warped_back_flicker(alphas, step):
    """mean |a_t - a_(t-1)| x1000 after moving each alpha back by the known motion (inside a margin)."""
    back = [np.roll(a, -step * t, axis=1)[:, 40:-60] for t, a in enumerate(alphas)]
    return 1e3 * np.mean([np.abs(b - a).mean() for a, b in pairwise(back)])


# ------------------------------------------------------------------ what runs by default

def test_defaults_follow_the_coarse_contract(rgb, rgbd):
    p = toy_pipeline(rgb)
    assert (p.settings.temporal, p.settings.refine) == (TEMPORAL_RGB, "guided")
    assert p.info()["temporal"] == TEMPORAL_RGB and p.info()["refine"] == "guided"
    q = toy_pipeline(rgbd)
    assert (q.settings.temporal, q.settings.refine) == (0.0, "model")  # a matting model keeps its outputs
    r = toy_pipeline(rgb, temporal=0.0, refine="model")
    assert (r.settings.temporal, r.settings.refine) == (0.0, "model")
    # a bundle's runtime hints come between the flag and the contract
    cfg = PipelineConfig()
    assert temporal_for(cfg, {"temporal": 0.5}, "rgbd") == 0.5 and temporal_for(cfg, {}, "rgb") == TEMPORAL_RGB
    assert refine_for(cfg, {"refine": "none"}, "rgb") == "none" and refine_for(cfg, {}, "rgbd") == "model"
    assert temporal_for(PipelineConfig(temporal=0.0), {"temporal": 0.5}, "rgb") == 0.0


@pytest.mark.parametrize("kw, word", [(dict(temporal=1.0), "temporal"), (dict(temporal=-0.1), "temporal"),
                                      (dict(refine="learnt"), "refine")])
def test_bad_temporal_and_refine_name_the_field(kw, word):
    with pytest.raises(ValueError, match=word) as e:
        PipelineConfig(**kw)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ the stream state

def test_memory_resets_on_reset_size_change_and_scene_cut(rgb):
    frames = moving_disc(4)
    p = toy_pipeline(rgb, mode="alpha")
    for f in frames[:3]:
        p.process(f)
    mem = p.state.temporal
    assert isinstance(mem, Memory) and mem.frame == (240, 320) and mem.alpha.shape == (64, 96)

    def fresh(frame):
        return toy_pipeline(rgb, mode="alpha").process(frame).alpha

    p.reset()
    assert p.state.temporal is None
    assert np.array_equal(p.process(frames[3]).alpha, fresh(frames[3]))
    # a new frame size starts afresh
    small = disc_frame(180, 300, cx=140)
    assert np.array_equal(p.process(small).alpha, fresh(small)) and p.state.temporal.frame == (180, 300)
    # a scene cut (another picture altogether) starts afresh too; a moved picture does not
    cut = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (180, 300, 3), dtype=np.uint8), (0, 0), 2)
    cut[60:120, 100:200, 2] = 250
    a = p.process(cut).alpha
    assert p.state.temporal.cuts == 1 and np.array_equal(a, fresh(cut))
    moved = np.roll(cut, 2, axis=1)
    assert not np.array_equal(p.process(moved).alpha, fresh(moved)) and p.state.temporal.cuts == 1


def test_reset_gives_what_a_fresh_pipeline_gives(rgb):
    """Between videos (batch reuses one pipeline per worker) reset() leaves nothing of the last stream behind:
    the flow the temporal stage starts from included (it carried over and moved frame 1 by 4 levels)."""
    other, frames = moving_disc(6)[::-1], moving_disc(6)
    fresh = toy_pipeline(rgb, temporal=TEMPORAL_RGB, mode="alpha")
    want = [fresh.process(f).alpha.copy() for f in frames]
    used = toy_pipeline(rgb, temporal=TEMPORAL_RGB, mode="alpha")
    for f in other:
        used.process(f)
    used.reset()
    assert all(np.array_equal(used.process(f).alpha, w) for f, w in zip(frames, want, strict=True))


def test_a_moving_edge_flickers_less_and_is_not_smeared(rgb):
    """A disc moving 3 px/frame under heavy sensor noise: the segmenter's rim flickers; the temporal stage (alone:
    refine none, so that the guided step's own response to the noise is not measured) steadies it along the
    motion without dragging the edge behind."""
    frames = moving_disc(16)
    truth = [disc_frame(cx=110 + 3 * t)[..., 2] > 125 for t in range(16)]
    runs = {}
    for s in (0.0, TEMPORAL_RGB):
        p = toy_pipeline(rgb, temporal=s, refine="none", mode="alpha")
        runs[s] = [p.process(f).alpha.copy() for f in frames]
    off, on = runs[0.0], runs[TEMPORAL_RGB]
    assert warped_back_flicker(on, 3) < 0.6 * warped_back_flicker(off, 3)
    # not smeared: as close to the truth as frame by frame, once the memory has begun (frame 0 is the same)
    assert np.array_equal(on[0], off[0])
    iou_on = np.mean([iou(a, t) for a, t in zip(on[1:], truth[1:], strict=True)])
    iou_off = np.mean([iou(a, t) for a, t in zip(off[1:], truth[1:], strict=True)])
    assert iou_on >= iou_off - 0.002
    # the edge is where the disc is now, not where it was: the 0.5 contour's column on the middle row
    for a, t in zip(on[4:], range(4, 16), strict=True):
        right = np.flatnonzero(a[120] > 0.5).max()
        assert abs(right - (110 + 3 * t + 60)) <= 3, (t, right)


def test_a_still_scene_converges(rgb):
    rng = np.random.default_rng(5)
    clean = disc_frame()
    frames = [noisy(clean, rng) for _ in range(24)]
    p = toy_pipeline(rgb, refine="none", mode="alpha")
    q = toy_pipeline(rgb, temporal=0.0, refine="none", mode="alpha")
    on = [p.process(f).alpha.copy() for f in frames]
    off = [q.process(f).alpha.copy() for f in frames]
    change_on = [np.abs(b - a).mean() for a, b in pairwise(on[-8:])]
    change_off = [np.abs(b - a).mean() for a, b in pairwise(off[-8:])]
    assert np.mean(change_on) < 0.6 * np.mean(change_off)
    # it settles near the segmenter's mean answer over the noise: closer than a single frame's answer is
    target = np.mean(off, axis=0)
    assert np.abs(on[-1] - target).mean() < 0.7 * np.mean([np.abs(a - target).mean() for a in off[-8:]])


@pytest.mark.parametrize("kw", [dict(), dict(refine="model", patch_context=2, smoothing=0.3),
                                dict(refine="none", mode="rgba", background="transparent")])
def test_overlapped_and_batch_equal_sequential_with_the_temporal_stage(rgb, kw):
    frames = moving_disc(9) + [disc_frame(180, 300, cx=100)] + moving_disc(3, seed=1)
    seq = [m.copy() for m in toy_pipeline(rgb, **kw).stream(iter(frames))]
    par = [m.copy() for m in toy_pipeline(rgb, overlap=True, **kw).stream(iter(frames))]
    assert len(seq) == len(par) == len(frames)
    for a, b in zip(seq, par, strict=True):
        assert a.index == b.index and np.array_equal(a.alpha, b.alpha) and np.array_equal(a.image, b.image)
    assert seq[3].timings["temporal"] > 0
    assert_batch_equals_process(lambda: toy_pipeline(rgb, **kw), frames, chunks=[5, 4, 4])


def test_batch_chunks_warm_the_memory(rgb):
    """A batch continues the memory of the frames before it, as process does."""
    frames = moving_disc(8)
    p = toy_pipeline(rgb, mode="alpha")
    p.process_batch(frames[:4])
    got = p.process_batch(frames[4:])[0].alpha.copy()
    q = toy_pipeline(rgb, mode="alpha")
    for f in frames[:4]:
        q.process(f)
    assert np.abs(q.process(frames[4]).alpha - got).max() <= 1e-4
    assert not np.array_equal(got, toy_pipeline(rgb, mode="alpha").process(frames[4]).alpha)


# ------------------------------------------------------------------ the guided refine step

def steps_at(alpha, period, start=0):
    """Along the rows of alpha (its column 0 is column `start` of the frame): the largest bend |a[x-1] - 2 a[x] +
    a[x+1]| within 2 px of the tile borders (frame columns k * period) and the largest elsewhere. A step, a seam
    or a dip where two tiles meet bends the ramp there."""
    bend = np.abs(alpha[:, :-2] - 2 * alpha[:, 1:-1] + alpha[:, 2:])
    x = np.arange(1, alpha.shape[1] - 1) + start
    near = np.abs((x + period // 2) % period - period // 2) <= 2
    return bend[:, near].max(), bend[:, ~near].max()


def test_no_patch_grid_on_a_smooth_gradient(rgb):
    """A smooth ramp of alpha across the frame (R rising left to right) must come out without steps along the
    refine grid's 32 px tiles (refine grid = the frame here); the band refiner with a receptive field shows them
    (the measure sees a grid where there is one)."""
    h, w = 256, 384
    ramp = np.tile(np.linspace(40, 215, w, dtype=np.float32), (h, 1))
    frame = np.dstack([np.full((h, w), 80, np.float32), np.full((h, w), 200, np.float32), ramp]).astype(np.uint8)
    kw = dict(mode="alpha", refine_res=256, patch_size=32, patch_context=0, full_grid_above=1.0)
    guided = toy_pipeline(rgb, **kw).process(frame).alpha
    soft = (guided > 0.05) & (guided < 0.95)
    assert soft.mean() > 0.5  # the ramp is kept, not hardened
    cols = np.flatnonzero(soft.all(axis=0))  # (the clip of the ramp at 0 and 1 is a kink of its own)
    at_borders, elsewhere = steps_at(guided[:, cols[0]:cols[-1] + 1], 32, cols[0])
    assert at_borders < 0.002 and at_borders <= 1.5 * elsewhere + 1e-4
    grid = toy_pipeline(rgb, refine="model", **kw).process(frame).alpha
    assert steps_at(grid[:, cols[0]:cols[-1] + 1], 32, cols[0])[0] > 0.01


def test_doubt_is_not_hardened(rgb):
    """Where the segmenter is half sure (a flag: stripes in G and B, R constant: alpha 0.5), the guided step and
    the temporal stage keep 0.5, frame after frame."""
    h, w = 240, 320
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 2] = 128  # R = 0.5: alpha = 2 * 0.5 - 0.5 = 0.5
    stripes = (np.arange(h) // 12 % 2 == 0)[:, None]
    frame[..., 0] = np.where(stripes, 230, 30)
    frame[..., 1] = np.where(stripes, 30, 220)
    p = toy_pipeline(rgb, mode="alpha")
    for t in range(6):
        a = p.process(np.roll(frame, 3 * t, axis=0)).alpha
        inner = a[16:-16, 16:-16]
        assert np.abs(inner - 0.5).max() < 0.03, t


def test_no_bleed_at_the_frame_border(rgb):
    """A subject cut by the bottom border: the grey beside it stays background down to the last row."""
    h, w = 240, 320
    frame = np.full((h, w, 3), 90, np.uint8)
    frame[..., 2] = 40  # R low: alpha 0
    frame[120:, 60:180] = (60, 120, 235)  # R high: alpha 1, touching the bottom border
    a = toy_pipeline(rgb, mode="alpha").process(cv2.GaussianBlur(frame, (0, 0), 1.5)).alpha
    assert a[-8:, 200:].max() < 0.02 and a[-8:, :40].max() < 0.02  # beside it, along the bottom rows
    assert a[-8:, 80:160].min() > 0.98


def test_soft_transitions_of_the_image_are_kept(rgb):
    """An edge the image blurs over ~20 px (hair against a background) keeps soft alpha across it."""
    h, w = 240, 320
    frame = np.full((h, w, 3), 20, np.uint8)
    frame[:, 160:] = (40, 200, 235)
    frame = cv2.GaussianBlur(frame, (0, 0), 8)
    a = toy_pipeline(rgb, mode="alpha").process(frame).alpha[120]
    soft = np.flatnonzero((a > 0.05) & (a < 0.95))
    assert 10 <= len(soft) and np.all(np.diff(a[120:200]) >= -1e-3)  # soft, and monotone across the edge


# ------------------------------------------------------------------ the real segmenter (where installed)

@pytest.mark.skipif(not (real_world_bundle_dir() / "manifest.json").is_file(),
                    reason="no real-world bundle (python -m export.import_coarse mediapipe-selfie)")
def test_real_segmenter_on_a_panned_photo():
    skimage = pytest.importorskip("skimage.data")
    photo = cv2.resize(np.ascontiguousarray(skimage.astronaut()[..., ::-1]), (360, 360), interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(12):
        f = np.full((360, 640, 3), 128, np.uint8)
        f[:, 120 + 2 * t:480 + 2 * t] = photo
        frames.append(f)
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in (0.0, None):
            p = Pipeline(PipelineConfig(bundle=str(real_world_bundle_dir()), mode="alpha", temporal=s))
            runs[s] = [p.process(f).alpha.copy() for f in frames]
    back = {s: [np.roll(a, -2 * t, axis=1)[:, 130:470] for t, a in enumerate(r)] for s, r in runs.items()}
    flicker = {s: np.mean([np.abs(b - a).mean() for a, b in pairwise(v)]) for s, v in back.items()}
    assert flicker[None] < 0.6 * flicker[0.0]
    agree = np.mean([((a > 0.5) == (b > 0.5)).mean() for a, b in zip(back[None], back[0.0], strict=True)])
    assert agree > 0.95  # the same person, steadier


def test_a_matting_model_runs_the_temporal_stage_when_asked(rgbd):
    """The rgbd contract (the generated-scene bundles) keeps its outputs by default and takes the stage on
    request, from its own R, G, B planes; overlapped equals sequential there too."""
    frames = moving_disc(6)
    plain = [m.alpha.copy() for m in toy_pipeline(rgbd).stream(frames)]
    off = [m.alpha.copy() for m in toy_pipeline(rgbd, temporal=0.0).stream(frames)]
    assert all(np.array_equal(a, b) for a, b in zip(plain, off, strict=True))
    seq = [m.copy() for m in toy_pipeline(rgbd, temporal=0.6).stream(frames)]
    par = [m.copy() for m in toy_pipeline(rgbd, temporal=0.6, overlap=True).stream(frames)]
    assert all(np.array_equal(a.alpha, b.alpha) for a, b in zip(seq, par, strict=True))
    assert seq[2].timings["temporal"] > 0 and not np.array_equal(seq[2].alpha, plain[2])
