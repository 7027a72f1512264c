"""The Pipeline: settings + models + one executor over stage functions (DESIGN.md section 1).

  frame u8 BGR ─> preprocess ─> number ─> depth ─> normalise D ─> coarse ─> temporal ─> band
       │                          [S]      [S]        [S]                      [S]        │
       └──────────── (full-res frame) ───────────────────────────────────────────────> pack ─> refine ─> finish
                                                          (refine "guided": guided ───────────────────> finish)
  depth: the model, or the last depth while the input barely moves; coarse: rgbd matting or an rgb segmenter;
  temporal: the coarse alpha filtered along the optical flow (on by default for an rgb segmenter);
  band: boundary patches on the refine grid; pack / finish: the fused op (finish: alpha = clamp(coarse + delta),
  upsampled, smoothed, composed; or the pass-through of a NaN / Inf frame); guided: a guided filter of the
  coarse alpha by the frame instead of band + refiner (the default for an rgb segmenter).
  [S]: reads or changes the StreamState.

  Each stage is a plain function over explicit inputs (buffers, models, config, state):
    front.py     preprocess, number, depth, normalise (+ depth_batch)       frame -> model inputs, D
    back.py      coarse, band, pack, refine, finish (+ NaN pass-through)    model inputs -> Matte
    temporal.py  temporal (its memory in the StreamState)                  coarse alpha -> coarse alpha
    guided.py    guided (instead of band + refiner when refine is "guided")  coarse alpha -> finer alpha
    state.py     StreamState: frame number, depth cache, previous alpha, temporal memory, NaN count
    executor.py  the one executor (lanes.py: its threads), over buffers.py (per-size buffers) and
                 models.py (the three models); geometry.py the grids, matte.py the result

  who calls them
    Pipeline.process(frame)         -> Executor.process     the stages in order, in the caller's thread
    Pipeline.process_batch(frames)  -> Executor.batch       the same stages on N frames (batched model calls)
    Pipeline.stream(frames)         -> process per frame, or Executor.overlapped (two lanes, config.overlap)
    callers of Pipeline: wbg_edge.stream.run_stream (cli run / bench, demo), wbg_edge.batch, bench/, embedders

`Pipeline(PipelineConfig(...)).process(frame)` returns a `Matte`. Buffers are allocated per frame size
(again only when the size changes), so the hot path allocates almost nothing. The arrays of a returned
Matte belong to the pipeline and stay valid for the next two `process` calls (a ring of three output
buffers, so a sink on another thread can still be writing one); `Matte.copy()` keeps one.

`Pipeline.process_batch(frames)` (offline throughput) gives the same Mattes as `process` on each frame
in turn, with one depth call and one coarse call for all N frames (models whose batch dimension is
fixed, or bounded by an engine profile, are called in chunks they accept) and the boundary patches of
all N frames in one refiner call; the temporal stage and the fused finish run per frame, in order, so the
temporal stage, temporal smoothing and NaN pass-through are those of `process`. The ring then holds N + 2
buffers: all N Mattes stay valid until the next call, and two more (a sink thread may still be writing the
last two).

`Pipeline.stream(frames)` yields one Matte per frame; with `overlap=True` two frames are processed at
once, each on its own thread ("lane") from read to finish, with the steps that need frame order
(reading, depth reuse, the temporal stage, temporal smoothing, the output ring) taken in turns. Each model
then runs on half the cores (one thread on a 2-core CPU), which wastes less CPU than one model on every
core (thread hand-offs, idle waits at the end of each operator), and the pipeline's own work runs beside
the other lane's models instead of between models. Throughput goes up; a result comes out about a frame later.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .. import native
from ..backends import BackendOptions, choose_backend
from ..bundle import Bundle, BundleError, default_bundle_dir, load_bundle
from ..settings import MODES, PipelineConfig, Resolved, resolve
from .buffers import IN_FLIGHT
from .executor import Executor
from .front import as_bgr
from .geometry import Geometries, Geometry, fit
from .matte import MODEL_STAGES, STAGES, Matte
from .models import Model, Models, open_models
from .state import StreamState

__all__ = ["IN_FLIGHT", "MODEL_STAGES", "MODES", "STAGES", "Geometry", "Matte", "Pipeline", "PipelineConfig",
           "StreamState", "as_bgr", "fit"]


class Pipeline:
    """depth -> coarse -> band -> refine_pack -> refiner -> refine_finish, on one bundle and one backend."""

    def __init__(self, config: PipelineConfig = PipelineConfig()):
        self.config = config
        root = Path(config.bundle) if config.bundle else default_bundle_dir()
        self.bundle: Bundle = load_bundle(root)
        stages = self.bundle.available_stages()
        for need in ("coarse", "refiner"):
            if need not in stages:
                raise BundleError(f"{root / 'manifest.json'}: the bundle has no {need!r} stage")
        use_depth = config.depth and "depth" in stages
        wanted = {"coarse", "refiner"} | ({"depth"} if use_depth else set())
        self.choice = choose_backend(config.backend, self.bundle, wanted)
        fmt = "engine" if self.choice.kind == "trt" else "onnx"
        # Overlapped, two threads run models at once: half the cores each, and no idle spinning.
        lane_threads = max(1, native.usable_cpus() // 2)
        threads = config.threads or (lane_threads if config.overlap else None)
        opts = BackendOptions(threads=threads, spin=config.spin and not config.overlap)
        found = {s: self.bundle.resolve(s, fmt) for s in wanted}
        for s, f in found.items():
            if f is None:
                raise BundleError(f"{root / 'manifest.json'}: no {fmt} artifact for stage {s!r}")
        self.artifacts = {s: f[1] for s, f in found.items()}
        self.models: Models = open_models(self.choice.kind, found, opts)
        self.backend_name = self.models.refiner.backend.name
        self.settings: Resolved = resolve(config, self.bundle.model_res, self.bundle.refine_res,
                                          self.bundle.runtime, "depth" in stages, self.models.coarse_contract)
        s = self.settings
        self.model_res, self.refine_res, self.depth_res = s.model_res, s.refine_res, s.depth_res
        self.patch_context, self.mode = s.patch_context, s.mode
        self._geometries = Geometries(s.model_res, s.depth_res, s.refine_res, self.models.coarse_fixed)
        self._run = Executor(s, self.models, self._geometries, lane_threads)
        self._closed = False

    # ------------------------------------------------------------------ what it runs
    @property
    def depth_model(self) -> Model | None:
        return self.models.depth

    @property
    def coarse_model(self) -> Model:
        return self.models.coarse

    @property
    def refiner_model(self) -> Model:
        return self.models.refiner

    @property
    def coarse_contract(self) -> str:
        return self.models.coarse_contract

    @property
    def coarse_layout(self) -> str:
        return self.models.coarse_layout

    @property
    def coarse_fixed(self) -> tuple[int, int] | None:
        return self.models.coarse_fixed

    @property
    def state(self) -> StreamState:
        """The per-stream state (frame number, depth cache, previous alpha, NaN count): the pipeline's own
        object, to read; `reset()` forgets its temporal part."""
        return self._run.state

    @property
    def nonfinite_frames(self) -> int:
        """Frames passed through with the previous alpha because a model returned NaN / Inf."""
        return self._run.state.nonfinite_frames

    def info(self) -> dict:
        return {"bundle": str(self.bundle.root), "bundle_name": self.bundle.name, "backend": self.backend_name,
                "backend_kind": self.choice.kind, "backend_reason": self.choice.reason,
                "coarse_contract": self.coarse_contract, "depth": self.depth_model is not None,
                "native": native.native_backend(), "model_res": self.model_res, "refine_res": self.refine_res,
                "depth_res": self.depth_res, "mode": self.mode, "temporal": self.settings.temporal,
                "refine": self.settings.refine, "frames": self.state.index,
                "nonfinite_frames": self.nonfinite_frames}

    def geometry(self, height: int, width: int) -> Geometry:
        """The model, depth, coarse and refine grids for a frame of this size."""
        return self._geometries(height, width)

    # ------------------------------------------------------------------ running it
    def _check(self, what: str, busy: bool = True) -> None:
        if self._closed:
            raise RuntimeError(f"Pipeline.{what}: this pipeline is closed (close() or the end of its with-block "
                               f"released its models); make a new Pipeline")
        if busy and self._run.busy():
            raise RuntimeError(f"Pipeline.{what} called while an overlapped stream() is running on this pipeline")

    def process(self, frame: np.ndarray) -> Matte:
        """Background removal for one frame: u8 (H, W, 3) BGR, (H, W, 4) BGRA or (H, W[, 1]) gray."""
        self._check("process")
        return self._run.process(frame)

    def process_batch(self, frames: Sequence[np.ndarray], keep: int = 2) -> list[Matte]:
        """`process` on each frame in order, with the model calls batched across the frames (offline
        throughput). Frames of different sizes are run as consecutive batches of one size. All returned
        Mattes stay valid until the next call, and so do the `keep` Mattes made before this one (those a
        sink thread may still be writing: 2 with run_stream's writer, N + 1 behind a queue of N). With depth
        reuse (depth_every > 1) depth runs frame by frame, as in `process` (reuse depends on the last depth).
        Timings: a batched model call is shared out evenly; `total` is the call's wall time / N."""
        self._check("process_batch")
        if isinstance(frames, np.ndarray) or not isinstance(frames, Sequence):
            raise ValueError(f"frames must be a list of frames, got {type(frames).__name__}")
        if not frames:
            raise ValueError("frames is empty: process_batch needs at least one frame")
        if not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be an integer >= 0, got {keep!r}")
        bgrs = []
        for i, f in enumerate(frames):  # all checked before any state changes
            try:
                bgrs.append(as_bgr(f))
            except ValueError as e:
                raise ValueError(f"frames[{i}]: {e}") from None
        mattes: list[Matte] = []
        start = 0
        for end in range(1, len(bgrs) + 1):
            if end == len(bgrs) or bgrs[end].shape != bgrs[start].shape:
                mattes += self._run.batch(bgrs[start:end], keep)
                start = end
        return mattes

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Matte]:
        """One Matte per frame, in order; two frames at once on two lanes when config.overlap."""
        self._check("stream", busy=False)  # (an overlapped stream says so itself when another one runs)
        return self._run.overlapped(frames) if self.config.overlap else self._sequential(frames)

    def _sequential(self, frames: Iterable[np.ndarray]) -> Iterator[Matte]:
        for f in frames:
            yield self.process(f)

    def warmup(self, height: int, width: int, frames: int = 2) -> None:
        """Allocate the buffers for (height, width) and run the models once or twice (first runs are slow),
        leaving no temporal state and no frame count behind."""
        self._check("warmup")
        index = self.state.index
        gray = np.full((height, width, 3), 128, np.uint8)
        for _ in range(frames):
            self.process(gray)
        self.state.index = index
        self.reset()

    def reset(self) -> None:
        """Forget temporal state (smoothing, reused depth), e.g. at a scene cut. Not while stream() runs."""
        self.state.reset()

    def model_inputs(self) -> dict[str, np.ndarray]:
        """Copies of the inputs each model was given for the last frame `process` made, by stage: "coarse",
        "depth" (the depth model's input, also when reused depth skipped the model) and "refiner" (the packed
        band windows (n, 5, Q, Q), or the full grid (1, 5, Hr, Wr); absent for a frame passed through). To
        time the models alone on a real frame's inputs (bench/bench_pipeline.py): `pipe.refiner_model(x, out)`."""
        return self._run.model_inputs()

    def close(self) -> None:
        """Release the models; process / stream / process_batch / warmup raise RuntimeError afterwards."""
        if self._closed:
            return
        self._closed = True
        for b in self.models.backends():
            b.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
