"""Front-end bench: resources of the detector-side front end and, per camera, whether front end +
encoder keep up at the raw pixel rate (estimates; no Vivado/Vitis here).

    .venv/bin/python bench/bench_frontend.py [--run runs/detector/q8-s0] [--pixels-per-clock 4]

With a quantized run (default: the detector preset's, when `make hls PRESET=detector` made it)
the encoder is that run's and the LUT is built from its preprocess.json; without one, a
random-weight unpruned encoder of the detector preset (30x30 input, filters 8/16/16, dense 32)
and a LUT of 4,096 entries stand in (said in the output).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccstae.firmware import estimate as E  # noqa: E402
from ccstae.firmware import frontend_estimate as FE  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/detector/q8-s0", help="a quantized run (its encoder and preprocess.json)")
    ap.add_argument("--pixels-per-clock", type=int, default=4, help="of the run's own front end (64x64 patterns)")
    args = ap.parse_args()

    import tensorflow as tf

    from ccstae.firmware import frontend
    from ccstae.firmware.convert import FirmwareSpec, convert

    run = Path(args.run)
    if (run / "encoder.h5").exists():
        from ccstae.model.run import load_run
        from ccstae.quant import qmodel

        q = load_run(run, load_encoder=qmodel.load_qencoder)
        qenc, geometry = q.encoder, frontend.geometry(q.preprocess_params(), args.pixels_per_clock)
        source = f"the quantized run {run}"
    else:
        from ccstae.model.network import build_encoder
        from ccstae.quant.qmodel import build_qencoder

        tf.random.set_seed(0)
        qenc = build_qencoder(build_encoder(30, filters=(8, 16, 16), dense=(32,)))
        geometry = {"pattern": 64, "binning": 2, "crop": 1, "encoder_input": 30, "pixels_per_clock": args.pixels_per_clock,
                    "count_bits": 16, "lut_depth": 4096, "lut_bits": 8}
        source = f"a random-weight unpruned detector-preset encoder and a 4,096-entry LUT ({run} not found)"
    with tempfile.TemporaryDirectory() as tmp:
        encoder = E.estimate(convert(qenc, FirmwareSpec(), tmp))
    print(f"Encoder: {source}\n  {E.summary_line(encoder)}\n")
    fe = FE.estimate_frontend(geometry, encoder["clock_period_ns"])
    print(FE.format_frontend(fe), "\n")
    full = FE.combine(fe, encoder)
    worst = max(full["parts"]["xcku115"], key=lambda k: full["parts"]["xcku115"][k] or 0)
    print(f"Front end + encoder on the run's own 64x64 stream: II {full['ii_cycles']:,} cycles, "
          f"{full['patterns_per_s']:,.0f} patterns/s; largest share of xcku115: {worst} "
          f"{100 * full['parts']['xcku115'][worst]:.1f} % [{full['kind']}]\n")
    print("Per camera (the binned frame mapped onto the same encoder; estimates):\n")
    print(FE.format_table(FE.raw_rate_table(geometry, encoder)))
    arina = next(r for r in FE.raw_rate_table(geometry, encoder, ["arina"]))
    frac = arina["part_fraction"]
    print(f"\nARINA at its raw rate ({arina['raw_pixels_per_s'] / 1e9:.2f} Gpixel/s): "
          f"{arina['pixels_per_clock']} px/clock, {arina['binning']}x{arina['binning']} binning, "
          f"{arina['patterns_per_s']:,.0f} patterns/s vs {arina['frame_rate_hz']:,} frames/s -> "
          f"{'keeps up' if arina['keeps_up_raw'] else 'does NOT keep up'}; xcku115 use "
          + ", ".join(f"{k} {100 * v:.1f} %" for k, v in frac.items())
          + f" -> {'within' if arina['fits'] else 'OVER'} 70 % of every resource (estimate)")


if __name__ == "__main__":
    main()
