"""Data builders shared by test modules (imported by name; pytest puts tests/ on sys.path)."""
import numpy as np

P = 32


def synthetic_patterns(n, seed=0, p=P):
    """sqrt of Poisson counts over a smooth random intensity: non-negative, nominally in [0, 1],
    a few pixels above 1 (like hot pixels after x = sqrt(I / s))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:p, :p] / p
    fx, fy, ph = rng.uniform(1, 4, (3, n, 1, 1))
    lam = rng.uniform(5, 60, (n, 1, 1)) * (1.2 + np.sin(2 * np.pi * (fx * xx + fy * yy) + ph))
    return np.sqrt(rng.poisson(lam) / 100.0)[..., None].astype(np.float32)


def targets(x):
    """Four smooth functions of the pattern, standardised (roughly in [-3, 3]), to fit against."""
    h = x.shape[1] // 2
    t = np.stack([x[:, :h].mean((1, 2, 3)) - x[:, h:].mean((1, 2, 3)),
                  x[:, :, :h].mean((1, 2, 3)) - x[:, :, h:].mean((1, 2, 3)),
                  x.std((1, 2, 3)), x.mean((1, 2, 3))], 1)
    return ((t - t.mean(0)) / t.std(0)).astype(np.float32)


def random_weight_project(prj, seed):
    """A 16 x 16-input QKeras encoder with random weights everywhere, converted by hls4ml into prj:
    (prj, qencoder). Random weights because a fresh encoder's output layer starts at zero: its
    outputs would not depend on the input, and bit-exactness would prove nothing."""
    from tensorflow import keras

    from ccstae.firmware import convert
    from ccstae.model.network import build_encoder
    from ccstae.quant import qmodel

    keras.utils.set_random_seed(seed)
    qenc = qmodel.build_qencoder(build_encoder(16, filters=(4, 8), dense=(16,)))
    rng = np.random.default_rng(seed)
    for layer in qenc.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(-0.5, 0.5, w.shape) if w.ndim > 1 else rng.uniform(-0.1, 0.1, w.shape)
                               for w in layer.get_weights()])
    convert.convert(qenc, convert.FirmwareSpec(), prj)
    return prj, qenc
