"""The classical baseline: py4DSTEM Bragg-disk detection and lattice fitting, on ANY cube.

    maps, info = baseline_maps(cube)            # exx, eyy, exy, theta like ccstae/analysis/evaluate.py
    strain.mae(maps, evaluate.truth_maps(cube.ground_truth))
    ccstae baseline --input CUBE --out STRAIN.h5 [--region R0:R1,C0:C1]

Everything it needs is measured from the data, never from simulator attributes
(measure_geometry, ccstae/analysis/baseline_geometry.py; the fit: ccstae/analysis/baseline_fit.py):

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
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ccstae.physics import strain
from ccstae.core.errors import UserError
# The chain's parts (the split keeps this module to the maps and the command): py4DSTEM's import
# and quiet mode, the geometry measured from the data and its settings, the lattice fit.
from ccstae.analysis.baseline_fit import fit_lattice
from ccstae.analysis.baseline_geometry import BaselineParams
from ccstae.analysis.baseline_py4dstem import available, quiet


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

    with quiet(progress):
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
