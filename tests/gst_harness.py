"""Drives `appsrc ! wbgedge ! appsink` for tests/test_gst.py, under the Python that has PyGObject (the
system's, with the venv's site-packages on PYTHONPATH and the element on GST_PLUGIN_PATH).

    python3 tests/gst_harness.py JOB.json

JOB.json: {"frames": "in.npz", "out": "out.npz", "jobs": [{"props": {...}, "format": "BGR",
           "order": ["f0", "f1", ...], "seek_before": [3]}]}
Each job pushes the BGR frames named in `order` (converted to `format`; a new size or format sets new
caps mid-stream) one at a time and pulls each result, so a flushing seek before frame k lands between
two frames. Writes, per job j and frame i: `j{j}_{i}` (the output frame) and, in `j{j}_meta` (JSON),
the output buffers' timestamps, offsets, flags and reference-timestamp metas, the latency the element
adds to a latency query, its fps / latency-ms properties and the bus errors.
"""
import json
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstVideo", "1.0")
import numpy as np  # noqa: E402
from gi.repository import Gst, GstApp, GstVideo  # noqa: E402, F401 (GstApp: appsrc / appsink methods)

Gst.init(None)
FRAME_NS = Gst.SECOND // 25
REF_CAPS = Gst.Caps.from_string("timestamp/x-wbg-edge-test")


def convert(bgr: np.ndarray, fmt: str) -> np.ndarray:
    """BGR -> fmt; the 4th byte of x / A formats is noise the element must ignore."""
    noise = np.random.default_rng(0).integers(0, 256, bgr.shape[:2] + (1,), dtype=np.uint8)
    rgb = bgr[:, :, ::-1]
    return {"BGR": bgr, "RGB": rgb, "BGRx": np.concatenate([bgr, noise], 2), "BGRA": np.concatenate([bgr, noise], 2),
            "RGBA": np.concatenate([rgb, noise], 2)}[fmt]


def to_buffer(img: np.ndarray, info: GstVideo.VideoInfo, i: int) -> Gst.Buffer:
    h, w, c = img.shape
    rows = np.zeros((h, info.stride[0]), np.uint8)  # GStreamer rows are padded to 4 bytes
    rows[:, :w * c] = img.reshape(h, w * c)
    buf = Gst.Buffer.new_wrapped(rows.tobytes())
    buf.pts, buf.dts, buf.duration = 1000 + i * FRAME_NS, 500 + i * FRAME_NS, FRAME_NS
    buf.offset, buf.offset_end = i, i + 1
    if i == 0:
        buf.set_flags(Gst.BufferFlags.DISCONT)
    buf.add_reference_timestamp_meta(REF_CAPS, 7000 + i, Gst.CLOCK_TIME_NONE)
    return buf


def from_sample(sample: Gst.Sample) -> tuple[np.ndarray, dict]:
    buf, info = sample.get_buffer(), GstVideo.VideoInfo.new_from_caps(sample.get_caps())
    fmt = GstVideo.VideoFormat.to_string(info.finfo.format)
    c = {"BGR": 3, "BGRA": 4, "GRAY8": 1}[fmt]
    ok, m = buf.map(Gst.MapFlags.READ)
    rows = np.frombuffer(m.data, np.uint8)[:info.stride[0] * info.height].reshape(info.height, info.stride[0])
    img = rows[:, :info.width * c].reshape((info.height, info.width, c) if c > 1 else (info.height, info.width))
    img = img.copy()
    del rows
    buf.unmap(m)
    ref = buf.get_reference_timestamp_meta(REF_CAPS)
    return img, {"pts": buf.pts, "dts": buf.dts, "duration": buf.duration, "offset": buf.offset,
                 "offset_end": buf.offset_end, "discont": bool(buf.get_flags() & Gst.BufferFlags.DISCONT),
                 "ref": ref.timestamp if ref else None,
                 "format": fmt}


def run(job: dict, frames, out: dict, j: int) -> None:
    props = " ".join(f"{k}={v}" for k, v in job.get("props", {}).items())
    pipe = Gst.parse_launch(f"appsrc name=src format=time stream-type=seekable ! wbgedge name=e {props} "
                            "! appsink name=sink sync=false")
    src, sink, elem = pipe.get_by_name("src"), pipe.get_by_name("sink"), pipe.get_by_name("e")
    src.connect("seek-data", lambda *a: True)
    meta: dict = {"buffers": [], "errors": [], "latency": []}
    bus = pipe.get_bus()

    def errors() -> bool:
        while (msg := bus.pop_filtered(Gst.MessageType.ERROR)) is not None:
            err, debug = msg.parse_error()
            meta["errors"].append({"text": err.message, "debug": debug, "domain": err.domain})
        return bool(meta["errors"])

    if pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE or errors():
        errors()
        pipe.set_state(Gst.State.NULL)
        out[f"j{j}_meta"] = json.dumps(meta)
        return
    fmt, caps_key = job.get("format", "BGR"), None
    for i, name in enumerate(job["order"]):
        if i in job.get("seek_before", []):
            pipe.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH, 0)
        img = convert(frames[name], fmt)
        if caps_key != (img.shape, fmt):
            caps_key = (img.shape, fmt)
            caps = Gst.Caps.from_string(f"video/x-raw,format={fmt},width={img.shape[1]},height={img.shape[0]},"
                                        "framerate=25/1")
            src.set_caps(caps)
            info = GstVideo.VideoInfo.new_from_caps(caps)
        src.push_buffer(to_buffer(img, info, i))
        sample = sink.try_pull_sample(30 * Gst.SECOND)
        if sample is None:
            errors()
            break
        img_out, m = from_sample(sample)
        out[f"j{j}_{i}"] = img_out
        meta["buffers"].append(m)
        if i == 0:
            meta["latency"] = latency(elem)
    meta["fps"], meta["latency_ms"] = elem.get_property("fps"), elem.get_property("latency-ms")
    src.end_of_stream()
    meta["eos"] = sink.try_pull_sample(10 * Gst.SECOND) is None and sink.is_eos()
    errors()
    pipe.set_state(Gst.State.NULL)
    out[f"j{j}_meta"] = json.dumps(meta)


def latency(elem) -> list:
    """[what the latency query answers below the element, what it answers after it]"""
    res = []
    for pad in (elem.get_static_pad("sink").get_peer(), elem.get_static_pad("src")):
        q = Gst.Query.new_latency()
        res.append(list(q.parse_latency()) if pad.query(q) else None)
    return res


def main(path: str) -> None:
    spec = json.load(open(path))
    frames = dict(np.load(spec["frames"]))
    out: dict = {}
    for j, job in enumerate(spec["jobs"]):
        run(job, frames, out, j)
    np.savez(spec["out"], **out)


if __name__ == "__main__":
    main(sys.argv[1])
