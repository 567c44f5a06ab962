"""The classical baseline's settings and what it measures from the data before the lattice fit:
the central beam (centre, radius, edge width), each pattern's origin, the central disk blanked,
and the Bragg disks' brightness from a pilot detection (ccstae/analysis/baseline.py says why).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ccstae.analysis.baseline_py4dstem import find_disks, quiet, require
from ccstae.core.errors import UserError


@dataclass(frozen=True)
class BaselineParams:
    """py4DSTEM settings in units of the MEASURED geometry, so one set serves any cube.

    r: central-disk radius (px); g: shortest lattice vector (px, from the Bragg vector map);
    I_B: the median over pilot patterns of the brightest Bragg disk's correlation peak. Tuned
    on training cubes only (bench/tune_baseline.py), never on the test scans.
    """
    template_width: float = 1.0        # synthetic disk edge width, x the measured edge width * 2
    kernel: str = "sigmoid"            # 'flat' or 'sigmoid' (a negative annulus: edge filtering)
    kernel_outer: float = 2.0          # sigmoid annulus from r to this x r
    sigma_cc: float = 1.0              # Gaussian smoothing of the cross correlation (px)
    min_bragg_intensity: float = 0.1   # x I_B: detection threshold, relative to the Bragg disks
    min_peak_spacing: float = 1.5      # x r: disks closer than this are one (non-overlapping disks: >= 2 r)
    edge_boundary: float = 1.0         # x r: disks cut by the detector edge are biased
    max_peak_spacing: float = 0.35     # x g: indexing tolerance (grains rotate +-15 deg: 0.26 g)
    upsample_factor: int = 16          # multicorr subpixel refinement
    bvm_sigma: float = 0.3             # x g: smooth the Bragg vector map so g1, g2 sit mid-way in the
    #                                    spread of grain rotations (unsmoothed, one grain's maximum won)
    bvm_min_relative: float = 0.1      # BVM maxima weaker than this x the strongest are not lattice points
    n_pilot: int = 64                  # patterns of the pilot detection (I_B)

    def scaled(self, geometry: dict) -> dict:
        """The absolute (pixel) values for a measured geometry (measure_geometry, plus g_px once known)."""
        r, g = float(geometry["disk_radius_px"]), float(geometry.get("g_px", np.nan))
        return {"radius": r, "width": max(0.5, self.template_width * 2 * float(geometry["disk_edge_px"])),
                "kernel_radii": (r, self.kernel_outer * r), "sigma_cc": self.sigma_cc,
                "minAbsoluteIntensity": self.min_bragg_intensity * float(geometry.get("bragg_intensity", 0.0)),
                "minPeakSpacing": self.min_peak_spacing * r, "edgeBoundary": int(math.ceil(self.edge_boundary * r)),
                "upsample_factor": self.upsample_factor, "fill_radius": float(geometry["fill_radius_px"]),
                "max_peak_spacing": self.max_peak_spacing * g, "bvm_sigma": self.bvm_sigma * g}


# ----------------------------------------------------------------------------- measured geometry

def central_beam(mean: np.ndarray) -> dict:
    """Centre, radius and edge width of the central disk in the mean pattern (background removed)."""
    from ccstae.core.overview import central_disk

    row, col, radius = central_disk(mean)
    rho = np.hypot(*(np.indices(mean.shape) - np.array([row, col])[:, None, None]))
    # Heights above the level just outside the disk (a diffuse background, e.g. a Lorentzian
    # under the central beam, would otherwise widen the 10 % contour).
    img = mean - mean[(rho >= radius + 2) & (rho < radius + 4)].mean()
    top = img[rho < max(radius - 1, 0.5)].mean()
    near = rho < radius + 2
    r10, r90 = (math.sqrt(np.count_nonzero(near & (img > f * top)) / math.pi) for f in (0.1, 0.9))
    edge = min(max(0.3, (r10 - r90) / 2.2), radius / 2)
    return {"centre": (row, col), "disk_radius_px": radius, "disk_edge_px": edge}


def central_origins(data: np.ndarray, centre, radius: float, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pattern centre of mass (row, col) of the central disk, above the level just outside it."""
    qx, qy = data.shape[-2:]
    rr, cc = np.indices((qx, qy))
    rho = np.hypot(rr - centre[0], cc - centre[1])
    inner = rho < radius + 3 * edge + 1
    ring = (rho >= radius + 3 * edge + 1) & (rho < radius + 3 * edge + 3)
    flat = data.reshape(-1, qx * qy)
    w = np.clip(flat[:, inner.ravel()] - flat[:, ring.ravel()].mean(1, keepdims=True), 0, None).astype(np.float64)
    total = np.maximum(w.sum(1), 1e-30)
    r0, c0 = (w @ rr[inner]) / total, (w @ cc[inner]) / total
    return r0.reshape(data.shape[:2]), c0.reshape(data.shape[:2])


