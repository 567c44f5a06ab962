"""Detector-side preprocessing the encoder (and so the firmware) expects.

    x = sqrt(bin(I) / s)

- bin: sum of b x b pixel blocks (`input_binning`), which any detector readout can do and
  which divides the firmware's initiation interval (one input pixel per clock) by b^2;
- sqrt: variance-stabilising for Poisson counts and a compression of the bright central
  disk against the weak Bragg disks; on the front end it is a lookup table on counts;
- s: ONE scan-wide constant (a high percentile of binned intensities in the training
  data), so no per-pattern division is needed in the pipeline. It is saved with the model.
"""
from __future__ import annotations

import numpy as np

SCALE_PERCENTILE = 99.9


def bin_patterns(patterns: np.ndarray, binning: int) -> np.ndarray:
    """Sum b x b blocks of (..., P, P) patterns; P must be divisible by b."""
    if binning == 1:
        return patterns
    *lead, h, w = patterns.shape
    if h % binning or w % binning:
        raise ValueError(f"pattern size {h}x{w} is not divisible by input_binning={binning}")
    return patterns.reshape(*lead, h // binning, binning, w // binning, binning).sum(axis=(-3, -1))


def fit_scale(patterns: np.ndarray, binning: int) -> float:
    """The scan-wide constant s from a sample of (N, P, P) patterns."""
    s = float(np.percentile(bin_patterns(np.asarray(patterns, np.float64), binning), SCALE_PERCENTILE))
    if not np.isfinite(s) or s <= 0:
        raise ValueError("cannot fit the input scale: the patterns are empty or not finite")
    return s


def preprocess(patterns: np.ndarray, scale: float, binning: int) -> np.ndarray:
    """(N, P, P) intensities -> (N, P/b, P/b, 1) float32 encoder inputs."""
    x = bin_patterns(np.asarray(patterns, np.float32), binning)
    return np.sqrt(np.maximum(x, 0) / np.float32(scale))[..., None].astype(np.float32)
