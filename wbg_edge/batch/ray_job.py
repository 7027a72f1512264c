"""The Ray Data executor of `wbg-edge batch` (imported only with --ray; Ray is the optional [batch] extra).

Units (see plan.py) become the rows of a Ray Dataset, one row per block; `map_batches` runs them on
a fixed pool of actors (`RayUnitWorker`), each holding one Pipeline and asking Ray for one GPU when
the cluster has GPUs, else one CPU. Actors write their outputs themselves (staging name inside OUTDIR
+ rename), so on a cluster OUTDIR (and the inputs) must be on a filesystem every node and the driver
see, and wbg-edge must be installed on every node. Ray Data restarts an actor that dies and retries
its task; a retried Unit overwrites its output by rename, so nothing is duplicated. The same code
serves `--ray auto` (a local Ray started here, torn down at the end) and `--ray ADDRESS` (an existing
cluster: `HOST:6379` from a node of it, or `ray://HOST:10001` through Ray Client).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .model import RAY_EXTRA_HINT, BatchError, Job, Unit, unit_result
from .work import UnitRunner

LOCAL_OBJECT_STORE_BYTES = 256 << 20  # rows are small JSON strings; frames never go through the store
RETRIES = 3                           # restarts of a dead actor, and retries of the Unit it was running


class RayUnitWorker:
    """Ray Data actor: one Pipeline, Units in (JSON column `unit`), result dicts out (JSON column `result`)."""

    def __init__(self, job: Job):
        self.runner = UnitRunner(job)

    def __call__(self, batch: dict) -> dict:
        out = [json.dumps(self.runner.run(Unit.from_json(str(s)))) for s in batch["unit"]]
        return {"result": np.array(out, dtype=object)}


def import_ray():
    """Ray with Ray Data, or BatchError naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise BatchError(RAY_EXTRA_HINT) from None
    return ray


def run_ray(job: Job, units: Sequence[Unit], address: str, workers: int | None,
            on_result: Callable[[dict], None]) -> None:
    """Run the Units as a Ray Data job; `on_result` gets each Unit's result dict as it completes.
    A stopping job reaches the actors through the driver's StopFlag file: they end their Units after
    the frames in flight and return the rest at once, so every row still comes back."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if address in ("auto", "local"):
                ray.init(num_cpus=workers or os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise BatchError(f"--ray {address}: cannot start or reach Ray ({str(e).splitlines()[0]})") from None
        started = True
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        # One actor per GPU when the cluster has GPUs; else one per CPU slot, its inference threads set by
        # the caller (local: cores / workers) or 1 on a cluster. `workers` None: as many as the cluster holds.
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus:
            size, res = min(workers or gpus, gpus), {"num_gpus": 1}
        else:
            if job.threads == 0:
                job = dataclasses.replace(job, threads=1)
            size, res = workers or int(ray.cluster_resources().get("CPU", 1)), {"num_cpus": 1}
        ds = ray.data.from_items([{"unit": u.to_json()} for u in units], override_num_blocks=len(units))
        # A dead actor is restarted and its Unit retried, a bounded number of times (Ray Data's default is
        # forever, which an input that crashes its decoder would turn into a hang); a Unit past that is
        # dropped by Ray Data (max_errored_blocks) and reported failed below, and the others go on.
        ctx.max_errored_blocks = len(units)
        pool = ray.data.ActorPoolStrategy(size=max(1, min(size, len(units))))
        with warnings.catch_warnings():  # max_restarts / max_task_retries only exist as ray_remote_args
            warnings.simplefilter("ignore")
            ds = ds.map_batches(RayUnitWorker, batch_size=1, compute=pool, fn_constructor_kwargs={"job": job},
                                max_restarts=RETRIES, max_task_retries=RETRIES, **res)
        returned: set[tuple[str, int]] = set()
        for row in ds.iter_rows():
            res_d = json.loads(row["result"])
            returned.add((res_d["name"], res_d["index"]))
            on_result(res_d)
        for u in units:
            if (u.name, u.index) not in returned:
                on_result(unit_result(u, error=f"{u.input}: its Ray worker died {RETRIES + 1} times on it"))
    finally:
        if started:
            ray.shutdown()
