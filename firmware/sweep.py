"""`ccstae sweep` / `make report`: accuracy vs resources over a grid of firmware variants.

A variant is one point of the [sweep] grid: input binning, weight/activation bits, sparsity,
reuse factor, strategy, io type. For each one:

    float run (per input binning; reused)  ->  QAT run (per binning, bits, sparsity; reused)
    -> hls4ml conversion -> resource/latency estimate (firmware/estimate.py; vendor synthesis
    where vitis_hls/vivado_hls is on PATH) -> compile -> firmware C-simulation on the
    evaluation block of every noisy test scan, bit for bit against QKeras -> strain MAE of the
    float, quantized and firmware outputs against the ground truth.

Variants are independent cells. Each one's result is written atomically to
OUT/variants/<name>.json as soon as it is done; a rerun skips variants whose JSON is "done"
for the same settings, and a variant that raises is recorded as "failed" with its error while
the sweep goes on. Finally firmware/report.write_report turns the finished variants into
report.md/.csv/.html and Pareto PNGs, and this module adds how the numbers were made, a goal
check, the failed variants and the throughput question.

Layout: runs/<name>/float and runs/<name>/q<bits>-s<pct> for the config's own binning (the very
runs `make hls` makes, so they are reused), runs/<name>/bin<b>/... for other binnings;
OUT/hls/<variant>/ the HLS projects; OUT/variants/*.json; OUT/report.*.
"""
from __future__ import annotations

import copy
import itertools
import json
import shutil
import time
import traceback
from pathlib import Path

import numpy as np
from tqdm import tqdm

from firmware import convert, csim, report, vendor
from firmware import estimate as E
from firmware import frontend, frontend_estimate
from firmware.pipeline import Stopwatch, ensure_data, ensure_float, ensure_qat
from model.config import load_config
from model.data_io import atomic_write, open_cube, write_json
from model.errors import UserError
from model.evaluate import maps_from_raw, truth_maps
from model.strain import mae

AXES = ("input_binning", "bits", "sparsity", "reuse_factor", "strategy", "io_type")
MODES = ("one_at_a_time", "product")
PREDICT_BATCH = 64  # firmware patterns per predict() call: small enough for a live progress bar


# ----------------------------------------------------------------------------- the grid

def baseline(cfg: dict) -> dict:
    """The variant the config itself describes ([model], [quant], [firmware])."""
    fw = cfg["firmware"]
    return {"input_binning": int(cfg["model"]["input_binning"]), "bits": int(cfg["quant"]["weight_bits"]),
            "sparsity": float(cfg["quant"]["sparsity"]), "reuse_factor": int(fw["reuse_factor"]),
            "strategy": str(fw["strategy"]), "io_type": str(fw["io_type"])}


def variant_name(v: dict) -> str:
    """Stable, file-safe name: the resume key on disk, e.g. b1-q8-s50-rf1-lat-stream."""
    return (f"b{v['input_binning']}-q{v['bits']}-s{int(round(100 * v['sparsity']))}-rf{v['reuse_factor']}"
            f"-{v['strategy'][:3].lower()}-{v['io_type'].replace('io_', '')}")


def grid(cfg: dict) -> list[dict]:
    """The variants of cfg["sweep"], validated, without duplicates, in a stable order.

    one_at_a_time: the baseline, then each listed value of each axis with the other axes at
    the baseline (a study of each knob). product: every combination of the listed values.
    """
    s = cfg["sweep"]
    if s["mode"] not in MODES:
        raise UserError(f"sweep mode {s['mode']!r} is not one of {', '.join(MODES)}")
    for axis in AXES:
        if not isinstance(s[axis], list) or not s[axis]:
            raise UserError(f"sweep {axis} must be a non-empty list (got {s[axis]!r})")
    base = baseline(cfg)
    if s["mode"] == "product":
        raw = [dict(zip(AXES, values)) for values in itertools.product(*(s[a] for a in AXES))]
    else:
        raw = [base] + [dict(base, **{axis: value}) for axis in AXES for value in s[axis]]
    out, seen = [], set()
    for v in raw:
        v = _checked(cfg, v)
        if variant_name(v) not in seen:
            seen.add(variant_name(v))
            out.append(v)
    return out


