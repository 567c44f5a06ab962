"""`ccstae`: the command line, a thin face over model/, quant/ and firmware/.

Each subcommand is two functions: `add_<name>_parser(subparsers)` declares its options and
sets `handler=run_<name>`; `run_<name>(args) -> int` does the work. To add a command,
write both and append the parser function to COMMANDS at the bottom. Import heavy modules
(tensorflow, hls4ml) inside the handler so `ccstae --help` stays fast.

Errors: a UserError (bad option, config, file) or an OSError on an input becomes one line
`ccstae <cmd>: error: <message>` on stderr and exit code 2. Anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors in the same one-line form as every other error."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


# ---------------------------------------------------------------------------------------
# simulate


def add_simulate_parser(subparsers):
    p = subparsers.add_parser("simulate", help="simulate a strained polycrystal 4D-STEM scan into HDF5",
                              description="4D-STEM of a strained polycrystal (kinematic disks, or abTEM multislice "
                                          "from atoms), streamed "
                                          "row by row into an HDF5 cube with its ground-truth maps.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="default", help="config preset: tiny, default, paper (default: default)")
    src.add_argument("--config", type=Path, help="a TOML config file (merged over the default preset)")
    p.add_argument("--noise", type=float, default=0.0, metavar="W",
                   help="background-noise level w in [0, 1) (default 0: shot noise only)")
    dose = p.add_mutually_exclusive_group()
    dose.add_argument("--counts", type=float, default=None, metavar="C",
                      help="electrons per pattern (default: the config's noise.counts)")
    dose.add_argument("--dose", type=float, default=None, metavar="E_PER_A2",
                      help="dose in e/A^2 instead of --counts: counts = dose x simulate.scan_step_A^2")
    p.add_argument("--seed", type=int, default=None, help="sample and noise seed (default: simulate.seed)")
    p.add_argument("--engine", choices=["kinematic", "multislice"], default=None,
                   help="physics engine (default: simulate.engine); the same sample either way for presets "
                        "with strain_field = \"displacement\" (ms-*); multislice needs the extra [multislice]")
    p.add_argument("--clean", action="store_true", help="write noise-free patterns (sum 1) for training")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.h5", help="output HDF5 file")
    p.set_defaults(handler=run_simulate)


def run_simulate(args) -> int:
    from ccstae.core.config import load_config
    from ccstae.core.errors import UserError
    from ccstae.physics.simulate import simulate_scan

    if args.clean and args.noise != 0:
        raise UserError("--clean writes noise-free patterns: drop --noise")
    cfg = load_config(args.config if args.config is not None else args.preset)
    if args.engine is not None:
        cfg["simulate"]["engine"] = args.engine
    if args.dose is not None:
        from ccstae.physics.noise import counts_from_dose
        args.counts = counts_from_dose(args.dose, cfg["simulate"]["scan_step_A"])
    out = simulate_scan(cfg, args.out, noise_w=args.noise, counts=args.counts, seed=args.seed,
                        clean=args.clean, overwrite=args.overwrite, progress=not args.no_progress)
    sim = cfg["simulate"]
    counts = args.counts or cfg["noise"]["counts"]
    what = "clean" if args.clean else (f"w={args.noise:g}, counts={counts:g} e/pattern = "
                                       f"{counts / sim['scan_step_A'] ** 2:g} e/A^2 at a {sim['scan_step_A']:g} A step")
    print(f"wrote {out}: {sim['scan'][0]}x{sim['scan'][1]} scan of {sim['pattern']}x{sim['pattern']} "
          f"patterns ({cfg['name']}, {what})")
    return 0


# ---------------------------------------------------------------------------------------
# inspect


def add_inspect_parser(subparsers):
    p = subparsers.add_parser("inspect", help="describe a 4D-STEM file and render an overview PNG",
                              description="Print the format, detector, shape, dtype, calibration, attributes "
                                          "and ground truth of a cube (our HDF5, py4DSTEM/EMD, any HDF5 with a 4D "
                                          "dataset, .npy, and the cameras' files: Merlin .mib, NanoMegas .blo, "
                                          "Gatan .dm4, EMPAD .xml/.raw, Dectris ARINA/EIGER and fpd HDF5) and "
                                          "render patterns, virtual BF/ADF and ground-truth maps to a PNG.")
    p.add_argument("file", type=Path, help="the data file")
    p.add_argument("--dataset", help="path of the 4D dataset inside an HDF5 file (default: found)")
    add_scan_option(p)
    p.add_argument("--png", type=Path, help="overview image (default: FILE.inspect.png next to the file)")
    p.add_argument("--no-png", action="store_true", help="print only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_inspect)


def run_inspect(args) -> int:
    from ccstae.core import data_io, overview

    with data_io.open_cube(args.file, args.dataset, args.scan) as cube:
        print(overview.summary(cube))
        if not args.no_png:
            png = args.png if args.png is not None else Path(f"{args.file}.inspect.png")
            overview.save_overview_png(cube, png, progress=not args.no_progress)
            print(f"wrote {png}")
    return 0


# ---------------------------------------------------------------------------------------
# train


def add_train_parser(subparsers):
    p = subparsers.add_parser("train", help="train the CC-ST-AE self-supervised, with noise injection",
                              description="Self-supervised training (no labels) on a simulated preset or on any "
                                          "cube the readers take. Checkpoints each epoch; --resume continues.")
    p.add_argument("--config", default="default", help="preset name or TOML file (default: default)")
    p.add_argument("--input", type=Path, metavar="CUBE",
                   help="training cube (HDF5, EMD, .npy); default: simulate the config's clean training "
                        "sample into OUT/train_data.h5")
    p.add_argument("--dataset", help="path of the 4D dataset inside an HDF5 input")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run directory, e.g. runs/NAME")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--allow-flat", action="store_true",
                   help="keep a run whose encoder learned no signal (flat maps) and exit 0 (default: exit 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train)


def run_train(args) -> int:
    from ccstae.core.config import load_config
    from ccstae.model.network import describe
    from ccstae.model.run import load_run
    from ccstae.physics import simulate
    from ccstae.model import train

    cfg = load_config(args.config)
    cube = args.input
    if cube is None:
        cube = args.out / "train_data.h5"
        if not cube.exists():
            args.out.mkdir(parents=True, exist_ok=True)
            simulate.simulate_training_sample(cfg, cube, progress=not args.no_progress)
    result = train.train(cfg, cube, args.out, resume=args.resume, progress=not args.no_progress,
                         dataset=args.dataset, report=print)
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


def scan_shape(text: str) -> tuple[int, int]:
    """'RX,RY' -> (Rx, Ry), for argparse."""
    try:
        rx, ry = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not RX,RY (two positive integers)") from None
    if rx < 1 or ry < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not RX,RY (two positive integers)")
    return rx, ry


def add_scan_option(p):
    p.add_argument("--scan", type=scan_shape, metavar="RX,RY",
                   help="scan shape, for camera files that do not record it (.mib without .hdr, ARINA)")


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


# ---------------------------------------------------------------------------------------
# calibrate (a session's distortions, from the data)


def add_calibrate_parser(subparsers):
    p = subparsers.add_parser("calibrate", help="a session's origin, ellipse, rotation/flip and bad pixels, from the data",
                              description="Measure from the cube alone (no labels): bad pixels from scan statistics, "
                                          "the origin per position as a smooth map, the ellipse from the mean centred "
                                          "pattern's first ring, and the scan-detector rotation and flip from the "
                                          "DPC deflection (or say it cannot be determined). Writes calib.json for "
                                          "`ccstae strain/baseline --calibration` (docs/calibration.md).")
    p.add_argument("--input", type=Path, required=True, metavar="CUBE")
    p.add_argument("--dataset", help="path of the 4D dataset inside an HDF5 input")
    p.add_argument("--out", type=Path, required=True, metavar="CALIB.json")
    p.add_argument("--degree", type=int, default=3, help="polynomial degree of the origin map (default 3)")
    p.add_argument("--rotation-deg", type=float, default=None, metavar="DEG",
                   help="a known scan-detector rotation (degrees from Qx towards Qy) instead of the measured one")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="with --rotation-deg: the detector is (not) transposed relative to the scan")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_calibrate)


def run_calibrate(args) -> int:
    from ccstae.core.errors import UserError
    from ccstae.physics.calibrate import calibrate_command

    if not 0 <= args.degree <= 8:
        raise UserError(f"--degree {args.degree}: must be 0 to 8")
    cal = calibrate_command(args.input, args.out, args.dataset, args.degree, args.rotation_deg, args.flip,
                            args.overwrite, progress=not args.no_progress)
    m = cal.measured
    print(f"bad pixels: {len(cal.dead)} dead, {len(cal.hot)} hot")
    print(f"origin: degree-{cal.origin_degree} map, peak-to-peak {m['origin_peak_to_peak_px'][0]:.2f} / "
          f"{m['origin_peak_to_peak_px'][1]:.2f} px (Qx / Qy); left after the fit {m['origin_residual_rms_px']:.3f} px rms")
    print(f"ellipse: a/b - 1 = {100 * cal.ellipticity:.3f} %, long axis {cal.axis_deg:.2f} deg from Qx "
          f"(ring at {m['ellipse']['ring_radius_px']:.2f} px)")
    if cal.rotation_deg is None:
        print(f"rotation: not determined: {cal.rotation_why}")
    else:
        print(f"rotation: {cal.rotation_deg:.3f} deg, flip {cal.flip} ({cal.rotation_why})")
    print(f"wrote {args.out}")
    return 0


# ---------------------------------------------------------------------------------------
# quantize / convert / hls / vendor


def add_quantize_parser(subparsers):
    p = subparsers.add_parser("quantize", help="QKeras encoder: quantization-aware training and pruning",
                              description="Mirror a float run's encoder in QKeras, prune it (tfmot) and fine-tune "
                                          "it with the same self-supervised loss and noise injection.")
    p.add_argument("--model", type=Path, required=True, metavar="RUN_DIR", help="the float run")
    p.add_argument("--bits", type=int, help="weight and activation bits (default: the config's [quant])")
    p.add_argument("--sparsity", type=float, help="target fraction of zero weights (default: [quant])")
    p.add_argument("--input", type=Path, metavar="CUBE", help="training cube (default: the float run's)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="e.g. runs/NAME-q8-s50")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_quantize)


def run_quantize(args) -> int:
    from ccstae.quant.qat import quantize
    from ccstae.quant.qmodel import load_qencoder, qencoder_summary

    report = quantize(args.model, args.out, args.bits, args.sparsity, args.input, progress=not args.no_progress)
    print(qencoder_summary(load_qencoder(args.out / "encoder.h5")))
    sparsity = ", ".join(f"{k} {100 * v:.0f} %" for k, v in report["sparsity"].items())
    print(f"quantized {args.out}: validation loss {report['best_val_loss']:.4g} "
          f"(float {report['float_best_val_loss']:.4g}); zero weights: {sparsity}")
    return 0


def add_convert_parser(subparsers):
    p = subparsers.add_parser("convert", help="hls4ml project of a quantized encoder, C-simulated bit-exact",
                              description="Convert a quantized run's encoder with hls4ml (bit_exact), fill "
                                          "tb_data with noisy simulated patterns and check both C-simulations.")
    p.add_argument("--model", type=Path, required=True, metavar="QRUN_DIR", help="a quantized run")
    p.add_argument("--out", type=Path, required=True, metavar="PRJ_DIR", help="e.g. hls_projects/NAME")
    p.add_argument("--backend", help="Vitis (default) or Vivado")
    p.add_argument("--io-type", help="io_stream (default) or io_parallel")
    p.add_argument("--part", help="FPGA part (default: the config's)")
    p.add_argument("--reuse", type=int, help="reuse factor")
    p.add_argument("--strategy", help="Latency or Resource")
    p.add_argument("--input", type=Path, metavar="CUBE", help="test patterns for tb_data (default: simulate)")
    p.set_defaults(handler=run_convert)


def run_convert(args) -> int:
    from ccstae.pipeline.hls import convert_run

    overrides = {"backend": args.backend, "io_type": args.io_type, "part": args.part,
                 "reuse_factor": args.reuse, "strategy": args.strategy}
    res = convert_run(args.model, args.out, {k: v for k, v in overrides.items() if v is not None}, args.input)
    print(res["text"])
    return 0 if res["exact"] else 1


def add_hls_parser(subparsers):
    p = subparsers.add_parser("hls", help="the whole pipeline: simulate, train, quantize, convert, C-simulate",
                              description="What `make hls` runs. Each stage is skipped when its result for the "
                                          "same settings exists (data/, runs/, hls_projects/).")
    p.add_argument("--config", default="default", help="preset name or TOML file (default: default)")
    p.add_argument("--allow-overflow", action="store_true",
                   help="exit 0 even when the saturation check finds an overflow or a large deviation")
    p.add_argument("--core", choices=("encoder", "centroid", "both"), default="both",
                   help="encoder: the encoder alone; centroid: the windowed-centroid core alone (nothing is "
                        "trained); both: each C-simulated and compared on the same test cubes (default)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_hls)


def run_hls(args) -> int:
    from ccstae.pipeline.hls import problems, run_pipeline

    summary = run_pipeline(args.config, progress=not args.no_progress, core=args.core)
    found = problems(summary)
    if args.allow_overflow:
        found = [p for p in found if "bit-exact" in p]
    for p in found:
        print(f"ccstae hls: FAILED: {p}", file=sys.stderr)
    return 1 if found else 0


def add_vendor_parser(subparsers):
    p = subparsers.add_parser("vendor", help="Vitis/Vivado HLS C-simulation or synthesis, where installed",
                              description="Run the vendor flow on the project `ccstae hls` made for a config. "
                                          "Where vitis_hls / vivado_hls is not on PATH, say so and exit 0, or "
                                          "exit 2 with --require (a CI job that must not pass without the tool).")
    p.add_argument("step", choices=("csim", "synth"))
    p.add_argument("--require", action="store_true", help="a missing vendor tool is an error (exit 2), not a skip")
    p.add_argument("--config", default="default", help="preset name or TOML file (default: default)")
    p.add_argument("--project", type=Path, help="project folder (default: the config's from `ccstae hls`)")
    p.set_defaults(handler=run_vendor)


def run_vendor(args) -> int:
    from ccstae.firmware import vendor
    from ccstae.pipeline.hls import project_dir

    prj = args.project or project_dir(args.config)
    from ccstae.core.errors import UserError

    if vendor.find_vendor_tool() is None:
        if args.require:
            raise UserError(f"vitis_hls/vivado_hls not on PATH: `vendor {args.step} --require` cannot run without them")
        print(f"{vendor.SKIP_REASON}; the g++ C-simulation of `make hls` is what runs here")
        return 0
    if not prj.exists():
        raise UserError(f"{prj}: no HLS project; run `make hls` (ccstae hls) first")
    result = (vendor.vendor_csim if args.step == "csim" else vendor.vendor_synth)(prj)
    print(result)
    return 0


# ---------------------------------------------------------------------------------------
# sweep


def add_scheduler_options(p):
    """Where a study's tasks run (ccstae/pipeline/study.py)."""
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="workers of the local Dask cluster, one process each (default: one per core)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="run on this Dask cluster instead (runs/ and reports/ on a shared filesystem), "
                        "or 'in-process' to run every task here, one after the other")


