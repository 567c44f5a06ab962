"""The CC-ST-AE: an FPGA-sized encoder, a learned reference pattern and a spatial transformer.

Only the encoder goes to the FPGA. It maps a (preprocessed) pattern to four raw numbers;
`bound_affine` turns them into the physical affine parameters on the host side, because
tanh is a lookup table in hls4ml and is not bit-exact (shared/STACK.md).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow import keras

N_OUTPUTS = 4  # scale_x, scale_y, shear, rotation (raw, before bounding)

# Bounded parametrisation of the reference work: scales 1 +- 5 %, symmetric shear +- 0.1,
# rotation +- half the lattice's rotational period: +- 30 degrees for hexagonal symmetry
# (60 degrees, the default), +- 45 for square, +- 90 for rectangular (only 180 degrees).
SCALE_RANGE = 0.05
SHEAR_RANGE = 0.1
ROTATION_RANGE = np.pi / 6
SYMMETRY_FOLDS = {"hexagonal": 6, "square": 4, "rectangular": 2}


def rotation_range(symmetry: str) -> float:
    """Half the rotational period of a lattice symmetry (radians)."""
    return float(np.pi / SYMMETRY_FOLDS[symmetry])


def build_encoder(pattern: int, filters=(8, 16, 16), dense=(32,), name: str = "encoder") -> keras.Model:
    """Float encoder. Layer names are the contract with quant/, which mirrors them one to one.

    conv{i} -> relu{i} -> pool{i} for each filter count, flatten, dense{j} -> dense_relu{j},
    then `out` (linear, 4 units). The input layer is called `pattern`, never `in`: the
    hls4ml testbench declares its own variable `in`.
    """
    x_in = keras.Input(shape=(pattern, pattern, 1), name="pattern")
    x = x_in
    for i, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, padding="valid", name=f"conv{i}")(x)
        x = keras.layers.Activation("relu", name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for j, units in enumerate(dense, start=1):
        x = keras.layers.Dense(units, name=f"dense{j}")(x)
        x = keras.layers.Activation("relu", name=f"dense_relu{j}")(x)
    # Zero-initialised output, as in the spatial-transformer paper: every pattern starts at the
    # identity warp. With random initial warps the quickest way down the loss is to silence the
    # encoder, and the dense ReLUs die for good (issue 11: 0 of 32 alive, flat maps, on single
    # crystals); from the identity the gradient reaches the living features instead.
    out = keras.layers.Dense(N_OUTPUTS, name="out", kernel_initializer="zeros")(x)
    return keras.Model(x_in, out, name=name)


def count_macs(encoder: keras.Model) -> int:
    """Multiply-accumulates per pattern of the conv and dense layers (zeros included)."""
    macs = 0
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k = layer.kernel.shape  # (kh, kw, cin, cout)
            oh, ow = layer.output.shape[1:3]
            macs += int(oh * ow * np.prod(k))
        elif isinstance(layer, keras.layers.Dense):
            macs += int(np.prod(layer.kernel.shape))
    return macs


def describe(encoder: keras.Model) -> str:
    return f"{encoder.name}: {encoder.count_params():,} parameters, {count_macs(encoder):,} multiplications per pattern"


def bound_affine(raw, rot_range: float = ROTATION_RANGE):
    """Raw encoder outputs (N, 4) -> (scale_x, scale_y, shear, rotation) in physical bounds.

    Works on numpy arrays and tensors alike. rot_range: the run's rotation bound (radians).
    """
    tanh = tf.math.tanh if tf.is_tensor(raw) else np.tanh
    sx = 1.0 + SCALE_RANGE * tanh(raw[:, 0])
    sy = 1.0 + SCALE_RANGE * tanh(raw[:, 1])
    sh = SHEAR_RANGE * tanh(raw[:, 2])
    rot = rot_range * tanh(raw[:, 3])
    return sx, sy, sh, rot


def matrices_from_raw(raw: np.ndarray, rot_range: float = ROTATION_RANGE) -> np.ndarray:
    """Raw encoder outputs (N, 4) -> affine matrices (N, 2, 2), numpy (host side)."""
    return matrices_from_params(np.stack(bound_affine(np.asarray(raw, np.float64), rot_range), 1))


def matrices_from_params(params: np.ndarray) -> np.ndarray:
    """(scale_x, scale_y, shear, rotation) (N, 4) -> M = R(rotation) @ [[sx, sh], [sh, sy]] (N, 2, 2)."""
    sx, sy, sh, rot = (np.asarray(params, np.float64)[:, k] for k in range(4))
    c, s = np.cos(rot), np.sin(rot)
    rmat = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    sym = np.stack([np.stack([sx, sh], -1), np.stack([sh, sy], -1)], -2)
    return rmat @ sym


class CCSTAE(tf.Module):
    """Encoder + learned reference pattern + spatial transformer, and the cycle loss.

    The encoder predicts M with the pattern's lattice = M (reference lattice). Both
    directions are trained: the pattern warped into the reference frame must match the
    reference, and the reference warped into the pattern frame must match the pattern.
    """

    def __init__(self, encoder: keras.Model, reference: np.ndarray, rot_range: float = ROTATION_RANGE):
        super().__init__(name="ccstae")
        self.rot_range = float(rot_range)
        from ccstae.model import stn  # local: keeps `import ccstae.model.network` light for quant/firmware

        self._stn = stn
        self.encoder = encoder
        # The reference stays non-negative like any diffraction pattern: softplus(logit).
        ref = np.maximum(np.asarray(reference, np.float32), 1e-4)
        self.reference_logit = tf.Variable(np.log(np.expm1(ref)), name="reference_logit")

    @property
    def reference(self):
        return tf.nn.softplus(self.reference_logit)

    def trainable(self):
        return self.encoder.trainable_variables + [self.reference_logit]

    def matrices(self, x, training=False):
        raw = self.encoder(x, training=training)
        sx, sy, sh, rot = bound_affine(raw, self.rot_range)
        return self._stn.affine_matrix(sx, sy, sh, rot), raw

    def losses(self, x_in, x_target, sigma, mask, training=False, identity=False):
        """Self-supervised losses. x_in: encoder input (noisy); x_target: the pattern before
        injected noise, which real data has too (it is the measured pattern itself).
        identity=True: the loss of the identity warp with this reference (the floor a
        collapsed encoder sits at; ccstae/model/health.py compares the two)."""
        stn = self._stn
        m, raw = self.matrices(x_in, training=training)
        if identity:
            m = tf.eye(2, batch_shape=tf.shape(m)[:1], dtype=m.dtype)
        ref = tf.broadcast_to(self.reference[None], tf.shape(x_target))
        blur_ref = stn.gaussian_blur(self.reference[None], sigma)  # one image: broadcast in the difference
        to_ref = stn.gaussian_blur(stn.warp(x_target, m), sigma)
        to_pattern = stn.gaussian_blur(stn.warp(ref, tf.linalg.inv(m)), sigma)
        blur_target = stn.gaussian_blur(x_target, sigma)
        norm = tf.reduce_sum(mask) + 1e-6
        l_ref = tf.reduce_mean(tf.reduce_sum(mask * (to_ref - blur_ref) ** 2, [1, 2, 3]) / norm)
        l_pattern = tf.reduce_mean(tf.reduce_sum(mask * (to_pattern - blur_target) ** 2, [1, 2, 3]) / norm)
        # Keep raw outputs off tanh's flat tails: they must also fit the firmware's output type.
        penalty = tf.reduce_mean(tf.nn.relu(tf.abs(raw) - 2.5) ** 2)
        return {"cycle_ref": l_ref, "cycle_pattern": l_pattern, "penalty": penalty,
                "total": l_ref + l_pattern + penalty}

    def distill_losses(self, x_in, target, scale, training=False):
        """Self-distillation: the encoder's (scale_x, scale_y, shear, rotation) against per-pattern
        targets (ccstae/model/refine.py), each in units of its spread over the training targets, so
        the strain components weigh as much as the rotation, which spans a grain's whole range."""
        raw = self.encoder(x_in, training=training)
        params = tf.stack(bound_affine(raw, self.rot_range), 1)
        fit = tf.reduce_mean(tf.reduce_sum(((params - target) / scale) ** 2, 1))
        penalty = tf.reduce_mean(tf.nn.relu(tf.abs(raw) - 2.5) ** 2)
        return {"distill": fit, "penalty": penalty, "total": fit + penalty}
