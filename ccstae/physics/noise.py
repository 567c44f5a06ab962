"""Auto4DSTEM's background-noise model for diffraction patterns.

    I_noisy = Poisson(((1 - w) I + w L) C) / C

I is the clean pattern normalised to sum 1, L a centred Lorentzian 1 / (1 + q^2 / gamma^2)
normalised to sum 1 (q: distance in pixels from the pattern centre (P - 1) / 2, the centre
ccstae/physics/simulate.py uses), w in [0, 1) the background level and C the electrons per pattern.
The expected pattern is (1 - w) I + w L and the variance of each pixel is that mean / C.

Patterns that do not sum to 1 (real data) are normalised first and scaled back after, so
the output keeps the input's scale: I_noisy = S Poisson(((1 - w) I / S + w L) C) / C.
"""
from __future__ import annotations

import math

import numpy as np

from ccstae.core.errors import UserError


def lorentzian(P: int, gamma_px: float) -> np.ndarray:
    """(P, P) float64 centred Lorentzian 1 / (1 + q^2 / gamma^2), normalised to sum 1."""
    c = (P - 1) / 2
    rows, cols = np.mgrid[:P, :P]
    q2 = (rows - c) ** 2 + (cols - c) ** 2
    lor = 1.0 / (1.0 + q2 / float(gamma_px) ** 2)
    return lor / lor.sum()


def check_level(w) -> np.ndarray:
    """w (a scalar or per-sample array) must lie in [0, 1); returns it as float64."""
    arr = np.asarray(w, np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr >= 1):
        shown = arr if arr.ndim == 0 else f"values in [{arr.min():g}, {arr.max():g}]"
        raise UserError(f"noise level w = {shown} is outside [0, 1): w is the background fraction")
    return arr


def check_counts(counts) -> float:
    try:
        c = float(counts)
    except (TypeError, ValueError):
        raise UserError(f"noise counts = {counts!r} is not a number") from None
    if not math.isfinite(c) or c <= 0:
        raise UserError(f"noise counts = {counts!r} must be > 0 (electrons per pattern)")
    return c


def counts_from_dose(dose_e_per_A2: float, scan_step_A: float) -> float:
    """Electrons per pattern of a dose in e/A^2: each probe position receives the dose of one
    scan-step square (dose x step^2), the usual convention for 4D-STEM doses."""
    dose = float(dose_e_per_A2)
    if not math.isfinite(dose) or dose <= 0:
        raise UserError(f"dose = {dose_e_per_A2!r} must be > 0 (electrons per square Angstrom)")
    return dose * float(scan_step_A) ** 2


def dose_from_counts(counts: float, scan_step_A: float) -> float:
    """Dose in e/A^2 of `counts` electrons per pattern at a scan step in Angstrom."""
    return check_counts(counts) / float(scan_step_A) ** 2


def estimate_counts(patterns: np.ndarray, n: int = 16) -> float | None:
    """Electrons per pattern of measured patterns, from the data alone; None for noise-free ones.

    Raw detector counts are integers: their sum. Patterns from this noise model hold
    Poisson(...) x total / C: per pattern every value is a count k times one step, and the
    smallest distinct values (where float32 keeps that grid exact) differ by one step, so the
    pattern holds sum / step electrons. Noise-free patterns have no such grid. The median over
    the first n patterns."""
    found = []
    for x in np.asarray(patterns, np.float64).reshape(len(patterns), -1)[:n]:
        if np.all(x == np.round(x)):
            found.append(x.sum())
            continue
        small = np.unique(x[x > 0])[:50]
        if small.size < 3:
            return None
        step = np.diff(small[:20]).min()  # counts k and k + 1
        k = small / step
        if not np.all(np.abs(k - np.round(k)) < 1e-2):
            return None
        found.append(x.sum() / step)
    return float(np.median(found)) if found else None


def add_noise(patterns: np.ndarray, w, counts: float, rng: np.random.Generator,
              gamma_frac: float = 0.15) -> np.ndarray:
    """Noisy copies of (N, P, P) or (P, P) patterns, float32; fresh draws from rng each call.

    w: one level, or an array of per-sample levels of shape (N,) (mixed-noise training).
    gamma_frac: Lorentzian half width as a fraction of the pattern size P.
    """
    levels = check_level(w)
    counts = check_counts(counts)
    x = np.asarray(patterns, np.float64)
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"patterns must be (N, P, P) or (P, P), got shape {np.shape(patterns)}")
    if levels.ndim == 1 and len(levels) != len(x):
        raise ValueError(f"{len(levels)} noise levels for {len(x)} patterns")
    levels = levels.reshape(-1, 1, 1) if levels.ndim == 1 else levels
    lor = lorentzian(x.shape[-1], gamma_frac * x.shape[-1]) if x.shape[-1] == x.shape[-2] else \
        _lorentzian_rect(x.shape[-2], x.shape[-1], gamma_frac)
    total = x.sum(axis=(1, 2), keepdims=True)
    total = np.where(total > 0, total, 1.0)
    lam = ((1 - levels) * (x / total) + levels * lor) * counts
    out = (rng.poisson(np.maximum(lam, 0)) / counts * total).astype(np.float32)
    return out[0] if single else out


def _lorentzian_rect(h: int, w: int, gamma_frac: float) -> np.ndarray:
    """Lorentzian on a non-square detector (gamma from the mean side)."""
    rows, cols = np.mgrid[:h, :w]
    q2 = (rows - (h - 1) / 2) ** 2 + (cols - (w - 1) / 2) ** 2
    lor = 1.0 / (1.0 + q2 / (gamma_frac * (h + w) / 2) ** 2)
    return lor / lor.sum()
