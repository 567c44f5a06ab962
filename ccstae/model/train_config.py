"""What training accepts from [train] and [model], and the schedules [train] sets per epoch.

Checked before anything is built (ccstae/model/train.py's Trainer), so a bad config fails in
one line naming the key. The schedules (noise levels per batch, blur per epoch) are pure
functions of the config and the epoch: a resumed run draws what an uninterrupted one did.
"""
from __future__ import annotations

import numpy as np

from ccstae.core.errors import UserError
from ccstae.model import preprocess
from ccstae.physics import lattice

NOISE_MODES = ("none", "fixed", "mixed", "curriculum", "auto")  # auto: chosen from the cube (fit_preprocess)
DISTILL_OFF = {"distill_epochs": 0, "distill_learning_rate": 1e-3, "distill_steps": 4}


def validate_train_config(cfg: dict) -> None:
    t = cfg["train"]
    if t["noise_mode"] not in NOISE_MODES:
        raise UserError(f"config train.noise_mode '{t['noise_mode']}' is not one of {', '.join(NOISE_MODES)}")
    if t["noise_per"] not in ("sample", "batch"):
        raise UserError("config train.noise_per must be 'sample' or 'batch'")
    if not t["noise_levels"] or any(not 0 <= w < 1 for w in t["noise_levels"]):
        raise UserError("config train.noise_levels must be a non-empty list of levels in [0, 1)")
    for key in ("batch_size", "max_patterns"):
        if int(t[key]) < 1:
            raise UserError(f"config train.{key} must be >= 1")
    # QAT of a distilled run distils only (ccstae/quant/qat.py): no cycle epochs then.
    if int(t["epochs"]) < (0 if int(t.get("distill_epochs", 0)) > 0 else 1):
        raise UserError("config train.epochs must be >= 1")
    if not 0 < t["val_fraction"] < 0.5:
        raise UserError("config train.val_fraction must be in (0, 0.5)")
    if not 0 <= t["mask_inner"] < t["mask_outer"] <= 0.5:
        raise UserError("config train: need 0 <= mask_inner < mask_outer <= 0.5")
    m = cfg["model"]
    if m["central_mask"] not in preprocess.CENTRAL_MASKS:
        raise UserError(f"config model.central_mask '{m['central_mask']}' is not one of "
                        f"{', '.join(preprocess.CENTRAL_MASKS)}")
    if m["lattice_symmetry"] not in lattice.SYMMETRIES:
        raise UserError(f"config model.lattice_symmetry '{m['lattice_symmetry']}' is not one of "
                        f"{', '.join(lattice.SYMMETRIES)}")


def noise_levels_for(t: dict, epoch: int, n: int, rng: np.random.Generator):
    """Per-sample noise levels for one batch of size n at this epoch (None: no noise)."""
    mode, levels = t["noise_mode"], np.asarray(t["noise_levels"], float)
    if mode == "auto":
        raise ValueError("noise_mode 'auto' must be resolved from the cube before training "
                         "(train_setup.fit_preprocess)")
    if mode == "none":
        return None
    if mode == "fixed":
        return np.full(n, levels[0])
    if mode == "curriculum":
        # Admit levels in increasing order over the first half of training.
        progress = min(1.0, (epoch + 1) / max(1, t["epochs"] // 2))
        levels = np.sort(levels)[: max(1, int(np.ceil(progress * len(levels))))]
    if t["noise_per"] == "batch":
        return np.full(n, rng.choice(levels))
    return rng.choice(levels, size=n)


def blur_at(t: dict, epoch: int) -> float:
    frac = min(1.0, epoch / max(1, 0.6 * t["epochs"]))
    return float(t["blur_start"] + (t["blur_end"] - t["blur_start"]) * frac)