def blank_central_disk(data: np.ndarray, origins, fill_radius: float) -> np.ndarray:
    """A float32 copy with each pattern's disk of fill_radius (about its own origin) set to the mean
    of the 2 px ring just outside it: no central peak, no central tails, no step at its border."""
    out = np.array(data, np.float32, copy=True)
    qx, qy = data.shape[-2:]
    rr, cc = np.indices((qx, qy), dtype=np.float32)
    flat = out.reshape(-1, qx, qy)
    r0, c0 = (np.asarray(o, np.float32).ravel() for o in origins)
    for s in range(0, len(flat), 256):
        sl = slice(s, s + 256)
        rho = np.hypot(rr - r0[sl, None, None], cc - c0[sl, None, None])
        inside, ring = rho < fill_radius, (rho >= fill_radius) & (rho < fill_radius + 2)
        level = (flat[sl] * ring).sum((1, 2)) / np.maximum(ring.sum((1, 2)), 1)
        flat[sl] = np.where(inside, level[:, None, None], flat[sl])
    return out


def measure_geometry(data: np.ndarray, params: "BaselineParams" = None, source: str = "cube") -> dict:
    """Central disk (centre, radius, edge), per-pattern origin and the Bragg disks' brightness, from the data.

    The brightness I_B comes from a pilot detection (no thresholds, central disk blanked) on
    params.n_pilot patterns: the median over them of the brightest disk beyond the blanked
    centre. Raises UserError (naming `source`) when no Bragg disk is visible.
    """
    py4DSTEM = require()
    params = params or BaselineParams()
    flat = data.reshape(-1, *data.shape[-2:])
    if not np.all(np.isfinite(flat.sum((1, 2)))) or flat.sum() <= 0:
        raise UserError(f"{source}: patterns hold NaN/inf or no counts: no lattice to fit")
    geo = central_beam(flat.mean(0, dtype=np.float64))
    r, edge = geo["disk_radius_px"], geo["disk_edge_px"]
    origins = central_origins(data, geo["centre"], r, edge)
    fill = r + 2 * edge + 1  # beyond the central disk's soft edge
    pick = np.random.default_rng(0).permutation(len(flat))[:params.n_pilot]
    pilot_origins = tuple(o.ravel()[pick] for o in origins)
    pilot = blank_central_disk(flat[pick][None], tuple(o[None] for o in pilot_origins), fill)
    with quiet(False):
        bv = find_disks(py4DSTEM, pilot, params.scaled({**geo, "fill_radius_px": fill}), params, 0.0)
    brightest = []
    for i in range(len(pick)):
        v = bv.raw[0, i]
        keep = np.hypot(v.qx - pilot_origins[0][i], v.qy - pilot_origins[1][i]) > fill + r  # not the centre's rim
        if keep.sum() >= 2:
            brightest.append(v.I[keep].max())
    if len(brightest) < max(3, 0.2 * len(pick)):
        raise UserError(f"{source}: no lattice visible: fewer than 2 Bragg disks beside the central beam in "
                        f"{len(pick) - len(brightest)} of {len(pick)} sampled patterns")
    return {**geo, "centre": [float(v) for v in geo["centre"]], "origins": origins, "fill_radius_px": fill,
            "bragg_intensity": float(np.median(brightest))}
