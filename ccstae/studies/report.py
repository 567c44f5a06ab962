"""Accuracy vs resources: one report over firmware variants (bits, sparsity, reuse, io type).

    write_report(variants, "reports/firmware")   # report.md, report.csv, report.html, pareto_*.png

A variant is a dict:

    {"name": "q8-s50", "bits": 8, "sparsity": 0.5, "reuse_factor": 1, "strategy": "Latency",
     "io_type": "io_stream", "estimate": ccstae.firmware.estimate.estimate(hls_model),
     "mae": {w: {"exx": .., "eyy": .., "exy": .., "theta": ..}},   # per noise level w
     "float_mae": {w: {...}},                                      # the float encoder, same scans
     "exact_fraction": 1.0}                                        # outputs bit-equal to QKeras

Every resource number carries its kind ("estimate (hls4ml graph model)" or "synthesis ..."):
the table says which. Files are written atomically (temporary name, then rename).
"""
from __future__ import annotations

import csv
import html
import io
from pathlib import Path

import numpy as np

from ccstae.core.outputs import atomic_write, save_figure

from ccstae.firmware import estimate as E

HEADROOM = 0.7  # a variant "fits" a part when no resource exceeds 70 % (routing, timing closure, the
#                 camera interface and the readout logic need the rest)
DEFAULT_PARTS = ("xcku115",)
ACCURACY_KEYS = ("exx", "eyy")  # the strain components the table and the recommendation rank by


# ----------------------------------------------------------------------------- small helpers



def _levels(variants) -> list:
    levels = set()
    for v in variants:
        levels.update((v.get("mae") or {}).keys())
    return sorted(levels, key=lambda w: (float(str(w).split()[0]), str(w)))  # "0.5", then "0.5 N=1000"...


def _main(w: str) -> bool:
    """A level of the main test set ("0.5"), not an extra one ("0.5 N=1000", "0.5 [preset]")."""
    return " " not in str(w)


def _get_mae(v: dict, w, key: str, which: str = "mae"):
    m = (v.get(which) or {}).get(w) or {}
    return m.get(key)


def mean_mae(v: dict) -> float:
    """The ranking score: mean of exx and eyy MAE over the main set's noise levels (lower is better)."""
    vals = [m.get(k) for w, m in (v.get("mae") or {}).items() if _main(w) for k in ACCURACY_KEYS
            if m.get(k) is not None]
    return float(np.mean(vals)) if vals else float("inf")


def _fmt(x, spec=",.0f"):
    if x is None:
        return "-"
    if isinstance(x, float) and not np.isfinite(x):
        return "-"
    return format(x, spec)


def fits(est: dict, part: str, headroom: float = HEADROOM) -> tuple[bool, str]:
    """(fits, why): every resource at most `headroom` of the part."""
    fr = est["parts"].get(part) or {r: est["total"][r] / n for r, n in E.PARTS[part].items()}
    worst = max(fr, key=lambda r: fr[r] or 0.0)
    ok = all((f or 0.0) <= headroom for f in fr.values())
    return ok, f"largest use {worst} {100 * (fr[worst] or 0):.1f} % of {part} (limit {100 * headroom:.0f} %)"


def recommend(variants, detector, part: str, headroom: float = HEADROOM) -> dict:
    """The most accurate variant that keeps up with `detector` and fits `part` with headroom.

    Returns {"detector", "variant" (name or None), "reasons": [str]}.
    """
    det = E.DETECTORS[detector] if isinstance(detector, str) else detector
    ok, reasons = [], []
    for v in variants:
        est = v["estimate"]
        up, m = E.keeps_up(est, det), E.margin(est, det)
        fit, why = fits(est, part, headroom)
        if up and fit:
            ok.append(v)
        else:
            bad = []
            if not up:
                bad.append(f"{est['patterns_per_s']:,.0f} patterns/s < {det['frame_rate_hz']:,} frames/s "
                           f"(x{m:.2f})")
            if not fit:
                bad.append(why)
            reasons.append(f"{v['name']} excluded: " + "; ".join(bad))
    if not ok:
        return {"detector": det["name"], "variant": None,
                "reasons": reasons + ["no variant keeps up and fits: bin/crop the patterns, raise the clock, "
                                      "or process several streams in parallel"]}
    best = min(ok, key=mean_mae)
    est = best["estimate"]
    why = [f"{best['name']}: lowest mean exx/eyy MAE ({mean_mae(best):.3g}) of the "
           f"{len(ok)} variant(s) that keep up and fit",
           f"throughput {est['patterns_per_s']:,.0f} patterns/s = x{E.margin(est, det):.2f} the "
           f"{det['frame_rate_hz']:,} frames/s of {det['name']} (rate confidence: {det.get('confidence', '?')})",
           fits(est, part, headroom)[1]]
    return {"detector": det["name"], "variant": best["name"], "reasons": why + reasons}


