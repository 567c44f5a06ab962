"""The sweep's own report sections, appended to ccstae/studies/report.py's report: how the numbers
were made, the goal check per variant, the input-size/throughput question, failed variants."""
from __future__ import annotations

from pathlib import Path

from ccstae.firmware import estimate as E
from ccstae.studies import report
from ccstae.core.outputs import atomic_write


def goals(cfg: dict, rec: dict) -> dict:
    """The issue's targets for one finished variant: {goal: (met, detail)}."""
    s, est = cfg["sweep"], rec["estimate"]
    part = s["parts"][0]
    rate, lat = est.get("patterns_per_s") or 0.0, est.get("latency_us") or float("inf")
    ratios = [rec["mae"][w][k] / rec["float_mae"][w][k] for w in rec["mae"] for k in report.ACCURACY_KEYS
              if rec["float_mae"].get(w, {}).get(k)]
    worst = max(ratios) if ratios else float("inf")
    fit, why = report.fits(est, part)
    return {"throughput": (rate >= s["goal_patterns_per_s"], f"{rate:,.0f}/s"),
            "latency": (lat <= s["goal_latency_us"], f"{lat:.2f} us"),
            "accuracy": (worst <= s["goal_mae_ratio"], f"worst fw/float {worst:.2f}"),
            "fits": (fit, why.split(" (")[0])}


def add_sweep_sections(cfg: dict, records: list, shape, labels: list, md_path: Path, html_path: Path) -> None:
    """How the numbers were made, the goal check, the throughput question and the failed
    variants, appended to report.py's report.md (and its HTML)."""
    s = cfg["sweep"]
    done = [r for r in records if r["status"] == "done"]
    failed = [r for r in records if r["status"] != "done"]
    n_levels = len(labels)
    lines = ["", "## How these numbers were made (sweep)", "",
             f"- Config `{cfg['name']}`, grid mode `{s['mode']}`: {len(records)} variant(s), {len(done)} done, "
             f"{len(failed)} failed. Variant names: b<input binning>-q<bits>-s<sparsity %>-rf<reuse>-"
             f"<strategy>-<io type>.",
             f"- Every variant is quantization-aware trained from the float run of its input binning "
             f"(QAT runs are shared by variants with the same binning, bits and sparsity), converted with "
             f"hls4ml (bit_exact) and compiled; resources are "
             f"{'synthesis numbers where marked, else ' if any(r.get('graph_estimate') for r in done) else ''}"
             f"estimates from ccstae/firmware/estimate.py (no Vivado/Vitis here).",
             f"- Accuracy: the top-left {shape[0]}x{shape[1]} block of each {n_levels} noisy test scan(s) "
             f"(w = {', '.join(labels)}), {shape[0] * shape[1]} patterns per "
             f"level, a smaller test scan in its own right (strain referenced to the block's mean for truth and "
             f"models alike). Float, quantized (QKeras) and firmware MAE are all on this block; the firmware "
             f"MAE comes from the compiled C-simulation's outputs.",
             f"- Bit-exactness: compiled C-simulation (hls_model.predict) vs QKeras on all "
             f"{shape[0] * shape[1] * n_levels} block patterns plus 7 edge cases per variant"
             + (", and the g++ testbench on 100 patterns + edge cases." if s["testbench"] else
                "; the g++ testbench is not run per variant here (`testbench = true` in [sweep] turns it on; "
                "`make hls` runs it on its variant)."), ""]
    lines += ["| variant | bit-exact | saturation | C-sim patterns/s (CPU) | time s | stages (s) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in done:
        sat = "overflow" if r["saturation"]["overflow"] else "ok"
        stages = ", ".join(f"{k} {v:g}" for k, v in r.get("times_s", {}).items())
        lines.append(f"| {r['name']} | {100 * r['exact_fraction']:.2f} % ({r['csim']['patterns']}) | {sat} | "
                     f"{r['csim']['firmware_patterns_per_s_cpu']:.0f} | {r.get('seconds', 0):g} | {stages} |")
    part = s["parts"][0]
    lines += ["", "## Goal check", "",
              f"Targets: >= {s['goal_patterns_per_s']:,} patterns/s at the stated clock, latency <= "
              f"{s['goal_latency_us']:g} us, firmware MAE (exx, eyy, every noise level) <= {s['goal_mae_ratio']:g} x "
              f"float, at most {100 * report.HEADROOM:.0f} % of every resource of {part}.", "",
              "| variant | clock MHz | II cycles | throughput | latency | accuracy | fits | all |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    meeting = []
    for r in done:
        g = goals(cfg, r)
        ok = all(m for m, _ in g.values())
        if ok:
            meeting.append(r["name"])
        cell = lambda k: f"{'yes' if g[k][0] else 'NO'}: {g[k][1]}"  # noqa: E731
        lines.append(f"| {r['name']} | {r['estimate']['clock_mhz']:.0f} | {r['estimate']['ii_cycles']:,}"
                     f"{E.pm(r['estimate'], 'ii_cycles')} | "
                     f"{cell('throughput')} | {cell('latency')} | {cell('accuracy')} | {cell('fits')} | "
                     f"{'yes' if ok else 'no'} |")
    lines += ["", _throughput_text(cfg, done, meeting), ""]
    if failed:
        lines += ["## Failed variants", ""] + [f"- {r['name']}: {r.get('error', '?')}" for r in failed] + [""]
    md = md_path.read_text() + "\n".join(lines)
    atomic_write(md_path, md)
    # report.py renders its own markdown subset; the added sections use the same subset.
    atomic_write(html_path, report._markdown_to_html(md))


def _throughput_text(cfg: dict, done: list, meeting: list) -> str:
    """Where we stand on the input-size question, from the measured II of each binning."""
    s = cfg["sweep"]
    goal = s["goal_patterns_per_s"]
    parts = [f"**Input size and throughput.** An io_stream encoder reads about one input pixel per clock, "
             f"so its II is about the input's pixel count times the reuse factor. At {goal:,} patterns/s the "
             f"II must stay below the clock rate / {goal:,}."]
    by_bin = {}
    for r in done:
        b = r["input_binning"]
        if b not in by_bin or r["estimate"]["ii_cycles"] < by_bin[b]["estimate"]["ii_cycles"]:
            by_bin[b] = r
    pattern = int(cfg["simulate"]["pattern"])
    for b, r in sorted(by_bin.items()):
        est = r["estimate"]
        side = pattern // b
        need_mhz = goal * est["ii_cycles"] / 1e6
        parts.append(f"Binning {b} ({side}x{side} input, {side * side:,} pixels): best II {est['ii_cycles']:,} "
                     f"cycles = {est['patterns_per_s']:,.0f} patterns/s at {est['clock_mhz']:.0f} MHz "
                     f"({r['name']}); {goal:,}/s would need {need_mhz:.0f} MHz at that II.")
    if meeting:
        parts.append(f"Variants meeting every target: {', '.join(meeting)}.")
    else:
        parts.append("No variant of this sweep meets every target.")
    return " ".join(parts)
