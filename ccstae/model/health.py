"""Did the encoder learn anything? The signal figure that train, strain and `make hls` report.

A CC-ST-AE can sit in a comfortable minimum of its loss: the learned reference absorbs the
mean pattern and a near-identity encoder returns the same matrix everywhere, so the strain
maps come out flat (issue 11: std 4e-5 where the truth spans +-0.02). Three figures, none
of which needs labels:

- signal: the spread across the scan of the strain maps the encoder gives (a robust
  standard deviation, 1.4826 x MAD, of exx, eyy, exy; the largest of the three). Flat maps
  have a signal below FLAT_STRAIN, far below what 4D-STEM resolves;
- snr (training only): that spread over the spread of the same maps across noise
  realisations of the same patterns (the best of the three maps): near 1, the maps are
  noise, not specimen;
- loss_gain: 1 - (cycle loss of the encoder) / (cycle loss of the identity warp with the
  same reference): near 0, the encoder does no better than predicting nothing.

A run is "flat" when signal < FLAT_STRAIN or (where measured) snr < MIN_SNR.
"""
from __future__ import annotations

import numpy as np

FLAT_STRAIN = 2e-4   # robust std of the strain maps across the scan below this: flat
MIN_SNR = 1.5        # scan spread / noise spread below this: the maps are noise
STRAINS = ("exx", "eyy", "exy")


def robust_std(values: np.ndarray) -> float:
    v = np.asarray(values, np.float64).ravel()
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def strain_of_raw(raw: np.ndarray, rot_range: float) -> dict:
    """(N, 4) raw encoder outputs -> exx, eyy, exy, theta (N,) referenced to their mean matrix."""
    from ccstae.model import network
    from ccstae.physics import strain

    m = network.matrices_from_raw(np.asarray(raw).reshape(-1, 4), rot_range)
    return strain.polar_strain(m @ np.linalg.inv(m.mean(axis=0)))


def map_signal(raw: np.ndarray, rot_range: float) -> dict:
    """The signal figure of raw outputs (any shape (..., 4)): robust std per map, signal, flat."""
    maps = strain_of_raw(raw, rot_range)
    spread = {k: robust_std(maps[k]) for k in STRAINS}
    spread["theta_deg"] = float(np.degrees(robust_std(maps["theta"])))
    signal = max(spread[k] for k in STRAINS)
    return {"spread": spread, "signal": signal, "flat": bool(signal < FLAT_STRAIN)}


def loss_gain(model, x_in, x_target, sigma: float, mask) -> dict:
    """Cycle loss of the encoder and of the identity warp, same reference, same patterns."""
    import tensorflow as tf

    sig = tf.constant(sigma, tf.float32)
    tot = {"model": 0.0, "identity": 0.0}
    for i in range(0, len(x_in), 256):
        for key, ident in (("model", False), ("identity", True)):
            losses = model.losses(x_in[i:i + 256], x_target[i:i + 256], sig, mask, identity=ident)
            tot[key] += float(losses["cycle_ref"] + losses["cycle_pattern"]) * len(x_in[i:i + 256])
    tot = {k: v / len(x_in) for k, v in tot.items()}
    gain = 1.0 - tot["model"] / tot["identity"] if tot["identity"] > 0 else 0.0
    return {"loss": tot["model"], "identity_loss": tot["identity"], "loss_gain": gain}


