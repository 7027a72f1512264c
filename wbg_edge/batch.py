"""Batch background removal over many inputs: a local process pool, or a Ray Data job (issue 11).

    inputs (videos, image folders, list files) -> plan: one Item per input, cut into Units
    -> executor (local pool | Ray actors), each worker holding one Pipeline, runs Units
    -> finish: stitch chunked Units in order, rename into OUTDIR, write the resume record

Contracts:
- `OUTDIR/<input name>` is the output of one input (a folder for an image folder, or for `--format png`).
  Nothing is written outside OUTDIR; partial files live only under `OUTDIR/.wbg-batch/tmp` and every
  output appears by one rename, so readers (and `--resume`) see a complete output or none.
- A Unit is frames [start, stop) of one input; a long video gives several, each decoded from
  `start - overlap` so temporal smoothing is warm at `start` (the overlap frames are not written).
  Chunks are written as lossless PNG parts and stitched in order by the driver.
- With `batch_size` N > 1 a worker hands its Pipeline N frames at a time (`Pipeline.process_batch`: one
  depth, one coarse and one refiner call for the N frames, same frames out as `process`), so the batch
  size is not part of the resume record.
- `OUTDIR/.wbg-batch/<output name>.json` records what made a finished output (input size/mtime,
  bundle manifest hash, options hash, frame count); `--resume` skips outputs whose record matches.
- Workers never raise for a bad input: each Unit returns a result dict with `error` set instead,
  so one corrupt input is reported by name and the others complete. A worker that dies is retried
  (local pool: a new pool; Ray: actor restart + task retry), and a retried Unit overwrites by rename.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

STATE_DIR = ".wbg-batch"
LIST_EXTS = (".txt", ".lst", ".list")
OUTPUT_FORMATS = ("same", "mp4", "mkv", "avi", "m4v", "mov", "webm", "png")
RAY_EXTRA_HINT = "--ray needs Ray: pip install 'wbg-edge[batch]'"


class BatchError(ValueError):
    """A batch job that cannot start (bad arguments, clashing names); one line."""


@dataclass(frozen=True)
class BatchConfig:
    """How to run a batch job; the CLI fills it from `wbg-edge batch` flags (1:1)."""
    outdir: Path
    workers: int | None = None        # None: one per GPU, else one per core (local); Ray: see batch_ray
    ray: str | None = None            # None: local pool; "auto": start a local Ray; else a cluster address
    resume: bool = False
    chunk_frames: int = 600           # videos longer than this are cut into chunks (0: never)
    overlap: int = 8                  # frames decoded before each chunk to warm temporal smoothing
    summary: Path | None = None       # default OUTDIR/batch-summary.json
    retries: int = 2                  # extra attempts for a Unit whose worker died (local pool)
    batch_size: int = 1               # frames per Pipeline.process_batch call in each worker (see bench/RESULTS.md)


@dataclass(frozen=True)
class Unit:
    """Frames [start, stop) of one input (stop None: to the end), decoded from start - warmup."""
    name: str                         # output name inside OUTDIR, also the Item key
    input: str
    kind: str                         # "video" | "images"
    index: int = 0                    # chunk number
    chunks: int = 1
    start: int = 0
    stop: int | None = None
    warmup: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @staticmethod
    def from_json(s: str) -> Unit:
        return Unit(**json.loads(s))


@dataclass
class Item:
    """One input and its output; filled in as its Units finish."""
    name: str
    input: str
    kind: str
    expected_frames: int
    units: list[Unit] = field(default_factory=list)
    status: str = "pending"           # pending | done | skipped | failed | stopped
    frames: int = 0
    seconds: float = 0.0              # worker time summed over Units
    error: str = ""
    results: dict[int, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """What every worker needs, picklable: the Pipeline config plus where and how to write."""
    pipeline_config: Any              # wbg_edge.pipeline.PipelineConfig
    outdir: str
    output_mode: str | None = None    # composite | rgba | alpha; None: the Pipeline's own (config.mode)
    format: str = "same"              # output container: "same" as the input, or an extension (mp4, mov, png...)
    threads: int = 0                  # inference threads per worker (0: leave the Pipeline's default)
    batch_size: int = 1               # frames per process_batch call (run_batch sets it from BatchConfig)


# ---------------------------------------------------------------- inputs and plan

def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Videos and image folders as given; a list file (.txt/.lst) adds the paths it lists, one a line
    (relative to the list file; blank lines and # comments skipped). Order kept, duplicates dropped."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix.lower() in LIST_EXTS:
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line).expanduser()
                    out.append(q if q.is_absolute() else p.parent / q)
        else:
            out.append(p)
    seen: set[Path] = set()
    uniq = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            uniq.append(p)
    return uniq


def image_files(folder: Path) -> list[Path]:
    """The images of a folder input, as `open_source` reads them (sorted by name)."""
    from wbg_edge.sources import IMAGE_EXTS

    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)


def output_name(inp: Path, kind: str, fmt: str) -> str:
    """`clip.mp4` -> `clip.mp4`; with --format mov -> `clip.mov`; png or an image folder -> a folder."""
    inp = Path(os.path.abspath(inp))  # `..`, `.`, `x/..` name the folder they point at, not OUTDIR's parent
    if kind == "images":
        return inp.name if fmt in ("same", "png") else f"{inp.name}.{fmt}"
    if fmt == "same":  # a container the sinks cannot write (.mpg, .ts, ...) becomes .mp4
        return inp.name if inp.suffix.lower().lstrip(".") in OUTPUT_FORMATS else f"{inp.stem}.mp4"
    if fmt == "png":
        return inp.stem
    return f"{inp.stem}.{fmt}"


def probe(inp: Path) -> tuple[str, int]:
    """(kind, frame count estimate) of an input, opened by `open_source` as the workers will open it.
    Raises OSError with a one-line reason naming the input (missing, corrupt, empty)."""
    from wbg_edge.sources import SourceError, open_source

    if not inp.exists():
        raise OSError(f"{inp}: no such file or folder")
    kind = "images" if inp.is_dir() else "video"
    try:
        with open_source(str(inp), live=False) as src:
            while src.read(timeout=1.0) is None:
                if src.finished:
                    raise OSError(f"{inp}: no decodable frame (corrupt or empty)")
            return kind, max(int(src.count or 1), 1)
    except SourceError as e:
        raise OSError(str(e)) from None


def split_units(name: str, inp: str, kind: str, frames: int, chunk: int, overlap: int) -> list[Unit]:
    """Cut a video into chunks of `chunk` frames; the last runs to the end (frame counts from headers
    can be off, so no frame is ever dropped by trusting them)."""
    if kind != "video" or chunk <= 0 or frames <= chunk + chunk // 2:
        return [Unit(name, inp, kind)]
    n = max(1, round(frames / chunk))
    bounds = [round(i * frames / n) for i in range(n)] + [None]
    return [Unit(name, inp, kind, index=i, chunks=n, start=bounds[i], stop=bounds[i + 1],
                 warmup=min(overlap, bounds[i])) for i in range(n)]


# ---------------------------------------------------------------- fingerprints and resume records

def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def input_fingerprint(inp: Path) -> str:
    """Changes when the input changes: size + mtime of the file, or of every image of a folder."""
    files = image_files(inp) if inp.is_dir() else [inp]
    return _sha([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])


def bundle_fingerprint(pipeline_config: Any) -> str:
    """SHA-256 of the bundle's manifest.json (which holds every model file's SHA-256). A bundle that
    does not load stops the job here with the bundle's one-line BundleError, before any worker starts."""
    from wbg_edge.bundle import default_bundle_dir, load_bundle

    root = Path(getattr(pipeline_config, "bundle", None) or default_bundle_dir())
    load_bundle(root)
    return hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()


