"""The classical baseline: py4DSTEM Bragg-disk detection and lattice fitting, on ANY cube.

    maps, info = baseline_maps(cube)            # exx, eyy, exy, theta like ccstae/analysis/evaluate.py
    strain.mae(maps, evaluate.truth_maps(cube.ground_truth))
    ccstae baseline --input CUBE --out STRAIN.h5 [--region R0:R1,C0:C1]

Everything it needs is measured from the data, never from simulator attributes
(measure_geometry):

- the mean pattern gives the central beam (position, disk radius, edge width);
- each pattern's central-beam centre of mass gives the origin (so descan drift is followed);
- a pilot detection on a few patterns gives the lattice spacing g (nearest strong disk) and
  the brightness of the Bragg disks, which sets the detection thresholds;
- the Bragg vector map (BVM) gives the basis: the two shortest non-collinear lattice vectors
  (a reduced cell), for any 2D lattice.

Why the central disk is blanked before disk detection: in a thin specimen it holds ~99 % of
the electrons and each first-order disk ~0.05 %. Thresholds relative to the brightest
correlation peak then drop every Bragg disk, and the tails of the central disk's correlation
with the (sigmoid) template, 2000x brighter, bias the first-order positions. Each pattern's
central disk (to half-way to the first-order disks) is replaced by the level just outside it;
thresholds are relative to the Bragg disks; the lattice fit takes the origin from the Bragg
disks themselves (py4DSTEM fits it with g1, g2).

The chain is py4DSTEM 0.14's own (optional extra `.[baseline]`): DataCube.find_Bragg_disks
(synthetic disk template of the measured radius) -> calibrated origin -> StrainMap Bragg
vector map -> fit_basis_vectors (index, weighted least squares per pattern).

Axes. py4DSTEM indexes Qx along pattern rows (numpy axis 2) and Qy along columns; the
pattern frame of our geometry (ccstae/physics/simulate.py) has x along columns and y along rows,
so its (x, y) is py4DSTEM's (qy, qx). The lattice vectors are turned into that frame to go
through ccstae/physics/strain.py like every other matrix, which returns maps in the user frame:
py4DSTEM's own (docs/frame.md). So `maps` and py4DSTEM's get_strain need no conversion.

Two readings of the same fitted lattice vectors are returned:

- `maps` (the baseline we score): the per-pattern lattice vectors g1, g2 as G = [g1 g2] in
  the pattern frame's (x, y), referenced and decomposed by our code (ccstae/physics/strain.py: G G_ref^-1, G_ref the
  mean over the region, then the polar decomposition). Any other basis of the same lattice
  gives the same maps (G U (G_ref U)^-1 = G G_ref^-1).
- `p4_maps`: py4DSTEM's own `get_strain` (same reference vectors), as it is (renamed e_xx ->
  exx ...): an infinitesimal strain, differing at second order (~1e-4 at 1 % strain, 1 - cos of
  the rotation in exx and eyy): a check of conventions.

Limitation (py4DSTEM's, kept): StrainMap indexes every pattern against ONE basis chosen on
the Bragg vector map, so grains misoriented by about 30 degrees on a hexagonal lattice are
ambiguous and the farther one is misindexed. Positions where too few disks are indexed to fit
a lattice get the reference lattice (zero strain and rotation) and their fraction is reported:
dropping them would score the baseline on the easy patterns only.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ccstae.physics import strain
from ccstae.core.errors import UserError

MAX_RESIDUAL_G = 0.1  # median fit residual (x g) above which the peaks are not a lattice (fit_lattice)
INSTALL_HINT = "py4DSTEM is not installed: pip install -e '.[baseline]' (py4DSTEM==0.14.18)"


def available() -> tuple[bool, str]:
    """(True, version) when py4DSTEM imports, else (False, the reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import py4DSTEM
    except ImportError as e:  # a broken install that raises anything else is a bug: let it show
        return False, f"{INSTALL_HINT} ({type(e).__name__}: {e})"
    return True, py4DSTEM.__version__


def _require():
    ok, why = available()
    if not ok:
        raise UserError(why)
    import py4DSTEM

    return py4DSTEM


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

def _central_beam(mean: np.ndarray) -> dict:
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


def _find_disks(py4DSTEM, data: np.ndarray, s: dict, params: "BaselineParams", absolute: float):
    dc = py4DSTEM.DataCube(data=np.ascontiguousarray(data, np.float32))
    probe = py4DSTEM.Probe.generate_synthetic_probe(s["radius"], s["width"], data.shape[-2:])
    kernel = probe.get_kernel(mode="flat") if params.kernel == "flat" else \
        probe.get_kernel(mode="sigmoid", radii=s["kernel_radii"])
    # No threshold relative to the brightest peak (that may be the rim of the blanked centre):
    # one absolute floor, relative to the Bragg disks.
    return dc.find_Bragg_disks(kernel, sigma_cc=s["sigma_cc"], subpixel="multicorr",
                               upsample_factor=s["upsample_factor"], minRelativeIntensity=0,
                               minAbsoluteIntensity=absolute, minPeakSpacing=s["minPeakSpacing"],
                               edgeBoundary=s["edgeBoundary"], maxNumPeaks=70)


def measure_geometry(data: np.ndarray, params: "BaselineParams" = None, source: str = "cube") -> dict:
    """Central disk (centre, radius, edge), per-pattern origin and the Bragg disks' brightness, from the data.

    The brightness I_B comes from a pilot detection (no thresholds, central disk blanked) on
    params.n_pilot patterns: the median over them of the brightest disk beyond the blanked
    centre. Raises UserError (naming `source`) when no Bragg disk is visible.
    """
    py4DSTEM = _require()
    params = params or BaselineParams()
    flat = data.reshape(-1, *data.shape[-2:])
    if not np.all(np.isfinite(flat.sum((1, 2)))) or flat.sum() <= 0:
        raise UserError(f"{source}: patterns hold NaN/inf or no counts: no lattice to fit")
    geo = _central_beam(flat.mean(0, dtype=np.float64))
    r, edge = geo["disk_radius_px"], geo["disk_edge_px"]
    origins = central_origins(data, geo["centre"], r, edge)
    fill = r + 2 * edge + 1  # beyond the central disk's soft edge
    pick = np.random.default_rng(0).permutation(len(flat))[:params.n_pilot]
    pilot_origins = tuple(o.ravel()[pick] for o in origins)
    pilot = blank_central_disk(flat[pick][None], tuple(o[None] for o in pilot_origins), fill)
    with _quiet(False):
        bv = _find_disks(py4DSTEM, pilot, params.scaled({**geo, "fill_radius_px": fill}), params, 0.0)
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


# ----------------------------------------------------------------------------- lattice fit

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
    py4DSTEM = _require()
    import matplotlib

    matplotlib.use("Agg")  # py4DSTEM's StrainMap draws figures: never show them
    import matplotlib.pyplot as plt

    data = np.asarray(data)
    if data.ndim != 4:
        raise UserError(f"{source}: a 4D cube (Rx, Ry, Qx, Qy) is needed, got shape {data.shape}")
    geo = dict(geometry or measure_geometry(data, params, source))
    s = params.scaled(geo)
    blanked = blank_central_disk(data, geo["origins"], geo["fill_radius_px"])
    with _quiet(progress):
        bv = _find_disks(py4DSTEM, blanked, s, params, s["minAbsoluteIntensity"])
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


def baseline_maps(cube_or_data, geometry: dict | None = None, params: BaselineParams = BaselineParams(),
                  region=None, stat: str = "mean", progress: bool = False, calibration=None) -> tuple[dict, dict]:
    """Strain maps of a cube (or a (Rx, Ry, Q, Q) array) the classical way, geometry measured from the data.

    geometry: a measure_geometry() result to reuse (e.g. across parameter settings), or None.
    Returns (maps, info): maps like model/evaluate.maps_from_raw (theta in radians); info:
    {"p4_maps": py4DSTEM's get_strain as it is (the same frame), "failed_fraction", "params",
    "baseline_params", "geometry"}. Raises UserError when no lattice is visible.
    calibration: a physics/calibration.Calibration to correct the lattice vectors with (ellipse,
    rotation, flip) for a cube read through CalibratedCube(warp=False) (p4_maps, py4DSTEM's own, are
    not); `ccstae baseline --calibration` resamples the patterns instead (CalibratedCube).
    """
    if isinstance(cube_or_data, np.ndarray):
        data, source = cube_or_data, "array"
    else:
        data, source = cube_or_data.read_rows(0, cube_or_data.shape[0]), str(cube_or_data.path)
    if geometry is not None and "origins" not in geometry:
        geometry = None  # an old-style {disk_radius_px, g1_px} hint: measure instead
    fit = fit_lattice(data, params, geometry, progress, source)
    G, valid = fit["G"], fit["valid"]
    if calibration is not None:  # the detector's lattice -> the scan's (ccstae/physics/calibration.py)
        from ccstae.physics.calibration import correct_matrices

        G = correct_matrices(G, calibration)
    if not valid.any():
        raise UserError(f"{source}: no lattice visible: py4DSTEM fitted a lattice at no position")
    rs, cs = strain.parse_region(region, G.shape[:2]) if not isinstance(region, tuple) else region
    in_region = np.zeros(valid.shape, bool)
    in_region[rs, cs] = True
    use = in_region & valid
    if not use.any():
        raise UserError(f"{source}: py4DSTEM fitted no lattice inside the reference region")
    ref = getattr(np, stat)(G[use], axis=0)
    # A fit more than 30 % off the reference lattice is not a lattice (e.g. g1 and g2 fitted to
    # noise peaks, nearly collinear): counted as not fitted rather than scored as a huge strain.
    with np.errstate(invalid="ignore"):
        s = np.linalg.svd(np.where(valid[..., None, None], G, ref) @ np.linalg.inv(ref), compute_uv=False)
    valid &= (s.min(-1) > 0.7) & (s.max(-1) < 1.3)
    use = in_region & valid
    if not use.any():
        raise UserError(f"{source}: py4DSTEM fitted no lattice inside the reference region")
    ref = getattr(np, stat)(G[use], axis=0)
    G = np.where(valid[..., None, None], G, ref)  # no fit: the reference lattice (zero strain)
    maps = strain.strain_maps(G, (rs, cs), stat)
    sm = fit["strainmap"]
    import matplotlib.pyplot as plt

    with _quiet(progress):
        # gvects in py4DSTEM's (qx, qy) = our (y, x).
        sm.get_strain(gvects=((ref[1, 0], ref[0, 0]), (ref[1, 1], ref[0, 1])))
        plt.close("all")
    p4 = {k: np.asarray(sm.get_slice(k).data, np.float64) for k in ("e_xx", "e_yy", "e_xy", "theta")}
    p4_maps = {"exx": p4["e_xx"], "eyy": p4["e_yy"], "exy": p4["e_xy"], "theta": p4["theta"]}  # the user frame
    for v in p4_maps.values():
        v[~valid] = 0.0
    info = {"p4_maps": p4_maps, "failed_fraction": float(1 - valid.mean()), "params": fit["params"],
            "baseline_params": asdict(params), "geometry": fit["geometry"], "valid": valid}
    return maps, info


# ----------------------------------------------------------------------------- the command

def baseline_command(cube_path, out, region=None, stat: str = "mean", dataset=None, overwrite: bool = False,
                     progress: bool = True, scan=None, calibration=None) -> dict:
    """`ccstae baseline`: strain maps of any cube, written like `ccstae strain` (HDF5, EMD and PNG).

    Nothing is written unless the whole chain succeeded.
    """
    from ccstae.core.data_io import open_cube
    from ccstae.core.outputs import check_output
    from ccstae.analysis.evaluate import check_outputs, input_calibration, write_maps_emd, write_strain_h5

    check_outputs(out, overwrite)
    out = check_output(out, overwrite)
    ok, why = available()
    if not ok:
        raise UserError(why)
    calib = None
    if calibration is not None:
        from ccstae.physics.calibration import CalibratedCube, load_calibration

        calib = load_calibration(calibration)
    with open_cube(cube_path, dataset=dataset, scan=scan) as cube:
        cube = CalibratedCube(cube, calib, str(calibration)) if calib else cube
        maps, info = baseline_maps(cube, region=region, stat=stat, progress=progress)
        cal = input_calibration(cube, calib, calibration)
    geo = {k: [float(f"{x:.4g}") for x in v] if isinstance(v, list) else float(f"{v:.4g}")
           for k, v in info["geometry"].items()}
    attrs = {"model": f"py4DSTEM {why} baseline (ccstae/analysis/baseline.py)", "input": str(cube_path),
             "reference_region": region or "whole scan", "reference_stat": stat,
             "calibration": str(calibration or "none"),
             "failed_fraction": info["failed_fraction"], "geometry": json.dumps(geo),
             "params": json.dumps(info["params"]), "baseline_params": json.dumps(info["baseline_params"])}
    write_strain_h5(out, maps, attrs, overwrite=True)
    emd_written = write_maps_emd(out, maps, cal, attrs, region, maps["exx"].shape)
    png = Path(out).with_suffix(".png")
    strain.save_maps_png(png, {"py4DSTEM": maps}, title=f"{Path(cube_path).name}: py4DSTEM baseline, "
                                                        f"{100 * info['failed_fraction']:.1f} % not fitted")
    return {"out": str(out), "png": str(png), "emd": emd_written, "failed_fraction": info["failed_fraction"],
            "geometry": geo}


class _quiet:
    """Silence py4DSTEM's progress bars and warnings unless progress is asked for."""

    def __init__(self, progress: bool):
        self.progress = progress

    def __enter__(self):
        import contextlib
        import io

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        if not self.progress:
            self._stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False