def pareto_front(xs, ys) -> list[int]:
    """Indices of points no other point beats in both x and y (lower is better for both)."""
    idx = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        dominated = any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for x2, y2 in zip(xs, ys))
        if not dominated and np.isfinite(x) and np.isfinite(y):
            idx.append(i)
    return idx


# ----------------------------------------------------------------------------- rows

def rows(variants, parts) -> list[dict]:
    """One flat dict per variant: what report.csv holds."""
    levels = _levels(variants)
    out = []
    for v in variants:
        est = v["estimate"]
        t = est["total"]
        r = {"name": v["name"], "bits": v.get("bits"), "sparsity": v.get("sparsity"),
             "reuse_factor": v.get("reuse_factor"), "strategy": v.get("strategy"), "io_type": v.get("io_type"),
             "kind": est["kind"], "LUT": t.get("LUT"), "FF": t.get("FF"), "DSP": t.get("DSP"),
             "BRAM18": t.get("BRAM18"), "latency_cycles": est.get("latency_cycles"),
             "latency_us": est.get("latency_us"), "ii_cycles": est.get("ii_cycles"),
             "patterns_per_s": est.get("patterns_per_s"), "exact_fraction": v.get("exact_fraction")}
        # Leave-one-out error bars of the estimator (empty for synthesis numbers).
        bars = (est.get("error_bars") or {}) if str(est["kind"]).startswith("estimate") else {}
        for q in E.QUANTITIES:
            r[f"{q}_err_pct"] = None if bars.get(q) is None else round(100 * bars[q], 1)
        for p in parts:
            for res in E.RESOURCES:
                f = (est["parts"].get(p) or {}).get(res)
                r[f"{p}_{res}_pct"] = None if f is None else 100 * f
        for w in levels:
            for k in ("exx", "eyy", "exy", "theta"):
                r[f"mae_{k}_w{w}"] = _get_mae(v, w, k)
            for k in ACCURACY_KEYS:  # slope of the map against the truth: 1 = unbiased
                r[f"slope_{k}_w{w}"] = (((v.get("calibration") or {}).get(w) or {}).get("slope") or {}).get(k)
            for k in ACCURACY_KEYS:
                q, f = _get_mae(v, w, k), _get_mae(v, w, k, "float_mae")
                r[f"rel_{k}_w{w}"] = q / f if q is not None and f else None
        r["mean_mae"] = mean_mae(v)
        out.append(r)
    return out


def csv_text(table: list[dict]) -> str:
    buf = io.StringIO()
    keys = list(table[0].keys()) if table else []
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in table:
        writer.writerow({k: ("" if r[k] is None else r[k]) for k in keys})
    return buf.getvalue()


# ----------------------------------------------------------------------------- plots

PLOTS = (("LUT", "LUT", "pareto_lut.png"), ("DSP", "DSP", "pareto_dsp.png"),
         ("latency_us", "latency (us)", "pareto_latency.png"))


