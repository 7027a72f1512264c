"""What a batch job is made of: its config, the Job every worker gets, Units of work and Items (outputs)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = ".wbg-batch"
LIST_EXTS = (".txt", ".lst", ".list")
OUTPUT_FORMATS = ("same", "mp4", "mkv", "avi", "m4v", "mov", "webm", "png")
RAY_EXTRA_HINT = "--ray needs Ray: pip install 'wbg-edge[batch]'"


class BatchError(ValueError):
    """A batch job that cannot start (bad arguments, clashing names, an output that cannot hold the mode)."""


@dataclass(frozen=True)
class BatchConfig:
    """How to run a batch job; the CLI fills it from `wbg-edge batch` flags (1:1)."""
    outdir: Path
    workers: int | None = None        # None: one per GPU, else one per core (local); Ray: see ray_job
    ray: str | None = None            # None: local pool; "auto": start a local Ray; else a cluster address
    resume: bool = False
    chunk_frames: int = 600           # videos longer than this are cut into chunks (0: never)
    overlap: int = 8                  # frames decoded before each chunk to warm temporal smoothing
    summary: Path | None = None       # default OUTDIR/batch-summary.json
    retries: int = 2                  # extra attempts for a Unit whose worker died (local pool)
    batch_size: int = 1               # frames per Pipeline.process_batch call in each worker (see bench/RESULTS.md)


@dataclass(frozen=True)
class Job:
    """What every worker needs, picklable: the Pipeline config plus where and how to write.

    The mode of each output follows `wbg-edge run`'s rule (`settings.output_mode`): `output_mode` if
    given, else the config's mode over its background; with `background_named=False` (the CLI when
    neither --output nor --background is given) an output that keeps alpha (.mov, .webm, PNG) gets
    rgba and the others a composite. An output that cannot hold its mode stops the job before any work."""
    pipeline_config: Any              # wbg_edge.settings.PipelineConfig
    outdir: str
    output_mode: str | None = None    # composite | rgba | alpha, as asked for; None: see above
    format: str = "same"              # output container: "same" as the input, or an extension (mp4, mov, png...)
    threads: int = 0                  # inference threads per worker (0: leave the Pipeline's default)
    batch_size: int = 1               # frames per process_batch call (run_batch sets it from BatchConfig)
    background_named: bool = True     # False: the user named no background (run's rule then asks the sink)


@dataclass(frozen=True)
class Unit:
    """Frames [start, stop) of one input (stop None: to the end), decoded from start - warmup, made in `mode`."""
    name: str                         # output name inside OUTDIR, also the Item key
    input: str
    kind: str                         # "video" | "images"
    index: int = 0                    # chunk number
    chunks: int = 1
    start: int = 0
    stop: int | None = None
    warmup: int = 0
    mode: str = ""                    # what the Pipeline makes for this output ("": the config's own)

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
    status: str = "pending"           # pending | done | skipped | failed | interrupted
    frames: int = 0
    seconds: float = 0.0              # worker time summed over Units
    error: str = ""
    results: dict[int, dict] = field(default_factory=dict)

    @property
    def resumed_units(self) -> int:
        """Units whose finished part an earlier, interrupted job left (not run again)."""
        return sum(1 for r in self.results.values() if r.get("resumed"))


def unit_result(unit: Unit, frames: int = 0, error: str = "", **extra) -> dict:
    """The dict a worker returns for a Unit (also made by executors for Units they could not run)."""
    return {"name": unit.name, "index": unit.index, "frames": frames, "seconds": 0.0, "error": error,
            "stopped": False, **extra}
