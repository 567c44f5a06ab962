"""Detector-side preprocessing the encoder (and so the firmware) expects.

    x = LUT[ mask * crop(bin(n)) ],   LUT(v) = sqrt(v / s)

- bin: sum of b x b pixel blocks (`input_binning`), which any detector readout can do and
  which divides the firmware's initiation interval (one input pixel per clock) by b^2;
- crop: drop `input_crop` pixels at each edge of the binned pattern (the outer ring holds
  no disk the loss uses), which shortens the stream further;
- mask: ONE fixed image (1 keep, 0 force to zero) over the binned + cropped pixels. By
  default it hides the central disk: it carries no strain, and on real specimens it holds
  ~99 % of the electrons, so with it in the picture the scale s is set by it and the Bragg
  disks are left a few LSBs of the input (issue 11);
- sqrt: variance-stabilising for Poisson counts; on the front end a lookup table on counts;
- s: ONE scan-wide constant, a high percentile of the KEPT pixels, i.e. of the Bragg region
  once the central disk is masked, so the Bragg disks fill the input range whatever their
  share of the counts.

Everything specimen-dependent (mask centre and radius, s, and the lattice figures kept for
the record) is measured from the training cube by `fit_preprocess` (no labels: the mean
pattern and its radial profile) and saved with the run in preprocess.json:

    pattern, binning, crop, scale      as before (a run without the keys below: no mask)
    lut = "sqrt"
    mask = {"kind": "disk", "centre": [row, col], "radius": R}   pixels of the binned,
           cropped pattern; masked where the distance to the centre is < R ("none": no mask)
    measured = {central_disk_radius, first_order_spacing, bragg_share, ...}   for the record
"""
from __future__ import annotations

import numpy as np

SCALE_PERCENTILE = 99.9
CENTRAL_MASKS = ("auto", "none")


