"""The `wbgedge` GStreamer element: a BaseTransform over the one Pipeline (needs PyGObject and GStreamer).

    ... ! videoconvert ! wbgedge background=blur ! videoconvert ! ...

Caps: sink video/x-raw BGR, BGRx, BGRA, RGB or RGBA, any size and rate; src the same size in BGR
(output=composite), BGRA (output=rgba, or composite over background=transparent) or GRAY8 (output=alpha).
A new input size renegotiates (transform_caps / set_caps) and starts the Pipeline's stream state afresh.

Properties are PipelineConfig's fields (props.py); the Pipeline is built from them on READY -> PAUSED
(`do_start`), so a bad bundle or setting fails that state change with one error line on the bus.
Timestamps, durations, offsets, flags and metas are copied by BaseTransform's default copy_metadata.
Flushing seeks, EOS and a new stream reset the stream state (smoothing, reused depth). QoS is off by
default, so every frame is processed; with qos=true BaseTransform drops late frames and posts a QoS
message for each, never silently. The latency query adds this element's processing time.
"""
from __future__ import annotations

import sys
import time
from collections import deque

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from gi.repository import GObject, Gst, GstBase, GstVideo  # noqa: E402

from ..bundle import BundleError  # noqa: E402
from .props import INPUT_FORMATS, OUTPUT_FORMAT, config_from, output_format, properties  # noqa: E402

Gst.init(None)  # a no-op inside a GStreamer process; needed when this is imported from plain Python

PROPS = {p.name: p for p in properties()}
TO_BGR = {"RGB": cv2.COLOR_RGB2BGR, "RGBA": cv2.COLOR_RGBA2BGR, "BGRA": cv2.COLOR_BGRA2BGR,
          "BGRx": cv2.COLOR_BGRA2BGR}
CHANNELS = {"BGR": 3, "RGB": 3, "BGRx": 4, "BGRA": 4, "RGBA": 4, "GRAY8": 1}
PER_FORMAT = ("format", "colorimetry", "chroma-site")  # fields that belong to one side's format
STATS_WINDOW = 30      # frames behind the fps / latency-ms statistics
LATENCY_SLACK = 0.25   # re-announce the latency when the measured one drifts more than this from it


def _caps(formats) -> Gst.Caps:
    return Gst.Caps.from_string(f"video/x-raw, format=(string){{ {', '.join(formats)} }}, "
                                "width=(int)[1, 32768], height=(int)[1, 32768], "
                                "framerate=(fraction)[0/1, 2147483647/1]")


SINK_CAPS, SRC_CAPS = _caps(INPUT_FORMATS), _caps(OUTPUT_FORMAT.values())


