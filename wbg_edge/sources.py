"""Frame sources: one URI picks the reader (the jetson-utils `videoSource` idea).

    open_source("0"), "/dev/video0"       camera (live)
    open_source("csi://0")                Jetson CSI camera through a GStreamer pipeline (live)
    open_source("clip.mp4"), "img.png"    video or image file (every frame)
    open_source("frames/")                image folder, sorted by name (every frame)
    open_source("rtsp://..."), "http://"  network stream through FFmpeg with open/read time-outs (live)
    open_source("v4l2src ! ... ! appsink")  GStreamer pipeline string (needs OpenCV built with GStreamer)
    open_source("synthetic://?size=640x360&frames=50&fps=25")  built-in clip, no files needed

Contract: `Source.read(timeout) -> Frame | None`. `None` means no frame arrived within `timeout`
(not an error; check `source.finished` for the end of the stream). Frames are C-contiguous BGR
uint8 HxWx3 whatever the input (grey, BGRA, 16-bit images are converted).

A capture thread reads ahead into a bounded queue: a live source keeps only the newest frame
(low latency, older frames are dropped and counted), a file keeps every frame (the reader waits).
A live source that ends, errors or stalls is reopened with back-off (counted in `reconnects`);
a file that stalls raises `SourceError` from `read` instead of hanging.
"""
from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".exr", ".pgm", ".ppm"}
NET_SCHEMES = {"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".y4m"}


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message is one line naming the source."""


@dataclass
class Frame:
    image: np.ndarray   # HxWx3 uint8 BGR, C-contiguous
    index: int          # 0-based position in the stream (gaps when a live source drops frames)
    t_capture: float    # time.perf_counter() when the frame was grabbed


def to_bgr(img: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, BGR, BGRA; uint8/uint16/float) -> C-contiguous BGR uint8."""
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        else:  # float images (EXR) are taken as [0, 1]
            img = np.clip(np.nan_to_num(img.astype(np.float32)) * 255 + 0.5, 0, 255).astype(np.uint8)
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)


# ---------------------------------------------------------------- readers (one per kind of input)
# A reader is what the capture thread drives: grab() -> BGR frame, or None at the end / on a disconnect.

@contextlib.contextmanager
def _quiet_opencv():
    """No OpenCV log lines on stderr while opening or decoding: a bad input is reported once, by name,
    in our own one-line error (the CLI sets OPENCV_LOG_LEVEL too, but only before cv2 is imported)."""
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(level)


class _CvReader:
    """cv2.VideoCapture: cameras, files, network streams, GStreamer pipelines."""

    def __init__(self, target, name: str, api: int = cv2.CAP_ANY, params: Sequence[int] = ()):
        self.name = name
        with _quiet_opencv():
            self.cap = cv2.VideoCapture(target, api, list(params)) if params else cv2.VideoCapture(target, api)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(f"{name}: cannot open")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 1000 else 0.0
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.count = n if n > 0 else None

    def grab(self) -> np.ndarray | None:
        ok, img = self.cap.read()
        return to_bgr(img) if ok and img is not None and img.size else None

    def close(self) -> None:
        self.cap.release()


