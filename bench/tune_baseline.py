"""Tune the py4DSTEM baseline's settings on the TRAINING sample, never on the test scans.

    .venv/bin/python bench/tune_baseline.py [preset] [n]

Takes n x n patterns of the preset's clean simulated training sample (i.i.d. rotations and
strains, another seed than the test scans), adds noise at the test levels with a training
seed, runs a few py4DSTEM settings and prints the strain MAE of each (the training sample's
ground truth is for evaluation only; the model never sees it). The winner's settings are
model/baseline.BaselineParams' defaults.
"""
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import baseline, noise, strain  # noqa: E402
from model.config import load_config  # noqa: E402
from model.data_io import open_cube  # noqa: E402
from model.evaluate import truth_maps  # noqa: E402
from model.train import simulate_training_sample  # noqa: E402

SETTINGS = {
    "default": {},
    "flat kernel": {"kernel": "flat"},
    "sigma_cc 0": {"sigma_cc": 0.0},
    "sigma_cc 2": {"sigma_cc": 2.0},
    "minRelInt 0.03": {"min_relative_intensity": 0.03},
    "minRelInt 0.003": {"min_relative_intensity": 0.003},
    "max spacing 0.25 g": {"max_peak_spacing": 0.25},
    "edge 0.5 r": {"edge_boundary": 0.5},
    "bvm_sigma 0 (raw)": {"bvm_sigma": 0.0},
}


def main(preset="default", n=24):
    cfg = load_config(preset)
    path = Path("data") / cfg["name"] / "train_clean.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        simulate_training_sample(cfg, path)
    with open_cube(path) as cube:
        clean = cube.read_rows(0, n)[:, :n]
        gt = {k: v[:n, :n] for k, v in cube.ground_truth.items()}
        geometry = baseline.cube_geometry(cube)
    truth = truth_maps(gt)
    rng = np.random.default_rng(7)
    levels = cfg["noise"]["test_levels"]
    cubes = {w: noise.add_noise(clean.reshape(-1, *clean.shape[2:]), w, cfg["noise"]["counts"], rng,
                                cfg["noise"]["lorentz_gamma"]).reshape(clean.shape) for w in levels}
    print(f"{preset}: {n}x{n} training patterns, geometry {geometry}")
    print(f"{'setting':>20} " + " ".join(f"{'w=' + format(w, 'g'):>16}" for w in levels) + "   (exx/eyy MAE, failed %)")
    for name, over in SETTINGS.items():
        params = replace(baseline.BaselineParams(), **over)
        cells, t0 = [], time.time()
        for w in levels:
            try:
                maps, info = baseline.baseline_maps(cubes[w], geometry, params)
                m = strain.mae(maps, truth)
                cells.append(f"{(m['exx'] + m['eyy']) / 2:.5f} {100 * info['failed_fraction']:4.0f}%")
            except Exception as e:  # a setting that finds no lattice is a result too
                cells.append(f"{'failed: ' + type(e).__name__:>16}")
        print(f"{name:>20} " + " ".join(f"{c:>16}" for c in cells) + f"   {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["default"]), *(int(v) for v in sys.argv[2:3]))
