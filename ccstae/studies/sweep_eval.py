"""One variant of `ccstae sweep` (ccstae/studies/sweep.py): from its QAT run to its record.

    hls4ml conversion -> resource/latency estimate (ccstae/firmware/estimate.py; vendor synthesis where
    vitis_hls/vivado_hls is on PATH) -> compile -> firmware C-simulation on the evaluation block
    of every test scan, bit for bit against QKeras -> strain MAE of the float, quantized and
    firmware outputs against the ground truth -> saturation check against the float twin.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ccstae.firmware import convert, csim, vendor
from ccstae.firmware import estimate as E
from ccstae.firmware import frontend, frontend_estimate
from ccstae.pipeline.clock import Stopwatch
from ccstae.studies.sweep_grid import settings, variant_config
from ccstae.core.data_io import open_cube
from ccstae.core.errors import UserError
from ccstae.analysis.evaluate import calibration, maps_from_raw, truth_maps
from ccstae.physics.strain import mae

PREDICT_BATCH = 64  # firmware patterns per predict() call: small enough for a live progress bar


def eval_block(cfg: dict, tests: dict) -> tuple[tuple[int, int], dict]:
    """The evaluation block (top-left rows x cols of every test scan; [0, 0] = the whole scan):
    tests {label: cube path} -> (shape, {"patterns": {label: raw patterns (n, Q, Q)},
    "truths": {label: ground-truth maps of the block}}).

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


def float_mae(float_dir: Path, cfg: dict, tests: dict) -> dict:
    """The float run's MAE on the evaluation block, per test set: a task, once per float run."""
    from ccstae.model.run import load_run

    shape, block = eval_block(cfg, tests)
    run = load_run(float_dir)
    rot = run.rot_range  # the lattice's rotation bound
    return {label: mae(maps_from_raw(run.encoder.predict(run.inputs(p), batch_size=256, verbose=0)
                                     .reshape(*shape, 4), rot_range=rot), block["truths"][label], 2 * rot)
            for label, p in block["patterns"].items()}


def run_variant(cfg: dict, v: dict, name: str, prj: Path, float_run, q_stage, tests: dict, noisiest: str,
                float_maes: dict, progress: bool) -> dict:
    """Firmware, resources and accuracy of one variant of cfg (cfg_v: its own config) from its
    float and QAT stages; returns its record (status "done"). Exceptions propagate."""
    from ccstae.model.run import load_run
    from ccstae.quant import qmodel

    cfg_v = variant_config(cfg, v)
    shape, block = eval_block(cfg, tests)
    watch = Stopwatch()
    q_dir = q_stage.path
    q_run = load_run(q_dir, load_encoder=qmodel.load_qencoder)
    qenc = q_run.encoder
    spec = convert.FirmwareSpec.from_config(cfg_v["firmware"])
    with watch("convert + estimate"):
        hls_model = build_firmware(qenc, spec, prj)
        est, graph_est = resources(hls_model, spec, prj)
    with watch("compile"):
        csim.ensure_compiled(hls_model)

    # Firmware (compiled C++) vs QKeras on every pattern of the evaluation block, every level.
    mae_q, mae_fw, calib_fw, checks, n_fw = {}, {}, {}, [], 0
    with watch("C-simulation"):
        t0 = time.time()
        rot = q_run.rot_range
        for label, patterns in block["patterns"].items():
            x = q_run.inputs(patterns)
            q_out = qenc.predict(x, batch_size=256, verbose=0)
            fw_out = firmware_outputs(hls_model, x, progress, f"{name} C-sim w={label}")
            n_fw += len(x)
            checks.append(csim.compare_outputs(q_out, fw_out))
            mae_q[label] = mae(maps_from_raw(q_out.reshape(*shape, 4), rot_range=rot), block["truths"][label], 2 * rot)
            fw_maps = maps_from_raw(fw_out.reshape(*shape, 4), rot_range=rot)
            mae_fw[label] = mae(fw_maps, block["truths"][label], 2 * rot)
            calib_fw[label] = calibration(fw_maps, block["truths"][label], 2 * rot)
            if label == noisiest:
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
            "float_run": str(float_run.path), "quant_run": str(q_dir), "project": str(prj),
            "achieved_sparsity": json.loads((q_dir / "quant.json").read_text())["sparsity"],
            "estimate": est, "graph_estimate": graph_est, "csim": record_csim, "exact_fraction": exact,
            # The detector-side front end in front of this encoder, per camera at its raw pixel rate.
            "frontend": frontend_estimate.raw_rate_table(
                frontend.geometry(q_run.preprocess_params(), cfg_v["firmware"]["frontend_pixels_per_clock"]), est),
            "saturation": saturation, "eval_scan": list(shape),
            "mae": mae_fw, "calibration": calib_fw, "quantized_mae": mae_q, "float_mae": float_maes,
            "times_s": watch.times}
