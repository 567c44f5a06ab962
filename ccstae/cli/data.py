"""`ccstae simulate`, `inspect` and `calibrate`: cubes made, described and calibrated (core, physics)."""
from __future__ import annotations

import argparse
from pathlib import Path


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
    from ccstae.physics.scans import simulate_scan

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
# options shared with the commands that read a cube


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

