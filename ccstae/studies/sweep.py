"""`ccstae sweep` / `make report`: accuracy vs resources over a grid of firmware variants.

A variant is one point of the [sweep] grid (ccstae/studies/sweep_grid.py): input binning,
weight/activation bits, sparsity, reuse factor, strategy, io type. The sweep is a task graph
on Dask distributed (ccstae/pipeline/study.py):

    float run (per input binning)  ->  QAT run (per binning, bits, sparsity)  ->  variant
              \\-> float MAE on the evaluation block ---------------------------/

Float and QAT runs are stages (ccstae/pipeline/stages.py): current ones are reused, `make hls`'s
among them. A variant (ccstae/studies/sweep_eval.py) converts, estimates, compiles, C-simulates
and measures; its task writes OUT/variants/<name>.json atomically as soon as it is done, with
its stage key. A rerun skips variants whose JSON is "done" under the same key, and a variant
that raises is recorded as "failed" with its error while the sweep goes on. Finally
firmware/report.write_report turns the finished variants into report.md/.csv/.html and Pareto
PNGs, and ccstae/studies/sweep_report.py adds how the numbers were made, a goal check, the failed
variants and the throughput question.

Test sets: the config's test scans ([noise] test_levels, the main set), plus extra columns at
other doses ([sweep] test_counts) and from other presets ([sweep] test_presets).

Layout: runs/<name>/... (firmware/sweep_grid.run_dirs); OUT/hls/<variant>/ the HLS projects;
OUT/variants/*.json; OUT/report.*.
"""
from __future__ import annotations

import copy
import json
import time
import traceback
from pathlib import Path

from tqdm import tqdm

from ccstae.firmware import estimate as E
from ccstae.studies import report, sweep_eval
from ccstae.pipeline import stages
from ccstae.pipeline.study import open_tasks
from ccstae.studies.sweep_grid import AXES, grid, run_dirs, settings, variant_config, variant_key, variant_name  # noqa: F401
from ccstae.studies.sweep_report import add_sweep_sections
from ccstae.core.config import load_config
from ccstae.core.outputs import write_json
from ccstae.core.errors import UserError


def level_key(w) -> str:
    return f"{float(w):g}"


def test_sets(cfg: dict, data: stages.StageResult, progress: bool) -> tuple[dict, str, str]:
    """({label: cube path}, the noisiest main label, a key of them all). The main set is
    `make hls`'s test scans; other doses and presets are simulated here, once."""
    tests = {level_key(w): p for w, p in data.outputs["tests"].items()}
    noisiest = level_key(max(data.outputs["tests"]))
    keys = [data.key]
    seed = int(cfg["noise"]["test_seed"])
    own = float(cfg["noise"]["counts"])
    extra = [(cfg, float(c)) for c in cfg["sweep"]["test_counts"] if float(c) != own]
    for p in cfg["sweep"]["test_presets"]:
        other = load_config(p)
        if int(other["simulate"]["pattern"]) != int(cfg["simulate"]["pattern"]):
            raise UserError(f"config sweep.test_presets: {p!r} makes {other['simulate']['pattern']}-pixel patterns, "
                            f"the models read {cfg['simulate']['pattern']}")
        extra.append((other, None))
    for c, counts in extra:
        for w in cfg["noise"]["test_levels"]:
            cube = stages.ensure_test_cube(c, data.path, w, seed, counts, progress=progress)
            label = level_key(w) + (f" N={counts:g}" if counts is not None else f" [{c['name']}]")
            tests[label] = cube.path
            keys.append(cube.key)
    return tests, noisiest, stages.key_of(keys)


