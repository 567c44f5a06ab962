"""Gauss-Newton alignment to a reference (ccstae/model/refine.py) and the per-pattern bound and
error bars built on it (ccstae/model/errorbar.py): the fit recovers known warps, a
maximum-likelihood fit on noise draws reaches the Cramer-Rao spread, and the polar
decomposition inverts the encoder's parametrisation."""
import numpy as np
import pytest

from ccstae.core.config import load_config
from ccstae.core.data_io import open_cube
from ccstae.model import errorbar, network, preprocess, refine, stn
from ccstae.physics import noise, strain
from ccstae.physics.scans import simulate_scan

COUNTS = 2e5


@pytest.fixture(scope="module")
def clean_pattern(tmp_path_factory):
    """One noise-free kinematic pattern of the tiny preset (32 px) and its preprocessing."""
    path = tmp_path_factory.mktemp("refine") / "clean.h5"
    cfg = load_config("tiny")
    simulate_scan(cfg, path, clean=True, progress=False)
    with open_cube(path) as cube:
        raw = cube.read_patterns(np.array([0]))[0].astype(np.float64)
    scale = float(np.percentile(raw, 99.5))
    mask = stn.loss_mask(raw.shape[-1], cfg["train"], None)
    return raw, scale, mask


def prep(raw, scale):
    return preprocess.preprocess(np.asarray(raw, np.float32)[None] if raw.ndim == 2 else raw, scale, 1, 0, None)


def test_polar_decomposition_inverts_the_encoder_parametrisation():
    rng = np.random.default_rng(0)
    params = np.stack([1 + rng.uniform(-0.04, 0.04, 50), 1 + rng.uniform(-0.04, 0.04, 50),
                       rng.uniform(-0.08, 0.08, 50), rng.uniform(-0.5, 0.5, 50)], 1)
    m = network.matrices_from_params(params)
    np.testing.assert_allclose(refine.params_from_matrices(m), params, atol=1e-10)
    raw = refine.raw_from_params(params, np.pi / 6)
    np.testing.assert_allclose(network.matrices_from_raw(raw, np.pi / 6), m, atol=1e-9)


def test_the_fit_recovers_a_known_warp(clean_pattern):
    """A pattern made by warping the reference by M is aligned back to M from the identity."""
    import tensorflow as tf

    from ccstae.model import stn

    raw, scale, mask = clean_pattern
    ref = prep(raw, scale)[0]
    true = network.matrices_from_params(np.array([[1.01, 0.995, 0.004, 0.02]]))
    pattern = stn.warp(tf.constant(ref[None]), np.linalg.inv(true)).numpy()  # the reference's lattice mapped by M
    m, _ = refine.Aligner(ref, mask, sigma=0.7).fit(pattern, np.eye(2)[None], steps=8)
    np.testing.assert_allclose(m[0], true[0], atol=5e-4)


def test_a_maximum_likelihood_fit_reaches_the_cramer_rao_spread(clean_pattern):
    """The bound is reachable: the spread of the fit over 300 shot-noise draws of one clean pattern
    lies within 15 % of the Cramer-Rao figure, per map (issue 21)."""
    raw, scale, mask = clean_pattern
    ref = prep(raw, scale)[0]
    rng = np.random.default_rng(1)
    draws = noise.add_noise(np.repeat(raw[None], 300, 0), 0.0, COUNTS, rng)
    x = prep(draws, scale)
    var_x = errorbar.pixel_variance(draws, scale)
    assert var_x is not None
    eye = np.repeat(np.eye(2)[None], len(x), 0)
    m, _ = refine.Aligner(ref, mask, sigma=0.0).fit(x, eye, steps=5)
    est = errorbar._maps(m, np.eye(2))
    est[:, 3] = strain.wrap_angle(est[:, 3], 2 * np.pi)
    bound = errorbar.Bound(ref, mask).std(x, eye, var_x, np.eye(2)).mean(0)
    spread = est.std(0)
    ratio = spread / bound
    print("fit spread / Cramer-Rao:", dict(zip(strain.MAPS, ratio.round(3))))
    assert np.all(np.abs(ratio - 1) < 0.15), dict(zip(strain.MAPS, ratio.round(3)))


def test_noise_free_patterns_have_no_shot_noise_scale(clean_pattern):
    raw, scale, _ = clean_pattern
    assert errorbar.pixel_variance(np.repeat(raw[None], 4, 0), scale) is None
