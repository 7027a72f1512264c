"""Pipeline end to end with real ONNX Runtime sessions: the shipped bundle, and tiny bundles built here
with onnx.helper whose outputs are known in closed form (soft edges, NaN, a fixed-size rgb segmenter)."""

import shutil
import time
import warnings

import cv2
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from wbg_edge.bundle import Artifact, Bundle, BundleError, default_bundle_dir, sha256_file, write_bundle
from wbg_edge.pipeline import Matte, Pipeline, PipelineConfig, as_bgr, back, fit

# ------------------------------------------------------------------ tiny models (closed-form outputs)

F = TensorProto.FLOAT


def _const(name, value):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_t", F, [], [float(value)]))


def _slice(src, dst, ch):
    nodes = [helper.make_node("Constant", [], [dst + "_s"], value=helper.make_tensor(dst + "_st", TensorProto.INT64,
                                                                                     [1], [ch])),
             helper.make_node("Constant", [], [dst + "_e"], value=helper.make_tensor(dst + "_et", TensorProto.INT64,
                                                                                     [1], [ch + 1])),
             helper.make_node("Constant", [], [dst + "_a"], value=helper.make_tensor(dst + "_at", TensorProto.INT64,
                                                                                     [1], [1]))]
    return nodes + [helper.make_node("Slice", [src, dst + "_s", dst + "_e", dst + "_a"], [dst])]


def _save(path, nodes, inp, in_shape, out, out_shape, initializers=()):
    g = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info(inp, F, in_shape)],
                          [helper.make_tensor_value_info(out, F, out_shape)], initializer=list(initializers))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def soft_matting(path, nan_when_dark=False):
    """alpha = clip((R - 0.3) * 4, 0, 1); with nan_when_dark, NaN everywhere when mean(R) < 0.05."""
    nodes = _slice("input", "r", 0) + [
        _const("c03", 0.3), _const("c4", 4.0), _const("c0", 0.0), _const("c1", 1.0),
        helper.make_node("Sub", ["r", "c03"], ["r1"]), helper.make_node("Mul", ["r1", "c4"], ["r2"]),
        helper.make_node("Clip", ["r2", "c0", "c1"], ["a" if nan_when_dark else "alpha"])]
    if nan_when_dark:
        nodes += [_const("c005", 0.05),
                  helper.make_node("ReduceMean", ["r"], ["m"], axes=[1, 2, 3], keepdims=1),
                  helper.make_node("Sub", ["m", "c005"], ["m1"]), helper.make_node("Log", ["m1"], ["l"]),
                  helper.make_node("Mul", ["l", "c0"], ["z"]),  # 0 * log(x): 0, or NaN when x < 0
                  helper.make_node("Add", ["a", "z"], ["alpha"])]
    _save(path, nodes, "input", ["N", 4, "H", "W"], "alpha", ["N", 1, "H", "W"])


def mean_depth(path):
    nodes = [helper.make_node("ReduceMean", ["image"], ["depth"], axes=[1], keepdims=1)]
    _save(path, nodes, "image", ["N", 3, "H", "W"], "depth", ["N", 1, "H", "W"])


def pointwise_refiner(path):
    """delta = 2 * a * (1 - a) * (G - 0.5): zero where alpha_coarse is 0 or 1, so patches == full grid there."""
    nodes = _slice("input", "a", 4) + _slice("input", "g", 1) + [
        _const("k1", 1.0), _const("k2", 2.0), _const("k05", 0.5),
        helper.make_node("Sub", ["k1", "a"], ["ia"]), helper.make_node("Mul", ["a", "ia"], ["aa"]),
        helper.make_node("Sub", ["g", "k05"], ["g1"]), helper.make_node("Mul", ["aa", "g1"], ["t"]),
        helper.make_node("Mul", ["t", "k2"], ["delta"])]
    _save(path, nodes, "input", ["N", 5, "H", "W"], "delta", ["N", 1, "H", "W"])


