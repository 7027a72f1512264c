"""What a source gives (the `Source` protocol, `Frame`, `SourceStats`) and what its capture thread
drives (the `Reader` protocol). Implementations: `capture.CaptureSource` over the readers in `readers`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message is one line naming the source."""


@dataclass
class Frame:
    image: np.ndarray       # HxWx3 uint8 BGR, C-contiguous
    index: int              # 0-based position in the stream (gaps when a live source drops frames)
    t_capture: float        # time.perf_counter() when the frame was grabbed
    name: str | None = None  # the file it came from (image folders, single images); None for video and live


@dataclass
class SourceStats:
    frames: int = 0        # frames delivered by the reader
    dropped: int = 0       # live only: older frames replaced by newer ones before they were read
    reconnects: int = 0    # live only: successful reopen after a disconnect or stall
    stalls: int = 0        # times no frame arrived within the stall time-out
    problems: list[str] = field(default_factory=list)  # one-line notes (skipped files, short video, ...)


class Source(Protocol):
    """A stream of frames: what `run_stream`, the CLI and batch read. `open_source(uri)` makes one."""

    uri: str                # what was opened, as messages name it
    fps: float              # the input's frame rate (25.0 when it does not say)
    live: bool              # True: only the newest frame is kept (stale ones dropped), reconnects; False: every frame
    count: int | None       # frames expected (files and folders); None when live or unknown
    stats: SourceStats      # what happened so far: frames, dropped, reconnects, stalls, one-line problems

    @property
    def finished(self) -> bool:
        """True once the stream has ended and every frame was read."""
        ...

    def read(self, timeout: float = 0.5) -> Frame | None:
        """The next frame, or None if none arrived within `timeout` s (or the stream ended: see `finished`);
        SourceError when the source failed (nothing decodable, reconnects exhausted, a file stalled)."""
        ...

    def close(self) -> None:
        """Stop capturing and release the input (safe to call twice)."""
        ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc) -> None: ...


class Reader(Protocol):
    """One kind of input, driven by a CaptureSource's thread (a camera, a file, a folder, frames in memory)."""

    fps: float              # the input's frame rate; 0.0 when it does not say
    count: int | None       # frames in the input when known (files), else None
    frame_name: str | None  # the file name of the frame `grab` last returned (image inputs), else None
    skipped: list[str]      # files passed over as unreadable (image folders), reported at the end

    def grab(self) -> np.ndarray | None:
        """The next frame as C-contiguous BGR u8, or None at the end of the input or on a disconnect."""
        ...

    def close(self) -> None: ...