def options_fingerprint(job: Job) -> str:
    cfg = job.pipeline_config
    cfg_d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg)
    return _sha({"pipeline": cfg_d, "mode": job.output_mode, "format": job.format})


def record_path(outdir: Path, name: str) -> Path:
    return outdir / STATE_DIR / f"{name}.json"


def is_complete(outdir: Path, item: Item, want: dict) -> bool:
    """The output exists and its record was made from this input, bundle and options."""
    rec_p, out_p = record_path(outdir, item.name), outdir / item.name
    if not (rec_p.is_file() and out_p.exists()):
        return False
    try:
        rec = json.loads(rec_p.read_text())
    except (OSError, ValueError):
        return False
    return all(rec.get(k) == v for k, v in want.items()) and rec.get("output_bytes") == _tree_bytes(out_p)


def _tree_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size


def _atomic_json(path: Path, obj: Any) -> None:
    from wbg_edge.bundle import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


# ---------------------------------------------------------------- Pipeline, sources and sinks (public APIs)

def make_pipeline(config: Any, threads: int = 0) -> Any:
    from wbg_edge.pipeline import Pipeline

    if threads and getattr(config, "threads", None) is None:
        config = dataclasses.replace(config, threads=threads)
    return Pipeline(config)


class _DropFirst:
    """A sink that discards the first `n` frames (the warm-up overlap of a chunk) and forwards the rest."""

    def __init__(self, sink: Any, n: int):
        self.sink, self.n = sink, n
        self.threadable = getattr(sink, "threadable", False)  # so run_stream encodes on its writer thread

    def write(self, image: np.ndarray) -> None:
        if self.n > 0:
            self.n -= 1
        else:
            self.sink.write(image)