def conv_refiner(path):
    """delta = 2 * a * (1 - a) * (box5x5(G) - 0.5): sees 2 pixels around each output, like a real refiner
    sees its receptive field, so patches without context differ from the full grid at patch borders."""
    w = helper.make_tensor("w", F, [1, 1, 5, 5], [1.0 / 25] * 25)
    nodes = _slice("input", "a", 4) + _slice("input", "g", 1) + [
        _const("k1", 1.0), _const("k2", 2.0), _const("k05", 0.5),
        helper.make_node("Conv", ["g", "w"], ["gb"], pads=[2, 2, 2, 2]),
        helper.make_node("Sub", ["k1", "a"], ["ia"]), helper.make_node("Mul", ["a", "ia"], ["aa"]),
        helper.make_node("Sub", ["gb", "k05"], ["g1"]), helper.make_node("Mul", ["aa", "g1"], ["t"]),
        helper.make_node("Mul", ["t", "k2"], ["delta"])]
    _save(path, nodes, "input", ["N", 5, "H", "W"], "delta", ["N", 1, "H", "W"], [w])


def rgb_segmenter(path, size=(64, 96)):
    """Fixed-size rgb contract: alpha = clip(2 * R - 0.5, 0, 1) at (1, 3, 64, 96)."""
    nodes = _slice("image", "r", 0) + [
        _const("c2", 2.0), _const("c05", 0.5), _const("c0", 0.0), _const("c1", 1.0),
        helper.make_node("Mul", ["r", "c2"], ["r1"]), helper.make_node("Sub", ["r1", "c05"], ["r2"]),
        helper.make_node("Clip", ["r2", "c0", "c1"], ["alpha"])]
    _save(path, nodes, "image", [1, 3, *size], "alpha", [1, 1, *size])


def make_bundle(root, coarse="soft", depth=True, refiner="pointwise"):
    root.mkdir(parents=True, exist_ok=True)
    arts = []

    def add(stage, file, contract, inputs, outputs, **kw):
        arts.append(Artifact(stage=stage, file=file, format="onnx", precision="fp32", contract=contract,
                             sha256=sha256_file(root / file), inputs=inputs, outputs=outputs, **kw))

    if depth:
        mean_depth(root / "depth.onnx")
        add("depth", "depth.onnx", "depth", {"image": ["N", 3, "H", "W"]}, {"depth": ["N", 1, "H", "W"]})
    if coarse == "rgb":
        rgb_segmenter(root / "seg.onnx")
        add("coarse", "seg.onnx", "rgb", {"image": [1, 3, 64, 96]}, {"alpha": [1, 1, 64, 96]}, fixed_size=(64, 96))
    else:
        soft_matting(root / "matting.onnx", nan_when_dark=coarse == "nan")
        add("coarse", "matting.onnx", "rgbd", {"input": ["N", 4, "H", "W"]}, {"alpha": ["N", 1, "H", "W"]})
    (conv_refiner if refiner == "conv" else pointwise_refiner)(root / "refiner.onnx")
    add("refiner", "refiner.onnx", "refiner", {"input": ["N", 5, "H", "W"]}, {"delta": ["N", 1, "H", "W"]})
    write_bundle(Bundle(root=root, name=root.name, artifacts=tuple(arts), model_res=128, refine_res=256))
    return root


