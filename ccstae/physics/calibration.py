"""A session's calibration (calib.json, written by `ccstae calibrate`), read and applied on the host.

    calib = load_calibration("calib.json")
    with open_cube(path) as raw:
        cube = CalibratedCube(raw, calib)     # patterns read from it: bad pixels filled, origin centred
    m = correct_matrices(m, calib)            # lattice matrices -> the scan frame: ellipse, rotation, flip

Patterns (what `ccstae strain/baseline --calibration` do). Each pattern is read, its bad pixels
replaced by the mean of their good neighbours, and resampled (cubic splines, one interpolation) onto
the frame of a detector aligned with the scan: pixel q of the result is the detector at
c + origin(R) + A q, origin(R) the smooth map fitted to the central beam and A = E R F
(ccstae/physics/distort.py: the ellipse, the scan-detector rotation and the flip, in (row, col) =
(Qx, Qy)). The central beam sits at c = (P - 1) / 2 again and the maps need no correction.

Maps (the alternative, `warp=False` + correct_matrices). A lattice matrix M
(pattern lattice = M reference lattice, ccstae/physics/strain.py) measured on the detector is then
A M_true A'^-1 up to the reference, and referenced to a region it is A M_rel A^-1 exactly: the
correction is the conjugation M -> A^-1 M A, done on the matrices before strain.strain_maps, i.e.
on all four maps at once (exx, eyy, exy, theta). A rotation of 180 degrees changes nothing (a
diffraction pattern's lattice is centrosymmetric), so the rotation is only needed modulo 180.
Exact for the matrices, but the baseline measured worse this way (docs/calibration.md): py4DSTEM
indexes a polycrystal against ONE basis, and a rotated, flipped detector moved its grains' spread
of orientations so that some were misindexed.

calib.json (all pixel figures in (row, col) = (Qx, Qy) of the detector; angles from Qx towards Qy):

    scan [Rx, Ry], pattern P
    bad_pixels   {"dead": [[row, col], ...], "hot": [[row, col], ...]}
    origin       {"degree": d, "coeffs": [[...], [...]]}  row and col offsets from c, a polynomial of
                 degree d in u = r / (Rx - 1) - 1/2, v = s / (Ry - 1) - 1/2 (terms u^i v^j, i + j <= d)
    ellipse      {"ellipticity": a/b - 1, "axis_deg": long axis}
    rotation     {"determined": bool, "rotation_deg": ... or null, "flip": ... or null, "why": "..."}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccstae.core.data_io import Cube
from ccstae.core.errors import UserError
from ccstae.physics.distort import TRANSPOSE, ellipse_matrix, rotation

VERSION = 1


@dataclass
class Calibration:
    scan: tuple
    pattern: int
    dead: list = field(default_factory=list)
    hot: list = field(default_factory=list)
    origin_degree: int = 0
    origin_coeffs: list = field(default_factory=lambda: [[0.0], [0.0]])
    ellipticity: float = 0.0
    axis_deg: float = 0.0
    rotation_deg: float | None = None
    flip: bool | None = None
    rotation_why: str = ""
    measured: dict = field(default_factory=dict)  # figures kept for the record

    def to_json(self) -> dict:
        return {"version": VERSION, "scan": list(self.scan), "pattern": self.pattern,
                "bad_pixels": {"dead": self.dead, "hot": self.hot},
                "origin": {"degree": self.origin_degree, "coeffs": self.origin_coeffs},
                "ellipse": {"ellipticity": self.ellipticity, "axis_deg": self.axis_deg},
                "rotation": {"determined": self.rotation_deg is not None, "rotation_deg": self.rotation_deg,
                             "flip": self.flip, "why": self.rotation_why},
                "measured": self.measured}

    @property
    def bad_mask(self) -> np.ndarray:
        mask = np.zeros((self.pattern, self.pattern), bool)
        for r, c in self.dead + self.hot:
            mask[r, c] = True
        return mask

    def origin_map(self) -> np.ndarray:
        """(Rx, Ry, 2) origin offsets (row, col) from the pattern centre."""
        basis = poly_basis(self.scan, self.origin_degree)
        return (basis @ np.asarray(self.origin_coeffs, np.float64).T).reshape(*self.scan, 2)

    def detector_matrix(self) -> np.ndarray:
        """A = E R F in (row, col); an undetermined rotation counts as none (R F = I)."""
        rf = np.eye(2) if self.rotation_deg is None else rotation(self.rotation_deg) @ (TRANSPOSE if self.flip else np.eye(2))
        return ellipse_matrix(self.ellipticity, self.axis_deg) @ rf


def load_calibration(path) -> Calibration:
    """calib.json -> Calibration; a UserError naming the file when it is missing or not one."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        o, e, r, b = d["origin"], d["ellipse"], d["rotation"], d["bad_pixels"]
        cal = Calibration(scan=tuple(int(v) for v in d["scan"]), pattern=int(d["pattern"]),
                          dead=[[int(a), int(c)] for a, c in b["dead"]], hot=[[int(a), int(c)] for a, c in b["hot"]],
                          origin_degree=int(o["degree"]), origin_coeffs=[[float(v) for v in row] for row in o["coeffs"]],
                          ellipticity=float(e["ellipticity"]), axis_deg=float(e["axis_deg"]),
                          rotation_deg=None if r["rotation_deg"] is None else float(r["rotation_deg"]),
                          flip=None if r["flip"] is None else bool(r["flip"]), rotation_why=str(r.get("why", "")),
                          measured=d.get("measured", {}))
    except FileNotFoundError:
        raise UserError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a calibration file (not JSON: {err})") from None
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path}: not a calibration file written by `ccstae calibrate` (bad or missing {err})") from None
    n_terms = len(poly_terms(cal.origin_degree))
    if len(cal.origin_coeffs) != 2 or any(len(row) != n_terms for row in cal.origin_coeffs):
        raise UserError(f"{path}: origin coefficients do not match degree {cal.origin_degree}")
    if not all(0 <= v < cal.pattern for px in cal.dead + cal.hot for v in px):
        raise UserError(f"{path}: a bad pixel lies outside the {cal.pattern}x{cal.pattern} pattern")
    return cal