def add_sweep_parser(subparsers):
    p = subparsers.add_parser("sweep", help="accuracy vs resources over firmware variants, with a report",
                              description="Quantize, convert, estimate and C-simulate every variant of the "
                                          "config's [sweep] grid (bits, sparsity, reuse, strategy, io type, input "
                                          "binning); write per-variant JSON and report.md/.csv/.html with Pareto "
                                          "plots. A rerun skips finished variants; a failing one is recorded.")
    p.add_argument("--config", default="report", help="preset name or TOML file with a [sweep] section "
                                                      "(default: report, the quick one; sweep: the study)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: reports/sweep-<config name>)")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite the report from the variants finished so far (e.g. while a sweep runs)")
    add_scheduler_options(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_sweep)


def run_sweep(args) -> int:
    from ccstae.studies.sweep import run_sweep as sweep
    from ccstae.core.config import load_config

    cfg = load_config(args.config)
    out = args.out or Path("reports") / f"sweep-{Path(str(args.config)).stem}"
    res = sweep(cfg, out, progress=not args.no_progress, compute=not args.report_only, jobs=args.jobs,
                scheduler=args.scheduler)
    for r in res["variants"]:
        if r["status"] == "done":
            e = r["estimate"]
            print(f"{r['name']:<28} LUT {e['total']['LUT']:>9,}  DSP {e['total']['DSP']:>5,}  II {e['ii_cycles']:>6,}  "
                  f"{e['patterns_per_s']:>9,.0f}/s  bit-exact {100 * r['exact_fraction']:.1f} %")
        else:
            print(f"{r['name']:<28} FAILED: {r['error']}")
    print(f"{res['done']} done ({res['skipped']} from earlier runs), {res['failed']} failed, {res['seconds']:.0f} s"
          + (f"; wrote {res['report']['md']}" if res["report"] else "; no finished variant, no report"))
    exact = all(r["exact_fraction"] == 1.0 for r in res["variants"] if r["status"] == "done")
    return 0 if res["failed"] == 0 and exact else 1


