"""Frame sinks: one URI picks the writer (the jetson-utils `videoOutput` idea).

    open_sink("out.mp4")          H.264 through PyAV when installed, else OpenCV mp4v (.mkv, .avi too)
    open_sink("out.mov")          ProRes 4444 with alpha through PyAV (codec="qtrle" for lossless RLE)
    open_sink("out.webm")         VP9 with alpha (yuva420p) through PyAV; read it back with libvpx-vp9
    open_sink("frames/"), "frames/%05d.png"   PNG sequence (RGBA when given BGRA frames)
    open_sink("-"), "pipe:"       raw frames on stdout, for `| ffmpeg -f rawvideo ...`
    open_sink("display://"), "window"         an OpenCV window (needs a GUI build of OpenCV and a display)
    open_sink("vcam://")          virtual camera through the optional pyvirtualcam
    open_sink("null")             discard (benchmarks)

Contract: `Sink.write(image)` takes uint8 HxW (alpha or grey), HxWx3 BGR or HxWx4 BGRA. The first
frame fixes the output size; later frames of another size are resized to it (counted in `resized`).
`Sink.modes` lists the output modes ("composite", "rgba", "alpha") the sink can store,
`Sink.prefers` the one to use when the user names none, and `Sink.threadable` whether it may be
driven from a writer thread (files and pipes yes; the GUI window must stay on the main thread).

Files are written to a hidden temporary name beside the target and renamed on `close()`, so the
target path only ever holds a finished, playable file; `close()` always finalizes what was written
(including after a write error), so a stream cut halfway leaves a playable file with the frames so far.
Nothing is written outside the folder of the path given.
"""
from __future__ import annotations

import os
import re
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

ALPHA_VIDEO = {".mov": "prores_ks", ".webm": "libvpx-vp9"}
PLAIN_VIDEO = {".mp4", ".m4v", ".mkv", ".avi"}
MODES = ("composite", "rgba", "alpha")


class SinkError(RuntimeError):
    """A sink that cannot be opened or written; the message is one line naming the output."""


class SinkClosed(Exception):
    """The consumer ended the stream on purpose (window closed, `q` pressed): stop without error."""


def have_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- shared helpers

