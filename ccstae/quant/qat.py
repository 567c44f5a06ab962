"""Quantization-aware training and pruning of a float run's encoder.

Start from the float weights (ccstae/quant/qmodel.py mirrors the encoder in QKeras), wrap the
quantized layers for pruning (ccstae/quant/prune.py), then fine-tune with the float run's very
loss, noise injection, input scale and reference (the decoder side stays float). The best
encoder by self-supervised validation loss is stripped of its pruning wrappers and saved.

A quantized run directory holds what a float one does (ccstae/model/train.py), plus quant.json:
the bit widths, the target and achieved sparsity per layer.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np

from ccstae.model import train, train_setup
from ccstae.core.config import load_config, stale, validate
from ccstae.core.outputs import write_json
from ccstae.core.errors import UserError
from ccstae.model.run import encoder_fingerprint, load_run
from ccstae.quant import prune, qmodel


def quant_config(float_cfg: dict, bits: int | None = None, sparsity: float | None = None,
                 quant_section: dict | None = None) -> dict:
    """The float run's config with [train] set up for fine-tuning from [quant].

    [quant] is the default preset's, overridden by the float run's and then by `quant_section`
    (the pipeline passes its current config's), so a float run made before a [quant] key
    existed still quantizes."""
    cfg = copy.deepcopy(float_cfg)
    cfg["quant"] = {**load_config("default")["quant"], **cfg.get("quant", {}), **(quant_section or {})}
    q = cfg["quant"]
    if bits is not None:
        q["weight_bits"] = q["bias_bits"] = q["activation_bits"] = int(bits)
    if sparsity is not None:
        q["sparsity"] = float(sparsity)
    validate({"quant": q}, where="quantize")  # the schema's ranges (ccstae/core/config.py), after the overrides
    cfg["train"].update(epochs=int(q["epochs"]), learning_rate=float(q["learning_rate"]),
                        blur_start=float(q["blur"]), blur_end=float(q["blur"]))
    if int(cfg["train"].get("distill_epochs", 0)) > 0:
        # A distilled float run is fine-tuned by distillation too (ccstae/model/refine.py): targets
        # refined against its reference, no cycle epochs, no warp in the loop.
        cfg["train"].update(epochs=0, distill_epochs=int(q["epochs"]), distill_learning_rate=float(q["learning_rate"]))
    return cfg


def variant_name(cfg: dict) -> str:
    q = cfg["quant"]
    return f"q{q['weight_bits']}-s{int(round(100 * q['sparsity']))}"


def is_current(q_dir, float_dir, cfg: dict) -> bool:
    """A finished QAT run made from this float run's encoder with `cfg`'s [quant] settings."""
    q_dir = Path(q_dir)
    if not (q_dir / "DONE").exists() or stale(q_dir / "config.json", cfg, ("quant",)):
        return False
    source = json.loads((q_dir / "input.json").read_text())
    return source.get("float_encoder_sha256") == encoder_fingerprint(float_dir)


def quantize(float_run_dir, out_dir, bits=None, sparsity=None, cube_path=None, progress=True,
             quant_section: dict | None = None) -> dict:
    float_run = load_run(float_run_dir)
    cfg = quant_config(float_run.config, bits, sparsity, quant_section)
    q = cfg["quant"]
    out_dir = Path(out_dir)
    if (out_dir / "DONE").exists():
        raise UserError(f"{out_dir}: a finished quantized run is already there (choose another --out)")
    calibration = scan = None
    if cube_path is None:  # the float run's cube, read as it was (calibrated, with its scan shape)
        source = json.loads((float_run.path / "input.json").read_text())
        cube_path, dataset = source["cube"], source.get("dataset")
        calibration, scan = source.get("calibration"), source.get("scan")
    else:
        dataset = None
    spec = qmodel.QuantSpec.from_config(q)
    qenc = qmodel.build_qencoder(float_run.encoder, spec)
    patterns = train_setup.load_patterns(Path(cube_path), cfg["train"], cfg["train"]["seed"], dataset, calibration, scan)
    n_epochs = cfg["train"]["epochs"] + cfg["train"].get("distill_epochs", 0)
    # Trainer.batches_per_epoch, to within the held-out split's rounding (full batches only)
    n_steps = n_epochs * max(1, int(len(patterns) * (1 - cfg["train"]["val_fraction"])) // cfg["train"]["batch_size"])
    hooks, select_from = [], 1
    if q["sparsity"] > 0:
        # Reach the target sparsity by 70 % of fine-tuning, then let the survivors settle;
        # only epochs at the target sparsity compete for the best checkpoint.
        end_step = max(1, int(0.7 * n_steps))
        qenc, step_hook = prune.prune(qenc, q["sparsity"], end_step=end_step)
        hooks.append(step_hook)
        select_from = int(np.ceil((end_step + 1) / (n_steps / n_epochs)))
    reference = np.load(float_run.path / "reference.npy")
    # The encoder's inputs: the integer front end's (ccstae/model/preprocess.py), what the firmware computes.
    integer = dataclasses.replace(float_run.preprocess_params(), input_bits=spec.input_bits,
                                  input_integer=spec.input_integer, count_bits=int(q["count_bits"]))
    trainer = train.Trainer(cfg, patterns, out_dir, encoder=qenc, scale=float_run.scale, prep=float_run.prep,
                            reference=reference, integer_inputs=integer,
                            batch_hooks=hooks, select_from_epoch=select_from,
                            save_encoder=lambda enc, path: qmodel.save_qencoder(prune.strip(enc), path))
    trainer.write_static()
    write_json(out_dir / "input.json", {"cube": str(cube_path), "dataset": dataset, "float_run": str(float_run.path),
                                        "float_encoder_sha256": encoder_fingerprint(float_run.path)})
    result = trainer.fit(progress=progress)
    final = qmodel.load_qencoder(out_dir / "encoder.h5")
    report = {"spec": spec.__dict__ if hasattr(spec, "__dict__") else str(spec),
              "target_sparsity": q["sparsity"], "sparsity": prune.sparsity_report(final),
              "best_val_loss": result["best_val_loss"], "float_best_val_loss": _float_val(float_run)}
    write_json(out_dir / "quant.json", report, default=str)
    return report


def _float_val(run) -> float | None:
    done = run.path / "DONE"
    return json.loads(done.read_text()).get("best_val_loss") if done.exists() else None
