"""Batch background removal over many inputs: a local process pool, or a Ray Data job (issue 11).

    inputs (videos, folders of videos, image folders, list files)          inputs.py
    -> plan: one Item per input, its output name and mode, cut into Units   plan.py
    -> executor (local pool | Ray actors), each worker holding a Pipeline   local.py | ray_job.py
       runs Units: run_stream (batch size N: Pipeline.process_batch)        work.py
    -> finish: stitch chunked Units in order, rename into OUTDIR, record    driver.py, records.py
    -> report: progress on the caller's stream, a table, a JSON summary     report.py

Contracts:
- `OUTDIR/<input name>` is the output of one input (a folder for an image folder, or for `--format png`).
  Nothing is written outside OUTDIR; partial files live only under `OUTDIR/.wbg-batch/tmp` and every
  output appears by one rename, so readers (and `--resume`) see a complete output or none.
- Each output's mode follows `wbg-edge run`'s rule (`settings.output_mode`): alpha is kept in .mov,
  .webm and PNG outputs; asking for alpha where the container has none stops the job before any work.
- A Unit is frames [start, stop) of one input; a long video gives several, each decoded from
  `start - overlap` so temporal smoothing is warm at `start` (the overlap frames are not written).
  Chunks are written as lossless PNG parts and stitched in order by the driver.
- With `batch_size` N > 1 a worker hands its Pipeline N frames at a time (`Pipeline.process_batch`: one
  depth, one coarse and one refiner call for the N frames, same frames out as `process`), so the batch
  size is not part of the resume record.
- `--resume` skips outputs whose record matches (records.py) and the finished chunks of an output an
  interrupted job left. Stopping (driver.py): after the frames in flight, finished work recorded.
- Workers never raise for a bad input: each Unit returns a result dict with `error` set instead,
  so one corrupt input is reported by name and the others complete. A worker that dies is retried
  (local pool: its Unit on a new worker; Ray: actor restart + task retry), and a retried Unit
  overwrites by rename.
"""
from .driver import finish_item, run_batch
from .flags import add_batch_parser
from .inputs import expand_inputs, image_files, probe
from .model import OUTPUT_FORMATS, RAY_EXTRA_HINT, STATE_DIR, BatchConfig, BatchError, Item, Job, Unit
from .plan import output_name, plan, split_units
from .report import BatchReport, Progress

__all__ = ["OUTPUT_FORMATS", "RAY_EXTRA_HINT", "STATE_DIR", "BatchConfig", "BatchError", "BatchReport", "Item",
           "Job", "Progress", "Unit", "add_batch_parser", "expand_inputs", "finish_item", "image_files",
           "output_name", "plan", "probe", "run_batch", "split_units"]
