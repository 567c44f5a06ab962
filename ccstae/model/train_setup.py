"""What training reads and measures from the cube before its first step: the patterns (calibrated
when asked), the preprocessing, the noise that noise_mode "auto" resolves to, the lattice of the
initial reference, and the one-line summary.

Split from ccstae/model/train.py (the training loop): these run once per run, on a sample of the
patterns, and only for a float run (quantization-aware training reuses the float run's record).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ccstae.core.data_io import open_cube
from ccstae.core.errors import UserError
from ccstae.model import measure, network, preprocess
from ccstae.physics import lattice, noise


def fit_preprocess(cfg: dict, patterns: np.ndarray, binning: int, crop: int, counts: float | None = None) -> dict:
    """Measure the preprocessing on a sample of the training patterns. s comes from that
    sample with the strongest training noise injected, so noisy inputs do not saturate
    the input quantizer. noise_mode "auto" is resolved here, from the measured background
    and the cube's electrons per pattern (measure.choose_noise), into cfg and the record
    (cfg["noise"]["counts"] too when it injects shot noise at the cube's own dose).
    counts: the cube's electrons per pattern where its patterns cannot tell (calibrated ones are
    resampled: physics/calibration.counting_patterns); None: measured on the sample."""
    m, t = cfg["model"], cfg["train"]
    sample = patterns[:: max(1, len(patterns) // 2000)]
    choice = None
    if t["noise_mode"] == "auto":
        measured = preprocess.fit_preprocess(sample, binning, crop, m["central_mask"])["measured"]
        choice = measure.choose_noise(measured, counts if counts is not None else noise.estimate_counts(sample),
                                      t["noise_levels"])
        t["noise_mode"], t["noise_levels"] = choice["mode"], choice["levels"]
        if choice["counts"] is not None:  # inject shot noise at the cube's own dose
            cfg["noise"]["counts"] = float(choice["counts"])
    levels = [0.0] if t["noise_mode"] == "none" else t["noise_levels"]
    noisy = noise.add_noise(sample, np.full(len(sample), max(levels)), float(cfg["noise"]["counts"]),
                            np.random.default_rng(t["seed"] + 7), gamma_frac=float(cfg["noise"]["lorentz_gamma"]))
    try:
        prep = preprocess.fit_preprocess(sample, binning, crop, m["central_mask"], scale_patterns=noisy)
    except measure.MeasurementError:
        raise
    except ValueError as e:
        raise UserError(f"training patterns: {e}") from None
    if choice is not None:
        prep["noise_choice"] = {"requested": "auto", **choice}
    return prep


def fit_lattice(reference: np.ndarray, configured: str, prep: dict | None = None) -> dict:
    """The lattice record of preprocess.json: the symmetry measured on the initial reference (or
    the configured one) and the rotation range it allows the encoder."""
    m = (prep or {}).get("measured", {})
    inner = float((prep or {}).get("mask", {}).get("radius", 0.0))
    if "disk_radius" in m:  # background-proof, checked against the first-order peaks (issue 25)
        measured, corr, peaks = measure.lattice_symmetry(reference, inner, float(m["disk_radius"])) \
            if configured == "auto" else (*lattice.measure_symmetry(reference), None)
    else:
        (measured, corr), peaks = lattice.measure_symmetry(reference), None
    symmetry = measured if configured == "auto" else configured
    return {"symmetry": symmetry, "configured": configured, "measured": measured,
            "rotation_correlation": {str(k): round(v, 4) for k, v in corr.items()},
            "peaks": peaks, "rotation_range": network.rotation_range(symmetry)}


def summary(prep_params: dict, t: dict, counts: float, patterns: np.ndarray, measured: float | None = None) -> str:
    """measure.summary of a run: what was measured and the noise it will inject (at `counts`), and
    why; `measured`: the cube's electrons per pattern as fit_preprocess took it (None: from `patterns`)."""
    choice = prep_params.get("noise_choice")
    noise_text = t["noise_mode"] if t["noise_mode"] == "none" else \
        f"{t['noise_mode']} w = {', '.join(f'{w:g}' for w in t['noise_levels'])} at {counts:,.0f} e/pattern"
    if choice:
        noise_text += f" (auto: {choice['why']})"
    return measure.summary(prep_params["measured"], prep_params.get("lattice", {}).get("symmetry"),
                           measured if measured is not None else noise.estimate_counts(patterns), noise_text)


def load_patterns(cube_path: Path, t: dict, seed: int, dataset: str | None = None, calibration=None,
                  scan=None) -> np.ndarray:
    """All patterns of a small cube, or a random sample of max_patterns from a large one.

    calibration: a calib.json (`ccstae calibrate`): the patterns are read as `ccstae strain
    --calibration` reads them (bad pixels filled, resampled onto the scan-aligned frame), so the
    reference is learned in the frame the maps are read in. scan: (Rx, Ry) for camera files
    that do not record it."""
    with open_cube(cube_path, dataset=dataset, scan=scan) as cube:
        if calibration is not None:
            from ccstae.physics.calibration import CalibratedCube, load_calibration

            cal = load_calibration(calibration)
            cube = CalibratedCube(cube, cal, str(calibration)) if cal else cube
        n = len(cube)
        if n <= t["max_patterns"]:
            patterns = np.concatenate([b for _, b in cube.iter_batches(1024)])
        else:
            patterns = cube.sample(t["max_patterns"], np.random.default_rng(seed))
    if not np.all(np.isfinite(patterns)):
        raise UserError(f"{cube_path}: the cube holds NaN or infinite values")
    return patterns.astype(np.float32)


def file_counts(cube_path, dataset=None, scan=None) -> float | None:
    """Electrons per pattern of a cube as its file holds it (physics/calibration.counting_patterns)."""
    from ccstae.physics.calibration import counting_patterns

    with open_cube(cube_path, dataset=dataset, scan=scan) as cube:
        return noise.estimate_counts(counting_patterns(cube, 64))