# ---------------------------------------------------------------------------------------
# robustness


def add_robustness_parser(subparsers):
    p = subparsers.add_parser("robustness", help="training noise regimes x test noise levels, vs py4DSTEM",
                              description="Train one model per noise regime of the config's [robustness] grid "
                                          "(or reuse a finished run), evaluate float, quantized and firmware "
                                          "(C-simulation) on test scans at every noise level and seed, run the "
                                          "py4DSTEM baseline on the same scans; heatmaps, lines, CSV/JSON and "
                                          "report.md. Finished cells are kept; a failing cell is recorded.")
    p.add_argument("--config", default="robustness-quick",
                   help="preset name or TOML file (default: robustness-quick; default: the full grid)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: reports/robustness-<name>)")
    add_scheduler_options(p)
    p.add_argument("--cube", type=Path, action="append", metavar="CUBE",
                   help="also evaluate on this cube (repeatable); without ground truth: loss only, no MAE")
    p.add_argument("--no-reuse", action="store_true",
                   help="train every regime in the study folder, even one `make hls` has trained (runs/<name>)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_robustness)


def run_robustness(args) -> int:
    from ccstae.studies.robustness import run_study
    from ccstae.core.errors import UserError

    if args.jobs is not None and args.jobs < 1:
        raise UserError("--jobs must be >= 1")
    summary = run_study(args.config, args.out, jobs=args.jobs, scheduler=args.scheduler, extra_cubes=args.cube or (),
                        progress=not args.no_progress, reuse_runs=not args.no_reuse)
    failed = [n for n, c in summary["cells"].items() if c["status"] == "failed"]
    if failed:
        print(f"failed cells: {', '.join(failed)} (see report.md; a rerun retries them)")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------
# config


def add_config_parser(subparsers):
    p = subparsers.add_parser("config", help="show or check a config (preset name or TOML file)",
                              description="show: the config merged over the default preset, as TOML, each key "
                                          "with its doc and range (ccstae/core/config.py). check: every key's type and "
                                          "range, one line and exit code 2 on the first bad one.")
    p.add_argument("action", choices=("show", "check"))
    p.add_argument("config", nargs="?", default="default", help="preset name or TOML file (default: default)")
    p.set_defaults(handler=run_config)


def run_config(args) -> int:
    from ccstae.core.config import describe, load_config

    cfg = load_config(args.config)  # validates: a bad key is a UserError (one line, exit 2)
    if args.action == "show":
        print(describe(cfg), end="")
    else:
        n = sum(len(v) for v in cfg.values() if isinstance(v, dict))
        print(f"{args.config}: ok ({n} keys in {sum(isinstance(v, dict) for v in cfg.values())} sections)")
    return 0


# ---------------------------------------------------------------------------------------

COMMANDS = [add_simulate_parser, add_inspect_parser, add_train_parser, add_strain_parser, add_evaluate_parser,
            add_baseline_parser, add_calibrate_parser, add_quantize_parser, add_convert_parser, add_hls_parser, add_vendor_parser,
            add_sweep_parser, add_robustness_parser, add_config_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ccstae", description="Noise-robust 4D-STEM strain mapping on an FPGA: "
                                                      "CC-ST-AE from simulation to firmware.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def check_paths(args) -> None:
    """Say no to a bad config, a missing input or run folder at once, before a command imports
    TensorFlow, hls4ml or py4DSTEM (seconds each): the commands check their inputs more closely later."""
    from ccstae.core.config import load_config
    from ccstae.core.errors import UserError

    if getattr(args, "config", None) is not None:
        load_config(args.config)  # a bad key comes first: it is what the user is editing
    for name in ("model", "file", "input", "cube", "calibration"):
        values = getattr(args, name, None)
        for path in values if isinstance(values, list) else [values]:
            if isinstance(path, Path) and not path.exists():
                what = "no such run directory" if name == "model" else "no such file"
                raise UserError(f"{path}: {what}")


def main(argv=None) -> int:
    import os

    # TensorFlow's start-up chatter (cuDNN/cuFFT/cuBLAS factory lines are logged at ERROR level) is
    # nothing a user can act on: level 3 keeps it out of every command's output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    # QKeras quantizers pass through keras.constraints.serialize() whenever a QKeras layer's config
    # is read (clone, save): Keras 2.14 warns each time, and they serialize fine.
    import re

    noise = "The `keras.constraints.serialize()` API"
    warnings.filterwarnings("ignore", message=re.escape(noise))
    # A study's Dask workers are new processes: they take the same filter from the environment.
    quiet = f"ignore:{noise}:UserWarning"
    os.environ["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), quiet) if w)
    from ccstae.core.errors import UserError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        check_paths(args)
        return int(args.handler(args) or 0)
    except UserError as e:
        message = str(e)
    except OSError as e:
        message = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
    except KeyboardInterrupt:
        print(f"ccstae {args.command}: interrupted", file=sys.stderr)
        return 130
    message = " ".join(message.split())  # exactly one line
    print(f"ccstae {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
