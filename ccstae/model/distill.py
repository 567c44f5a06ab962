"""Self-distillation's targets: each pattern's parameters refined by Gauss-Newton against the
learned reference, and the loss units they are compared in.

Split from ccstae/model/train.py (the training loop, which calls it once, when the distillation
phase begins): the targets are fitted on the patterns as given, never on truth.
"""
from __future__ import annotations

import numpy as np

from ccstae.model import network, refine


def fit_targets(reference: np.ndarray, mask, t: dict, raw_sets: dict, predict_raw, prep, rot_range: float) -> dict:
    """{name: (N, 4) targets} for each raw pattern set in raw_sets ({"train": ..., "val": ...}), plus
    "scale": the loss units. Each pattern's parameters are refined by Gauss-Newton against the
    learned reference from the encoder's own guess (predict_raw; ccstae/model/refine.py), on the
    patterns as given (x_target of the cycle loss: before injected noise)."""
    aligner = refine.Aligner(reference, mask, float(t["blur_end"]))
    out = {}
    for name, raw in raw_sets.items():
        params = []
        for i in range(0, len(raw), 1024):
            part = raw[i:i + 1024]
            guess = network.matrices_from_raw(predict_raw(part), rot_range)
            m, _ = aligner.fit(prep(part), guess, steps=int(t["distill_steps"]))
            params.append(refine.params_from_matrices(m))
        out[name] = np.concatenate(params).astype(np.float32)
    out["scale"] = loss_units(out["train"])
    return out


def loss_units(train_targets: np.ndarray) -> np.ndarray:
    """The distillation loss's unit per parameter (exx, eyy, exy, theta).

    The strain parameters share one, their largest spread over the training targets, so the loss
    reads in strain whatever the specimen's range; rotation gets the geometric mean of that and its
    own spread. Measured on the default preset's QAT (quantized MAE, mean exx/eyy at w = 0 / 0.7;
    theta at w = 0): rotation in strain units 0.0017 / 0.0023, 0.107 deg; each parameter in its own
    spread 0.0012 / 0.0019, 0.19 deg; this 0.0011 / 0.0020, 0.061 deg."""
    spread = np.maximum(train_targets.std(0), 1e-4)
    strain_unit = float(spread[:3].max())
    return np.array([strain_unit] * 3 + [np.sqrt(strain_unit * spread[3])], np.float32)