def _truncated(data: np.ndarray, suffix: str) -> bool:
    """A PNG without its IEND chunk or a JPEG without its end marker was cut short. libjpeg would decode
    it anyway (grey below the cut) and both libraries print to stderr, so refuse it before decoding."""
    tail = data[-1024:].tobytes().rstrip(b"\0")  # some cameras pad JPEGs with zeros
    if suffix == ".png":
        return b"IEND" not in tail[-12:]
    if suffix in (".jpg", ".jpeg"):
        return b"\xff\xd9" not in tail[-64:]
    return False


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """The decoded image (as stored: any depth and channel count), or None when the file is missing,
    not an image, or cut short; never prints (sources and backgrounds report bad files by name)."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    if not data.size or _truncated(data, Path(path).suffix.lower()):
        return None
    with _quiet_opencv():
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return img if img is not None and img.size else None


class _ImageReader:
    """A sorted list of image files; files that do not decode are skipped and reported."""

    def __init__(self, files: list[Path], name: str, fps: float = 25.0):
        self.files, self.name, self.fps, self.count = files, name, fps, len(files)
        self.skipped: list[str] = []
        self._i = 0
        if not files:
            raise SourceError(f"{name}: no image files ({', '.join(sorted(IMAGE_EXTS))})")

    def grab(self) -> np.ndarray | None:
        while self._i < len(self.files):
            p = self.files[self._i]
            self._i += 1
            img = read_image(p)
            if img is not None:
                return to_bgr(img)
            self.skipped.append(p.name)
        return None

    def close(self) -> None:
        pass


class _SyntheticReader:
    def __init__(self, name: str, width: int, height: int, frames: int, fps: float, seed: int):
        from .demo import SyntheticClip
        self.name, self.fps, self.count, self._i = name, fps, frames, 0
        self.clip = SyntheticClip(width, height, frames, fps, seed)

    def grab(self) -> np.ndarray | None:
        if self._i >= self.count:
            return None
        self._i += 1
        return self.clip.frame(self._i - 1)[0]

    def close(self) -> None:
        pass


class _MemoryReader:
    """Frames already in memory, repeated to `count` frames (benchmarks: no decode cost)."""

    def __init__(self, frames: Sequence[np.ndarray], count: int, fps: float, name: str = "memory"):
        if not frames:
            raise SourceError(f"{name}: no frames")
        self.frames, self.count, self.fps, self.name, self._i = [to_bgr(f) for f in frames], count, fps, name, 0

    def grab(self) -> np.ndarray | None:
        if self._i >= self.count:
            return None
        self._i += 1
        return self.frames[(self._i - 1) % len(self.frames)]

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- the Source (capture thread + queue)

@dataclass
class SourceStats:
    frames: int = 0        # frames delivered by the reader
    dropped: int = 0       # live only: older frames replaced by newer ones before they were read
    reconnects: int = 0    # live only: successful reopen after a disconnect or stall
    stalls: int = 0        # times no frame arrived within the stall time-out
    problems: list[str] = field(default_factory=list)  # one-line notes (skipped files, short video, ...)


class Source:
    """A reader driven by a capture thread; see the module docstring for the contract."""

    def __init__(self, uri: str, opener: Callable[[], object], live: bool, *, stall_timeout: float | None = None,
                 open_timeout: float = 10.0, max_retries: int = 8, backoff: tuple[float, float] = (0.25, 8.0),
                 queue_size: int = 4):
        self.uri, self.live, self._opener = uri, live, opener
        self.open_timeout, self.max_retries, self.backoff = open_timeout, max_retries, backoff
        self.stall_timeout = stall_timeout if stall_timeout is not None else (5.0 if live else 15.0)
        self.stats = SourceStats()
        self._reader = _call_with_timeout(opener, open_timeout, f"{uri}: opening took longer than "
                                          f"{open_timeout:g} s (no answer)")
        self.fps = getattr(self._reader, "fps", 0.0) or 25.0
        self.count: int | None = None if live else getattr(self._reader, "count", None)
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

    def __enter__(self) -> Source:
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
                    reader = _call_with_timeout(self._opener, self.open_timeout, f"{self.uri}: reopen timed out")
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
            frame = Frame(img, self._next_index, time.perf_counter())
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
        skipped = getattr(reader, "skipped", None)
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


def _call_with_timeout(fn: Callable[[], object], timeout: float, message: str):
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


# ---------------------------------------------------------------- the factory

def gstreamer_available() -> bool:
    """True when this OpenCV was built with GStreamer (pip wheels are not; JetPack's is)."""
    return bool(re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()))


def _csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            f"appsink drop=true max-buffers=1")


