"""The training cube's mean pattern, measured without labels and robust to a diffuse background.

A strong background (the Lorentzian of ccstae/physics/noise.py, w up to 0.7, or the diffuse
scattering of a real specimen) is one smooth radial bump over the whole detector. On the raw
mean pattern it hid everything the preprocessing needs (issue 25): the profile's "first
minimum" slid down the background's tail to 43.5 px, the "strongest ring" was its far edge
at 44.5 px of a 64 px input, and the mask kept 13 pixels. So the background is modelled and
removed first:

    b(r) = A / (1 + (r / gamma)^2) + c       (Lorentzian plus a constant, the noise model's form)

fitted to the mean pattern's radial profile outside the central disk as a lower envelope: the
Bragg rings are positive bumps on it, so each pass clips the profile to the fit and fits again
(they stop pulling it up). Every figure is then read off the residual (mean - b), checked,
and a figure that fails its check stops the run with one line naming it, its value and the
likely cause (MeasurementError, a UserError: exit 2 from the CLI).

Figures (preprocess.json `measured`):
    central_disk_centre, central_disk_radius, central_mask_radius, first_order_spacing
                          as before issue 25 (ring indices, ring k spanning radii [k, k + 1)),
                          now on the residual: the same numbers on a cube without background
    disk_radius           sub-pixel: radius of a flat disk holding the central disk's residual
    spacing               sub-pixel: centroid radius of the first-order ring of the residual
    background            {fraction of the counts, A, gamma, c}
    bragg_share           share of the residual (the Bragg signal) outside the central mask
    bragg_significance    the first-order ring's residual over its noise (two halves of the sample)
    kept_pixels           pixels the central mask keeps
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.optimize import minimize_scalar, nnls

from ccstae.core.errors import UserError

MIN_SIGNIFICANCE = 8.0    # first-order ring over the noise of the mean pattern: below, no Bragg disks seen
MIN_KEPT_FRACTION = 0.25  # of the input's pixels left by the central mask
ABOVE_WEIGHT = 0.002     # fit_background: weight of the rings above the background (the Bragg signal)
GAMMAS = np.geomspace(0.5, 256.0, 48)  # Lorentzian half widths tried (pixels)


class MeasurementError(UserError):
    """A figure of the mean-pattern measurement failed its sanity check (one line: figure, value, cause)."""


def radial_profile(image: np.ndarray, centre) -> np.ndarray:
    """Mean of `image` over rings [k, k + 1) pixels from centre (row, col); index k."""
    rows, cols = np.mgrid[:image.shape[0], :image.shape[1]]
    r = np.floor(np.hypot(rows - centre[0], cols - centre[1])).astype(int)
    return np.bincount(r.ravel(), image.ravel()) / np.maximum(np.bincount(r.ravel()), 1)


def ring_sizes(size: int, centre) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return np.bincount(np.floor(np.hypot(rows - centre[0], cols - centre[1])).astype(int).ravel())


def find_centre(img: np.ndarray) -> tuple[float, float]:
    """Centroid of the pixels above half the maximum near the brightest spot of the central region."""
    size = img.shape[-1]
    c = (size - 1) / 2
    rows, cols = np.mgrid[:size, :size]
    near = np.hypot(rows - c, cols - c) < size / 4
    bright = near & (img >= 0.5 * img[near].max())
    return (float((rows * img)[bright].sum() / img[bright].sum()),
            float((cols * img)[bright].sum() / img[bright].sum()))


def half_radius(prof: np.ndarray) -> int:
    """First ring whose mean is below half the central ring's."""
    below = prof < 0.5 * prof[0]
    return int(np.argmax(below)) if np.any(below) else 1


def lorentz(r, gamma):
    return 1.0 / (1.0 + (np.asarray(r, np.float64) / gamma) ** 2)


