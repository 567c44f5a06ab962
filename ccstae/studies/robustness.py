"""`ccstae robustness`: which noise to train with? A grid of training regimes x test sets.

For every training regime (fixed w in [robustness] fixed_levels, plus the modes "mixed" and
"curriculum") one CELL trains the float CC-ST-AE (or reuses a current run, ccstae/pipeline/stages.py),
quantizes and prunes it, converts it with hls4ml, and evaluates float, quantized and firmware
on every test cube (ccstae/studies/robustness_eval.py). One more cell runs the classical py4DSTEM
baseline (ccstae/analysis/baseline.py) on the same cubes.

Test sets: simulated scans of this config at every test level w and seed (each seed a new
unseen sample with its own noise draws), plus, as extra columns, the same at other doses
([robustness] test_counts, electrons per pattern) and from other presets or configs
([robustness] test_presets, e.g. a multislice preset beside the kinematic default), and the
user's own cubes (--cube).

The study is a task graph on Dask distributed (ccstae/pipeline/study.py): the training cube and
each test cube are tasks, each cell a task that needs them. Every task writes its own result
atomically (cubes named by their key, cells/<regime>/result.json last), so a finished cell is
never recomputed, a killed worker's cell runs again elsewhere, a crashing cell is recorded
with its error and the study goes on; rerun the study to resume it.

Outputs in OUT/ (ccstae/studies/robustness_report.py): results.json, results.csv, summary.csv,
heatmap_<model>.png, lines_<model>.png, report.md; cells/<regime>/ (runs, HLS project,
result.json); data/ (the cubes). All written atomically.
"""
from __future__ import annotations

import copy
import json
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

from tqdm import tqdm

from ccstae.studies import robustness_eval
from ccstae.pipeline import stages
from ccstae.studies.robustness_eval import BASELINE, run_baseline_cell  # noqa: F401 - re-exported
from ccstae.studies.robustness_findings import format_findings
from ccstae.studies.robustness_report import write_outputs
from ccstae.pipeline.study import open_tasks
from ccstae.core.config import validate
from ccstae.core.outputs import write_json
from ccstae.core.errors import UserError

# ----------------------------------------------------------------------------- settings

def settings(cfg: dict) -> dict:
    """The [robustness] section, validated, with the regime grid spelled out."""
    validate(cfg)  # every key's type and range (ccstae/core/config.py)
    r = dict(cfg["robustness"])
    r["test_counts"] = [float(c) for c in r["test_counts"]]
    r["test_configs"] = _test_configs(cfg, r["test_presets"])
    regimes = [{"name": f"fixed-{w:.2f}", "mode": "fixed", "levels": [float(w)]} for w in r["fixed_levels"]]
    regimes += [{"name": m, "mode": m, "levels": [float(w) for w in cfg["train"]["noise_levels"]]}
                for m in r["modes"]]
    r["regimes"] = regimes
    return r


def regime_config(cfg: dict, regime: dict) -> dict:
    """The config a regime trains with: [train] noise_mode / noise_levels set, all else as cfg."""
    out = copy.deepcopy(cfg)
    out["train"]["noise_mode"] = regime["mode"]
    out["train"]["noise_levels"] = list(regime["levels"])
    return out


def fingerprint(cfg: dict, s: dict) -> dict:
    """What every cell's results depend on, besides its regime: a finished cell is reused only
    when this is unchanged (the grid itself may grow between runs)."""
    keep = {k: cfg[k] for k in ("simulate", "noise", "model", "train", "quant", "firmware")}
    keep["train"] = {k: v for k, v in keep["train"].items() if k not in ("noise_mode", "noise_levels")}
    keep["robustness"] = {k: s[k] for k in ("test_levels", "seeds", "models", "firmware_patterns", "test_counts")}
    keep["test_configs"] = {c["name"]: {k: c[k] for k in ("simulate", "noise")} for c in s["test_configs"]}
    return json.loads(json.dumps(keep))


def _test_configs(cfg: dict, presets) -> list[dict]:
    """The configs whose simulated scans are extra test sets: loaded now, so a bad name fails first."""
    from ccstae.core.config import load_config

    out = []
    for p in presets:
        other = load_config(p)
        if int(other["simulate"]["pattern"]) != int(cfg["simulate"]["pattern"]):
            raise UserError(f"config robustness.test_presets: {p!r} makes {other['simulate']['pattern']}-pixel "
                            f"patterns, the models read {cfg['simulate']['pattern']}")
        out.append(other)
    return out


