"""A session's calibration (calib.json, `ccstae calibrate`) as the front end applies it, bit-exactly.

    params = session_params(run_params, cal)     # + bad raw pixels, + an origin-shift port
    shifts = origin_shifts(cal, params.binning)  # (Rx * Ry, 2) integer (dy, dx) per position
    write_frontend(prj, params, ppc); CompiledFrontend(prj).predict(counts, shifts)
    preprocess_counts(counts, params, shifts)    # the Python reference, the same integers

What the firmware does (docs/frontend.md): bad pixels read 0 before the binning, and each pattern's
window (the crop) moves by a whole number of binned pixels, sent with the pattern as a sideband word.
What stays on the host: the origin's remainder below one binned pixel, the ellipse and the
rotation/flip (a resampling the front end does not do; the maps are corrected instead,
physics/calibration.correct_matrices).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ccstae.core.errors import UserError
from ccstae.model.preprocess import PreprocessParams
from ccstae.physics.calibration import Calibration

SHIFT_LIMIT = 1 << 15  # the sideband word's fields are 16-bit two's complement


def session_params(params: PreprocessParams, cal: Calibration) -> PreprocessParams:
    """The run's front end with the session's bad pixels and an origin shift per pattern."""
    if cal.pattern != params.pattern:
        raise UserError(f"calibration: measured on {cal.pattern}x{cal.pattern} patterns, the run takes "
                        f"{params.pattern}x{params.pattern}")
    bad = cal.bad_mask
    return dataclasses.replace(params, bad_pixels=bad if bad.any() else None, origin_shift=True)


def origin_shifts(cal: Calibration, binning: int, index=None) -> np.ndarray:
    """(n, 2) int64 (dy, dx) in binned pixels: the fitted origin map (raw pixels, row and column from
    the pattern centre) divided by the binning and rounded, at the flat scan positions index (all)."""
    origin = cal.origin_map().reshape(-1, 2)
    if index is not None:
        origin = origin[np.asarray(index, np.int64)]
    shifts = np.rint(origin / binning).astype(np.int64)
    if np.abs(shifts).max(initial=0) >= SHIFT_LIMIT:
        raise UserError("calibration: an origin shift does not fit the front end's 16-bit shift word")
    return shifts


def edge_shifts(params: PreprocessParams) -> np.ndarray:
    """(k, 2) shifts every front end must get right: none, the window flush with each edge of the
    binned frame, one pixel past it, half and wholly outside, and the word's extremes."""
    b, c = params.pattern // params.binning, params.crop
    half = (b - 2 * c) // 2
    out = [(0, 0), (c, c), (-c, -c), (c, -c), (-c, c), (c + 1, 0), (0, -c - 1), (-c - half, c + half),
           (b, 0), (0, -b), (b, b), (SHIFT_LIMIT - 1, 0), (0, -SHIFT_LIMIT), (-SHIFT_LIMIT, SHIFT_LIMIT - 1)]
    return np.array(out, np.int64)
