"""Where a training step's time goes, and the loss blur as a convolution against the matrix product.

    .venv/bin/python bench/bench_train_step.py [--batch 32] [--pattern 64] [--repeats 30]

On the default preset's shapes it times, in milliseconds and in reference ops (ccstae/pipeline/clock.py):
- the loss blur (four per cycle step): TF's conv2d with the 17-tap kernel (the form before) and
  ccstae/model/stn.gaussian_blur's banded-matrix products (the same sums), and their largest difference;
- a cycle step (ccstae/model/network.CCSTAE.losses and its gradient) with each blur;
- a distillation step (the encoder alone), float and quantized + pruned (QAT);
- the host's work per batch: noise injection and the float and integer input paths.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tensorflow as tf  # noqa: E402

from ccstae.model import network, preprocess, stn  # noqa: E402
from ccstae.physics import noise  # noqa: E402
from ccstae.pipeline.clock import reference_op_seconds  # noqa: E402


def conv_blur(images, sigma):
    """The loss blur before: two 1-D conv2d passes with a 17-tap Gaussian, zero padded ("SAME")."""
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)
    t = tf.range(-8, 9, dtype=tf.float32)
    k = tf.exp(-0.5 * (t / sigma) ** 2)
    k = k / tf.reduce_sum(k)
    out = tf.nn.conv2d(images, tf.reshape(k, [1, -1, 1, 1]), 1, "SAME")
    return tf.nn.conv2d(out, tf.reshape(k, [-1, 1, 1, 1]), 1, "SAME")


def ms(fn, *args, repeats: int) -> float:
    fn(*args)  # trace
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(*args)
    return (time.perf_counter() - t0) / repeats * 1e3


def cycle_step(model, optimizer, sigma, mask):
    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            losses = model.losses(x, x, sigma, mask, training=True)
        variables = model.trainable()
        optimizer.apply_gradients(zip(tape.gradient(losses["total"], variables), variables))
        return losses["total"]
    return step


def distill_step(encoder, optimizer):
    @tf.function(autograph=False)
    def step(x, target):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((tf.stack(network.bound_affine(encoder(x, training=True), 0.5), 1) - target) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, encoder.trainable_variables), encoder.trainable_variables))
        return loss
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pattern", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    op0 = reference_op_seconds()
    rng = np.random.default_rng(0)
    b, p = a.batch, a.pattern
    raw = rng.random((b, p, p)).astype(np.float32)
    raw /= raw.sum(axis=(1, 2), keepdims=True)
    x = tf.constant(rng.random((b, p, p, 1)).astype(np.float32))
    sigma = tf.constant(0.7)
    rows = []

    old, new = conv_blur(x, sigma), stn.gaussian_blur(x, sigma)
    diff = float(tf.reduce_max(tf.abs(old - new)) / tf.reduce_max(tf.abs(old)))
    rows.append(("blur: conv2d (before)", ms(tf.function(conv_blur, autograph=False), x, sigma, repeats=a.repeats)))
    rows.append(("blur: banded matrices (now)", ms(tf.function(stn.gaussian_blur, autograph=False), x, sigma,
                                                   repeats=a.repeats)))

    mask = tf.constant(stn.annular_mask(p, 0.09 * p, 0.47 * p))
    for name, blur in (("cycle step, conv2d blur (before)", conv_blur), ("cycle step, matrix blur (now)", None)):
        keep = stn.gaussian_blur
        if blur is not None:
            stn.gaussian_blur = blur
        try:
            tf.keras.utils.set_random_seed(0)
            model = network.CCSTAE(network.build_encoder(p, [8, 16, 16], [32]), rng.random((p, p, 1)).astype(np.float32))
            opt = tf.keras.optimizers.Adam(1e-4)
            opt.build(model.trainable())
            rows.append((name, ms(cycle_step(model, opt, sigma, mask), x, repeats=a.repeats)))
        finally:
            stn.gaussian_blur = keep

    from ccstae.quant import prune, qmodel
    target = tf.zeros((b, 4))
    encoder = network.build_encoder(p, [8, 16, 16], [32])
    opt = tf.keras.optimizers.Adam(1e-4)
    rows.append(("distill step, float encoder", ms(distill_step(encoder, opt), x, target, repeats=a.repeats)))
    qenc, hook = prune.prune(qmodel.build_qencoder(encoder, qmodel.QuantSpec()), 0.5, end_step=1000)
    hook(0)
    opt = tf.keras.optimizers.Adam(1e-4)
    rows.append(("distill step, QKeras + pruning (QAT)", ms(distill_step(qenc, opt), x, target, repeats=a.repeats)))

    levels = rng.choice([0.0, 0.25, 0.5, 0.7], b)
    rows.append(("host: noise injection (1e5 e/pattern)",
                 ms(lambda: noise.add_noise(raw, levels, 1e5, rng), repeats=a.repeats)))
    noisy = noise.add_noise(raw, levels, 1e5, rng)
    rows.append(("host: float input path", ms(lambda: preprocess.preprocess(noisy, 1e-3, 1, 0), repeats=a.repeats)))
    params = preprocess.PreprocessParams(pattern=p, binning=1, crop=0, scale=1e-3, counts_per_unit=1e5)
    rows.append(("host: integer input path (QAT)", ms(lambda: preprocess.preprocess_integer(noisy, params),
                                                      repeats=a.repeats)))

    op = (op0 + reference_op_seconds()) / 2
    print(f"batch {b} x {p} x {p}; reference op (1024^2 float32 matmul) {op * 1e3:.1f} ms")
    print(f"{'what':42s} {'ms':>8s} {'ref ops':>8s}")
    for name, t in rows:
        print(f"{name:42s} {t:8.1f} {t / 1e3 / op:8.2f}")
    print(f"blur: largest difference between the two forms {diff:.1e} of the largest value")


if __name__ == "__main__":
    main()
