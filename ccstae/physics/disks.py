"""Bragg disks measured in patterns, to compare engines (tests, bench/bench_engines.py).

Each disk is measured inside a circle of radius (disk radius + 1 px) around where the sample's
ground truth (in the pattern frame, docs/frame.md) puts it (model/simulate.disk_centres): its
centroid (row, col) and its integrated intensity (a share of the pattern, patterns summing to
1). Only disks whose circle lies fully on the detector count, and positions are compared only on disks holding at least 5 % of the mean
intensity of the brightest one in both engines: a faint disk's centroid is the tails of its
bright neighbours (a kinematic SrTiO3 (100) disk is ~1e-4 of a (110) disk).
"""
from __future__ import annotations

import numpy as np


def measure(patterns, p, gt, orders: int = 2) -> dict:
    """Disks of (Rx, Ry, P, P) patterns with ground-truth maps gt.

    Returns predicted (Rx, Ry, D, 2) and measured centroids, intensities (Rx, Ry, D) of the central
    disk (index 0) and the first `orders` shells of reflections, a (D,) mask of disks on the detector
    and the (D,) shell of each disk (0 central, 1 first order, ...).
    """
    from ccstae.physics.simulate import disk_centres

    patterns = np.asarray(patterns, np.float64)
    rx, ry, P, _ = patterns.shape
    centres = disk_centres(p, gt["exx"], gt["eyy"], gt["exy"], gt["theta"])  # (Rx, Ry, D, 2)
    ref = disk_centres(p, 0, 0, 0, 0)
    shells = np.unique(np.round(np.hypot(ref[:, 0] - p.centre, ref[:, 1] - p.centre), 3))
    dist = np.round(np.hypot(ref[:, 0] - p.centre, ref[:, 1] - p.centre), 3)
    keep = dist <= shells[min(orders, len(shells) - 1)] + 1e-3
    centres = centres[:, :, keep]
    shell = np.searchsorted(shells, dist[keep])
    radius = p.disk_radius_px + 1.0
    rows, cols = np.mgrid[:P, :P]
    d = centres.shape[2]
    found = np.full(centres.shape, np.nan)
    inten = np.zeros((rx, ry, d))
    for i in range(rx):
        for j in range(ry):
            for k in range(d):
                w = patterns[i, j] * (((rows - centres[i, j, k, 0]) ** 2 + (cols - centres[i, j, k, 1]) ** 2)
                                      <= radius**2)
                inten[i, j, k] = w.sum()
                if inten[i, j, k] > 0:
                    found[i, j, k] = ((w * rows).sum() / inten[i, j, k], (w * cols).sum() / inten[i, j, k])
    on = np.all((centres - radius >= 0) & (centres + radius <= P - 1), axis=(0, 1, 3))
    return {"predicted": centres, "found": found, "intensity": inten, "on_detector": on, "shell": shell}


def interior(grain, steps: int) -> np.ndarray:
    """(Rx, Ry) mask of probe positions at least `steps` scan steps from a grain boundary (or the
    scan edge): there the probe sees one grain, and a pattern one lattice."""
    g = np.asarray(grain)
    rx, ry = g.shape
    ok = np.zeros_like(g, bool)
    for i in range(steps, rx - steps):
        for j in range(steps, ry - steps):
            ok[i, j] = np.all(g[i - steps:i + steps + 1, j - steps:j + steps + 1] == g[i, j])
    return ok


def compare(a: dict, b: dict, where=None) -> dict:
    """Numbers for two engines' measure() of the same sample (b the reference, e.g. multislice),
    over the probe positions `where` ((Rx, Ry) bool, default all)."""
    where = np.ones(a["intensity"].shape[:2], bool) if where is None else np.asarray(where, bool)
    if not where.any():
        return {"positions": 0}
    a, b = ({k: (v[where] if v.ndim > 1 else v) for k, v in d.items()} for d in (a, b))
    a, b = ({k: (v[None] if v.ndim > 1 else v) for k, v in d.items()} for d in (a, b))  # (1, n, ...)
    on = a["on_detector"] & b["on_detector"]
    on[0] = True
    mean_a, mean_b = a["intensity"].mean(axis=(0, 1)), b["intensity"].mean(axis=(0, 1))
    strong = on & (mean_a >= 0.05 * mean_a[1:][on[1:]].max()) & (mean_b >= 0.05 * mean_b[1:][on[1:]].max())
    strong[0] = True
    pos = np.hypot(*(a["found"][:, :, strong] - b["found"][:, :, strong]).transpose(3, 0, 1, 2))
    first = on & (a["shell"] == 1)
    first_a, first_b = a["intensity"][..., first], b["intensity"][..., first]
    return {"disk_position_error_px_max": float(np.nanmax(pos)),
            "disk_position_error_px_rms": float(np.sqrt(np.nanmean(pos**2))),
            "central_share": (float(a["intensity"][..., 0].mean()), float(b["intensity"][..., 0].mean())),
            "first_order_share": (float(first_a.mean()), float(first_b.mean())),
            "first_order_ratio": float(first_a.mean() / first_b.mean()),
            "positions": int(where.sum()), "disks_compared": int(strong.sum()),
            # spread of one disk's intensity over the scan: dynamical effects vary from place to place
            "first_order_cv": (float((first_a.std(axis=(0, 1)) / first_a.mean(axis=(0, 1))).mean()),
                               float((first_b.std(axis=(0, 1)) / first_b.mean(axis=(0, 1))).mean()))}


def pattern_rms(a, b) -> float:
    """Normalised RMS difference ||a - b|| / ||b|| over all patterns (b the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(((a - b) ** 2).sum() / (b**2).sum()))
