"""`ccstae`: the command line, a thin face over the rooms (docs/layout.md).

The commands are grouped by the rooms they call: ccstae/cli/data.py (simulate, inspect,
calibrate), maps.py (train, strain, evaluate, baseline), firmware.py (quantize, convert, hls,
vendor) and studies.py (sweep, robustness); `config` is here, with the parser and `main`.

Each subcommand is two functions: `add_<name>_parser(subparsers)` declares its options and
sets `handler=run_<name>`; `run_<name>(args) -> int` does the work. To add a command,
write both and append the parser function to COMMANDS below. Import heavy modules
(tensorflow, hls4ml) inside the handler so `ccstae --help` stays fast.

Errors: a UserError (bad option, config, file) or an OSError on an input becomes one line
`ccstae <cmd>: error: <message>` on stderr and exit code 2. Anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccstae.cli import data, firmware, maps, studies


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors in the same one-line form as every other error."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


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

COMMANDS = [data.add_simulate_parser, data.add_inspect_parser, maps.add_train_parser, maps.add_strain_parser,
            maps.add_evaluate_parser, maps.add_baseline_parser, data.add_calibrate_parser, firmware.add_quantize_parser,
            firmware.add_convert_parser, firmware.add_hls_parser, firmware.add_vendor_parser, studies.add_sweep_parser,
            studies.add_robustness_parser, add_config_parser]


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
