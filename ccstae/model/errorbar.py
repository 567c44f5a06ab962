"""An error bar per pattern: the Cramer-Rao spread of aligning the pattern to the learned
reference, times the encoder's efficiency, measured without labels.

- The spread. x = sqrt(I / s) makes Poisson noise nearly uniform: var(x) = 1 / (4 s e), with
  e the electrons per unit of I. The Fisher information of the alignment (affine entries,
  gain and offset, ccstae/model/refine.py) is then J^T J / var(x), J the reference's image
  gradient warped onto the pattern. Its inverse, carried through the polar decomposition
  to exx, eyy, exy and theta, is the smallest spread any unbiased per-pattern estimator that
  knows the reference can have. It follows the pattern: its dose, its background (through the
  fitted gain), its grain's orientation.
- The encoder's error model. The encoder is not that estimator: its error per map is modelled as
  std^2 = floor^2 + (efficiency x bound)^2, fitted after training on the held-out patterns at
  each training noise level against the distillation targets (errorbars.json in the run; see
  `calibrate`). Targets are the model's own alignments of the patterns before injected noise:
  no ground truth.

The error bars are computed on the host from the patterns: the firmware sends the four
parameters only.
"""
from __future__ import annotations

import numpy as np

from ccstae.model import network, refine
from ccstae.physics import noise, strain
from ccstae.physics.calibration import counting_patterns

STEP = 1e-5  # finite-difference step on the entries of A = M^-1 (the maps are smooth in A)


def pixel_variance(patterns: np.ndarray, scale: float) -> float:
    """var(x) of x = sqrt(I / s) under shot noise: 1 / (4 s e), e electrons per unit of I (from
    the data's count grid, physics/noise.estimate_counts). None for noise-free patterns."""
    flat = np.asarray(patterns, np.float64).reshape(len(patterns), -1)
    electrons = noise.estimate_counts(flat)
    if not electrons:
        return None
    per_unit = electrons / float(np.median(flat.sum(1)))
    return 1.0 / (4.0 * scale * per_unit)


def _maps(m: np.ndarray, m_ref_inv: np.ndarray) -> np.ndarray:
    out = strain.polar_strain(m @ m_ref_inv)
    return np.stack([out[k] for k in strain.MAPS], 1)  # (N, 4)


def bound_std(m: np.ndarray, information: np.ndarray, var_x: float, m_ref: np.ndarray) -> np.ndarray:
    """The Cramer-Rao standard deviation of exx, eyy, exy, theta (N, 4) per pattern: M (N, 2, 2)
    where the information J^T J (N, 6, 6) was taken, the maps referenced to m_ref (2, 2)."""
    cov = np.linalg.inv(information)[:, :4, :4] * var_x  # the affine block, gain and offset marginalised
    a = np.linalg.inv(m)
    ref_inv = np.linalg.inv(m_ref)
    base = _maps(m, ref_inv)
    jac = np.zeros((len(m), 4, 4))
    for k in range(4):
        da = np.zeros((1, 2, 2))
        da.flat[k] = STEP
        d = _maps(np.linalg.inv(a + da), ref_inv) - base
        d[:, 3] = strain.wrap_angle(d[:, 3], 2 * np.pi)
        jac[:, :, k] = d / STEP
    var = np.einsum("nik,nkl,nil->ni", jac, cov, jac)
    return np.sqrt(np.maximum(var, 0.0))


class Bound:
    """The per-pattern bound of one run: its reference and loss annulus, no blur (blur would
    correlate the pixels' noise)."""

    def __init__(self, reference: np.ndarray, mask: np.ndarray):
        self.aligner = refine.Aligner(reference, mask, sigma=0.0)

    def std(self, x: np.ndarray, m: np.ndarray, var_x: float, m_ref: np.ndarray) -> np.ndarray:
        """x (N, P, P, 1) encoder-space patterns (float preprocessing), m (N, 2, 2) the encoder's
        estimate: two Gauss-Newton steps settle gain and offset, the information is taken there."""
        m_fit, _, info = self.aligner.fit(x, m, steps=2, information=True)
        return bound_std(m_fit, info, var_x, m_ref)