# ----------------------------------------------------------------------------- test sets

def test_sets(cfg: dict, s: dict, data: Path) -> list[dict]:
    """Every simulated test cube: {label, level, seed, counts, config, key, path}. The first ones
    (this config, its own dose) are the study's main test set; the others are extra columns."""
    own = float(cfg["noise"]["counts"])
    sets = [(cfg, None)] + [(cfg, c) for c in s["test_counts"] if c != own] + [(c, None) for c in s["test_configs"]]
    cubes = []
    for c, counts in sets:
        for w in s["test_levels"]:
            for seed in s["seeds"]:
                key = stages.key_of(stages.test_cube_description(c, w, seed, counts))
                label = f"w={w:g}" + (f" N={counts:g}" if counts is not None else "")
                label += f" [{c['name']}]" if c is not cfg else ""
                cubes.append({"label": label, "level": float(w), "seed": int(seed), "counts": counts,
                              "config": c["name"], "key": key,
                              "path": str(stages.test_cube_path(data, w, seed, counts, key))})
    return cubes


def _make_cube(cfg: dict, cube: dict, data: str) -> str:
    """A task: simulate one test cube (once)."""
    return str(stages.ensure_test_cube(cfg, Path(data), cube["level"], cube["seed"], cube["counts"]).path)


def external_cubes(paths) -> list[dict]:
    """User cubes (--cube): evaluated like the simulated ones; MAE only where they hold ground truth."""
    from ccstae.core.data_io import open_cube

    out = []
    for p in paths or []:
        with open_cube(p) as cube:  # fails early, in the parent, on a file that is not a cube
            level = cube.attrs.get("noise_w")
        out.append({"label": Path(p).stem, "level": float(level) if level is not None else None, "seed": None,
                    "path": str(Path(p).resolve())})
    return out

# ----------------------------------------------------------------------------- cells

def cell_key(cfg: dict, s: dict, regime: dict, train_key: str, cubes: list) -> str:
    """The stage key of a cell's result.json: its regime's config, the study's test settings, the
    cubes' keys, packages, and the code of every stage the cell runs (ccstae/pipeline/stages.py)."""
    c = regime_config(cfg, regime) if regime["mode"] != BASELINE else cfg
    config = {k: c[k] for k in ("simulate", "noise", "model", "train", "quant", "firmware")}
    config["robustness"] = {k: s[k] for k in ("models", "firmware_patterns")}
    config["regime"] = regime
    code = ["data", "float", "qat", "ccstae.studies.robustness_eval", "ccstae.analysis.baseline"]
    packages = ["tensorflow", "qkeras", "hls4ml", "tensorflow-model-optimization"]
    if regime["mode"] == BASELINE:
        packages.append("py4DSTEM")
    inputs = {"train_cube": train_key, "cubes": sorted(c["key"] for c in cubes if c.get("key"))}
    return stages.key_of(stages.made_from("cell", c, config, inputs, extra_code=code,
                                          extra_packages=packages))


def run_cell(cfg: dict, regime: dict, out: str, cubes: list, s: dict, key: str, reuse: list,
             train_cube=None, ready=()) -> dict:
    """One training regime (or the baseline), start to finish: a task. Never raises: a failure is
    recorded in result.json (status "failed", the error and its traceback) and returned, so the
    study goes on. `ready`: the cube tasks it waits for."""
    cell = Path(out) / "cells" / regime["name"]
    cell.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    result = {"regime": regime, "key": key}
    try:
        if regime["mode"] == BASELINE:
            result.update(robustness_eval.run_baseline_cell(cfg, cubes))
        else:
            if train_cube is None:
                train_cube = stages.ensure_train_cube(cfg, Path(out) / "data")
            result.update(robustness_eval.run_model_cell(regime_config(cfg, regime), cell, cubes, s,
                                                         [Path(p) for p in reuse], train_cube))
        result.setdefault("status", "done")  # the baseline cell may say "skipped"
    except BaseException as e:  # noqa: BLE001 -- anything, even a KeyboardInterrupt in a worker, is recorded
        result.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        if isinstance(e, KeyboardInterrupt):
            write_json(cell / "result.json", result)
            raise
    result["seconds"] = round(time.time() - t_start, 1)
    write_json(cell / "result.json", result)  # last: its presence with status "done" marks the cell finished
    return result


# ----------------------------------------------------------------------------- the study

