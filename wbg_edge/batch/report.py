"""What a batch job tells its user: a progress line on the stream the caller passes, and the report
(a table for the CLI, a JSON summary)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .model import Item


class Progress:
    """Videos done, frames/s and ETA on one line of `stream` (redrawn on a terminal, else every few seconds);
    notes (failures, skips) on lines of their own. Nothing is written when `stream` is None."""

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
    interrupted: bool = False         # the job was stopped (Ctrl-C / SIGTERM) before every input was done

    @property
    def failed(self) -> list[Item]:
        return [i for i in self.items if i.status == "failed"]

    @property
    def frames(self) -> int:
        return sum(i.frames for i in self.items if i.status == "done")

    def to_dict(self) -> dict:
        count = {s: sum(i.status == s for i in self.items) for s in ("done", "skipped", "failed", "interrupted")}
        return {"executor": self.executor, "workers": self.workers, "elapsed_s": round(self.elapsed_s, 3),
                "frames": self.frames, "fps": round(self.frames / max(self.elapsed_s, 1e-9), 2),
                **count, "stopped_early": self.interrupted,
                "items": [{"input": i.input, "output": i.name, "status": i.status, "frames": i.frames,
                           "chunks": len(i.units), "chunks_resumed": i.resumed_units, "seconds": round(i.seconds, 3),
                           "error": i.error} for i in self.items]}

    def table(self) -> str:
        rows = [("input", "output", "status", "frames", "s", "frames/s", "error")]
        for i in self.items:
            fps = f"{i.frames / i.seconds:.1f}" if i.seconds > 0 and i.status == "done" else "-"
            rows.append((Path(i.input).name, i.name, i.status, str(i.frames), f"{i.seconds:.1f}", fps, i.error))
        d = self.to_dict()
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        lines = ["  ".join(r[c].ljust(widths[c]) for c in range(6)) + ("  " + r[6] if r[6] else "") for r in rows]
        stopped = f", {d['interrupted']} interrupted" if self.interrupted else ""
        lines.append(f"{d['done']} done, {d['skipped']} skipped, {d['failed']} failed{stopped}; {d['frames']} frames "
                     f"in {d['elapsed_s']:.1f} s = {d['fps']:.1f} frames/s ({self.executor}, {self.workers} workers)")
        return "\n".join(lines)
