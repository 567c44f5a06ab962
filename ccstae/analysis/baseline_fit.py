"""The classical baseline's lattice fit: py4DSTEM's Bragg vector map, a reduced basis of it, and
fit_basis_vectors, per position (ccstae/analysis/baseline.py says why each step is as it is).
"""
from __future__ import annotations

import math

import numpy as np

from ccstae.analysis.baseline_geometry import BaselineParams, blank_central_disk, measure_geometry
from ccstae.analysis.baseline_py4dstem import find_disks, quiet, require
from ccstae.core.errors import UserError

MAX_RESIDUAL_G = 0.1  # median fit residual (x g) above which the peaks are not a lattice (fit_lattice)


def reduced_basis(bvm: np.ndarray, origin, min_spacing: float, sigma: float, r_min: float, min_relative: float,
                  source: str = "cube"):
    """g1, g2 (py4DSTEM's (qx, qy), relative to the origin) from the Bragg vector map: the two
    shortest non-collinear strong maxima, a reduced cell of any 2D lattice.

    Not py4DSTEM's guess, which takes g2 as the short vector most nearly perpendicular to g1:
    on a hexagonal lattice that is g1 + 2 g2, a basis of half the lattice, and the indexing
    then rounds half-integer indices into wrong ones (measured: 0.003 bias in exy).
    """
    from py4DSTEM.process.utils import get_maxima_2D

    m = get_maxima_2D(bvm, subpixel="multicorr", upsample_factor=16, minAbsoluteIntensity=0, minRelativeIntensity=0,
                      relativeToPeak=0, minSpacing=min_spacing, edgeBoundary=1, maxNumPeaks=40, sigma=sigma)
    v = np.stack([m["x"] - origin[0], m["y"] - origin[1]], -1)
    d, inten = np.hypot(*v.T), m["intensity"]
    strong = d > r_min  # the blanked centre and its rim hold no lattice point
    if strong.any():
        strong &= inten >= min_relative * inten[strong].max()
    order = [i for i in np.argsort(d) if strong[i]]
    if len(order) >= 2:
        g1 = v[order[0]]
        for i in order[1:]:
            # A reduced cell's two vectors make 60-120 degrees (|g1.g2| <= |g1|^2 / 2); 50-130 leaves room
            # for strain. Two maxima of grains turned 20-30 degrees apart are not a basis (issue 22: a
            # polycrystal seen through a rotated detector picked such a pair).
            if abs(np.dot(g1, v[i])) < math.cos(math.radians(50)) * d[order[0]] * d[i]:
                return g1, v[i]
    raise UserError(f"{source}: no lattice visible: the Bragg vector map has no two non-collinear maxima")


def refine_on_smoothed(bvm: np.ndarray, origin, g, sigma: float, tolerance: float):
    """The maximum of the BVM smoothed by sigma nearest to g (within tolerance), else g itself."""
    from py4DSTEM.process.utils import get_maxima_2D

    if not sigma > 0:
        return g
    m = get_maxima_2D(bvm, subpixel="multicorr", upsample_factor=16, minAbsoluteIntensity=0, minRelativeIntensity=0,
                      relativeToPeak=0, minSpacing=tolerance, edgeBoundary=1, maxNumPeaks=100, sigma=sigma)
    v = np.stack([m["x"] - origin[0], m["y"] - origin[1]], -1)
    d = np.hypot(*(v - g).T)
    return v[np.argmin(d)] if len(d) and d.min() <= tolerance else g


def lattice_directions(g1, g2, q_max: float):
    """py4DSTEM PointList of the lattice points h g1 + k g2 (origin excluded) within q_max."""
    from py4DSTEM import PointList

    n = int(math.ceil(q_max / min(np.hypot(*g1), np.hypot(*g2)) * 2)) + 1
    h, k = (a.ravel() for a in np.mgrid[-n:n + 1, -n:n + 1])
    q = h[:, None] * np.asarray(g1) + k[:, None] * np.asarray(g2)
    keep = (np.hypot(*q.T) <= q_max) & ((h != 0) | (k != 0))
    data = np.zeros(keep.sum(), dtype=[("qx", float), ("qy", float), ("g1_ind", int), ("g2_ind", int)])
    data["qx"], data["qy"], data["g1_ind"], data["g2_ind"] = q[keep, 0], q[keep, 1], h[keep], k[keep]
    return PointList(data=data)


