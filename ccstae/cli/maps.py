"""`ccstae train`, `strain`, `evaluate` and `baseline`: strain maps from the model or py4DSTEM, and
their score (model, analysis)."""
from __future__ import annotations

import sys
from pathlib import Path

from ccstae.cli.data import add_scan_option


# ---------------------------------------------------------------------------------------
# train


def add_train_parser(subparsers):
    p = subparsers.add_parser("train", help="train the CC-ST-AE self-supervised, with noise injection",
                              description="Self-supervised training (no labels) on a simulated preset or on any "
                                          "cube the readers take. Checkpoints each epoch; --resume continues.")
    p.add_argument("--config", default="default", help="preset name or TOML file (default: default)")
    p.add_argument("--input", type=Path, metavar="CUBE",
                   help="training cube (HDF5, EMD, .npy, camera files); its noise injection is chosen from its "
                        "measured dose and background ([train] noise_mode = \"auto\") unless the config sets "
                        "noise_mode; default: simulate the config's clean training sample into OUT/train_data.h5")
    p.add_argument("--dataset", help="path of the 4D dataset inside an HDF5 input")
    add_scan_option(p)
    p.add_argument("--calibration", type=Path, metavar="CALIB.json",
                   help="a session's calibration (`ccstae calibrate`): train on the patterns as `strain "
                        "--calibration` reads them (bad pixels filled, origin, ellipse, rotation and flip undone)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run directory, e.g. runs/NAME")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--allow-flat", action="store_true",
                   help="keep a run whose encoder learned no signal (flat maps) and exit 0 (default: exit 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train)


def run_train(args) -> int:
    from ccstae.core.config import load_config, stated
    from ccstae.core.errors import UserError
    from ccstae.model.network import describe
    from ccstae.model.run import load_run
    from ccstae.physics import scans
    from ccstae.model import train

    cfg = load_config(args.config)
    cube = args.input
    if cube is None and (args.calibration or args.scan):
        raise UserError("--calibration and --scan need --input: the simulated training sample has neither")
    if cube is not None and not stated(args.config, "train", "noise_mode"):
        # A user's cube: the injection is chosen from its measured dose and background (issue 25;
        # ccstae/model/measure.choose_noise), unless the config says otherwise. The summary line
        # printed before training says what was chosen and why.
        cfg["train"]["noise_mode"] = "auto"
    if cube is None:
        cube = args.out / "train_data.h5"
        if not cube.exists():
            args.out.mkdir(parents=True, exist_ok=True)
            scans.simulate_training_sample(cfg, cube, progress=not args.no_progress)
    result = train.train(cfg, cube, args.out, resume=args.resume, progress=not args.no_progress,
                         dataset=args.dataset, report=print, calibration=args.calibration, scan=args.scan)
    run = load_run(args.out)
    print(describe(run.encoder))
    print(f"trained {args.out}: {len(result['history'])} epochs, best validation loss {result['best_val_loss']:.4g}")
    health = result["health"]
    print(f"health: {health['verdict']}")
    if health["flat"] and not args.allow_flat:
        print(f"ccstae train: error: {args.out}: the encoder collapsed to flat maps (see {args.out}/health.json); "
              "pass --allow-flat to keep such a run", file=sys.stderr)
        return 3
    return 0



# ---------------------------------------------------------------------------------------
# strain / evaluate


def add_region_options(p):
    p.add_argument("--region", metavar="R0:R1,C0:C1",
                   help="reference region of the scan (strain is relative to it; default: the whole scan)")
    p.add_argument("--stat", choices=("mean", "median"), default="mean",
                   help="how the region's matrices are combined (mean: exactly consistent; default)")


def add_maps_options(p):
    """The options of every command that turns a cube into strain maps (strain, baseline)."""
    p.add_argument("--input", type=Path, required=True, metavar="CUBE")
    p.add_argument("--dataset", help="path of the 4D dataset inside an HDF5 input")
    add_scan_option(p)
    p.add_argument("--out", type=Path, required=True, metavar="STRAIN.h5")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--calibration", type=Path, metavar="CALIB.json",
                   help="a session's calibration (`ccstae calibrate`): bad pixels filled, patterns resampled onto the "
                        "scan-aligned frame (origin, ellipse, scan-detector rotation and flip undone)")
    add_region_options(p)


def wrote(res: dict) -> str:
    """'wrote MAPS.h5, MAPS.emd and MAPS.png', or why the EMD file is missing (no py4DSTEM)."""
    if res["emd"].startswith("no EMD"):
        return f"wrote {res['out']} and {res['png']}; {res['emd']}"
    return f"wrote {res['out']}, {res['emd']} (EMD 1.0 for py4DSTEM.read) and {res['png']}"


def add_strain_parser(subparsers):
    p = subparsers.add_parser("strain", help="strain, shear and rotation maps of a cube",
                              description="Run a trained encoder over a cube (streamed), reference the affine "
                                          "matrices to a region, write exx/eyy/exy/theta to HDF5, to an EMD 1.0 file "
                                          "py4DSTEM opens (STRAIN.emd, with the calibrations and the reference "
                                          "region) and to PNG.")
    p.add_argument("--model", type=Path, required=True, metavar="RUN_DIR")
    add_maps_options(p)
    add_refine_option(p)
    p.set_defaults(handler=run_strain)


