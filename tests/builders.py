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
