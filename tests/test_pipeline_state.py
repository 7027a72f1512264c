"""The pipeline's per-stream state (one StreamState the caller can see and reset), the closed pipeline, and
the recorded model inputs, on the tiny closed-form bundles of test_pipeline (real ONNX Runtime sessions)."""

import time

import numpy as np
import pytest
from test_pipeline import disc_frame, make_bundle, toy_pipeline


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("state") / "bundle")


def test_stream_state_is_visible_and_follows_the_frames(toy):
    from wbg_edge.pipeline import StreamState

    p = toy_pipeline(toy, smoothing=0.5, depth_every=3)
    assert isinstance(p.state, StreamState) and p.state.index == 0 and p.state.prev_alpha is None
    mattes = [p.process(disc_frame(cx=150 + i)) for i in range(3)]
    st = p.state
    assert st.index == 3 == p.info()["frames"]
    assert st.prev_alpha is mattes[-1].alpha  # the previous alpha is the last Matte's (the ring buffer)
    assert st.depth is not None and st.depth.min() >= 0 and st.depth.max() <= 1
    assert st.depth_age == 2  # still frames: depth ran once, then was reused twice
    assert st.nonfinite_frames == p.nonfinite_frames == 0


def test_reset_forgets_the_temporal_state_and_keeps_the_counters(toy):
    frames = [disc_frame(cx=140), disc_frame(cx=150), disc_frame(cx=190)]
    p = toy_pipeline(toy, smoothing=0.5, depth_every=3, mode="alpha")
    for f in frames[:2]:
        p.process(f)
    p.reset()
    st = p.state
    assert (st.prev_alpha, st.depth, st.depth_ref, st.depth_age, st.temporal) == (None, None, None, 0, None)
    assert st.index == 2
    # the next frame is made as by a fresh pipeline: no smoothing with what came before, depth computed
    after = p.process(frames[2])
    fresh = toy_pipeline(toy, smoothing=0.5, depth_every=3, mode="alpha").process(frames[2])
    assert after.index == 2 and after.timings["depth"] > 0 and np.array_equal(after.alpha, fresh.alpha)


def test_warmup_leaves_no_state_behind(toy):
    p = toy_pipeline(toy, smoothing=0.5, depth_every=3)
    p.warmup(240, 320)
    st = p.state
    assert (st.index, st.prev_alpha, st.depth, st.depth_age) == (0, None, None, 0)


def test_overlapped_stream_stopped_early_puts_the_state_back(toy):
    frames = [disc_frame(cx=80 + 8 * i) for i in range(12)]
    p = toy_pipeline(toy, overlap=True, smoothing=0.5, depth_every=4, depth_motion=1.0)
    it = p.stream(frames)
    got = [next(it) for _ in range(3)]
    time.sleep(0.3)  # the lanes run ahead of the consumer meanwhile
    st = p.state
    assert st.index > 3
    it.close()
    assert st.index == 3 and st.prev_alpha is got[-1].alpha  # as after the last frame received
    assert st.depth is None and st.depth_age == 0  # reused depth belonged to frames never received
    m = p.process(frames[3])
    assert m.index == 3 and m.timings["depth"] > 0


def test_overlapped_stream_stopped_before_the_first_frame_keeps_the_state(toy):
    p = toy_pipeline(toy, overlap=True, smoothing=0.5)
    first = p.process(disc_frame()).alpha
    it = p.stream(disc_frame(cx=60 + i) for i in range(20))
    it.close()  # never started: nothing read
    assert p.state.index == 1 and p.state.prev_alpha is first
    it = p.stream(disc_frame(cx=60 + i) for i in range(20))
    next(it)
    it.close()
    assert p.state.index == 2


@pytest.mark.parametrize("overlap", [False, True])
def test_closed_pipeline_raises_a_clear_runtime_error(toy, overlap):
    frame = disc_frame()
    with toy_pipeline(toy, overlap=overlap) as p:
        p.process(frame)
    calls = {"process": lambda: p.process(frame), "process_batch": lambda: p.process_batch([frame]),
             "stream": lambda: p.stream([frame]), "warmup": lambda: p.warmup(240, 320)}
    for name, call in calls.items():
        with pytest.raises(RuntimeError, match=rf"Pipeline\.{name}: this pipeline is closed") as e:
            call()
        assert "\n" not in str(e.value)
    p.close()  # closing twice is fine
    assert p.info()["frames"] == 1 and p.nonfinite_frames == 0  # what it did stays readable


def test_model_inputs_are_copies_of_what_the_models_got(toy):
    p = toy_pipeline(toy, patch_size=16, mode="alpha")
    with pytest.raises(RuntimeError, match="no frame was processed"):
        p.model_inputs()
    m = p.process(disc_frame())
    x = p.model_inputs()
    g = p.geometry(240, 320)
    assert set(x) == {"depth", "coarse", "refiner"}
    assert x["coarse"].shape == (1, 4, *g.model) and x["depth"].shape == (1, 3, *g.depth)
    n = x["refiner"].shape[0]
    assert x["refiner"].shape == (n, 5, 16, 16) and n * 16 * 16 / (g.refine[0] * g.refine[1]) == m.refined < 1
    # they run through the models on their own (what bench/bench_pipeline.py times): the recorded patches
    # are the band's, where alpha_coarse (channel 4) is neither 0 nor 1
    alpha_coarse = p.coarse_model(x["coarse"])
    assert alpha_coarse.shape == (1, 1, *g.model) and 0 < alpha_coarse.mean() < 1
    delta = p.refiner_model(x["refiner"], np.empty((n, 1, 16, 16), np.float32))
    assert np.isfinite(delta).all() and ((x["refiner"][:, 4] > 0) & (x["refiner"][:, 4] < 1)).any()
    x["coarse"][:] = 0  # a copy: the next frame is not disturbed
    assert np.array_equal(p.process(disc_frame()).alpha, m.alpha)
