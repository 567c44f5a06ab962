"""Detector-side preprocessing the encoder (and so the firmware) expects.

    x = sqrt(crop(bin(I)) / s)

- bin: sum of b x b pixel blocks (`input_binning`), which any detector readout can do and
  which divides the firmware's initiation interval (one input pixel per clock) by b^2;
- crop: drop `input_crop` pixels at each edge of the binned pattern (the outer ring holds
  no disk the loss uses), which shortens the stream further: 32x32 -> 30x30 is 900 instead of
  1,024 clocks per pattern;
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


def fit_scale(patterns: np.ndarray, binning: int, crop: int = 0) -> float:
    """The scan-wide constant s from a sample of (N, P, P) patterns."""
    x = crop_patterns(bin_patterns(np.asarray(patterns, np.float64), binning), crop)
    s = float(np.percentile(x, SCALE_PERCENTILE))
    if not np.isfinite(s) or s <= 0:
        raise ValueError("cannot fit the input scale: the patterns are empty or not finite")
    return s


def crop_patterns(patterns: np.ndarray, crop: int) -> np.ndarray:
    return patterns[..., crop:patterns.shape[-2] - crop, crop:patterns.shape[-1] - crop] if crop else patterns


def input_size(pattern: int, binning: int, crop: int) -> int:
    """Encoder input size for a detector pattern size."""
    return pattern // binning - 2 * crop


def preprocess(patterns: np.ndarray, scale: float, binning: int, crop: int = 0) -> np.ndarray:
    """(N, P, P) intensities -> (N, P/b - 2 crop, P/b - 2 crop, 1) float32 encoder inputs."""
    x = crop_patterns(bin_patterns(np.asarray(patterns, np.float32), binning), crop)
    return np.sqrt(np.maximum(x, 0) / np.float32(scale))[..., None].astype(np.float32)
