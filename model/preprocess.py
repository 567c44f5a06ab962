"""Detector-side preprocessing the encoder (and so the firmware) expects.

    x = sqrt(crop(bin(I)) / s)

- bin: sum of b x b pixel blocks (`input_binning`), which any detector readout can do and
  which divides the firmware's initiation interval (one input pixel per clock) by b^2;
- crop: drop `input_crop` pixels at each edge of the binned pattern (the outer ring holds
  no disk the loss uses), which shortens the stream further: 32x32 -> 30x30 is 900 instead of
  1,024 clocks per pattern;
- sqrt: variance-stabilising for Poisson counts and a compression of the bright central
  disk against the weak Bragg disks; on the front end it is a lookup table on counts;
- s: ONE scan-wide constant (a high percentile of binned intensities in the training
  data), so no per-pattern division is needed in the pipeline. It is saved with the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALE_PERCENTILE = 99.9


def bin_patterns(patterns: np.ndarray, binning: int) -> np.ndarray:
    """Sum b x b blocks of (..., P, P) patterns; P must be divisible by b."""
    if binning == 1:
        return patterns
    *lead, h, w = patterns.shape
    if h % binning or w % binning:
        raise ValueError(f"pattern size {h}x{w} is not divisible by input_binning={binning}")
    return patterns.reshape(*lead, h // binning, binning, w // binning, binning).sum(axis=(-3, -1))


def fit_scale(patterns: np.ndarray, binning: int, crop: int = 0) -> float:
    """The scan-wide constant s from a sample of (N, P, P) patterns."""
    x = crop_patterns(bin_patterns(np.asarray(patterns, np.float64), binning), crop)
    s = float(np.percentile(x, SCALE_PERCENTILE))
    if not np.isfinite(s) or s <= 0:
        raise ValueError("cannot fit the input scale: the patterns are empty or not finite")
    return s


def crop_patterns(patterns: np.ndarray, crop: int) -> np.ndarray:
    return patterns[..., crop:patterns.shape[-2] - crop, crop:patterns.shape[-1] - crop] if crop else patterns


def input_size(pattern: int, binning: int, crop: int) -> int:
    """Encoder input size for a detector pattern size."""
    return pattern // binning - 2 * crop


def preprocess(patterns: np.ndarray, scale: float, binning: int, crop: int = 0) -> np.ndarray:
    """(N, P, P) intensities -> (N, P/b - 2 crop, P/b - 2 crop, 1) float32 encoder inputs."""
    x = crop_patterns(bin_patterns(np.asarray(patterns, np.float32), binning), crop)
    return np.sqrt(np.maximum(x, 0) / np.float32(scale))[..., None].astype(np.float32)


# ----------------------------------------------------------------------------- the integer path
# What a detector-side FPGA front end computes (firmware/frontend/ccstae_frontend.h), in numpy:
#
#     code = LUT[ min(mask * crop(bin(n)), LUT_DEPTH - 1) ],   x = code / 2^(input_bits - input_integer)
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
    encoder's input quantizer; count_bits: the detector's counter width (sets the largest count)."""

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

    def __post_init__(self):
        if self.transfer not in TRANSFERS:
            raise ValueError(f"unknown input transfer {self.transfer!r}; known: {', '.join(TRANSFERS)}")
        if self.mask is not None:
            self.mask = np.asarray(self.mask, bool)
            if self.mask.shape != (self.size, self.size):
                raise ValueError(f"mask is {self.mask.shape}, the encoder input {self.size}x{self.size}")

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
        """preprocess.json's integer-path keys (the mask goes to mask.npy beside it)."""
        return {"counts_per_unit": float(self.counts_per_unit), "transfer": self.transfer,
                "input_bits": int(self.input_bits), "input_integer": int(self.input_integer),
                "count_bits": int(self.count_bits), "masked": self.mask is not None}

    @classmethod
    def from_run(cls, run_dir, cfg: dict | None = None) -> "PreprocessParams":
        """From a run directory. Runs saved before the integer path existed hold only pattern,
        binning, crop and scale: their counts unit is the config's dose (simulated cubes), their
        transfer sqrt, their input quantizer the config's [quant] one, no mask."""
        import json
        from pathlib import Path

        run_dir = Path(run_dir)
        pre = json.loads((run_dir / "preprocess.json").read_text())
        if cfg is None:
            cfg = json.loads((run_dir / "config.json").read_text())
        quant = cfg.get("quant", {})
        mask_file = run_dir / "mask.npy"
        return cls(pattern=int(pre["pattern"]), binning=int(pre["binning"]), crop=int(pre.get("crop", 0)),
                   scale=float(pre["scale"]),
                   counts_per_unit=float(pre.get("counts_per_unit", cfg.get("noise", {}).get("counts", 1.0))),
                   transfer=pre.get("transfer", "sqrt"),
                   mask=np.load(mask_file) if mask_file.exists() else pre.get("mask"),
                   input_bits=int(pre.get("input_bits", quant.get("input_bits", 8))),
                   input_integer=int(pre.get("input_integer", quant.get("input_integer", 1))),
                   count_bits=int(pre.get("count_bits", 16)))


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


def bin_counts(counts: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """(N, P, P) integer counts -> (N, H, W) masked binned + cropped integer counts."""
    counts = np.asarray(counts)
    if not np.issubdtype(counts.dtype, np.integer):
        raise ValueError("preprocess_counts takes integer counts (use to_counts for cube values)")
    if counts.shape[-2:] != (params.pattern, params.pattern):
        raise ValueError(f"patterns are {counts.shape[-2:]}, the run's {params.pattern}x{params.pattern}")
    n = crop_patterns(bin_patterns(counts.astype(np.int64), params.binning), params.crop)
    return np.where(params.keep(), n, 0)


def preprocess_counts(counts: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """(N, P, P) integer counts -> (N, H, W, 1) float32 encoder inputs on the input quantizer's grid,
    bit for bit what the firmware front end feeds the encoder."""
    lut = params.lut()
    codes = lut[np.minimum(bin_counts(counts, params), len(lut) - 1)]
    return (codes.astype(np.float32) / np.float32(2.0 ** params.frac_bits))[..., None]


def preprocess_integer(patterns: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """Cube values -> encoder inputs through the integer path (to_counts, then preprocess_counts)."""
    return preprocess_counts(to_counts(patterns, params.counts_per_unit, params.count_bits), params)