def fit_lattice(data: np.ndarray, params: BaselineParams = BaselineParams(), geometry: dict | None = None,
                progress: bool = False, source: str = "cube") -> dict:
    """py4DSTEM on a (Rx, Ry, Qx, Qy) array -> per-position lattice vectors.

    Returns {"G": (Rx, Ry, 2, 2), columns g1, g2 in the pattern frame's (x, y) pixels (NaN where no fit),
    "valid": (Rx, Ry) bool, "strainmap": the py4DSTEM StrainMap, "params": the pixel values
    used, "geometry": what was measured}. geometry: a measure_geometry result to reuse.
    """
    py4DSTEM = require()
    import matplotlib

    matplotlib.use("Agg")  # py4DSTEM's StrainMap draws figures: never show them
    import matplotlib.pyplot as plt

    data = np.asarray(data)
    if data.ndim != 4:
        raise UserError(f"{source}: a 4D cube (Rx, Ry, Qx, Qy) is needed, got shape {data.shape}")
    geo = dict(geometry or measure_geometry(data, params, source))
    s = params.scaled(geo)
    blanked = blank_central_disk(data, geo["origins"], geo["fill_radius_px"])
    with quiet(progress):
        bv = find_disks(py4DSTEM, blanked, s, params, s["minAbsoluteIntensity"])
        bv.calibration.set_origin(tuple(np.asarray(o, np.float64) for o in geo["origins"]))
        bv.setcal()
        sm = py4DSTEM.StrainMap(braggvectors=bv)
        # The lattice spacing from a lightly smoothed map, then the basis from the map smoothed
        # in units of it (so grain rotations average out, see bvm_sigma).
        r_min = geo["fill_radius_px"] + geo["disk_radius_px"]
        g1, g2 = reduced_basis(sm.bvm.data, sm.origin, s["minPeakSpacing"], 1.0, r_min, params.bvm_min_relative,
                               source)
        geo["g_px"] = float(min(np.hypot(*g1), np.hypot(*g2)))
        s = params.scaled(geo)
        g1, g2 = (refine_on_smoothed(sm.bvm.data, sm.origin, v, s["bvm_sigma"], s["max_peak_spacing"])
                  for v in (g1, g2))
        sm.g1, sm.g2 = tuple(g1), tuple(g2)
        sm.braggdirections = lattice_directions(g1, g2, math.hypot(*data.shape[-2:]) / 2)
        sm.fit_basis_vectors(max_peak_spacing=s["max_peak_spacing"])
        plt.close("all")
    g = {k: np.asarray(sm.g1g2_map.get_slice(k).data, np.float64) for k in ("g1x", "g1y", "g2x", "g2y")}
    valid = np.asarray(sm.g1g2_map.get_slice("mask").data).astype(bool)
    valid &= np.all([np.isfinite(v) for v in g.values()], axis=0)
    # py4DSTEM (qx, qy) = our (y, x): column j of G is g_j = (x, y) = (qy, qx).
    G = np.stack([np.stack([g["g1y"], g["g2y"]], -1), np.stack([g["g1x"], g["g2x"]], -1)], -2)
    G[~valid] = np.nan
    # A lattice is visible when most positions fit well. Noise alone also "fits" a few positions
    # (measured on Poisson noise around a central disk: 12-23 % fitted, median residual 0.1 g;
    # Bragg disks: 100 %, 0.001-0.02 g noise-free or at 1e5 e).
    error = np.asarray(sm.g1g2_map.get_slice("error").data) / geo["g_px"]
    residual = float(np.median(error[valid])) if valid.any() else np.inf
    if valid.mean() < 0.5 and residual > 0.05:
        raise UserError(f"{source}: no lattice visible: py4DSTEM fitted a lattice at only "
                        f"{100 * valid.mean():.0f} % of positions, median residual {residual:.2f} x g")
    # Peaks that do not sit on any lattice still get "indexed" within the wide tolerance: the rings
    # of a fine-grained polycrystal (real Merlin frames: every position fitted, residual 0.145 g with
    # a basis across the two rings, 0.21 g with both vectors on one). Simulated lattices fitted at
    # >= half the positions stay below 0.04 g, even at 3e3 e/pattern: the cut sits between the two.
    if residual > MAX_RESIDUAL_G:
        raise UserError(f"{source}: no lattice visible: the detected peaks sit {residual:.2f} x g off the best "
                        "lattice at the median position (rings of a polycrystal or noise, not the Bragg disks "
                        "of one crystal)")
    geo_out = {k: v for k, v in geo.items() if k != "origins"}
    geo_out.update(g1_px=[float(g1[0]), float(g1[1])], g2_px=[float(g2[0]), float(g2[1])],  # (qx, qy): the user frame
                   origin_drift_px=float(np.ptp(geo["origins"][0]) + np.ptp(geo["origins"][1])),
                   fit_residual_g=residual)
    return {"G": G, "valid": valid, "strainmap": sm, "params": s, "geometry": geo_out}
