"""Spatial transformer: affine warps of diffraction patterns by bilinear sampling, in TF.

Coordinates: a pixel (row, col) has the vector p = (x, y) = (col - c, row - c) with
c = (P - 1) / 2 the pattern centre. `warp(images, M)` returns out(p) = images(M p):
if a pattern's lattice is the reference's mapped by M (spots at g' = M g), then
warp(pattern, M) brings it back onto the reference and warp(reference, M^-1) makes
the pattern. Samples outside the detector read as zero.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def affine_matrix(sx, sy, shear, rotation):
    """M = R(rotation) @ [[sx, shear], [shear, sy]] for batches of scalars -> (B, 2, 2)."""
    c, s = tf.cos(rotation), tf.sin(rotation)
    rot = tf.stack([tf.stack([c, -s], -1), tf.stack([s, c], -1)], -2)
    sym = tf.stack([tf.stack([sx, shear], -1), tf.stack([shear, sy], -1)], -2)
    return rot @ sym


def warp(images, matrices):
    """Bilinear affine warp. images (B, H, W, C) float32, matrices (B, 2, 2) -> (B, H, W, C)."""
    images = tf.convert_to_tensor(images, tf.float32)
    matrices = tf.cast(matrices, tf.float32)
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    rows, cols = tf.meshgrid(tf.range(hf), tf.range(wf), indexing="ij")
    grid = tf.stack([tf.reshape(cols - (wf - 1) / 2, [-1]), tf.reshape(rows - (hf - 1) / 2, [-1])], 0)  # (2, HW)
    src = tf.einsum("bij,jn->bin", matrices, grid)  # (B, 2, HW) source (x, y)
    x = src[:, 0] + (wf - 1) / 2
    y = src[:, 1] + (hf - 1) / 2
    x0, y0 = tf.floor(x), tf.floor(y)
    wx1, wy1 = x - x0, y - y0
    wx0, wy0 = 1 - wx1, 1 - wy1
    flat = tf.reshape(images, [b, h * w, -1])

    def tap(yy, xx):
        inside = (xx >= 0) & (xx <= wf - 1) & (yy >= 0) & (yy <= hf - 1)
        idx = tf.cast(tf.clip_by_value(yy, 0, hf - 1) * wf + tf.clip_by_value(xx, 0, wf - 1), tf.int32)
        vals = tf.gather(flat, idx, batch_dims=1)  # (B, HW, C)
        return vals * tf.cast(inside, tf.float32)[..., None]

    out = (tap(y0, x0) * (wy0 * wx0)[..., None] + tap(y0, x0 + 1) * (wy0 * wx1)[..., None]
           + tap(y0 + 1, x0) * (wy1 * wx0)[..., None] + tap(y0 + 1, x0 + 1) * (wy1 * wx1)[..., None])
    return tf.reshape(out, shape)


def gaussian_blur(images, sigma):
    """Separable Gaussian blur of (B, H, W, 1) images; sigma in pixels (a tensor or float).

    Used in the loss: comparing blurred patterns widens the basin of the alignment, so the
    rotation can be found from afar before the fine structure takes over.

    Each pass is a product with a banded (H, H) or (W, W) matrix, the same sums as a "SAME"
    zero-padded convolution with the 17-tap kernel: TF's CPU conv2d on one channel took 19.7 ms
    per call on a training batch (32 x 64 x 64), the matrix products 2.3 ms, and a cycle step
    (four blurs) 43 ms instead of 115 (bench/bench_train_step.py).
    """
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)
    radius = 8
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * (t / sigma) ** 2)
    k = k / tf.reduce_sum(k)
    images = tf.convert_to_tensor(images, tf.float32)
    rows = tf.einsum("ij,bjwc->biwc", _band(images.shape[1], k, radius), images)
    return tf.einsum("kw,biwc->bikc", _band(images.shape[2], k, radius), rows)


def _band(n: int, k, radius: int):
    """(n, n) matrix K[i, j] = k[j - i + radius] within the kernel's reach, else 0 (zero padding)."""
    i = np.arange(n)
    d = i[None, :] - i[:, None] + radius
    inside = (d >= 0) & (d <= 2 * radius)
    return tf.gather(k, np.where(inside, d, 0).astype(np.int32)) * inside.astype(np.float32)


def annular_mask(pattern: int, r_in: float, r_out: float) -> np.ndarray:
    """1 inside r_in <= |p| <= r_out (pixels from the centre), else 0; shape (P, P, 1)."""
    c = (pattern - 1) / 2
    rr, cc = np.mgrid[:pattern, :pattern]
    r = np.hypot(rr - c, cc - c)
    return ((r >= r_in) & (r <= r_out)).astype(np.float32)[..., None]


def loss_mask(pattern: int, t: dict, prep_mask: dict | None) -> np.ndarray:
    """The annulus the cycle loss is computed on, (P, P, 1). It ignores the central disk: at least
    [train] mask_inner of the pattern, and at least one pixel beyond the input's central mask
    (the warp moves the mask's edge by a fraction of a pixel)."""
    inner = t["mask_inner"] * pattern
    if prep_mask and prep_mask.get("kind") == "disk":
        inner = max(inner, float(prep_mask["radius"]) + 1.0)
    return annular_mask(pattern, inner, t["mask_outer"] * pattern)
