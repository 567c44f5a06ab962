"""The robustness study's questions answered in numbers, and as Markdown sentences.

Split from ccstae/studies/robustness_report.py (which writes the tables, plots and report.md):
the answers are what a reader of the study wants first, and the only part with a verdict.
Pure functions of the aggregated rows (robustness_report.aggregate) and the cells.
"""
from __future__ import annotations

import numpy as np

from ccstae.studies.robustness_eval import BASELINE

FLAT = "flat map"  # the reference lattice everywhere: the no-skill line beside every number
FLOOR = "noise floor"  # the shot-noise (Cramer-Rao) floor of a simulated cube: the line below every number
CENTROIDS = "disk centroids"  # what Bragg-disk centroids reach with the same electrons (unbiased)
BAYES = "Bayes bound"  # the floor of any per-pattern method, shrinking ones included (uses the truth's spread)


def lookup(summary_rows, regime, model, cube, key):
    """(mean, spread) of key in the aggregated row of regime x model x cube; (None, None) when absent."""
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
        a, _ = lookup(agg, regime, m, cube, "mae_exx")
        b, _ = lookup(agg, regime, m, cube, "mae_eyy")
        return None if a is None or b is None else (a + b) / 2

    def spread(regime, m, cube):
        a = lookup(agg, regime, m, cube, "mae_exx")[1]
        b = lookup(agg, regime, m, cube, "mae_eyy")[1]
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
              "loss": min(cand, key=lambda n: lookup(agg, n, model, lv, "loss")[0] or np.inf)}
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
                     + f" (correlation with the training level {fmt(q1['corr_lowest'], '.2f')}); averaged over all "
                     f"test levels the correlation is {fmt(q1['corr_mean'], '.2f')}.")
    else:
        lines.append("1. Higher training noise trains worse: not answerable (fewer than two finished fixed regimes).")
    q2 = f.get("q2")
    if q2:
        verdict = "holds" if q2["best"] < q2["no_injection"] else "does not hold"
        lines.append(f"2. **Noise injection improves robustness** {verdict}: at {q2['level']} the {m} model trained "
                     f"without injected background (fixed-0.00) has exx/eyy MAE {q2['no_injection']:.4f}, the best "
                     f"noisy regime ({q2['best_regime']}) {q2['best']:.4f}; MAE grows from the cleanest to the "
                     f"noisiest test level by x{fmt(q2['degradation_no_injection'], '.2f')} without injection and "
                     f"x{fmt(q2['degradation_best'], '.2f')} with it.")
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
                     f"{fmt(hi[m], '.4f')} vs {fmt(hi[BASELINE], '.4f')} = x{fmt(hi['ratio_to_py4dstem'], '.2f')} "
                     f"(target <= 0.5: {'met' if ok_half else 'NOT met'}); no worse than py4DSTEM at every level: "
                     f"{'met' if ok_all else 'NOT met'} (" + ", ".join(
                         f"{r['level']} x{fmt(r['ratio_to_py4dstem'], '.2f')}" for r in t) + "); within 10 % of float: "
                     f"{'met' if ok_float else 'NOT met'} (" + ", ".join(
                         f"{r['level']} x{fmt(r['ratio_to_float'], '.2f')}" for r in t) + "). Against a flat map: " +
                     ", ".join(f"{r['level']} x{fmt(r.get('ratio_to_flat'), '.2f')} (flat {fmt(r.get(FLAT), '.4f')}"
                               + (f"; noise floor {r[FLOOR]:.4f} = x{r['floor_to_flat']:.2f} flat" if r.get(FLOOR) else "")
                               + (f"; disk centroids {r[CENTROIDS]:.4f}" if r.get(CENTROIDS) else "")
                               + (f"; Bayes bound x{r[BAYES] / r[FLAT]:.2f} flat" if r.get(BAYES) and r.get(FLAT) else "")
                               + ")" for r in t) + " (x1: no skill; no unbiased per-pattern estimator beats the noise floor, and no "
                     "per-pattern method at all the Bayes bound: a target below it cannot be met one pattern at a time).")
    return "\n".join(lines)


def fmt(v, spec):
    """v formatted by spec, or n/a."""
    return "n/a" if v is None else format(v, spec)
