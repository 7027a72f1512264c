"""Threads of an overlapped stream: `Lane` (one thread running whole frames, in submission order) and
`Turns` (sections that frames enter in frame order, whichever lane runs them)."""
from __future__ import annotations

import contextlib
import queue
import threading
from concurrent.futures import Future

from .. import native


class Turns:
    """Sections that must run in frame order: `with turns.turn(k):` enters once frame k - 1 has left it, or
    raises once `abort()` was called. A frame that fails before its turn never takes it: the frames behind
    it wait until the caller, which waits for frames in order, meets the failure and aborts."""

    def __init__(self):
        self._next = 0
        self._aborted = False
        self._cv = threading.Condition()

    @contextlib.contextmanager
    def turn(self, k: int):
        with self._cv:
            self._cv.wait_for(lambda: self._next >= k or self._aborted)
            if self._aborted:
                raise RuntimeError("wbg_edge: the overlapped stream stopped")
        try:
            yield
        finally:
            with self._cv:
                self._next = max(self._next, k + 1)
                self._cv.notify_all()

    def abort(self) -> None:
        with self._cv:
            self._aborted = True
            self._cv.notify_all()


class Lane:
    """One daemon thread running submitted jobs in submission order; results and errors come back as Futures.
    Its fused-op calls use `threads` worker threads (the lanes share the cores)."""

    def __init__(self, name: str, threads: int):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = threads
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, *args) -> Future:
        f: Future = Future()
        self._jobs.put((f, fn, args))
        return f

    def _run(self) -> None:
        native.set_thread_budget(self._threads)
        while (job := self._jobs.get()) is not None:
            f, fn, args = job
            if f.set_running_or_notify_cancel():
                try:
                    f.set_result(fn(*args))
                except BaseException as e:  # raised again in the thread that asks for the result
                    f.set_exception(e)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the jobs already submitted (one stuck in a source read is abandoned after `timeout`)."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()