class _Batches:
    """The Pipeline as `run_stream` sees it when frames go `n` at a time through `process_batch` (same
    Mattes as `process`). The sink's writer queue holds a batch, so its encoding overlaps the next batch's
    inference: the Pipeline keeps those n + 1 earlier Mattes valid (`keep`)."""

    def __init__(self, pipeline: Any, n: int):
        self.pipeline, self.n = pipeline, n

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Any]:
        chunk: list[np.ndarray] = []
        for f in frames:
            chunk.append(f)
            if len(chunk) == self.n:
                yield from self.pipeline.process_batch(chunk, keep=self.n + 1)
                chunk = []
        if chunk:
            yield from self.pipeline.process_batch(chunk, keep=self.n + 1)


def _sink_uri(target: Path, pngs: bool) -> str:
    return f"{target}{os.sep}" if pngs else str(target)


def process_to(pipeline: Any, unit: Unit, target: Path, job: Job, lossless_parts: bool = False) -> int:
    """Run the Unit's frames through the Pipeline into `target`, with the loop of `wbg-edge run`
    (`stream.run_stream`: same decoder, same output image, same sink). `target` is a video file, or a
    folder of PNGs for image-folder inputs, `--format png` and chunk parts. Returns frames written."""
    from wbg_edge.sinks import open_sink
    from wbg_edge.sources import open_source
    from wbg_edge.stream import StreamStats, run_stream

    pipeline.reset()
    pngs = lossless_parts or job.format == "png" or (unit.kind == "images" and job.format == "same")
    mode = job.output_mode or pipeline.mode
    with open_source(unit.input, live=False) as src:
        for _ in range(unit.start - unit.warmup):  # decode and drop what comes before the warm-up
            while src.read(timeout=1.0) is None:
                if src.finished:
                    raise OSError(f"{unit.input}: ended before frame {unit.start}")
        with open_sink(_sink_uri(target, pngs), fps=src.fps) as sink:
            stats = StreamStats()
            limit = None if unit.stop is None else unit.stop - unit.start + unit.warmup
            n = job.batch_size
            runner = _Batches(pipeline, n) if n > 1 else pipeline
            for _ in run_stream(src, runner, _DropFirst(sink, unit.warmup), mode=mode, max_frames=limit,
                                stats=stats, sink_queue=n):
                pass
            n = sink.frames
    if n == 0:
        raise OSError(f"{unit.input}: no frame decoded")
    return n