def check_cube(cal: Calibration, cube, where: str = "calibration") -> None:
    """The calibration was measured on a scan of this shape and this pattern size."""
    if tuple(cube.shape[:2]) != tuple(cal.scan) or tuple(cube.shape[2:]) != (cal.pattern, cal.pattern):
        raise UserError(f"{where}: measured on a {cal.scan[0]}x{cal.scan[1]} scan of {cal.pattern}x{cal.pattern} "
                        f"patterns, but {cube.path} is {cube.shape[0]}x{cube.shape[1]} of "
                        f"{cube.shape[2]}x{cube.shape[3]}")


# ----------------------------------------------------------------------------- the origin map

def poly_terms(degree: int) -> list:
    return [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]


def poly_basis(scan, degree: int, rows=None, cols=None) -> np.ndarray:
    """(n, terms) monomials u^i v^j of the scan positions (all, or the given rows and cols)."""
    rx, ry = scan
    if rows is None:
        rows, cols = (a.ravel() for a in np.mgrid[:rx, :ry])
    u = np.asarray(rows, np.float64) / max(rx - 1, 1) - 0.5
    v = np.asarray(cols, np.float64) / max(ry - 1, 1) - 0.5
    return np.stack([u**i * v**j for i, j in poly_terms(degree)], -1)


# ----------------------------------------------------------------------------- patterns