def disc_frame(h=240, w=320, cx=None, r=None, value=230):
    """Red disc on a dark background with a soft (blurred) rim: alpha is 0 / 1 away from the rim."""
    f = np.full((h, w, 3), 20, np.uint8)
    cx = w // 2 if cx is None else cx
    cv2.circle(f, (cx, h // 2), r or min(h, w) // 4, (40, 200, value), -1)
    return cv2.GaussianBlur(f, (0, 0), 3.0)


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("toy") / "bundle")


@pytest.fixture(scope="module")
def default_pipeline():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # native op may fall back to numpy with a warning
        p = Pipeline(PipelineConfig(model_res=128, refine_res=256, threads=2))
    yield p
    p.close()


# ------------------------------------------------------------------ shipped bundle

@pytest.mark.parametrize("shape", [(240, 320, 3), (121, 97, 3), (37, 333, 3), (1, 1, 3), (96, 64), (96, 64, 1),
                                   (90, 120, 4)])
def test_default_bundle_frame_shapes(default_pipeline, shape):
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    m = default_pipeline.process(frame)
    h, w = shape[:2]
    assert m.alpha.shape == (h, w) and m.alpha.dtype == np.float32
    assert np.isfinite(m.alpha).all() and m.alpha.min() >= 0 and m.alpha.max() <= 1
    assert m.mode == "composite" and m.composite is m.image and m.image.shape == (h, w, 3)
    assert m.image.dtype == np.uint8 and not m.passthrough
    for k in ("preprocess", "depth", "normalise", "coarse", "band", "pack", "refiner", "finish", "total"):
        assert m.timings[k] >= 0
    assert m.timings["total"] >= m.timings["models"]


def test_size_change_mid_stream(default_pipeline):
    rng = np.random.default_rng(1)
    sizes = [(120, 160), (121, 161), (120, 160), (64, 200), (120, 160)]
    for h, w in sizes:
        m = default_pipeline.process(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert m.alpha.shape == (h, w) and m.image.shape == (h, w, 3)


def test_grayscale_and_bgra_match_their_bgr(default_pipeline):
    gray = np.random.default_rng(2).integers(0, 256, (80, 100), dtype=np.uint8)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    a_bgr = default_pipeline.process(bgr).alpha.copy()
    assert np.array_equal(default_pipeline.process(gray).alpha, a_bgr)
    bgra = np.dstack([bgr, np.full(gray.shape, 7, np.uint8)])
    assert np.array_equal(default_pipeline.process(bgra).alpha, a_bgr)
    assert np.array_equal(default_pipeline.process(np.asfortranarray(bgr)).alpha, a_bgr)


@pytest.mark.parametrize("frame", [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 2), np.uint8),
                                   np.zeros((1, 10, 10, 3), np.uint8), np.zeros((0, 10, 3), np.uint8),
                                   np.zeros((10, 10, 3), np.uint16), [[1, 2, 3]]])
def test_bad_frames_give_one_line_value_error(default_pipeline, frame):
    with pytest.raises(ValueError) as e:
        default_pipeline.process(frame)
    msg = str(e.value)
    assert "\n" not in msg and "frame" in msg
    if isinstance(frame, np.ndarray):
        assert str(frame.shape) in msg and str(frame.dtype) in msg


def test_embedding_api_plain_loop():
    """What an embedding application writes: a config, a loop, the arrays it needs."""
    frames = [disc_frame(cx=100 + 10 * i) for i in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # (foreground off: the RGBA colours are then the frame's own; tests/test_foreground.py checks the default)
        pipeline = Pipeline(PipelineConfig(model_res=128, refine_res=256, mode="rgba", background="transparent",
                                           foreground=False))
    pipeline.warmup(240, 320)
    kept = []
    for frame in frames:
        matte = pipeline.process(frame)
        assert isinstance(matte, Matte)
        kept.append(matte.copy())
    pipeline.close()
    assert [m.index for m in kept] == list(range(6))
    for f, m in zip(frames, kept, strict=True):
        assert m.foreground.shape == (240, 320, 4)
        assert np.array_equal(m.foreground[..., :3], f)
        assert np.array_equal(m.foreground[..., 3], np.floor(m.alpha * 255 + 0.5).astype(np.uint8))
    assert pipeline.info()["backend"] == "ort-cpu"


def test_wrong_hash_is_refused(tmp_path):
    root = tmp_path / "b"
    shutil.copytree(default_bundle_dir(), root)
    with open(root / "refiner.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="refiner.onnx: SHA-256") as e:
        Pipeline(PipelineConfig(bundle=str(root)))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw, word", [(dict(model_res=100), "model_res"), (dict(mode="x"), "mode"),
                                      (dict(background="nope"), "background"), (dict(patch_size=12), "patch_size"),
                                      (dict(depth_every=0), "depth_every"), (dict(smoothing=1.0), "smoothing"),
                                      (dict(patch_context=3), "patch_context"),
                                      (dict(backend="tpu"), "backend")])
