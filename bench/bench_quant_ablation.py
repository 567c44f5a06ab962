"""Where does the quantized encoder lose accuracy? QAT variants of one float run, side by side.

Each variant changes one [quant] setting of the config (input bits/range, activation bits,
weight bits, sparsity, QAT epochs) and is fine-tuned from the same float run (`make hls`'s,
runs/<name>/float) into runs/<name>/ablation/<variant> (reused when finished for the same
settings). The QKeras model is what the firmware computes bit for bit (`make hls` checks it),
so its strain MAE on the full test scans is the firmware's. Prints a table; asserts nothing.

    .venv/bin/python bench/bench_quant_ablation.py [--config default] [--only base,in12]
"""
import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ccstae.pipeline import stages  # noqa: E402
from ccstae.pipeline.hls import run_pipeline  # noqa: E402
from ccstae.core.config import load_config  # noqa: E402
from ccstae.core.data_io import open_cube  # noqa: E402
from ccstae.analysis.evaluate import maps_from_raw, truth_maps  # noqa: E402
from ccstae.model.run import load_run  # noqa: E402
from ccstae.physics.strain import mae  # noqa: E402
from ccstae.quant import qmodel  # noqa: E402

# One change each against the config's [quant]; names say what changed.
VARIANTS = {
    "base": {},
    "in8-range1": {"input_integer": 0},        # inputs in [0, 1): one more fractional bit
    "in12": {"input_bits": 12},                # a 12-bit input (the detector delivers more)
    "act10": {"activation_bits": 10},
    "w10": {"weight_bits": 10},
    "s0": {"sparsity": 0.0},                   # no pruning
    "e24": {"epochs": 24},                     # twice the fine-tuning
    "e36": {"epochs": 36},
    "e24-lr-half": {"epochs": 24, "learning_rate": 2.5e-4},
}


def evaluate(run, cfg):
    """Mean strain MAE per test level of a run on the config's (unseen) test scans."""
    out = {}
    for w, path in stages.ensure_data(cfg, Path("data") / cfg["name"]).outputs["tests"].items():  # reused
        with open_cube(path) as cube:
            raw = np.concatenate([run.encoder.predict(run.inputs(p), batch_size=256, verbose=0)
                                  for _, p in cube.iter_batches(1024)]).reshape(*cube.shape[:2], 4)
            out[w] = mae(maps_from_raw(raw), truth_maps(cube.ground_truth))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="default")
    ap.add_argument("--only", help="comma-separated variant names (default: all)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    s = run_pipeline(args.config, progress=False)  # the float run and the test scans
    float_dir = Path("runs") / cfg["name"] / "float"
    float_run = stages.StageResult("float", float_dir, s["stages"]["float"]["key"], ran=False)
    names = args.only.split(",") if args.only else list(VARIANTS)

    rows = {"float": evaluate(load_run(float_dir), cfg)}
    times = {}
    for name in names:
        quant = {**cfg["quant"], **VARIANTS[name]}
        q_dir = Path("runs") / cfg["name"] / "ablation" / name
        t0 = time.time()
        stages.ensure_qat(dict(cfg, quant=quant), float_run, q_dir)  # reused when current
        times[name] = time.time() - t0
        rows[name] = evaluate(load_run(q_dir, load_encoder=qmodel.load_qencoder), cfg)
        print(f"{name}: done ({times[name]:.0f} s)", flush=True)

    levels = cfg["noise"]["test_levels"]
    print(f"\n== QKeras (= firmware) strain MAE, mean of exx and eyy, on the {cfg['name']} test scans")
    print(f"{'variant':>12} " + " ".join(f"{'w=' + format(w, 'g'):>9}" for w in levels)
          + "   worst ratio to float   theta(deg) at w=0")
    for name, acc in rows.items():
        m = [(acc[w]["exx"] + acc[w]["eyy"]) / 2 for w in levels]
        f = [(rows["float"][w]["exx"] + rows["float"][w]["eyy"]) / 2 for w in levels]
        ratio = max(a / b for a, b in zip(m, f))
        print(f"{name:>12} " + " ".join(f"{v:9.5f}" for v in m) + f"   {ratio:20.2f}   {acc[levels[0]]['theta']:.3f}")
    print("changes: " + "; ".join(f"{n} {VARIANTS[n] or 'config as is'}" for n in names))


if __name__ == "__main__":
    main()
