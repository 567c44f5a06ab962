"""The lattice symmetry of a specimen, measured from a pattern (no labels).

The encoder's rotation bound is half the lattice's rotational period (ccstae/model/network.py):
a rotation beyond it is the same pattern as a smaller one of opposite sign, so the bound
must follow the symmetry. `measure_symmetry` correlates a pattern (in practice the
training's reference initialisation: one grain, noise averaged out) with itself rotated
by 60, 90 and 180 degrees and takes the highest order it matches.

Each ring's mean is taken off the pattern first (`anisotropic`): what is left is the Bragg
disks' angular structure alone. A radial background (the Lorentzian of ccstae/physics/noise.py,
diffuse scattering) is the same pattern at every rotation and lifted every correlation with it:
a square lattice under w = 0.5 matched at 60 degrees and was called hexagonal (issue 25).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import rotate

MATCH = 0.6  # correlation above which a rotated pattern counts as the same
SYMMETRIES = ("auto", "hexagonal", "square", "rectangular")


def anisotropic(image: np.ndarray) -> np.ndarray:
    """The image less its radial profile about the image centre (ring means, interpolated to
    each pixel's radius: whole rings would leave the pixel grid's 4-fold pattern on a steep
    background). A central mask (zeros out to some radius) is left out with a pixel around it,
    for the same reason."""
    img = np.asarray(image, np.float64)
    c = (img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2
    rows, cols = np.mgrid[:img.shape[0], :img.shape[1]]
    r = np.hypot(rows - c[0], cols - c[1])
    ring = np.floor(r).astype(int)
    mean = np.bincount(ring.ravel(), img.ravel()) / np.maximum(np.bincount(ring.ravel()), 1)
    out = img - np.interp(r, np.arange(len(mean)) + 0.5, mean)
    nonzero = r[img != 0]
    masked = nonzero.min() if nonzero.size else 0.0  # the central mask's radius (0: none)
    out[r < masked + 1.5 if masked > 1 else r < 0] = 0.0
    return out


def rotation_correlations(image: np.ndarray) -> dict:
    """Pearson correlation of a (P, P) image's anisotropic part with itself rotated about its
    centre, per fold."""
    img = anisotropic(image)
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
