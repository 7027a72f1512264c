"""CaptureSource: a Reader driven by a capture thread into a bounded queue (see the package docstring).

A live source keeps only the newest frame (low latency: older frames are dropped and counted), a file
keeps every frame (the reader waits). A live source that ends, errors or stalls is reopened with
back-off (counted in `reconnects`); a file that stalls raises SourceError from `read` instead of hanging.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from .base import Frame, Reader, SourceError, SourceStats


class CaptureSource:
    """A Reader driven by a capture thread; a `base.Source` (see there for the members' contracts).

    `opener` makes the Reader (called again to reconnect a live source)."""

    def __init__(self, uri: str, opener: Callable[[], Reader], live: bool, *, stall_timeout: float | None = None,
                 open_timeout: float = 10.0, max_retries: int = 8, backoff: tuple[float, float] = (0.25, 8.0),
                 queue_size: int = 4):
        self.uri, self.live, self._opener = uri, live, opener
        self.open_timeout, self.max_retries, self.backoff = open_timeout, max_retries, backoff
        self.stall_timeout = stall_timeout if stall_timeout is not None else (5.0 if live else 15.0)
        self.stats = SourceStats()
        self._reader = call_with_timeout(opener, open_timeout, f"{uri}: opening took longer than "
                                          f"{open_timeout:g} s (no answer)")
        self.fps = self._reader.fps or 25.0
        self.count: int | None = None if live else self._reader.count
        self._q: queue.Queue = queue.Queue(maxsize=1 if live else queue_size)
        self._stop = threading.Event()
        self._done = False
        self._error: str | None = None
        self._gen = 0  # bumped when a stuck capture thread is abandoned; its frames are then ignored
        self._next_index = 0
        self._grab_since: float | None = None  # set while the capture thread is inside reader.grab()
        self._thread = self._start_thread(self._reader)

    # -- consumer side
    def read(self, timeout: float = 0.5) -> Frame | None:
        """The next frame, or None if none arrived within `timeout` s (or the stream ended: see `finished`).

        Raises SourceError when the source failed (no frame decodable, reconnects exhausted, file stalled).
        """
        if self._done:
            return None
        try:
            gen, frame = self._q.get(timeout=timeout)
        except queue.Empty:
            self._check_stall()
            return None
        if frame is None:  # end-of-stream marker from the capture thread
            self._done = True
            if self._error:
                raise SourceError(self._error)
            return None
        if gen != self._gen:
            return None
        return frame

    @property
    def finished(self) -> bool:
        """True once the stream has ended and every frame was read."""
        return self._done

    def close(self) -> None:
        self._stop.set()
        _drain(self._q)
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive() and self._reader is not None:
            self._reader.close()  # never release a reader a stuck thread may still be inside
        self._reader = None

    def __enter__(self) -> CaptureSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- capture thread
    def _start_thread(self, reader) -> threading.Thread:
        t = threading.Thread(target=self._pump, args=(reader, self._gen), name=f"capture:{self.uri}", daemon=True)
        t.start()
        return t

    def _pump(self, reader, gen: int) -> None:
        failures = 0  # consecutive failed reopen attempts
        while not self._stop.is_set() and gen == self._gen:
            if reader is None:  # live source lost: reopen with exponential back-off
                if failures >= self.max_retries:
                    self._error = f"{self.uri}: disconnected; gave up after {failures} reconnect attempts"
                    self._put((gen, None))
                    return
                if self._stop.wait(min(self.backoff[0] * (2 ** failures), self.backoff[1])):
                    return
                failures += 1
                try:
                    reader = call_with_timeout(self._opener, self.open_timeout, f"{self.uri}: reopen timed out")
                except Exception:
                    continue
                if gen != self._gen:
                    reader.close()
                    return
                self._reader = reader
                self.stats.reconnects += 1
                continue
            self._grab_since = time.perf_counter()
            try:
                img = reader.grab()
            except Exception as e:  # a decoder error is a disconnect for a live source, the end for a file
                img = None
                if not self.live:
                    self.stats.problems.append(f"{self.uri}: read error after {self.stats.frames} frames ({e})")
            if gen != self._gen:  # this thread was abandoned as stalled; nobody else uses its reader
                reader.close()
                return
            self._grab_since = None
            if img is None:
                if not self.live:
                    self._finish_file(reader, gen)
                    return
                reader.close()
                reader = self._reader = None
                continue
            failures = 0
            self.stats.frames += 1
            frame = Frame(img, self._next_index, time.perf_counter(), reader.frame_name)
            self._next_index += 1
            self._put((gen, frame))

    def _put(self, item) -> None:
        if self.live:  # keep only the newest frame
            while True:
                try:
                    self._q.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._q.get_nowait()
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass
        while not self._stop.is_set():  # a file keeps every frame: wait for room
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _finish_file(self, reader, gen: int) -> None:
        skipped = reader.skipped
        if skipped:
            self.stats.problems.append(f"{self.uri}: skipped {len(skipped)} unreadable image(s), "
                                       f"first {skipped[0]!r}")
        if self.count and self.stats.frames < self.count and not skipped:
            self.stats.problems.append(f"{self.uri}: ended after {self.stats.frames} of {self.count} frames "
                                       f"(truncated or damaged file?)")
        if self.stats.frames == 0:
            self._error = f"{self.uri}: no frame could be decoded"
        self._put((gen, None))

    def _check_stall(self) -> None:
        """A read() that timed out: is the capture thread stuck inside the decoder? (Waiting in a
        reconnect back-off or on a full queue is not a stall.)"""
        since = self._grab_since
        if self._stop.is_set() or since is None:
            return
        idle = time.perf_counter() - since
        if idle < self.stall_timeout:
            return
        self.stats.stalls += 1
        if not self.live:
            self._error = f"{self.uri}: no frame for {idle:.1f} s (reader stalled)"
            raise SourceError(self._error)
        # Abandon the stuck capture thread (it may be blocked inside the decoder) and start a fresh one.
        self._gen += 1
        self._grab_since = None
        self._reader = None
        self._thread = threading.Thread(target=self._pump, args=(None, self._gen), daemon=True,
                                        name=f"capture:{self.uri}")
        self._thread.start()


def _drain(q: queue.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


def call_with_timeout(fn: Callable[[], Reader], timeout: float, message: str) -> Reader:
    """Run `fn` in a helper thread; raise SourceError(message) if it does not return within `timeout` s.

    Opening a network stream or a FIFO can block inside native code that cannot be interrupted; the
    helper thread is left behind (daemon) rather than letting the caller hang.
    """
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed back to the caller below
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="source-open")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise SourceError(message)
    if "error" in box:
        raise box["error"]
    return box["value"]
