"""`ccstae calibrate`: a session's distortions measured from the data alone, no labels.

In this order, each step using the ones before (docs/calibration.md):

1. Bad pixels, from scan statistics: a pixel that is zero in every pattern while its
   neighbours see electrons in most is dead; one brighter than twice all eight of its neighbours
   in most patterns is hot (a disk's rim never is: the disk's inside is brighter still).
2. Origin per position: each pattern's central beam, found (smoothed maximum) and then its centre
   of mass above the level of a ring just outside it, three times about the last estimate. The
   map is fitted by a robust polynomial in the scan position (degree 3 by default; points beyond
   4 robust sigmas dropped, five rounds): the descan. What it leaves is the specimen's own
   deflection plus noise.
3. Ellipse, from the mean of the origin-centred patterns: its first ring (the first-order disks of
   every grain, or an amorphous ring), per 2 degrees the intensity-weighted radius, fitted by
   r(a) = r0 + a1 cos a + b1 sin a + a2 cos 2a + b2 sin 2a (the first harmonic absorbs a centre
   offset): a/b - 1 = 2 |(a2, b2)| / r0 to second order. This assumes the specimen's average lattice
   is not strained (a uniform strain of a single crystal cannot be told from an ellipse).
4. Rotation and flip between scan and detector, from the deflection left after the descan fit
   (py4DSTEM's DPC idea: a deflection is the gradient of a potential, so its curl vanishes in the
   scan frame). For each flip the curl of the back-rotated field is linear in (cos, sin) of the
   angle, so its mean square is a 2x2 quadratic form: the best angle is its smallest eigenvector,
   exactly, not on a grid. Modulo 180 degrees (which changes no strain map). When the field holds
   no DPC contrast (the curl's energy hardly depends on the angle), the rotation is NOT
   determined and calib.json says so, rather than guess; --rotation-deg/--flip set a known one.
"""
from __future__ import annotations

import math

import numpy as np
from tqdm import tqdm

from ccstae.core.errors import UserError
from ccstae.physics import calibration as C

# Rotation is determined only when the field's curl energy at the worst angle is this many times
# that at the best (signal over noise), and the other flip's best this many times this flip's.
MIN_ROTATION_CONTRAST = 4.0
MIN_FLIP_CONTRAST = 2.0


def _neighbour_max(x: np.ndarray) -> np.ndarray:
    from scipy.ndimage import maximum_filter

    footprint = np.ones((1, 3, 3), bool)
    footprint[0, 1, 1] = False
    return maximum_filter(x, footprint=footprint, mode="constant", cval=0.0)


def scan_statistics(cube, progress: bool = False) -> dict:
    """Mean pattern, and per pixel the fraction of patterns where it is > 0 and where it is hot."""
    P = cube.shape[2:]
    total, nonzero, hot = np.zeros(P), np.zeros(P), np.zeros(P)
    with tqdm(total=len(cube), desc="calibrate: statistics", unit="pattern", disable=not progress,
              dynamic_ncols=True) as bar:
        for _, batch in cube.iter_batches(256):
            total += batch.sum(0, dtype=np.float64)
            nonzero += (batch > 0).sum(0)
            hot += ((batch > 2 * _neighbour_max(batch)) & (batch > 0)).sum(0)
            bar.update(len(batch))
    n = len(cube)
    return {"mean": total / n, "nonzero": nonzero / n, "hot": hot / n, "n": n}


