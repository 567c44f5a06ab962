"""Strain maps as an EMD 1.0 file that py4DSTEM opens (`py4DSTEM.read`), beside our HDF5 maps.

    write_strain_emd(path, maps, calibration, metadata)
    rs = py4DSTEM.read(path)          # a RealSlice called 'strain_map'
    rs.get_slice("exx").data          # (Rx, Ry), exx along Rx: the same frame as our maps

What goes in (written by py4DSTEM 0.14's own classes, so its reader rebuilds them):

- a RealSlice stack 'strain_map' with slices exx, eyy, exy, theta (radians) and, where the run
  gives them, their error bars exx_std ... theta_std; axes (Rx, Ry) as in our HDF5;
- the root's Calibration: R_pixel_size (scan step, A, or 1 pixel when the input records none),
  Q_pixel_size (reciprocal pixel, 1/A, or 1 pixel), QR_rotation_degrees and QR_flip;
- Metadata 'ccstae': the reference region and statistic, the frame, the input and model, and
  where the rotation came from (our maps assume the detector aligned with the scan unless a
  calibration says otherwise).

py4DSTEM is the optional extra `.[baseline]`: without it no EMD file is written, and the
commands say so (`available`).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from ccstae.core.outputs import atomic_path
from ccstae.physics import strain

NAME = "strain_map"


def emd_path(out) -> Path:
    """Where the EMD file of the maps written to `out` goes: beside it, suffix .emd."""
    return Path(out).with_suffix(".emd")


def available() -> str | None:
    """None when py4DSTEM imports, else why no EMD file can be written."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import py4DSTEM  # noqa: F401
    except ImportError as e:
        return f"no EMD file: py4DSTEM is not installed (pip install -e '.[baseline]'; {e})"
    return None


def region_bounds(region, shape) -> dict:
    """The reference region as explicit [start, stop) rows and columns of the scan."""
    rs, cs = strain.parse_region(region, shape) if not isinstance(region, tuple) else region
    rows, cols = range(shape[0])[rs], range(shape[1])[cs]
    return {"reference_rows": [rows.start, rows.stop], "reference_cols": [cols.start, cols.stop]}


def write_strain_emd(path, maps: dict, calibration: dict, metadata: dict) -> Path:
    """Write the maps (exx, eyy, exy, theta [, *_std], each (Rx, Ry)) to an EMD 1.0 file, atomically.

    calibration: scan_step_A, k_px_inv_A, qr_rotation_deg, qr_flip (any may be missing: pixels,
    0 degrees, no flip). metadata: plain values stored in the Metadata 'ccstae'."""
    import emdfile
    import py4DSTEM

    labels = [k for k in strain.MAPS] + [f"{k}_std" for k in strain.MAPS if f"{k}_std" in maps]
    stack = np.stack([np.asarray(maps[k], np.float32) for k in labels])
    cal = py4DSTEM.Calibration()
    step, k_px = calibration.get("scan_step_A"), calibration.get("k_px_inv_A")
    cal.set_R_pixel_size(float(step) if step else 1.0)
    cal.set_R_pixel_units("A" if step else "pixels")
    cal.set_Q_pixel_size(float(k_px) if k_px else 1.0)
    cal.set_Q_pixel_units("A^-1" if k_px else "pixels")
    cal.set_QR_rotation_degrees(float(calibration.get("qr_rotation_deg", 0.0)))
    cal.set_QR_flip(bool(calibration.get("qr_flip", False)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rs = py4DSTEM.RealSlice(data=stack, name=NAME, slicelabels=labels, calibration=cal)
        for axis, name in enumerate(("Rx", "Ry")):
            rs.set_dim(axis, [0.0, float(step) if step else 1.0], units="A" if step else "pixels", name=name)
        md = emdfile.Metadata(name="ccstae")
        for k, v in metadata.items():
            md[k] = v
        rs.metadata = md
        with atomic_path(path, overwrite=True) as tmp, contextlib.redirect_stdout(io.StringIO()):
            py4DSTEM.save(str(tmp), rs, mode="o")
    return Path(path)
