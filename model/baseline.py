"""The classical baseline: py4DSTEM Bragg-disk detection and lattice fitting on the same cubes.

    maps, info = baseline_maps(cube)            # exx, eyy, exy, theta like model/evaluate.py
    strain.mae(maps, evaluate.truth_maps(cube.ground_truth))

The chain is py4DSTEM 0.14's own (optional extra `.[baseline]`):

    DataCube.find_Bragg_disks (template: a synthetic disk of the simulator's radius)
    -> BraggVectors.measure_origin / fit_origin
    -> StrainMap.choose_basis_vectors -> fit_basis_vectors -> get_strain

Axes. py4DSTEM indexes Qx along pattern rows (numpy axis 2) and Qy along columns; our
geometry (model/simulate.py) has x along columns and y along rows. So our (x, y) is
py4DSTEM's (qy, qx), and swapping the axes flips the sense of rotation.

Two readings of the same fitted lattice vectors are returned:

- `maps` (the baseline we score): the per-pattern lattice vectors g1, g2 that py4DSTEM fits
  (`fit_basis_vectors`), as the 2x2 matrix G = [g1 g2] in our (x, y), referenced and
  decomposed by exactly our code (model/strain.py: G G_ref^-1, G_ref the mean over the
  region, then the polar decomposition). G = M G0 for the true lattice map M, so this is our
  finite-strain definition and our reference: only the measurement differs.
- `p4_maps`: py4DSTEM's own `get_strain` (with the same mean reference vectors), converted
  to our axes. It is an infinitesimal strain (eps ~ I - beta with g = beta g_ref), which
  differs from the finite strain at second order (~1e-4 at 1 % strain): kept as a check
  of the conventions, not as the score.

Limitation (py4DSTEM's, kept): StrainMap indexes every pattern against ONE basis g1, g2 chosen
on the Bragg vector map. On a hexagonal lattice two grains misoriented by about 30 degrees are
then ambiguous (a first-order disk lies half-way between two reference directions) and the
farther grain is misindexed: large errors there. Our grain rotations span +-15 degrees.

Positions where py4DSTEM finds too few indexed disks to fit a lattice (its mask) get the
reference lattice (zero strain and rotation), and their fraction is reported: dropping them
would score the baseline on the easy patterns only.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from model import strain
from model.errors import UserError

INSTALL_HINT = "py4DSTEM is not installed: pip install -e '.[baseline]' (py4DSTEM==0.14.18)"


def available() -> tuple[bool, str]:
    """(True, version) when py4DSTEM imports, else (False, the reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import py4DSTEM
    except Exception as e:  # ImportError, or a broken install
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
    """py4DSTEM settings, in units of the pattern's geometry so one set serves any preset.

    Tuned on noise-free and noisy copies of the TRAINING sample (bench/tune_baseline.py),
    never on the test scans. r: disk radius (px); g: first-order spacing (px).

    Measured there (default preset, 24x24 training patterns, mean exx/eyy MAE at w = 0 / 0.25
    / 0.5 / 0.7): these settings 0.00056 / 0.00069 / 0.00093 / 0.00139; flat kernel 0.00050 /
    0.00065 / 0.00102 / 0.00181; sigma_cc 0 or 2 and minRelativeIntensity 0.003 or 0.03 the
    same within 1e-5; max_peak_spacing 0.25 g 0.0025-0.0033 (7 % of positions unfit); the raw
    Bragg vector map (bvm_sigma 0) 0.055 even noise-free (g1, g2 from one grain's maximum).
    """
    template_width: float = 1.0        # synthetic probe edge width, x disk_edge_px * 2
    kernel: str = "sigmoid"            # 'flat' or 'sigmoid' (a negative annulus: edge filtering)
    kernel_outer: float = 2.0          # sigmoid annulus from r to this x r
    sigma_cc: float = 1.0              # Gaussian smoothing of the cross correlation (px)
    min_relative_intensity: float = 0.01  # of the brightest correlation peak (the central disk)
    min_peak_spacing: float = 0.5      # x g
    edge_boundary: float = 1.0         # x r: disks cut by the detector edge are biased
    max_peak_spacing: float = 0.35     # x g: indexing tolerance (grains rotate +-15 deg: 0.26 g)
    upsample_factor: int = 16          # multicorr subpixel refinement
    bvm_sigma: float = 0.3             # x g: smooth the Bragg vector map so g1, g2 sit mid-way in the
    #                                    spread of grain rotations (unsmoothed, one grain's maximum won)
    min_num_peaks: int = 5             # py4DSTEM's minimum for a lattice fit

    def scaled(self, geometry: dict) -> dict:
        """The absolute (pixel) values for a pattern geometry {disk_radius_px, g1_px, disk_edge_px}."""
        r, g = float(geometry["disk_radius_px"]), float(geometry["g1_px"])
        return {"radius": r, "width": max(0.5, self.template_width * 2 * float(geometry.get("disk_edge_px", 0.7))),
                "kernel_radii": (r, self.kernel_outer * r), "sigma_cc": self.sigma_cc,
                "minRelativeIntensity": self.min_relative_intensity, "minPeakSpacing": self.min_peak_spacing * g,
                "edgeBoundary": int(math.ceil(self.edge_boundary * r)), "max_peak_spacing": self.max_peak_spacing * g,
                "upsample_factor": self.upsample_factor,
                "bvm_sigma": self.bvm_sigma * g}


def cube_geometry(cube) -> dict:
    """Disk radius, first-order spacing and edge width of a simulated cube (its attributes or config)."""
    import json

    from model.simulate import sim_params

    a = cube.attrs
    if "disk_radius_px" in a and "g1_px" in a:
        return {"disk_radius_px": float(a["disk_radius_px"]), "g1_px": float(a["g1_px"]),
                "disk_edge_px": float(a.get("simulate.disk_edge_px", 0.7))}
    if "config" in a:  # e.g. the simulated training sample
        p = sim_params(json.loads(a["config"]))
        return dict(p.geometry(), disk_edge_px=p.disk_edge_px)
    raise UserError(f"{cube.path}: no disk_radius_px / g1_px attributes: the baseline needs the disk radius "
                    "and the lattice spacing (pass geometry=...)")


def fit_lattice(data: np.ndarray, geometry: dict, params: BaselineParams = BaselineParams(),
                progress: bool = False) -> dict:
    """py4DSTEM on a (Rx, Ry, Qx, Qy) array -> per-position lattice vectors and py4DSTEM's strain.

    Returns {"G": (Rx, Ry, 2, 2) with columns g1, g2 in our (x, y) pixels (NaN where no
    fit), "valid": (Rx, Ry) bool, "strainmap": the py4DSTEM StrainMap, "params": the pixel
    values used}.
    """
    py4DSTEM = _require()
    import matplotlib

    matplotlib.use("Agg")  # choose_basis_vectors / get_strain draw figures: never show them
    import matplotlib.pyplot as plt

    s = params.scaled(geometry)
    data = np.ascontiguousarray(data, np.float32)
    rx, ry, qx, qy = data.shape
    dc = py4DSTEM.DataCube(data=data)
    probe = py4DSTEM.Probe.generate_synthetic_probe(s["radius"], s["width"], (qx, qy))
    if params.kernel == "flat":
        kernel = probe.get_kernel(mode="flat")
    else:
        kernel = probe.get_kernel(mode="sigmoid", radii=s["kernel_radii"])
    with _quiet(progress):
        bv = dc.find_Bragg_disks(kernel, sigma_cc=s["sigma_cc"], subpixel="multicorr",
                                 upsample_factor=s["upsample_factor"], minRelativeIntensity=s["minRelativeIntensity"],
                                 minPeakSpacing=s["minPeakSpacing"], edgeBoundary=s["edgeBoundary"],
                                 maxNumPeaks=70)
        # Origin: the brightest peak per pattern (the central disk), then a plane fit.
        bv.measure_origin(center_guess=((qx - 1) / 2, (qy - 1) / 2), score_method="intensity weighted distance")
        bv.fit_origin(plot=False)
        sm = py4DSTEM.StrainMap(braggvectors=bv)
        maxima = dict(minSpacing=s["minPeakSpacing"], edgeBoundary=1, maxNumPeaks=30, sigma=s["bvm_sigma"])
        sm.choose_basis_vectors(**hexagonal_basis(sm, maxima), **maxima)
        sm.fit_basis_vectors(max_peak_spacing=s["max_peak_spacing"])
        plt.close("all")
    g = {k: np.asarray(sm.g1g2_map.get_slice(k).data, np.float64) for k in ("g1x", "g1y", "g2x", "g2y")}
    valid = np.asarray(sm.g1g2_map.get_slice("mask").data).astype(bool)
    valid &= np.all([np.isfinite(v) for v in g.values()], axis=0)
    # py4DSTEM (qx, qy) = our (y, x): column j of G is g_j = (x, y) = (qy, qx).
    G = np.stack([np.stack([g["g1y"], g["g2y"]], -1), np.stack([g["g1x"], g["g2x"]], -1)], -2)
    G[~valid] = np.nan
    return {"G": G, "valid": valid, "strainmap": sm, "params": s}


def hexagonal_basis(sm, maxima: dict) -> dict:
    """Indices of the origin, g1 and g2 among the Bragg-vector-map maxima, for a hexagonal lattice.

    py4DSTEM's automatic guess takes g2 as the short vector most nearly perpendicular to g1:
    on a hexagonal lattice that is g1 + 2 g2 (sqrt(3) |g1| long, 90 degrees), a basis of
    half the lattice, and the indexing then rounds half-integer indices into wrong ones
    (measured: 0.003 bias in exy on a noise-free cube). A user picks the two first-order
    vectors 60 degrees apart instead; this does it automatically: g1 the shortest, g2 the one
    of about the same length closest to 60 degrees from it.
    """
    from py4DSTEM.process.utils import get_maxima_2D

    g = get_maxima_2D(sm.bvm.data, subpixel="multicorr", upsample_factor=16, minAbsoluteIntensity=0,
                      minRelativeIntensity=0, relativeToPeak=0, **maxima)
    x0, y0 = sm.origin
    dx, dy = g["x"] - x0, g["y"] - y0
    dist = np.hypot(dx, dy)
    if len(dist) < 3:
        raise UserError("py4DSTEM found fewer than 3 maxima in the Bragg vector map: no lattice to fit")
    origin = int(np.argmin(dist))
    rest = dist.copy()
    rest[origin] = np.inf
    g1 = int(np.argmin(rest))
    angle = np.degrees(np.abs(np.angle((dx + 1j * dy) / (dx[g1] + 1j * dy[g1]))))
    first_order = np.isfinite(rest) & (np.abs(rest / rest[g1] - 1) < 0.2)
    first_order[g1] = False
    if not first_order.any():
        raise UserError("py4DSTEM found no second first-order Bragg disk in the Bragg vector map")
    score = np.where(first_order, np.abs(angle - 60), np.inf)
    return {"index_origin": origin, "index_g1": g1, "index_g2": int(np.argmin(score))}


def baseline_maps(cube_or_data, geometry: dict | None = None, params: BaselineParams = BaselineParams(),
                  region=None, stat: str = "mean", progress: bool = False) -> tuple[dict, dict]:
    """Strain maps of a cube (or a (Rx, Ry, Q, Q) array) the classical way.

    Returns (maps, info): maps like model/evaluate.maps_from_raw (theta in radians);
    info: {"p4_maps": py4DSTEM's get_strain converted to our axes, "failed_fraction",
    "params"}.
    """
    if isinstance(cube_or_data, np.ndarray):
        data = cube_or_data
        if geometry is None:
            raise UserError("baseline on an array needs geometry={disk_radius_px, g1_px}")
    else:
        geometry = geometry or cube_geometry(cube_or_data)
        data = cube_or_data.read_rows(0, cube_or_data.shape[0])
    fit = fit_lattice(data, geometry, params, progress)
    G, valid = fit["G"], fit["valid"]
    if not valid.any():
        raise UserError("py4DSTEM fitted no lattice at any position (no Bragg disks found)")
    rs, cs = strain.parse_region(region, G.shape[:2]) if not isinstance(region, tuple) else region
    in_region = np.zeros(valid.shape, bool)
    in_region[rs, cs] = True
    use = in_region & valid
    if not use.any():
        raise UserError("py4DSTEM fitted no lattice inside the reference region")
    ref = getattr(np, stat)(G[use], axis=0)
    G = np.where(valid[..., None, None], G, ref)  # no fit: the reference lattice (zero strain)
    maps = strain.strain_maps(G, (rs, cs), stat)
    # py4DSTEM's own strain with the very same reference vectors, converted to our axes.
    sm = fit["strainmap"]
    import matplotlib.pyplot as plt

    with _quiet(progress):
        # gvects in py4DSTEM's (qx, qy) = our (y, x).
        sm.get_strain(gvects=((ref[1, 0], ref[0, 0]), (ref[1, 1], ref[0, 1])))
        plt.close("all")
    p4 = {k: np.asarray(sm.get_slice(k).data, np.float64) for k in ("e_xx", "e_yy", "e_xy", "theta")}
    p4_maps = to_our_axes(p4)
    for v in p4_maps.values():
        v[~valid] = 0.0
    info = {"p4_maps": p4_maps, "failed_fraction": float(1 - valid.mean()), "params": fit["params"],
            "baseline_params": asdict(params)}
    return maps, info


def to_our_axes(p4: dict) -> dict:
    """py4DSTEM's get_strain slices (axes qx = rows, qy = columns) -> our exx, eyy, exy, theta.

    py4DSTEM's e_xx is along Qx = our y, so ours exx = its e_yy and eyy = its e_xx; e_xy is
    symmetric; its theta = (beta_01 - beta_10) / 2 in its (qx, qy) frame, which is minus the
    rotation in a right-handed frame, and the axis swap flips the sense once more, so ours
    theta = its theta. (Checked on noise-free cubes of known strain: tests/test_baseline.py.)
    """
    return {"exx": p4["e_yy"].copy(), "eyy": p4["e_xx"].copy(), "exy": p4["e_xy"].copy(),
            "theta": p4["theta"].copy()}


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