def fit_background(img: np.ndarray, centre, start: int) -> dict:
    """The smooth radial background b(r) under a mean pattern, fitted to its profile from ring
    `start` out.

    An asymmetric least-squares fit (a low expectile): rings above the fit count ABOVE_WEIGHT
    times less than rings below it, so the Bragg rings and the central disk's tail, positive
    bumps on the background, do not lift it, while the gaps between them pin it down. For each
    Lorentzian width the amplitudes (A, c >= 0) are refitted with the weights of the previous
    fit until they settle; the width kept is the one with the lowest weighted cost. The model's
    rings are averaged over the same pixels as the pattern's (a ring's mean of a curved b is
    not b at the ring's middle: that 1 % misfit was as large as a monolayer's Bragg disks)."""
    size = img.shape[-1]
    rows, cols = np.mgrid[:size, :size]
    dist = np.hypot(rows - centre[0], cols - centre[1])
    ring = np.floor(dist).astype(int).ravel()
    sizes = np.bincount(ring)
    prof = np.bincount(ring, img.ravel()) / np.maximum(sizes, 1)
    k = np.arange(len(prof))
    # The outermost corner rings hold a few pixels each: left out.
    use = (k >= start) & ((sizes >= 8) | (k < len(prof) // 2))
    if use.sum() < 4:
        return {"A": 0.0, "gamma": 1.0, "c": 0.0}
    y = prof[use]

    def model_rings(log_gamma):
        return (np.bincount(ring, lorentz(dist, np.exp(log_gamma)).ravel()) / np.maximum(sizes, 1))[use]

    def fit(log_gamma):
        X = np.stack([model_rings(log_gamma), np.ones_like(y)], 1)
        weight = np.ones_like(y)
        for _ in range(50):
            sw = np.sqrt(weight)
            coef = nnls(X * sw[:, None], y * sw)[0]
            new = np.where(y > X @ coef, ABOVE_WEIGHT, 1.0)
            if np.array_equal(new, weight):
                break
            weight = new
        return float(np.sum(weight * (y - X @ coef) ** 2)), coef

    # The width: the best of a coarse grid, then refined between its neighbours.
    grid = np.log(GAMMAS)
    i = int(np.argmin([fit(g)[0] for g in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    log_gamma = minimize_scalar(lambda g: fit(g)[0], bounds=(lo, hi), method="bounded",
                                options={"xatol": 1e-3}).x if hi > lo else grid[i]
    a, c = fit(log_gamma)[1]
    return {"A": float(a), "gamma": float(np.exp(log_gamma)), "c": float(c)}


def background_image(size: int, centre, bg: dict) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    r = np.hypot(rows - centre[0], cols - centre[1])
    return bg["A"] * lorentz(r, bg["gamma"]) + bg["c"]


def measure_central_disk(mean_pattern: np.ndarray, background: bool = True) -> dict:
    """Centre and radii of the central disk in a mean pattern (binned, cropped), no labels.

    centre: centroid of the pixels above half the maximum near the brightest spot; the radial
    background (fit_background) is removed from the profile; radius: where the profile falls
    to half its central value; mask radius: the profile's first minimum beyond that (the gap
    before the first-order disks), where the central disk's tail has fallen below the Bragg
    disks around it. Also returns the raw and residual profiles and the background fit."""
    img = np.asarray(mean_pattern, np.float64)
    size = img.shape[-1]
    centre = find_centre(img)
    raw = radial_profile(img, centre)
    sizes = ring_sizes(size, centre)
    # The background is fitted from just beyond the central disk's half radius: the disk itself
    # would outweigh every other ring.
    h0 = half_radius(raw)
    bg = fit_background(img, centre, h0 + 2) if background else {"A": 0.0, "gamma": 1.0, "c": 0.0}
    prof = raw - radial_profile(background_image(size, centre, bg), centre)
    half = half_radius(prof)
    r_min = half
    limit = len(prof) - 2
    while r_min < limit and prof[r_min + 1] < prof[r_min]:
        r_min += 1
    # Ring k spans radii [k, k + 1): the mask ends in the middle of the gap's ring.
    return {"centre": centre, "radius": float(half), "mask_radius": float(r_min) + 0.5, "profile": prof,
            "raw_profile": raw, "ring_sizes": sizes, "background": bg}


def ring_signal(residual: np.ndarray, centre, smooth: float, inner: float) -> np.ndarray:
    """Per ring k of a background-free image: its mean plus its spread (90th minus 50th
    percentile, after a blur of `smooth` px). The mean sees rings (a polycrystal); the spread
    sees disks at a few angles (a single crystal), and is blind to what is left of a radial
    background: a monolayer's disks hold < 1 % of the counts, less than the fit's error
    integrated over a ring (issue 25). Within `inner` (the central mask) the image is zeroed
    before the blur, which would otherwise spread a central disk 100x brighter than the Bragg
    disks over the gap."""
    rows, cols = np.mgrid[:residual.shape[0], :residual.shape[1]]
    dist = np.hypot(rows - centre[0], cols - centre[1])
    img = gaussian_filter(np.where(dist < inner, 0.0, np.asarray(residual, np.float64)), smooth)
    r = np.floor(dist).astype(int).ravel()
    order = np.argsort(r, kind="stable")
    rings = np.split(img.ravel()[order], np.cumsum(np.bincount(r))[:-1])
    mean = radial_profile(residual, centre)
    return mean + np.array([np.percentile(v, 90) - np.percentile(v, 50) if len(v) else 0.0 for v in rings])


def first_order_spacing(profile: np.ndarray, mask_radius: float, limit: int | None = None) -> float:
    """Radius (pixels) of the strongest ring of a (background-free) radial profile outside the
    central mask, up to ring `limit`: the first-order spacing for a single crystal, the first
    ring for a polycrystal."""
    start = int(np.ceil(mask_radius))
    stop = len(profile) if limit is None else min(len(profile), limit)
    return float(start + np.argmax(profile[start:stop])) + 0.5 if start < stop else float("nan")


def disk_radius(residual: np.ndarray, centre, mask_radius: float, half: float) -> float:
    """Sub-pixel radius of the central disk: that of a flat disk at the disk's central level
    holding its whole residual (exact for a flat-topped disk with a symmetric soft edge)."""
    size = residual.shape[-1]
    rows, cols = np.mgrid[:size, :size]
    r = np.hypot(rows - centre[0], cols - centre[1])
    top = residual[r < max(1.0, 0.5 * half)].mean()
    if top <= 0:
        return float("nan")
    return float(np.sqrt(residual[r < mask_radius].sum() / top / np.pi))


def ring_centroid(profile: np.ndarray, sizes: np.ndarray, ring: float, width: float) -> float:
    """Centroid radius of a ring of the residual profile: sum r q n / sum q n over [ring -+ width]."""
    k = np.arange(len(profile))
    r = k + 0.5
    sel = (np.abs(r - ring) <= width) & (profile > 0)
    weight = profile[sel] * sizes[:len(profile)][sel]
    return float((r[sel] * weight).sum() / weight.sum()) if weight.sum() > 0 else float(ring)


def measure_mean_pattern(x: np.ndarray) -> dict:
    """Every figure of a sample of (N, H, W) binned, cropped patterns, checked; see the module
    docstring. Raises MeasurementError naming the figure that fails."""
    x = np.asarray(x, np.float64)
    size = x.shape[-1]
    mean = x.mean(axis=0)
    total = mean.sum()
    disk = measure_central_disk(mean)
    centre, bg, prof, sizes = disk["centre"], disk["background"], disk["profile"], disk["ring_sizes"]
    residual = mean - background_image(size, centre, bg)
    bg_fraction = float(np.clip(1 - residual.sum() / total, 0, 1)) if total > 0 else 0.0
    inside = int(size // 2)  # rings whole inside the input: the first-order disks must lie there
    smooth = max(1.0, disk["radius"] / 2)
    signal, noise = ring_signal(residual, centre, smooth, disk["mask_radius"]), None
    if len(x) >= 2:
        # The noise, from the two halves of the sample (no dose or detector model needed): the
        # spread it adds to every ring (largest where the background is) is taken off the
        # signal, and the rings' scatter between halves is the unit of the significance.
        back = background_image(size, centre, bg)
        a, b = (h.mean(axis=0) for h in (x[0::2], x[1::2]))
        signal = signal - ring_signal((a - b) / 2, centre, smooth, disk["mask_radius"])
        diff = (ring_signal(a - back, centre, smooth, disk["mask_radius"])
                - ring_signal(b - back, centre, smooth, disk["mask_radius"]))[:inside] / 2
        noise = 1.4826 * np.median(np.abs(diff - np.median(diff)))
    located = first_order_spacing(signal, disk["mask_radius"], inside)
    # Reported as before issue 25: the residual's strongest ring (by its mean) within a disk
    # radius of the ring found above, so a cube without background keeps its numbers.
    spacing_ring = located
    if np.isfinite(located):
        lo = max(int(np.ceil(disk["mask_radius"])), int(located - disk["radius"]))
        spacing_ring = first_order_spacing(prof, lo, min(inside, int(located + disk["radius"]) + 1))
    if not np.isfinite(spacing_ring):
        significance = 0.0
    else:
        significance = float(signal[int(located)] / noise) if noise else float("inf")
    radius = disk_radius(residual, centre, disk["mask_radius"], disk["radius"])
    r = np.hypot(*(np.mgrid[:size, :size] - np.asarray(centre)[:, None, None]))
    outside = r >= disk["mask_radius"]
    bragg = float(np.clip(residual[outside].sum() / total, 0, 1)) if total > 0 else 0.0
    m = {"central_disk_centre": [float(v) for v in centre], "central_disk_radius": disk["radius"],
         "central_mask_radius": disk["mask_radius"], "first_order_spacing": spacing_ring,
         "disk_radius": round(radius, 3),
         "spacing": round(ring_centroid(prof, sizes, spacing_ring, max(1.0, radius)), 3)
         if np.isfinite(spacing_ring) else float("nan"),
         "background": {"fraction": round(bg_fraction, 4), "A": bg["A"], "gamma_px": bg["gamma"], "c": bg["c"]},
         "bragg_share": bragg, "bragg_significance": round(significance, 2),
         "kept_pixels": int(outside.sum()), "input_pixels": int(size * size)}
    check(m, size)
    return m


def background_words(m: dict) -> str:
    return f"background about {100 * m['background']['fraction']:.0f} % of the counts"


def check(m: dict, size: int) -> None:
    """Each figure against what a usable pattern must show; the first that fails, in one line."""
    g, mask, R = m["first_order_spacing"], m["central_mask_radius"], m["disk_radius"]
    if not np.isfinite(g) or m["bragg_significance"] < MIN_SIGNIFICANCE:
        raise MeasurementError(
            f"first-order spacing {g:.1f} px of a {size} px input: no Bragg disks above the background "
            f"(the strongest ring outside the central disk is {m['bragg_significance']:.1f} sigma above the noise; "
            f"{background_words(m)})")
    if not np.isfinite(R) or R <= 0:
        raise MeasurementError(f"central disk radius {R} px: no central disk above the background "
                               f"({background_words(m)})")
    if g + R > size / 2:
        raise MeasurementError(
            f"first-order spacing {g:.1f} px of a {size} px input: its disks do not lie inside the input "
            f"(no Bragg disks above the background, or input_binning/input_crop too large; {background_words(m)})")
    if mask >= g - R:
        raise MeasurementError(
            f"first-order spacing {g:.1f} px against a central mask of {mask:.1f} px (disk radius {R:.1f} px): "
            f"no Bragg disks clear of the central disk above the background ({background_words(m)})")
    if m["kept_pixels"] < MIN_KEPT_FRACTION * size * size:
        raise MeasurementError(
            f"kept pixels {m['kept_pixels']} of {size * size}: the central mask ({mask:.1f} px) hides most of the "
            f"input ({background_words(m)})")


# ----------------------------------------------------------------------------- the lattice symmetry

FOLDS = {6: "hexagonal", 4: "square", 2: "rectangular"}


def peak_symmetry(image: np.ndarray, inner: float, disk_radius: float) -> dict:
    """The symmetry of a single-crystal pattern from its first-order peaks, a check on the
    rotation correlations (ccstae/physics/lattice.py) that uses the disks' positions only.

    Peaks: local maxima of the anisotropic part (ring means off, so no radial background),
    blurred over a disk, beyond `inner`, at least 30 % of the strongest; the first-order
    shell: those within 20 % of the nearest one's distance. Their order: 360 degrees over the
    median angle between neighbours; fit quality: the rms of those angles about 360 / order."""
    from scipy.ndimage import maximum_filter

    from ccstae.physics.lattice import anisotropic

    img = gaussian_filter(anisotropic(image), max(1.0, disk_radius / 2))
    c = (img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2
    rows, cols = np.mgrid[:img.shape[0], :img.shape[1]]
    dist = np.hypot(rows - c[0], cols - c[1])
    live = (dist > inner + disk_radius / 2) & (dist < min(c) - 1)
    peak = (img == maximum_filter(img, size=2 * int(np.ceil(disk_radius)) + 1)) & live & (img > 0)
    if peak.sum() == 0:
        return {"symmetry": None, "peaks": 0}
    peak &= img >= 0.3 * img[peak].max()
    d = dist[peak]
    shell = d <= 1.2 * d.min()
    angles = np.sort(np.degrees(np.arctan2(rows[peak][shell] - c[0], cols[peak][shell] - c[1])))
    if len(angles) < 2:
        return {"symmetry": None, "peaks": int(len(angles))}
    gaps = np.diff(np.concatenate([angles, angles[:1] + 360]))
    fold = min(FOLDS, key=lambda n: abs(360 / n - np.median(gaps)))
    return {"symmetry": FOLDS[fold], "peaks": int(len(angles)), "spacing": round(float(d[shell].mean()), 3),
            "angle_rms_deg": round(float(np.sqrt(np.mean((gaps - 360 / fold) ** 2))), 2)}


def check_symmetry(measured: str, corr: dict, peaks: dict) -> None:
    """The rotation correlations' symmetry must be the first-order peaks' (when those fit)."""
    if peaks.get("symmetry") is None or peaks["angle_rms_deg"] > 10 or measured == peaks["symmetry"]:
        return
    shown = ", ".join(f"{360 // k} deg {v:.2f}" for k, v in corr.items())
    raise MeasurementError(
        f"lattice symmetry {measured} (rotation correlations {shown}) disagrees with the first-order peaks, "
        f"{peaks['peaks']} at {peaks['spacing']:.1f} px fitting {peaks['symmetry']} "
        f"(rms {peaks['angle_rms_deg']:.1f} deg): too little Bragg signal above the background to tell; "
        "set [model] lattice_symmetry")


def lattice_symmetry(reference: np.ndarray, inner: float, disk_radius: float) -> tuple[str, dict, dict]:
    """(symmetry, rotation correlations, peak fit) of a reference pattern (encoder input space).

    The correlations (ccstae/physics/lattice.py) run on the pattern blurred over half a disk
    (noise off the disks). Where not even the 2-fold one matches (a noisy reference: nothing
    measured) the first-order peaks decide when they fit; where both measured, they must agree."""
    from ccstae.physics import lattice

    # Blurred once the radial part is off: a blurred mask edge would keep the pixel grid's 4-fold pattern.
    measured, corr = lattice.measure_symmetry(gaussian_filter(lattice.anisotropic(reference), max(1.0, disk_radius / 2)))
    peaks = peak_symmetry(reference, inner, disk_radius)
    fits = peaks.get("symmetry") is not None and peaks["angle_rms_deg"] <= 10
    if corr[2] < lattice.MATCH and fits:
        return peaks["symmetry"], corr, peaks
    check_symmetry(measured, corr, peaks)
    return measured, corr, peaks


# ----------------------------------------------------------------------------- the noise injection and the summary

WEAK_BRAGG_ELECTRONS = 2000.0  # Bragg electrons per pattern below which mixed injection kept an encoder flat


def choose_noise(measured: dict, counts: float | None, levels) -> dict:
    """[train] noise_mode = "auto" resolved from the cube: {mode, levels, counts, why}.

    The team's studies (bench/bench_realistic.py, issue 25): a monolayer at 1e5 e/pattern
    (~600 electrons in its Bragg disks) stayed flat with mixed injection up to w = 0.7 and
    learned with injection at its own level; a cube with a strong Bragg signal trains well
    mixed. Levels are injected ON the cube, which already holds its background w0: injecting
    w gives about w0 + w (1 - w0), so "its own level" is w = 0 (shot noise only) and the mixed
    levels are the configured ones at or above w0, brought to that scale."""
    w0 = float(measured["background"]["fraction"])
    bragg = None if counts is None else float(counts) * float(measured["bragg_share"])
    if bragg is not None and bragg < WEAK_BRAGG_ELECTRONS:
        return {"mode": "fixed", "levels": [0.0], "counts": counts,
                "why": f"{bragg:,.0f} electrons per pattern in the Bragg disks (< {WEAK_BRAGG_ELECTRONS:,.0f}): "
                       "trained at the cube's own level, no extra background"}
    target = sorted({round(w0, 2), *(float(v) for v in levels if v >= w0)})
    inject = sorted({round(max(0.0, (t - w0) / (1 - w0)), 2) for t in target if t < 1})
    what = "electrons per pattern unknown" if counts is None else \
        f"{bragg:,.0f} electrons per pattern in the Bragg disks"
    if len(inject) == 1:  # the cube is already at the highest configured level
        return {"mode": "fixed", "levels": inject, "counts": counts,
                "why": f"{what}, background w = {w0:.2f} at or above every configured level: trained at it"}
    return {"mode": "mixed", "levels": inject, "counts": counts,
            "why": f"{what}: mixed, w = {w0:.2f} to {max(target):g} in all"}


def summary(measured: dict, symmetry: str | None, counts: float | None, noise: str) -> str:
    """The line `ccstae train` prints before training: what was measured, what will be injected."""
    dose = "electrons per pattern unknown" if counts is None else f"{counts:,.0f} e/pattern"
    sym = f", {symmetry}" if symmetry else ""
    return (f"measured: central disk {measured['disk_radius']:.1f} px (masked to {measured['central_mask_radius']:.1f}), "
            f"first-order spacing {measured['spacing']:.1f} px{sym}, {dose}, "
            f"background {100 * measured['background']['fraction']:.0f} %; noise injection: {noise}")