def stitch(parts: Sequence[Path], inp: Path, target: Path, job: Job) -> int:
    """Concatenate chunk parts (PNG folders, in order) into the final output at `target`."""
    from wbg_edge.sinks import open_sink
    from wbg_edge.sources import open_source

    with open_source(str(inp), live=False) as src:
        fps = src.fps
    with open_sink(_sink_uri(target, job.format == "png"), fps=fps) as sink:
        for part in parts:
            for f in sorted(part.glob("*.png")):
                frame = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
                if frame is None:
                    raise OSError(f"{f}: unreadable chunk frame")
                sink.write(frame)
        return sink.frames


# ---------------------------------------------------------------- worker side (pool process or Ray actor)

def _staging(outdir: Path) -> Path:
    d = outdir / STATE_DIR / "tmp" / uuid.uuid4().hex
    d.mkdir(parents=True)
    return d


def _replace(src: Path, dst: Path) -> None:
    """Rename src over dst; a folder dst is first renamed aside so the swap is one rename."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def part_dir(outdir: Path, unit: Unit) -> Path:
    return outdir / STATE_DIR / "parts" / unit.name / f"{unit.index:05d}"


class UnitRunner:
    """Holds one Pipeline (one per worker) and runs Units with it. `run` never raises for a bad input."""

    def __init__(self, job: Job):
        self.job = job
        self.pipeline: Any = None  # made on the first Unit, so a bundle that fails to load is reported per input

    def run(self, unit: Unit) -> dict:
        t0 = time.perf_counter()
        res = {"name": unit.name, "index": unit.index, "frames": 0, "error": "", "pid": os.getpid()}
        try:
            if self.pipeline is None:
                self.pipeline = make_pipeline(self.job.pipeline_config, self.job.threads)
            res["frames"] = self._run(unit)
        except Exception as e:  # noqa: BLE001 - any failure of one input is reported, not raised
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            res["error"] = msg if unit.input in msg else f"{unit.input}: {msg}"
        res["seconds"] = time.perf_counter() - t0
        return res

    def _run(self, unit: Unit) -> int:
        outdir = Path(self.job.outdir)
        stage = _staging(outdir)
        try:
            chunked = unit.chunks > 1
            target = stage / ("part" if chunked else unit.name)
            n = process_to(self.pipeline, unit, target, self.job, lossless_parts=chunked)
            dst = part_dir(outdir, unit) if chunked else outdir / unit.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            _replace(target, dst)
            return n
        finally:
            shutil.rmtree(stage, ignore_errors=True)


# Pool worker processes hold their runner here: one Pipeline per process, made on its first Unit.
_POOL_RUNNER: UnitRunner | None = None


def _cuda_devices() -> list:
    from wbg_edge.gpu import cuda_devices

    return cuda_devices()


def _pool_init(job: Job, slot: Any, gpus: int) -> None:
    global _POOL_RUNNER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle (stop event), not ours
    if gpus:  # one GPU per worker, before anything in this fresh (spawned) process touches CUDA
        with slot.get_lock():
            n, slot.value = slot.value, slot.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = str(n % gpus)
    _POOL_RUNNER = UnitRunner(job)


def _running_marker(outdir: str, unit_json: str) -> Path:
    return Path(outdir) / STATE_DIR / "tmp" / f"running-{hashlib.sha1(unit_json.encode()).hexdigest()[:16]}"


def _pool_run(unit_json: str) -> dict:
    assert _POOL_RUNNER is not None
    marker = _running_marker(_POOL_RUNNER.job.outdir, unit_json)  # left behind if this process dies
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    try:
        return _POOL_RUNNER.run(Unit.from_json(unit_json))
    finally:
        marker.unlink(missing_ok=True)


def run_local(job: Job, units: Sequence[Unit], workers: int, retries: int,
              on_result: Callable[[dict], None], stop: threading.Event | None = None, gpus: int = 0) -> None:
    """N spawned processes, each with one Pipeline. A worker that dies breaks the pool: the Units that
    were running then (their marker files are left) become suspects; the rest simply run again. Each
    suspect then runs alone, so only a Unit that kills its worker by itself uses up its `retries` and is
    reported failed. When `stop` is set, Units not started are cancelled and the running ones finish."""
    attempts = {u.to_json(): 0 for u in units}
    pending = dict.fromkeys(attempts)  # ordered set
    barren = 0  # pool breaks in a row with no Unit running (workers dying on start-up)
    ctx = multiprocessing.get_context("spawn")  # no fork: ONNX Runtime / CUDA threads do not survive it
    slot = ctx.Value("i", 0)
    while pending and not (stop and stop.is_set()):
        suspects = [u for u in pending if attempts[u]]
        batch = suspects[:1] or list(pending)
        broke = blamed = False
        with cf.ProcessPoolExecutor(max_workers=max(1, min(workers, len(batch))), mp_context=ctx,
                                    initializer=_pool_init, initargs=(job, slot, gpus)) as pool:
            futs = {pool.submit(_pool_run, u): u for u in batch}
            for fut in cf.as_completed(futs):
                if stop is not None and stop.is_set():
                    for f in futs:
                        f.cancel()
                u = futs[fut]
                if fut.cancelled():
                    continue
                try:
                    res = fut.result()
                except cf.process.BrokenProcessPool:
                    broke = True
                    marker = _running_marker(job.outdir, u)
                    if marker.exists():
                        marker.unlink()
                        attempts[u] += 1
                        blamed = True
                    if attempts[u] > retries:
                        unit = Unit.from_json(u)
                        del pending[u]
                        on_result({"name": unit.name, "index": unit.index, "frames": 0, "seconds": 0.0,
                                   "error": f"{unit.input}: worker died {attempts[u]} times on it"})
                    continue
                del pending[u]
                on_result(res)
        barren = barren + 1 if broke and not blamed else 0
        if barren > retries:
            for u in list(pending):
                unit = Unit.from_json(u)
                del pending[u]
                on_result({"name": unit.name, "index": unit.index, "frames": 0, "seconds": 0.0,
                           "error": f"{unit.input}: worker processes died before running anything"})


# ---------------------------------------------------------------- driver side: finish, progress, report

def finish_item(job: Job, item: Item, want: dict) -> None:
    """All Units of an Item are back: stitch chunks in order (atomically), write its record."""
    outdir = Path(job.outdir)
    errors = [r["error"] for _, r in sorted(item.results.items()) if r.get("error")]
    item.frames = sum(r.get("frames", 0) for r in item.results.values())
    item.seconds = sum(r.get("seconds", 0.0) for r in item.results.values())
    parts_root = outdir / STATE_DIR / "parts" / item.name
    try:
        if errors:
            item.status, item.error = "failed", errors[0]
            return
        if len(item.units) > 1:
            stage = _staging(outdir)
            try:
                target = stage / item.name
                parts = [part_dir(outdir, u) for u in item.units]
                item.frames = stitch(parts, Path(item.input), target, job)
                _replace(target, outdir / item.name)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        rec = dict(want, frames=item.frames, output=item.name, output_bytes=_tree_bytes(outdir / item.name),
                   finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        _atomic_json(record_path(outdir, item.name), rec)
        item.status = "done"
    except Exception as e:  # noqa: BLE001 - stitching one input must not stop the others
        item.status, item.error = "failed", f"{item.input}: {str(e).splitlines()[0] if str(e) else e!r}"
    finally:
        shutil.rmtree(parts_root, ignore_errors=True)


class Progress:
    """Videos done, frames/s and ETA on one stderr line (redrawn on a terminal, else every few seconds)."""

    def __init__(self, stream: TextIO | None, total_items: int, total_frames: int, every_s: float = 2.0):
        self.stream, self.total_items, self.total_frames = stream, total_items, total_frames
        self.items = self.frames = 0
        self.t0 = time.perf_counter()
        self.last = -1e9
        self.every_s = every_s
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, frames: int = 0, items: int = 0, note: str = "", force: bool = False) -> None:
        self.frames += frames
        self.items += items
        if self.stream is None:
            return
        now = time.perf_counter()
        if note:
            self.stream.write(("\r\033[K" if self.tty else "") + note + "\n")
        if not (force or note or self.tty or now - self.last >= self.every_s):
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        fps = self.frames / dt
        left = max(self.total_frames - self.frames, 0)
        eta = f"{left / fps:.0f}s" if fps > 0 else "?"
        line = (f"batch: {self.items}/{self.total_items} inputs, {self.frames}/{self.total_frames} frames, "
                f"{fps:.1f} frames/s, ETA {eta}")
        self.stream.write(("\r\033[K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")


@dataclass
class BatchReport:
    items: list[Item]
    elapsed_s: float
    executor: str
    workers: int
    summary_path: Path | None = None

    @property
    def failed(self) -> list[Item]:
        return [i for i in self.items if i.status == "failed"]

    @property
    def frames(self) -> int:
        return sum(i.frames for i in self.items if i.status == "done")

    def to_dict(self) -> dict:
        return {"executor": self.executor, "workers": self.workers, "elapsed_s": round(self.elapsed_s, 3),
                "frames": self.frames, "fps": round(self.frames / max(self.elapsed_s, 1e-9), 2),
                "done": sum(i.status == "done" for i in self.items),
                "skipped": sum(i.status == "skipped" for i in self.items), "failed": len(self.failed),
                "items": [{"input": i.input, "output": i.name, "status": i.status, "frames": i.frames,
                           "chunks": len(i.units), "seconds": round(i.seconds, 3), "error": i.error}
                          for i in self.items]}

    def table(self) -> str:
        rows = [("input", "output", "status", "frames", "s", "frames/s", "error")]
        for i in self.items:
            fps = f"{i.frames / i.seconds:.1f}" if i.seconds > 0 and i.status == "done" else "-"
            rows.append((Path(i.input).name, i.name, i.status, str(i.frames), f"{i.seconds:.1f}", fps, i.error))
        d = self.to_dict()
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        lines = ["  ".join(r[c].ljust(widths[c]) for c in range(6)) + ("  " + r[6] if r[6] else "") for r in rows]
        lines.append(f"{d['done']} done, {d['skipped']} skipped, {d['failed']} failed; {d['frames']} frames in "
                     f"{d['elapsed_s']:.1f} s = {d['fps']:.1f} frames/s ({self.executor}, {self.workers} workers)")
        return "\n".join(lines)


def plan(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, job: Job) -> tuple[list[Item], dict[str, dict]]:
    """Items for the inputs (failed ones already marked) and, per Item, the record a finished output
    must match. Raises BatchError when two inputs would write the same output."""
    items: list[Item] = []
    wants: dict[str, dict] = {}
    names: dict[str, str] = {}
    bundle_h, opts_h = bundle_fingerprint(job.pipeline_config), options_fingerprint(job)
    for inp in expand_inputs(inputs):
        guess_kind = "images" if inp.is_dir() else "video"
        name = output_name(inp, guess_kind, job.format)
        if name in ("", ".", "..", STATE_DIR, "batch-summary.json"):  # would replace OUTDIR or its bookkeeping
            raise BatchError(f"{inp}: its output name {name!r} is not a file name batch can use; rename the input")
        if (Path(cfg.outdir) / name).resolve() == inp.resolve():  # the rename at the end would delete the input
            raise BatchError(f"{inp}: its output {Path(cfg.outdir) / name} is the input itself; choose another OUTDIR")
        if name in names:
            raise BatchError(f"{inp}: its output {cfg.outdir / name} clashes with the one of {names[name]}; "
                             f"rename one input")
        names[name] = str(inp)
        try:
            kind, n = probe(inp)
        except OSError as e:
            items.append(Item(name, str(inp), guess_kind, 0, status="failed", error=str(e)))
            continue
        item = Item(name, str(inp), kind, n)
        item.units = split_units(name, str(inp), kind, n, cfg.chunk_frames, cfg.overlap)
        wants[name] = {"input": str(inp.resolve()), "input_hash": input_fingerprint(inp),
                       "bundle_hash": bundle_h, "options_hash": opts_h}
        if cfg.resume and is_complete(cfg.outdir, item, wants[name]):
            item.status = "skipped"
            item.frames = json.loads(record_path(cfg.outdir, name).read_text()).get("frames", 0)
        else:  # to be made again: an old record must not vouch for the new output before it is finished
            record_path(cfg.outdir, name).unlink(missing_ok=True)
        items.append(item)
    return items, wants


def run_batch(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, job: Job,
              stream: TextIO | None = None, stop: threading.Event | None = None) -> BatchReport:
    """Run the whole job; returns the report (also written as JSON). Failed inputs do not raise.
    Progress goes to `stream`. Setting `stop` ends the job early: Units not started are left (status
    "stopped"), finished outputs are kept and recorded, so `--resume` continues from there."""
    if cfg.workers is not None and cfg.workers < 1:
        raise BatchError(f"--workers must be at least 1, got {cfg.workers}")
    if cfg.chunk_frames < 0 or cfg.overlap < 0:
        raise BatchError(f"--chunk-frames and --chunk-overlap must be >= 0, got {cfg.chunk_frames} and {cfg.overlap}")
    if job.format not in OUTPUT_FORMATS:
        raise BatchError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, got {job.format!r}")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise BatchError(f"--batch-size must be an integer >= 1, got {cfg.batch_size!r}")
    job = dataclasses.replace(job, batch_size=cfg.batch_size)
    gpus = len(_cuda_devices())
    workers = cfg.workers or gpus or os.cpu_count() or 1  # single-threaded workers scale best (RESULTS.md)
    if cfg.ray:
        try:
            from wbg_edge import batch_ray
            batch_ray.import_ray()
        except ImportError:
            raise BatchError(RAY_EXTRA_HINT) from None
    if job.threads == 0 and cfg.ray in (None, "auto", "local"):  # split this machine's cores between workers
        job = dataclasses.replace(job, threads=max(1, (os.cpu_count() or 1) // workers))
    with _outdir_lock(Path(cfg.outdir)):
        return _run_locked(inputs, cfg, job, workers, gpus, stream, stop)


@contextlib.contextmanager
def _outdir_lock(outdir: Path) -> Iterator[None]:
    """One job per OUTDIR: staging and parts of a second job would clash. The OS drops the lock when
    the holder dies, so a killed job never blocks the --resume after it."""
    state = outdir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(state / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BatchError(f"{outdir}: another wbg-edge batch job is writing there; wait for it or use "
                             f"another -o") from None
        yield


def _run_locked(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, job: Job, workers: int, gpus: int,
                stream: TextIO | None, stop: threading.Event | None) -> BatchReport:
    outdir = Path(cfg.outdir)
    shutil.rmtree(outdir / STATE_DIR / "tmp", ignore_errors=True)  # leftovers of a killed job
    shutil.rmtree(outdir / STATE_DIR / "parts", ignore_errors=True)
    t0 = time.perf_counter()
    items, wants = plan(inputs, cfg, job)
    by_name = {i.name: i for i in items}
    todo = [i for i in items if i.status == "pending"]
    units = [u for i in todo for u in i.units]
    prog = Progress(stream, len(items), sum(i.expected_frames for i in todo))
    for i in items:
        if i.status == "failed":
            prog.update(items=1, note=f"batch: FAILED {i.error}")
        elif i.status == "skipped":
            prog.update(items=1, note=f"batch: skipped {i.input} (complete in {outdir / i.name})")

    def on_result(res: dict) -> None:
        item = by_name[res["name"]]
        item.results[res["index"]] = res
        if len(item.results) < len(item.units):
            prog.update(frames=res.get("frames", 0))
            return
        finish_item(job, item, wants[item.name])
        note = f"batch: FAILED {item.error}" if item.status == "failed" else ""
        prog.update(frames=res.get("frames", 0), items=1, note=note, force=prog.items + 1 == prog.total_items)

    if units:
        if cfg.ray:
            from wbg_edge import batch_ray

            on_this_machine = cfg.ray in ("auto", "local")
            batch_ray.run_ray(job, units, cfg.ray, workers if on_this_machine else cfg.workers, on_result, stop)
        else:
            run_local(job, units, workers, cfg.retries, on_result, stop, gpus)
    for i in items:
        if i.status == "pending":
            i.status, i.error = "stopped", "stopped before it finished; rerun with --resume"
    prog.close()
    for leftover in ("tmp", "parts"):  # parts of failed chunks; staging of crashed attempts
        shutil.rmtree(outdir / STATE_DIR / leftover, ignore_errors=True)
    report = BatchReport(items, time.perf_counter() - t0, "ray" if cfg.ray else "local",
                         workers if not cfg.ray or cfg.ray in ("auto", "local") else (cfg.workers or 0))
    report.summary_path = Path(cfg.summary) if cfg.summary else outdir / "batch-summary.json"
    _atomic_json(report.summary_path, report.to_dict())
    return report


# ---------------------------------------------------------------- CLI glue (cli.py registers it)

def add_batch_parser(subparsers: Any, add_run_options: Callable[[Any], None] | None = None) -> Any:
    """`wbg-edge batch`: `add_run_options(parser)` adds the model / background / output flags of `run`."""
    p = subparsers.add_parser("batch", help="process many videos / image folders (local pool or Ray)",
                              description="Background removal over many inputs; outputs named after the "
                                          "inputs inside OUTDIR.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, image folders, or .txt files listing them (one a line)")
    p.add_argument("-o", "--outdir", required=True, type=Path, metavar="OUTDIR")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes / Ray actors, each with one Pipeline (default: one per GPU, else one "
                        "per core; with a Ray address: as many as the cluster's GPUs, else CPUs)")
    p.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                   help="run as a Ray Data job: 'auto' starts a local Ray, else a cluster address (needs [batch])")
    p.add_argument("--resume", action="store_true", help="skip inputs whose outputs are complete")
    p.add_argument("--format", default="same", choices=OUTPUT_FORMATS,
                   help="output container: 'same' as the input (default), a video type (.mov / .webm keep "
                        "alpha), or png (a folder of PNGs)")
    p.add_argument("--chunk-frames", type=int, default=BatchConfig.chunk_frames,
                   help="cut longer videos into chunks of about this many frames (0: never)")
    p.add_argument("--chunk-overlap", type=int, default=BatchConfig.overlap,
                   help="frames decoded before each chunk to warm temporal smoothing")
    p.add_argument("--batch-size", type=int, default=BatchConfig.batch_size, metavar="N",
                   help="frames per model call in each worker (depth, coarse and refiner patches batched; "
                        "same output; pays on GPUs, little on a CPU: bench/RESULTS.md)")
    p.add_argument("--summary", type=Path, default=None, help="summary JSON (default OUTDIR/batch-summary.json)")
    if add_run_options is not None:
        add_run_options(p)
    return p
