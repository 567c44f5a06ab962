"""The shot-noise floor beside every MAE: what the best per-pattern estimator could reach on a
simulated cube, so that a model's skill sits between this floor and a flat map's MAE.

model/health.noise_floor computes the Cramer-Rao bound from noise-free patterns; here those
come from the noise-free twin of a noisy cube that `ccstae simulate` wrote (its attrs hold the
whole config and the seed). Kept apart from ccstae/physics/scans.py and ccstae/model/health.py on purpose:
those are hashed into the stage keys of data and runs (ccstae/pipeline/stages.py), and a report-only
figure must not make every cached cube and run stale.
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np


def noise_free_twin(cube_path, n: int = 16) -> np.ndarray | None:
    """n noise-free patterns (float64, sum 1), evenly spaced over the scan, of the sample a noisy
    cube written by `ccstae simulate` was drawn from; None for any other cube (a detector's, a
    clean one).

    Multislice: read from the clean run cached beside the cube (scans.clean_multislice, the
    very run the noise was drawn on). Kinematic: the same rows simulated again without noise
    (the sample and the probe jitter come from the seed alone), once for all the cubes of one
    sample (a study's noise levels and doses)."""
    import h5py

    from ccstae.physics import scans
    from ccstae.core.data_io import open_cube

    with open_cube(cube_path) as cube:
        attrs, shape = cube.attrs, cube.shape
    if attrs.get("created_by") != "ccstae simulate" or attrs.get("clean") or "config" not in attrs:
        return None
    cfg = json.loads(attrs["config"])
    rows = None if shape[0] == int(cfg["simulate"]["scan"][0]) else shape[0]
    ry, total = shape[1], shape[0] * shape[1]
    index = np.unique(np.linspace(0, total - 1, max(1, min(n, total))).astype(int))
    if cfg["simulate"].get("engine") == "multislice":
        clean = scans.clean_multislice(cfg, Path(cube_path), rows, progress=False)
        with h5py.File(clean, "r") as f:
            return np.stack([f["datacube"][i // ry, i % ry] for i in index]).astype(np.float64)
    return _kinematic_twin(attrs["config"], int(index[-1] // ry) + 1, tuple(index.tolist())).copy()


@lru_cache(maxsize=8)
def _kinematic_twin(config_json: str, rows: int, index: tuple) -> np.ndarray:
    """The patterns at flat `index` of the config's first `rows` scan rows, simulated without noise."""
    from ccstae.physics import scans
    from ccstae.core.data_io import open_cube

    with tempfile.TemporaryDirectory() as tmp:
        path = scans.simulate_scan(json.loads(config_json), Path(tmp) / "clean.h5", clean=True, progress=False,
                                      rows=rows)
        with open_cube(path) as clean:
            return clean.read_patterns(np.asarray(index)).astype(np.float64)


def cube_noise_floor(cube_path, n: int = 16) -> dict | None:
    """health.noise_floor of a noisy simulated cube at its own dose and background level, from
    n patterns of its noise-free twin: {exx, eyy, exy (MAE floors), bragg_counts (electrons per
    pattern outside the central disk), central_radius, patterns, centroid (centroid_floor's
    figures)}; None for any other cube. The central disk (it does not move with strain) is
    measured on the twin's mean pattern."""
    from ccstae.core.data_io import open_cube
    from ccstae.model.health import noise_floor
    from ccstae.model.preprocess import measure_central_disk

    clean = noise_free_twin(cube_path, n)
    if clean is None:
        return None
    with open_cube(cube_path) as cube:
        a = cube.attrs
    disk = measure_central_disk(clean.mean(axis=0))
    central = disk["mask_radius"]
    counts, w, gamma = float(a["counts"]), float(a["noise_w"]), float(a["noise.lorentz_gamma"])
    floor = noise_floor(clean, counts, w, gamma, central_radius=central)
    return {**floor, "central_radius": central, "patterns": len(clean),
            "centroid": centroid_floor(clean, counts, w, gamma, central_radius=central, disk_radius=disk["radius"])}


def centroid_floor(clean: np.ndarray, counts: float, w: float = 0.0, gamma_frac: float = 0.15,
                   central_radius: float = 0.0, disk_radius: float | None = None) -> dict:
    """The rough floor of issue 11 ("the counts in the Bragg disks"): the error of measuring the
    lattice from the centroids of the Bragg disks, each centroid as uncertain as its counts allow.

    Per noise-free pattern (sum 1): disks are the local maxima outside the central disk with at
    least 5 % of the strongest one's intensity; a disk's window is its radius plus a pixel; the
    expected counts there are counts ((1 - w) I + w L) (background included). A centroid from n
    Poisson counts has a variance of (second moment of the window's counts about it) / n per
    axis, and it follows the disk by the disk's share of the window's counts; the 2x2 lattice
    matrix is the weighted least-squares fit of the centroids. Unlike the
    Cramer-Rao bound (health.noise_floor) it takes nothing from sharp disk edges, so it is what
    a disk-position method can reach, not an unreachable ideal (on disks only a few pixels wide the
    two agree, and the gradient-based bound can even land a little above it). Returns the MAE floors of exx,
    eyy, exy (an unbiased Gaussian estimator's) and the disks used per pattern."""
    from scipy.ndimage import gaussian_filter, maximum_filter

    from ccstae.physics.noise import lorentzian
    from ccstae.model.preprocess import measure_central_disk

    clean = np.asarray(clean, np.float64)
    size = clean.shape[-1]
    c = (size - 1) / 2
    rows, cols = np.mgrid[:size, :size]
    px, py = cols - c, rows - c
    if disk_radius is None:  # every disk is an image of the same probe aperture as the central one
        disk_radius = measure_central_disk(clean.mean(axis=0))["radius"]
    win = disk_radius + 1.0
    beyond = np.hypot(px, py) > central_radius + win  # where a Bragg disk's whole window lies
    lor = lorentzian(size, gamma_frac * size)
    var = {k: [] for k in ("exx", "eyy", "exy")}
    n_disks = []
    for img in clean:
        img = img / img.sum()
        lam = counts * ((1 - w) * img + w * lor)
        smooth = gaussian_filter(img, max(1.0, disk_radius / 2))
        peak = (smooth == maximum_filter(smooth, int(2 * win) + 1)) & beyond
        peak &= smooth >= 0.05 * smooth[beyond].max()
        fisher = np.zeros((2, 2))
        used = 0
        for r0, c0 in np.argwhere(peak):
            inside = np.hypot(rows - r0, cols - c0) <= win
            n = lam[inside].sum()
            disk = counts * (1 - w) * img[inside].sum()
            if disk <= 0:
                continue
            g = np.array([(lam * px)[inside].sum(), (lam * py)[inside].sum()]) / n
            spread = ((px[inside] - g[0]) ** 2 + (py[inside] - g[1]) ** 2) @ lam[inside] / (2 * n)
            # Background counts in the window pull the centroid towards the window's centre: it
            # follows the disk only by the disk's share of the counts, which scales its error up.
            fisher += np.outer(g, g) * (disk / n) ** 2 / (spread / n)
            used += 1
        cov = np.linalg.pinv(fisher) if used >= 2 else np.full((2, 2), np.inf)
        var["exx"].append(cov[0, 0])  # the pattern frame (x along columns): relabelled below
        var["eyy"].append(cov[1, 1])
        var["exy"].append((cov[0, 0] + cov[1, 1]) / 4)
        n_disks.append(used)
    mae_factor = np.sqrt(2 / np.pi)
    from ccstae.physics.strain import swap_frame

    floors = swap_frame({k: float(mae_factor * np.mean(np.sqrt(v))) for k, v in var.items()})  # the user frame
    return {**floors, "disks": float(np.mean(n_disks))}


def bayes_floor(floor: dict, truth: dict) -> dict:
    """The floor for estimators that shrink towards the scan's typical strain (as a trained
    encoder does): per-pattern measurements with the Cramer-Rao error of `floor`
    (cube_noise_floor) on strains spread like `truth` (referenced truth maps), combined as a
    Gaussian prior and likelihood: a flat map's MAE times sigma / sqrt(tau^2 + sigma^2) (tau the
    truth's spread, sigma the measurement's), so with no information it is a flat map's MAE.
    It uses the truth's spread, so it is for evaluation only; no per-pattern method, however it
    is trained, goes below it (in the Gaussian approximation)."""
    k = np.sqrt(2 / np.pi)  # MAE of a zero-mean Gaussian over its std
    out = {}
    for key in ("exx", "eyy", "exy"):
        t = np.asarray(truth[key], np.float64)
        flat, tau, sigma = float(np.mean(np.abs(t - t.mean()))), float(np.std(t)), floor[key] / k
        out[key] = flat * float(sigma / np.hypot(tau, sigma)) if np.isfinite(sigma) else flat
    return out


def skill_lines(cube_path, truth: dict, period: float) -> dict:
    """What `make hls` prints beside every MAE on one test cube: a flat map's MAE (no skill), the
    shot-noise (Cramer-Rao) floor, what Bragg-disk centroids reach with the same electrons and the
    Bayes bound; the floors only for cubes `ccstae simulate` wrote. truth: referenced truth maps."""
    from ccstae.physics.strain import flat_map_mae

    out = {"flat map": flat_map_mae(truth, period)}
    floor = cube_noise_floor(cube_path)
    if floor is not None:
        out["noise floor"] = {k: v for k, v in floor.items() if k != "centroid"}
        out["centroids"] = floor["centroid"]
        out["Bayes bound"] = bayes_floor(floor, truth)
    return out