def training_health(model, raw, prep, noisy, mask, sigma: float, level: float, seed: int = 0,
                    n_scan: int = 512, n_noise: int = 32, draws: int = 8) -> dict:
    """The health of a trained CCSTAE on held-out clean patterns `raw` (N, P, P).

    prep: raw -> encoder inputs; noisy(raw, levels, rng): the training's noise injection;
    level: the noise level for the loss comparison (the strongest one trained on)."""
    rng = np.random.default_rng([seed, 11])
    raw = raw[: n_scan]
    predict = lambda x: model.encoder(x, training=False).numpy()  # noqa: E731
    clean = np.concatenate([predict(prep(raw[i:i + 256])) for i in range(0, len(raw), 256)])
    report = map_signal(clean, model.rot_range)
    # Spread across noise realisations of the same patterns (the weakest noise trained on).
    sub = raw[: n_noise]
    reps = np.stack([predict(prep(noisy(sub, np.zeros(len(sub)), rng))) for _ in range(draws)], 1)  # (n, draws, 4)
    maps = strain_of_raw(np.concatenate([clean, reps.reshape(-1, 4)]), model.rot_range)
    noise_std = {k: float(np.sqrt(np.mean(np.var(maps[k][len(clean):].reshape(len(sub), draws), axis=1))))
                 for k in STRAINS}
    report["noise_spread"] = noise_std
    report["snr"] = float(max(report["spread"][k] / max(noise_std[k], 1e-12) for k in STRAINS))
    x_in = prep(noisy(raw, np.full(len(raw), level), rng))
    report.update(loss_gain(model, x_in, prep(raw), sigma, mask))
    report["noise_level_for_loss"] = level
    report["flat"] = bool(report["flat"] or report["snr"] < MIN_SNR)
    report["verdict"] = verdict(report)
    return report


def verdict(report: dict) -> str:
    """One line for people."""
    s = report["signal"]
    parts = [f"strain spread across the scan {s:.2g}"]
    if "snr" in report:
        parts.append(f"{report['snr']:.1f}x its spread across noise draws")
    if "loss_gain" in report:
        parts.append(f"loss {100 * report['loss_gain']:.1f} % below the identity warp's")
    head = "FLAT: the encoder learned nothing usable" if report["flat"] else "the encoder learned a signal"
    return f"{head} ({', '.join(parts)})"


def noise_floor(clean: np.ndarray, counts: float, w: float = 0.0, gamma_frac: float = 0.15,
                central_radius: float = 0.0) -> dict:
    """A rough shot-noise floor of per-pattern strain: the Cramer-Rao bound for the lattice
    matrix M from Poisson counts, as the MAE an unbiased estimator would reach at best.

    clean: (N, P, P) noise-free patterns (sum 1); the expected counts are
    counts ((1 - w) I + w L) with L the noise model's Lorentzian (ccstae/physics/noise.py). A disk at
    g moves to M g, so dI/dM_ij(p) = -d_i I(p) p_j, with p the pixel's vector from the
    centre; pixels within central_radius (the central disk, which does not move) carry no
    information. It counts disk-size changes as information too, so it is optimistic:
    a floor, not a target. Returns the mean MAE floor of exx, eyy, exy and the Bragg counts."""
    from ccstae.physics.noise import lorentzian

    clean = np.asarray(clean, np.float64)
    size = clean.shape[-1]
    c = (size - 1) / 2
    rows, cols = np.mgrid[:size, :size]
    px, py = cols - c, rows - c
    outside = np.hypot(px, py) >= central_radius
    lor = lorentzian(size, gamma_frac * size)
    sig = {k: [] for k in STRAINS}
    bragg = []
    for img in clean:
        img = img / img.sum()
        lam = counts * ((1 - w) * img + w * lor)
        gy, gx = np.gradient(counts * (1 - w) * img)
        # d lambda / d(M11, M12, M21, M22): row i of M acts on (x, y) and moves along axis i.
        d = np.stack([-gx * px, -gx * py, -gy * px, -gy * py])[:, outside]
        fisher = (d / np.maximum(lam[outside], 1e-12)) @ d.T
        cov = np.linalg.pinv(fisher)
        sig["exx"].append(np.sqrt(cov[0, 0]))  # the pattern frame (x along columns): relabelled below
        sig["eyy"].append(np.sqrt(cov[3, 3]))
        sig["exy"].append(0.5 * np.sqrt(max(cov[1, 1] + cov[2, 2] + 2 * cov[1, 2], 0)))
        bragg.append(counts * (1 - w) * img[outside].sum())
    mae_factor = np.sqrt(2 / np.pi)  # MAE of a zero-mean Gaussian over its std
    from ccstae.physics.strain import swap_frame

    floors = swap_frame({k: float(mae_factor * np.mean(v)) for k, v in sig.items()})  # the user frame
    return {**floors, "bragg_counts": float(np.mean(bragg))}
