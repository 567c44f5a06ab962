"""What a real microscope and detector add to the specimen's patterns, with the truth kept.

Both engines render the specimen's pattern as a detector aligned with the scan would see it
(ccstae/physics/simulate.py, ccstae/physics/multislice.py); `Distortion.apply` then moves it
onto the real detector. A point q of the aligned pattern, as (row, col) pixels from the centre
c = (P - 1) / 2, lands at

    p = c + origin(R) + A (q + deflection(R)),     A = E R(rotation) F

- origin(R), the descan: a linear ramp across the scan plus a smooth term (scan-coil
  non-linearity, at most half a period across the scan); `descan_px` is its largest
  peak-to-peak along a detector axis, `descan_smooth` the smooth term's share.
- E, the elliptical distortion of the projector lenses: a stretch by sqrt(1 + e) along the axis at
  `ellipse_axis_deg` and by 1 / sqrt(1 + e) across it (a/b = 1 + e, `ellipticity` = e, area kept).
- R(rotation) F, the scan-detector rotation and flip: F swaps Qx and Qy (a transpose, py4DSTEM's
  "QR_transpose") when `flip`, then R turns by `rotation_deg`.
- deflection(R): not a distortion but the specimen's own beam deflection (differential phase
  contrast: mean-inner-potential steps between grains of different thickness), a gradient field in the scan frame: (row, col) = (d/dRx, d/dRy) of one potential. It is
  what the rotation calibration reads (ccstae/physics/calibrate.py); `deflection_px` is its largest
  magnitude. A kinematic specimen without it has no DPC contrast.

Angles are in (row, col) = (Qx, Qy) pixels, positive from Qx towards Qy. The detector then
multiplies each pixel by its gain (`gain_std`) and `bad_pixel_fraction` of the pixels are bad:
half dead (read 0), half hot (read HOT_LEVEL of a whole pattern's electrons, every frame).

Ground truth stays the specimen's strain in the scan frame: the cube's /ground_truth is not
touched. The truth of the distortions goes into the cube: attributes distortion.* and the
datasets /distortion/origin (Rx, Ry, 2), /distortion/deflection (Rx, Ry, 2), /distortion/bad_pixels
(P, P; 1 dead, 2 hot), /distortion/gain (P, P) and the attribute distortion.A (row, col) matrix.
Everything is off by default ([distortion] in configs/default.toml): patterns are unchanged.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

HOT_LEVEL = 0.002  # a hot pixel's reading, as a fraction of one pattern's electrons (200 e at 1e5)
DEFAULTS = {"descan_px": 0.0, "descan_smooth": 0.1, "ellipticity": 0.0, "ellipse_axis_deg": 0.0,
            "rotation_deg": 0.0, "flip": False, "bad_pixel_fraction": 0.0, "gain_std": 0.0, "deflection_px": 0.0}


@dataclass(frozen=True)
class DistortionParams:
    descan_px: float = 0.0
    descan_smooth: float = 0.1
    ellipticity: float = 0.0
    ellipse_axis_deg: float = 0.0
    rotation_deg: float = 0.0
    flip: bool = False
    bad_pixel_fraction: float = 0.0
    gain_std: float = 0.0
    deflection_px: float = 0.0

    @classmethod
    def from_config(cls, cfg: dict) -> "DistortionParams":
        """From a whole config (its [distortion] table; absent: everything off)."""
        return cls(**{**DEFAULTS, **(cfg.get("distortion") or {})})

    @property
    def enabled(self) -> bool:
        return self != DistortionParams(descan_smooth=self.descan_smooth)

    @property
    def geometric(self) -> bool:
        """Anything that moves pixels (else only gain and bad pixels)."""
        return bool(self.descan_px or self.ellipticity or self.rotation_deg or self.flip or self.deflection_px)


def rotation(deg: float) -> np.ndarray:
    """R turning (row, col) vectors from Qx towards Qy by deg."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s], [s, c]])


TRANSPOSE = np.array([[0.0, 1.0], [1.0, 0.0]])


def ellipse_matrix(ellipticity: float, axis_deg: float) -> np.ndarray:
    """E: stretch sqrt(1 + e) along axis_deg, 1 / sqrt(1 + e) across; (row, col)."""
    r = rotation(axis_deg)
    k = math.sqrt(1 + ellipticity)
    return r @ np.diag([k, 1 / k]) @ r.T


def detector_matrix(ellipticity: float, axis_deg: float, rotation_deg: float, flip: bool) -> np.ndarray:
    """A = E R F: aligned-pattern (row, col) offsets -> detector offsets."""
    return ellipse_matrix(ellipticity, axis_deg) @ rotation(rotation_deg) @ (TRANSPOSE if flip else np.eye(2))


