"""Estimator bench: the SVHN calibration table and the encoder's estimated resources.

    .venv/bin/python bench/bench_estimate.py

Prints the calibration (estimate vs the hls4ml tutorial's published HLS and Vivado numbers) and
the estimate for the default encoder (64x64 input, filters 8/16/16, dense 32, 8-bit, 50 %
pruned) and its 32x32-input variant, io_stream at 200 MHz on xcku115. No compile(), no Vivado.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware import estimate as E  # noqa: E402


def encoder_estimate(pattern: int, sparsity: float = 0.5, seed: int = 0, **spec_kw) -> dict:
    """Estimate of a build_encoder(pattern) -> build_qencoder (8-bit) model with `sparsity` zeros."""
    import tensorflow as tf

    from firmware.convert import FirmwareSpec, convert
    from model.network import build_encoder
    from quant.qmodel import QuantSpec, build_qencoder

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


def main() -> None:
    t0 = time.time()
    cal = E.calibration_table()
    print(f"SVHN calibration (hls4ml tutorial, QKeras 6-bit + 50 % pruned, xcu250, 5 ns), "
          f"{cal['seconds']:.1f} s")
    print(E.format_calibration(cal))
    for pattern in (64, 32):
        t = time.time()
        est = encoder_estimate(pattern)
        print(f"\nencoder {pattern}x{pattern}x1, filters 8/16/16, dense 32, 8-bit, 50 % pruned, io_stream "
              f"({time.time() - t:.1f} s)")
        print("  " + E.summary_line(est))
        print("  xcku115: " + ", ".join(f"{r} {100 * v:.2f} %" for r, v in est["parts"]["xcku115"].items()))
        print("  detectors: " + ", ".join(f"{d['name']} x{E.margin(est, k):.2f}"
                                          for k, d in E.DETECTORS.items()))
        print(layer_table(est))
    print(f"\ntotal {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
