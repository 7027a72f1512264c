"""`wbg-edge batch`: flags and the report; wbg_edge.batch owns the work."""
from __future__ import annotations

import sys

from .common import CLI_BUNDLE, add_pipeline_options, bundle_line, make_config, note, stop_on_signals


def cmd_batch(args) -> int:
    from ..batch import BatchConfig, Job, run_batch

    # workers None: batch decides (one per GPU or per core here, the cluster's size under Ray)
    cfg = BatchConfig(outdir=args.outdir, workers=args.workers, ray=args.ray, resume=args.resume,
                      chunk_frames=args.chunk_frames, overlap=args.chunk_overlap, summary=args.summary,
                      batch_size=args.batch_size)
    # Each output's mode is run's (settings.output_mode), decided by batch per output: it needs to know
    # what the user named, not the config's defaults.
    bundle = args.bundle if args.bundle is not None else CLI_BUNDLE  # as `run` chooses
    job = Job(pipeline_config=make_config(args, bundle=bundle), outdir=str(args.outdir), output_mode=args.mode,
              format=args.format, background_named=args.background is not None)
    # First Ctrl-C / SIGTERM: stop after the frames in flight, finished work recorded; second: at once.
    with stop_on_signals() as stop:
        report = run_batch(args.inputs, cfg, job, stream=sys.stderr, stop=stop)
    print(report.table())
    note(bundle_line(bundle))  # after the work, so a job refused while planning stays one line
    if report.interrupted:
        note("wbg-edge batch: interrupted; finished outputs are recorded, rerun with --resume to continue")
        return 130
    return 1 if report.failed else 0


def add_parser(sub) -> None:
    """Registers `batch` (its flags live with the batch package)."""
    from ..batch import add_batch_parser
    add_batch_parser(sub, add_pipeline_options).set_defaults(func=cmd_batch)
