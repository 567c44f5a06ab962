"""Stage times, and the machine's speed while they ran.

A stage time alone says little: the same `make hls` takes twice as long on a busy machine or a
slower CPU. So the pipeline times a fixed reference op (the convolution arithmetic training spends
its time on: float32 matrix products in numpy's BLAS, on every core) at its start and at its end,
and reports each stage in seconds and in reference ops. Times in reference ops compare across
machines and loads; bench/ scripts use the same op.
"""
from __future__ import annotations

import time

import numpy as np

# The op: C = A @ B, float32, 1024 x 1024 (2.1 GFLOP). An idle 2-core machine of the project's kind
# takes ~0.04 s; it is repeated so that one measurement lasts ~0.5 s and timer noise is small.
_N, _REPEATS = 1024, 12


def reference_op_seconds(trials: int = 3) -> float:
    """Seconds per reference op now: the fastest of `trials` timed batches (the least disturbed)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((_N, _N)).astype(np.float32) for _ in range(2))
    a @ b  # warm up: BLAS threads started, pages touched
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(_REPEATS):
            a @ b
        best = min(best, (time.perf_counter() - t0) / _REPEATS)
    return best


class Stopwatch:
    """with watch("stage"): ... -> watch.times["stage"] in seconds, printed as each stage ends."""

    def __init__(self):
        self.times = {}

    def __call__(self, name):
        watch = self

        class Lap:
            def __enter__(self):
                self.t0 = time.time()
                print(f"== {name}", flush=True)

            def __exit__(self, *exc):
                watch.times[name] = round(time.time() - self.t0, 1)
                if exc[0] is None:
                    print(f"   {name}: {watch.times[name]:.1f} s", flush=True)

        return Lap()
