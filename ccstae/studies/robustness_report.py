"""The robustness study's outputs: rows per cell x cube x model, mean and spread over seeds,
the study's questions answered in numbers, heatmaps, line plots, CSV/JSON and report.md.

Pure functions of the cells' results (ccstae/studies/robustness_eval.py): rerunning them on a
finished study rewrites the report without computing anything.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ccstae.studies.report import _csv_text
from ccstae.studies.robustness_eval import BASELINE, MAP_KEYS, MODELS
from ccstae.core.outputs import atomic_write, save_figure, write_json


def long_rows(cells: dict) -> list[dict]:
    """One flat row per cell x cube x model (results.csv)."""
    rows = []
    for name, res in cells.items():
        for r in res.get("rows", []):
            row = {"regime": name, "model": r["model"], "cube": r["label"], "level": r["level"], "seed": r["seed"],
                   "source": r.get("source")}
            for k in MAP_KEYS:
                row[f"mae_{k}"] = (r["mae"] or {}).get(k)
            for k in SLOPE_KEYS:  # slope and correlation of the maps against the truth
                row[f"slope_{k}"] = ((r.get("calibration") or {}).get("slope") or {}).get(k)
                row[f"r_{k}"] = ((r.get("calibration") or {}).get("correlation") or {}).get(k)
            row["loss"] = r.get("loss")
            row["bragg_counts"] = r.get("bragg_counts")
            rows.append(row)
    return rows


SLOPE_KEYS = ("exx", "eyy")
FLAT = "flat map"  # the reference lattice everywhere: the no-skill line beside every number
FLOOR = "noise floor"  # the shot-noise (Cramer-Rao) floor of a simulated cube: the line below every number
CENTROIDS = "disk centroids"  # what Bragg-disk centroids reach with the same electrons (unbiased)
BAYES = "Bayes bound"  # the floor of any per-pattern method, shrinking ones included (uses the truth's spread)


def flat_rows(cubes: list) -> list[dict]:
    """The MAE a flat map scores on every test cube with ground truth (no model needed)."""
    from ccstae.core.data_io import open_cube
    from ccstae.analysis.evaluate import truth_maps
    from ccstae.physics.strain import flat_map_mae

    rows = []
    for c in cubes:
        with open_cube(c["path"]) as cube:
            gt = cube.ground_truth
        if gt is not None:
            rows.append({**{k: c[k] for k in ("label", "level", "seed")}, "model": FLAT, "source": FLAT,
                         "mae": flat_map_mae(truth_maps(gt)), "loss": None})
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
        for k in [f"mae_{m}" for m in MAP_KEYS] + [f"{s}_{m}" for s in ("slope", "r") for m in SLOPE_KEYS] + \
                ["loss", "bragg_counts"]:
            vals = [r[k] for r in rs if r.get(k) is not None]
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
            flat, floor = score(FLAT, FLAT, lv), score(FLOOR, FLOOR, lv)
            per.append({"level": lv, model: fw, "float": fl, BASELINE: p4, FLAT: flat, FLOOR: floor,
                        CENTROIDS: score(CENTROIDS, CENTROIDS, lv), BAYES: score(BAYES, BAYES, lv),
                        "floor_to_flat": _ratio(floor, flat),
                        "ratio_to_py4dstem": _ratio(fw, p4), "ratio_to_float": _ratio(fw, fl),
                        "ratio_to_flat": _ratio(fw, flat)})
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
                         f"{r['level']} x{_fmt(r['ratio_to_float'], '.2f')}" for r in t) + "). Against a flat map: " +
                     ", ".join(f"{r['level']} x{_fmt(r.get('ratio_to_flat'), '.2f')} (flat {_fmt(r.get(FLAT), '.4f')}"
                               + (f"; noise floor {r[FLOOR]:.4f} = x{r['floor_to_flat']:.2f} flat" if r.get(FLOOR) else "")
                               + (f"; disk centroids {r[CENTROIDS]:.4f}" if r.get(CENTROIDS) else "")
                               + (f"; Bayes bound x{r[BAYES] / r[FLAT]:.2f} flat" if r.get(BAYES) and r.get(FLAT) else "")
                               + ")" for r in t) + " (x1: no skill; no unbiased per-pattern estimator beats the noise floor, and no "
                     "per-pattern method at all the Bayes bound: a target below it cannot be met one pattern at a time).")
    return "\n".join(lines)


def training_health(cells: dict) -> dict:
    """{regime: the float run's health verdict} for every cell whose run left a health.json."""
    out = {}
    for name, c in cells.items():
        path = Path((c.get("runs") or {}).get("float", "")) / "health.json"
        if c.get("runs") and path.exists():
            out[name] = json.loads(path.read_text()).get("verdict", "")
    return out


def _fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


# ----------------------------------------------------------------------------- outputs

def floor_rows(cubes: list) -> list[dict]:
    """What the electrons allow on every simulated test cube (ccstae/analysis/floor.py, from its noise-free
    twin at its dose and background): the Cramer-Rao noise floor (with the Bragg counts), the
    disk-centroid figure and, where the cube holds ground truth, the Bayes bound."""
    from ccstae.core.data_io import open_cube
    from ccstae.analysis.evaluate import truth_maps
    from ccstae.analysis.floor import bayes_floor, cube_noise_floor

    rows = []
    for c in cubes:
        f = cube_noise_floor(c["path"])
        if f is None:
            continue
        same = {**{k: c[k] for k in ("label", "level", "seed")}, "loss": None}
        rows.append({**same, "model": FLOOR, "source": FLOOR, "mae": {k: f[k] for k in ("exx", "eyy", "exy")},
                     "bragg_counts": f["bragg_counts"]})
        rows.append({**same, "model": CENTROIDS, "source": CENTROIDS,
                     "mae": {k: f["centroid"][k] for k in ("exx", "eyy", "exy")}})
        with open_cube(c["path"]) as cube:
            gt = cube.ground_truth
        if gt is not None:
            rows.append({**same, "model": BAYES, "source": BAYES, "mae": bayes_floor(f, truth_maps(gt))})
    return rows


def write_outputs(out: Path, cfg: dict, s: dict, cubes: list, cells: dict) -> dict:
    floors = floor_rows(cubes)
    rows = long_rows(cells) + long_rows({FLAT: {"rows": flat_rows(cubes)}} | {
        n: {"rows": [r for r in floors if r["model"] == n]} for n in (FLOOR, CENTROIDS, BAYES)})
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
    atomic_write(out / "report.md", report_md(summary, cfg, s, cells, agg, labels, models))
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    atomic_write(path, _csv_text(rows))


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
    save_figure(fig, path, dpi=90)


def lines_plot(path: Path, agg, cells, model, s, title) -> None:
    """MAE vs test noise, one line per regime (error bars: spread over seeds), py4DSTEM in black, a
    flat map's MAE dotted grey, the noise floor dash-dotted grey, the disk-centroid MAE dash-dotted brown, the
    Bayes bound dotted red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = s["test_levels"]
    labels = [f"w={w:g}" for w in levels]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    names = [n for n in cells if n != BASELINE] + ([BASELINE] if BASELINE in cells else []) + [FLAT, FLOOR, CENTROIDS,
                                                                                              BAYES]
    cmap = plt.get_cmap("viridis")
    fixed = {BASELINE: dict(color="k", lw=2, ls="--"), FLAT: dict(color="0.5", lw=1.5, ls=":"),
             FLOOR: dict(color="0.5", lw=1.5, ls="-."), CENTROIDS: dict(color="tab:brown", lw=1.5, ls="-."),
             BAYES: dict(color="tab:red", lw=1.5, ls=":")}
    for ax, k in zip(axes, MAP_KEYS):
        for i, n in enumerate(names):
            m = n if n in fixed else model
            pts = [_lookup(agg, n, m, lv, f"mae_{k}") for lv in labels]
            if all(p[0] is None for p in pts):
                continue
            mu = [np.nan if p[0] is None else p[0] for p in pts]
            sd = [0 if p[1] is None else p[1] for p in pts]
            style = fixed.get(n) or dict(color=cmap(i / max(1, len(names) - 1)))
            ax.errorbar(levels, mu, yerr=sd, marker="o", ms=3, capsize=2, label=n, **style)
        ax.set_xlabel("test noise level w")
        ax.set_title(f"MAE {k}" + (" (deg)" if k == "theta" else ""))
        ax.set_yscale("log")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: {model} model, MAE vs test noise per training regime")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


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
                         "decomposed by our code (ccstae/analysis/baseline.py). Settings (tuned on the training sample, "
                         f"bench/tune_baseline.py): {json.dumps(p)}. Positions without a lattice fit (scored as zero "
                         f"strain): up to {100 * max(failed or [0]):.1f} % per cube.")
        else:
            lines.append(f"- {BASELINE}: {b['status']} ({b.get('reason') or b.get('error')})")
    bragg = [(lv, _lookup(agg, FLOOR, FLOOR, lv, "bragg_counts")[0]) for lv in labels]
    if any(b is not None for _, b in bragg):
        lines.append(f"- {FLOOR}: the Cramer-Rao bound on per-pattern exx, eyy, exy from Poisson counts "
                     "(model/health.noise_floor) as the MAE of an unbiased estimator, computed on 16 patterns of each "
                     "cube's noise-free twin at the cube's dose and background. Optimistic (it counts disk-shape "
                     "changes as information): a floor, not a target. Electrons per pattern in the Bragg disks: "
                     + ", ".join(f"{lv} {b:,.0f}" for lv, b in bragg if b is not None) + ".")
        lines.append(f"- {CENTROIDS}: the MAE of measuring the lattice from the centroids of the Bragg disks with "
                     "the same electrons (model/floor.centroid_floor: each centroid as uncertain as its counts and "
                     "background allow, weighted least squares; unbiased). A disk-position method such as py4DSTEM "
                     "sits near it; to beat it an estimator must use the disk edges or a prior on the strain.")
        lines.append(f"- {BAYES}: the Gaussian Bayes error of per-pattern measurements at the noise floor on strains "
                     "spread like the truth's (model/floor.bayes_floor): what even a method that knows the strain "
                     "distribution and shrinks towards it (as a trained encoder does) cannot beat. It uses the truth's "
                     "spread: an evaluation figure, never a training signal.")
    lines += ["- loss: the cycle loss (both directions) on the noisy test patterns with each run's own learned "
              "reference, at its final blur; label-free, so it is what can be monitored on real data.", ""]
    failed = {n: c for n, c in cells.items() if c["status"] == "failed"}
    if failed:
        lines += ["## Failed cells", ""] + [f"- `{n}`: {c['error']}" for n, c in failed.items()] + [""]
    health = training_health(cells)
    if health:
        lines += ["## Training health", "", "What `ccstae train` said of each regime's float run (ccstae/model/health.py, "
                  "no labels): a FLAT run returns flat maps, and its MAE is a flat map's.", ""]
        lines += [f"- `{n}`: {v}" for n, v in health.items()] + [""]
    notes = sorted({r["note"] for c in cells.values() for r in c.get("rows", []) if r.get("note")})
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    for m in models:
        lines += [f"## {m} model: exx MAE (mean ± std over seeds), slope of exx against the truth", "",
                  "| regime | " + " | ".join(labels) + " | loss at " + labels[-1] + " |",
                  "| --- | " + " | ".join("---" for _ in labels) + " | --- |"]
        for n, c in cells.items():
            if n == BASELINE:
                continue
            cells_txt = []
            for lv in labels:
                mu, sd = _lookup(agg, n, m, lv, "mae_exx")
                slope = _lookup(agg, n, m, lv, "slope_exx")[0]
                cells_txt.append("failed" if c["status"] == "failed" else ("n/a" if mu is None else f"{mu:.4f} ± {sd:.4f}"
                                 + ("" if slope is None else f", slope {slope:.2f}")))
            loss = _lookup(agg, n, m, labels[-1], "loss")[0]
            lines.append(f"| {n} | " + " | ".join(cells_txt) + f" | {_fmt(loss, '.4g')} |")
        extra = ([BASELINE] if BASELINE in cells and cells[BASELINE]["status"] == "done" else []) + [FLAT] + \
            [n for n in (FLOOR, CENTROIDS, BAYES) if any(_lookup(agg, n, n, lv, "mae_exx")[0] is not None for lv in labels)]
        for n in extra:
            cells_txt = []
            for lv in labels:
                mu, sd = _lookup(agg, n, n, lv, "mae_exx")
                slope = _lookup(agg, n, n, lv, "slope_exx")[0]
                cells_txt.append("n/a" if mu is None else f"{mu:.4f} ± {sd:.4f}"
                                 + ("" if slope is None else f", slope {slope:.2f}"))
            lines.append(f"| **{n}** | " + " | ".join(cells_txt) + " | - |")
        lines += ["", f"![heatmap](heatmap_{m}.png)", "", f"![lines](lines_{m}.png)", ""]
    lines += ["## All maps", "", "Every map's mean and spread per regime, model and cube: `summary.csv`; every "
              "seed: `results.csv`; everything: `results.json`.", "", "## Time per cell", "",
              "| cell | status | seconds | stages |", "| --- | --- | --- | --- |"]
    for n, c in cells.items():
        lines.append(f"| {n} | {c['status']} | {c.get('seconds', '-')} | {json.dumps(c.get('times_s', {}))} |")
    return "\n".join(lines) + "\n"
