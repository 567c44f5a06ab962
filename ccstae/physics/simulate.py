"""4D-STEM simulator: a strained polycrystal seen by a scanned probe; the kinematic engine.

Sample. A 2D scan of Rx x Ry probe positions over Voronoi grains, each with its own
in-plane rotation, plus smooth strain and rotation: either independent Gaussian-filtered
fields (strain_field = "independent", the original simulator) or the gradient of one
displacement field (strain_field = "displacement", ccstae/physics/sample.py), the sample the
multislice engine (ccstae/physics/multislice.py, `engine = "multislice"`) builds from atoms; the
kinematic engine draws the very same sample. `ground_truth_maps` returns exx, eyy, exy
(dimensionless), theta (RADIANS) and the grain label of every probe position, in the pattern
frame below (what render_patterns takes); cubes store them in the user frame, py4DSTEM's
(exx along Qx = pattern axis 2: exx and eyy swapped, ccstae/physics/strain.swap_frame), with the
attribute strain_frame (docs/frame.md).
`simulate_scan` (ccstae/physics/scans.py: whole scans on disk) dispatches on `engine`, so every
caller gets either.

Pattern geometry (the convention the model relies on; it matches ccstae/model/stn.py):

- A detector pixel (row, col) has its centre at index coordinates (row, col). The pattern
  centre is c = (P - 1) / 2 on both axes (between the two middle pixels for even P).
- A reciprocal vector g = (x, y) in pixels maps to the pixel position
      row = c + y,   col = c + x,
  i.e. x runs along columns (numpy axis -1) and y along rows (numpy axis -2), y pointing
  down the image. R(theta) = [[cos, -sin], [sin, cos]] acts on (x, y).
- Reference lattice: hexagonal, real-space constant a, first-order |g| = 2 / (sqrt(3) a)
  (1/Angstrom, no 2 pi), g1 = |g| (1, 0) and g2 = |g| (1/2, sqrt(3)/2) in (x, y); square and
  rectangular lattices have a along x and b along y (ccstae/physics/crystal.py: crystals and lattices).
- A probe position with strain eps = [[exx, exy], [exy, eyy]] and rotation theta puts the
  disk of g at  g' = R(theta) (I + eps)^-T g ; the central disk stays at g' = 0.
  `disk_centres` returns these positions as (row, col) pixel coordinates.

Detector: reciprocal pixel size k_px = (detector pixel / camera length) / lambda, with
lambda the relativistic electron wavelength. Disks are soft top-hats of radius
convergence / lambda / k_px pixels with intensity exp(-B |g|^2 / 4) (|g| of the reference
lattice), times the kinematic |F(g)|^2 of a named crystal; the central disk `central_disk`
times a first-order disk, or `central_share` of all the electrons (see reciprocal_lattice).
Patterns are float32 and normalised to sum 1, which is what ccstae/physics/noise.py expects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import constants
from scipy.ndimage import gaussian_filter

from ccstae.core.errors import UserError


def electron_wavelength(kv: float) -> float:
    """Relativistic electron wavelength in Angstrom at an accelerating voltage in kV."""
    v = kv * 1e3
    m, e, c, h = constants.m_e, constants.e, constants.c, constants.h
    return h / math.sqrt(2 * m * e * v * (1 + e * v / (2 * m * c**2))) * 1e10


@dataclass(frozen=True)
class SimParams:
    """The [simulate] section of a config, validated, plus the derived detector geometry."""
    scan: tuple
    pattern: int
    n_grains: int
    grain_rotation_deg: float
    rotation_field_deg: float
    strain_amplitude: float
    strain_correlation: float
    lattice_constant: float
    beam_energy_kv: float
    camera_length_mm: float
    detector_pixel_um: float
    convergence_mrad: float
    disk_edge_px: float
    intensity_decay: float
    central_disk: float
    jitter_px: float
    seed: int
    # The sample and the engine (defaults reproduce the original kinematic simulator)
    engine: str = "kinematic"
    crystal: str = "none"
    lattice: str = "hexagonal"
    lattice_constant_b: float = 0.0
    strain_field: str = "independent"
    scan_step_A: float = 1.0
    thickness_A: float = 0.0
    sampling_A: float = 0.1
    slice_thickness_A: float = 1.0
    central_share: float = 0.0

    OPTIONAL = ("engine", "crystal", "lattice", "lattice_constant_b", "strain_field", "scan_step_A",
                "thickness_A", "sampling_A", "slice_thickness_A", "central_share")
    CHOICES = {"engine": ("kinematic", "multislice"), "lattice": ("hexagonal", "square", "rectangular"),
               "strain_field": ("independent", "displacement")}

    @classmethod
    def from_config(cls, sim: dict) -> "SimParams":
        """Build from the [simulate] dict; every bad value is a UserError naming its key."""
        def bad(key, why):
            return UserError(f"config simulate.{key} = {sim.get(key)!r}: {why}")

        missing = [f for f in cls.__dataclass_fields__ if f not in sim and f not in cls.OPTIONAL]
        if missing:
            raise UserError(f"config [simulate] is missing {', '.join(missing)}")
        scan = sim["scan"]
        if (not isinstance(scan, (list, tuple)) or len(scan) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in scan)):
            raise bad("scan", "must be two positive integers [Rx, Ry]")
        ints = {"pattern": 8, "n_grains": 1, "seed": 0}
        for key, low in ints.items():
            v = sim[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise bad(key, f"must be an integer >= {low}")
        sim = {**{k: cls.__dataclass_fields__[k].default for k in cls.OPTIONAL}, **sim}
        for key, allowed in cls.CHOICES.items():
            if sim[key] not in allowed:
                raise bad(key, f"must be one of {', '.join(map(repr, allowed))}")
        positive = ["strain_correlation", "lattice_constant", "beam_energy_kv", "camera_length_mm",
                    "detector_pixel_um", "convergence_mrad", "disk_edge_px", "scan_step_A", "sampling_A",
                    "slice_thickness_A"]
        non_negative = ["grain_rotation_deg", "rotation_field_deg", "strain_amplitude",
                        "intensity_decay", "central_disk", "jitter_px", "lattice_constant_b", "thickness_A", "central_share"]
        for key in positive + non_negative:
            v = sim[key]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise bad(key, "must be a finite number")
            if key in positive and v <= 0:
                raise bad(key, "must be > 0")
            if v < 0:
                raise bad(key, "must be >= 0")
        if sim["central_share"] >= 1:
            raise bad("central_share", "must be < 1 (a fraction of the counts; 0: use central_disk)")
        if sim["strain_amplitude"] >= 0.5:
            raise bad("strain_amplitude", "must be < 0.5 (a strain, not a percentage)")
        p = cls(scan=tuple(int(v) for v in scan),
                **{k: (int(sim[k]) if k in ints else sim[k] if k in cls.CHOICES or k == "crystal" else float(sim[k]))
                   for k in cls.__dataclass_fields__ if k != "scan"})
        from ccstae.physics.crystal import check_crystal
        check_crystal(p.crystal, p.thickness_A)
        if p.engine == "multislice" and p.crystal == "none":
            raise bad("crystal", "the multislice engine needs atoms: name a crystal (ccstae/physics/crystal.py), "
                                 "or use a preset ms-*")
        if p.engine == "multislice" and p.strain_field != "displacement":
            raise bad("strain_field", "the multislice engine moves atoms: set strain_field = \"displacement\"")
        if p.g1_px + p.disk_radius_px >= p.pattern / 2:
            raise UserError(f"config [simulate]: first-order disks at {p.g1_px:.1f} px (radius "
                            f"{p.disk_radius_px:.1f} px) do not fit on a {p.pattern} px detector; "
                            "shorten camera_length_mm or enlarge pattern")
        return p

    # Derived geometry. Units: Angstrom, 1/Angstrom, detector pixels.
    @property
    def wavelength(self) -> float:
        return electron_wavelength(self.beam_energy_kv)

    @property
    def k_px(self) -> float:
        """Reciprocal-space size of one detector pixel (1/Angstrom)."""
        return (self.detector_pixel_um * 1e-6 / (self.camera_length_mm * 1e-3)) / self.wavelength

    @property
    def g1(self) -> float:
        """First-order reciprocal vector length (1/Angstrom): the shortest reflection that is not extinct."""
        if self.crystal == "none" and self.lattice == "hexagonal":
            return 2 / (math.sqrt(3) * self.lattice_constant)
        return _crystal_reflections(self)[1]

    @property
    def g1_px(self) -> float:
        return self.g1 / self.k_px

    @property
    def disk_radius_px(self) -> float:
        return self.convergence_mrad * 1e-3 / self.wavelength / self.k_px

    @property
    def centre(self) -> float:
        """Pattern centre (row and col) in pixel index coordinates."""
        return (self.pattern - 1) / 2

    def geometry(self) -> dict:
        """Derived numbers worth saving next to the data."""
        return {"wavelength_A": self.wavelength, "k_px_inv_A": self.k_px, "g1_px": self.g1_px,
                "disk_radius_px": self.disk_radius_px, "pattern_centre_px": self.centre}


def sim_params(cfg) -> SimParams:
    """SimParams from a SimParams, a [simulate] dict or a whole config (with a 'simulate' key)."""
    if isinstance(cfg, SimParams):
        return cfg
    if "simulate" in cfg:
        cfg = cfg["simulate"]
    return SimParams.from_config(cfg)


# ---------------------------------------------------------------------------------------
# Ground truth


def _smooth_field(rng, shape, sigma, amplitude):
    """Gaussian-filtered white noise rescaled so max |field| = amplitude."""
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    field -= field.mean()
    peak = np.abs(field).max()
    return field * (amplitude / peak) if peak > 0 else np.zeros(shape)


def ground_truth_maps(sim_cfg) -> dict:
    """Maps of the sample: exx, eyy, exy, theta (radians) as (Rx, Ry) float32, grain int32, in the
    pattern frame (x along pattern columns: render_patterns' arguments; cubes store
    strain.swap_frame of them, the user frame).

    strain_field = "displacement": from the gradient of one displacement field (ccstae/physics/sample.py),
    the sample the multislice engine builds. "independent" (the original simulator, below):

    theta = grain rotation (uniform in +-grain_rotation_deg) + a smooth rotation field of
    amplitude rotation_field_deg. The strain field is one smooth field across grains.
    """
    p = sim_params(sim_cfg)
    if p.strain_field == "displacement":
        from ccstae.physics.sample import displacement_ground_truth
        return displacement_ground_truth(p)
    rng = np.random.default_rng([p.seed, 0])
    rx, ry = p.scan
    seeds = rng.uniform([0, 0], [rx, ry], size=(p.n_grains, 2))
    rows, cols = np.mgrid[:rx, :ry]
    d2 = (rows[..., None] + 0.5 - seeds[:, 0]) ** 2 + (cols[..., None] + 0.5 - seeds[:, 1]) ** 2
    grain = np.argmin(d2, axis=-1).astype(np.int32)
    grain_rot = np.radians(rng.uniform(-p.grain_rotation_deg, p.grain_rotation_deg, p.n_grains))
    sigma = p.strain_correlation * (rx + ry) / 2
    maps = {k: _smooth_field(rng, (rx, ry), sigma, p.strain_amplitude) for k in ("exx", "eyy", "exy")}
    maps["theta"] = grain_rot[grain] + _smooth_field(rng, (rx, ry), sigma, np.radians(p.rotation_field_deg))
    out = {k: v.astype(np.float32) for k, v in maps.items()}
    out["grain"] = grain
    return out


# ---------------------------------------------------------------------------------------
# Patterns


def _crystal_reflections(p, order: int = 8):
    """(g (N, 2) in 1/Angstrom, first-order |g|, intensities (N,) relative to the strongest reflection)
    of every reflection up to `order` times the basis, g = 0 first; extinct ones (|F|^2 < 1e-6 of
    the strongest) dropped. The first order is the shortest reflection left."""
    from ccstae.physics.crystal import intensities, reciprocal_basis

    key = (p.crystal, p.lattice, p.lattice_constant, p.lattice_constant_b, order)
    if key not in _REFLECTIONS:
        basis = reciprocal_basis(p)
        h, k = np.mgrid[-order:order + 1, -order:order + 1].reshape(2, -1)
        g = h[:, None] * basis[0] + k[:, None] * basis[1]
        g = g[np.argsort(np.hypot(g[:, 0], g[:, 1]), kind="stable")]
        inten = intensities(p, g)
        keep = inten > 1e-6 * inten[1:].max()
        keep[0] = True
        g, inten = g[keep], inten[keep]
        gabs = np.hypot(g[:, 0], g[:, 1])
        _REFLECTIONS[key] = (g, gabs[1], inten / inten[1:].max())
    return _REFLECTIONS[key]


_REFLECTIONS = {}


def reciprocal_lattice(sim_cfg):
    """Reference lattice vectors g (D, 2) as (x, y) pixels and disk amplitudes (D,).

    All orders whose disk can touch the detector (with margin for strain and jitter); the
    central disk g = 0 comes first. Amplitudes: 1 for a structureless lattice; for a crystal its
    kinematic intensities |F(g)|^2 relative to the strongest reflection (ccstae/physics/crystal.py); both
    damped by exp(-B |g|^2 / 4). The central disk is `central_disk` times a first-order disk of
    the structureless lattice; or, with central_share > 0, amplitudes are shares of all the
    electrons: the central disk central_share, the rest shared by every reflection out to
    the multislice cut-off (on the detector or not) in proportion to its intensity. Patterns are normalised
    to sum 1 on the detector afterwards, as the multislice engine's are.
    """
    p = sim_params(sim_cfg)
    half = p.disk_radius_px + 5 * p.disk_edge_px
    gmax = (p.pattern / math.sqrt(2) + half) / (1 - p.strain_amplitude * 2) + 4 * p.jitter_px + 1
    if p.crystal == "none" and p.lattice == "hexagonal":  # the original simulator, unchanged
        n = int(math.ceil(gmax / p.g1_px * 2 / math.sqrt(3))) + 1
        h, k = np.mgrid[-n:n + 1, -n:n + 1].reshape(2, -1)
        g = p.g1_px * np.stack([h + 0.5 * k, k * math.sqrt(3) / 2], axis=-1)
        keep = np.hypot(g[:, 0], g[:, 1]) <= gmax
        g = g[keep]
        g = g[np.argsort(np.hypot(g[:, 0], g[:, 1]), kind="stable")]  # g = 0 first
        rel = np.ones(len(g))
    else:
        from ccstae.physics.crystal import reciprocal_basis

        order = int(math.ceil(gmax * p.k_px / np.linalg.norm(reciprocal_basis(p), axis=1).min())) + 1
        g, _, rel = _crystal_reflections(p, order)
        g = g / p.k_px
        keep = np.hypot(g[:, 0], g[:, 1]) <= gmax
        g, rel = g[keep], rel[keep]
    amp = rel * np.exp(-p.intensity_decay * (np.hypot(g[:, 0], g[:, 1]) * p.k_px) ** 2 / 4)
    amp[0] = p.central_disk * math.exp(-p.intensity_decay * p.g1**2 / 4)
    if p.central_share > 0:
        amp *= (1 - p.central_share) / _scattered_total(p)
        amp[0] = p.central_share
    return g, amp


def _scattered_total(p) -> float:
    """Sum of the damped relative intensities of every reflection with 0 < |g| <= kmax: the
    scattered electrons, on the detector or not, that central_share's complement is shared by.
    kmax = (2/3) / (2 sampling_A), the largest angle the multislice engine keeps at this sampling."""
    from ccstae.physics.crystal import reciprocal_basis

    kmax = (2 / 3) / (2 * p.sampling_A)
    order = int(math.ceil(kmax / np.linalg.norm(reciprocal_basis(p), axis=1).min())) + 1
    g, _, rel = _crystal_reflections(p, order) if p.crystal != "none" or p.lattice != "hexagonal" else \
        (_hexagonal(p, order), None, None)
    gabs = np.hypot(g[:, 0], g[:, 1])
    rel = np.ones(len(g)) if rel is None else rel
    keep = (gabs > 0) & (gabs <= kmax)
    return float((rel * np.exp(-p.intensity_decay * gabs**2 / 4))[keep].sum())


def _hexagonal(p, n):
    """Reflections (1/Angstrom) of the structureless hexagonal lattice up to order n."""
    from ccstae.physics.crystal import reciprocal_basis

    h, k = np.mgrid[-n:n + 1, -n:n + 1].reshape(2, -1)
    return h[:, None] * reciprocal_basis(p)[0] + k[:, None] * reciprocal_basis(p)[1]


def lattice_matrix(exx, eyy, exy, theta) -> np.ndarray:
    """M = R(theta) (I + eps)^-T for arrays of any (same) shape -> (..., 2, 2), in (x, y)."""
    exx, eyy, exy, theta = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (exx, eyy, exy, theta)))
    eps = np.stack([np.stack([exx, exy], -1), np.stack([exy, eyy], -1)], -2)
    inv_t = np.swapaxes(np.linalg.inv(np.eye(2) + eps), -1, -2)
    c, s = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    return rot @ inv_t


def disk_centres(params, exx, eyy, exy, theta) -> np.ndarray:
    """Pixel coordinates (row, col) of every disk centre, central disk first.

    Scalars -> (D, 2); arrays of shape S -> S + (D, 2). No jitter (that is random per pattern).
    """
    p = sim_params(params)
    g, _ = reciprocal_lattice(p)
    m = lattice_matrix(exx, eyy, exy, theta)
    gp = np.einsum("...ij,dj->...di", m, g)  # (..., D, 2) as (x, y)
    return np.stack([p.centre + gp[..., 1], p.centre + gp[..., 0]], axis=-1)


def render_patterns(sim_cfg, exx, eyy, exy, theta, rng=None, batch: int = 64) -> np.ndarray:
    """Clean patterns (N, P, P) float32, each summing to 1, for flat arrays of N positions.

    Each disk is drawn only in a small window around its centre and the windows are
    scatter-added with np.bincount, so the cost is per disk, not per detector pixel.
    rng draws the centre jitter (std jitter_px); without one it is seeded from the config.
    """
    p = sim_params(sim_cfg)
    if p.engine != "kinematic":
        raise UserError("render_patterns draws kinematic patterns, but simulate.engine = "
                        f"{p.engine!r}: simulate whole scans (train.sample_kind = \"scan\")")
    exx, eyy, exy, theta = (np.atleast_1d(np.asarray(v, np.float64)).ravel() for v in (exx, eyy, exy, theta))
    n = len(exx)
    if not len(eyy) == len(exy) == len(theta) == n:
        raise ValueError("exx, eyy, exy and theta must have the same length")
    P = p.pattern
    g, amp = reciprocal_lattice(p)
    if p.jitter_px > 0:
        rng = rng if rng is not None else np.random.default_rng([p.seed, 1])
        shift = rng.normal(0.0, p.jitter_px, size=(n, 2))  # (row, col)
    else:
        shift = np.zeros((n, 2))
    radius, edge = p.disk_radius_px, p.disk_edge_px
    half = int(math.ceil(radius + 5 * edge)) + 1
    offsets = np.arange(-half, half + 1)
    out = np.empty((n, P, P), np.float32)
    for s in range(0, n, batch):
        sl = slice(s, min(s + batch, n))
        b = sl.stop - sl.start
        centres = disk_centres(p, exx[sl], eyy[sl], exy[sl], theta[sl]) + shift[sl, None, :]  # (b, D, 2)
        base = np.floor(centres).astype(np.int64)
        rows = base[..., 0, None, None] + offsets[:, None]  # (b, D, W, 1)
        cols = base[..., 1, None, None] + offsets[None, :]  # (b, D, 1, W)
        r = np.hypot(rows - centres[..., 0, None, None], cols - centres[..., 1, None, None])
        val = amp[:, None, None] * 0.5 * (1 - np.tanh((r - radius) / edge))  # (b, D, W, W)
        inside = (rows >= 0) & (rows < P) & (cols >= 0) & (cols < P)
        flat = (np.arange(b)[:, None, None, None] * P + rows) * P + cols
        img = np.bincount(flat[inside], weights=val[inside], minlength=b * P * P).reshape(b, P, P)
        img /= img.sum(axis=(1, 2), keepdims=True)
        out[sl] = img
    return out
