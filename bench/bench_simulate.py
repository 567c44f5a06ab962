"""Simulation speed and memory: patterns per second and peak memory per preset.

    .venv/bin/python bench/bench_simulate.py

The default preset is simulated whole (render only, then to HDF5 with and without noise).
The paper preset (256 x 256 scan of 200 x 200 patterns, 10 GB) is simulated for a few scan
rows only and the full run is extrapolated from them (rate and file size): the table says so.
Times are taken untraced; peak memory is tracemalloc's peak of Python/numpy allocations in a
second, traced run of the case; the process maxrss is printed at the end.
"""
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccstae.physics import scans, simulate  # noqa: E402
from ccstae.core.config import load_config  # noqa: E402

PAPER_ROWS = 4


def measure(fn):
    """(seconds, peak bytes): timed without tracemalloc (it slows numpy), then run again traced."""
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def main():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset, n_rows in (("default", None), ("paper", PAPER_ROWS)):
            cfg = load_config(preset)
            sim = cfg["simulate"]
            rx, ry = sim["scan"]
            done_rows = rx if n_rows is None else n_rows
            n = done_rows * ry
            note = "whole scan" if n_rows is None else f"{n_rows} of {rx} rows, full run extrapolated"
            gt = simulate.ground_truth_maps(cfg)

            def render():
                p = simulate.sim_params(cfg)
                for r in range(done_rows):
                    simulate.render_patterns(p, gt["exx"][r], gt["eyy"][r], gt["exy"][r], gt["theta"][r])

            cases = [("render only", render)]
            for label, kw in (("to HDF5, clean", dict(clean=True)), ("to HDF5, w=0.5", dict(noise_w=0.5))):
                out = Path(tmp) / f"{preset}-{len(cases)}.h5"
                cases.append((label, lambda out=out, kw=kw: scans.simulate_scan(
                    cfg, out, progress=False, rows=n_rows, overwrite=True, **kw)))
            for label, fn in cases:
                seconds, peak = measure(fn)
                rate = n / seconds
                full_min = rx * ry / rate / 60
                size = ""
                if label != "render only":
                    out = Path(tmp) / f"{preset}-{[c[0] for c in cases].index(label)}.h5"
                    size = f"{out.stat().st_size / n * rx * ry / 2**20:,.0f} MB"
                rows.append((preset, f"{rx}x{ry}x{sim['pattern']}x{sim['pattern']}", label, n, rate,
                             full_min, peak / 2**20, size, note))

    head = ("preset", "cube", "case", "patterns", "patterns/s", "full scan (min)", "peak MB", "file (full)", "")
    print(f"{head[0]:8} {head[1]:18} {head[2]:16} {head[3]:>8} {head[4]:>10} {head[5]:>15} {head[6]:>8} "
          f"{head[7]:>11}  note")
    for preset, cube, label, n, rate, full_min, peak, size, note in rows:
        print(f"{preset:8} {cube:18} {label:16} {n:8d} {rate:10.0f} {full_min:15.2f} {peak:8.1f} {size:>11}  {note}")
    print(f"process maxrss: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