def open_source(uri: str, *, live: bool | None = None, open_timeout: float = 10.0,
                stall_timeout: float | None = None, max_retries: int = 8) -> Source:
    """Open `uri` (see module docstring). `live` overrides the default (True for cameras and streams):
    a live source drops stale frames and reconnects; a non-live one keeps every frame and ends."""
    uri = str(uri).strip()
    if not uri:
        raise SourceError("empty source: give a camera index, a file, a folder or a URL")
    opener, default_live = _resolve(uri, open_timeout)
    return Source(uri, opener, default_live if live is None else live, open_timeout=open_timeout,
                  stall_timeout=stall_timeout, max_retries=max_retries)


def from_frames(frames: Sequence[np.ndarray], count: int | None = None, fps: float = 25.0) -> Source:
    """A non-live source over frames in memory, repeated up to `count` frames (for benchmarks)."""
    n = len(frames) if count is None else int(count)
    return Source("memory", lambda: _MemoryReader(frames, n, fps), live=False)


def _resolve(uri: str, open_timeout: float) -> tuple[Callable[[], object], bool]:
    scheme = urlparse(uri).scheme.lower() if "://" in uri else ""
    ms = int(open_timeout * 1000)
    if scheme == "synthetic":
        q = parse_qs(urlparse(uri).query)
        try:
            w, h = (int(v) for v in q.get("size", ["1280x720"])[0].lower().split("x"))
            n, fps = int(q.get("frames", ["100"])[0]), float(q.get("fps", ["25"])[0])
            seed = int(q.get("seed", ["0"])[0])
        except ValueError:
            raise SourceError(f"{uri}: bad synthetic:// options; use ?size=WxH&frames=N&fps=F&seed=S") from None
        return (lambda: _SyntheticReader(uri, w, h, n, fps, seed)), False
    if scheme == "csi":
        return _resolve(_csi_pipeline(int(uri.split("://", 1)[1] or 0)), open_timeout)
    if "!" in uri and scheme == "":
        if not gstreamer_available():
            raise SourceError("GStreamer pipeline given, but this OpenCV was built without GStreamer "
                              "(pip wheels are; use a system OpenCV with GStreamer, e.g. JetPack's)")
        return (lambda: _CvReader(uri, "GStreamer pipeline", cv2.CAP_GSTREAMER)), True
    if scheme in NET_SCHEMES:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        live = not (scheme in ("http", "https") and Path(urlparse(uri).path).suffix.lower() in VIDEO_EXTS)
        return (lambda: _CvReader(uri, uri, cv2.CAP_FFMPEG, params)), live
    if scheme == "file":
        uri = urlparse(uri).path
    elif scheme:
        raise SourceError(f"{uri}: unknown source scheme {scheme!r} (camera index, file, folder, "
                          f"rtsp://, http://, csi://, synthetic:// or a GStreamer pipeline)")
    if re.fullmatch(r"\d+", uri) or uri.startswith("/dev/video"):
        index = int(uri) if uri.isdigit() else uri
        api = cv2.CAP_V4L2 if os.name == "posix" and not _is_macos() else cv2.CAP_ANY
        if isinstance(index, str) and not os.path.exists(index):
            raise SourceError(f"camera {uri}: no such device")

        def open_cam():
            try:
                return _CvReader(index, f"camera {uri}", api)
            except SourceError:
                raise SourceError(f"camera {uri}: cannot open (no camera there, or it is busy)") from None
        return open_cam, True
    p = Path(uri).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())
        return (lambda: _ImageReader(files, uri)), False
    if not p.exists():
        raise SourceError(f"{uri}: no such file or folder")
    if not os.access(p, os.R_OK):
        raise SourceError(f"{uri}: not readable (permission denied)")
    if p.suffix.lower() in IMAGE_EXTS:
        def open_image():
            r = _ImageReader([p], uri)
            img = r.grab()
            if img is None:
                raise SourceError(f"{uri}: not a readable image (corrupt or truncated?)")
            return _MemoryReader([img], 1, 25.0, uri)
        return open_image, False

    def open_file():
        try:
            return _CvReader(str(p), uri, cv2.CAP_FFMPEG)
        except SourceError:
            raise SourceError(f"{uri}: not a readable video (unknown format, truncated or damaged)") from None
    return open_file, False


def _is_macos() -> bool:
    import sys
    return sys.platform == "darwin"