def load_variant(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # missing or unreadable: recompute


def variant_task(cfg: dict, v: dict, key: str, out: str, float_run, q_run, tests: dict, noisiest: str,
                 float_maes, progress: bool) -> dict:
    """A task: one variant, start to finish, its record written atomically. Never raises."""
    name = variant_name(v)
    path = Path(out) / "variants" / f"{name}.json"
    t0 = time.time()
    try:
        rec = sweep_eval.run_variant(cfg, v, name, Path(out) / "hls" / name, float_run, q_run, tests, noisiest,
                                     float_maes, progress)
    except Exception as e:  # noqa: BLE001 - one bad cell must not cost the others
        rec = failed_record(cfg, v, e)
    rec["seconds"] = round(time.time() - t0, 1)
    rec["key"] = key
    write_json(path, rec)
    _free_memory()
    return rec


def failed_record(cfg: dict, v: dict, e: Exception) -> dict:
    return {"status": "failed", "name": variant_name(v), **v, "variant": v, "settings": settings(cfg, v),
            "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def run_sweep(config, out, root: Path = Path("."), progress: bool = True, compute: bool = True,
              jobs: int | None = None, scheduler: str | None = None) -> dict:
    """Run (or resume) the sweep of a config; write OUT/variants/*.json and the report.

    compute=False: only (re)write the report from the variants finished so far (safe while
    another process is still running the sweep: variant files are replaced atomically).
    jobs / scheduler: where the tasks run (ccstae/pipeline/study.py; default a LocalCluster).

    config: a preset name, a TOML path or a config dict. Returns {"variants": [records],
    "done": n, "failed": n, "skipped": n (finished earlier), "report": write_report's paths,
    "seconds": total}.
    """
    t_start = time.time()
    cfg = load_config(config) if not isinstance(config, dict) else copy.deepcopy(config)
    s = cfg["sweep"]
    for d in s["detectors"]:
        if d not in E.DETECTORS:
            raise UserError(f"sweep detector {d!r} is unknown; known: {', '.join(E.DETECTORS)}")
    for p in s["parts"]:
        if p not in E.PARTS:
            raise UserError(f"sweep part {p!r} is unknown; known: {', '.join(E.PARTS)}")
    variants = grid(cfg)  # validates every variant before any work starts
    root, out = Path(root).resolve(), Path(out).resolve()
    (out / "variants").mkdir(parents=True, exist_ok=True)
    print(f"sweep {cfg['name']}: {len(variants)} variant(s) -> {out}", flush=True)
    if compute:
        write_json(out / "sweep_config.json", cfg)
    data = stages.ensure_data(cfg, root / "data" / cfg["name"], progress)
    tests, noisiest, tests_key = test_sets(cfg, data, progress)
    shape, _ = sweep_eval.eval_block(cfg, tests)  # checks eval_scan and ground truth before any work

    records, todo, skipped = {}, [], 0
    for v in variants:
        name, key = variant_name(v), variant_key(cfg, v, tests_key)
        old = load_variant(out / "variants" / f"{name}.json")
        if old and old.get("status") == "done" and old.get("key") == key:
            records[name] = old
            skipped += 1
        elif not compute:  # report-only: show earlier failures, leave unfinished variants out
            if old and old.get("status") == "failed" and old.get("key") == key:
                records[name] = old
        else:
            todo.append((v, key))

    if todo:
        records.update(_run_variants(cfg, todo, skipped, root, out, data, tests, noisiest, progress, jobs, scheduler))

    records = [records[variant_name(v)] for v in variants if variant_name(v) in records]  # grid order
    done = [r for r in records if r["status"] == "done"]
    paths = None
    if done:
        paths = report.write_report(done, out, detectors=s["detectors"], parts=s["parts"])
        add_sweep_sections(cfg, records, shape, list(tests), Path(paths["md"]), Path(paths["html"]))
    result = {"variants": records, "done": len(done), "failed": len(records) - len(done), "skipped": skipped,
              "report": paths, "seconds": round(time.time() - t_start, 1)}
    if not compute:
        return result
    write_json(out / "sweep.json", {k: v for k, v in result.items() if k != "variants"} |
               {"variants": [{k: r.get(k) for k in ("name", "status", "error", "seconds")} for r in records]})
    return result


def _run_variants(cfg: dict, todo: list, skipped: int, root: Path, out: Path, data, tests: dict, noisiest,
                  progress: bool, jobs, scheduler) -> dict:
    """Run the variants still to do as tasks ((variant, key) pairs): one float run and one QAT run per
    distinct run directory, shared by the variants that need them. Returns {name: record}, failures
    included (written to OUT/variants as they come)."""
    records = {}
    with open_tasks(jobs, scheduler) as tasks:
        print(f"sweep: {len(todo)} variant(s) to run, {skipped} finished before; {tasks.where}", flush=True)
        bars = progress and tasks.client is None  # workers' bars would garble the terminal
        floats, qats, maes, futures = {}, {}, {}, {}
        for v, key in todo:
            cfg_v = variant_config(cfg, v)
            float_dir, q_dir = run_dirs(cfg, v, root)
            if float_dir not in floats:
                floats[float_dir] = tasks.submit(stages.ensure_float, cfg_v, data.outputs["train"], float_dir, bars)
                maes[float_dir] = tasks.submit(float_mae, floats[float_dir], cfg, tests)
            if q_dir not in qats:
                qats[q_dir] = tasks.submit(stages.ensure_qat, cfg_v, floats[float_dir], q_dir, bars)
            futures[tasks.submit(variant_task, cfg, v, key, str(out), floats[float_dir], qats[q_dir], tests,
                                 noisiest, maes[float_dir], bars)] = (v, key)
        for f in tqdm(tasks.as_completed(list(futures)), total=len(futures), desc="sweep", unit="variant",
                      disable=not progress, dynamic_ncols=True):
            v, key = futures[f]
            try:
                rec = f.result()
            except Exception as e:  # noqa: BLE001 - its float or QAT run failed, or its worker died
                rec = failed_record(cfg, v, e) | {"key": key}
                write_json(out / "variants" / f"{rec['name']}.json", rec)
            if rec["status"] != "done":
                tqdm.write(f"   {rec['name']} FAILED: {rec['error']}")
            records[rec["name"]] = rec
    return records


def float_mae(float_run, cfg: dict, tests: dict) -> dict:
    """A task: the float run's MAE on the evaluation block, once per float run."""
    return sweep_eval.float_mae(float_run.path, cfg, tests)


def _free_memory() -> None:
    """Keras keeps every loaded model in its global graph: clear it between variants."""
    try:
        from tensorflow import keras

        keras.backend.clear_session()
    except Exception:  # noqa: BLE001 - only a memory optimisation
        pass