def test_config_errors_name_the_field(kw, word):
    with pytest.raises(ValueError, match=word) as e:
        PipelineConfig(**kw)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ tiny bundles: exact expectations

def toy_pipeline(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Pipeline(PipelineConfig(bundle=str(root), threads=1, **kw))


def test_patches_agree_with_full_grid_where_the_band_covers_the_edges(toy):
    frame = disc_frame(360, 480)
    full = toy_pipeline(toy, patches=False, mode="alpha").process(frame)
    pp = toy_pipeline(toy, patches=True, patch_size=16, band_dilation=2, mode="alpha")
    part = pp.process(frame)
    assert full.refined == 1.0 and 0 < part.refined < 0.5
    assert np.abs(full.alpha - part.alpha).max() < 2e-3
    # and the refiner really acted inside the band: the result is not the coarse alpha
    plain = toy_pipeline(toy, patches=False, mode="alpha")
    plain.refiner_model.backend.run = _zero_delta(plain.refiner_model.backend.run)
    coarse_only = plain.process(frame).alpha
    assert np.abs(part.alpha - coarse_only).max() > 0.05


def test_patch_context_removes_seams(tmp_path, monkeypatch):
    """With a refiner that looks 2 pixels around, patches need 2 pixels of context to equal the full grid."""
    root = make_bundle(tmp_path / "conv", refiner="conv")
    frame = disc_frame(360, 480)
    full = toy_pipeline(root, patches=False, mode="alpha").process(frame).alpha.copy()
    seams = toy_pipeline(root, patch_size=16, patch_context=0, mode="alpha").process(frame)
    ctx = toy_pipeline(root, patch_size=16, patch_context=2, mode="alpha").process(frame)
    assert 0 < ctx.refined == seams.refined < 0.5
    assert np.abs(seams.alpha - full).max() > 5e-3  # zero padding at the patch borders shows
    assert np.abs(ctx.alpha - full).max() < 2e-3
    edge = disc_frame(360, 480, cx=40)  # the band reaches the frame border: windows shift inside the grid
    full = toy_pipeline(root, patches=False, mode="alpha").process(edge).alpha.copy()
    pipe = toy_pipeline(root, patch_size=16, patch_context=8, mode="alpha")
    seen = []
    inner = back.inner
    monkeypatch.setattr(back, "inner", lambda b, p, d, off, s: (seen.append(off), inner(b, p, d, off, s))[1])
    big = pipe.process(edge)
    assert np.abs(big.alpha - full).max() < 2e-3
    assert len(np.unique(seen[0], axis=0)) > 1


def _zero_delta(run):
    def zero(feeds, out=None):
        res = run(feeds, out)
        for v in res.values():
            v[...] = 0
        return res
    return zero


def test_coarse_alpha_follows_the_model(toy):
    """A disc of R = 230 gives alpha 1 inside, 0 outside (clip((R - 0.3) * 4)); rim in between."""
    m = toy_pipeline(toy, mode="composite", background="#0000ff").process(disc_frame(240, 320))
    a = m.alpha
    assert a[120, 160] > 0.99 and a[5, 5] < 0.01 and ((a > 0.05) & (a < 0.95)).mean() > 0.005
    assert tuple(m.composite[5, 5]) == (255, 0, 0)  # BGR of #0000ff over a transparent corner


def test_nan_model_passes_the_frame_through_with_the_previous_alpha(tmp_path):
    p = toy_pipeline(make_bundle(tmp_path / "nan", coarse="nan"), mode="rgba", background="transparent")
    good = p.process(disc_frame()).alpha.copy()
    dark = np.full((240, 320, 3), 3, np.uint8)  # mean(R) < 0.05: the model returns NaN
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        m = p.process(dark)
    assert m.passthrough and p.nonfinite_frames == 1
    assert np.array_equal(m.alpha, good)
    assert np.array_equal(m.foreground[..., :3], dark)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        m2 = p.process(dark)
    assert m2.passthrough and p.nonfinite_frames == 2 and np.array_equal(m2.alpha, good)
    assert not p.process(disc_frame()).passthrough


def test_nan_on_the_first_frame_keeps_everything(tmp_path):
    p = toy_pipeline(make_bundle(tmp_path / "nan", coarse="nan"), mode="composite")
    dark = np.full((50, 60, 3), 3, np.uint8)
    with pytest.warns(RuntimeWarning):
        m = p.process(dark)
    assert m.passthrough and (m.alpha == 1).all() and np.array_equal(m.composite, dark)


def test_rgb_contract_coarse_stage(tmp_path):
    """An imported fixed-size segmenter replaces the matting model through the input adapter only."""
    p = toy_pipeline(make_bundle(tmp_path / "rgb", coarse="rgb", depth=False), mode="alpha")
    assert p.coarse_contract == "rgb" and p.depth_model is None
    frame = disc_frame(180, 300)
    m = p.process(frame)
    assert m.image.shape == (180, 300) and m.alpha[90, 150] > 0.99 and m.alpha[3, 3] < 0.01
    # matches the segmenter run by hand at its fixed size, upsampled (refiner delta is 0 away from the rim)
    small = cv2.resize(frame, (96, 64), interpolation=cv2.INTER_LINEAR)[..., 2].astype(np.float32) / 255
    ref = cv2.resize(np.clip(2 * small - 0.5, 0, 1), (300, 180), interpolation=cv2.INTER_LINEAR)
    assert np.abs(ref - m.alpha).mean() < 0.01


def test_overlapped_stream_matches_sequential(toy):
    frames = [disc_frame(cx=120 + 7 * i) for i in range(7)] + [disc_frame(120, 200)] + [disc_frame()]
    seq = [m.copy() for m in toy_pipeline(toy).stream(iter(frames))]
    par = [m.copy() for m in toy_pipeline(toy, overlap=True).stream(iter(frames))]
    assert len(seq) == len(par) == len(frames)
    for a, b in zip(seq, par, strict=True):
        assert a.index == b.index and np.array_equal(a.alpha, b.alpha) and np.array_equal(a.image, b.image)


@pytest.mark.parametrize("kw", [dict(smoothing=0.5), dict(patch_context=4, mode="rgba"),
                                dict(depth_every=3, depth_motion=0.05, smoothing=0.3)])
def test_overlapped_stream_matches_sequential_when_the_caller_reuses_its_buffer(toy, kw):
    # The overlapped stream reads frame t+1 before frame t is finished: it must not keep the caller's buffer.
    frames = [disc_frame(cx=100 + 9 * i) for i in range(6)] + [disc_frame(cx=160)] * 3 + [disc_frame(cx=60)]

    def reused():
        buf = np.empty_like(frames[0])
        for f in frames:
            np.copyto(buf, f)
            yield buf

    seq = [m.copy() for m in toy_pipeline(toy, **kw).stream(iter(frames))]
    par = [m.copy() for m in toy_pipeline(toy, overlap=True, **kw).stream(reused())]
    for a, b in zip(seq, par, strict=True):
        assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.image, b.image)


