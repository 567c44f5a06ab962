"""A trained run directory (see ccstae/model/train.py), loaded for inference."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ccstae.model import network, preprocess, stn
from ccstae.core.errors import DataError, UserError


@dataclass
class Run:
    path: Path
    config: dict
    pattern: int  # detector pattern size the run was trained on (before binning)
    binning: int
    scale: float
    encoder: object  # keras.Model
    crop: int = 0
    prep: dict | None = None  # preprocess.json as saved (mask, lattice, measured figures)
    # Set for runs trained on the integer front end's inputs (QAT): their inputs come from it too.
    integer_inputs: preprocess.PreprocessParams | None = None

    @property
    def mask(self) -> dict | None:
        return (self.prep or {}).get("mask")

    @property
    def rot_range(self) -> float:
        """The encoder's rotation bound (radians): hexagonal (+-30 deg) for runs made before it was saved."""
        return float((self.prep or {}).get("lattice", {}).get("rotation_range", network.ROTATION_RANGE))

    def reference_and_mask(self) -> tuple[np.ndarray, np.ndarray]:
        """The learned reference pattern (P, P) and the cycle loss's annulus (P, P, 1): what the
        Gauss-Newton teacher (refine.Aligner) and the error-bar bound (errorbar.Bound) fit on."""
        reference = np.load(self.path / "reference.npy")
        return reference, stn.loss_mask(reference.shape[0], self.config["train"], self.mask)

    def inputs(self, patterns: np.ndarray) -> np.ndarray:
        if self.integer_inputs is not None:
            return preprocess.preprocess_integer(patterns, self.integer_inputs)
        return preprocess.preprocess(patterns, self.scale, self.binning, self.crop, self.mask)

    def preprocess_params(self) -> preprocess.PreprocessParams:
        """The integer front end's parameters of this run (runs saved before it: today's defaults)."""
        return self.integer_inputs or preprocess.PreprocessParams.from_run(self.path, self.config)


def encoder_fingerprint(run_dir) -> str:
    """SHA-256 of a run's saved encoder: what later stages record to know what they were made from."""
    return hashlib.sha256((Path(run_dir) / "encoder.h5").read_bytes()).hexdigest()


def load_run(path, load_encoder=None) -> Run:
    """A finished run. `load_encoder(path)` reads encoder.h5 (quant/ passes its QKeras loader)."""
    from tensorflow import keras

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory")
    if not (path / "DONE").exists() or not (path / "encoder.h5").exists():
        raise UserError(f"{path}: not a finished run (no DONE / encoder.h5); train it or --resume it first")
    pre = json.loads((path / "preprocess.json").read_text())
    if load_encoder is None:
        load_encoder = lambda p: keras.models.load_model(p, compile=False)  # noqa: E731
    encoder = load_encoder(path / "encoder.h5")
    config = json.loads((path / "config.json").read_text())
    integer = preprocess.PreprocessParams.from_run(path, config) if pre.get("input_path") == "counts" else None
    return Run(path, config, int(pre["pattern"]), int(pre["binning"]), float(pre["scale"]), encoder,
               int(pre.get("crop", 0)), pre, integer)


def check_pattern_size(cube, pattern: int) -> None:
    qx, qy = cube.shape[2:]
    if (qx, qy) != (pattern, pattern):
        raise DataError(f"{cube.path}: patterns are {qx}x{qy} but the model was trained on {pattern}x{pattern}")


def predict_raw(predict_fn, cube, inputs_fn, batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """Stream a cube through `predict_fn` (inputs -> raw outputs (n, 4)) -> (Rx, Ry, 4).

    Only one batch of patterns is in memory at a time, so cubes larger than memory work.
    """
    rx, ry = cube.shape[:2]
    out = np.zeros((rx * ry, 4), np.float64)
    with tqdm(total=rx * ry, disable=not progress, desc="predict", unit="pattern", dynamic_ncols=True) as bar:
        for start, batch in cube.iter_batches(batch_size):
            if not np.all(np.isfinite(batch)):
                raise DataError(f"{cube.path}: NaN or infinite values in patterns {start}..{start + len(batch) - 1}")
            out[start:start + len(batch)] = predict_fn(inputs_fn(batch))
            bar.update(len(batch))
    return out.reshape(rx, ry, 4)