def add_refine_option(p):
    p.add_argument("--refine", action="store_true",
                   help="refine each pattern on the host by Gauss-Newton against the learned reference "
                        "(better maps; needs the patterns, so not what the firmware alone gives)")


def run_strain(args) -> int:
    from ccstae.analysis.evaluate import strain_command
    from ccstae.model.run import load_run

    res = strain_command(load_run(args.model), args.input, args.out, args.region, args.stat, args.dataset,
                         args.overwrite, progress=not args.no_progress, refine=args.refine, scan=args.scan,
                         calibration=args.calibration)
    print(f"{wrote(res)} ({res['patterns_per_second']:.0f} patterns/s)")
    sig = res["signal"]
    print(f"signal: strain spread across the scan {sig['signal']:.3g}" + ("  FLAT: the maps carry no strain signal"
                                                                         if sig["flat"] else ""))
    print(f"error bars: {res['error_bars']}")
    if res["dose"]["warning"]:
        print(f"WARNING: {res['dose']['warning']}", file=sys.stderr)
    if res.get("calibration_warning"):
        print(f"WARNING: {res['calibration_warning']}", file=sys.stderr)
    return 0


def add_evaluate_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="MAE of the strain maps against a cube's ground truth",
                              description="Strain maps of a cube with ground truth, referenced like the truth, "
                                          "mean absolute error per map as JSON and a side-by-side PNG.")
    p.add_argument("--model", type=Path, required=True, metavar="RUN_DIR")
    p.add_argument("--input", type=Path, required=True, metavar="CUBE_WITH_GROUND_TRUTH")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RUN_DIR/evaluate)")
    p.add_argument("--no-progress", action="store_true")
    add_region_options(p)
    add_refine_option(p)
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args) -> int:
    from ccstae.analysis.evaluate import calibration_text, evaluate_command
    from ccstae.model.run import load_run

    res = evaluate_command(load_run(args.model), args.input, args.out, args.region, args.stat,
                           progress=not args.no_progress, refine=args.refine)
    m = res["mae"]
    print(f"MAE exx {m['exx']:.5f}  eyy {m['eyy']:.5f}  exy {m['exy']:.5f}  theta {m['theta']:.3f} deg"
          f"  ({res['patterns_per_second']:.0f} patterns/s)")
    print(f"    against the truth (exx/eyy): {calibration_text(res['calibration'])}; strain spread across the scan "
          f"{res['signal']['signal']:.3g}" + ("  FLAT" if res["signal"]["flat"] else ""))
    eb = res["error_bar_calibration"]
    print("    error bars, RMS of error/std (1: honest): " + (" ".join(f"{k} {eb[k]:.2f}" for k in ("exx", "eyy", "exy", "theta"))
                                                            if isinstance(eb, dict) else eb))
    f = res["flat_map_mae"]
    print(f"    a flat map (no skill): exx {f['exx']:.5f}  eyy {f['eyy']:.5f}  exy {f['exy']:.5f}  theta {f['theta']:.3f} deg")
    if res.get("noise_floor"):
        f = res["noise_floor"]
        print(f"    shot-noise floor:      exx {f['exx']:.5f}  eyy {f['eyy']:.5f}  exy {f['exy']:.5f}"
              f"  ({f['bragg_counts']:,.0f} e per pattern in the Bragg disks; Cramer-Rao)")
        f = f["centroid"]
        print(f"    disk centroids:        exx {f['exx']:.5f}  eyy {f['eyy']:.5f}  exy {f['exy']:.5f}"
              "  (the same electrons, measured as disk positions)")
    print(f"wrote {res['json']} and {res['png']}")
    return 0



# ---------------------------------------------------------------------------------------
# baseline (py4DSTEM, no training)


def add_baseline_parser(subparsers):
    p = subparsers.add_parser("baseline", help="classical strain maps of any cube (py4DSTEM, extra .[baseline])",
                              description="py4DSTEM Bragg-disk detection and lattice fitting on any cube; the disk "
                                          "radius, origin, lattice and thresholds are measured from the data. "
                                          "Writes exx/eyy/exy/theta like `ccstae strain`, and the fraction of "
                                          "positions it could not fit.")
    add_maps_options(p)
    p.set_defaults(handler=run_baseline)


def run_baseline(args) -> int:
    from ccstae.analysis.baseline import baseline_command

    res = baseline_command(args.input, args.out, args.region, args.stat, args.dataset, args.overwrite,
                           progress=not args.no_progress, scan=args.scan, calibration=args.calibration)
    g = res["geometry"]
    print(f"disk radius {g['disk_radius_px']:.2f} px, g1 {g['g1_px']} px, g2 {g['g2_px']} px (qx, qy); "
          f"not fitted: {100 * res['failed_fraction']:.1f} % of positions (zero strain there)")
    print(wrote(res))
    return 0

