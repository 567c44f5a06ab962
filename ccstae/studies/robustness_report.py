"""The robustness study's outputs: rows per cell x cube x model, mean and spread over seeds,
heatmaps, line plots, CSV/JSON and report.md.

Pure functions of the cells' results (ccstae/studies/robustness_eval.py): rerunning them on a
finished study rewrites the report without computing anything. The findings (the questions
answered, and their sentences) are ccstae/studies/robustness_findings.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ccstae.studies.report import csv_text
from ccstae.studies.robustness_eval import BASELINE, MAP_KEYS, MODELS
from ccstae.studies.robustness_findings import BAYES, CENTROIDS, FLAT, FLOOR, findings, fmt, format_findings, lookup
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




def training_health(cells: dict) -> dict:
    """{regime: the float run's health verdict} for every cell whose run left a health.json."""
    out = {}
    for name, c in cells.items():
        path = Path((c.get("runs") or {}).get("float", "")) / "health.json"
        if c.get("runs") and path.exists():
            out[name] = json.loads(path.read_text()).get("verdict", "")
    return out




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
    atomic_write(path, csv_text(rows))


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
                mu, sd = lookup(agg, n, BASELINE if n == BASELINE else model, lv, key)
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
            pts = [lookup(agg, n, m, lv, f"mae_{k}") for lv in labels]
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
    lines = [*setup_lines(cfg, s, labels), "## Findings", "", format_findings(summary), "",
             "## Where the numbers come from", "", *sources_lines(cells, agg, labels)]
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
        lines += model_table(m, cells, agg, labels)
        lines += ["", f"![heatmap](heatmap_{m}.png)", "", f"![lines](lines_{m}.png)", ""]
    lines += ["## All maps", "", "Every map's mean and spread per regime, model and cube: `summary.csv`; every "
              "seed: `results.csv`; everything: `results.json`.", "", "## Time per cell", "",
              "| cell | status | seconds | stages |", "| --- | --- | --- | --- |"]
    for n, c in cells.items():
        lines.append(f"| {n} | {c['status']} | {c.get('seconds', '-')} | {json.dumps(c.get('times_s', {}))} |")
    return "\n".join(lines) + "\n"


def setup_lines(cfg, s, labels) -> list[str]:
    """The report's title and the study's setup: test scans, levels, seeds, training, QAT."""
    sim = cfg["simulate"]
    return [f"# Robustness study: {cfg['name']}", "",
            f"Training regimes x test noise levels. Test scans: {sim['scan'][0]}x{sim['scan'][1]} positions of "
            f"{sim['pattern']}x{sim['pattern']} patterns, {cfg['noise']['counts']:g} electrons per pattern, "
            f"levels {', '.join(labels)}, seeds {s['seeds']} (each seed an unseen sample with its own noise). "
            f"Training: {cfg['train']['epochs']} epochs on the {cfg['train']['sample_kind']} training sample "
            f"({cfg['train']['sample_scan'][0]}x{cfg['train']['sample_scan'][1]} patterns, seed "
            f"{cfg['train']['sample_seed']}); QAT {cfg['quant']['weight_bits']}-bit, "
            f"{100 * cfg['quant']['sparsity']:.0f} % pruned. Strain referenced to the whole scan's mean lattice; "
            "MAE of exx, eyy, exy (strain) and theta (degrees, modulo 60). Spread = std over seeds.", ""]


def sources_lines(cells, agg, labels) -> list[str]:
    """'Where the numbers come from': the firmware's C-simulation, py4DSTEM's settings, the floors, the loss."""
    lines = []
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
    bragg = [(lv, lookup(agg, FLOOR, FLOOR, lv, "bragg_counts")[0]) for lv in labels]
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
    return lines


def model_table(m, cells, agg, labels) -> list[str]:
    """One model's exx MAE (mean +- spread over seeds) and slope per regime and test level, the loss at the
    noisiest level, then py4DSTEM, a flat map and the floors as bold rows."""
    lines = [f"## {m} model: exx MAE (mean ± std over seeds), slope of exx against the truth", "",
             "| regime | " + " | ".join(labels) + " | loss at " + labels[-1] + " |",
             "| --- | " + " | ".join("---" for _ in labels) + " | --- |"]
    for n, c in cells.items():
        if n == BASELINE:
            continue
        cells_txt = []
        for lv in labels:
            mu, sd = lookup(agg, n, m, lv, "mae_exx")
            slope = lookup(agg, n, m, lv, "slope_exx")[0]
            cells_txt.append("failed" if c["status"] == "failed" else ("n/a" if mu is None else f"{mu:.4f} ± {sd:.4f}"
                             + ("" if slope is None else f", slope {slope:.2f}")))
        loss = lookup(agg, n, m, labels[-1], "loss")[0]
        lines.append(f"| {n} | " + " | ".join(cells_txt) + f" | {fmt(loss, '.4g')} |")
    extra = ([BASELINE] if BASELINE in cells and cells[BASELINE]["status"] == "done" else []) + [FLAT] + \
        [n for n in (FLOOR, CENTROIDS, BAYES) if any(lookup(agg, n, n, lv, "mae_exx")[0] is not None for lv in labels)]
    for n in extra:
        cells_txt = []
        for lv in labels:
            mu, sd = lookup(agg, n, n, lv, "mae_exx")
            slope = lookup(agg, n, n, lv, "slope_exx")[0]
            cells_txt.append("n/a" if mu is None else f"{mu:.4f} ± {sd:.4f}"
                             + ("" if slope is None else f", slope {slope:.2f}"))
        lines.append(f"| **{n}** | " + " | ".join(cells_txt) + " | - |")
    return lines
