"""`ccstae`: the command line, a thin face over model/, quant/ and firmware/."""
import sys


def main(argv=None) -> int:
    raise SystemExit("ccstae: no subcommands yet")


if __name__ == "__main__":
    sys.exit(main())