class Distortion:
    """The distortions of one simulated session (scan shape, pattern size, seed), drawn once."""

    def __init__(self, params: DistortionParams, scan, pattern: int, seed: int, grain=None):
        self.p, self.scan, self.pattern = params, tuple(scan), int(pattern)
        rng = np.random.default_rng([int(seed), 7])
        self.A = detector_matrix(params.ellipticity, params.ellipse_axis_deg, params.rotation_deg, params.flip)
        self.origin = descan(rng, self.scan, params.descan_px, params.descan_smooth)
        self.deflection = deflection(rng, self.scan, params.deflection_px, grain)
        n = self.pattern**2
        self.bad = np.zeros(n, np.int8)
        nbad = int(round(params.bad_pixel_fraction * n))
        pick = rng.choice(n, size=nbad, replace=False)
        self.bad[pick[: nbad // 2]], self.bad[pick[nbad // 2:]] = 1, 2  # dead, hot
        self.bad = self.bad.reshape(self.pattern, self.pattern)
        self.gain = np.clip(1 + params.gain_std * rng.standard_normal((self.pattern, self.pattern)), 0, None)

    def warp(self, patterns: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Aligned patterns (n, P, P) at scan positions (rows, cols) -> as the detector sees them
        (before noise): moved by origin and deflection, distorted by A. Cubic splines; what leaves
        the detector is lost (sums may drop below 1), nothing is renormalised."""
        if not self.p.geometric:
            return patterns
        from scipy.ndimage import map_coordinates

        P = self.pattern
        c = (P - 1) / 2
        grid = np.stack(np.mgrid[:P, :P].reshape(2, -1).astype(np.float64))  # (2, P*P) detector (row, col)
        inv = np.linalg.inv(self.A)
        out = np.empty_like(patterns, dtype=np.float32)
        for i, (r, s) in enumerate(zip(rows, cols)):
            q = inv @ (grid - c - self.origin[r, s][:, None]) - self.deflection[r, s][:, None] + c
            img = map_coordinates(np.asarray(patterns[i], np.float64), q, order=3, mode="constant", cval=0.0)
            out[i] = np.clip(img, 0, None).reshape(P, P)
        return out

    def detect(self, patterns: np.ndarray) -> np.ndarray:
        """The detector's pixels: gain, dead pixels read 0, hot pixels HOT_LEVEL (after noise)."""
        out = patterns * self.gain.astype(np.float32)
        out[..., self.bad == 1] = 0.0
        out[..., self.bad == 2] = HOT_LEVEL
        return out.astype(np.float32)

    def attrs(self) -> dict:
        out = {f"distortion.{k}": v for k, v in asdict(self.p).items()}
        out.update({"distortion.A": self.A.ravel().tolist(), "distortion.hot_level": HOT_LEVEL,
                    "distortion.convention": "p = c + origin + A (q + deflection), (row, col) = (Qx, Qy) px; "
                                             "A = E R(rotation) F, angles from Qx towards Qy, F swaps Qx and Qy"})
        return out

    def write_truth(self, h5file) -> None:
        g = h5file.require_group("distortion")
        for name, v in (("origin", self.origin), ("deflection", self.deflection), ("bad_pixels", self.bad),
                        ("gain", self.gain)):
            if name in g:
                del g[name]
            g.create_dataset(name, data=v.astype(np.int8 if name == "bad_pixels" else np.float32))


def descan(rng, scan, peak_to_peak: float, smooth_share: float) -> np.ndarray:
    """(Rx, Ry, 2) origin shifts: a random linear ramp plus a smooth term (a sine of at most half a
    period across the scan along a random direction, per axis), scaled so the largest peak-to-peak
    along a detector axis is peak_to_peak. Zero-mean."""
    rx, ry = scan
    if peak_to_peak <= 0:
        return np.zeros((rx, ry, 2))
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, rx), np.linspace(-0.5, 0.5, ry), indexing="ij")
    ramp = np.einsum("ij,jab->abi", rng.normal(size=(2, 2)), np.stack([u, v]))
    smooth = np.zeros_like(ramp)
    for k in range(2):
        angle, phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.0)
        smooth[..., k] = np.sin(np.pi * freq * (u * math.cos(angle) + v * math.sin(angle)) + phase)
    scale = np.ptp(ramp, axis=(0, 1)).max()
    smooth *= smooth_share * scale / max(np.ptp(smooth, axis=(0, 1)).max(), 1e-12)
    o = ramp + smooth
    o -= o.mean(axis=(0, 1))
    return o * (peak_to_peak / np.ptp(o, axis=(0, 1)).max())


def deflection(rng, scan, amplitude: float, grain=None) -> np.ndarray:
    """(Rx, Ry, 2) gradient (d/dRx, d/dRy) of a potential: a random step per grain (thickness),
    blurred over 0.7 scan step (the probe); max magnitude amplitude. No long-range term (a thickness
    wedge): its uniform deflection is a descan as far as any data can tell."""
    from scipy.ndimage import gaussian_filter

    rx, ry = scan
    if amplitude <= 0 or min(rx, ry) < 2:
        return np.zeros((rx, ry, 2))
    grain = np.zeros((rx, ry), np.int64) if grain is None else np.asarray(grain)
    phi = rng.standard_normal(int(grain.max()) + 1)[grain]
    phi = gaussian_filter(phi, 0.7, mode="nearest")
    d = np.stack(np.gradient(phi), -1)
    return d * (amplitude / max(np.hypot(d[..., 0], d[..., 1]).max(), 1e-12))
