"""Strain MAE of the QKeras encoder fed by the integer front end, on a simulated session with a descan.

    PYTHONPATH=. .venv/bin/python bench/bench_frontend_calibration.py [--q-run runs/default/q8-s50] [--seed 1234]

A session of the kinematic default (the run's own [simulate] config) with the issue's descan (20 px
peak-to-peak) and 0.1 % bad pixels, and the same specimen undistorted. The encoder is the run's, trained
on undistorted data. Rows: the undistorted scan; the session through the front end without a correction;
with the front end's calibration (bad pixels to 0, the window moved by the integer origin from
`ccstae calibrate`); with the TRUE origin rounded (what whole-pixel shifts can reach at best); and the
host's sub-pixel correction (CalibratedCube, warp=False: bad pixels filled, cubic resampling) for scale.
The front end's outputs are preprocess_counts + QKeras, bit for bit the C-simulations'
(tests/test_frontend_calibration.py).
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import h5py
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--q-run", type=Path, default=Path("runs/default/q8-s50"))
    ap.add_argument("--seed", type=int, default=1234, help="the specimen's seed (not one anything was tuned on)")
    ap.add_argument("--noise-w", type=float, default=0.0)
    ap.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = ap.parse_args()

    from ccstae.analysis.evaluate import maps_from_raw, truth_maps
    from ccstae.core.data_io import open_cube
    from ccstae.firmware import frontend as fe
    from ccstae.firmware import frontend_session as fs
    from ccstae.model.preprocess import to_counts
    from ccstae.model.run import load_run
    from ccstae.physics import calibrate, scans, strain
    from ccstae.physics.calibration import CalibratedCube
    from ccstae.quant import qmodel

    run = load_run(args.q_run, load_encoder=qmodel.load_qencoder)
    params = run.preprocess_params()
    cfg = copy.deepcopy(run.config)
    cfg["simulate"]["seed"] = args.seed
    scan = tuple(cfg["simulate"]["scan"])
    dose = cfg["noise"]["counts"]
    tmp = Path(tempfile.mkdtemp(prefix="fe_calib_"))

    def cube(name, **distortion):
        c = copy.deepcopy(cfg)
        c["distortion"] = dict(distortion)
        return scans.simulate_scan(c, tmp / f"{name}.h5", noise_w=args.noise_w, progress=False)

    clean_path = cube("undistorted")
    session = dict(descan_px=20.0, bad_pixel_fraction=0.001)
    dist_path = cube("session", **session)
    with open_cube(dist_path) as c:
        cal = calibrate.calibrate_cube(c)
    with h5py.File(dist_path) as f:
        true_origin = f["distortion/origin"][()].reshape(-1, 2)

    def counts_of(path, calibrated=False):
        with open_cube(path) as c:
            c = CalibratedCube(c, cal, warp=False) if calibrated else c
            return to_counts(c.read_patterns(np.arange(len(c))), params.counts_per_unit, params.count_bits)

    def mae(p, counts, shifts=None):
        raw = fe.reference(run.encoder, p, counts, shifts).reshape(*scan, 4)
        with open_cube(clean_path) as c:
            truth = truth_maps(c.ground_truth)
        return strain.mae(maps_from_raw(raw, rot_range=run.rot_range), truth, 2 * run.rot_range)

    calibrated = fs.session_params(params, cal)
    dist_counts = counts_of(dist_path)
    clean_counts = counts_of(clean_path)
    # What the detector's edge takes: the undistorted counts with the pixels zeroed that the shifted
    # detector never saw (aligned pixel q lands at q + shift on the detector).
    shifts = fs.origin_shifts(cal, params.binning)
    P = params.pattern
    q = np.arange(P)[None, :] * params.binning if params.binning == 1 else None
    if q is None:
        raise SystemExit("the edge-loss row assumes binning 1 (the default run)")
    rows_in = (q + shifts[:, :1] >= 0) & (q + shifts[:, :1] < P)
    cols_in = (q + shifts[:, 1:] >= 0) & (q + shifts[:, 1:] < P)
    edge_lost = clean_counts * (rows_in[:, :, None] & cols_in[:, None, :])
    rows = {
        "undistorted": mae(params, clean_counts),
        "undistorted, minus what the shifted detector's edge misses": mae(params, edge_lost),
        "descan, front end without correction": mae(params, dist_counts),
        "descan, front end with calib.json (integer origin, bad pixels 0)":
            mae(calibrated, dist_counts, fs.origin_shifts(cal, params.binning)),
        "descan, front end with the TRUE origin rounded":
            mae(calibrated, dist_counts, np.rint(true_origin / params.binning).astype(np.int64)),
        "descan, host sub-pixel resampling (CalibratedCube, warp=False)": mae(params, counts_of(dist_path, True)),
    }
    print(f"session seed {args.seed}, w = {args.noise_w}, {scan[0]}x{scan[1]}, descan peak-to-peak "
          f"{np.ptp(true_origin, axis=0).round(2).tolist()} px; shifts {shifts.min(0).tolist()}..{shifts.max(0).tolist()} "
          f"binned px; calib origin rms error {np.sqrt(np.mean(np.sum((cal.origin_map().reshape(-1, 2) - true_origin) ** 2, -1))):.3f} px; "
          f"{len(cal.dead)} dead + {len(cal.hot)} hot pixels")
    print("| scan | exx | eyy | exy | theta (deg) |\n| --- | ---: | ---: | ---: | ---: |")
    for name, m in rows.items():
        print(f"| {name} | {m['exx']:.4f} | {m['eyy']:.4f} | {m['exy']:.4f} | {m['theta']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"seed": args.seed, "noise_w": args.noise_w, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
