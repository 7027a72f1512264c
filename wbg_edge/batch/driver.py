"""The driver of a batch job: lock OUTDIR, plan, hand Units to an executor, finish each output as its
Units come back (stitch chunks, write the resume record), report.

Stopping: setting `stop` (the CLI's first Ctrl-C or SIGTERM) creates the StopFlag file that every
worker watches. No new Unit starts; running ones end after their frames in flight and report back;
each output finished by then is recorded, so `--resume` skips it, and each chunk finished by then is
recorded too, so `--resume` continues a long video from its finished chunks. The report says
`interrupted`. A second signal is the CLI's KeyboardInterrupt: executors let it through at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from .model import OUTPUT_FORMATS, RAY_EXTRA_HINT, STATE_DIR, BatchConfig, BatchError, Item, Job
from .plan import plan
from .records import atomic_json, part_dir, write_part_record, write_record
from .report import BatchReport, Progress
from .work import StopFlag, replace, staging, stitch


def run_batch(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, job: Job,
              stream: TextIO | None = None, stop: threading.Event | None = None) -> BatchReport:
    """Run the whole job; returns the report (also written as JSON). Failed inputs do not raise.
    Progress goes to `stream`. Setting `stop` ends the job early (see the module docstring)."""
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
        from .ray_job import import_ray
        try:
            import_ray()
        except ImportError:
            raise BatchError(RAY_EXTRA_HINT) from None
    if job.threads == 0 and cfg.ray in (None, "auto", "local"):  # split this machine's cores between workers
        job = dataclasses.replace(job, threads=max(1, (os.cpu_count() or 1) // workers))
    with _outdir_lock(Path(cfg.outdir)):
        return _run_locked(inputs, cfg, job, workers, gpus, stream, stop)


def _cuda_devices() -> list:
    from wbg_edge.gpu import cuda_devices

    return cuda_devices()


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


@contextlib.contextmanager
def _relay(stop: threading.Event | None, flag: StopFlag) -> Iterator[None]:
    """While the job runs, turn `stop` (set from a signal handler) into the workers' StopFlag file."""
    if stop is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if stop.wait(0.1):
                flag.set()
                return

    t = threading.Thread(target=watch, name="batch-stop-relay", daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()


def _run_locked(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, job: Job, workers: int, gpus: int,
                stream: TextIO | None, stop: threading.Event | None) -> BatchReport:
    outdir = Path(cfg.outdir)
    shutil.rmtree(outdir / STATE_DIR / "tmp", ignore_errors=True)  # leftovers of a killed job, a stale stop
    if not cfg.resume:
        shutil.rmtree(outdir / STATE_DIR / "parts", ignore_errors=True)
    t0 = time.perf_counter()
    try:
        items, wants, notes = plan(inputs, cfg, job)
    except BaseException:  # nothing was started: leave OUTDIR as it was (its scratch folder gone)
        shutil.rmtree(outdir / STATE_DIR / "tmp", ignore_errors=True)
        raise
    _drop_stale_parts(outdir, items)
    by_name = {i.name: i for i in items}
    todo = [i for i in items if i.status == "pending"]
    units = [u for i in todo for u in i.units if u.index not in i.results]
    prog = Progress(stream, len(items), sum(i.expected_frames for i in todo))
    for note in notes:
        prog.update(note=f"batch: {note}")
    for i in items:
        if i.status == "failed":
            prog.update(items=1, note=f"batch: FAILED {i.error}")
        elif i.status == "skipped":
            prog.update(items=1, note=f"batch: skipped {i.input} (complete in {outdir / i.name})")

    def stopping() -> bool:
        return stop is not None and stop.is_set()

    def finish(item: Item, frames: int) -> None:
        finish_item(job, item, wants[item.name], stopping())
        note = f"batch: FAILED {item.error}" if item.status == "failed" else ""
        prog.update(frames=frames, items=1, note=note, force=prog.items + 1 == prog.total_items)

    def on_result(res: dict) -> None:
        item = by_name[res["name"]]
        item.results[res["index"]] = res
        if len(item.units) > 1 and not (res.get("error") or res.get("stopped")):
            write_part_record(outdir, item.units[res["index"]], wants[item.name], res["frames"])  # --resume keeps it
        if len(item.results) < len(item.units):
            prog.update(frames=res.get("frames", 0))
        else:
            finish(item, res.get("frames", 0))

    with _relay(stop, StopFlag(outdir)):
        for item in todo:  # chunks an interrupted job finished (--resume): counted, and stitched when all are
            resumed = sum(r["frames"] for r in item.results.values())
            if len(item.results) == len(item.units):
                finish(item, resumed)
            elif resumed:
                prog.update(frames=resumed)
        if units:
            if cfg.ray:
                from .ray_job import run_ray

                on_this_machine = cfg.ray in ("auto", "local")
                run_ray(job, units, cfg.ray, workers if on_this_machine else cfg.workers, on_result)
            else:
                from .local import run_local

                run_local(job, units, workers, cfg.retries, on_result, stop, gpus)
    for i in items:
        if i.status == "pending":
            _interrupted(i)
    prog.close()
    shutil.rmtree(outdir / STATE_DIR / "tmp", ignore_errors=True)  # staging of crashed attempts, the stop flag
    with contextlib.suppress(OSError):  # kept only while it holds chunks of an interrupted output
        (outdir / STATE_DIR / "parts").rmdir()
    report = BatchReport(items, time.perf_counter() - t0, "ray" if cfg.ray else "local",
                         workers if not cfg.ray or cfg.ray in ("auto", "local") else (cfg.workers or 0),
                         interrupted=any(i.status == "interrupted" for i in items))
    report.summary_path = Path(cfg.summary) if cfg.summary else outdir / "batch-summary.json"
    atomic_json(report.summary_path, report.to_dict())
    return report


def _drop_stale_parts(outdir: Path, items: list[Item]) -> None:
    """Parts are kept only for chunked outputs still to be made (the others were finished or dropped)."""
    keep = {i.name for i in items if i.status == "pending" and len(i.units) > 1}
    root = outdir / STATE_DIR / "parts"
    for d in root.iterdir() if root.is_dir() else ():
        if d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)