def bin_patterns(patterns: np.ndarray, binning: int) -> np.ndarray:
    """Sum b x b blocks of (..., P, P) patterns; P must be divisible by b."""
    if binning == 1:
        return patterns
    *lead, h, w = patterns.shape
    if h % binning or w % binning:
        raise ValueError(f"pattern size {h}x{w} is not divisible by input_binning={binning}")
    return patterns.reshape(*lead, h // binning, binning, w // binning, binning).sum(axis=(-3, -1))


def crop_patterns(patterns: np.ndarray, crop: int) -> np.ndarray:
    return patterns[..., crop:patterns.shape[-2] - crop, crop:patterns.shape[-1] - crop] if crop else patterns


def input_size(pattern: int, binning: int, crop: int) -> int:
    """Encoder input size for a detector pattern size."""
    return pattern // binning - 2 * crop


def mask_image(size: int, mask: dict | None) -> np.ndarray:
    """The fixed (size, size) float32 keep-mask described by preprocess.json's `mask` entry."""
    if not mask or mask.get("kind", "none") == "none":
        return np.ones((size, size), np.float32)
    if mask["kind"] != "disk":
        raise ValueError(f"unknown preprocessing mask kind '{mask['kind']}'")
    rows, cols = np.mgrid[:size, :size]
    r = np.hypot(rows - mask["centre"][0], cols - mask["centre"][1])
    return (r >= float(mask["radius"])).astype(np.float32)


def fit_scale(patterns: np.ndarray, binning: int, crop: int = 0, mask: dict | None = None) -> float:
    """The scan-wide constant s from a sample of (N, P, P) patterns: a high percentile of the
    pixels the mask keeps."""
    x = crop_patterns(bin_patterns(np.asarray(patterns, np.float64), binning), crop)
    keep = mask_image(x.shape[-1], mask) > 0
    s = float(np.percentile(x[:, keep], SCALE_PERCENTILE))
    if not np.isfinite(s) or s <= 0:
        raise ValueError("cannot fit the input scale: the patterns are empty or not finite")
    return s


def radial_profile(image: np.ndarray, centre) -> np.ndarray:
    """Mean of `image` over rings [k, k + 1) pixels from centre (row, col); index k."""
    rows, cols = np.mgrid[:image.shape[0], :image.shape[1]]
    r = np.floor(np.hypot(rows - centre[0], cols - centre[1])).astype(int)
    return np.bincount(r.ravel(), image.ravel()) / np.maximum(np.bincount(r.ravel()), 1)


def measure_central_disk(mean_pattern: np.ndarray) -> dict:
    """Centre and radii of the central disk in a mean pattern (binned, cropped), no labels.

    centre: centroid of the pixels above half the maximum near the brightest spot; radius:
    where the radial profile falls to half its central value; mask radius: the profile's
    first minimum beyond that (the gap before the first-order disks), where the central
    disk's tail has fallen below the Bragg disks around it."""
    img = np.asarray(mean_pattern, np.float64)
    size = img.shape[-1]
    c = (size - 1) / 2
    rows, cols = np.mgrid[:size, :size]
    near = np.hypot(rows - c, cols - c) < size / 4
    peak = img[near].max()
    bright = near & (img >= 0.5 * peak)
    centre = (float((rows * img)[bright].sum() / img[bright].sum()),
              float((cols * img)[bright].sum() / img[bright].sum()))
    prof = radial_profile(img, centre)
    below = prof < 0.5 * prof[0]
    half = int(np.argmax(below)) if np.any(below) else 1
    r_min = half
    limit = len(prof) - 2
    while r_min < limit and prof[r_min + 1] < prof[r_min]:
        r_min += 1
    # Ring k spans radii [k, k + 1): the mask ends in the middle of the gap's ring.
    return {"centre": centre, "radius": float(half), "mask_radius": float(r_min) + 0.5, "profile": prof}


def first_order_spacing(mean_pattern: np.ndarray, centre, mask_radius: float) -> float:
    """Radius (pixels) of the strongest ring of the mean pattern outside the central disk:
    the first-order spacing for a single crystal, the first ring for a polycrystal."""
    prof = radial_profile(np.asarray(mean_pattern, np.float64), centre)
    start = int(np.ceil(mask_radius))
    return float(start + np.argmax(prof[start:])) + 0.5 if start < len(prof) else float("nan")


def fit_preprocess(patterns: np.ndarray, binning: int, crop: int = 0, central_mask: str = "auto",
                   scale_patterns: np.ndarray | None = None) -> dict:
    """Measure the preprocessing parameters from a sample of (N, P, P) training patterns.

    central_mask: "auto" hides the measured central disk, "none" keeps every pixel (the
    behaviour before issue 11). scale_patterns: the patterns s is taken from (default:
    `patterns`), e.g. training patterns with the noise injection the encoder will see.
    Returns the dict written to preprocess.json (see the module docstring)."""
    if central_mask not in CENTRAL_MASKS:
        raise ValueError(f"central_mask '{central_mask}' is not one of {', '.join(CENTRAL_MASKS)}")
    x = crop_patterns(bin_patterns(np.asarray(patterns, np.float64), binning), crop)
    mean = x.mean(axis=0)
    disk = measure_central_disk(mean)
    size = x.shape[-1]
    mask = {"kind": "none"}
    if central_mask == "auto":
        mask = {"kind": "disk", "centre": [round(disk["centre"][0], 3), round(disk["centre"][1], 3)],
                "radius": round(disk["mask_radius"], 3)}
    keep = mask_image(size, mask) > 0
    scale = fit_scale(patterns if scale_patterns is None else scale_patterns, binning, crop, mask)
    total = mean.sum()
    outside = mask_image(size, {"kind": "disk", "centre": disk["centre"], "radius": disk["mask_radius"]}) > 0
    return {"pattern": int(np.shape(patterns)[-1]), "binning": int(binning), "crop": int(crop),
            "scale": float(scale), "lut": "sqrt", "mask": mask,
            "measured": {"central_disk_centre": [float(v) for v in disk["centre"]],
                         "central_disk_radius": disk["radius"], "central_mask_radius": disk["mask_radius"],
                         "first_order_spacing": first_order_spacing(mean, disk["centre"], disk["mask_radius"]),
                         "bragg_share": float(mean[outside].sum() / total) if total > 0 else 0.0,
                         "kept_pixels": int(keep.sum())}}


def preprocess(patterns: np.ndarray, scale: float, binning: int, crop: int = 0,
               mask: dict | None = None) -> np.ndarray:
    """(N, P, P) intensities -> (N, P/b - 2 crop, P/b - 2 crop, 1) float32 encoder inputs.

    mask: preprocess.json's `mask` entry (None: keep every pixel, as before issue 11)."""
    x = crop_patterns(bin_patterns(np.asarray(patterns, np.float32), binning), crop)
    if mask and mask.get("kind", "none") != "none":
        x = x * mask_image(x.shape[-1], mask)
    return np.sqrt(np.maximum(x, 0) / np.float32(scale))[..., None].astype(np.float32)