def run_study(config, out: Path | None = None, jobs: int | None = None, scheduler: str | None = None,
              extra_cubes=(), progress: bool = True, reuse_runs: bool = True, root: Path = Path(".")) -> dict:
    """Run (or resume) the whole study; returns the summary that report.md is written from.

    jobs: LocalCluster workers (default one per core); scheduler: "in-process", or the address
    of a running Dask scheduler (tcp://HOST:8786), then out and root must be on a shared
    filesystem."""
    from ccstae.core.config import load_config

    cfg = load_config(config) if not isinstance(config, dict) else copy.deepcopy(config)
    s = settings(cfg)
    root = Path(root).resolve()
    out = (Path(out) if out is not None else root / "reports" / f"robustness-{cfg['name']}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    study_key = fingerprint(cfg, s)
    stamp = out / "study.json"
    if stamp.exists() and json.loads(stamp.read_text())["key"] != study_key:
        raise UserError(f"{out}: a study with other settings (data, model, quantization, test sets, seeds or "
                        "models) is there; choose another --out or delete it")
    write_json(stamp, {"key": study_key, "config": cfg})

    data = out / "data"
    cubes = test_sets(cfg, s, data)
    configs = {c["name"]: c for c in s["test_configs"]} | {cfg["name"]: cfg}
    cubes_all = cubes + external_cubes(extra_cubes)
    train_key = stages.key_of(stages.train_cube_description(cfg))
    cells = list(s["regimes"]) + ([{"name": BASELINE, "mode": BASELINE, "levels": []}] if s["baseline"] else [])
    reuse = [str(root / "runs" / cfg["name"])] if reuse_runs else []
    results, todo = {}, []
    for regime in cells:
        key = cell_key(cfg, s, regime, train_key, cubes)
        done = out / "cells" / regime["name"] / "result.json"
        prev = json.loads(done.read_text()) if done.exists() else None
        if prev and prev["status"] in ("done", "skipped") and prev["key"] == key and _same_cubes(prev, cubes_all):
            results[regime["name"]] = prev  # finished before: never recomputed
        else:
            todo.append((regime, key))

    with open_tasks(jobs, scheduler) if todo else nullcontext() as tasks:
        if todo:
            print(f"robustness: {len(todo)} cell(s) to run, {len(results)} finished before; {tasks.where}",
                  flush=True)
            train = tasks.submit(stages.ensure_train_cube, cfg, data)
            ready = [tasks.submit(_make_cube, configs[c["config"]], c, str(data)) for c in cubes]
            futures = {tasks.submit(run_cell, cfg, regime, str(out), cubes_all, s, key, reuse, train, ready):
                       (regime, key) for regime, key in todo}
            with tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress, dynamic_ncols=True) as bar:
                for f in tasks.as_completed(list(futures)):
                    regime, key = futures[f]
                    try:
                        res = f.result()
                    except Exception as e:  # noqa: BLE001 - the worker died, or a cube task failed
                        res = _failed(out, regime, key, e)
                    results[regime["name"]] = _report_cell(res, bar)
    ordered = {c["name"]: results[c["name"]] for c in cells}
    summary = write_outputs(out, cfg, s, cubes_all, ordered)
    print(format_findings(summary))
    print(f"wrote {out}/report.md")
    return summary


def _failed(out: Path, regime: dict, key: str, e: Exception) -> dict:
    """A cell whose task never returned (its worker died, a cube it needs failed): recorded as failed."""
    res = {"regime": regime, "key": key, "status": "failed", "error": f"{type(e).__name__}: {e}",
           "traceback": traceback.format_exc(), "rows": []}
    cell = out / "cells" / regime["name"]
    cell.mkdir(parents=True, exist_ok=True)
    write_json(cell / "result.json", res)
    return res


def _same_cubes(prev: dict, cubes: list) -> bool:
    """A finished cell covers the current test cubes (external --cube files may have changed)."""
    have = {(r["label"], r["seed"]) for r in prev.get("rows", [])}
    want = {(c["label"], c["seed"]) for c in cubes}
    return prev["status"] == "skipped" or want <= have


def _report_cell(res: dict, bar) -> dict:
    name = res["regime"]["name"]
    if res["status"] == "failed":
        tqdm.write(f"  {name}: FAILED ({res['error']}); the study goes on")
    elif res["status"] == "skipped":
        tqdm.write(f"  {name}: skipped ({res.get('reason')})")
    else:
        tqdm.write(f"  {name}: done in {res.get('seconds', 0):.0f} s")
    bar.update(1)
    return res
