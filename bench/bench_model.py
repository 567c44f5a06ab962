"""Float CC-ST-AE on the default preset: strain MAE per test noise level, training time, and
patterns per second at inference (float Keras, QKeras, hls4ml's compiled C++), side by side.

Runs (or reuses) `make hls`'s pipeline for the default preset, then times each predictor on
the same 512 noisy patterns. Prints a table; asserts nothing.

    .venv/bin/python bench/bench_model.py [--config default]
"""
import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ccstae.firmware import convert, csim  # noqa: E402
from ccstae.pipeline import stages  # noqa: E402
from ccstae.pipeline.hls import run_pipeline  # noqa: E402
from ccstae.core.config import load_config  # noqa: E402
from ccstae.core.data_io import open_cube  # noqa: E402
from ccstae.model.run import load_run  # noqa: E402
from ccstae.quant import qmodel  # noqa: E402

TARGETS = {"exx": 0.003, "eyy": 0.003, "theta": 1.0}  # issue 3, float model at w = 0.5


def rate(fn, x, repeat=2):
    fn(x[:8])  # warm up (graph tracing, library load)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="default")
    args = ap.parse_args()
    s = run_pipeline(args.config, progress=False)
    name = s["config"]
    float_run = load_run(Path("runs") / name / "float")
    q_run = load_run(Path("runs") / name / s["variant"]["name"], load_encoder=qmodel.load_qencoder)
    history = json.loads((float_run.path / "history.json").read_text())

    print(f"\n== strain MAE on unseen test scans ({name}; theta in degrees)")
    print(f"{'w':>6} {'model':>10} {'exx':>8} {'eyy':>8} {'exy':>8} {'theta':>7}")
    for w, m in s["accuracy"]["float"].items():
        for label in ("float", "quantized", "firmware"):
            m = s["accuracy"][label][w]
            print(f"{w:>6} {label:>10} {m['exx']:8.5f} {m['eyy']:8.5f} {m['exy']:8.5f} {m['theta']:7.3f}")
    at = s["accuracy"]["float"].get("w=0.5")
    if at:
        verdict = ", ".join(f"{k} {at[k]:.4g} {'<=' if at[k] <= t else '>'} {t}" for k, t in TARGETS.items())
        print(f"target (float, w=0.5): {verdict}")

    print(f"\n== training ({name}, 2 cores)")
    print(f"float: {len(history)} epochs, {sum(h['seconds'] for h in history):.0f} s in epochs; "
          f"pipeline stage {s['times_s'].get('train float CC-ST-AE', 'reused')} s (0 when reused)")

    tests = stages.ensure_data(load_config(args.config), Path("data") / name).outputs["tests"]  # made: reused
    with open_cube(tests[0.5] if 0.5 in tests else tests[max(tests)]) as cube:
        patterns = cube.read_patterns(np.arange(min(512, len(cube))))
    x_float, x_q = float_run.inputs(patterns), q_run.inputs(patterns)
    hls_model = convert.convert(q_run.encoder, convert.FirmwareSpec.from_config(float_run.config["firmware"]),
                                Path("/tmp") / f"bench-{name}-prj")
    csim.ensure_compiled(hls_model)
    print(f"\n== inference, patterns per second on {len(patterns)} patterns (preprocessing excluded)")
    for label, fn, x in (("float Keras", lambda v: float_run.encoder.predict(v, batch_size=256, verbose=0), x_float),
                         ("QKeras", lambda v: q_run.encoder.predict(v, batch_size=256, verbose=0), x_q),
                         ("hls4ml C++ (C-sim)", lambda v: csim.predict_firmware(hls_model, v), x_q[:128])):
        print(f"{label:>20}: {rate(fn, x):9.0f}")
    print("(the C-simulation models the hardware bit for bit; it is not how fast the FPGA runs)")


if __name__ == "__main__":
    main()
