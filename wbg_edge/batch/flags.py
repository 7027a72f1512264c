"""`wbg-edge batch` flags (cli.py registers the command and runs it through `cmd_batch`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .model import OUTPUT_FORMATS, BatchConfig


def add_batch_parser(subparsers: Any, add_run_options: Callable[[Any], None] | None = None) -> Any:
    """`wbg-edge batch`: `add_run_options(parser)` adds the model / background / output flags of `run`."""
    p = subparsers.add_parser("batch", help="process many videos / image folders (local pool or Ray)",
                              description="Background removal over many inputs; outputs named after the "
                                          "inputs inside OUTDIR. Backgrounds and output modes follow `run`: "
                                          "alpha is kept in .mov, .webm and PNG outputs. Ctrl-C stops after "
                                          "the frames in flight; --resume continues.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, image folders, folders of videos, or .txt files listing them (one a line)")
    p.add_argument("-o", "--outdir", required=True, type=Path, metavar="OUTDIR")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes / Ray actors, each with one Pipeline (default: one per GPU, else one "
                        "per core; with a Ray address: as many as the cluster's GPUs, else CPUs)")
    p.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                   help="run as a Ray Data job: 'auto' starts a local Ray, else a cluster address (needs [batch])")
    p.add_argument("--resume", action="store_true",
                   help="skip inputs whose outputs are complete, and the finished chunks of an interrupted one")
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