def calibrate(model, val_raw, targets, prep, encoder_inputs, noisy, mask, levels, scale: float, seed: int) -> dict:
    """The encoder's error model per map, std^2 = floor^2 + (efficiency x bound)^2, fitted on
    held-out patterns with each training noise level injected, against the distillation targets.

    Two terms because the encoder's error does not follow the bound alone: on the default preset
    its deviation was ~9x the bound at w = 0 and ~3x at w = 0.7, a noise-free part (what a small
    network cannot represent) plus a part that grows with the noise. Each level contributes a
    robust mean square (1.4826 x MAD, squared: a few patterns the encoder gets badly wrong, at a
    grain boundary or a bound, should not set every pattern's bar) and the two terms are fitted
    by non-negative least squares across the levels."""
    from scipy.optimize import nnls

    bound = Bound(model.reference.numpy(), mask)
    m_target = network.matrices_from_params(np.asarray(targets, np.float64))
    m_ref = m_target.mean(0)
    truth_like = _maps(m_target, np.linalg.inv(m_ref))
    rows, per_level = [], {}
    for i, w in enumerate(levels):
        noisy_raw = noisy(val_raw, np.full(len(val_raw), w), np.random.default_rng([seed, 17, i]))
        var_x = pixel_variance(noisy_raw, scale)
        if var_x is None:
            continue
        raw_out = model.encoder.predict(encoder_inputs(noisy_raw), batch_size=256, verbose=0)
        m_enc = network.matrices_from_raw(raw_out, model.rot_range)
        dev = _maps(m_enc, np.linalg.inv(m_ref)) - truth_like
        dev[:, 3] = strain.wrap_angle(dev[:, 3], 2 * model.rot_range)
        std = bound.std(prep(noisy_raw), m_enc, var_x, m_ref)
        spread = 1.4826 * np.median(np.abs(dev - np.median(dev, 0)), 0)
        rows.append((spread ** 2, np.mean(std ** 2, 0)))
        per_level[f"w={w:g}"] = {k: {"spread": float(spread[j]), "bound": float(np.sqrt(np.mean(std[:, j] ** 2)))}
                                 for j, k in enumerate(strain.MAPS)}
    if not rows:
        return {"efficiency": None, "why": "noise-free patterns: no shot-noise scale to build a bound on"}
    floor, eff = {}, {}
    for j, k in enumerate(strain.MAPS):
        design = np.array([[1.0, r[1][j]] for r in rows])
        coef, _ = nnls(design, np.array([r[0][j] for r in rows]))
        floor[k], eff[k] = float(np.sqrt(coef[0])), float(np.sqrt(coef[1]))
    return {"floor": floor, "efficiency": eff, "per_level": per_level, "levels": [float(w) for w in levels],
            "patterns": int(len(val_raw))}


def cube_std_maps(run, cube, raw: np.ndarray, region=None, stat: str = "mean", batch_size: int = 256):
    """Error bars of a run's maps on a cube: {exx, eyy, exy, theta} (Rx, Ry) standard deviations,
    or None with the reason (a run without errorbars.json, noise-free patterns). raw (Rx, Ry, 4)
    the run's outputs on the cube; the maps' reference matrix as evaluate.maps_from_raw takes it."""
    import json

    from ccstae.model import preprocess

    path = run.path / "errorbars.json"
    calib = json.loads(path.read_text()) if path.exists() else {}
    if not calib.get("efficiency"):
        return None, calib.get("why", "the run has no error-bar calibration (trained without distillation)")
    eff = np.array([calib["efficiency"][k] for k in strain.MAPS])
    floor = np.array([calib.get("floor", {}).get(k, 0.0) for k in strain.MAPS])
    m_all = network.matrices_from_raw(raw.reshape(-1, 4), run.rot_range).reshape(*raw.shape[:2], 2, 2)
    rs, cs = strain.parse_region(region, raw.shape[:2]) if not isinstance(region, tuple) else region
    m_ref = getattr(np, stat)(m_all[rs, cs].reshape(-1, 2, 2), axis=0)
    bound = Bound(*run.reference_and_mask())
    out = np.zeros((int(np.prod(raw.shape[:2])), 4))
    var_x = pixel_variance(counting_patterns(cube), run.scale)
    if var_x is None:
        return None, "noise-free patterns: no shot-noise scale to build a bound on"
    for start, batch in cube.iter_batches(batch_size):
        x = preprocess.preprocess(batch, run.scale, run.binning, run.crop, run.mask)
        m = m_all.reshape(-1, 2, 2)[start:start + len(batch)]
        bound_std_ = bound.std(x, m, var_x, m_ref)
        out[start:start + len(batch)] = np.sqrt(floor[None] ** 2 + (eff[None] * bound_std_) ** 2)
    out = out.reshape(*raw.shape[:2], 4)
    return {k: out[..., j] for j, k in enumerate(strain.MAPS)}, None


def error_bar_calibration(pred: dict, truth: dict, std: dict, period: float) -> dict:
    """RMS of (error / error bar) per map: 1 for honest error bars, > 1 when they are too small."""
    out = {}
    for k in strain.MAPS:
        err = np.asarray(pred[k], np.float64) - np.asarray(truth[k], np.float64)
        if k == "theta":
            err = strain.wrap_angle(err, period)
        out[k] = float(np.sqrt(np.mean((err / np.maximum(std[k], 1e-12)) ** 2)))
    return out