def _checked(cfg: dict, v: dict) -> dict:
    """One variant with canonical spellings; UserError for any impossible value, before any work."""
    v = dict(v)
    spec = convert.FirmwareSpec.from_config(dict(cfg["firmware"], reuse_factor=v["reuse_factor"],
                                                 strategy=v["strategy"], io_type=v["io_type"]))
    v.update(reuse_factor=spec.reuse_factor, strategy=spec.strategy, io_type=spec.io_type)
    v["bits"], v["sparsity"], v["input_binning"] = int(v["bits"]), float(v["sparsity"]), int(v["input_binning"])
    if not 2 <= v["bits"] <= 32:
        raise UserError(f"sweep bits must be in 2..32 (got {v['bits']})")
    if not 0 <= v["sparsity"] < 1:
        raise UserError(f"sweep sparsity must be in [0, 1) (got {v['sparsity']})")
    b, pattern = v["input_binning"], int(cfg["simulate"]["pattern"])
    if b < 1 or pattern % b:
        raise UserError(f"sweep input_binning {b} does not divide the {pattern}-pixel pattern")
    return v


def variant_config(cfg: dict, v: dict) -> dict:
    """The full config of one variant: the sweep's config with the variant's settings applied."""
    c = copy.deepcopy(cfg)
    c["model"]["input_binning"] = v["input_binning"]
    c["quant"]["weight_bits"] = c["quant"]["activation_bits"] = v["bits"]
    c["quant"]["sparsity"] = v["sparsity"]
    c["firmware"].update(reuse_factor=v["reuse_factor"], strategy=v["strategy"], io_type=v["io_type"])
    return c


def settings(cfg: dict, v: dict) -> dict:
    """Everything a variant's result depends on: a finished JSON is reused only when these match."""
    c = variant_config(cfg, v)
    s = {k: c[k] for k in ("simulate", "noise", "model", "train", "quant", "firmware")}
    s["eval"] = {"eval_scan": cfg["sweep"]["eval_scan"], "testbench": cfg["sweep"]["testbench"]}
    return json.loads(json.dumps(s))  # as it reads back from disk (tuples -> lists)


def run_dirs(cfg: dict, v: dict, root: Path) -> tuple[Path, Path]:
    """(float run, QAT run) of a variant. The config's own binning uses `make hls`'s folders."""
    base = Path(root) / "runs" / cfg["name"]
    if v["input_binning"] != int(cfg["model"]["input_binning"]):
        base = base / f"bin{v['input_binning']}"
    return base / "float", base / f"q{v['bits']}-s{int(round(100 * v['sparsity']))}"


# ----------------------------------------------------------------------------- small helpers

def level_key(w) -> str:
    return f"{float(w):g}"


def eval_block(cfg: dict, tests: dict) -> tuple[tuple[int, int], dict]:
    """The evaluation block (top-left rows x cols of every test scan; [0, 0] = the whole scan):
    ({level: raw patterns (n, Q, Q)}, {level: ground-truth maps of the block}).

    Strain is referenced to the block's own mean, for the truth and every model alike, so the
    block is a smaller test scan in its own right, not a sample of the big one.
    """
    patterns, truths, shape = {}, {}, None
    for w, path in tests.items():
        with open_cube(path) as cube:
            rx, ry = cube.shape[:2]
            er, ec = cfg["sweep"]["eval_scan"]
            er, ec = (er or rx), (ec or ry)
            if not (0 < er <= rx and 0 < ec <= ry):
                raise UserError(f"sweep eval_scan {cfg['sweep']['eval_scan']} is outside the {rx}x{ry} test scan")
            if cube.ground_truth is None:
                raise UserError(f"{path}: the test scan has no ground truth")
            patterns[w] = cube.read_rows(0, er)[:, :ec].reshape(er * ec, *cube.shape[2:])
            truths[w] = truth_maps({k: np.asarray(m)[:er, :ec] for k, m in cube.ground_truth.items()})
            shape = (er, ec)
    return shape, {"patterns": patterns, "truths": truths}


# ----------------------------------------------------------------------------- runs (reused)

# ----------------------------------------------------------------------------- one variant

def build_firmware(qencoder, spec: convert.FirmwareSpec, prj: Path):
    """Convert to an HLS project (a fresh folder: no stale files from an earlier attempt)."""
    shutil.rmtree(prj, ignore_errors=True)
    return convert.convert(qencoder, spec, prj)


def resources(hls_model, spec: convert.FirmwareSpec, prj: Path) -> tuple[dict, dict | None]:
    """(numbers for the report, graph estimate kept beside them when synthesis replaced it).

    The estimate always; vendor synthesis only where a vendor tool is on PATH (never here), and
    then its numbers go in the table, marked as such by their "kind".
    """
    est = E.estimate(hls_model, spec.clock_period_ns)
    if vendor.find_vendor_tool() is None:
        return est, None
    rep = vendor.vendor_synth(prj)
    if rep and rep.get("returncode") == 0 and rep.get("summary"):
        return E.from_vendor_report(rep, spec.clock_period_ns), est
    return est, None


