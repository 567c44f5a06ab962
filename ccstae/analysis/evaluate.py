"""Strain maps from a trained run, written to HDF5 + PNG, and their error against ground truth."""
from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np

from ccstae.model import errorbar, health, network
from ccstae.model import refine as refine_mod
from ccstae.physics import strain
from ccstae.analysis import emd
from ccstae.analysis.emd import region_bounds
from ccstae.core.data_io import open_cube
from ccstae.core.outputs import atomic_path, write_json
from ccstae.core.overview import calibration as calibration_of
from ccstae.core.errors import DataError, UserError
from ccstae.analysis.floor import cube_noise_floor
from ccstae.model.run import Run, check_pattern_size, predict_raw


def keras_predictor(encoder, batch_size: int = 256):
    return lambda x: encoder.predict(x, batch_size=batch_size, verbose=0)


def maps_from_raw(raw: np.ndarray, region=None, stat: str = "mean", rot_range: float = network.ROTATION_RANGE,
                  calibration=None) -> dict:
    """(Rx, Ry, 4) raw encoder outputs -> referenced exx, eyy, exy, theta maps.

    rot_range: the run's rotation bound (Run.rot_range; the default is the hexagonal one).
    calibration: a physics/calibration.Calibration whose ellipse, rotation and flip are undone."""
    from ccstae.physics.calibration import correct_matrices

    m = network.matrices_from_raw(raw.reshape(-1, 4), rot_range)
    m = correct_matrices(m.reshape(*raw.shape[:2], 2, 2), calibration)
    return strain.strain_maps(m, region, stat)


def truth_maps(gt: dict, region=None, stat: str = "mean") -> dict:
    """Ground truth through the very same referencing as the predictions."""
    return strain.strain_maps(strain.ground_truth_matrices(gt), region, stat)


def calibration(pred: dict, truth: dict, period: float = strain.HEXAGONAL_PERIOD) -> dict:
    """Per map, the least-squares slope of prediction against truth (1: unbiased scale; a map shrunk
    towards the reference reads < 1) and their correlation. Printed beside every MAE: an MAE alone
    cannot tell a noisy map from a biased one, and bias cannot be averaged away afterwards."""
    out = {"slope": {}, "correlation": {}}
    for k in strain.MAPS:
        t = np.asarray(truth[k], np.float64).ravel()
        p = np.asarray(pred[k], np.float64).ravel()
        if k == "theta":  # rotations agree modulo the lattice's period
            p = t + strain.wrap_angle(p - t, period)
        tc, pc = t - t.mean(), p - p.mean()
        stt, spp, spt = tc @ tc, pc @ pc, pc @ tc
        out["slope"][k] = float(spt / stt) if stt > 0 else float("nan")
        out["correlation"][k] = float(spt / np.sqrt(stt * spp)) if stt > 0 and spp > 0 else float("nan")
    return out


def calibration_text(c: dict, keys=("exx", "eyy")) -> str:
    """'slope 0.91/0.95, r 0.99/0.98' for exx/eyy."""
    slope = "/".join(f"{c['slope'][k]:.2f}" for k in keys)
    corr = "/".join(f"{c['correlation'][k]:.2f}" for k in keys)
    return f"slope {slope}, r {corr}"


def run_on_cube(run: Run, cube, predict_fn=None, progress: bool = True) -> tuple[np.ndarray, float]:
    """Raw outputs (Rx, Ry, 4) of a run's encoder (or another predictor) on a cube, and the
    patterns per second it took (preprocessing included)."""
    check_pattern_size(cube, run.pattern)
    t0 = time.time()
    raw = predict_raw(predict_fn or keras_predictor(run.encoder), cube, run.inputs, progress=progress)
    return raw, raw.shape[0] * raw.shape[1] / (time.time() - t0)


def write_strain_h5(path: Path, maps: dict, attrs: dict, overwrite: bool = False) -> None:
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: exists (pass --overwrite to replace it)")
    with atomic_path(path, overwrite=True) as tmp, h5py.File(tmp, "w") as f:
        for k in strain.MAPS:
            f.create_dataset(k, data=maps[k].astype(np.float32))
            if f"{k}_std" in maps:  # the error bar per pattern (ccstae/model/errorbar.py)
                f.create_dataset(f"{k}_std", data=maps[f"{k}_std"].astype(np.float32))
        f["theta"].attrs["units"] = "radians"
        if "theta_std" in f:
            f["theta_std"].attrs["units"] = "radians"
        f.attrs["strain_frame"] = strain.STRAIN_FRAME  # maps are in the user frame (docs/frame.md)
        for k, v in attrs.items():
            f.attrs[k] = v


