"""Studies (robustness grids, firmware sweeps) as task graphs on Dask distributed.

A study submits its tasks (simulate a cube, train a regime, evaluate a variant...) with
`Tasks.submit(fn, *args)`, where args may hold earlier tasks: Dask runs a task once its inputs
are done, on whichever worker is free. Where the tasks run:

    in-process            every task here, one after the other (debugging, tests that patch code)
    None (the default)    a LocalCluster: `jobs` worker processes, one thread each
    tcp://HOST:8786       a running cluster (`dask scheduler` + `dask worker` per machine); the
                          study's folders must be on a filesystem every machine shares

Every task writes its own result (atomically, core/outputs) before it returns, and a study
skips results that are already there: a study resumes after a killed worker (Dask reruns the
lost task elsewhere) or an interrupted run (run it again).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

IN_PROCESS = "in-process"


class _Done:
    """An in-process task's outcome, shaped like a Dask future for the few calls studies make."""

    def __init__(self, fn, args, kwargs):
        try:
            self._value, self._error = fn(*_resolve(args), **_resolve(kwargs)), None
        except Exception as e:  # noqa: BLE001 - raised again by result(), as a future does
            self._value, self._error = None, e

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value


def _resolve(obj):
    """In-process: the results of earlier tasks stand in for them, also inside lists and dicts."""
    if isinstance(obj, _Done):
        return obj.result()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    return obj


class Tasks:
    """submit / as_completed over Dask (client given) or in this process (client None)."""

    def __init__(self, client=None):
        self.client = client

    @property
    def where(self) -> str:
        if self.client is None:
            return "in this process"
        return f"{len(self.client.scheduler_info()['workers'])} Dask worker(s) at {self.client.scheduler.address}"

    def submit(self, fn, *args, key: str | None = None, **kwargs):
        if self.client is None:
            return _Done(fn, args, kwargs)
        # pure=False: a task that writes files must run, not be merged with a look-alike.
        return self.client.submit(fn, *args, key=key, pure=False, **kwargs)

    def as_completed(self, futures):
        if self.client is None:
            return iter(futures)
        from distributed import as_completed

        return as_completed(futures)


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def open_tasks(jobs: int | None = None, scheduler: str | None = None):
    """Tasks on a LocalCluster of `jobs` workers (default: one per core), on the cluster at
    `scheduler` (tcp://HOST:8786), or in this process (scheduler "in-process")."""
    if scheduler == IN_PROCESS:
        yield Tasks(None)
        return
    import logging

    from distributed import Client, LocalCluster

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # workers inherit it: no TensorFlow chatter
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler:
        with Client(scheduler) as client:
            yield Tasks(client)
        return
    # Processes, one thread each: TensorFlow and the compiled C-simulation are not shared
    # between threads, and one busy core per worker is what `--jobs` promises.
    with LocalCluster(n_workers=jobs or default_jobs(), threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield Tasks(client)