def test_overlapped_stream_with_sizes_cycling_beyond_the_buffer_cache(toy):
    # Three sizes in turn: more than the two per-size buffer sets kept, so sizes are dropped and made again
    # while frames of other sizes are in flight; grayscale and BGRA frames are converted on the lanes.
    sizes = [(240, 320), (180, 300), (200, 260)]
    frames = [disc_frame(*sizes[i % 3], cx=90 + 5 * i) for i in range(12)]
    frames[4] = cv2.cvtColor(frames[4], cv2.COLOR_BGR2GRAY)
    frames[7] = cv2.cvtColor(frames[7], cv2.COLOR_BGR2BGRA)
    kw = dict(smoothing=0.4, depth_every=2)
    seq = [m.copy() for m in toy_pipeline(toy, **kw).stream(frames)]
    par = [m.copy() for m in toy_pipeline(toy, overlap=True, **kw).stream(frames)]
    for a, b in zip(seq, par, strict=True):
        assert a.index == b.index and np.array_equal(a.alpha, b.alpha) and np.array_equal(a.image, b.image)


def test_overlapped_mattes_outlive_two_more_with_a_slow_consumer(toy):
    # The contract of stream(): a Matte's arrays stay valid while the consumer receives the next two (a sink
    # thread may still be writing it). The lanes run ahead while the consumer is slow: they must not reach it.
    frames = [disc_frame(cx=80 + 8 * i) for i in range(14)]
    held: list[tuple] = []
    for m in toy_pipeline(toy, overlap=True).stream(frames):
        held = [*held[-2:], (m, m.alpha.copy(), m.image.copy())]
        time.sleep(0.03)  # the lanes finish the frames ahead meanwhile
        for old, alpha, image in held:
            assert np.array_equal(old.alpha, alpha) and np.array_equal(old.image, image), old.index


