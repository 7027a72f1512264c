"""The local executor: N spawned worker processes, each holding one Pipeline, fed one Unit at a time.

Each worker has its own pipe to the driver, so the driver always knows which Unit each worker runs:
a worker that dies takes only its own Unit with it (run again up to `retries` times, then reported
failed), and the others go on. Signals: workers ignore SIGINT and SIGTERM (a Ctrl-C at a terminal
reaches the whole process group), so the driver alone decides. Its first signal sets `stop`: no
new Unit is handed out, running ones end after their frames in flight (the StopFlag file) and report
back. Its second signal raises KeyboardInterrupt in the driver, which kills the workers at once. A
worker whose driver is gone (killed) exits by itself.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from .model import STATE_DIR, Job, Unit, unit_result
from .work import UnitRunner

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def running_marker(outdir: str, unit: Unit) -> Path:
    """A file that exists while a worker runs `unit` (tests find a busy worker by it)."""
    return Path(outdir) / STATE_DIR / "tmp" / f"running-{os.getpid()}-{unit.name}-{unit.index}"


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        mpc.wait([parent.sentinel])  # ready when the driver has exited, however it ended
        os._exit(1)


def _worker(job: Job, conn: Any, gpu: int | None) -> None:
    """A worker process: Units in, result dicts out, until None or the driver goes away."""
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the driver while it started us: see _start
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    if gpu is not None:  # one GPU per worker, before anything in this fresh process touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    runner = UnitRunner(job)
    try:
        while (msg := conn.recv()) is not None:
            unit = Unit.from_json(msg)
            marker = running_marker(job.outdir, unit)  # left behind if this process dies
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            try:
                res = runner.run(unit)
            finally:
                marker.unlink(missing_ok=True)
            conn.send(res)
    except (EOFError, OSError):  # the driver is gone
        pass
    finally:
        runner.close()


@dataclass
class _Slot:
    proc: Any
    conn: Any
    unit: Unit | None = None


def _start(ctx: Any, job: Job, gpu: int | None) -> _Slot:
    """Start a worker with SIGINT/SIGTERM blocked, so a Ctrl-C that arrives while it is still starting
    up (before it ignores them) cannot kill it; the driver's own pending signal is delivered after."""
    resource_tracker.ensure_running()  # its first start unblocks both signals again (CPython 3.11)
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_worker, args=(job, there, gpu), daemon=True, name="wbg-edge-batch-worker")
    mask = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS) if mask else None
    try:
        proc.start()
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    there.close()
    return _Slot(proc, here)


def run_local(job: Job, units: Sequence[Unit], workers: int, retries: int, on_result: Callable[[dict], None],
              stop: threading.Event | None = None, gpus: int = 0) -> None:
    """Run the Units on `workers` processes; `on_result` gets each Unit's result dict in the driver's
    thread as it arrives. Returns when every Unit handed out has reported back and, unless `stop` was
    set, every Unit has run. Units never handed out get no result."""
    ctx = multiprocessing.get_context("spawn")  # no fork: ONNX Runtime / CUDA threads do not survive it
    todo = deque(units)
    attempts: dict[tuple[str, int], int] = {}
    barren = 0  # workers in a row that died with no Unit (dying on start-up)
    started = 0
    slots: list[_Slot] = []

    def new_worker() -> None:
        nonlocal started
        slots.append(_start(ctx, job, started % gpus if gpus else None))
        started += 1

    if stop is not None and stop.is_set():  # stopped while planning: start nothing
        return
    try:
        for _ in range(max(1, min(workers, len(todo)))):
            new_worker()
        while slots:
            stopping = stop is not None and stop.is_set()
            for s in slots:
                if s.unit is None and todo and not stopping:
                    try:
                        s.conn.send(todo[0].to_json())
                        s.unit = todo.popleft()
                    except OSError:  # it died idle: found below, its Unit not blamed
                        pass
            busy = [s for s in slots if s.unit is not None]
            if not busy and (stopping or not todo):
                break
            mpc.wait([s.conn for s in busy] + [s.proc.sentinel for s in slots], timeout=0.2)
            for s in list(slots):
                res = None
                if s.unit is not None and s.conn.poll():
                    try:
                        res = s.conn.recv()
                    except (EOFError, OSError):
                        res = None
                if res is not None:
                    s.unit, barren = None, 0
                    on_result(res)
                elif not s.proc.is_alive():
                    slots.remove(s)
                    s.conn.close()
                    barren = _died(s, attempts, retries, todo, on_result, barren)
                    if barren > retries:  # workers cannot even start: give up on what is left
                        while todo:
                            u = todo.popleft()
                            on_result(unit_result(u, error=f"{u.input}: worker processes died before running "
                                                           f"anything"))
                    elif todo and not (stop is not None and stop.is_set()) and len(slots) < workers:
                        new_worker()
        for s in slots:  # a clean end: ask each worker to exit, so it closes its Pipeline
            try:
                s.conn.send(None)
            except OSError:
                pass
        for s in slots:
            s.proc.join(timeout=10)
    finally:  # KeyboardInterrupt (a second Ctrl-C) or an error in the driver: the workers go now
        for s in slots:
            if s.proc.is_alive():
                s.proc.kill()
        for s in slots:
            s.proc.join()


def _died(s: _Slot, attempts: dict, retries: int, todo: deque, on_result: Callable[[dict], None],
          barren: int) -> int:
    """A worker died: its Unit is run again, or reported failed after `retries` more attempts."""
    if s.unit is None:
        return barren + 1
    key = (s.unit.name, s.unit.index)
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] > retries:
        on_result(unit_result(s.unit, error=f"{s.unit.input}: worker died {attempts[key]} times on it"))
    else:
        todo.appendleft(s.unit)
    return 0
