"""The lattice symmetry of a specimen, measured from a pattern (no labels).

The encoder's rotation bound is half the lattice's rotational period (ccstae/model/network.py):
a rotation beyond it is the same pattern as a smaller one of opposite sign, so the bound
must follow the symmetry. `measure_symmetry` correlates a pattern (in practice the
training's reference initialisation: one grain, noise averaged out) with itself rotated
by 60, 90 and 180 degrees and takes the highest order it matches.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import rotate

MATCH = 0.6  # correlation above which a rotated pattern counts as the same
SYMMETRIES = ("auto", "hexagonal", "square", "rectangular")


def rotation_correlations(image: np.ndarray) -> dict:
    """Pearson correlation of a (P, P) image with itself rotated about its centre, per fold."""
    img = np.asarray(image, np.float64)
    out = {}
    for fold in (6, 4, 2):
        rot = rotate(img, 360.0 / fold, reshape=False, order=1, mode="constant")
        inside = rotate(np.ones_like(img), 360.0 / fold, reshape=False, order=1, mode="constant") > 0.99
        a, b = img[inside] - img[inside].mean(), rot[inside] - rot[inside].mean()
        den = np.sqrt((a * a).sum() * (b * b).sum())
        out[fold] = float((a * b).sum() / den) if den > 0 else 0.0
    return out


def measure_symmetry(image: np.ndarray) -> tuple[str, dict]:
    """("hexagonal" | "square" | "rectangular", correlations per fold) of a pattern."""
    corr = rotation_correlations(image)
    if corr[6] >= MATCH:
        return "hexagonal", corr
    if corr[4] >= MATCH:
        return "square", corr
    return "rectangular", corr
