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
                              description="Kinematic 4D-STEM of a strained hexagonal polycrystal, streamed "
                                          "row by row into an HDF5 cube with its ground-truth maps.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="default", help="config preset: tiny, default, paper (default: default)")
    src.add_argument("--config", type=Path, help="a TOML config file (merged over the default preset)")
    p.add_argument("--noise", type=float, default=0.0, metavar="W",
                   help="background-noise level w in [0, 1) (default 0: shot noise only)")
    p.add_argument("--counts", type=float, default=None, metavar="C",
                   help="electrons per pattern (default: the config's noise.counts)")
    p.add_argument("--seed", type=int, default=None, help="sample and noise seed (default: simulate.seed)")
    p.add_argument("--clean", action="store_true", help="write noise-free patterns (sum 1) for training")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.h5", help="output HDF5 file")
    p.set_defaults(handler=run_simulate)


def run_simulate(args) -> int:
    from model.config import load_config
    from model.errors import UserError
    from model.simulate import simulate_scan

    if args.clean and args.noise != 0:
        raise UserError("--clean writes noise-free patterns: drop --noise")
    cfg = load_config(args.config if args.config is not None else args.preset)
    out = simulate_scan(cfg, args.out, noise_w=args.noise, counts=args.counts, seed=args.seed,
                        clean=args.clean, overwrite=args.overwrite, progress=not args.no_progress)
    sim = cfg["simulate"]
    what = "clean" if args.clean else f"w={args.noise:g}, counts={args.counts or cfg['noise']['counts']:g}"
    print(f"wrote {out}: {sim['scan'][0]}x{sim['scan'][1]} scan of {sim['pattern']}x{sim['pattern']} "
          f"patterns ({cfg['name']}, {what})")
    return 0


# ---------------------------------------------------------------------------------------
# inspect


def add_inspect_parser(subparsers):
    p = subparsers.add_parser("inspect", help="describe a 4D-STEM file and render an overview PNG",
                              description="Print shape, dtype, attributes and ground truth of a cube "
                                          "(our HDF5, py4DSTEM/EMD, any HDF5 with a 4D dataset, .npy) and "
                                          "render patterns, virtual BF/ADF and ground-truth maps to a PNG.")
    p.add_argument("file", type=Path, help="the data file")
    p.add_argument("--dataset", help="path of the 4D dataset inside an HDF5 file (default: found)")
    p.add_argument("--png", type=Path, help="overview image (default: FILE.inspect.png next to the file)")
    p.add_argument("--no-png", action="store_true", help="print only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_inspect)


def run_inspect(args) -> int:
    from model import data_io

    with data_io.open_cube(args.file, args.dataset) as cube:
        print(data_io.summary(cube))
        if not args.no_png:
            png = args.png if args.png is not None else Path(f"{args.file}.inspect.png")
            data_io.save_overview_png(cube, png, progress=not args.no_progress)
            print(f"wrote {png}")
    return 0


# ---------------------------------------------------------------------------------------

COMMANDS = [add_simulate_parser, add_inspect_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ccstae", description="Noise-robust 4D-STEM strain mapping on an FPGA: "
                                                      "CC-ST-AE from simulation to firmware.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    from model.errors import UserError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
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