def test_overlapped_stream_closed_early_leaves_the_state_of_what_was_received(toy):
    frames = [disc_frame(cx=80 + 8 * i) for i in range(12)]
    seq = toy_pipeline(toy, smoothing=0.5)
    want = [seq.process(f).copy() for f in frames[:4]]
    par = toy_pipeline(toy, overlap=True, smoothing=0.5)
    it = par.stream(frames)
    got = [next(it).copy() for _ in range(3)]
    it.close()  # the lanes had finished frames the consumer never received
    got.append(par.process(frames[3]))
    assert par.info()["frames"] == 4
    for a, b in zip(want, got, strict=True):
        assert a.index == b.index and np.array_equal(a.alpha, b.alpha)


def test_overlapped_stream_reads_no_further_than_the_end(toy):
    class Frames:  # an iterator that would yield again after it ended once (a reopened source)
        calls = 0

        def __iter__(self):
            return self

        def __next__(self):
            self.calls += 1
            if self.calls == 5:
                raise StopIteration
            return disc_frame()

    frames = Frames()
    assert len(list(toy_pipeline(toy, overlap=True).stream(frames))) == 4 and frames.calls == 5


def test_patch_batch_limit_belongs_to_each_frame_size(toy):
    # A big frame whose band needs more patches than a small frame's whole grid has stays in patches after
    # a small frame (the limit was once the last allocated size's, for every size and both lanes).
    big = np.tile(disc_frame(120, 160), (4, 4, 1))
    p = toy_pipeline(toy, patch_size=16)
    first = p.process(big).refined
    p.process(disc_frame(64, 64))
    assert 0.3 < first < 1.0 and p.process(big).refined == first


def test_overlapped_stream_raises_bad_frames_and_stops(toy):
    p = toy_pipeline(toy, overlap=True)
    frames = [disc_frame(), np.zeros((4, 4), np.float64), disc_frame()]
    with pytest.raises(ValueError, match="float64"):
        for _ in p.stream(frames):
            pass
    # a consumer that stops early does not leave the worker hanging
    it = p.stream(disc_frame() for _ in range(100))
    next(it)
    with pytest.raises(RuntimeError, match="while an overlapped stream"):
        p.process(disc_frame())
    it.close()
    assert p.process(disc_frame()).alpha.shape == (240, 320)


def test_depth_reuse_skips_the_model_on_still_frames(toy):
    p = toy_pipeline(toy, depth_every=3)
    still = disc_frame()
    ran = [p.process(still).timings["depth"] > 0 for _ in range(7)]
    assert ran == [True, False, False, True, False, False, True]
    p.process(disc_frame(cx=60))  # big motion: depth runs early
    assert p.process(disc_frame(cx=250)).timings["depth"] > 0


