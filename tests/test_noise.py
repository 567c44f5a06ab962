"""The Auto4DSTEM background-noise model: its mean, its Poisson variance, its validation."""
import numpy as np
import pytest

from ccstae.physics import noise, simulate
from ccstae.core.config import load_config
from ccstae.core.errors import UserError


@pytest.fixture(scope="module")
def clean():
    sim = load_config("tiny")["simulate"]
    return simulate.render_patterns(sim, [0.01, 0.0], [0.0, -0.01], [0.0, 0.005], [0.1, -0.2]).astype(np.float64)


def test_lorentzian_shape():
    lor = noise.lorentzian(33, 5.0)
    assert lor.shape == (33, 33) and lor.sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(lor), lor.shape) == (16, 16)
    assert np.allclose(lor, lor.T) and np.allclose(lor, lor[::-1, ::-1])
    assert lor[16, 21] / lor[16, 16] == pytest.approx(0.5)  # half height at q = gamma


def test_mean_and_poisson_variance(clean):
    w, counts, n = 0.4, 2e3, 4000
    rng = np.random.default_rng(0)
    draws = noise.add_noise(np.repeat(clean[:1], n, axis=0), w, counts, rng, gamma_frac=0.15)
    mu = (1 - w) * clean[0] + w * noise.lorentzian(32, 0.15 * 32)
    mean, var = draws.mean(axis=0, dtype=np.float64), draws.var(axis=0, dtype=np.float64)
    # mean: within 5 standard errors everywhere
    assert np.max(np.abs(mean - mu) / np.sqrt(mu / counts / n)) < 5
    # variance = mean / C, where there are enough counts for the estimate to be tight
    bright = mu * counts > 5
    ratio = var[bright] * counts / mu[bright]
    assert ratio.mean() == pytest.approx(1.0, abs=0.02)
    assert np.all(np.abs(ratio - 1) < 0.25)


def test_no_background_and_huge_counts_give_back_the_clean_pattern(clean):
    out = noise.add_noise(clean, 0.0, 1e13, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.shape == clean.shape
    assert np.allclose(out, clean, atol=1e-6)


def test_per_sample_levels(clean):
    out = noise.add_noise(clean, np.array([0.0, 0.9]), 1e13, np.random.default_rng(2), gamma_frac=0.2)
    lor = noise.lorentzian(32, 0.2 * 32)
    assert np.allclose(out[0], clean[0], atol=1e-6)
    assert np.allclose(out[1], 0.1 * clean[1] + 0.9 * lor, atol=1e-6)
    with pytest.raises(ValueError):
        noise.add_noise(clean, np.array([0.1, 0.2, 0.3]), 1e5, np.random.default_rng(0))


def test_single_pattern_fresh_draws_and_reproducible(clean):
    a = noise.add_noise(clean[0], 0.3, 1e4, np.random.default_rng(5))
    b = noise.add_noise(clean[0], 0.3, 1e4, np.random.default_rng(5))
    assert a.shape == (32, 32) and np.array_equal(a, b)
    rng = np.random.default_rng(5)
    assert not np.array_equal(noise.add_noise(clean[0], 0.3, 1e4, rng), noise.add_noise(clean[0], 0.3, 1e4, rng))


def test_unnormalised_input_keeps_its_scale(clean):
    out = noise.add_noise(1000 * clean, 0.0, 1e13, np.random.default_rng(0))
    assert np.allclose(out, 1000 * clean, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("w", [1.0, -0.1, float("nan"), np.array([0.2, 1.5])])
def test_bad_levels(clean, w):
    with pytest.raises(UserError, match=r"outside \[0, 1\)"):
        noise.add_noise(clean, w, 1e5, np.random.default_rng(0))


@pytest.mark.parametrize("counts", [0, -5, float("inf")])
def test_bad_counts(clean, counts):
    with pytest.raises(UserError, match="counts"):
        noise.add_noise(clean, 0.1, counts, np.random.default_rng(0))


def test_dose_in_e_per_A2_converts_through_the_scan_step(tmp_path):
    from ccstae.core.config import load_config
    from ccstae.physics.scans import simulate_scan

    assert noise.counts_from_dose(2.5e4, 2.0) == pytest.approx(1e5)
    assert noise.dose_from_counts(1e5, 2.0) == pytest.approx(2.5e4)
    with pytest.raises(UserError, match="dose"):
        noise.counts_from_dose(0, 1.0)
    cfg = load_config("tiny")
    cfg["simulate"]["scan_step_A"] = 0.5
    out = simulate_scan(cfg, tmp_path / "d.h5", noise_w=0.1, counts=noise.counts_from_dose(4e4, 0.5),
                        progress=False, rows=1)
    import h5py
    with h5py.File(out) as f:
        assert f.attrs["counts"] == pytest.approx(1e4) and f.attrs["dose_e_per_A2"] == pytest.approx(4e4)
        assert f.attrs["scan_step_A"] == 0.5