def outputs_and_error_bars(run: Run, cube, region, stat, progress: bool, refine: bool):
    """The run's raw outputs on a cube (Rx, Ry, 4), its rate, and the maps' error bars (or None and
    why). --refine aligns each pattern on the host (the distillation teacher): better maps, but the
    error model is the encoder's, so they get no error bars yet."""
    raw, rate = run_on_cube(run, cube, progress=progress)
    if refine:
        return refine_mod.refine_cube(run, cube, raw), rate, None, \
            "not for --refine maps (the error model is the encoder's)"
    return (raw, rate, *errorbar.cube_std_maps(run, cube, raw, region, stat))


def check_outputs(out: Path, overwrite: bool) -> Path:
    """The maps' HDF5 path and the EMD file beside it (ccstae/analysis/emd.py): refuse existing ones
    unless overwrite, before any work. Returns the EMD path."""
    out = Path(out)
    if out.suffix.lower() == ".emd":
        raise UserError(f"{out}: --out names the HDF5 maps (e.g. strain.h5); the EMD file is written beside it")
    for path in (out, emd.emd_path(out)):
        if path.exists() and not overwrite:
            raise UserError(f"{path}: exists (pass --overwrite to replace it)")
    return emd.emd_path(out)


def write_maps_emd(out: Path, maps: dict, cal: dict, attrs: dict, region, shape) -> str:
    """The EMD file beside the HDF5 maps; returns its path, or why none was written."""
    why_not = emd.available()
    if why_not:
        return why_not
    meta = {k: v for k, v in attrs.items() if isinstance(v, (str, int, float, bool))}
    meta.update(region_bounds(region, shape), strain_frame=strain.STRAIN_FRAME, theta_units="radians",
                qr_rotation_source=cal.get("qr_rotation_source", "assumed: the detector aligned with the scan "
                                                                 "(not measured)"))
    for k in ("format", "detector"):
        if k in cal:
            meta[f"input_{k}"] = cal[k]
    return str(emd.write_strain_emd(emd.emd_path(out), maps, cal, meta))


def input_calibration(cube, calib=None, calib_path=None) -> dict:
    """The calibrations an EMD file records, from a cube (overview.calibration), plus its format and
    detector. With a calib.json applied (ccstae/physics/calibration.py), the patterns were resampled
    onto the scan frame, so the maps need no rotation: the file says so instead of "assumed"."""
    out = {**calibration_of(cube), "format": cube.format, "detector": cube.detector}
    if calib is not None:
        out["qr_rotation_source"] = (
            f"corrected with {calib_path}: rotation {calib.rotation_deg:.3f} deg, flip {calib.flip}, undone on "
            "the patterns" if calib.rotation_deg is not None else
            f"not corrected: {calib_path} could not determine the rotation ({calib.rotation_why})")
    return out


def strain_command(run: Run, cube_path: Path, out: Path, region=None, stat="mean", dataset=None,
                   overwrite=False, progress=True, refine: bool = False, scan=None, calibration=None) -> dict:
    """calibration: a calib.json path (`ccstae calibrate`): patterns read with bad pixels filled and
    resampled onto the scan-aligned frame (origin, ellipse, rotation, flip: ccstae/physics/calibration.py)."""
    from ccstae.physics.calibration import CalibratedCube, counting_patterns, load_calibration

    out = Path(out)
    check_outputs(out, overwrite)
    calib = load_calibration(calibration) if calibration is not None else None
    with open_cube(cube_path, dataset=dataset, scan=scan) as cube:
        cube = CalibratedCube(cube, calib, str(calibration)) if calib else cube
        dose = dose_check(run, counting_patterns(cube, cube.shape[1]))
        raw, rate, std, why_no_std = outputs_and_error_bars(run, cube, region, stat, progress, refine)
        cal = input_calibration(cube, calib, calibration)
    maps = maps_from_raw(raw, region, stat, run.rot_range)
    signal = health.map_signal(raw, run.rot_range)
    written = dict(maps, **{f"{k}_std": v for k, v in (std or {}).items()})
    attrs = {"model": str(run.path), "input": str(cube_path), "reference_region": region or "whole scan",
             "reference_stat": stat, "refined": bool(refine), "calibration": str(calibration or "none"),
             "patterns_per_second": rate, "signal": signal["signal"],
             "flat": signal["flat"], "input_counts": dose["input_counts"] or 0.0}
    write_strain_h5(out, written, attrs, overwrite=True)
    emd_written = write_maps_emd(out, written, cal, attrs, region, raw.shape[:2])
    rows = {"strain": maps, **({"error bar (std)": std} if std else {})}
    strain.save_maps_png(out.with_suffix(".png"), rows, title=f"{Path(cube_path).name} ({run.path.name})")
    return {"out": str(out), "png": str(out.with_suffix(".png")), "emd": emd_written, "patterns_per_second": rate,
            "signal": signal, "dose": dose, "error_bars": why_no_std or "written as *_std",
            "calibration_warning": calibration_mismatch(run, calibration)}