def _interrupted(item: Item) -> None:
    """Status and reason of an Item the job stopped before it was finished."""
    item.status = "interrupted"
    kept = sum(1 for r in item.results.values() if not (r.get("error") or r.get("stopped")))
    item.frames = sum(r.get("frames", 0) for r in item.results.values())  # in the chunks kept
    item.seconds = sum(r.get("seconds", 0.0) for r in item.results.values())
    cut = [r for r in item.results.values() if r.get("stopped") and r.get("made")]
    why = [f"{kept} of {len(item.units)} chunks kept"] if len(item.units) > 1 else []
    why += [f"stopped {r['made']} frames into {'chunk ' + str(r['index']) if len(item.units) > 1 else 'it'}"
            for r in cut]
    item.error = f"interrupted ({'; '.join(why)})" if why else "interrupted before it started"
    item.error += "; rerun with --resume"


def finish_item(job: Job, item: Item, want: dict, stopping: bool = False) -> None:
    """All Units of an Item are back: stitch chunks in order (atomically; not while the job is stopping:
    the recorded chunks are stitched on --resume), write its record."""
    outdir = Path(job.outdir)
    errors = [r["error"] for _, r in sorted(item.results.items()) if r.get("error")]
    item.frames = sum(r.get("frames", 0) for r in item.results.values())
    item.seconds = sum(r.get("seconds", 0.0) for r in item.results.values())
    parts_root = outdir / STATE_DIR / "parts" / item.name
    if any(r.get("stopped") for r in item.results.values()) or (stopping and len(item.units) > 1 and not errors):
        _interrupted(item)
        return
    try:
        if errors:
            item.status, item.error = "failed", errors[0]
            return
        if len(item.units) > 1:
            stage = staging(outdir)
            try:
                target = stage / item.name
                parts = [part_dir(outdir, u) for u in item.units]
                item.frames = stitch(parts, Path(item.input), target, job)
                replace(target, outdir / item.name)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        write_record(outdir, item.name, want, item.frames, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        item.status = "done"
    except Exception as e:  # noqa: BLE001 - stitching one input must not stop the others
        item.status, item.error = "failed", f"{item.input}: {str(e).splitlines()[0] if str(e) else e!r}"
    finally:
        shutil.rmtree(parts_root, ignore_errors=True)
