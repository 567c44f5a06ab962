"""Gauss-Newton alignment of patterns to the learned reference: the training targets of
self-distillation (ccstae/model/train.py, `[train] distill_epochs`).

The CC-ST-AE learns a reference pattern and an encoder together. Measured on the default
preset, aligning each test pattern to that reference by a few Gauss-Newton steps, started
from the encoder's guess, gives maps 2-2.5x closer to the truth than the encoder itself:
the reference is good, the small encoder is what falls short. Self-distillation refines
every training pattern's affine parameters this way (on the training patterns as they are,
before any injected noise) and trains the encoder to reach them from noisy inputs. No
ground truth is read: the targets are the model's own best fit.

The fit: pattern(p) ~ gain * reference(A p) + offset on the loss annulus, both blurred by
the same sigma, with A = M^-1 (M maps the reference lattice onto the pattern's). Its
Jacobian comes from the reference's image gradient warped along with it: one warp of a
3-channel image per step.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ccstae.model import network, stn

N_FIT = 6  # the four entries of A, gain, offset


class Aligner:
    """Fits (M, gain, offset) per pattern against one reference. reference (P, P, 1) or (P, P),
    mask (P, P, 1) the pixels that count, sigma the blur both sides get (pixels)."""

    def __init__(self, reference: np.ndarray, mask: np.ndarray, sigma: float):
        ref = np.asarray(reference, np.float32).reshape(reference.shape[0], reference.shape[1])
        self.pattern, self.sigma = ref.shape[0], float(sigma)
        blurred = stn.gaussian_blur(ref[None, ..., None], self.sigma)[0, ..., 0].numpy()
        gy, gx = np.gradient(blurred)  # rows are y, columns x (ccstae/model/stn.py)
        self._stack = tf.constant(np.stack([blurred, gx, gy], -1)[None], tf.float32)
        c = (self.pattern - 1) / 2
        rows, cols = np.mgrid[: self.pattern, : self.pattern]
        self._x = tf.constant((cols - c).reshape(1, -1), tf.float32)
        self._y = tf.constant((rows - c).reshape(1, -1), tf.float32)
        self._mask = tf.constant(np.asarray(mask, np.float32).reshape(1, -1))

    @tf.function(reduce_retracing=True, autograph=False)  # no tensor-valued control flow
    def _step(self, a, gain, offset, target):
        b, p = tf.shape(a)[0], self.pattern
        w = tf.reshape(stn.warp(tf.broadcast_to(self._stack, [b, p, p, 3]), a), [b, p * p, 3])
        model, gx, gy = w[..., 0], w[..., 1], w[..., 2]
        resid = (gain[:, None] * model + offset[:, None] - target) * self._mask
        g = gain[:, None]
        # d model(A p) / d A_ij = grad_i(A p) * p_j
        jac = tf.stack([g * gx * self._x, g * gx * self._y, g * gy * self._x, g * gy * self._y,
                        model, tf.ones_like(model)], -1) * self._mask[..., None]
        hess = tf.linalg.matmul(jac, jac, transpose_a=True) + 1e-6 * tf.eye(N_FIT)
        grad = tf.linalg.matmul(jac, resid[..., None], transpose_a=True)
        return -tf.linalg.solve(hess, grad)[..., 0], tf.reduce_sum(resid ** 2, 1), hess

    def fit(self, patterns: np.ndarray, start: np.ndarray, steps: int = 4, batch_size: int = 256,
            information: bool = False):
        """patterns (N, P, P, 1) in encoder-input space, start (N, 2, 2) the first guess of M.
        Returns M (N, 2, 2) float64 and the final residual sum of squares per pattern (N,); with
        information=True also J^T J (N, 6, 6) at the last step, the Fisher information of the
        fit for unit pixel noise (ccstae/analysis/errorbar.py)."""
        out_m, out_cost, out_info = [], [], []
        for i in range(0, len(patterns), batch_size):
            x = tf.constant(np.asarray(patterns[i:i + batch_size], np.float32))
            target = tf.reshape(stn.gaussian_blur(x, self.sigma), [len(x), -1])
            a = tf.constant(np.linalg.inv(start[i:i + batch_size]), tf.float32)
            gain, offset = tf.ones([len(x)]), tf.zeros([len(x)])
            for _ in range(steps):
                d, cost, hess = self._step(a, gain, offset, target)
                a = a + tf.reshape(d[:, :4], [-1, 2, 2])
                gain, offset = gain + d[:, 4], offset + d[:, 5]
            out_m.append(np.linalg.inv(a.numpy().astype(np.float64)))
            out_cost.append(cost.numpy())
            out_info.append(hess.numpy().astype(np.float64))
        if information:
            return np.concatenate(out_m), np.concatenate(out_cost), np.concatenate(out_info)
        return np.concatenate(out_m), np.concatenate(out_cost)


def params_from_matrices(m: np.ndarray) -> np.ndarray:
    """M (N, 2, 2) -> (scale_x, scale_y, shear, rotation) (N, 4), inverting M = R(rotation) @ S
    (network.matrices_from_raw) by the polar decomposition, S symmetric positive."""
    w, s, vt = np.linalg.svd(np.asarray(m, np.float64))
    u = w @ vt
    sym = np.swapaxes(vt, 1, 2) @ (s[..., None] * vt)
    return np.stack([sym[:, 0, 0], sym[:, 1, 1], sym[:, 0, 1], np.arctan2(u[:, 1, 0], u[:, 0, 0])], 1)


def raw_from_params(params: np.ndarray, rot_range: float) -> np.ndarray:
    """The encoder's raw outputs that give these parameters (network.bound_affine inverted);
    parameters at or past a bound are pulled just inside it."""
    ranges = np.array([network.SCALE_RANGE, network.SCALE_RANGE, network.SHEAR_RANGE, rot_range])
    centred = np.asarray(params, np.float64) - np.array([1.0, 1.0, 0.0, 0.0])
    return np.arctanh(np.clip(centred / ranges, -0.999, 0.999))


def refine_cube(run, cube, raw: np.ndarray, steps: int | None = None, batch_size: int = 256) -> np.ndarray:
    """`ccstae strain --refine`: the encoder's outputs on a cube (Rx, Ry, 4), each refined on the
    host by Gauss-Newton against the run's learned reference (the distillation teacher). Needs
    the patterns, so it is an offline step beside the firmware, which sends parameters only."""
    from ccstae.model import preprocess

    t = run.config["train"]
    aligner = Aligner(*run.reference_and_mask(), float(t["blur_end"]))
    steps = int(steps or t.get("distill_steps", 4))
    flat = raw.reshape(-1, 4)
    out = np.zeros_like(flat, dtype=np.float64)
    for start, batch in cube.iter_batches(batch_size):
        x = preprocess.preprocess(batch, run.scale, run.binning, run.crop, run.mask)
        guess = network.matrices_from_raw(flat[start:start + len(batch)], run.rot_range)
        m, _ = aligner.fit(x, guess, steps=steps)
        out[start:start + len(batch)] = raw_from_params(params_from_matrices(m), run.rot_range)
    return out.reshape(raw.shape)
