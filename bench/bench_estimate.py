"""Estimator bench: the calibration table with leave-one-out errors, and the encoder's estimates.

    .venv/bin/python bench/bench_estimate.py            # print (about 30 s on 2 cores)
    .venv/bin/python bench/bench_estimate.py --refit    # also rewrite ccstae/firmware/calibration/fit.json

Prints, for every published design of ccstae/firmware/calibration/designs.toml, the published number and
the estimate made with coefficients fitted on the *other* designs (leave-one-out), the median
|error| per quantity (the error bars every report prints), how much the estimate moves when the
random weights that stand in for the unpublished trained ones change (seeds 0-2), and the
estimate for the default encoder (64x64 and 32x32 input, 8-bit, 50 % pruned, io_stream,
xcku115) at 5 ns and 10 ns. No compile(), no Vivado.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ccstae.firmware import calibration as C  # noqa: E402
from ccstae.firmware import estimate as E  # noqa: E402


def encoder_estimate(pattern: int, sparsity: float = 0.5, seed: int = 0, **spec_kw) -> dict:
    """Estimate of a build_encoder(pattern) -> build_qencoder (8-bit) model with `sparsity` zeros."""
    import tensorflow as tf

    from ccstae.firmware.convert import FirmwareSpec, convert
    from ccstae.model.network import build_encoder
    from ccstae.quant.qmodel import QuantSpec, build_qencoder

    tf.random.set_seed(seed)
    qenc = build_qencoder(build_encoder(pattern), QuantSpec())
    E.zero_smallest(qenc, sparsity)
    with tempfile.TemporaryDirectory() as tmp:
        hls_model = convert(qenc, FirmwareSpec(**spec_kw), tmp)
        return E.estimate(hls_model)


def layer_table(est: dict) -> str:
    lines = [f"  {'layer':<14}{'class':<19}{'mults':>7}{'LUT':>9}{'FF':>8}{'DSP':>5}{'BRAM18':>7}"
             f"{'depth':>6}{'II':>7}"]
    for d in est["layers"]:
        if d["class"] in ("Input", "Reshape"):
            continue
        lines.append(f"  {d['name']:<14}{d['class']:<19}{d['multipliers']:>7,}{d['LUT']:>9,}{d['FF']:>8,}"
                     f"{d['DSP']:>5}{d['BRAM18']:>7}{d['depth_cycles']:>6}{d['ii_cycles']:>7,}")
    lines.append("  FIFOs: " + ", ".join(f"{f['after']} {f['depth']}x{f['width_bits']}b->{f['where']}"
                                          for f in est["fifos"]))
    return "\n".join(lines)


def seed_spread(designs, table, seeds=(1, 2)) -> list[str]:
    """Largest relative change of each estimate when the random weights change seed."""
    coef = table["coefficients"]
    lines = []
    for d, base in zip(designs, table["records"]):
        worst = {q: 0.0 for q in C.QUANTITIES}
        for s in seeds:
            r = C.design_record(d, seed=s)
            for q in C.QUANTITIES:
                a, b = C.predict(base, q, coef), C.predict(r, q, coef)
                if a:
                    worst[q] = max(worst[q], abs(b - a) / a)
        lines.append(f"  {d['name']:<28}" + "  ".join(f"{q} {100 * worst[q]:4.1f} %" for q in C.QUANTITIES))
    return lines


def main() -> None:
    t0 = time.time()
    designs = C.load_designs()
    table = C.calibrate(designs)
    print(f"Calibration: {len(designs)} published hls4ml syntheses, each estimated with LUT/FF coefficients "
          f"fitted on the others ({table['seconds']:.1f} s). Resources: Vivado synthesis unless marked; "
          "latency/II: HLS csynth.")
    print(C.format_table(table))
    print("\nfitted on all designs: " + "; ".join(
        f"{q} = " + " + ".join(f"{v:.3g} x {k}" for k, v in table["coefficients"][q].items()) for q in E.FITTED))
    print("\nweights: largest change of the estimate with other random weights (seeds 1, 2 vs 0):")
    print("\n".join(seed_spread(designs, table)))
    if "--refit" in sys.argv:
        C.save_fit(table)
        E._fit_file.cache_clear()
        print(f"\nwrote {C.FIT_FILE}")
    for pattern in (64, 32):
        for clock in (5.0, 10.0):
            t = time.time()
            est = encoder_estimate(pattern, clock_period_ns=clock)
            print(f"\nencoder {pattern}x{pattern}x1, filters 8/16/16, dense 32, 8-bit, 50 % pruned, io_stream, "
                  f"{clock:g} ns ({time.time() - t:.1f} s)")
            print("  " + E.summary_line(est))
            print("  xcku115: " + ", ".join(f"{r} {100 * v:.2f} %" for r, v in est["parts"]["xcku115"].items()))
            if pattern == 64 and clock == 5.0:
                print("  detectors: " + ", ".join(f"{d['name']} x{E.margin(est, k):.2f}"
                                                  for k, d in E.DETECTORS.items()))
                print(layer_table(est))
    t = time.time()
    est = encoder_estimate(30, sparsity=0.0)
    print(f"\ndeployable preset (configs/detector.toml): 30x30x1 input, 8-bit, unpruned, io_stream, 5 ns, "
          f"random weights ({time.time() - t:.1f} s)")
    print("  " + E.summary_line(est))
    print("  xcku115: " + ", ".join(f"{r} {100 * v:.2f} %" for r, v in est["parts"]["xcku115"].items()))
    print(f"\ntotal {time.time() - t0:.1f} s")
    np.set_printoptions()


if __name__ == "__main__":
    main()
