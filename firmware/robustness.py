"""`ccstae robustness`: which noise to train with? A grid of training regimes x test noise levels.

For every training regime (fixed w in [robustness] fixed_levels, plus the modes "mixed" and
"curriculum") one CELL trains the float CC-ST-AE (or reuses a finished run of the same
settings), quantizes and prunes it, converts it with hls4ml, and evaluates float, quantized
and firmware on simulated test scans at every test noise level and seed (each seed a new
unseen sample with its own noise draws). One more cell runs the classical py4DSTEM baseline
(model/baseline.py) on the same cubes. Cells are independent: they run in parallel processes
(--jobs), a finished cell is never recomputed (its result.json is written atomically, last),
a crashing cell is recorded with its error and the study goes on.

Per test cube and model: strain MAE per map (against ground truth, whole-scan mean reference
as everywhere in model/strain.py) and the self-supervised cycle loss on the noisy test
patterns (CCSTAE.losses with the run's own reference, x_in = x_target = the measured pattern,
blur = the run's final blur: the label-free number a user can compute on real data).

Firmware numbers: hls_model.predict (the HLS C++ compiled by hls4ml) is slow, so it runs on
`firmware_patterns` patterns per test cube (evenly spaced; 0 = all). When that is every
pattern, the firmware MAE comes from C-simulation outputs alone. Otherwise the firmware MAE is
the QKeras model's, reported only where the C-simulation was bit-exact with QKeras on every
pattern it ran, and marked so ("source": "qkeras, bit-exact on N C-sim patterns").

Outputs in OUT/: results.json, results.csv (one row per cell x cube x model), summary.csv
(mean and spread over seeds), heatmap_<model>.png, lines_<model>.png, report.md; cells/<regime>/
(runs, HLS project, result.json); data/ (the test cubes). All written atomically.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import time
import traceback
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model import data_io
from model.data_io import write_json
from model.errors import UserError

MODELS = ("float", "quantized", "firmware")
MAP_KEYS = ("exx", "eyy", "exy", "theta")
BASELINE = "py4DSTEM"


# ----------------------------------------------------------------------------- settings

def settings(cfg: dict) -> dict:
    """The [robustness] section, validated, with the regime grid spelled out."""
    r = dict(cfg["robustness"])
    for key in ("fixed_levels", "test_levels"):
        levels = r[key]
        if not isinstance(levels, list) or any(not isinstance(w, (int, float)) or not 0 <= w < 1 for w in levels):
            raise UserError(f"config robustness.{key} must be a list of noise levels in [0, 1) (got {levels!r})")
    if not r["test_levels"]:
        raise UserError("config robustness.test_levels is empty: nothing to test on")
    bad = [m for m in r["modes"] if m not in ("mixed", "curriculum", "none")]
    if bad:
        raise UserError(f"config robustness.modes: {bad} not among mixed, curriculum, none")
    if not r["seeds"] or any(not isinstance(s, int) or s < 0 for s in r["seeds"]):
        raise UserError("config robustness.seeds must be a non-empty list of integers >= 0")
    if not isinstance(r["baseline"], bool):
        raise UserError("config robustness.baseline must be true or false")
    bad = [m for m in r["models"] if m not in MODELS]
    if bad or not r["models"]:
        raise UserError(f"config robustness.models must name some of {', '.join(MODELS)} (got {r['models']!r})")
    if int(r["firmware_patterns"]) < 0:
        raise UserError("config robustness.firmware_patterns must be >= 0 (0: every pattern)")
    regimes = [{"name": f"fixed-{w:.2f}", "mode": "fixed", "levels": [float(w)]} for w in r["fixed_levels"]]
    regimes += [{"name": m, "mode": m, "levels": [float(w) for w in cfg["train"]["noise_levels"]]}
                for m in r["modes"]]
    if not regimes:
        raise UserError("config robustness: no training regime (fixed_levels and modes are both empty)")
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
    keep["robustness"] = {k: s[k] for k in ("test_levels", "seeds", "models", "firmware_patterns")}
    return json.loads(json.dumps(keep))


# ----------------------------------------------------------------------------- small helpers

def test_cubes(cfg: dict, s: dict, data: Path, progress: bool = True) -> list[dict]:
    """Simulate (once) a test scan per test level and seed; the seed picks sample and noise."""
    from model.simulate import simulate_scan

    data.mkdir(parents=True, exist_ok=True)
    cubes = []
    jobs = [(w, seed) for w in s["test_levels"] for seed in s["seeds"]]
    for w, seed in tqdm(jobs, desc="test scans", unit="cube", disable=not progress, dynamic_ncols=True):
        path = data / f"test_w{w:.2f}_s{seed}.h5"
        if not path.exists():
            simulate_scan(cfg, path, noise_w=w, seed=seed, progress=False)
        cubes.append({"label": f"w={w:g}", "level": float(w), "seed": int(seed), "path": str(path)})
    return cubes


def external_cubes(paths) -> list[dict]:
    """User cubes (--cube): evaluated like the simulated ones; MAE only where they hold ground truth."""
    from model.data_io import open_cube

    out = []
    for p in paths or []:
        with open_cube(p) as cube:  # fails early, in the parent, on a file that is not a cube
            level = cube.attrs.get("noise_w")
        out.append({"label": Path(p).stem, "level": float(level) if level is not None else None, "seed": None,
                    "path": str(Path(p).resolve())})
    return out


# ----------------------------------------------------------------------------- one cell

def train_regime(cfg: dict, train_cube: Path, cell: Path, reuse: list[Path]) -> tuple[Path, Path, dict]:
    """A float and a quantized run for this regime's config: reused when one with the same
    settings has finished (in `reuse` folders, e.g. `make hls`'s runs/<name>/), else trained
    in the cell (an interrupted float run resumes from its checkpoint)."""
    from firmware.pipeline import FLOAT_SECTIONS, ensure_float, ensure_qat
    from model.config import stale
    from quant import qat

    times = {}
    float_dir = next((d / "float" for d in reuse if (d / "float" / "DONE").exists()
                      and not stale(d / "float" / "config.json", cfg, FLOAT_SECTIONS)), None)
    reused = float_dir is not None
    if not reused:
        float_dir = cell / "float"
        t0 = time.time()
        if ensure_float(cfg, train_cube, float_dir, progress=False):
            times["train_s"] = round(time.time() - t0, 1)
    variant = qat.variant_name(qat.quant_config(cfg))
    q_dir = float_dir.parent / variant
    if reused and not qat.is_current(q_dir, float_dir, cfg):
        q_dir = cell / variant  # never write into another run's folder: QAT in the cell
    t0 = time.time()
    if ensure_qat(cfg, float_dir, q_dir, progress=False):
        times["quantize_s"] = round(time.time() - t0, 1)
    times["reused_float_run"] = reused
    return float_dir, q_dir, times


class _FixedOutputs:
    """Stands in for an encoder inside CCSTAE.losses: returns raw outputs computed elsewhere
    (float, QKeras or the C-simulated firmware), so all three get the very same loss."""

    raw = None

    def __call__(self, x, training=False):
        import tensorflow as tf

        return tf.constant(self.raw, tf.float32)


def cycle_loss(raw: np.ndarray, x: np.ndarray, reference: np.ndarray, t: dict, batch: int = 256) -> float:
    """Mean cycle loss (both directions, no penalty) of raw outputs (N, 4) on inputs x (N, H, W, 1).

    x is both the encoder input and the target: on measured data the noisy pattern is all
    there is. The blur is the run's final one and the mask its annulus, as in validation.
    """
    import tensorflow as tf

    from model import network, stn

    enc = _FixedOutputs()
    model = network.CCSTAE(enc, reference)
    p = x.shape[1]
    mask = stn.annular_mask(p, t["mask_inner"] * p, t["mask_outer"] * p)
    sigma = tf.constant(float(t["blur_end"]), tf.float32)
    total = 0.0
    for i in range(0, len(x), batch):
        enc.raw = raw[i:i + batch]
        losses = model.losses(x[i:i + batch], x[i:i + batch], sigma, mask)
        total += float(losses["cycle_ref"] + losses["cycle_pattern"]) * len(enc.raw)
    return total / len(x)


def evaluate_cube(cube_info: dict, runs: dict, models, hls_model, firmware_patterns: int) -> list[dict]:
    """Every model on one test cube -> rows {cube, level, seed, model, mae (or None), loss, ...}."""
    from firmware import csim
    from model.data_io import open_cube
    from model.evaluate import maps_from_raw, truth_maps
    from model.run import check_pattern_size
    from model.strain import mae

    with open_cube(cube_info["path"]) as cube:
        check_pattern_size(cube, runs["float"].pattern)
        scan = cube.shape[:2]
        patterns = cube.read_rows(0, scan[0]).reshape(-1, *cube.shape[2:])
        gt = cube.ground_truth
    truth = truth_maps(gt) if gt is not None else None
    base = {k: cube_info[k] for k in ("label", "level", "seed")}
    no_truth = None if truth is not None else f"{cube_info['path']}: no ground truth in this cube: MAE refused, loss only"
    rows, raw, inputs = [], {}, {}
    for label in ("float", "quantized"):
        if label == "quantized" or "float" in models:
            run = runs[label]
            inputs[label] = run.inputs(patterns)
            raw[label] = run.encoder.predict(inputs[label], batch_size=256, verbose=0).astype(np.float64)
    for label in ("float", "quantized"):
        if label not in models:
            continue
        run = runs[label]
        rows.append({**base, "model": label, "source": label,
                     "mae": mae(maps_from_raw(raw[label].reshape(*scan, 4)), truth) if truth is not None else None,
                     "loss": cycle_loss(raw[label], inputs[label], runs[label + "_reference"], run.config["train"]),
                     "note": no_truth})
    if "firmware" in models:
        n = len(patterns)
        k = n if firmware_patterns == 0 else min(n, firmware_patterns)
        idx = np.linspace(0, n - 1, k).round().astype(int)
        x = inputs["quantized"][idx]
        t0 = time.time()
        fw = csim.predict_firmware(hls_model, x)
        seconds = time.time() - t0
        check = csim.compare_outputs(raw["quantized"][idx], fw)
        t = runs["quantized"].config["train"]
        row = {**base, "model": "firmware", "csim_patterns": int(k), "csim_exact_fraction": check.exact_fraction,
               "csim_seconds": round(seconds, 1), "note": no_truth}
        if k == n:  # every pattern C-simulated: the firmware's own numbers
            full = fw
            row["source"] = "csim"
            row["mae"] = mae(maps_from_raw(full.reshape(*scan, 4)), truth) if truth is not None else None
            row["loss"] = cycle_loss(full, x, runs["quantized_reference"], t)
        elif check.exact:  # QKeras stands in, verified bit-exact on the C-simulated subset
            q = next(r for r in rows if r["model"] == "quantized") if "quantized" in models else None
            row["source"] = f"qkeras, bit-exact on {k} C-sim patterns"
            row["mae"] = q["mae"] if q else (mae(maps_from_raw(raw["quantized"].reshape(*scan, 4)), truth)
                                             if truth is not None else None)
            row["loss"] = q["loss"] if q else cycle_loss(raw["quantized"], inputs["quantized"],
                                                         runs["quantized_reference"], t)
        else:  # not bit-exact: no full-scan C-simulation to stand on, so no firmware MAE
            row["source"] = f"csim on {k} patterns, NOT bit-exact with QKeras"
            row["mae"] = None
            row["loss"] = cycle_loss(fw, x, runs["quantized_reference"], t)
            row["note"] = f"firmware differs from QKeras on {100 * (1 - check.exact_fraction):.2f} % of outputs"
        rows.append(row)
    return rows


def run_cell(cfg: dict, regime: dict, out: str, cubes: list, s: dict, key: dict, reuse: list) -> dict:
    """One training regime, start to finish. Never raises: a failure is recorded in result.json
    (status "failed", the error and its traceback) and returned, so the study goes on."""
    cell = Path(out) / "cells" / regime["name"]
    cell.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    result = {"regime": regime, "key": key}
    try:
        if regime["mode"] == BASELINE:
            result.update(run_baseline_cell(cfg, cubes))
        else:
            result.update(_run_model_cell(regime_config(cfg, regime), cell, cubes, s,
                                          [Path(p) for p in reuse], Path(out)))
        result.setdefault("status", "done")  # the baseline cell may say "skipped"
    except BaseException as e:  # noqa: BLE001 -- anything, even a KeyboardInterrupt in a worker, is recorded
        result.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        if isinstance(e, KeyboardInterrupt):
            write_json(cell / "result.json", result)
            raise
    result["seconds"] = round(time.time() - t_start, 1)
    write_json(cell / "result.json", result)  # last: its presence with status "done" marks the cell finished
    return result


def _run_model_cell(cfg: dict, cell: Path, cubes: list, s: dict, reuse: list, out: Path) -> dict:
    from firmware import convert, csim
    from model.run import load_run
    from quant import qmodel

    float_dir, q_dir, times = train_regime(cfg, out / "data" / "train_clean.h5", cell, reuse)
    runs = {"float": load_run(float_dir), "quantized": load_run(q_dir, load_encoder=qmodel.load_qencoder)}
    runs["float_reference"] = np.load(float_dir / "reference.npy")
    runs["quantized_reference"] = np.load(q_dir / "reference.npy")
    hls_model = None
    if "firmware" in s["models"]:
        t0 = time.time()
        spec = convert.FirmwareSpec.from_config(cfg["firmware"])
        hls_model = convert.convert(runs["quantized"].encoder, spec, cell / "hls")
        csim.ensure_compiled(hls_model)
        times["convert_compile_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    rows = []
    for c in cubes:
        rows += evaluate_cube(c, runs, s["models"], hls_model, int(s["firmware_patterns"]))
    times["evaluate_s"] = round(time.time() - t0, 1)
    quant = json.loads((q_dir / "quant.json").read_text())
    return {"runs": {"float": str(float_dir), "quantized": str(q_dir), "float_val_loss": _val_loss(float_dir),
                     "quantized_val_loss": quant.get("best_val_loss"), "sparsity": quant.get("sparsity")},
            "rows": rows, "times_s": times}


def _val_loss(run_dir: Path):
    done = run_dir / "DONE"
    return json.loads(done.read_text()).get("best_val_loss") if done.exists() else None


def run_baseline_cell(cfg: dict, cubes: list) -> dict:
    """py4DSTEM on every test cube; a "skipped" cell (with the reason) when it is not installed."""
    from model import baseline
    from model.data_io import open_cube
    from model.evaluate import truth_maps
    from model.strain import mae

    ok, why = baseline.available()
    if not ok:
        return {"status": "skipped", "reason": why, "rows": []}
    rows = []
    t0 = time.time()
    for c in cubes:
        base = {k: c[k] for k in ("label", "level", "seed")}
        with open_cube(c["path"]) as cube:
            if cube.ground_truth is None:  # the baseline has no label-free loss: nothing to report
                rows.append({**base, "model": BASELINE, "source": BASELINE, "mae": None, "loss": None,
                             "note": f"{c['path']}: no ground truth in this cube: MAE refused"})
                continue
            maps, info = baseline.baseline_maps(cube)
            truth = truth_maps(cube.ground_truth)
        rows.append({**base, "model": BASELINE, "source": f"py4DSTEM {why}", "mae": mae(maps, truth), "loss": None,
                     "mae_p4_get_strain": mae(info["p4_maps"], truth), "failed_fraction": info["failed_fraction"],
                     "note": None})
    return {"rows": rows, "params": baseline.BaselineParams().__dict__,
            "times_s": {"evaluate_s": round(time.time() - t0, 1)}, "version": why}


# ----------------------------------------------------------------------------- the study

def run_study(config, out: Path | None = None, jobs: int = 1, extra_cubes=(), progress: bool = True,
              reuse_runs: bool = True, root: Path = Path(".")) -> dict:
    """Run (or resume) the whole study; returns the summary that report.md is written from."""
    from model import train
    from model.config import load_config

    cfg = load_config(config) if not isinstance(config, dict) else copy.deepcopy(config)
    s = settings(cfg)
    out = Path(out) if out is not None else Path(root) / "reports" / f"robustness-{cfg['name']}"
    out.mkdir(parents=True, exist_ok=True)
    key = fingerprint(cfg, s)
    stamp = out / "study.json"
    if stamp.exists() and json.loads(stamp.read_text())["key"] != key:
        raise UserError(f"{out}: a study with other settings (data, model, quantization, test levels, seeds or "
                        "models) is there; choose another --out or delete it")
    write_json(stamp, {"key": key, "config": cfg})

    data = out / "data"
    train_cube = data / "train_clean.h5"
    data.mkdir(parents=True, exist_ok=True)
    if not train_cube.exists():
        train.simulate_training_sample(cfg, train_cube, progress=progress)
    cubes = test_cubes(cfg, s, data, progress) + external_cubes(extra_cubes)

    cells = list(s["regimes"])
    if s["baseline"]:
        cells.append({"name": BASELINE, "mode": BASELINE, "levels": []})
    reuse = [str(Path(root) / "runs" / cfg["name"])] if reuse_runs else []
    results, todo = {}, []
    for regime in cells:
        done = out / "cells" / regime["name"] / "result.json"
        prev = json.loads(done.read_text()) if done.exists() else None
        if prev and prev["status"] in ("done", "skipped") and prev["key"] == key and _same_cubes(prev, cubes):
            results[regime["name"]] = prev  # finished before: never recomputed
        else:
            todo.append(regime)
    if todo:
        print(f"robustness: {len(todo)} cell(s) to run, {len(results)} finished before; {jobs} job(s)", flush=True)
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress, dynamic_ncols=True)
    args = [(cfg, regime, str(out), cubes, s, key, reuse) for regime in todo]
    if jobs <= 1 or len(todo) <= 1:
        for a in args:
            results[a[1]["name"]] = _report_cell(run_cell(*a), bar)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        # spawn, not fork: TensorFlow's threads do not survive a fork.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_cell, *a): a[1] for a in args}
            for f in as_completed(futures):
                regime = futures[f]
                try:
                    res = f.result()
                except (BrokenProcessPool, Exception) as e:  # the worker itself died (e.g. out of memory)
                    res = {"regime": regime, "key": key, "status": "failed", "error": f"{type(e).__name__}: {e}",
                           "traceback": traceback.format_exc(), "rows": []}
                    cell = out / "cells" / regime["name"]
                    cell.mkdir(parents=True, exist_ok=True)
                    write_json(cell / "result.json", res)
                results[regime["name"]] = _report_cell(res, bar)
    bar.close()
    ordered = {c["name"]: results[c["name"]] for c in cells}
    summary = write_outputs(out, cfg, s, cubes, ordered)
    print(format_findings(summary))
    print(f"wrote {out}/report.md")
    return summary


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


# ----------------------------------------------------------------------------- aggregation

def long_rows(cells: dict) -> list[dict]:
    """One flat row per cell x cube x model (results.csv)."""
    rows = []
    for name, res in cells.items():
        for r in res.get("rows", []):
            row = {"regime": name, "model": r["model"], "cube": r["label"], "level": r["level"], "seed": r["seed"],
                   "source": r.get("source")}
            for k in MAP_KEYS:
                row[f"mae_{k}"] = (r["mae"] or {}).get(k)
            row["loss"] = r.get("loss")
            rows.append(row)
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and spread (std over seeds, population) per regime x model x cube label."""
    groups = {}
    for r in rows:
        groups.setdefault((r["regime"], r["model"], r["cube"]), []).append(r)
    out = []
    for (regime, model, cube), rs in groups.items():
        row = {"regime": regime, "model": model, "cube": cube, "level": rs[0]["level"], "n_seeds": len(rs),
               "source": rs[0]["source"]}
        for k in [f"mae_{m}" for m in MAP_KEYS] + ["loss"]:
            vals = [r[k] for r in rs if r[k] is not None]
            row[k] = float(np.mean(vals)) if vals else None
            row[k + "_std"] = float(np.std(vals)) if vals else None
        out.append(row)
    return out


def _lookup(summary_rows, regime, model, cube, key):
    for r in summary_rows:
        if r["regime"] == regime and r["model"] == model and r["cube"] == cube:
            return r.get(key), r.get(key + "_std")
    return None, None


# ----------------------------------------------------------------------------- findings

def findings(s: dict, cells: dict, agg: list[dict], cube_labels: list[str]) -> dict:
    """The study's questions answered in numbers (None where the data to answer is missing)."""
    levels = [f"w={w:g}" for w in s["test_levels"]]
    done = [n for n, c in cells.items() if c["status"] == "done" and n != BASELINE]
    model = next((m for m in ("firmware", "quantized", "float") if m in s["models"]), "float")

    def score(regime, m, cube):  # mean of the exx and eyy MAE: the strain the study is about
        a, _ = _lookup(agg, regime, m, cube, "mae_exx")
        b, _ = _lookup(agg, regime, m, cube, "mae_eyy")
        return None if a is None or b is None else (a + b) / 2

    def spread(regime, m, cube):
        a = _lookup(agg, regime, m, cube, "mae_exx")[1]
        b = _lookup(agg, regime, m, cube, "mae_eyy")[1]
        return None if a is None or b is None else (a + b) / 2

    out = {"model": model, "levels": levels}
    fixed = sorted([n for n in done if n.startswith("fixed-")], key=lambda n: float(n.split("-")[1]))
    # (1) higher training noise trains worse: on clean test scans, and on average over all levels.
    if len(fixed) >= 2:
        w = [float(n.split("-")[1]) for n in fixed]
        clean = [score(n, "float", levels[0]) for n in fixed]
        avg = [np.mean([score(n, "float", lv) for lv in levels]) if all(score(n, "float", lv) is not None for lv in levels)
               else None for n in fixed]
        out["q1"] = {"train_levels": w, "mae_on_lowest_test_level": clean, "mae_mean_over_levels": avg,
                     "corr_lowest": _corr(w, clean), "corr_mean": _corr(w, avg)}
    # (2) noise injection improves robustness: fixed-0 vs the best noisy regime at the noisiest level.
    if fixed and float(fixed[0].split("-")[1]) == 0.0 and len(done) >= 2:
        hi = levels[-1]
        noisy = [n for n in done if n != fixed[0] and score(n, model, hi) is not None]
        if noisy and score(fixed[0], model, hi) is not None:
            best = min(noisy, key=lambda n: score(n, model, hi))
            out["q2"] = {"level": hi, "no_injection": score(fixed[0], model, hi), "best_regime": best,
                         "best": score(best, model, hi),
                         "degradation_no_injection": _ratio(score(fixed[0], model, hi), score(fixed[0], model, levels[0])),
                         "degradation_best": _ratio(score(best, model, hi), score(best, model, levels[0]))}
    # (3) training at the test's own level is the best trade-off of loss, MAE and spread.
    per_level = []
    for w, lv in zip(s["test_levels"], levels):
        cand = [n for n in fixed if score(n, model, lv) is not None]
        if not cand:
            continue
        own = min(cand, key=lambda n: abs(float(n.split("-")[1]) - w))
        by = {"mae": min(cand, key=lambda n: score(n, model, lv)),
              "spread": min(cand, key=lambda n: spread(n, model, lv) or 0),
              "loss": min(cand, key=lambda n: _lookup(agg, n, model, lv, "loss")[0] or np.inf)}
        rank = sorted(cand, key=lambda n: score(n, model, lv)).index(own) + 1
        per_level.append({"level": lv, "own_regime": own, "own_rank_by_mae": rank, "of": len(cand), **{
            f"best_by_{k}": v for k, v in by.items()}})
    out["q3"] = per_level
    # Which regime to deploy: lowest mean exx/eyy MAE over all test levels, for the deployed model.
    ranked = []
    for n in done:
        vals = [score(n, model, lv) for lv in levels]
        if all(v is not None for v in vals):
            ranked.append((float(np.mean(vals)), float(np.max(vals)), n))
    ranked.sort()
    out["ranking"] = [{"regime": n, "mean": m, "worst": x} for m, x, n in ranked]
    out["deploy"] = ranked[0][2] if ranked else None
    # The targets against py4DSTEM, for the deployed regime.
    if out["deploy"] and BASELINE in cells and cells[BASELINE]["status"] == "done":
        d = out["deploy"]
        per = []
        for lv in levels:
            fw, p4, fl = score(d, model, lv), score(BASELINE, BASELINE, lv), score(d, "float", lv)
            per.append({"level": lv, model: fw, "float": fl, BASELINE: p4, "ratio_to_py4dstem": _ratio(fw, p4),
                        "ratio_to_float": _ratio(fw, fl)})
        out["targets"] = per
    return out


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else float(a / b)


def _corr(x, y):
    if any(v is None for v in y) or len(set(y)) < 2:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def format_findings(summary: dict) -> str:
    """The findings as Markdown sentences with their numbers."""
    f = summary["findings"]
    m = f["model"]
    lines = []
    q1 = f.get("q1")
    if q1:
        verdict = "holds" if (q1["corr_lowest"] or 0) > 0.5 else "does not hold"
        lines.append(f"1. **Higher training noise trains worse** {verdict} for the clean(est) test scans "
                     f"({f['levels'][0]}): float exx/eyy MAE " + ", ".join(
                         f"{w:g}: {v:.4f}" for w, v in zip(q1["train_levels"], q1["mae_on_lowest_test_level"]))
                     + f" (correlation with the training level {_fmt(q1['corr_lowest'], '.2f')}); averaged over all "
                     f"test levels the correlation is {_fmt(q1['corr_mean'], '.2f')}.")
    else:
        lines.append("1. Higher training noise trains worse: not answerable (fewer than two finished fixed regimes).")
    q2 = f.get("q2")
    if q2:
        verdict = "holds" if q2["best"] < q2["no_injection"] else "does not hold"
        lines.append(f"2. **Noise injection improves robustness** {verdict}: at {q2['level']} the {m} model trained "
                     f"without injected background (fixed-0.00) has exx/eyy MAE {q2['no_injection']:.4f}, the best "
                     f"noisy regime ({q2['best_regime']}) {q2['best']:.4f}; MAE grows from the cleanest to the "
                     f"noisiest test level by x{_fmt(q2['degradation_no_injection'], '.2f')} without injection and "
                     f"x{_fmt(q2['degradation_best'], '.2f')} with it.")
    else:
        lines.append("2. Noise injection improves robustness: not answerable (needs fixed-0.00 and another regime).")
    if f["q3"]:
        own_best = sum(r["own_rank_by_mae"] == 1 for r in f["q3"])
        verdict = "holds" if own_best == len(f["q3"]) else ("holds partly" if own_best else "does not hold")
        parts = [f"{r['level']}: own level {r['own_regime']} ranks {r['own_rank_by_mae']}/{r['of']} by MAE; best by "
                 f"MAE {r['best_by_mae']}, by spread {r['best_by_spread']}, by loss {r['best_by_loss']}"
                 for r in f["q3"]]
        lines.append(f"3. **Training at the test's own level is best** {verdict} ({own_best} of {len(f['q3'])} "
                     "levels, fixed regimes, " + m + " model): " + "; ".join(parts) + ".")
    if f.get("deploy"):
        r0 = f["ranking"][0]
        lines.append(f"\n**Deploy `{f['deploy']}`**: the lowest {m} exx/eyy MAE averaged over the test levels "
                     f"({r0['mean']:.4f}; worst level {r0['worst']:.4f}). Ranking: " + ", ".join(
                         f"{r['regime']} {r['mean']:.4f}" for r in f["ranking"]) + ".")
    if f.get("targets"):
        t = f["targets"]
        hi = t[-1]
        ok_half = hi["ratio_to_py4dstem"] is not None and hi["ratio_to_py4dstem"] <= 0.5
        ok_all = all(r["ratio_to_py4dstem"] is not None and r["ratio_to_py4dstem"] <= 1 for r in t)
        ok_float = all(r["ratio_to_float"] is not None and r["ratio_to_float"] <= 1.1 for r in t)
        lines.append(f"\nTargets ({m} model of `{f['deploy']}` vs py4DSTEM, exx/eyy MAE): at {hi['level']} "
                     f"{_fmt(hi[m], '.4f')} vs {_fmt(hi[BASELINE], '.4f')} = x{_fmt(hi['ratio_to_py4dstem'], '.2f')} "
                     f"(target <= 0.5: {'met' if ok_half else 'NOT met'}); no worse than py4DSTEM at every level: "
                     f"{'met' if ok_all else 'NOT met'} (" + ", ".join(
                         f"{r['level']} x{_fmt(r['ratio_to_py4dstem'], '.2f')}" for r in t) + "); within 10 % of float: "
                     f"{'met' if ok_float else 'NOT met'} (" + ", ".join(
                         f"{r['level']} x{_fmt(r['ratio_to_float'], '.2f')}" for r in t) + ").")
    return "\n".join(lines)


def _fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


# ----------------------------------------------------------------------------- outputs

def write_outputs(out: Path, cfg: dict, s: dict, cubes: list, cells: dict) -> dict:
    rows = long_rows(cells)
    agg = aggregate(rows)
    labels = list(dict.fromkeys(c["label"] for c in cubes))
    summary = {"config": cfg["name"], "settings": {k: v for k, v in s.items()}, "cubes": cubes,
               "cells": {n: {k: v for k, v in c.items() if k != "key"} for n, c in cells.items()},
               "summary": agg}
    summary["findings"] = findings(s, cells, agg, labels)
    write_json(out / "results.json", summary)
    _write_csv(out / "results.csv", rows)
    _write_csv(out / "summary.csv", agg)
    models = [m for m in MODELS if m in s["models"]]
    for m in models:
        heatmaps(out / f"heatmap_{m}.png", agg, cells, m, labels, cfg["name"])
        lines_plot(out / f"lines_{m}.png", agg, cells, m, s, cfg["name"])
    data_io.atomic_write(out / "report.md", report_md(summary, cfg, s, cells, agg, labels, models))
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    data_io.atomic_write(path, buf.getvalue())


def heatmaps(path: Path, agg, cells, model, labels, title) -> None:
    """Regime x test cube heatmaps of each map's MAE and of the cycle loss: mean, and +- spread over seeds.
    py4DSTEM is an extra row of the MAE panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = [n for n in cells if n != BASELINE]
    keys = [f"mae_{k}" for k in MAP_KEYS] + ["loss"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 0.45 * len(regimes) + 2.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        rows = regimes + ([BASELINE] if key != "loss" and BASELINE in cells else [])
        mean = np.full((len(rows), len(labels)), np.nan)
        std = np.full_like(mean, np.nan)
        for i, n in enumerate(rows):
            for j, lv in enumerate(labels):
                mu, sd = _lookup(agg, n, BASELINE if n == BASELINE else model, lv, key)
                if mu is not None:
                    mean[i, j], std[i, j] = mu, sd
        finite = mean[np.isfinite(mean)]
        im = ax.imshow(mean, cmap="viridis", aspect="auto",
                       norm=matplotlib.colors.LogNorm() if finite.size and finite.min() > 0 else None)
        for i in range(len(rows)):
            for j in range(len(labels)):
                if np.isfinite(mean[i, j]):
                    txt = f"{mean[i, j]:.2g}\n±{std[i, j]:.1g}" if key != "mae_theta" else \
                        f"{mean[i, j]:.2f}\n±{std[i, j]:.2f}"
                    ax.text(j, i, txt, ha="center", va="center", fontsize=6.5, color="w")
                elif rows[i] in cells and cells[rows[i]]["status"] == "failed":
                    ax.text(j, i, "failed", ha="center", va="center", fontsize=7, color="r")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel("test noise")
        unit = " (deg)" if key == "mae_theta" else ""
        ax.set_title(f"{key.replace('mae_', 'MAE ')}{unit}" if key != "loss" else "cycle loss (noisy test)",
                     fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{title}: {model} model, mean ± std over seeds (train regime x test level)")
    fig.tight_layout()
    data_io.save_figure(fig, path, dpi=90)


def lines_plot(path: Path, agg, cells, model, s, title) -> None:
    """MAE vs test noise, one line per regime (error bars: spread over seeds), py4DSTEM in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = s["test_levels"]
    labels = [f"w={w:g}" for w in levels]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    names = [n for n in cells if n != BASELINE] + ([BASELINE] if BASELINE in cells else [])
    cmap = plt.get_cmap("viridis")
    for ax, k in zip(axes, MAP_KEYS):
        for i, n in enumerate(names):
            m = BASELINE if n == BASELINE else model
            pts = [_lookup(agg, n, m, lv, f"mae_{k}") for lv in labels]
            if all(p[0] is None for p in pts):
                continue
            mu = [np.nan if p[0] is None else p[0] for p in pts]
            sd = [0 if p[1] is None else p[1] for p in pts]
            style = dict(color="k", lw=2, ls="--") if n == BASELINE else dict(color=cmap(i / max(1, len(names) - 1)))
            ax.errorbar(levels, mu, yerr=sd, marker="o", ms=3, capsize=2, label=n, **style)
        ax.set_xlabel("test noise level w")
        ax.set_title(f"MAE {k}" + (" (deg)" if k == "theta" else ""))
        ax.set_yscale("log")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: {model} model, MAE vs test noise per training regime")
    fig.tight_layout()
    data_io.save_figure(fig, path, dpi=90)


def report_md(summary, cfg, s, cells, agg, labels, models) -> str:
    """The Markdown report: setup, findings in numbers, tables, failures, where the numbers come from."""
    sim = cfg["simulate"]
    lines = [f"# Robustness study: {cfg['name']}", "",
             f"Training regimes x test noise levels. Test scans: {sim['scan'][0]}x{sim['scan'][1]} positions of "
             f"{sim['pattern']}x{sim['pattern']} patterns, {cfg['noise']['counts']:g} electrons per pattern, "
             f"levels {', '.join(labels)}, seeds {s['seeds']} (each seed an unseen sample with its own noise). "
             f"Training: {cfg['train']['epochs']} epochs on the {cfg['train']['sample_kind']} training sample "
             f"({cfg['train']['sample_scan'][0]}x{cfg['train']['sample_scan'][1]} patterns, seed "
             f"{cfg['train']['sample_seed']}); QAT {cfg['quant']['weight_bits']}-bit, "
             f"{100 * cfg['quant']['sparsity']:.0f} % pruned. Strain referenced to the whole scan's mean lattice; "
             "MAE of exx, eyy, exy (strain) and theta (degrees, modulo 60). Spread = std over seeds.", "",
             "## Findings", "", format_findings(summary), "", "## Where the numbers come from", ""]
    fw = [r for c in cells.values() for r in c.get("rows", []) if r["model"] == "firmware"]
    if fw:
        sources = sorted({r["source"] for r in fw})
        exact = min(r["csim_exact_fraction"] for r in fw)
        n_csim = sum(r["csim_patterns"] for r in fw)
        lines.append(f"- firmware: {n_csim} patterns through hls4ml's compiled HLS C++ (C-simulation) in all; "
                     f"lowest bit-exact fraction vs QKeras on any cube {100 * exact:.2f} %. Sources: "
                     + "; ".join(sources) + ". Where the source says qkeras, the firmware MAE is the QKeras "
                     "model's on the full scan, stated only because the C-simulated patterns of that cube were "
                     "bit-exact.")
    if BASELINE in cells:
        b = cells[BASELINE]
        if b["status"] == "done":
            p = b.get("params", {})
            failed = [r.get("failed_fraction", 0) for r in b["rows"] if r.get("mae")]
            lines.append(f"- {BASELINE}: {b.get('version')}, find_Bragg_disks (synthetic disk template of the "
                         "simulator's radius) -> measure/fit origin -> StrainMap choose_basis_vectors (hexagonal "
                         "g1, g2 60 degrees apart) -> fit_basis_vectors; the fitted lattice vectors referenced and "
                         "decomposed by our code (model/baseline.py). Settings (tuned on the training sample, "
                         f"bench/tune_baseline.py): {json.dumps(p)}. Positions without a lattice fit (scored as zero "
                         f"strain): up to {100 * max(failed or [0]):.1f} % per cube.")
        else:
            lines.append(f"- {BASELINE}: {b['status']} ({b.get('reason') or b.get('error')})")
    lines += ["- loss: the cycle loss (both directions) on the noisy test patterns with each run's own learned "
              "reference, at its final blur; label-free, so it is what can be monitored on real data.", ""]
    failed = {n: c for n, c in cells.items() if c["status"] == "failed"}
    if failed:
        lines += ["## Failed cells", ""] + [f"- `{n}`: {c['error']}" for n, c in failed.items()] + [""]
    notes = sorted({r["note"] for c in cells.values() for r in c.get("rows", []) if r.get("note")})
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    for m in models:
        lines += [f"## {m} model: exx MAE (mean ± std over seeds)", "",
                  "| regime | " + " | ".join(labels) + " | loss at " + labels[-1] + " |",
                  "| --- | " + " | ".join("---" for _ in labels) + " | --- |"]
        for n, c in cells.items():
            if n == BASELINE:
                continue
            cells_txt = []
            for lv in labels:
                mu, sd = _lookup(agg, n, m, lv, "mae_exx")
                cells_txt.append("failed" if c["status"] == "failed" else ("n/a" if mu is None else f"{mu:.4f} ± {sd:.4f}"))
            loss = _lookup(agg, n, m, labels[-1], "loss")[0]
            lines.append(f"| {n} | " + " | ".join(cells_txt) + f" | {_fmt(loss, '.4g')} |")
        if BASELINE in cells and cells[BASELINE]["status"] == "done":
            cells_txt = []
            for lv in labels:
                mu, sd = _lookup(agg, BASELINE, BASELINE, lv, "mae_exx")
                cells_txt.append("n/a" if mu is None else f"{mu:.4f} ± {sd:.4f}")
            lines.append(f"| **{BASELINE}** | " + " | ".join(cells_txt) + " | - |")
        lines += ["", f"![heatmap](heatmap_{m}.png)", "", f"![lines](lines_{m}.png)", ""]
    lines += ["## All maps", "", "Every map's mean and spread per regime, model and cube: `summary.csv`; every "
              "seed: `results.csv`; everything: `results.json`.", "", "## Time per cell", "",
              "| cell | status | seconds | stages |", "| --- | --- | --- | --- |"]
    for n, c in cells.items():
        lines.append(f"| {n} | {c['status']} | {c.get('seconds', '-')} | {json.dumps(c.get('times_s', {}))} |")
    return "\n".join(lines) + "\n"