class _Side:
    """One pad's negotiated frame layout."""

    def __init__(self, caps: Gst.Caps):
        info = GstVideo.VideoInfo.new_from_caps(caps)
        self.format = GstVideo.VideoFormat.to_string(info.finfo.format)
        self.width, self.height, self.size = info.width, info.height, info.size
        self.channels, self.stride = CHANNELS[self.format], info.stride[0]

    def view(self, mem) -> np.ndarray:
        """The mapped buffer as u8 (H, W) or (H, W, C), rows `stride` bytes apart (no copy)."""
        c = self.channels
        shape, strides = ((self.height, self.width), (self.stride, 1)) if c == 1 else \
            ((self.height, self.width, c), (self.stride, c, 1))
        return np.ndarray(shape, np.uint8, buffer=mem, strides=strides)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class WbgEdge(GstBase.BaseTransform):
    __gtype_name__ = "GstWbgEdge"  # instances are then named wbgedge0, wbgedge1, ...
    __gstmetadata__ = ("wbg-edge background removal", "Filter/Effect/Video",
                       "Real-time background removal (depth -> matting -> refiner): composite, BGRA or alpha",
                       "wbg-edge")
    __gsttemplates__ = (Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, SINK_CAPS),
                        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, SRC_CAPS))
    __gproperties__ = {
        **{p.name: p.gspec(GObject.ParamFlags.READWRITE | Gst.PARAM_MUTABLE_READY) for p in PROPS.values()},
        "fps": (float, "fps", "frames per second through the element (last 30 frames)", 0.0, 1e9, 0.0,
                GObject.ParamFlags.READABLE),
        "latency-ms": (float, "latency-ms", "mean processing time per frame in ms (last 30 frames)", 0.0, 1e9, 0.0,
                       GObject.ParamFlags.READABLE),
    }

    def __init__(self):
        super().__init__()
        self.set_in_place(False)
        self._values = {p.name: p.default for p in PROPS.values()}
        self._pipe = None
        self._in = self._out = None
        self._bgr = None                 # BGR frame converted from RGB / BGRx / RGBA input
        self._times: deque[tuple[float, float]] = deque(maxlen=STATS_WINDOW)  # (end, ms) per frame
        self._latency_ns = 0             # what the latency query adds

    # ------------------------------------------------------------------ properties
    def do_get_property(self, prop):
        t = list(self._times)  # (a snapshot: the streaming thread appends meanwhile)
        if prop.name == "fps":
            return (len(t) - 1) / (t[-1][0] - t[0][0]) if len(t) > 1 and t[-1][0] > t[0][0] else 0.0
        if prop.name == "latency-ms":
            return sum(ms for _, ms in t) / len(t) if t else 0.0
        return self._values[prop.name]

    def do_set_property(self, prop, value):
        if self._pipe is not None:
            Gst.warning(f"wbgedge: {prop.name} takes effect at the next READY -> PAUSED")
        self._values[prop.name] = value

    # ------------------------------------------------------------------ start / stop
    def do_start(self):
        try:
            from ..pipeline import Pipeline  # (onnxruntime loads here, not when GStreamer scans the plugin)
            self._pipe = Pipeline(config_from(self._values))
        except Exception as e:  # any failure becomes one error line on the bus, never a traceback
            self._start_error(e)
            return False
        self._times.clear()
        return True

    def do_stop(self):
        if self._pipe is not None:
            self._pipe.close()
        self._pipe = self._in = self._out = self._bgr = None
        return True

    def _start_error(self, e: Exception) -> None:
        line = _one_line(e)
        bundle = self._values["bundle"] or "the shipped bundle"
        if isinstance(e, BundleError):
            code, text = Gst.ResourceError.OPEN_READ, (
                f"{line} (bundle={bundle} must be a model bundle folder: manifest.json and the model files it lists)")
        elif isinstance(e, (ValueError, OSError)):
            code, text = Gst.ResourceError.SETTINGS, f"bad property: {line}"
        else:
            code, text = Gst.ResourceError.FAILED, f"cannot start on bundle={bundle}: {line}"
        self._error(Gst.ResourceError.quark(), code, text, f"{type(e).__name__} while building the Pipeline")

    def _error(self, domain: int, code, text: str, debug: str) -> None:
        """GST_ELEMENT_ERROR: one line of text, one line of debug info."""
        caller = sys._getframe(1)  # where GStreamer's C macro would say the error was raised
        self.message_full(Gst.MessageType.ERROR, domain, code, text, debug, __file__, caller.f_code.co_name,
                          caller.f_lineno)

    # ------------------------------------------------------------------ caps
    def _src_format(self) -> list[str]:
        fmt = output_format(self._values["output"], self._values["background"])
        return [fmt] if fmt else list(OUTPUT_FORMAT.values())  # a bad `output` fails in do_start

    def do_transform_caps(self, direction, caps, filt):
        # The other side has the same size and rate; only the format (and what depends on it) changes.
        other = _caps(self._src_format()) if direction == Gst.PadDirection.SINK else SINK_CAPS
        free = Gst.Caps.new_empty()
        for i in range(caps.get_size()):
            s = caps.get_structure(i).copy()
            for name in PER_FORMAT:
                s.remove_field(name)
            free.append_structure(s)
        out = free.intersect(other)
        return filt.intersect_full(out, Gst.CapsIntersectMode.FIRST) if filt else out

    def do_set_caps(self, incaps, outcaps):
        old = self._in
        self._in, self._out = _Side(incaps), _Side(outcaps)
        size = (self._in.height, self._in.width)
        self._bgr = np.empty((*size, 3), np.uint8) if self._in.format != "BGR" else None
        if old is None or (old.height, old.width) != size:
            self._warm_up(*size)
        return True

    def do_transform_size(self, direction, caps, size, othercaps):
        return True, GstVideo.VideoInfo.new_from_caps(othercaps).size

    def do_decide_allocation(self, query):
        # Without a pool from downstream (fakesink, appsink, most encoders) BaseTransform allocates every
        # output buffer afresh (fresh memory to fault in): measured ~1 ms more per 720p frame than a pool.
        if query.get_n_allocation_pools() == 0:
            caps = query.parse_allocation()[0]
            size = GstVideo.VideoInfo.new_from_caps(caps).size
            pool = GstVideo.VideoBufferPool.new()
            config = pool.get_config()
            Gst.BufferPool.config_set_params(config, caps, size, 2, 0)
            pool.set_config(config)
            query.add_allocation_pool(pool, size, 2, 0)
        return GstBase.BaseTransform.do_decide_allocation(self, query)

    def _warm_up(self, h: int, w: int) -> None:
        """First runs at a new size are slow (allocation, kernel choice): do them now, not on a live frame,
        and take the second as the latency until frames are measured. Leaves no stream state behind."""
        self._pipe.warmup(h, w, frames=1)
        t0 = time.perf_counter()
        self._pipe.warmup(h, w, frames=1)
        self._set_latency(time.perf_counter() - t0)
        self._times.clear()

    # ------------------------------------------------------------------ latency, events
    def _set_latency(self, seconds: float) -> None:
        self._latency_ns = int(seconds * Gst.SECOND)
        self.post_message(Gst.Message.new_latency(self))  # the pipeline queries the latency again

    def do_gst_base_transform_query(self, direction, query):  # (do_query: Gst.Element has one too)
        if query.type == Gst.QueryType.LATENCY and direction == Gst.PadDirection.SRC:
            if not self.get_static_pad("sink").peer_query(query):
                return False
            live, lo, hi = query.parse_latency()
            ours = self._latency_ns
            query.set_latency(live, lo + ours, hi if hi == Gst.CLOCK_TIME_NONE else hi + ours)
            return True
        return GstBase.BaseTransform.do_query(self, direction, query)

    def do_sink_event(self, event):
        # A flushing seek, the end of a stream or a new one: what follows is not a continuation.
        if event.type in (Gst.EventType.FLUSH_STOP, Gst.EventType.EOS, Gst.EventType.STREAM_START) \
                and self._pipe is not None:
            self._pipe.reset()
        return GstBase.BaseTransform.do_sink_event(self, event)

    # ------------------------------------------------------------------ frames
    def do_transform(self, inbuf, outbuf):
        t0 = time.perf_counter()
        ok_in, src = inbuf.map(Gst.MapFlags.READ)
        if not ok_in:
            return self._flow_error("cannot map the input buffer")
        ok_out, dst = outbuf.map(Gst.MapFlags.WRITE)
        if not ok_out:
            inbuf.unmap(src)
            return self._flow_error("cannot map the output buffer")
        try:
            self._frame(src.data, dst.data)
        except Exception as e:  # one line on the bus, not a traceback
            return self._flow_error(f"frame {self._pipe.info()['frames']}: {_one_line(e)}")
        finally:
            outbuf.unmap(dst)
            inbuf.unmap(src)
        self._measure(t0)
        return Gst.FlowReturn.OK

    def _frame(self, src, dst) -> None:
        """src -> BGR -> Pipeline.process -> dst (the numpy views end with this call, before the unmaps)."""
        frame = self._in.view(src)
        if self._bgr is not None:
            frame = cv2.cvtColor(frame, TO_BGR[self._in.format], dst=self._bgr)
        np.copyto(self._out.view(dst), self._pipe.process(frame).image)

    def _flow_error(self, text: str):
        self._error(Gst.StreamError.quark(), Gst.StreamError.FAILED, f"wbgedge: {text}", "in do_transform")
        return Gst.FlowReturn.ERROR

    def _measure(self, t0: float) -> None:
        now = time.perf_counter()
        self._times.append((now, (now - t0) * 1e3))
        if len(self._times) == STATS_WINDOW:
            ms = sorted(m for _, m in self._times)[STATS_WINDOW // 2]
            if abs(ms * 1e6 - self._latency_ns) > LATENCY_SLACK * self._latency_ns:
                self._set_latency(ms / 1e3)


GObject.type_register(WbgEdge)