def calibration_mismatch(run: Run, calibration) -> str | None:
    """A run trained on calibrated patterns (`train --calibration`) has its reference in the
    scan-aligned frame: uncalibrated patterns differ from it by the session's rotation, flip and
    ellipse, and their maps are not in py4DSTEM's frame."""
    source = run.path / "input.json"
    trained = json.loads(source.read_text()).get("calibration") if source.exists() else None
    if trained and calibration is None:
        return f"{run.path} was trained on patterns calibrated with {trained}: pass --calibration to read the cube alike"
    return None


DOSE_FACTOR = 3.0  # input dose this far from the training dose (either way): say so


def dose_check(run: Run, patterns: np.ndarray) -> dict:
    """The input's electrons per pattern (measured from the data, model/noise.estimate_counts)
    against the dose the run was trained at, and a warning when they differ by more than
    DOSE_FACTOR. A model trained at 1e5 e/pattern gave maps worse than a flat map's at 1e3
    (README, issue 11), and its signal figure cannot tell noise from strain."""
    from ccstae.physics.noise import estimate_counts

    t = run.config.get("train", {})
    trained = float(run.config["noise"]["counts"]) if t.get("noise_mode", "none") != "none" else None
    measured = estimate_counts(patterns)
    out = {"input_counts": measured, "trained_counts": trained, "warning": None}
    if measured and trained and not 1 / DOSE_FACTOR <= measured / trained <= DOSE_FACTOR:
        out["warning"] = (f"the input has about {measured:,.0f} electrons per pattern, the model was trained at "
                          f"{trained:,.0f}: its maps may be noise (retrain at this dose)")
    return out


def evaluate_command(run: Run, cube_path: Path, out_dir: Path | None = None, region=None, stat="mean",
                     progress=True, refine: bool = False) -> dict:
    cube_path = Path(cube_path)
    with open_cube(cube_path) as cube:
        if cube.ground_truth is None:
            raise DataError(f"{cube_path}: no ground truth in this cube: MAE needs /ground_truth")
        gt = cube.ground_truth
        raw, rate, std, why_no_std = outputs_and_error_bars(run, cube, region, stat, progress, refine)
    pred, truth = maps_from_raw(raw, region, stat, run.rot_range), truth_maps(gt, region, stat)
    result = {"model": str(run.path), "input": str(cube_path), "reference_region": region or "whole scan",
              "refined": bool(refine),
              "mae": strain.mae(pred, truth, 2 * run.rot_range),
              "calibration": calibration(pred, truth, 2 * run.rot_range), "flat_map_mae": strain.flat_map_mae(truth, 2 * run.rot_range),
              # the shot-noise floor of a simulated cube (None for others): skill lies between it and a flat map
              "noise_floor": cube_noise_floor(cube_path),
              "signal": health.map_signal(raw, run.rot_range), "units": {"exx": "strain", "eyy": "strain", "exy": "strain",
                                                        "theta": "degrees"},
              "patterns_per_second": rate,
              # RMS of error / error bar per map: 1 when the error bars are honest (ccstae/model/errorbar.py)
              "error_bar_calibration": (errorbar.error_bar_calibration(pred, truth, std, 2 * run.rot_range)
                                        if std else why_no_std)}
    out_dir = Path(out_dir) if out_dir else run.path / "evaluate"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = cube_path.stem
    write_json(out_dir / f"{stem}.json", result)
    strain.save_maps_png(out_dir / f"{stem}.png", {"prediction": pred, "truth": truth,
                                                   "abs error": strain.errors(pred, truth, 2 * run.rot_range)},
                         title=f"{cube_path.name}: MAE exx {result['mae']['exx']:.4f} eyy {result['mae']['eyy']:.4f}"
                               f" exy {result['mae']['exy']:.4f} theta {result['mae']['theta']:.2f} deg")
    result["json"], result["png"] = str(out_dir / f"{stem}.json"), str(out_dir / f"{stem}.png")
    return result
