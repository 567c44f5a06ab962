"""Tune the py4DSTEM baseline's settings on TRAINING cubes, never on the test scans.

    .venv/bin/python bench/tune_baseline.py [preset] [n]

Takes n x n patterns of the preset's clean simulated training sample (i.i.d. rotations and
strains, another seed than the test scans), adds noise at the test levels with a training
seed, runs a few py4DSTEM settings and prints the strain MAE of each (the training sample's
ground truth is for evaluation only; the model never sees it). For a multislice preset
(ms-mos2) the training cube is its scan at seed 0; bench/bench_baseline.py tests on seeds
1 and 2. The winner's settings are analysis/baseline_geometry.BaselineParams' defaults. Geometry is
measured from the data for every setting (analysis/baseline_geometry.measure_geometry).
"""
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccstae.analysis import baseline  # noqa: E402
from ccstae.physics import noise, strain  # noqa: E402
from ccstae.core.config import load_config  # noqa: E402
from ccstae.core.data_io import open_cube  # noqa: E402
from ccstae.core.errors import UserError  # noqa: E402
from ccstae.analysis.evaluate import truth_maps  # noqa: E402
from ccstae.physics.scans import simulate_scan  # noqa: E402
from ccstae.physics.scans import simulate_training_sample  # noqa: E402

SETTINGS = {
    "default": {},
    "flat kernel": {"kernel": "flat"},
    "kernel_outer 1.5": {"kernel_outer": 1.5},
    "sigma_cc 2": {"sigma_cc": 2.0},
    "min_bragg 0.3": {"min_bragg_intensity": 0.3},
    "min_bragg 0.03": {"min_bragg_intensity": 0.03},
    "max spacing 0.25 g": {"max_peak_spacing": 0.25},
    "bvm_sigma 0 (raw)": {"bvm_sigma": 0.0},
}


def main(preset="default", n=24):
    cfg = load_config(preset)
    multislice = cfg["simulate"].get("engine") == "multislice"
    path = Path("data") / cfg["name"] / ("train_s0_clean.h5" if multislice else "train_clean.h5")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        if multislice:  # a scan of another sample (seed 0) than the test scans
            simulate_scan(cfg, path, clean=True, seed=0)
        else:
            simulate_training_sample(cfg, path)
    with open_cube(path) as cube:
        clean = cube.read_rows(0, n)[:, :n]
        gt = {k: v[:n, :n] for k, v in cube.ground_truth.items()}
    truth = truth_maps(gt)
    rng = np.random.default_rng(7)
    levels = cfg["noise"]["test_levels"]
    cubes = {w: noise.add_noise(clean.reshape(-1, *clean.shape[2:]), w, cfg["noise"]["counts"], rng,
                                cfg["noise"]["lorentz_gamma"]).reshape(clean.shape) for w in levels}
    print(f"{preset}: {n}x{n} training patterns")
    print(f"{'setting':>20} " + " ".join(f"{'w=' + format(w, 'g'):>16}" for w in levels) + "   (exx/eyy MAE, failed %)")
    for name, over in SETTINGS.items():
        params = replace(baseline.BaselineParams(), **over)
        cells, t0 = [], time.time()
        for w in levels:
            try:
                maps, info = baseline.baseline_maps(cubes[w], params=params)
                m = strain.mae(maps, truth)
                cells.append(f"{(m['exx'] + m['eyy']) / 2:.5f} {100 * info['failed_fraction']:4.0f}%")
            except UserError:  # a setting that finds no lattice is a result too
                cells.append(f"{'no lattice':>16}")
        print(f"{name:>20} " + " ".join(f"{c:>16}" for c in cells) + f"   {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["default"]), *(int(v) for v in sys.argv[2:3]))
