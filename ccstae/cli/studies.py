"""`ccstae sweep` and `robustness`: the studies, on a Dask cluster (studies)."""
from __future__ import annotations

from pathlib import Path


def add_scheduler_options(p):
    """Where a study's tasks run (ccstae/pipeline/study.py)."""
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="workers of the local Dask cluster, one process each (default: one per core)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="run on this Dask cluster instead (runs/ and reports/ on a shared filesystem), "
                        "or 'in-process' to run every task here, one after the other")



# ---------------------------------------------------------------------------------------
# sweep


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

