"""Firmware tool times on a small QKeras encoder (32x32 input, 2 conv + 1 dense, io_stream):
hls4ml convert, compile, compiled C-simulation of 1,000 patterns, g++ testbench build and run.

Was a test (tests/test_firmware.py); timings are numbers to print, not to assert. Prints a
table; asserts nothing. The machine's load sets these numbers: run it with nothing else busy.

    .venv/bin/python bench/bench_firmware.py [--out DIR]
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ccstae.firmware import convert, csim  # noqa: E402
from ccstae.model.network import build_encoder  # noqa: E402
from ccstae.quant import qmodel  # noqa: E402

P = 32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="HLS project folder (default: a temporary one)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_firmware-")) / "prj"
    rng = np.random.default_rng(0)
    x = np.sqrt(rng.poisson(20, (1000, P, P, 1)) / 40).astype(np.float32)
    qenc = qmodel.build_qencoder(build_encoder(P, filters=(4, 8), dense=(16,)))
    times = {}
    t0 = time.time()
    hls_model = convert.convert(qenc, convert.FirmwareSpec(), out)
    times["hls4ml convert"] = time.time() - t0
    times["compile (hls_model.compile)"] = csim.ensure_compiled(hls_model)
    # One library (hls4ml's own predict loop) against one copy per core side by side, same bits.
    t0 = time.time()
    one = csim.predict_firmware(hls_model, x, threads=1)
    times["C-simulation, 1,000 patterns, 1 library"] = time.time() - t0
    t0 = time.time()
    side = csim.predict_firmware(hls_model, x)
    times[f"C-simulation, 1,000 patterns, {csim.sim_threads()} copies"] = time.time() - t0
    assert np.array_equal(one, side)
    convert.make_tb_data(out, qenc, x[:300])
    r = csim.run_testbench(out, rebuild=True)
    times["g++ testbench build"], times["testbench run, 300 patterns"] = r.build_seconds, r.seconds
    print(f"firmware tool times, {P}x{P} input, io_stream ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}):")
    for k, v in times.items():
        print(f"  {k:<40} {v:7.2f} s")
    print(f"testbench bit-exact: {100 * r.exact_fraction:.2f} % of {r.n_patterns} patterns")


if __name__ == "__main__":
    main()
