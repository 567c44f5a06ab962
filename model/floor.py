"""The shot-noise floor beside every MAE: what the best per-pattern estimator could reach on a
simulated cube, so that a model's skill sits between this floor and a flat map's MAE.

model/health.noise_floor computes the Cramer-Rao bound from noise-free patterns; here those
come from the noise-free twin of a noisy cube that `ccstae simulate` wrote (its attrs hold the
whole config and the seed). Kept apart from model/simulate.py and model/health.py on purpose:
those are hashed into the stage keys of data and runs (firmware/stages.py), and a report-only
figure must not make every cached cube and run stale.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np


def noise_free_twin(cube_path, n: int = 16) -> np.ndarray | None:
    """n noise-free patterns (float64, sum 1), evenly spaced over the scan, of the sample a noisy
    cube written by `ccstae simulate` was drawn from; None for any other cube (a detector's, a
    clean one).

    Multislice: read from the clean run cached beside the cube (simulate._clean_multislice, the
    very run the noise was drawn on). Kinematic: the same rows simulated again without noise
    (the sample and the probe jitter come from the seed alone)."""
    import h5py

    from model import simulate
    from model.data_io import open_cube

    with open_cube(cube_path) as cube:
        attrs, shape = cube.attrs, cube.shape
    if attrs.get("created_by") != "ccstae simulate" or attrs.get("clean") or "config" not in attrs:
        return None
    cfg = json.loads(attrs["config"])
    rows = None if shape[0] == int(cfg["simulate"]["scan"][0]) else shape[0]
    ry, total = shape[1], shape[0] * shape[1]
    index = np.unique(np.linspace(0, total - 1, max(1, min(n, total))).astype(int))
    if cfg["simulate"].get("engine") == "multislice":
        clean = simulate._clean_multislice(cfg, Path(cube_path), rows, progress=False)
        with h5py.File(clean, "r") as f:
            return np.stack([f["datacube"][i // ry, i % ry] for i in index]).astype(np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        path = simulate.simulate_scan(cfg, Path(tmp) / "clean.h5", clean=True, progress=False,
                                      rows=int(index[-1] // ry) + 1)
        with open_cube(path) as clean:
            return clean.read_patterns(index).astype(np.float64)


def cube_noise_floor(cube_path, n: int = 16) -> dict | None:
    """health.noise_floor of a noisy simulated cube at its own dose and background level, from
    n patterns of its noise-free twin: {exx, eyy, exy (MAE floors), bragg_counts (electrons per
    pattern outside the central disk), central_radius, patterns}; None for any other cube. The
    central disk (it does not move with strain) is measured on the twin's mean pattern."""
    from model.data_io import open_cube
    from model.health import noise_floor
    from model.preprocess import measure_central_disk

    clean = noise_free_twin(cube_path, n)
    if clean is None:
        return None
    with open_cube(cube_path) as cube:
        a = cube.attrs
    central = measure_central_disk(clean.mean(axis=0))["mask_radius"]
    floor = noise_floor(clean, float(a["counts"]), float(a["noise_w"]), float(a["noise.lorentz_gamma"]),
                        central_radius=central)
    return {**floor, "central_radius": central, "patterns": len(clean)}
