"""The one executor: runs the stages of front.py and back.py on frames, one at a time, N at a time, or
overlapped on two lanes, with one StreamState.

    process     preprocess, number, depth | coarse, [temporal], [band, pack, refine] | finish   (caller's thread)
    overlapped  the same on lane k % 2 for frame k; reading + preprocess, number + depth, temporal and finish are
                taken in frame order (Turns); coarse, band .. refine run beside the other lane's frame
    batch       preprocess, number, [depth] per frame; depth_batch, coarse and refine once for all N frames
                (band patches of all N in one refiner call); temporal, band, pack and finish per frame, in order
    refine "guided": the guided filter (guided.py) instead of band, pack and refine; "none": neither. The finish
    then upsamples that alpha, or the (filtered) coarse alpha, itself

Buffers: `process` uses one Slot and refine set 0; an overlapped stream IN_FLIGHT slots and refine sets
(frame k uses k % IN_FLIGHT); a batch a Group of N slots and stacked refiner rows. Output rings are per
frame size (BackCache).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future

import numpy as np

from ..settings import Resolved
from .back import band, coarse, finish, own_rows, pack, refine, stacked_rows
from .buffers import IN_FLIGHT, BackCache, Group, Slot, Work, alloc_group, scratch
from .front import depth, depth_batch, depth_planes, number, preprocess
from .geometry import Geometries
from .guided import apply_size, guided
from .lanes import Lane, Turns
from .matte import STAGES, Matte, totals
from .models import Models
from .state import StreamState
from .temporal import Temporal


class Executor:
    """Runs the stages for one Pipeline: its settings, models, grids, buffers and its one StreamState."""

    def __init__(self, s: Resolved, m: Models, geometry: Geometries, lane_threads: int):
        self.s, self.cfg, self.m = s, s.config, m
        self.geometry = geometry
        self.state = StreamState()
        self.backs = BackCache(s, m)
        self.slot = Slot()                 # process()'s buffers (an overlapped stream has its own)
        self.group: Group | None = None    # batch()'s slots
        self.lane_threads = lane_threads   # fused-op threads of each lane (the lanes share the cores)
        self.lanes: list[Lane] = []        # the last overlapped stream's threads
        self.streaming = False
        self.last: Work | None = None      # the last frame process() made (model_inputs)
        self.temporal = Temporal(s.temporal) if s.temporal > 0 else None

    def busy(self) -> bool:
        """An overlapped stream runs, or one of its lanes is still stuck in the caller's iterator."""
        return self.streaming or any(lane.alive() for lane in self.lanes)

    # ------------------------------------------------------------------ one frame: the stages in order
    def _depth(self, slot: Slot) -> None:
        """Frame number and depth: the front stages that read and change the stream state."""
        number(slot, self.state)
        if self.m.depth is not None:
            depth(slot, self.state, self.m.depth, self.cfg)

    def _coarse(self, slot: Slot, buffers: int) -> Work:
        """The coarse model on one frame, whose later stages use refine set `buffers` (no stream state)."""
        w = Work(slot, self.backs.get(slot.geom), dict(slot.timings), buffers=buffers, bad=slot.bad)
        coarse([w], slot.model_in if slot.model_in is not None else slot.coarse_in, self.m.coarse)
        return w

    def _temporal(self, w: Work) -> None:
        """The temporal stage (reads and changes the stream state: in frame order)."""
        if self.temporal is not None:
            self.temporal(w, self.state)

    def _refine(self, w: Work) -> Work:
        """band -> pack -> refine for one frame (no stream state): refine "model" the bundle's refiner on the band,
        "guided" the guided filter of the coarse alpha (w.fine), "none" nothing."""
        if self.s.refine == "none":
            return w
        if self.s.refine == "guided":
            key = f"guided{w.buffers}"  # frames in flight at once each have their own
            w.fine = scratch(w.b, key + "-out", apply_size(w.slot.geom.refine), np.float32)
            guided(w, w.fine, key)
            return w
        band(w, self.cfg, self.s.patch_context)
        rows = own_rows(w)
        pack(w)
        refine([w], rows, self.m.refiner)
        return w

    def _end(self, w: Work) -> Matte:
        matte = finish(w, self.state, self.s.mode, self.cfg, self.s.patch_context)
        return totals(matte, sum(w.tm.get(k, 0.0) for k in STAGES))

    def process(self, frame) -> Matte:
        slot = self.slot
        preprocess(frame, slot, self.geometry, self.m, copy=False)
        self._depth(slot)
        w = self.last = self._coarse(slot, 0)
        self._temporal(w)
        return self._end(self._refine(w))

    def model_inputs(self) -> dict[str, np.ndarray]:
        """Copies of what the models were given for the last frame process() made."""
        w = self.last
        if w is None:
            raise RuntimeError("Pipeline.model_inputs: no frame was processed with process() since the pipeline "
                               "was made or last ran stream() / process_batch()")
        slot = w.slot
        out = {"coarse": (slot.model_in if slot.model_in is not None else slot.coarse_in).copy()}
        if self.m.depth is not None:
            out["depth"] = depth_planes(slot).copy()
        if w.packed is not None:
            out["refiner"] = w.packed.copy()
        return out

    # ------------------------------------------------------------------ N frames of one size
    def batch(self, bgrs: list[np.ndarray], keep: int) -> list[Matte]:
        """process() on each of N BGR frames of one size, with the model calls batched across them."""
        t_start = time.perf_counter()
        self.last = None  # model_inputs: only while nothing else ran after process()
        n, cfg, m, st = len(bgrs), self.cfg, self.m, self.state
        g = self.geometry(*bgrs[0].shape[:2])
        grp = self.group
        if grp is None or grp.geom != g or len(grp.slots) < n:
            grp = self.group = alloc_group([Slot() for _ in range(n)], g, m, copy=False)
        slots = grp.slots[:n]
        # Depth reuse (depth_every > 1) decides frame by frame on the last computed depth: per-frame depth then.
        batched_depth = m.depth is not None and cfg.depth_every == 1
        for f, slot in zip(bgrs, slots, strict=True):
            preprocess(f, slot, self.geometry, m, copy=False)
            number(slot, st)
            if m.depth is not None and not batched_depth:
                depth(slot, st, m.depth, cfg)
        if batched_depth:
            depth_batch(grp, n, st, m.depth, cfg)
        b = self.backs.get(g)
        if len(b.alphas) < n + keep:  # fresh buffers: the old ones may still be read through earlier Mattes
            b.alphas = [np.zeros_like(b.alphas[0]) for _ in range(n + keep)]
            b.images = [np.zeros_like(b.images[0]) for _ in range(n + keep)]
        works = [Work(slot, b, dict(slot.timings), bad=slot.bad) for slot in slots]
        coarse(works, (grp.model_in if grp.model_in is not None else grp.coarse_in)[:n], m.coarse)
        for w in works:
            self._temporal(w)
        if self.s.refine == "model":
            for w in works:
                band(w, cfg, self.s.patch_context)
            rows = stacked_rows(works, b, cfg.patch_size + 2 * self.s.patch_context, m.refiner)
            for w in works:
                pack(w)
            refine(works, rows, m.refiner)
        elif self.s.refine == "guided":
            fine = scratch(b, "guided-batch", (n, *apply_size(g.refine)), np.float32)
            for i, w in enumerate(works):
                w.fine = fine[i]
                guided(w, w.fine, "guided0")
        mattes = [finish(w, st, self.s.mode, cfg, self.s.patch_context) for w in works]
        per_frame = (time.perf_counter() - t_start) * 1e3 / n  # wall time shared out: what throughput sees
        return [totals(matte, per_frame) for matte in mattes]

    # ------------------------------------------------------------------ two lanes
    def overlapped(self, frames: Iterable[np.ndarray]) -> Iterator[Matte]:
        """Frames side by side: two lanes (threads) each take whole frames, k on lane k % 2, so the load
        balances itself whatever the stages cost. What needs frame order runs in turns: reading and
        preprocessing (frame k is the k-th frame, copied before the caller may reuse its buffer), frame
        numbering with depth (reuse decides on the previous depth; one depth cache), the temporal stage and the finish
        (temporal smoothing, the output ring). Frame k uses slot and refine buffers k % IN_FLIGHT; the
        caller submits frame k + IN_FLIGHT once it has frame k's Matte. A caller that stops early leaves
        the stream state as if the frames it did not receive were never read (StreamState.rewind)."""
        if self.busy():
            raise RuntimeError("Pipeline.stream: another overlapped stream() is already running on this pipeline")
        self.streaming = True
        self.last = None  # (frame k uses refine set k % IN_FLIGHT: set 0 is process()'s too)
        it = iter(frames)
        end = object()
        ended = threading.Event()  # the input is exhausted: read no further (an iterator may not stay ended)
        slots = [Slot() for _ in range(IN_FLIGHT)]
        reading, depth_turns, temporal_turns, finishing = Turns(), Turns(), Turns(), Turns()
        lanes = self.lanes = [Lane(f"wbg-lane{i}", self.lane_threads) for i in range(2)]
        index, prev_alpha, last = self.state.index, self.state.prev_alpha, None

        def job(k: int):
            slot = slots[k % IN_FLIGHT]
            with reading.turn(k):  # the copy too: the caller may reuse its buffer for the next frame
                frame = end if ended.is_set() else next(it, end)
                if frame is end:
                    ended.set()
                    return end
                preprocess(frame, slot, self.geometry, self.m, copy=True)
            with depth_turns.turn(k):
                self._depth(slot)
            w = self._coarse(slot, k % IN_FLIGHT)
            if self.temporal is not None:
                with temporal_turns.turn(k):
                    self._temporal(w)
            self._refine(w)
            with finishing.turn(k):
                return self._end(w)

        ahead: deque[Future] = deque(lanes[k % 2].submit(job, k) for k in range(IN_FLIGHT))
        k = IN_FLIGHT
        complete = False
        try:
            while (matte := ahead.popleft().result()) is not end:
                ahead.append(lanes[k % 2].submit(job, k))  # into frame k - IN_FLIGHT's buffers: that one is done
                k += 1
                last = matte
                yield matte
            complete = True
        finally:
            for f in ahead:  # not started yet: never read another frame after the caller stops
                f.cancel()
            for t in (reading, depth_turns, temporal_turns, finishing):
                t.abort()  # frames waiting for a turn a failed frame never took
            for lane in lanes:
                lane.close()
            if not complete:  # forget the frames the lanes made beyond the last one handed out
                if last is not None:  # (the output ring still holds its alpha)
                    self.state.rewind(last.index + 1, last.alpha)
                else:
                    self.state.rewind(index, prev_alpha)
            self.streaming = False