def _as_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def _as_bgra(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:  # an alpha matte on its own: white with that alpha
        out = np.full((*img.shape, 4), 255, np.uint8)
        out[..., 3] = img
        return out
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    return img


def _check_u8(img: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3) or \
            (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise SinkError(f"{where}: frames must be uint8 HxW, HxWx3 or HxWx4 "
                        f"(got {getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')})")
    return np.ascontiguousarray(img)


class _Sized:
    """Fixes the output size on the first frame; resizes later frames of another size to it."""

    def __init__(self, where: str):
        self.where, self.size, self.frames, self.resized = where, None, 0, 0

    def fit(self, img: np.ndarray) -> np.ndarray:
        img = _check_u8(img, self.where)
        h, w = img.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif (w, h) != self.size:
            self.resized += 1
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        return img


def _temp_beside(path: Path) -> Path:
    """A hidden temporary name in the target's folder, keeping its extension (muxers pick by it)."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


def _check_target(path: Path, where: str) -> None:
    if path.exists() and path.is_dir():
        raise SinkError(f"{where}: is a folder; give a file name (or a folder for a PNG sequence: end with '/')")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SinkError(f"{where}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise SinkError(f"{where}: folder {str(parent)!r} is not writable")


# ---------------------------------------------------------------- video files

class _Sink:
    """What every sink shares: `closed`, close(), and use as a context manager (closing finalizes)."""

    closed = False

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _SizedSink(_Sink):
    """A sink that counts frames (and size-fitted frames) through its `_Sized`."""

    _sized: _Sized

    @property
    def frames(self) -> int:
        return self._sized.frames

    @property
    def resized(self) -> int:
        return self._sized.resized


class VideoSink(_SizedSink):
    """A video file: PyAV (H.264 / ProRes 4444 / VP9 with alpha / qtrle) or OpenCV (mp4v, MJPG)."""

    threadable = True  # may write on a thread of its own (wbg_edge.stream), one frame at a time

    def __init__(self, path: str, fps: float = 25.0, codec: str | None = None, encoder: str = "auto",
                 quality: int = 20):
        self.path, self.where = Path(path), str(path)
        _check_target(self.path, self.where)
        self.fps, self.quality = float(fps) if fps and fps > 0 else 25.0, int(quality)
        ext = self.path.suffix.lower()
        if not ext:
            raise SinkError(f"{path}: no file extension; name a video (.mp4, .mov, ...) or end with '/' "
                            f"for a PNG folder")
        if ext not in PLAIN_VIDEO and ext not in ALPHA_VIDEO:
            raise SinkError(f"{path}: unknown video type {ext!r} (.mp4 .mkv .avi .m4v, or .mov .webm with alpha)")
        self.codec = codec or ALPHA_VIDEO.get(ext) or ("libx264" if ext != ".avi" else "mjpeg")
        use_av = encoder == "av" or (encoder == "auto" and have_av())
        if encoder == "av" and not have_av():
            raise SinkError(f"{path}: encoder 'av' needs PyAV: pip install 'wbg-edge[video]'")
        if ext in ALPHA_VIDEO and not use_av:
            raise SinkError(f"{path}: writing {ext} with alpha needs PyAV (pip install 'wbg-edge[video]'); "
                            f"or write .mp4 or a PNG folder")
        self.alpha = self.codec in ("prores_ks", "libvpx-vp9", "qtrle", "png")
        self.modes = MODES if self.alpha else ("composite", "alpha")
        self.prefers = "rgba" if self.alpha else "composite"
        self.backend = "av" if use_av else "opencv"
        self.encoder_name = self.codec if use_av else ("mp4v" if ext != ".avi" else "MJPG")
        self._tmp = _temp_beside(self.path)
        self._sized = _Sized(self.where)
        self._out = None  # opened on the first frame, when the size is known
        self._stream = None
        self._even: tuple[int, int] | None = None
        self.closed = False

    def write(self, image: np.ndarray) -> None:
        if self.closed:
            raise SinkError(f"{self.where}: write after close")
        img = self._sized.fit(image)
        if self._out is None:
            self._open(img.shape[1], img.shape[0])
        try:
            if self.backend == "av":
                self._write_av(img)
            else:
                self._out.write(_as_bgr(img) if self._even is None else self._pad(_as_bgr(img)))
        except OSError as e:
            raise SinkError(f"{self.where}: write failed after {self.frames} frames ({e.strerror or e})") from None
        except Exception as e:  # av.error.FFmpegError and friends
            raise SinkError(f"{self.where}: write failed after {self.frames} frames ({e})") from None
        self._sized.frames += 1

    def _open(self, w: int, h: int) -> None:
        # 4:2:0 and 4:2:2 codecs need even sides: pad odd frames by one replicated row/column.
        ew, eh = w + (w & 1), h + (h & 1)
        self._even = (ew, eh) if (ew, eh) != (w, h) and self.codec != "qtrle" else None
        if self._even:
            w, h = ew, eh
        try:
            if self.backend == "av":
                self._open_av(w, h)
            else:
                fourcc = cv2.VideoWriter_fourcc(*self.encoder_name)
                self._out = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
                if not self._out.isOpened():
                    raise SinkError(f"{self.where}: OpenCV could not open a {self.encoder_name} writer")
        except SinkError:
            self._tmp.unlink(missing_ok=True)
            raise
        except Exception as e:
            self._tmp.unlink(missing_ok=True)
            raise SinkError(f"{self.where}: cannot start the {self.codec} encoder ({e})") from None

    def _pad(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.copyMakeBorder(img, 0, self._even[1] - h, 0, self._even[0] - w, cv2.BORDER_REPLICATE)

    def _open_av(self, w: int, h: int) -> None:
        import av
        # MP4/MOV are written fragmented (a moof every ~second, moov up front), so a file cut short by a
        # full disk, a kill or a power loss still plays up to the last fragment; MKV/WebM stream anyway.
        frag = {"movflags": "+empty_moov+default_base_moof", "frag_duration": "1000000"}
        self._out = av.open(str(self._tmp), mode="w",
                            options=frag if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else {})
        rate = Fraction(self.fps).limit_denominator(1001)
        s = self._out.add_stream(self.codec, rate=rate)
        self._tb = 1 / rate
        s.width, s.height = w, h
        opts: dict[str, str] = {}
        if self.codec == "libx264":
            s.pix_fmt = "yuv420p"
            opts = {"preset": "veryfast", "crf": str(self.quality), "g": str(max(int(round(self.fps)), 1))}
        elif self.codec == "prores_ks":
            s.pix_fmt = "yuva444p10le"
            opts = {"profile": "4", "vendor": "apl0"}  # profile 4 = 4444, with alpha
        elif self.codec == "libvpx-vp9":
            s.pix_fmt = "yuva420p"
            opts = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "row-mt": "1"}
        elif self.codec == "qtrle":
            s.pix_fmt = "argb"
        elif self.codec == "png":
            s.pix_fmt = "rgba"
        elif self.codec == "mjpeg":
            s.pix_fmt = "yuvj420p"
        else:
            s.pix_fmt = "yuv420p"
        s.options = opts
        self._stream = s
        self._av = av

    def _write_av(self, img: np.ndarray) -> None:
        av = self._av
        if self.alpha:
            img = _as_bgra(img)
            fmt = "bgra"
        else:
            img = _as_bgr(img)
            fmt = "bgr24"
        if self._even:
            img = self._pad(img)
        frame = av.VideoFrame.from_ndarray(img, format=fmt)
        frame.pts = self.frames
        frame.time_base = self._tb
        for packet in self._stream.encode(frame.reformat(format=self._stream.pix_fmt)):
            self._out.mux(packet)

    def close(self) -> None:
        """Flush the encoder, finalize the container and rename it into place (safe to call twice)."""
        if self.closed:
            return
        self.closed = True
        err = None
        if self._out is not None:
            try:
                if self.backend == "av":
                    try:
                        for packet in self._stream.encode(None):
                            self._out.mux(packet)
                    finally:
                        self._out.close()
                else:
                    self._out.release()
            except Exception as e:  # a full disk can fail the trailer too; report, keep what exists
                err = e
        if self.frames and self._tmp.exists():
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
        if err is not None:
            raise SinkError(f"{self.where}: finishing the file failed ({err}); it may be incomplete")


# ---------------------------------------------------------------- image sequences

class PngSink(_SizedSink):
    """One PNG per frame in a folder (`dir/`, named frame_000000.png) or by a pattern (`dir/%05d.png`)."""

    modes = MODES
    prefers = "rgba"
    threadable = True

    def __init__(self, target: str):
        self.where = target
        if "%" in target:
            if "%" in str(Path(target).parent) or \
                    not re.fullmatch(r"[^%]*%0?\d*d[^%]*\.png", Path(target).name, flags=re.IGNORECASE):
                raise SinkError(f"{target}: a frame pattern needs exactly one %d (e.g. out/%05d.png) and .png")
            self.folder, self.pattern = Path(target).parent, Path(target).name
        else:
            self.folder, self.pattern = Path(target), "frame_%06d.png"
        if self.folder.exists() and not self.folder.is_dir():
            raise SinkError(f"{target}: exists and is not a folder")
        parent = self.folder.parent
        if not self.folder.exists() and not parent.is_dir():
            raise SinkError(f"{target}: parent folder {str(parent)!r} does not exist")
        self._sized = _Sized(target)
        self.closed = False

    def write(self, image: np.ndarray) -> None:
        img = self._sized.fit(image)
        self.folder.mkdir(exist_ok=True)
        path = self.folder / (self.pattern % self.frames)
        ok, data = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise SinkError(f"{path}: PNG encoding failed")
        tmp = path.with_name(f".{path.name}.partial")
        try:  # one frame never appears half-written
            tmp.write_bytes(data.tobytes())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise SinkError(f"{path}: write failed after {self.frames} frames ({e.strerror or e})") from None
        self._sized.frames += 1


# ---------------------------------------------------------------- raw pipe, window, virtual camera, null

class RawPipeSink(_SizedSink):
    """Raw frames on stdout: bgr24 (composite), bgra (rgba) or gray (alpha), frame after frame.

    Read with: ffmpeg -f rawvideo -pix_fmt bgr24 -s WxH -r FPS -i - out.mp4
    """

    modes = MODES
    prefers = "composite"
    threadable = True

    def __init__(self, fd: int | None = None):
        self.fd = sys.stdout.fileno() if fd is None else fd
        self.where = "stdout"
        self._sized = _Sized(self.where)
        self.closed = False
        self.pix_fmt: str | None = None

    def write(self, image: np.ndarray) -> None:
        img = self._sized.fit(image)
        fmt = {2: "gray"}.get(img.ndim) or ("bgr24" if img.shape[2] == 3 else "bgra")
        if self.pix_fmt is None:
            self.pix_fmt = fmt
        elif fmt != self.pix_fmt:
            raise SinkError(f"stdout: pixel format changed from {self.pix_fmt} to {fmt} mid-stream")
        view = memoryview(img.reshape(-1))
        try:
            while view:  # os.write may write less than asked on a pipe
                view = view[os.write(self.fd, view):]
        except BrokenPipeError:
            raise SinkError(f"stdout: the reading end of the pipe closed after {self.frames} frames") from None
        except OSError as e:
            raise SinkError(f"stdout: write failed after {self.frames} frames ({e.strerror or e})") from None
        self._sized.frames += 1


class WindowSink(_Sink):
    """An OpenCV window; `q` or Esc ends the stream (raises SinkClosed)."""

    modes = ("composite", "alpha")
    prefers = "composite"

    def __init__(self, title: str = "wbg-edge"):
        self.where, self.title, self.frames, self.resized, self.closed = "window", title, 0, 0, False
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SinkError("window: no display (DISPLAY is not set); write to a file, '-' or 'null' instead")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise SinkError("window: this OpenCV has no GUI support (opencv-python-headless); "
                            "install opencv-python or write to a file") from None

    def write(self, image: np.ndarray) -> None:
        cv2.imshow(self.title, _as_bgr(_check_u8(image, self.where)))
        self.frames += 1
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise SinkClosed()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass


class VirtualCamSink(_SizedSink):
    """A virtual webcam through pyvirtualcam (optional), opened on the first frame."""

    modes = ("composite",)
    prefers = "composite"

    def __init__(self, fps: float = 25.0, device: str | None = None):
        try:
            import pyvirtualcam
        except ImportError:
            raise SinkError("vcam://: the virtual camera needs pyvirtualcam (pip install pyvirtualcam) "
                            "and its OS driver (v4l2loopback on Linux, OBS on Windows/macOS)") from None
        self._mod, self.fps, self.device = pyvirtualcam, fps or 25.0, device
        self.where, self._cam, self._sized, self.closed = "vcam://", None, _Sized("vcam://"), False

    def write(self, image: np.ndarray) -> None:
        img = self._sized.fit(image)
        if self._cam is None:
            try:
                self._cam = self._mod.Camera(width=img.shape[1], height=img.shape[0], fps=self.fps,
                                             device=self.device, fmt=self._mod.PixelFormat.BGR)
            except Exception as e:
                raise SinkError(f"vcam://: cannot open the virtual camera ({e})") from None
        self._cam.send(_as_bgr(img))
        self._sized.frames += 1

    def close(self) -> None:
        if not self.closed and self._cam is not None:
            self._cam.close()
        self.closed = True


class NullSink(_Sink):
    modes = MODES
    prefers = "composite"

    def __init__(self):
        self.where, self.frames, self.resized, self.closed = "null", 0, 0, False

    def write(self, image: np.ndarray) -> None:
        self.frames += 1


# ---------------------------------------------------------------- the factory

def open_sink(uri: str, fps: float = 25.0, *, codec: str | None = None, encoder: str = "auto"):
    """Open the output named by `uri` (see module docstring). `encoder`: auto | av | opencv (video files)."""
    uri = str(uri).strip()
    low = uri.lower()
    if low in ("-", "pipe:", "pipe:1", "stdout"):
        return RawPipeSink()
    if low in ("null", "null://", "none", "/dev/null"):
        return NullSink()
    if low in ("window", "display", "screen") or low.startswith(("display://", "window://")):
        return WindowSink()
    if low.startswith(("vcam://", "virtualcam://")):
        dev = uri.split("://", 1)[1] or None
        return VirtualCamSink(fps, dev)
    if not uri:
        raise SinkError("empty output: give a file, a folder/ for PNGs, '-' for stdout, 'window' or 'null'")
    if "://" in uri:
        raise SinkError(f"{uri}: unknown output scheme (display://, vcam://, null://, or a path)")
    if uri.endswith(("/", os.sep)) or "%" in uri or Path(uri).is_dir() or Path(uri).suffix.lower() == ".png":
        if Path(uri).suffix.lower() == ".png" and "%" not in uri:
            raise SinkError(f"{uri}: a PNG sequence needs a folder (out/) or a pattern (out/%05d.png)")
        return PngSink(uri)
    return VideoSink(uri, fps, codec=codec, encoder=encoder)