def test_depth_off_feeds_zero(toy):
    p = toy_pipeline(toy, depth=False)
    assert p.depth_model is None
    m = p.process(disc_frame())
    assert m.timings["depth"] == 0 and np.isfinite(m.alpha).all()


def test_temporal_smoothing_is_an_ema(toy):
    p = toy_pipeline(toy, smoothing=0.5, mode="alpha")
    q = toy_pipeline(toy, mode="alpha")
    a0 = p.process(disc_frame(cx=140)).alpha.copy()
    b1 = q.process(disc_frame(cx=180)).alpha
    a1 = p.process(disc_frame(cx=180)).alpha
    assert np.abs(a1 - (0.5 * a0 + 0.5 * b1)).max() < 1e-5


def test_fit_keeps_aspect_and_multiples():
    assert fit(256, 720, 1280) == (256, 448)
    assert fit(256, 1280, 720) == (448, 256)
    assert fit(256, 1, 5000) == (256, 1024)  # at most 4:1
    assert fit(32, 10, 10) == (32, 32)


def test_as_bgr_views_contiguous_bgr():
    f = np.zeros((4, 5, 3), np.uint8)
    assert as_bgr(f) is f


# ------------------------------------------------------------------ fuzz the frame entry point



@st.composite
def frames(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint8, np.uint8, np.float32, np.int16, np.bool_]))
    h, w = draw(st.integers(0, 70)), draw(st.integers(0, 70))
    ch = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    shape = (h, w) if ch is None else (h, w, ch)
    if draw(st.booleans()):
        shape = (1, *shape)
    a = np.random.default_rng(draw(st.integers(0, 99))).integers(0, 2, shape).astype(dtype) * 200
    if a.ndim >= 2 and draw(st.booleans()):
        a = a.swapaxes(0, 1)  # non-contiguous
    return a


@pytest.fixture(scope="module")
def toy_alpha(toy):
    return toy_pipeline(toy, mode="alpha")


@settings(max_examples=40, deadline=None)
@given(frame=frames())
def test_fuzz_frames_give_a_matte_or_one_line_error(toy_alpha, frame):
    p = toy_alpha
    ok = (frame.dtype == np.uint8 and frame.size > 0
          and (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))))
    if not ok:
        with pytest.raises(ValueError) as e:
            p.process(frame)
        assert "\n" not in str(e.value) and str(frame.shape) in str(e.value)
        return
    m = p.process(frame)
    assert m.alpha.shape == frame.shape[:2] and np.isfinite(m.alpha).all()



# ------------------------------------------------------------------ process_batch == process, frame by frame

def demo_frames(n=5, w=320, h=192):
    """Frames of the built-in synthetic clip (a subject with soft edges moving over a textured background)."""
    from wbg_edge.demo import SyntheticClip

    clip = SyntheticClip(w, h, n, 25, 0)
    return [clip.frame(i)[0] for i in range(n)]


def assert_batch_equals_process(make, frames, chunks=None):
    """Pipelines from `make()`: process frame by frame vs process_batch (in `chunks` sizes, default one batch).
    Every Matte of a batch is compared after the whole batch returned: all must still be valid."""
    ref = [m.copy() for m in map(make().process, frames)]
    p = make()
    got, i = [], 0
    for n in chunks or [len(frames)]:
        batch = p.process_batch(frames[i:i + n])
        assert len(batch) == n
        got += [m.copy() for m in batch] if n < len(frames) else batch
        i += n
    assert [m.index for m in got] == list(range(len(frames)))
    for k, (r, g) in enumerate(zip(ref, got, strict=True)):
        assert np.abs(r.alpha - g.alpha).max() <= 1e-4, f"frame {k}: alpha differs"
        assert np.abs(r.image.astype(np.int16) - g.image).max() <= 1, f"frame {k}: image differs"
        assert (r.passthrough, r.refined) == (g.passthrough, g.refined)
    return p, got


