"""Video files: PyAV when installed (H.264, ProRes 4444 / VP9 with alpha, qtrle), else OpenCV (mp4v, MJPG).

A file being written is never the target path: frames go to `<name>.partial-<pid><ext>` beside it,
renamed onto the target by `close()` (which also runs after a write error), so the target only ever
holds a finished file and an earlier finished file stays until the new one replaces it. The partial
name is visible on purpose: a run that is killed (SIGKILL, OOM killer) leaves it, and it plays:
- PyAV writes MP4/MOV fragmented (the index up front, a fragment every second) and hands every packet
  to the OS as it is muxed, so the file plays up to its last fragment; MKV/WebM/AVI need no trailer.
- OpenCV cannot fragment MP4, whose index is written last (a killed one has no moov atom and is lost),
  so an .mp4 or .m4v it writes is mirrored into `<name>.partial-<pid>.mkv` (Matroska plays without its
  trailer), deleted once the MP4 is finished; it lacks at most what OpenCV's writer still buffered
  (about half a megabyte). This is the fallback when PyAV is missing; `note` says so.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .base import MODES, SinkBase, SinkError, as_bgr, as_bgra, check_target, have_av

ALPHA_VIDEO = {".mov": "prores_ks", ".webm": "libvpx-vp9"}   # containers written with alpha by default
PLAIN_VIDEO = {".mp4", ".m4v", ".mkv", ".avi"}
ALPHA_CODECS = ("prores_ks", "libvpx-vp9", "qtrle", "png")
OPENCV_FOURCC = {"mpeg4": "mp4v", "mjpeg": "MJPG"}           # all OpenCV writes: FFmpeg encoder -> FourCC
OPENCV_ALIASES = {"mp4v": "mpeg4", "mjpg": "mjpeg"}          # the FourCC names for them, accepted too
NO_TRAILER_NEEDED = (".mkv", ".avi")                         # play after a kill as OpenCV writes them


def partial_path(path: Path, suffix: str) -> Path:
    """The name a file is written under until it is finished (visible, see the module docstring)."""
    return path.with_name(f"{path.stem}.partial-{os.getpid()}{suffix}")


def _check_av_encoder(codec: str, where: str) -> None:
    import av

    try:
        kind = av.codec.Codec(codec, "w").type
    except ValueError:  # av.codec.codec.UnknownCodecError
        raise SinkError(f"{where}: no video encoder named {codec!r} in PyAV's FFmpeg "
                        f"(e.g. libx264, mpeg4, mjpeg, prores_ks, qtrle, libvpx-vp9)") from None
    if kind != "video":
        raise SinkError(f"{where}: {codec!r} is an {kind} encoder, not a video one")


class VideoSink(SinkBase):
    """A video file (see the module docstring). `encoder`: auto (PyAV when installed) | av | opencv."""

    threadable = True  # may write on a thread of its own (wbg_edge.stream), one frame at a time

    def __init__(self, path: str, fps: float = 25.0, codec: str | None = None, encoder: str = "auto",
                 quality: int = 20):
        super().__init__(str(path))
        self.path = Path(path)
        check_target(self.path, self.where)
        self.fps, self.quality = float(fps) if fps and fps > 0 else 25.0, int(quality)
        ext = self.path.suffix.lower()
        if not ext:
            raise SinkError(f"{path}: no file extension; name a video (.mp4, .mov, ...) or end with '/' "
                            f"for a PNG folder")
        if ext not in PLAIN_VIDEO and ext not in ALPHA_VIDEO:
            raise SinkError(f"{path}: unknown video type {ext!r} (.mp4 .mkv .avi .m4v, or .mov .webm with alpha)")
        if encoder not in ("auto", "av", "opencv"):
            raise SinkError(f"{path}: encoder must be auto, av or opencv (got {encoder!r})")
        if encoder == "av" and not have_av():
            raise SinkError(f"{path}: encoder 'av' needs PyAV: pip install av")
        self.encoder = "av" if encoder == "av" or (encoder == "auto" and have_av()) else "opencv"
        self._mirror_path: Path | None = None
        if self.encoder == "av":
            self.codec = codec or ALPHA_VIDEO.get(ext) or ("mjpeg" if ext == ".avi" else "libx264")
            _check_av_encoder(self.codec, self.where)
        else:
            self.codec = self._opencv_codec(codec, ext)
            fourcc = OPENCV_FOURCC[self.codec]
            if ext not in NO_TRAILER_NEEDED:
                self._mirror_path = partial_path(self.path, ".mkv")
            self.note = (f"PyAV is not installed: OpenCV writes {ext} files as {self.codec} ({fourcc}), no H.264"
                         + (f"; until an {ext} is finished its frames also go to <name>.partial-<pid>.mkv beside "
                            f"it, which plays if the run is killed" if self._mirror_path else "")
                         + "; pip install av")
        self.modes = MODES if self.codec in ALPHA_CODECS else ("composite", "alpha")
        self.prefers = "rgba" if self.codec in ALPHA_CODECS else "composite"
        self._tmp = partial_path(self.path, ext)
        self._out = None      # opened on the first frame, when the size is known
        self._mirror = None   # OpenCV's Matroska copy of an MP4 being written
        self._stream = None
        self._even: tuple[int, int] | None = None

    def _opencv_codec(self, codec: str | None, ext: str) -> str:
        if ext in ALPHA_VIDEO:
            raise SinkError(f"{self.where}: writing {ext} (with alpha) needs PyAV: pip install av; or write .mp4, "
                            f".mkv, .avi or a PNG folder/")
        if codec is None:
            return "mjpeg" if ext == ".avi" else "mpeg4"
        name = OPENCV_ALIASES.get(codec.lower(), codec.lower())
        if name not in OPENCV_FOURCC:
            raise SinkError(f"{self.where}: codec {codec!r} needs PyAV (pip install av); without it OpenCV "
                            f"writes only mpeg4 (mp4v) or mjpeg")
        return name

    def write(self, image: np.ndarray, name: str | None = None) -> None:
        img = self._fit(image)
        if self._out is None:
            self._open(img.shape[1], img.shape[0])
        try:
            if self.encoder == "av":
                self._write_av(img)
            else:
                bgr = as_bgr(img) if self._even is None else self._pad(as_bgr(img))
                self._out.write(bgr)
                if self._mirror is not None:
                    self._mirror.write(bgr)
        except OSError as e:
            raise SinkError(f"{self.where}: write failed after {self.frames} frames ({e.strerror or e})") from None
        except Exception as e:  # av.error.FFmpegError and friends
            raise SinkError(f"{self.where}: write failed after {self.frames} frames ({e})") from None
        self.frames += 1

    def _open(self, w: int, h: int) -> None:
        # 4:2:0 and 4:2:2 codecs need even sides: pad odd frames by one replicated row/column.
        ew, eh = w + (w & 1), h + (h & 1)
        self._even = (ew, eh) if (ew, eh) != (w, h) and self.codec != "qtrle" else None
        if self._even:
            w, h = ew, eh
        try:
            if self.encoder == "av":
                self._open_av(w, h)
            else:
                self._out = self._open_cv(self._tmp, w, h)
                if self._mirror_path is not None:
                    self._mirror = self._open_cv(self._mirror_path, w, h)
        except Exception as e:
            self._discard()
            if isinstance(e, SinkError):
                raise
            raise SinkError(f"{self.where}: cannot start the {self.codec} encoder ({e})") from None

    def _open_cv(self, path: Path, w: int, h: int):
        fourcc = OPENCV_FOURCC[self.codec]
        out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), self.fps, (w, h))
        if not out.isOpened():
            raise SinkError(f"{self.where}: OpenCV could not open a {fourcc} writer for {path.name}")
        return out

    def _discard(self) -> None:
        """Drop a writer that failed to start, and its files."""
        for out in (self._out, self._mirror):
            if out is not None:
                try:
                    out.close() if self.encoder == "av" else out.release()
                except Exception:
                    pass
        self._out = self._mirror = self._stream = None
        for p in (self._tmp, self._mirror_path):
            if p is not None:
                p.unlink(missing_ok=True)

    def _pad(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.copyMakeBorder(img, 0, self._even[1] - h, 0, self._even[0] - w, cv2.BORDER_REPLICATE)

    def _open_av(self, w: int, h: int) -> None:
        import av
        # MP4/MOV are written fragmented (a moof every ~second, moov up front), so a file cut short by a
        # full disk, a kill or a power loss still plays up to the last fragment; MKV/WebM stream anyway.
        # Each packet is handed to the OS as it is muxed: FFmpeg's own buffer held the first 256 kB (seconds
        # of a small video) in the process, lost with it on a kill.
        opts = {"flush_packets": "1"}
        if self.path.suffix.lower() in (".mp4", ".m4v", ".mov"):
            opts |= {"movflags": "+empty_moov+default_base_moof", "frag_duration": "1000000"}
        self._out = av.open(str(self._tmp), mode="w", options=opts)
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
        if self.keeps_alpha:
            img = as_bgra(img)
            fmt = "bgra"
        else:
            img = as_bgr(img)
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
                if self.encoder == "av":
                    try:
                        for packet in self._stream.encode(None):
                            self._out.mux(packet)
                    finally:
                        self._out.close()
                else:
                    self._out.release()
            except Exception as e:  # a full disk can fail the trailer too; report, keep what exists
                err = e
        if self._mirror is not None:
            self._mirror.release()
        if self.frames and self._tmp.exists():
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
        if self._mirror_path is not None and (err is None or not self.frames):
            self._mirror_path.unlink(missing_ok=True)  # the MP4 is finished: its safety copy goes
        if err is not None:
            keep = f"; {self._mirror_path.name} has every frame" if self._mirror_path and self.frames else ""
            raise SinkError(f"{self.where}: finishing the file failed ({err}); it may be incomplete{keep}")