def firmware_outputs(hls_model, x: np.ndarray, progress: bool, desc: str) -> np.ndarray:
    """Compiled C-simulation of x in small batches (it is slow on big inputs), with a progress bar."""
    out = []
    with tqdm(total=len(x), desc=desc, unit="pattern", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        for i in range(0, len(x), PREDICT_BATCH):
            out.append(csim.predict_firmware(hls_model, x[i:i + PREDICT_BATCH]))
            bar.update(len(x[i:i + PREDICT_BATCH]))
    return np.concatenate(out) if out else np.zeros((0, 4))


class FloatCache:
    """Float-run outputs on the evaluation block: one prediction per float run per sweep."""

    def __init__(self):
        self.mae = {}

    def float_mae(self, float_dir: Path, block: dict, shape) -> dict:
        from model.run import load_run

        key = str(float_dir)
        if key not in self.mae:
            run = load_run(float_dir)
            self.mae[key] = {level_key(w): mae(maps_from_raw(
                run.encoder.predict(run.inputs(p), batch_size=256, verbose=0).reshape(*shape, 4)),
                block["truths"][w]) for w, p in block["patterns"].items()}
        return self.mae[key]


def run_variant(cfg: dict, v: dict, root: Path, out: Path, train_cube: Path, shape, block: dict,
                floats: FloatCache, progress: bool) -> dict:
    """Everything for one variant; returns its record (status "done"). Exceptions propagate."""
    from model.run import load_run
    from quant import qmodel

    name = variant_name(v)
    cfg_v = variant_config(cfg, v)
    watch = Stopwatch()
    float_dir, q_dir = run_dirs(cfg, v, root)
    with watch("float run"):
        ensure_float(cfg_v, train_cube, float_dir, progress)
    with watch("QAT run"):
        ensure_qat(cfg_v, float_dir, q_dir, progress)
    q_run = load_run(q_dir, load_encoder=qmodel.load_qencoder)
    qenc = q_run.encoder
    spec = convert.FirmwareSpec.from_config(cfg_v["firmware"])
    prj = out / "hls" / name
    with watch("convert + estimate"):
        hls_model = build_firmware(qenc, spec, prj)
        est, graph_est = resources(hls_model, spec, prj)
    with watch("compile"):
        csim.ensure_compiled(hls_model)

    # Firmware (compiled C++) vs QKeras on every pattern of the evaluation block, every level.
    mae_q, mae_fw, checks, n_fw = {}, {}, [], 0
    with watch("C-simulation"):
        t0 = time.time()
        for w, patterns in block["patterns"].items():
            x = q_run.inputs(patterns)
            q_out = qenc.predict(x, batch_size=256, verbose=0)
            fw_out = firmware_outputs(hls_model, x, progress, f"{name} C-sim w={level_key(w)}")
            n_fw += len(x)
            checks.append(csim.compare_outputs(q_out, fw_out))
            mae_q[level_key(w)] = mae(maps_from_raw(q_out.reshape(*shape, 4)), block["truths"][w])
            mae_fw[level_key(w)] = mae(maps_from_raw(fw_out.reshape(*shape, 4)), block["truths"][w])
            if w == max(block["patterns"]):
                x_hi, fw_hi = x, fw_out
        fw_rate = n_fw / max(time.time() - t0, 1e-9)
        edges = csim.edge_case_patterns(x.shape[1:])
        checks.append(csim.compare_compiled(hls_model, qenc, edges))
        # Bit-exact is not enough: a too-narrow output range clips QKeras and firmware alike.
        # Compare with the float twin (same pruned weights, no quantizers) on the noisiest level.
        saturation = csim.saturation_check(fw_hi, qmodel.float_twin(qenc).predict(x_hi, verbose=0), hls_model)
    n_checked = sum(r.n_patterns for r in checks)
    exact = sum(r.exact_fraction * r.n_patterns for r in checks) / n_checked
    record_csim = {"patterns": n_checked, "exact_fraction": exact,
                   "mismatches": [m for r in checks for m in r.mismatches[:5]][:10],
                   "firmware_patterns_per_s_cpu": fw_rate}
    if cfg["sweep"]["testbench"]:
        with watch("testbench (g++)"):
            convert.make_tb_data(prj, qenc, np.concatenate([x[:100], edges]))
            tb = csim.run_testbench(prj)
            record_csim.update(testbench_patterns=tb.n_patterns, testbench_exact_fraction=tb.exact_fraction)

    return {"status": "done", "name": name, **v, "variant": v, "settings": settings(cfg, v),
            "float_run": str(float_dir), "quant_run": str(q_dir), "project": str(prj),
            "achieved_sparsity": json.loads((q_dir / "quant.json").read_text())["sparsity"],
            "estimate": est, "graph_estimate": graph_est, "csim": record_csim, "exact_fraction": exact,
            # The detector-side front end in front of this encoder, per camera at its raw pixel rate.
            "frontend": frontend_estimate.raw_rate_table(
                frontend.geometry(q_run.preprocess_params(), cfg_v["firmware"]["frontend_pixels_per_clock"]), est),
            "saturation": saturation, "eval_scan": list(shape),
            "mae": mae_fw, "quantized_mae": mae_q, "float_mae": floats.float_mae(float_dir, block, shape),
            "times_s": watch.times}


# ----------------------------------------------------------------------------- the sweep

def load_variant(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # missing or unreadable: recompute


def run_sweep(config, out, root: Path = Path("."), progress: bool = True, compute: bool = True) -> dict:
    """Run (or resume) the sweep of a config; write OUT/variants/*.json and the report.

    compute=False: only (re)write the report from the variants finished so far (safe while
    another process is still running the sweep: variant files are replaced atomically).

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
    root, out = Path(root), Path(out)
    (out / "variants").mkdir(parents=True, exist_ok=True)
    print(f"sweep {cfg['name']}: {len(variants)} variant(s) -> {out}", flush=True)
    if compute:
        write_json(out / "sweep_config.json", cfg)
    train_cube, tests = ensure_data(cfg, root / "data" / cfg["name"], progress)
    shape, block = eval_block(cfg, tests)
    floats = FloatCache()
    records, skipped = [], 0
    for v in tqdm(variants, desc="sweep", unit="variant", disable=not progress, dynamic_ncols=True):
        name = variant_name(v)
        path = out / "variants" / f"{name}.json"
        old = load_variant(path)
        if old and old.get("status") == "done" and old.get("settings") == settings(cfg, v):
            records.append(old)
            skipped += 1
            continue
        if not compute:  # report-only: show earlier failures, leave unfinished variants out
            if old and old.get("status") == "failed" and old.get("settings") == settings(cfg, v):
                records.append(old)
            continue
        print(f"== variant {name}", flush=True)
        t0 = time.time()
        try:
            rec = run_variant(cfg, v, root, out, train_cube, shape, block, floats, progress)
        except Exception as e:  # noqa: BLE001 - one bad cell must not cost the others
            rec = {"status": "failed", "name": name, **v, "variant": v, "settings": settings(cfg, v),
                   "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            print(f"   {name} FAILED: {rec['error']}", flush=True)
        rec["seconds"] = round(time.time() - t0, 1)
        write_json(path, rec)
        records.append(rec)
        _free_memory()

    done = [r for r in records if r["status"] == "done"]
    paths = None
    if done:
        paths = report.write_report(done, out, detectors=s["detectors"], parts=s["parts"])
        _add_sweep_sections(cfg, records, shape, block, Path(paths["md"]), Path(paths["html"]))
    result = {"variants": records, "done": len(done), "failed": len(records) - len(done), "skipped": skipped,
              "report": paths, "seconds": round(time.time() - t_start, 1)}
    if not compute:
        return result
    write_json(out / "sweep.json", {k: v for k, v in result.items() if k != "variants"} |
                      {"variants": [{k: r.get(k) for k in ("name", "status", "error", "seconds")} for r in records]})
    return result


def _free_memory() -> None:
    """Keras keeps every loaded model in its global graph: clear it between variants."""
    try:
        from tensorflow import keras

        keras.backend.clear_session()
    except Exception:  # noqa: BLE001 - only a memory optimisation
        pass


# ----------------------------------------------------------------------------- report additions

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


def _add_sweep_sections(cfg: dict, records: list, shape, block: dict, md_path: Path, html_path: Path) -> None:
    s = cfg["sweep"]
    done = [r for r in records if r["status"] == "done"]
    failed = [r for r in records if r["status"] != "done"]
    n_levels = len(block["patterns"])
    lines = ["", "## How these numbers were made (sweep)", "",
             f"- Config `{cfg['name']}`, grid mode `{s['mode']}`: {len(records)} variant(s), {len(done)} done, "
             f"{len(failed)} failed. Variant names: b<input binning>-q<bits>-s<sparsity %>-rf<reuse>-"
             f"<strategy>-<io type>.",
             f"- Every variant is quantization-aware trained from the float run of its input binning "
             f"(QAT runs are shared by variants with the same binning, bits and sparsity), converted with "
             f"hls4ml (bit_exact) and compiled; resources are "
             f"{'synthesis numbers where marked, else ' if any(r.get('graph_estimate') for r in done) else ''}"
             f"estimates from firmware/estimate.py (no Vivado/Vitis here).",
             f"- Accuracy: the top-left {shape[0]}x{shape[1]} block of each {n_levels} noisy test scan(s) "
             f"(w = {', '.join(level_key(w) for w in block['patterns'])}), {shape[0] * shape[1]} patterns per "
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
        lines.append(f"| {r['name']} | {r['estimate']['clock_mhz']:.0f} | {r['estimate']['ii_cycles']:,} | "
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