def _plot(table: list[dict], xkey: str, xlabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [float(r[xkey]) if r[xkey] is not None else np.nan for r in table]
    ys = [r["mean_mae"] for r in table]
    front = pareto_front(xs, ys)
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
    ax.scatter(xs, ys, c="tab:gray", label="variants")
    if front:
        order = sorted(front, key=lambda i: xs[i])
        ax.plot([xs[i] for i in order], [ys[i] for i in order], "o-", c="tab:red", label="Pareto front")
    for x, y, r in zip(xs, ys, table):
        if np.isfinite(x) and np.isfinite(y):
            ax.annotate(r["name"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{xlabel} [{table[0]['kind'] if table else ''}]", fontsize=8)
    ax.set_ylabel("mean MAE exx, eyy (all noise levels)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


# ----------------------------------------------------------------------------- markdown / html

def _markdown(variants, table, levels, detectors, parts, recs, calibration) -> str:
    kinds = sorted({r["kind"] for r in table})
    lines = ["# Firmware variants: accuracy vs resources", "",
             f"Resource numbers: {', '.join(kinds)}. Estimates come from ccstae/firmware/estimate.py, a model of "
             "the hardware hls4ml writes, calibrated on one published design (table at the end); they are "
             "not synthesis results.", "",
             "## Resources and throughput", ""]
    pct_cols = [f"% {p}" for p in parts]
    head = ["variant", "LUT", "FF", "DSP", "BRAM18", "latency cycles", "latency us", "II", "patterns/s"] + pct_cols
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def pm(r, q, spec=",.0f"):
        bar = r.get(f"{q}_err_pct")
        return _fmt(r[q], spec) + ("" if bar is None else f" +- {bar:.0f} %")

    for r in table:
        pcts = [" / ".join(_fmt(r[f"{p}_{res}_pct"], ".1f") for res in E.RESOURCES) for p in parts]
        lines.append("| " + " | ".join([r["name"], pm(r, "LUT"), pm(r, "FF"), pm(r, "DSP"), pm(r, "BRAM18"),
                                        pm(r, "latency_cycles"), _fmt(r["latency_us"], ".2f"),
                                        pm(r, "ii_cycles"), _fmt(r["patterns_per_s"])] + pcts) + " |")
    lines += ["", "Part columns: LUT / FF / DSP / BRAM18 in % of the part. '+- x %': the estimator's error bar, "
              "the root mean square of the relative error of that quantity over the published designs of "
              "ccstae/firmware/calibration/designs.toml, each estimated with coefficients fitted on the others "
              "(leave-one-out).", "",
              "## Accuracy", ""]
    head = ["variant", "bits", "sparsity", "reuse", "bit-exact"]
    for w in levels:
        head += [f"exx w={w}", f"eyy w={w}", f"exx/float w={w}", f"eyy/float w={w}", f"slope exx/eyy w={w}"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for v, r in zip(variants, table):
        cells = [r["name"], _fmt(r["bits"], ""), _fmt(r["sparsity"], ".0%") if r["sparsity"] is not None else "-",
                 _fmt(r["reuse_factor"], ""),
                 "-" if r["exact_fraction"] is None else f"{100 * r['exact_fraction']:.1f} %"]
        for w in levels:
            cells += [_fmt(r[f"mae_exx_w{w}"], ".3g"), _fmt(r[f"mae_eyy_w{w}"], ".3g"),
                      _fmt(r[f"rel_exx_w{w}"], ".2f"), _fmt(r[f"rel_eyy_w{w}"], ".2f"),
                      f"{_fmt(r.get(f'slope_exx_w{w}'), '.2f')}/{_fmt(r.get(f'slope_eyy_w{w}'), '.2f')}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Detectors", ""]
    head = ["variant"] + [E.DETECTORS[d]["name"] if isinstance(d, str) else d["name"] for d in detectors]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for v in variants:
        cells = [v["name"]]
        for d in detectors:
            m = E.margin(v["estimate"], d)
            cells.append(f"{'yes' if m >= 1 else 'no'} (x{m:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Frame rates (frames/s): " + ", ".join(
        f"{(E.DETECTORS[d] if isinstance(d, str) else d)['name']} {(E.DETECTORS[d] if isinstance(d, str) else d)['frame_rate_hz']:,}"
        f" ({(E.DETECTORS[d] if isinstance(d, str) else d).get('confidence', '?')} confidence)" for d in detectors), "",
        *_frontend_markdown(variants),
        "## Recommendation per detector", "",
        f"The most accurate variant (lowest mean exx/eyy MAE) that keeps up with the detector and uses at most "
        f"{100 * HEADROOM:.0f} % of every resource of {parts[0]}.", ""]
    for rec in recs:
        lines.append(f"### {rec['detector']}: {rec['variant'] or 'none'}")
        lines += [f"- {why}" for why in rec["reasons"]] + [""]
    lines += ["## Pareto plots", ""] + [f"![{label}]({name})" for _, label, name in PLOTS] + [""]
    lines += ["## Estimator calibration", ""]
    if isinstance(calibration, dict) and "rows" in calibration:
        from ccstae.firmware.calibration import format_table

        lines += ["Published hls4ml syntheses rebuilt with random weights at their published sparsity and converted "
                  "with hls4ml 1.3; each estimated with LUT/FF coefficients fitted on the others (leave-one-out). "
                  "Resources: Vivado synthesis; latency/II: HLS csynth.", "", format_table(calibration), ""]
    elif calibration is not None:
        bars = E.error_bars()
        lines += ["Error bars (root mean square of the leave-one-out relative errors) per quantity over the published designs of "
                  "ccstae/firmware/calibration/designs.toml (table: bench/bench_estimate.py): " + ", ".join(
                      f"{q} {'-' if b is None else f'{100 * b:.0f} %'}" for q, b in bars.items()) + ".", ""]
    else:
        lines += ["(not run)", ""]
    return "\n".join(lines)


def _frontend_markdown(variants) -> list:
    """Front end + encoder at each camera's raw pixel rate (ccstae/firmware/frontend_estimate.py), for
    variants that carry it: the table above counts the encoder fed one binned pixel per clock."""
    from ccstae.firmware import frontend_estimate as FE

    lines = []
    for v in variants:
        if v.get("frontend"):
            lines += [f"### Raw pixel rate, {v['name']}: front end (binning, crop, mask, LUT) + encoder", "",
                      FE.format_table(v["frontend"]), ""]
    if lines:
        lines = ["## Detectors at the raw pixel rate (estimates)", "",
                 "Each camera's raw frame binned onto the variant's encoder input; the front end reads the "
                 "pixels per clock shown (the fewest that keep up and fit the frame's geometry).", ""] + lines
    return lines


def _markdown_to_html(md: str) -> str:
    """The report's markdown (headings, tables, bullets, images, paragraphs) as plain HTML."""
    out, in_table, in_list = [], False, False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{html.escape(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](")
            out.append(f'<img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}">')
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    if in_list:
        out.append("</ul>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:32%}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Firmware report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def write_report(variants: list[dict], out_dir, detectors=tuple(E.DETECTORS), parts=DEFAULT_PARTS,
                 calibration="run") -> dict:
    """Write report.md, report.csv, report.html and pareto_{lut,dsp,latency}.png into out_dir.

    detectors: keys of estimate.DETECTORS or dicts {"name", "frame_rate_hz"}. parts: keys of
    estimate.PARTS; the first is the one recommendations must fit. calibration: "run" (the
    leave-one-out error bars of fit.json), a ccstae.firmware.calibration.calibrate() table, or None (left out).
    Returns {"md", "csv", "html", "png": [...], "recommendations": [...]} (paths as str).
    """
    if not variants:
        raise ValueError("write_report needs at least one variant")
    parts = list(parts)
    for p in parts:
        if p not in E.PARTS:
            raise ValueError(f"unknown part {p!r}; known: {', '.join(E.PARTS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = rows(variants, parts)
    levels = _levels(variants)
    recs = [recommend(variants, d, parts[0]) for d in detectors]
    pngs = []
    for key, label, name in PLOTS:
        _plot(table, key, label, out_dir / name)
        pngs.append(str(out_dir / name))
    md = _markdown(variants, table, levels, list(detectors), parts, recs, calibration)
    atomic_write(out_dir / "report.md", md)
    atomic_write(out_dir / "report.csv", csv_text(table))
    atomic_write(out_dir / "report.html", _markdown_to_html(md))
    return {"md": str(out_dir / "report.md"), "csv": str(out_dir / "report.csv"),
            "html": str(out_dir / "report.html"), "png": pngs, "recommendations": recs}