def find_bad_pixels(stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """(dead, hot) boolean masks from scan_statistics."""
    from scipy.ndimage import median_filter

    # Brighter than twice its neighbours in most patterns; or in many, and so in the mean (a hot
    # pixel where the disks pass over it often).
    mean = stats["mean"][None]
    hot = (stats["hot"] > 0.5) | ((stats["hot"] > 0.2) & (mean > 2 * _neighbour_max(mean))[0])
    # Zero in all n patterns where its neighbours are non-zero in a fraction f of them: a live pixel
    # would do that with probability (1 - f)^n; below 1e-6 it is dead.
    f = np.clip(median_filter(stats["nonzero"], size=3, mode="nearest"), 0, 1 - 1e-12)
    dead = (stats["nonzero"] == 0) & (stats["n"] * -np.log1p(-f) > -math.log(1e-6))
    return dead, hot


def _disk_radius(patterns: np.ndarray) -> float:
    """The central beam's radius from patterns rolled onto their brightest point and averaged."""
    from ccstae.core.overview import central_disk

    P = patterns.shape[-1]
    c = P // 2
    peaks = coarse_centres(patterns)
    aligned = np.mean([np.roll(p, (c - int(r), c - int(s)), (0, 1)) for p, (r, s) in zip(patterns, peaks)], 0)
    return central_disk(aligned)[2]


def coarse_centres(patterns: np.ndarray) -> np.ndarray:
    """(n, 2) integer (row, col) of each pattern's smoothed maximum: the central beam."""
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(np.asarray(patterns, np.float32), (0, 1.5, 1.5))
    flat = smooth.reshape(len(smooth), -1).argmax(1)
    return np.stack(np.unravel_index(flat, patterns.shape[1:]), -1)


def beam_centres(patterns: np.ndarray, radius: float, iterations: int = 3) -> np.ndarray:
    """(n, 2) centre of mass (row, col) of each pattern's central beam within radius + 2 px of the
    last estimate, above the mean of the ring 2 px wide just outside."""
    n, P = len(patterns), patterns.shape[-1]
    rr, cc = np.mgrid[:P, :P].astype(np.float32)
    centre = coarse_centres(patterns).astype(np.float64)
    for _ in range(iterations):
        rho = np.hypot(rr - centre[:, 0, None, None], cc - centre[:, 1, None, None])
        inner, ring = rho < radius + 2, (rho >= radius + 2) & (rho < radius + 4)
        level = (patterns * ring).sum((1, 2)) / np.maximum(ring.sum((1, 2)), 1)
        w = np.clip(patterns - level[:, None, None], 0, None) * inner
        total = np.maximum(w.sum((1, 2), dtype=np.float64), 1e-30)
        centre = np.stack([(w * rr).sum((1, 2), dtype=np.float64), (w * cc).sum((1, 2), dtype=np.float64)], -1) / total[:, None]
    return centre


def fit_origin(measured: np.ndarray, degree: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Robust polynomial fit of (Rx, Ry, 2) beam offsets -> (2, terms) coefficients and the fitted map."""
    scan = measured.shape[:2]
    degree = max(0, min(degree, min(scan) - 1))
    basis = C.poly_basis(scan, degree)
    y = measured.reshape(-1, 2)
    keep = np.ones(len(y), bool)
    for _ in range(5):
        coeffs = np.linalg.lstsq(basis[keep], y[keep], rcond=None)[0]
        resid = np.hypot(*(y - basis @ coeffs).T)
        sigma = 1.4826 * np.median(resid[keep]) + 1e-9
        new = resid < 3 * sigma
        if new.sum() < basis.shape[1] or np.array_equal(new, keep):
            break
        keep = new
    return coeffs.T, (basis @ coeffs).reshape(*scan, 2)


def fit_ellipse(mean: np.ndarray, disk_radius: float) -> dict:
    """Ellipticity (a/b - 1) and long-axis angle (degrees from Qx towards Qy) of the first ring of a
    centred mean pattern, with the fit's figures."""
    P = mean.shape[-1]
    c = (P - 1) / 2
    rr, cc = np.mgrid[:P, :P] - c
    rho, ang = np.hypot(rr, cc), np.arctan2(cc, rr)  # angle from Qx (rows) towards Qy (columns)
    # The ring: the strongest radial-profile maximum beyond the central beam.
    nbin = np.rint(rho).astype(int)
    profile = np.bincount(nbin.ravel(), mean.ravel()) / np.maximum(np.bincount(nbin.ravel()), 1)
    start, stop = int(math.ceil(2 * disk_radius + 2)), int(P // 2 - disk_radius)
    if stop <= start + 1:
        raise UserError("no ring beyond the central beam on this detector: cannot measure the ellipse")
    ring = start + int(np.argmax(profile[start:stop]))
    half = disk_radius + 2
    band = (rho > ring - half) & (rho < ring + half)
    # Above the level at the band's edges (a smooth background under the ring)
    edge = band & (np.abs(rho - ring) > half - 1.5)
    w = np.clip(mean - np.median(mean[edge]), 0, None) * band
    bins = np.floor((ang + np.pi) / np.radians(2)).astype(int) % 180
    wsum = np.bincount(bins[band], w[band], minlength=180)
    rsum = np.bincount(bins[band], (w * rho)[band], minlength=180)
    centre_angle = np.radians(2) * (np.arange(180) + 0.5) - np.pi
    use = wsum > 0.02 * wsum.max()
    a, r, wt = centre_angle[use], rsum[use] / wsum[use], wsum[use]
    design = np.stack([np.ones_like(a), np.cos(a), np.sin(a), np.cos(2 * a), np.sin(2 * a)], -1)
    if use.sum() < 8:
        raise UserError("the ring covers too few directions to fit an ellipse")
    sw = np.sqrt(wt)
    coef = np.linalg.lstsq(design * sw[:, None], r * sw, rcond=None)[0]
    r0, amp = coef[0], math.hypot(coef[3], coef[4])
    e = (r0 + amp) / (r0 - amp) - 1
    axis = math.degrees(math.atan2(coef[4], coef[3])) / 2
    return {"ellipticity": float(e), "axis_deg": float(axis), "ring_radius_px": float(r0),
            "centre_offset_px": [float(coef[1]), float(coef[2])], "directions": int(use.sum())}


def refine_ellipse(mean: np.ndarray, disk_radius: float, rounds: int = 3) -> dict:
    """fit_ellipse, then again on the mean pattern with the ellipse found so far undone, so the
    first-order fit's neglected terms (and the ring's own distortion of the band) shrink each round."""
    from scipy.ndimage import map_coordinates

    P = mean.shape[-1]
    c = (P - 1) / 2
    grid = np.mgrid[:P, :P].reshape(2, -1) - c
    e_total = np.eye(2)
    for _ in range(rounds):
        # the corrected image at p is the mean pattern at E p
        img = map_coordinates(mean, e_total @ grid + c, order=3, mode="constant").reshape(P, P)
        fit = fit_ellipse(img, disk_radius)
        e_total = e_total @ C.ellipse_matrix(fit["ellipticity"], fit["axis_deg"])
    u, s, _ = np.linalg.svd(e_total)
    axis = math.degrees(math.atan2(u[1, 0], u[0, 0]))
    return dict(fit, ellipticity=float(s[0] / s[1] - 1), axis_deg=float((axis + 90) % 180 - 90),
                last_round_ellipticity=fit["ellipticity"])


def _curl(field: np.ndarray) -> np.ndarray:
    """Curl of a (Rx, Ry, 2) field (row, col) = (along Rx, along Ry) on the scan grid, interior only."""
    return (np.gradient(field[..., 1], axis=0) - np.gradient(field[..., 0], axis=1))[1:-1, 1:-1]


def fit_rotation(residual: np.ndarray, ellipse: np.ndarray) -> dict:
    """Rotation (degrees, modulo 180) and flip from the deflection field left after the descan fit.

    residual: (Rx, Ry, 2) detector offsets (row, col); ellipse: E, undone first. For flip f and angle
    phi the scan-frame field is F^f R(-phi) E^-1 residual, whose curl is cos(phi) a + sin(phi) b."""
    v = residual @ np.linalg.inv(ellipse).T
    perp = np.stack([v[..., 1], -v[..., 0]], -1)  # R(-phi) v = cos v + sin perp
    out = {}
    for flip in (False, True):
        fa, fb = (x[..., ::-1] if flip else x for x in (v, perp))
        a, b = _curl(fa).ravel(), _curl(fb).ravel()
        q = np.array([[a @ a, a @ b], [a @ b, b @ b]]) / max(len(a), 1)
        lam, vec = np.linalg.eigh(q)
        phi = math.degrees(math.atan2(vec[1, 0], vec[0, 0]))
        out[flip] = {"rotation_deg": float((phi + 90) % 180 - 90), "best": float(lam[0]), "worst": float(lam[1])}
    flip = out[True]["best"] < out[False]["best"]
    best, other = out[flip], out[not flip]
    contrast = best["worst"] / max(best["best"], 1e-30)
    flip_contrast = other["best"] / max(best["best"], 1e-30)
    result = {"rotation_deg": best["rotation_deg"], "flip": bool(flip), "contrast": float(contrast),
              "flip_contrast": float(flip_contrast),
              "deflection_rms_px": float(np.sqrt(np.mean(np.sum(residual**2, -1))))}
    if min(residual.shape[:2]) < 3:
        result["why"] = "the scan is too small (under 3 x 3) for the curl of the deflection"
    elif contrast < MIN_ROTATION_CONTRAST or flip_contrast < MIN_FLIP_CONTRAST:
        result["why"] = (f"no DPC contrast: the deflection left after the descan fit ({result['deflection_rms_px']:.3f} px "
                         f"rms) is curl-free at no angle more than elsewhere (contrast {contrast:.2f}, flip "
                         f"{flip_contrast:.2f}; needed {MIN_ROTATION_CONTRAST:g} and {MIN_FLIP_CONTRAST:g}); "
                         "give --rotation-deg and --flip from another measurement")
    return result


# ----------------------------------------------------------------------------- the whole measurement

def calibrate_cube(cube, degree: int = 3, rotation_deg: float | None = None, flip: bool | None = None,
                   progress: bool = False) -> C.Calibration:
    """Measure a cube's calibration (module docstring). rotation_deg/flip: known values that replace
    the measured rotation (both or neither)."""
    rx, ry, qx, qy = cube.shape
    if qx != qy:
        raise UserError(f"{cube.path}: patterns are {qx}x{qy}; calibrate needs square patterns")
    stats = scan_statistics(cube, progress)
    if not np.all(np.isfinite(stats["mean"])) or stats["mean"].sum() <= 0:
        raise UserError(f"{cube.path}: the patterns hold no counts: nothing to calibrate")
    dead, hot = find_bad_pixels(stats)
    bad = dead | hot
    measured = np.empty((rx * ry, 2))
    radius = None
    with tqdm(total=len(cube), desc="calibrate: origins", unit="pattern", disable=not progress,
              dynamic_ncols=True) as bar:
        for start, batch in cube.iter_batches(256):
            batch = C.fill_bad_pixels(batch, bad)
            radius = radius or _disk_radius(batch[:64])
            measured[start:start + len(batch)] = beam_centres(batch, radius) - (qx - 1) / 2
            bar.update(len(batch))
    measured = measured.reshape(rx, ry, 2)
    coeffs, fitted = fit_origin(measured, degree)
    cal = C.Calibration(scan=(rx, ry), pattern=qx, dead=np.argwhere(dead).tolist(), hot=np.argwhere(hot).tolist(),
                        origin_degree=int(round((math.sqrt(8 * coeffs.shape[1] + 1) - 3) / 2)),
                        origin_coeffs=coeffs.tolist())
    total = np.zeros((qx, qy))
    for start, batch in cube.iter_batches(256):
        index = np.arange(start, start + len(batch))
        total += C.correct_patterns(batch, index // ry, index % ry, cal).sum(0, dtype=np.float64)
    try:
        ellipse = refine_ellipse(total / len(cube), radius)
    except UserError as e:
        raise UserError(f"{cube.path}: {e}") from None
    cal.ellipticity, cal.axis_deg = ellipse["ellipticity"], ellipse["axis_deg"]
    rot = fit_rotation(measured - fitted, C.ellipse_matrix(cal.ellipticity, cal.axis_deg))
    if rotation_deg is not None:
        cal.rotation_deg, cal.flip = float(rotation_deg), bool(flip)
        cal.rotation_why = "given (--rotation-deg, --flip)" + ("" if "why" in rot else
                                                             f"; the data say {rot['rotation_deg']:.2f} deg, flip {rot['flip']}")
    elif "why" in rot:
        cal.rotation_why = rot["why"]
    else:
        cal.rotation_deg, cal.flip = rot["rotation_deg"], rot["flip"]
        cal.rotation_why = (f"measured: DPC curl minimised (contrast {rot['contrast']:.1f}, flip {rot['flip_contrast']:.1f}); "
                            "modulo 180 degrees")
    cal.measured = {"central_beam_radius_px": float(radius),
                    "origin_peak_to_peak_px": [float(v) for v in np.ptp(fitted, axis=(0, 1))],
                    "origin_residual_rms_px": float(np.sqrt(np.mean(np.sum((measured - fitted) ** 2, -1)))),
                    "ellipse": ellipse, "rotation_fit": rot}
    return cal


def calibrate_command(input_path, out, dataset=None, degree: int = 3, rotation_deg=None, flip=None,
                      overwrite: bool = False, progress: bool = True) -> C.Calibration:
    """`ccstae calibrate`: measure and write calib.json atomically."""
    from ccstae.core.data_io import open_cube
    from ccstae.core.outputs import check_output, write_json

    out = check_output(out, overwrite)
    if (rotation_deg is None) != (flip is None):
        raise UserError("give --rotation-deg and --flip/--no-flip together (a known rotation has a known handedness)")
    with open_cube(input_path, dataset=dataset) as cube:
        cal = calibrate_cube(cube, degree, rotation_deg, flip, progress)
    write_json(out, dict(cal.to_json(), input=str(input_path)))
    return cal
