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
    measured = {central_disk_radius, first_order_spacing, background, ...}   for the record
               (ccstae/model/measure.py: measured with the background removed, each figure checked)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The mean-pattern measurement (robust to a background, checked) lives in measure.py; these
# names stay importable from here.
from ccstae.model.measure import first_order_spacing, measure_central_disk, measure_mean_pattern, radial_profile  # noqa: F401

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
    measured = measure_mean_pattern(x)  # MeasurementError (a UserError) naming a figure that fails
    mask = {"kind": "none"}
    if central_mask == "auto":
        centre = measured["central_disk_centre"]
        mask = {"kind": "disk", "centre": [round(centre[0], 3), round(centre[1], 3)],
                "radius": round(measured["central_mask_radius"], 3)}
    scale = fit_scale(patterns if scale_patterns is None else scale_patterns, binning, crop, mask)
    return {"pattern": int(np.shape(patterns)[-1]), "binning": int(binning), "crop": int(crop),
            "scale": float(scale), "lut": "sqrt", "mask": mask, "measured": measured}


def preprocess(patterns: np.ndarray, scale: float, binning: int, crop: int = 0,
               mask: dict | None = None) -> np.ndarray:
    """(N, P, P) intensities -> (N, P/b - 2 crop, P/b - 2 crop, 1) float32 encoder inputs.

    mask: preprocess.json's `mask` entry (None: keep every pixel, as before issue 11)."""
    x = crop_patterns(bin_patterns(np.asarray(patterns, np.float32), binning), crop)
    if mask and mask.get("kind", "none") != "none":
        x = x * mask_image(x.shape[-1], mask)
    return np.sqrt(np.maximum(x, 0) / np.float32(scale))[..., None].astype(np.float32)


# ----------------------------------------------------------------------------- the integer path
# What a detector-side FPGA front end computes (ccstae/firmware/frontend/ccstae_frontend.h), in numpy:
#
#     code = LUT[ min(mask * crop(bin(n)), LUT_DEPTH - 1) ],   x = code / 2^(input_bits - input_integer)
#
# With a session's calibration (docs/frontend.md), optionally: bad raw pixels read 0 before the
# binning, and the crop becomes a window moved per pattern by an integer (dy, dx) in binned pixels
# (pixels of the window outside the binned frame read 0).
#
# n: integer counts per detector pixel. LUT[k] is the encoder's input quantizer (QKeras
# quantized_bits(input_bits, input_integer, keep_negative=False): round half to even onto the
# 2^-frac grid, saturate) applied to the float32 transfer value sqrt(k / s_counts), exactly as
# QKeras computes it. The table stops where it saturates: larger counts read its last entry.
# QAT, QKeras evaluation and the firmware all take their inputs from here.

TRANSFERS = {"sqrt": np.sqrt}  # name -> monotone float32 function of (binned count / s_counts)
MAX_LUT_DEPTH = 1 << 20        # a ROM of a million entries is no longer a sensible front end


