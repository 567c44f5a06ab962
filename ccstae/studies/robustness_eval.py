"""One cell of the robustness study (ccstae/studies/robustness.py): train (or reuse) a regime's float
and quantized runs, convert the quantized encoder, evaluate float, quantized and firmware on
every test cube; or run the py4DSTEM baseline on the same cubes.

Per test cube and model: strain MAE per map (against ground truth, whole-scan mean reference
as everywhere in ccstae/physics/strain.py) and the self-supervised cycle loss on the noisy test
patterns (CCSTAE.losses with the run's own reference, x_in = x_target = the measured pattern,
blur = the run's final blur: the label-free number a user can compute on real data).

Firmware numbers: hls_model.predict (the HLS C++ compiled by hls4ml) is slow, so it runs on
`firmware_patterns` patterns per test cube (evenly spaced; 0 = all). When that is every
pattern, the firmware MAE comes from C-simulation outputs alone. Otherwise the firmware MAE is
the QKeras model's, reported only where the C-simulation was bit-exact with QKeras on every
pattern it ran, and marked so ("source": "qkeras, bit-exact on N C-sim patterns").
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

MODELS = ("float", "quantized", "firmware")
MAP_KEYS = ("exx", "eyy", "exy", "theta")
BASELINE = "py4DSTEM"


def train_regime(cfg: dict, train_cube, cell: Path, reuse: list[Path]) -> tuple[Path, Path, dict]:
    """A float and a quantized run for this regime's config (ccstae/pipeline/stages.py): reused when
    current in a `reuse` folder (e.g. `make hls`'s runs/<name>/) or in the cell, else made in
    the cell (an interrupted float run resumes from its checkpoint)."""
    from ccstae.pipeline import stages
    from ccstae.quant import qat

    float_run = stages.ensure_float(cfg, train_cube, cell / "float", reuse=[Path(d) / "float" for d in reuse])
    variant = qat.variant_name(qat.quant_config(cfg))
    q_run = stages.ensure_qat(cfg, float_run, cell / variant, reuse=[Path(d) / variant for d in reuse])
    times = {"reused_float_run": float_run.path.parent != cell}
    if float_run.ran:
        times["train_s"] = float_run.seconds
    if q_run.ran:
        times["quantize_s"] = q_run.seconds
    return float_run.path, q_run.path, times


class _FixedOutputs:
    """Stands in for an encoder inside CCSTAE.losses: returns raw outputs computed elsewhere
    (float, QKeras or the C-simulated firmware), so all three get the very same loss."""

    raw = None

    def __call__(self, x, training=False):
        import tensorflow as tf

        return tf.constant(self.raw, tf.float32)


def cycle_loss(raw: np.ndarray, x: np.ndarray, reference: np.ndarray, run, batch: int = 256) -> float:
    """Mean cycle loss (both directions, no penalty) of raw outputs (N, 4) on inputs x (N, H, W, 1).

    x is both the encoder input and the target: on measured data the noisy pattern is all
    there is. The blur is the run's final one and the mask the run's training loss mask
    (ccstae.model.stn.loss_mask: its annulus, clear of the input's central mask), as in validation.
    """
    import tensorflow as tf

    from ccstae.model import network, stn

    enc = _FixedOutputs()
    model = network.CCSTAE(enc, reference)
    t = run.config["train"]
    mask = stn.loss_mask(x.shape[1], t, run.mask)
    sigma = tf.constant(float(t["blur_end"]), tf.float32)
    total = 0.0
    for i in range(0, len(x), batch):
        enc.raw = raw[i:i + batch]
        losses = model.losses(x[i:i + batch], x[i:i + batch], sigma, mask)
        total += float(losses["cycle_ref"] + losses["cycle_pattern"]) * len(enc.raw)
    return total / len(x)


def evaluate_cube(cube_info: dict, runs: dict, models, hls_model, firmware_patterns: int) -> list[dict]:
    """Every model on one test cube -> rows {cube, level, seed, model, mae (or None), loss, ...}."""
    from ccstae.firmware import csim
    from ccstae.core.data_io import open_cube
    from ccstae.analysis.evaluate import calibration, maps_from_raw, truth_maps
    from ccstae.model.run import check_pattern_size
    from ccstae.physics.strain import mae

    with open_cube(cube_info["path"]) as cube:
        check_pattern_size(cube, runs["float"].pattern)
        scan = cube.shape[:2]
        patterns = cube.read_rows(0, scan[0]).reshape(-1, *cube.shape[2:])
        gt = cube.ground_truth
    truth = truth_maps(gt) if gt is not None else None
    rot = runs["float"].rot_range  # the lattice's rotation bound (the quantized run inherits it)

    def scores(raw_outputs) -> dict:
        """The maps' MAE and calibration (slope, correlation) against the truth; None without one."""
        if truth is None:
            return {"mae": None, "calibration": None}
        maps = maps_from_raw(raw_outputs.reshape(*scan, 4), rot_range=rot)
        return {"mae": mae(maps, truth, 2 * rot), "calibration": calibration(maps, truth, 2 * rot)}

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
                     **scores(raw[label]),
                     "loss": cycle_loss(raw[label], inputs[label], runs[label + "_reference"], run),
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
        q_run = runs["quantized"]
        row = {**base, "model": "firmware", "csim_patterns": int(k), "csim_exact_fraction": check.exact_fraction,
               "csim_seconds": round(seconds, 1), "note": no_truth}
        if k == n:  # every pattern C-simulated: the firmware's own numbers
            full = fw
            row["source"] = "csim"
            row.update(scores(full))
            row["loss"] = cycle_loss(full, x, runs["quantized_reference"], q_run)
        elif check.exact:  # QKeras stands in, verified bit-exact on the C-simulated subset
            q = next(r for r in rows if r["model"] == "quantized") if "quantized" in models else None
            row["source"] = f"qkeras, bit-exact on {k} C-sim patterns"
            row.update({k: q[k] for k in ("mae", "calibration")} if q else scores(raw["quantized"]))
            row["loss"] = q["loss"] if q else cycle_loss(raw["quantized"], inputs["quantized"],
                                                         runs["quantized_reference"], q_run)
        else:  # not bit-exact: no full-scan C-simulation to stand on, so no firmware MAE
            row["source"] = f"csim on {k} patterns, NOT bit-exact with QKeras"
            row["mae"] = None
            row["loss"] = cycle_loss(fw, x, runs["quantized_reference"], q_run)
            row["note"] = f"firmware differs from QKeras on {100 * (1 - check.exact_fraction):.2f} % of outputs"
        rows.append(row)
    return rows

def run_model_cell(cfg: dict, cell: Path, cubes: list, s: dict, reuse: list, train_cube) -> dict:
    """A regime's runs, its firmware, and every model on every cube: the cell's result."""
    from ccstae.firmware import convert, csim
    from ccstae.model.run import load_run
    from ccstae.quant import qmodel

    float_dir, q_dir, times = train_regime(cfg, train_cube, cell, reuse)
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
    from ccstae.analysis import baseline
    from ccstae.core.data_io import open_cube
    from ccstae.core.errors import UserError
    from ccstae.analysis.evaluate import calibration, truth_maps
    from ccstae.physics.strain import flat_map_mae, mae

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
            truth = truth_maps(cube.ground_truth)
            try:
                maps, info = baseline.baseline_maps(cube)
            except UserError as e:
                # No lattice visible (very noisy cubes): the baseline fits no position. Score it as
                # it scores unfitted positions, with the reference lattice (a flat map), and say so.
                rows.append({**base, "model": BASELINE, "source": f"py4DSTEM {why}", "mae": flat_map_mae(truth),
                             "loss": None, "mae_p4_get_strain": None, "failed_fraction": 1.0,
                             "note": f"no fit, scored as a flat map: {e}"})
                continue
        rows.append({**base, "model": BASELINE, "source": f"py4DSTEM {why}", "mae": mae(maps, truth), "loss": None,
                     "calibration": calibration(maps, truth),
                     "mae_p4_get_strain": mae(info["p4_maps"], truth), "failed_fraction": info["failed_fraction"],
                     "note": None})
    return {"rows": rows, "params": baseline.BaselineParams().__dict__,
            "times_s": {"evaluate_s": round(time.time() - t0, 1)}, "version": why}