@pytest.mark.parametrize("kw", [dict(), dict(smoothing=0.5, background="blur"),
                                dict(patch_context=4, full_grid_above=1.0, mode="rgba",
                                                                 background="transparent")])
def test_batch_equals_process_default_bundle(kw):
    def make():
        return Pipeline(PipelineConfig(threads=1, **kw))

    p, got = assert_batch_equals_process(make, demo_frames())
    assert p.depth_model.max_batch > 5 and p.coarse_model.max_batch > 5  # dynamic batch: one call each
    assert any(0 < m.refined < 1 for m in got)  # band patches of several frames went through one call
    t = got[0].timings
    assert t["depth"] > 0 and t["coarse"] > 0 and t["refiner"] > 0 and t["total"] >= t["models"]


def test_batch_fixed_batch_coarse_and_engine_limits(tmp_path):
    """A fixed-batch (1, 3, 64, 96) segmenter is called once per frame; bounded batches are cut in chunks."""
    root = make_bundle(tmp_path / "rgb", coarse="rgb", refiner="conv")
    frames = [disc_frame(180, 300, cx=80 + 25 * i) for i in range(5)]

    def make(limit=None):
        # (the refiner's batching: an rgb segmenter's default is the guided filter and the temporal stage)
        p = toy_pipeline(root, smoothing=0.3, patch_size=16, patch_context=2, refine="model", temporal=0.0)
        if limit:  # as a TensorRT profile would bound them (the refiner's also bounds patches per frame)
            p.depth_model.max_batch, p.refiner_model.max_batch = 2, limit
        return p

    p, got = assert_batch_equals_process(make, frames)
    assert p.coarse_model.max_batch == 1 and p.depth_model.max_batch > 5
    assert any(0 < m.refined < 1 for m in got)
    p, got = assert_batch_equals_process(lambda: make(limit=45), frames, chunks=[3, 2])
    assert [0 < m.refined < 1 for m in got] == [True, True, False, True, True]  # 42 patches fit, 46 do not


def test_batch_nan_passthrough_and_mixed_sizes(tmp_path):
    root = make_bundle(tmp_path / "nan", coarse="nan")
    dark = np.full((240, 320, 3), 3, np.uint8)
    frames = [disc_frame(), dark, disc_frame(cx=150), disc_frame(120, 200), disc_frame(120, 200, cx=90), dark,
              disc_frame()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p, got = assert_batch_equals_process(lambda: toy_pipeline(root, smoothing=0.5, mode="alpha"), frames)
    assert [m.passthrough for m in got] == [False, True, False, False, False, True, False]
    assert p.nonfinite_frames == 2
    assert [m.alpha.shape for m in got[2:5]] == [(240, 320), (120, 200), (120, 200)]


def test_batch_bad_input_is_one_line(toy):
    p = toy_pipeline(toy)
    for frames, word in (([], "empty"), (disc_frame(), "list"),
                         ([disc_frame(), np.zeros((4, 4), np.float32)], r"frames\[1\]: frame must be uint8")):
        with pytest.raises(ValueError, match=word) as e:
            p.process_batch(frames)
        assert "\n" not in str(e.value)
    assert p.info()["frames"] == 0  # nothing ran: every frame is checked first


def test_batch_keep_holds_earlier_mattes_valid(toy):
    """keep=N + 1: a whole earlier batch (and one more) stays valid through the next call, as a sink
    writer with a queue of N needs; with the default keep=2 the ring would reuse the first batch's buffers."""
    frames = [disc_frame(cx=100 + 10 * i) for i in range(6)]
    ref = [m.copy() for m in map(toy_pipeline(toy).process, frames)]
    p = toy_pipeline(toy)
    got = p.process_batch(frames[:3], keep=4) + p.process_batch(frames[3:], keep=4)
    for r, g in zip(ref, got, strict=True):
        assert np.array_equal(r.alpha, g.alpha) and np.array_equal(r.image, g.image)
    with pytest.raises(ValueError, match="keep"):
        p.process_batch(frames, keep=-1)