@dataclass
class PreprocessParams:
    """Everything the integer front end needs, as a run saves it (preprocess.json [+ mask.npy]).

    pattern: detector pixels per side; binning, crop: as in `preprocess`; scale: s in the
    cube's unit; counts_per_unit: detector counts per cube unit (simulated cubes are normalised
    to sum 1: their dose C; a cube of counts: 1); transfer: the LUT's function; mask: bool
    (H, W) over the binned + cropped pixels (None: keep all); input_bits / input_integer: the
    encoder's input quantizer; count_bits: the detector's counter width (sets the largest count).
    A session's calibration, for the front end (not saved with a run): bad_pixels, bool (P, P) raw
    pixels that read 0 (None: none); origin_shift: the window moves per pattern (preprocess_counts'
    shifts; the firmware then takes a shift word per pattern)."""

    pattern: int
    binning: int
    crop: int
    scale: float
    counts_per_unit: float = 1.0
    transfer: str = "sqrt"
    mask: np.ndarray | None = None
    input_bits: int = 8
    input_integer: int = 1
    count_bits: int = 16
    bad_pixels: np.ndarray | None = None
    origin_shift: bool = False

    def __post_init__(self):
        if self.transfer not in TRANSFERS:
            raise ValueError(f"unknown input transfer {self.transfer!r}; known: {', '.join(TRANSFERS)}")
        if self.mask is not None:
            self.mask = np.asarray(self.mask, bool)
            if self.mask.shape != (self.size, self.size):
                raise ValueError(f"mask is {self.mask.shape}, the encoder input {self.size}x{self.size}")
        if self.bad_pixels is not None:
            self.bad_pixels = np.asarray(self.bad_pixels, bool)
            if self.bad_pixels.shape != (self.pattern, self.pattern):
                raise ValueError(f"bad-pixel map is {self.bad_pixels.shape}, the pattern {self.pattern}x{self.pattern}")

    @property
    def size(self) -> int:
        return input_size(self.pattern, self.binning, self.crop)

    @property
    def scale_counts(self) -> float:
        """s in counts of one binned pixel: the one constant the LUT is built from."""
        return float(self.scale) * float(self.counts_per_unit)

    @property
    def frac_bits(self) -> int:
        return int(self.input_bits) - int(self.input_integer)

    @property
    def max_binned(self) -> int:
        return self.binning ** 2 * ((1 << int(self.count_bits)) - 1)

    def keep(self) -> np.ndarray:
        return np.ones((self.size, self.size), bool) if self.mask is None else self.mask

    def lut(self) -> np.ndarray:
        """uint codes of the binned counts 0 .. depth-1 (cached); counts beyond read the last one."""
        cached = getattr(self, "_lut", None)
        if cached is None:
            cached = self._lut = build_lut(self.scale_counts, self.transfer, self.input_bits, self.input_integer,
                                           self.max_binned)
        return cached

    def to_json(self) -> dict:
        """preprocess.json's integer-path keys (pattern, binning, crop, scale, lut and mask are the
        float path's, already there)."""
        return {"counts_per_unit": float(self.counts_per_unit), "input_bits": int(self.input_bits),
                "input_integer": int(self.input_integer), "count_bits": int(self.count_bits)}

    @classmethod
    def from_run(cls, run_dir, cfg: dict | None = None) -> "PreprocessParams":
        """From a run directory (its preprocess.json, and mask.npy when a run saved an explicit
        mask image). Keys a run saved before the integer path lacks: its counts unit is the
        config's dose (simulated cubes), its input quantizer the config's [quant] one, 16-bit
        counters; without `lut`/`mask` (before issue 11): sqrt, no mask."""
        import json
        from pathlib import Path

        run_dir = Path(run_dir)
        pre = json.loads((run_dir / "preprocess.json").read_text())
        if cfg is None:
            cfg = json.loads((run_dir / "config.json").read_text())
        quant = cfg.get("quant", {})
        size = input_size(int(pre["pattern"]), int(pre["binning"]), int(pre.get("crop", 0)))
        mask = None
        if (run_dir / "mask.npy").exists():
            mask = np.load(run_dir / "mask.npy") > 0
        elif pre.get("mask") and pre["mask"].get("kind", "none") != "none":
            mask = mask_image(size, pre["mask"]) > 0
        return cls(pattern=int(pre["pattern"]), binning=int(pre["binning"]), crop=int(pre.get("crop", 0)),
                   scale=float(pre["scale"]),
                   counts_per_unit=float(pre.get("counts_per_unit", cfg.get("noise", {}).get("counts", 1.0))),
                   transfer=pre.get("lut", "sqrt"), mask=mask,
                   input_bits=int(pre.get("input_bits", quant.get("input_bits", 8))),
                   input_integer=int(pre.get("input_integer", quant.get("input_integer", 1))),
                   count_bits=int(pre.get("count_bits", quant.get("count_bits", 16))))


def quantize_input(v: np.ndarray, bits: int, integer: int) -> np.ndarray:
    """QKeras quantized_bits(bits, integer, keep_negative=False, alpha=1) as integer codes, in
    float32 like QKeras: round(v * 2^frac) half to even, saturated to [0, 2^bits - 1]."""
    v = np.asarray(v, np.float32) * np.float32(2.0 ** (bits - integer))
    return np.clip(np.round(v), 0, (1 << bits) - 1).astype(np.int64)


