"""From encoder outputs to strain maps, and their error against ground truth.

The encoder gives M per probe position with (pattern lattice) = M (reference lattice).
The simulator's lattice obeys g' = R(theta) (I + eps)^-T g, so the same decomposition
applies to both: referenced to a region of the scan, M_rel = M M_region^-1 (M_region the
mean matrix over the region), then the polar decomposition M_rel = R U with U
symmetric gives eps = U^-1 - I and theta = angle(R). Ground truth goes through the very
same referencing, so the learned reference's own strain and rotation cancel. That holds
exactly for the mean, which is linear; an element-wise median is robust to outliers
(grain boundaries) but not equivariant, so it leaves a bias of the order of the strain
spread in the region: `stat="median"` is offered, the mean is the default.

Rotation is only defined modulo the lattice's rotational period (60 degrees hexagonal, 90
square, 180 rectangular): errors are wrapped by it.

Frames (docs/frame.md). The matrices live in the PATTERN frame of the simulator and the
encoder (ccstae/physics/simulate.py): x along pattern columns (numpy axis 3), y along rows
(axis 2). Every map a user sees is in the USER frame, py4DSTEM's: exx is the normal strain along
Qx = pattern axis 2 (and scan axis 0, Rx), eyy along Qy = axis 3 (scan axis 1), theta positive in
py4DSTEM's sense (its get_strain: (beta_01 - beta_10) / 2). The two frames differ by the swap of
x and y, a reflection: exx and eyy swap, exy stays, and the rotation, which a reflection reverses,
is positive from Qy towards Qx in both (py4DSTEM counts it clockwise in its (qx, qy)), so theta
stays. That relabelling happens here and only here: polar_strain (and strain_maps through it)
returns user-frame maps, ground_truth_matrices reads user-frame maps; ground truth is stored in
cubes in the user frame (attribute strain_frame = STRAIN_FRAME).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ccstae.core.outputs import save_figure
from ccstae.core.errors import UserError

MAPS = ("exx", "eyy", "exy", "theta")
STRAIN_FRAME = "py4DSTEM: x along Rx (axis 0) and Qx (axis 2)"
FRAMES = ("user", "pattern")


def swap_frame(maps: dict) -> dict:
    """Maps in one frame -> the other (user <-> pattern; the swap is its own inverse): a copy with
    exx and eyy exchanged; exy, theta (in py4DSTEM's sense) and any other key unchanged. Also
    relabels per-map figures (MAE, noise floors) computed in the pattern frame."""
    out = dict(maps)
    if "exx" in maps or "eyy" in maps:
        out["exx"], out["eyy"] = maps["eyy"], maps["exx"]
    return out


def _check_frame(frame: str) -> None:
    if frame not in FRAMES:
        raise ValueError(f"frame {frame!r} is not one of {FRAMES}")


def parse_region(text: str | None, scan_shape) -> tuple[slice, slice]:
    """'r0:r1,c0:c1' -> slices; None -> the whole scan."""
    if text is None:
        return slice(0, scan_shape[0]), slice(0, scan_shape[1])
    try:
        rows, cols = text.split(",")
        region = tuple(slice(*[int(v) for v in part.split(":")]) for part in (rows, cols))
    except ValueError:
        raise UserError(f"reference region '{text}' is not of the form r0:r1,c0:c1") from None
    for sl, n in zip(region, scan_shape):
        if not 0 <= sl.start < sl.stop <= n:
            raise UserError(f"reference region '{text}' lies outside the scan {scan_shape[0]}x{scan_shape[1]}")
    return region


def polar_strain(m: np.ndarray, frame: str = "user") -> dict:
    """(..., 2, 2) pattern-frame matrices M = R U -> exx, eyy, exy (of eps = U^-1 - I) and theta
    (radians), in the user frame (py4DSTEM's, see the module docstring) or, with
    frame="pattern", in the pattern frame the simulator renders from (ccstae/physics/sample.py)."""
    _check_frame(frame)
    u_, s, vt = np.linalg.svd(m)
    rot = u_ @ vt  # the orthogonal polar factor
    u = np.swapaxes(vt, -1, -2) @ (s[..., None] * vt)  # U = V S V^T
    eps = np.linalg.inv(u) - np.eye(2)
    maps = {"exx": eps[..., 0, 0], "eyy": eps[..., 1, 1], "exy": 0.5 * (eps[..., 0, 1] + eps[..., 1, 0]),
            "theta": np.arctan2(rot[..., 1, 0], rot[..., 0, 0])}
    return swap_frame(maps) if frame == "user" else maps


def strain_maps(matrices: np.ndarray, region=None, stat: str = "mean") -> dict:
    """(Rx, Ry, 2, 2) pattern-frame matrices -> user-frame maps referenced to the mean (or median)
    matrix of `region`."""
    rs, cs = parse_region(region, matrices.shape[:2]) if not isinstance(region, tuple) else region
    if stat not in ("mean", "median"):
        raise UserError(f"reference statistic '{stat}' is not 'mean' or 'median'")
    m_ref = getattr(np, stat)(matrices[rs, cs].reshape(-1, 2, 2), axis=0)
    return polar_strain(matrices @ np.linalg.inv(m_ref))


def ground_truth_matrices(gt: dict, frame: str = "user") -> np.ndarray:
    """M = R(theta) (I + eps)^-T, in the pattern frame, from ground-truth maps -> (Rx, Ry, 2, 2).

    gt: maps in the user frame, as cubes store them (frame="pattern": as the simulator renders)."""
    _check_frame(frame)
    gt = swap_frame(gt) if frame == "user" else gt
    eps = np.stack([np.stack([gt["exx"], gt["exy"]], -1), np.stack([gt["exy"], gt["eyy"]], -1)], -2)
    c, s = np.cos(gt["theta"]), np.sin(gt["theta"])
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    return rot @ np.swapaxes(np.linalg.inv(np.eye(2) + eps), -1, -2)


HEXAGONAL_PERIOD = np.pi / 3


def wrap_angle(angle: np.ndarray, period: float = HEXAGONAL_PERIOD) -> np.ndarray:
    """Wrap angles (radians) to [-period/2, period/2): a lattice repeats every period."""
    return (angle + period / 2) % period - period / 2


def wrap_hexagonal(angle: np.ndarray) -> np.ndarray:
    """Wrap angles (radians) to [-30, 30) degrees: a hexagonal lattice repeats every 60."""
    return wrap_angle(angle, HEXAGONAL_PERIOD)


def errors(pred: dict, truth: dict, period: float = HEXAGONAL_PERIOD) -> dict:
    """Absolute error maps; theta's in degrees, wrapped modulo the lattice's rotational period."""
    out = {k: np.abs(pred[k] - truth[k]) for k in ("exx", "eyy", "exy")}
    out["theta"] = np.degrees(np.abs(wrap_angle(pred["theta"] - truth["theta"], period)))
    return out


def mae(pred: dict, truth: dict, period: float = HEXAGONAL_PERIOD) -> dict:
    """Mean absolute error per map (strain as a fraction, theta in degrees)."""
    return {k: float(np.mean(v)) for k, v in errors(pred, truth, period).items()}


def flat_map_mae(truth: dict, period: float = HEXAGONAL_PERIOD) -> dict:
    """The MAE of a flat map (the reference lattice everywhere): what a model that learned
    nothing scores, printed beside every MAE so that skill is visible."""
    return mae({k: np.zeros_like(v) for k, v in truth.items()}, truth, period)


def save_maps_png(path: Path, rows: dict, title: str = "") -> None:
    """A grid of maps: one row per entry of `rows` ({label: maps}), one column per map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(13, 3.1 * len(rows)), squeeze=False)
    limits = {}
    for r, (label, maps) in enumerate(rows.items()):
        for c, key in enumerate(MAPS):
            img = np.degrees(maps[key]) if key == "theta" and "error" not in label else maps[key]
            if key not in limits or "error" in label:
                lo, hi = np.percentile(img, [1, 99])
                limits[key] = (lo, hi) if hi > lo else (lo - 1e-6, hi + 1e-6)
            im = axes[r, c].imshow(img, cmap="magma" if "error" in label else "RdBu_r",
                                   vmin=limits[key][0], vmax=limits[key][1])
            unit = " (deg)" if key == "theta" else ""
            axes[r, c].set_title(f"{label}: {key}{unit}", fontsize=9)
            axes[r, c].axis("off")
            fig.colorbar(im, ax=axes[r, c], fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