def fill_bad_pixels(patterns: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """(n, P, P) with each bad pixel set to the mean of its good 8-neighbours (0 when it has none)."""
    if not bad.any():
        return patterns
    from scipy.ndimage import convolve

    good = (~bad).astype(np.float32)
    kernel = np.ones((3, 3), np.float32)
    kernel[1, 1] = 0
    count = convolve(good, kernel, mode="constant")
    out = np.array(patterns, np.float32, copy=True)
    rr, cc = np.nonzero(bad)
    for r, c in zip(rr, cc):
        r0, r1, c0, c1 = max(r - 1, 0), min(r + 2, bad.shape[0]), max(c - 1, 0), min(c + 2, bad.shape[1])
        win = patterns[:, r0:r1, c0:c1] * good[r0:r1, c0:c1]
        out[:, r, c] = win.sum((1, 2)) / count[r, c] if count[r, c] else 0.0
    return out


def resample(patterns: np.ndarray, origins: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(n, P, P) detector patterns -> the aligned frame: pixel q (offsets from c) of the result is the
    detector at c + origin + A q (cubic splines; zeros where the detector has no pixel)."""
    from scipy.ndimage import map_coordinates

    P = patterns.shape[-1]
    c = (P - 1) / 2
    grid = a @ (np.mgrid[:P, :P].reshape(2, -1) - c) + c
    out = np.empty(patterns.shape, np.float32)
    for i, o in enumerate(origins):
        img = map_coordinates(np.asarray(patterns[i], np.float64), grid + np.asarray(o)[:, None], order=3,
                              mode="constant")
        out[i] = np.clip(img, 0, None).reshape(P, P)
    return out


def correct_patterns(patterns: np.ndarray, rows, cols, cal: Calibration, warp: bool = True) -> np.ndarray:
    """Patterns at scan positions (rows, cols): bad pixels filled, then resampled centred on the fitted
    origin and, with warp, through A^-1 (ellipse, rotation, flip undone): what a detector aligned with
    the scan would have seen. warp=False: centred only (then correct the maps: correct_matrices)."""
    out = fill_bad_pixels(patterns, cal.bad_mask)
    basis = poly_basis(cal.scan, cal.origin_degree, rows, cols)
    a = cal.detector_matrix() if warp else np.eye(2)
    return resample(out, basis @ np.asarray(cal.origin_coeffs, np.float64).T, a)


class CalibratedCube(Cube):
    """A cube whose patterns come out calibrated (correct_patterns), whatever reads them."""

    def __init__(self, cube: Cube, cal: Calibration, where: str = "calibration", warp: bool = True):
        check_cube(cal, cube, where)
        super().__init__(cube.path, cube._data, file=cube._file, attrs=cube.attrs, ground_truth=cube.ground_truth,
                         dataset_name=cube.dataset_name, format=cube.format, detector=cube.detector)
        self.cal, self.warp = cal, warp

    def uncorrected_rows(self, r0: int, r1: int) -> np.ndarray:
        """Scan rows as the file holds them (see counting_patterns)."""
        return super().read_rows(r0, r1)

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        data = super().read_rows(r0, r1)
        n, ry = data.shape[:2]
        rows, cols = (a.ravel() for a in np.mgrid[r0:r1, :ry])
        return correct_patterns(data.reshape(-1, *data.shape[2:]), rows, cols, self.cal, self.warp).reshape(data.shape)

    def read_patterns(self, index) -> np.ndarray:
        data = super().read_patterns(index)
        index = np.asarray(index, np.int64)
        return correct_patterns(data, index // self.shape[1], index % self.shape[1], self.cal, self.warp)

    def close(self) -> None:  # the cube it wraps owns the file
        self._file = None


def counting_patterns(cube, n: int = 16) -> np.ndarray:
    """The first n patterns of a cube as the detector counted them, (n, Qx, Qy): what the dose is read
    from (physics/noise.estimate_counts finds the count grid). A calibrated cube's resampled patterns
    have lost that grid (the interpolation mixes neighbouring pixels), so its uncorrected rows are read."""
    rows = min(cube.shape[0], -(-n // cube.shape[1]))
    read = getattr(cube, "uncorrected_rows", cube.read_rows)
    return read(0, rows).reshape(-1, *cube.shape[2:])[:n]


# ----------------------------------------------------------------------------- maps

def correct_matrices(m: np.ndarray, cal: Calibration | None) -> np.ndarray:
    """(..., 2, 2) pattern-frame lattice matrices (x along columns) measured on the detector -> the
    scan-aligned frame: A^-1 M A with A the detector matrix in the pattern frame."""
    if cal is None:
        return m
    a = TRANSPOSE @ cal.detector_matrix() @ TRANSPOSE  # (row, col) -> the pattern frame's (x, y) = (col, row)
    return np.linalg.inv(a) @ m @ a