def build_lut(scale_counts: float, transfer: str, bits: int, integer: int, max_count: int) -> np.ndarray:
    """Codes of the binned counts 0, 1, ... up to the first that saturates (or max_count)."""
    if not np.isfinite(scale_counts) or scale_counts <= 0:
        raise ValueError(f"the input scale in counts must be > 0 (got {scale_counts})")
    top = (1 << bits) - 1
    fn = TRANSFERS[transfer]
    # The transfer is monotone: find the first saturating count by doubling, then bisection.
    hi = 1
    while hi < max_count and _code(hi, scale_counts, fn, bits, integer) < top:
        hi = min(2 * hi, max_count)
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if _code(mid, scale_counts, fn, bits, integer) >= top:
            hi = mid
        else:
            lo = mid + 1
    depth = lo + 1
    if depth > MAX_LUT_DEPTH:
        raise ValueError(f"the input LUT would need {depth:,} entries (s = {scale_counts:g} counts): "
                         f"more than {MAX_LUT_DEPTH:,}")
    return _code(np.arange(depth), scale_counts, fn, bits, integer).astype(np.uint16)


def _code(k, scale_counts, fn, bits, integer):
    v = fn(np.asarray(k, np.float32) / np.float32(scale_counts))
    return quantize_input(v, bits, integer)


def to_counts(patterns: np.ndarray, counts_per_unit: float, count_bits: int = 16) -> np.ndarray:
    """Cube values -> the integer counts a detector delivers: round(I * counts_per_unit), clipped to
    the counter's range. Exact for simulated noisy cubes (Poisson(.) / C)."""
    n = np.rint(np.asarray(patterns, np.float64) * float(counts_per_unit))
    return np.clip(n, 0, (1 << int(count_bits)) - 1).astype(np.int64)


def bin_counts(counts: np.ndarray, params: PreprocessParams, shifts=None) -> np.ndarray:
    """(N, P, P) integer counts -> (N, H, W) masked binned + cropped integer counts.

    shifts: (N, 2) integer (dy, dx) per pattern in binned pixels (params.origin_shift only; None:
    all 0): encoder pixel (i, j) is binned pixel (crop + dy + i, crop + dx + j), 0 outside the frame."""
    counts = np.asarray(counts)
    if not np.issubdtype(counts.dtype, np.integer):
        raise ValueError("preprocess_counts takes integer counts (use to_counts for cube values)")
    if counts.shape[-2:] != (params.pattern, params.pattern):
        raise ValueError(f"patterns are {counts.shape[-2:]}, the run's {params.pattern}x{params.pattern}")
    n = counts.astype(np.int64)
    if params.bad_pixels is not None:
        n = np.where(params.bad_pixels, 0, n)
    n = bin_patterns(n, params.binning)
    if shifts is not None and not params.origin_shift:
        raise ValueError("origin shifts given, but the front end takes none (params.origin_shift is False)")
    n = crop_patterns(n, params.crop) if shifts is None else shift_window(n, params.crop, shifts)
    return np.where(params.keep(), n, 0)


def shift_window(binned: np.ndarray, crop: int, shifts) -> np.ndarray:
    """(N, B, B) binned counts -> (N, B - 2 crop, ...) windows moved by shifts (N, 2), 0 outside."""
    binned = np.asarray(binned)
    shifts = np.asarray(shifts, np.int64).reshape(-1, 2)
    if len(shifts) != len(binned):
        raise ValueError(f"{len(shifts)} origin shifts for {len(binned)} patterns")
    b = binned.shape[-1]
    ij = crop + np.arange(b - 2 * crop)
    rows = (ij[None, :] + shifts[:, :1])[:, :, None]  # (N, H, 1)
    cols = (ij[None, :] + shifts[:, 1:])[:, None, :]  # (N, 1, W)
    inside = (rows >= 0) & (rows < b) & (cols >= 0) & (cols < b)
    picked = binned[np.arange(len(binned))[:, None, None], np.clip(rows, 0, b - 1), np.clip(cols, 0, b - 1)]
    return np.where(inside, picked, 0)


def preprocess_counts(counts: np.ndarray, params: PreprocessParams, shifts=None) -> np.ndarray:
    """(N, P, P) integer counts -> (N, H, W, 1) float32 encoder inputs on the input quantizer's grid,
    bit for bit what the firmware front end feeds the encoder (shifts: as in bin_counts)."""
    lut = params.lut()
    codes = lut[np.minimum(bin_counts(counts, params, shifts), len(lut) - 1)]
    return (codes.astype(np.float32) / np.float32(2.0 ** params.frac_bits))[..., None]


def preprocess_integer(patterns: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """Cube values -> encoder inputs through the integer path (to_counts, then preprocess_counts)."""
    return preprocess_counts(to_counts(patterns, params.counts_per_unit, params.count_bits), params)
