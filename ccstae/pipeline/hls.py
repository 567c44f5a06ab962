"""`make hls`: the whole pipeline on one config, each stage skipped when its result exists.

    simulate (training sample + noisy test scans) -> train (float) -> quantize + prune
    -> hls4ml conversion -> C-simulation two ways -> strain accuracy -> summary.json

Outputs: data/<name>/ (cubes named by their key), runs/<name>/float and runs/<name>/<variant>
(runs), hls_projects/<name>-<variant>/ (the HLS project, tb_data, summary.json). Which stages
are current, and why, is ccstae/pipeline/stages.py's business.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ccstae.firmware import centroid_stage, convert, csim, frontend, frontend_estimate
from ccstae.pipeline import core_stage, stages
from ccstae.pipeline.clock import Stopwatch, reference_op_seconds
from ccstae.firmware import estimate as E
from ccstae.model import errorbar, health
from ccstae.core.config import load_config
from ccstae.core.data_io import open_cube
from ccstae.core.outputs import write_json
from ccstae.analysis.evaluate import calibration, calibration_text, maps_from_raw, truth_maps
from ccstae.analysis.floor import skill_lines
from ccstae.core.errors import UserError
from ccstae.model.run import check_pattern_size, load_run
from ccstae.physics.strain import MAPS, mae, save_maps_png
from ccstae.quant import qat, qmodel


def project_dir(config, root: Path = Path(".")) -> Path:
    """The HLS project folder `ccstae hls` makes for a config."""
    cfg = load_config(config) if not isinstance(config, dict) else config
    spec = convert.FirmwareSpec.from_config(cfg["firmware"])
    variant = qat.variant_name(qat.quant_config(cfg))
    return Path(root) / "hls_projects" / f"{cfg['name']}-{variant}-rf{spec.reuse_factor}-{spec.io_type.replace('io_', '')}"


def run_pipeline(config="default", root: Path = Path("."), progress: bool = True, core: str = "both") -> dict:
    """Every stage of `make hls` on one config (ccstae/pipeline/stages.py keeps what is current).
    core: "encoder", "centroid" (the centroid core alone: nothing trained) or "both"."""
    core_stage.check_choice(core)
    cfg = load_config(config) if not isinstance(config, dict) else config
    name = cfg["name"]
    root = Path(root)
    watch = Stopwatch()
    t_start = time.time()
    ref_op = [reference_op_seconds()]  # the machine's speed, at the start and at the end

    with watch("simulate"):
        data = stages.ensure_data(cfg, root / "data" / name, progress)
    if core == "centroid":  # the core needs only the data (ccstae/pipeline/core_stage.py)
        summary = core_stage.core_only(cfg, data, root, watch, level_name)
        print(format_summary(summary))
        return summary
    with watch("train float CC-ST-AE"):
        float_run = stages.ensure_float(cfg, data.outputs["train"], root / "runs" / name / "float", progress)
    with watch("quantize + prune (QAT)"):
        q_run = stages.ensure_qat(cfg, float_run, root / "runs" / name / qat.variant_name(qat.quant_config(cfg)),
                                  progress)
    if core == "both":
        with watch(core_stage.LAP):
            core_result, core_summary = core_stage.ensure_core(cfg, data, root, level_name)

    prj = project_dir(cfg, root)

    def build():
        summary = firmware_stage(cfg, float_run.path, q_run.path, prj, data.outputs["tests"], watch)
        write_json(prj / "summary.json", summary)  # last: it marks the stage finished
        return summary

    fw = stages.ensure_firmware(cfg, data, float_run, q_run, prj, build)
    if fw.ran:
        summary = fw.outputs["result"]
    else:
        print(f"== firmware: {prj} is up to date (delete its stage.json to redo it)")
        summary = json.loads((prj / "summary.json").read_text())
        summary["times_s"] = {**watch.times, "firmware (reused)": 0.0}
    summary["stages"] = {r.stage: {"path": str(r.path), "key": r.key, "ran": r.ran, "seconds": r.seconds}
                         for r in (data, float_run, q_run, fw, *([core_result] if core == "both" else []))}
    summary.pop("centroid", None)
    if core == "both":  # the core beside the encoder, and whether both read the same stream
        summary["centroid"] = dict(core_summary, same_stream=core_stage.same_stream(core_summary, q_run.path))
    summary["times_s"]["total"] = round(time.time() - t_start, 1)
    ref_op.append(reference_op_seconds())
    summary["reference_op_s"] = [round(t, 4) for t in ref_op]
    write_json(prj / "summary.json", summary)
    print(format_summary(summary))
    return summary


def problems(summary: dict) -> list[str]:
    """What makes `make hls` fail: C-simulations not bit-exact, an output range that clips."""
    out = centroid_stage.problems(summary["centroid"]) if "centroid" in summary else []
    if "csim" not in summary:  # the centroid core alone
        return out
    c, sat = summary["csim"], summary["saturation"]
    if c["exact_fraction"] != 1.0:
        out.append(f"C-simulation 1 is not bit-exact ({100 * c['exact_fraction']:.4f} % of outputs)")
    if c["testbench_exact_fraction"] != 1.0:
        out.append(f"C-simulation 2 (testbench) is not bit-exact ({100 * c['testbench_exact_fraction']:.4f} %)")
    for key, what in (("frontend_exact_fraction", "front end, ctypes library"),
                      ("frontend_testbench_exact_fraction", "front end, testbench")):
        if c.get(key, 1.0) != 1.0:
            out.append(f"C-simulation of the {what} from raw counts is not bit-exact ({100 * c[key]:.4f} %)")
    if sat["overflow"]:
        out.append(f"output overflow: {100 * sat['stuck_fraction']:.2f} % of outputs stuck at the "
                   f"{sat['output_type']} limits while the float twin lies beyond them")
    if sat.get("large_deviation"):
        out.append(f"large deviation from the float twin: max {sat['max_abs_deviation']:.3g} "
                   "(the fixed-point ranges clip)")
    return out


def convert_run(q_dir, prj, firmware_overrides: dict, cube=None, root: Path = Path(".")) -> dict:
    """`ccstae convert`: the firmware stage for a quantized run, on the simulated test scans of its
    config (or on a user's cube, then without strain accuracy unless it has ground truth)."""
    q_dir = Path(q_dir)
    if not (q_dir / "quant.json").exists():
        raise UserError(f"{q_dir}: not a quantized run (no quant.json); make one with `ccstae quantize`")
    cfg = json.loads((q_dir / "config.json").read_text())
    cfg["firmware"] = dict(cfg["firmware"], **firmware_overrides)
    float_dir = Path(json.loads((q_dir / "input.json").read_text())["float_run"])
    if cube is not None:
        tests = {"input": Path(cube)}
    else:
        tests = stages.ensure_data(cfg, Path(root) / "data" / cfg["name"], progress=True).outputs["tests"]
    summary = firmware_stage(cfg, float_dir, q_dir, Path(prj), tests, Stopwatch())
    write_json(Path(prj) / "summary.json", summary)
    c = summary["csim"]
    exact = all(c[k] == 1.0 for k in ("exact_fraction", "testbench_exact_fraction", "frontend_exact_fraction",
                                      "frontend_testbench_exact_fraction"))
    return {"text": format_summary(summary), "exact": exact}


def firmware_stage(cfg: dict, float_dir: Path, q_dir: Path, prj: Path, tests: dict, watch: Stopwatch) -> dict:
    """Convert, compile, run every test pattern through float, QKeras and firmware, check both
    C-simulations and the saturation, measure strain accuracy. tests: {noise level: cube}."""
    float_run = load_run(float_dir)
    q_run = load_run(q_dir, load_encoder=qmodel.load_qencoder)
    qenc = q_run.encoder
    spec = convert.FirmwareSpec.from_config(cfg["firmware"])
    with watch("hls4ml convert + compile"):
        hls_model = convert.convert(qenc, spec, prj)
        csim.ensure_compiled(hls_model)
    est = E.estimate(hls_model, spec.clock_period_ns)
    fw_cfg = {**load_config("default")["firmware"], **cfg["firmware"]}  # runs saved before a key existed
    # g++ of the testbench (C-simulation 2) meanwhile, on whatever core C-simulation 1 leaves idle.
    tb_build = ThreadPoolExecutor(1)
    tb_built = tb_build.submit(csim.build_testbench, prj)
    with watch("C-simulation 1: hls4ml compile + predict vs QKeras"):
        raw, checks, tb_inputs, edges = predict_test_patterns(
            tests, float_run, q_run, hls_model, int(cfg["firmware"]["csim_patterns_per_level"]),
            int(fw_cfg["predict_patterns_per_level"]))

    with watch("C-simulation 2: generated testbench (g++)"):
        tb_built.result()  # a build error surfaces here
        tb_build.shutdown()
        convert.make_tb_data(prj, qenc, np.concatenate(tb_inputs + [edges]))
        tb = csim.run_testbench(prj)

    with watch("C-simulation of the front end (raw counts): ctypes library + g++ testbench"):
        front = frontend.check_frontend(q_run, prj, tests, int(fw_cfg["frontend_patterns_per_level"]),
                                        int(fw_cfg["frontend_pixels_per_clock"]), level_name)
        front["estimate"] = frontend_estimate.summary(front["geometry"], est)

    with watch("strain accuracy"):
        scores = score_strain(cfg, tests, raw, float_run, q_run, hls_model, prj)
    return stage_summary(cfg, q_dir, spec, est, checks, tb, front, scores, raw, float_run.rot_range, watch, prj)


def predict_test_patterns(tests: dict, float_run, q_run, hls_model, per_level: int, predict_per_level: int):
    """Every test pattern through the float encoder, the QKeras encoder and the firmware (path 1:
    hls4ml's compiled C++), the last two compared bit for bit where the C++ ran, plus the edge
    cases. Returns ({label: {level: (Rx, Ry, 4) raw outputs}}, [(check, csim result)], the
    testbench's input patterns, the edge-case patterns)."""
    qenc = q_run.encoder
    raw = {"float": {}, "quantized": {}, "firmware": {}}
    checks, tb_inputs = [], []
    for w, path in tests.items():
        out = {label: [] for label in raw}
        checked = []  # (QKeras, firmware) outputs of the patterns through the C++
        with open_cube(path) as cube:
            check_pattern_size(cube, q_run.pattern)
            scan, n = cube.shape[:2], len(cube)
            tb_index = set(np.linspace(0, n - 1, min(per_level, n)).astype(int).tolist())
            n_pred = n if predict_per_level <= 0 else min(predict_per_level, n)
            pred_index = set(np.linspace(0, n - 1, n_pred).astype(int).tolist())
            for start, patterns in cube.iter_batches(1024):  # streamed: any cube size
                x = q_run.inputs(patterns)
                out["float"].append(float_run.encoder.predict(float_run.inputs(patterns), batch_size=256,
                                                              verbose=0))
                q = qenc.predict(x, batch_size=256, verbose=0)
                out["quantized"].append(q)
                # The firmware's outputs: the C++'s where it ran, QKeras's elsewhere (bit-equal
                # wherever checked, or make hls fails; [firmware] predict_patterns_per_level).
                sel = [i - start for i in range(start, start + len(x)) if i in pred_index]
                fw = np.array(q, np.float64)
                if sel:
                    fw[sel] = csim.predict_firmware(hls_model, x[sel])
                    checked.append((q[sel], fw[sel]))
                out["firmware"].append(fw)
                tb_inputs.append(x[[i - start for i in range(start, start + len(x)) if i in tb_index]])
        for label in raw:
            raw[label][w] = np.concatenate(out[label]).reshape(*scan, 4)
        checks.append((level_name(w), csim.compare_outputs(np.concatenate([c[0] for c in checked]),
                                                           np.concatenate([c[1] for c in checked]))))
    edges = csim.edge_case_patterns(x.shape[1:])
    checks.append(("edge cases", csim.compare_compiled(hls_model, qenc, edges)))
    return raw, checks, tb_inputs, edges


def score_strain(cfg: dict, tests: dict, raw: dict, float_run, q_run, hls_model, prj: Path) -> dict:
    """Strain maps of every model scored against the truth (MAE, calibration, error bars, skill lines),
    the firmware's saturation check on the noisiest level, and strain_maps.png of that level."""
    qenc = q_run.encoder
    rot = float_run.rot_range  # the rotation bound follows the lattice symmetry
    accuracy = {label: {} for label in raw}
    calib = {label: {} for label in raw}  # slope and correlation against the truth, beside every MAE
    # RMS of error / error bar per map (1: honest error bars; ccstae/model/errorbar.py)
    error_bars = {"float": {}, "firmware": {}}
    skill = {"flat map": {}, "noise floor": {}, "centroids": {}, "Bayes bound": {}}
    truths = {}
    for w, path in tests.items():
        with open_cube(path) as cube:
            if cube.ground_truth is not None:
                truths[w] = truth_maps(cube.ground_truth)
        for label in raw:
            if w in truths:
                pred = maps_from_raw(raw[label][w], rot_range=rot)
                accuracy[label][level_name(w)] = mae(pred, truths[w], 2 * rot)
                calib[label][level_name(w)] = calibration(pred, truths[w], 2 * rot)
                if label in error_bars:
                    with open_cube(path) as cube:
                        std, _ = errorbar.cube_std_maps(float_run if label == "float" else q_run, cube, raw[label][w])
                    if std is not None:
                        error_bars[label][level_name(w)] = errorbar.error_bar_calibration(pred, truths[w], std, 2 * rot)
        if w in truths:  # what no skill scores, and what shot noise leaves to the best estimator
            for label, m in skill_lines(path, truths[w], 2 * rot).items():
                skill[label][level_name(w)] = m
    # Bit-exact with QKeras is not enough: a too-narrow fixed-point range would clip both
    # alike. Compare the firmware with the float twin of the quantized encoder (same pruned
    # weights, no quantizers) on the noisiest test patterns.
    w_hi = max(tests, key=lambda w: w if isinstance(w, float) else -1)
    with open_cube(tests[w_hi]) as cube:
        n_hi = min(len(cube), 1024)
        x_hi = q_run.inputs(cube.read_patterns(np.arange(n_hi)))
    saturation = csim.saturation_check(raw["firmware"][w_hi].reshape(-1, 4)[:n_hi],
                                       qmodel.float_twin(qenc).predict(x_hi, verbose=0), hls_model)
    maps = {"float": maps_from_raw(raw["float"][w_hi], rot_range=rot),
            "firmware": maps_from_raw(raw["firmware"][w_hi], rot_range=rot)}
    if w_hi in truths:
        maps = {"truth": truths[w_hi], **maps}
    save_maps_png(prj / "strain_maps.png", maps, title=f"{cfg['name']}: strain maps, {level_name(w_hi)}")
    return {"accuracy": accuracy, "calibration": calib, "error_bars": error_bars, "skill_lines": skill,
            "saturation": saturation}


def stage_summary(cfg: dict, q_dir: Path, spec, est: dict, checks: list, tb, front: dict, scores: dict, raw: dict,
                  rot: float, watch: Stopwatch, prj: Path) -> dict:
    """summary.json of the firmware stage: the variant, both C-simulations, the front end, the
    estimate, the scores and the stage times."""
    n_checked = sum(r.n_patterns for _, r in checks)
    exact_fraction = sum(r.exact_fraction * r.n_patterns for _, r in checks) / n_checked
    mismatches = [f"{label}: pattern {i} output {j}: qkeras {q!r} firmware {f!r}"
                  for label, r in checks for i, j, q, f in r.mismatches[:5]]
    summary = {
        "config": cfg["name"],
        "variant": {"name": q_dir.name, "bits": cfg["quant"]["weight_bits"], "sparsity": cfg["quant"]["sparsity"],
                    "achieved_sparsity": json.loads((q_dir / "quant.json").read_text())["sparsity"],
                    "reuse_factor": spec.reuse_factor, "strategy": spec.strategy, "io_type": spec.io_type,
                    "backend": spec.backend, "part": spec.part, "clock_period_ns": spec.clock_period_ns},
        "csim": {"patterns": n_checked, "exact_fraction": exact_fraction, "mismatches": mismatches,
                 "per_check": {label: {"patterns": r.n_patterns, "exact_fraction": r.exact_fraction}
                               for label, r in checks},
                 "testbench_patterns": tb.n_patterns, "testbench_exact_fraction": tb.exact_fraction,
                 "testbench_mismatches": [f"pattern {i} output {j}: qkeras {q!r} firmware {f!r}"
                                          for i, j, q, f in tb.mismatches[:10]],
                 "frontend_patterns": front["patterns"], "frontend_exact_fraction": front["exact_fraction"],
                 "frontend_testbench_patterns": front["testbench_patterns"],
                 "frontend_testbench_exact_fraction": front["testbench_exact_fraction"]},
        "frontend": front,
        "saturation": scores["saturation"],
        # Resources and cycles with their leave-one-out error bars (ccstae/firmware/estimate.py).
        "estimate": {k: est[k] for k in ("kind", "part", "io_type", "clock_period_ns", "latency_cycles", "ii_cycles",
                                         "latency_us", "patterns_per_s", "error_bars", "features")}
                    | {"total": {r: est["total"][r] for r in E.RESOURCES}, "summary": E.summary_line(est)},
        "accuracy": scores["accuracy"],
        "calibration": scores["calibration"],
        "error_bars": scores["error_bars"],
        # Beside every MAE: a flat map's (no skill), the shot-noise (Cramer-Rao) floor, what
        # Bragg-disk centroids reach with the same electrons, and the Bayes bound (ccstae/analysis/floor.py).
        "skill_lines": scores["skill_lines"],
        # ccstae/model/health.py: strain spread across each test scan; below health.FLAT_STRAIN the maps are flat
        "signal": {label: {level_name(w): health.map_signal(r, rot) for w, r in raw[label].items()} for label in raw},
        "accuracy_units": {"exx": "strain", "eyy": "strain", "exy": "strain", "theta": "degrees"},
        "times_s": dict(watch.times),
        "project": str(prj),
    }
    return summary


def _frontend_lines(s: dict) -> list:
    """Per camera: does front end + encoder keep up at the raw pixel rate (estimates)."""
    est = (s.get("frontend") or {}).get("estimate")
    if not est:
        return []
    lines = [f"front end + encoder ({est['kind']}): per camera, raw px/clock needed -> built, keeps up raw/binned, "
             f"largest share of xcku115"]
    for r in est["detectors"]:
        if "total" in r:
            frac = r["part_fraction"]
            worst = max(frac, key=lambda k: frac[k] or 0)
            lines.append(f"  {r['detector']:<24} {r['raw_pixels']}x{r['raw_pixels']} b{r['binning']}: "
                         f"{r['needed_pixels_per_clock']:.2f} -> {r['pixels_per_clock']} px/clock, "
                         f"{r['patterns_per_s']:,.0f} patterns/s, raw {'yes' if r['keeps_up_raw'] else 'NO'}, "
                         f"binned {'yes' if r['keeps_up_binned'] else 'NO'}, {100 * frac[worst]:.1f} % {worst}")
    return lines


def level_name(w) -> str:
    return f"w={w:g}" if isinstance(w, float) else str(w)


LABEL_WIDTH = 13  # the model column of the MAE table ("centroid core")


def format_summary(s: dict) -> str:
    if "variant" not in s:  # the centroid core alone
        return "\n".join(core_stage.format_core_only(s, LABEL_WIDTH, MAPS))
    v, c = s["variant"], s["csim"]
    lines = [f"\n{s['config']}: {v['name']} ({v['bits']}-bit, {100 * v['sparsity']:.0f} % pruned), "
             f"{v['io_type']}, reuse {v['reuse_factor']}, {v['backend']} {v['part']} @ {1000 / v['clock_period_ns']:.0f} MHz",
             f"C-sim 1 (hls4ml predict vs QKeras): {c['patterns']} patterns, {100 * c['exact_fraction']:.2f} % of outputs bit-exact",
             f"C-sim 2 (myproject_test.cpp, g++):  {c['testbench_patterns']} patterns, "
             f"{100 * c['testbench_exact_fraction']:.2f} % bit-exact",
             *([f"front end from raw counts (ccstae_top) vs integer preprocessing + QKeras: ctypes "
                f"{c['frontend_patterns']} patterns {100 * c['frontend_exact_fraction']:.2f} %, testbench "
                f"{c['frontend_testbench_patterns']} patterns {100 * c['frontend_testbench_exact_fraction']:.2f} % "
                f"bit-exact"] if "frontend_patterns" in c else []),
             *_frontend_lines(s),
             f"saturation vs float twin at the noisiest level: {100 * s['saturation']['stuck_fraction']:.2f} % "
             f"of outputs at the {s['saturation']['output_type']} limits, max deviation "
             f"{s['saturation']['max_abs_deviation']:.3g}{'  OVERFLOW' if s['saturation']['overflow'] else ''}",
             f"resources: {s['estimate']['summary']}" if s.get("estimate") else "resources: (not estimated)",
             *(core_stage.lines(s["centroid"], s.get("estimate", {}).get("total")) if "centroid" in s else []),
             "", "strain MAE (theta in degrees) per test noise level w; slope and correlation r of exx/eyy against the truth:",
             f"{'w':>5} {'model':>{LABEL_WIDTH}} " + " ".join(f"{k:>8}" for k in MAPS)]
    fw_signal = {w: v["signal"] for w, v in s.get("signal", {}).get("firmware", {}).items()}
    if fw_signal:
        lines.insert(-2, "signal (firmware strain spread across the scan; flat below "
                     f"{health.FLAT_STRAIN:g}): " + ", ".join(f"{w} {v:.3g}" for w, v in fw_signal.items()))
    if not s["accuracy"]["float"]:
        lines.append("  (no ground truth in the test cubes)")
    for w in s["accuracy"]["float"]:
        for label in ("float", "quantized", "firmware"):
            m = s["accuracy"][label][w]
            cal = s.get("calibration", {}).get(label, {}).get(w)
            lines.append(f"{w:>5} {label:>{LABEL_WIDTH}} " + " ".join(f"{m[k]:8.5f}" if k != "theta" else f"{m[k]:8.3f}" for k in MAPS)
                         + (f"  {calibration_text(cal)}" if cal else ""))
        if centroid_stage.accuracy_line(s.get("centroid", {}), w, LABEL_WIDTH):
            lines.append(centroid_stage.accuracy_line(s["centroid"], w, LABEL_WIDTH))
        eb = s.get("error_bars", {}).get("firmware", {}).get(w)
        if eb:  # RMS of error / error bar: 1 when the firmware's error bars are honest
            lines.append(f"{w:>5} {'error/std':>{LABEL_WIDTH}} " + " ".join(f"{eb[k]:8.2f}" for k in MAPS)
                         + "  (firmware: RMS of error over its error bar, 1 is honest)")
        for label, per_level in s.get("skill_lines", {}).items():
            if w in per_level:
                m = per_level[w]
                lines.append(f"{w:>5} {label:>{LABEL_WIDTH}} " + " ".join(
                    f"{'-':>8}" if k not in m else (f"{m[k]:8.5f}" if k != "theta" else f"{m[k]:8.3f}") for k in MAPS)
                    + (f"  ({m['bragg_counts']:,.0f} e in the Bragg disks)" if "bragg_counts" in m else ""))
    lines.append("\ntimes (s): " + ", ".join(f"{k} {v}" for k, v in s["times_s"].items()))
    if "reference_op_s" in s:  # ccstae/pipeline/clock.py: the same times in units of a fixed op
        op = float(np.mean(s["reference_op_s"]))
        lines.append(f"reference op (1024^2 float32 matmul): {1e3 * s['reference_op_s'][0]:.1f} ms at the start, "
                     f"{1e3 * s['reference_op_s'][1]:.1f} ms at the end; total {s['times_s']['total'] / op:,.0f} ops "
                     f"({', '.join(f'{k} {v / op:,.0f}' for k, v in s['times_s'].items() if k != 'total' and v)})")
    lines.append(f"wrote {s['project']}/summary.json")
    return "\n".join(lines)
