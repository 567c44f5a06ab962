"""The sample both engines see: grains and one smooth displacement field, and its ground truth.

Coordinates. Scan position (i, j) (row i of Rx, column j of Ry) sits at the scan-unit point
s = (i + 0.5, j + 0.5); scan axis 0 is the specimen's x and axis 1 its y, the (x, y) of the
detector convention in ccstae/physics/simulate.py. In Angstrom the point is margin + s * scan_step_A
(ccstae/physics/multislice.py builds the specimen in those coordinates).

Grains: Voronoi cells around n_grains seeds drawn uniformly over the scan, each with an in-plane
rotation phi uniform in +-grain_rotation_deg.

Displacement (strain_field = "displacement"): u(s) = A grad(phi) + B curl(psi) (in scan units,
u_Angstrom = scan_step_A * u), with phi and psi sums of random plane waves whose wave vectors
are drawn on the strain_correlation scale. grad(phi) is irrotational, so A grad grad(phi) is a
pure (symmetric) strain, scaled so its largest component over the scan is strain_amplitude;
curl(psi) carries the local rotation, scaled so its largest rotation is rotation_field_deg (it
adds a traceless shear of the same size). The deformation gradient F = I + grad u is analytic
at every point, so atoms (multislice) and probe positions (ground truth) use the same field.

Ground truth: a grain rotated by phi and deformed by F has reciprocal vectors
g' = F^-T R(phi) g = M g. The polar decomposition of M (model/strain.polar_strain, the same
code the strain maps go through, frame="pattern") gives the (exx, eyy, exy, theta) for which
R(theta) (I + eps)^-T = M exactly: the simulator's convention with finite strain, in the
pattern frame the renderer takes (the frame where scan axis 0 is x, see Coordinates; cubes
store the ground truth in the user frame, ccstae/physics/strain.py and docs/frame.md).
"""
from __future__ import annotations

import numpy as np

N_MODES = 32  # plane waves per potential: enough for a smooth random field without a grid


def grains(p, rng):
    """(seeds (G, 2) in scan units, rotations (G,) in radians) of the Voronoi grains."""
    rx, ry = p.scan
    seeds = rng.uniform([0, 0], [rx, ry], size=(p.n_grains, 2))
    rot = np.radians(rng.uniform(-p.grain_rotation_deg, p.grain_rotation_deg, p.n_grains))
    return seeds, rot


def grain_of(seeds, s) -> np.ndarray:
    """Grain index of points s (..., 2) in scan units (nearest seed)."""
    d2 = ((np.asarray(s)[..., None, :] - seeds) ** 2).sum(-1)
    return np.argmin(d2, axis=-1).astype(np.int32)


def probe_points(p) -> np.ndarray:
    """(Rx, Ry, 2) scan-unit coordinates of every probe position."""
    rx, ry = p.scan
    i, j = np.mgrid[:rx, :ry]
    return np.stack([i + 0.5, j + 0.5], -1).astype(np.float64)


class Displacement:
    """u(s) = A grad(phi) + B curl(psi) in scan units, with its analytic gradient."""

    def __init__(self, p, rng):
        rx, ry = p.scan
        sigma = p.strain_correlation * (rx + ry) / 2  # the correlation length of the old fields
        self.k = rng.normal(0, 1 / sigma, size=(2, N_MODES, 2))  # (phi|psi, mode, xy)
        self.phase = rng.uniform(0, 2 * np.pi, size=(2, N_MODES))
        self.a = self.b = 1.0
        pts = probe_points(p).reshape(-1, 2)
        h_phi, h_psi = self._hessians(pts)
        strain = np.abs(h_phi).max()
        rotation = np.abs(0.5 * (h_psi[:, 0, 0] + h_psi[:, 1, 1])).max()
        self.a = p.strain_amplitude / strain if strain > 0 else 0.0
        self.b = np.radians(p.rotation_field_deg) / rotation if rotation > 0 else 0.0

    def _waves(self, s, which):
        arg = np.asarray(s, np.float64) @ self.k[which].T + self.phase[which]  # (..., modes)
        return np.cos(arg), np.sin(arg)

    def _hessians(self, s):
        """Hessians of phi and psi at s (..., 2) -> two (..., 2, 2) arrays."""
        out = []
        for which in (0, 1):
            cos, _ = self._waves(s, which)
            kk = self.k[which][:, :, None] * self.k[which][:, None, :]  # (modes, 2, 2)
            out.append(-np.einsum("...m,mij->...ij", cos, kk))
        return out

    def __call__(self, s) -> np.ndarray:
        """u (..., 2) at points s (..., 2), scan units."""
        _, sin_phi = self._waves(s, 0)
        _, sin_psi = self._waves(s, 1)
        grad_phi = -sin_phi @ self.k[0]  # d/ds cos(k.s + p) = -k sin
        grad_psi = -sin_psi @ self.k[1]
        curl_psi = np.stack([grad_psi[..., 1], -grad_psi[..., 0]], -1)
        return self.a * grad_phi + self.b * curl_psi

    def gradient(self, s) -> np.ndarray:
        """grad u (..., 2, 2), [i, j] = du_i / ds_j (dimensionless: the same in Angstrom)."""
        h_phi, h_psi = self._hessians(s)
        curl_grad = np.stack([np.stack([h_psi[..., 1, 0], h_psi[..., 1, 1]], -1),
                              np.stack([-h_psi[..., 0, 0], -h_psi[..., 0, 1]], -1)], -2)
        return self.a * h_phi + self.b * curl_grad


def displacement_sample(p):
    """(seeds, grain rotations, Displacement) of a sample: the same draws for both engines."""
    rng = np.random.default_rng([p.seed, 3])
    seeds, rot = grains(p, rng)
    return seeds, rot, Displacement(p, rng)


def displacement_ground_truth(p) -> dict:
    """Ground-truth maps (exx, eyy, exy, theta float32, grain int32) of the displacement sample,
    in the pattern frame (what render_patterns takes)."""
    from ccstae.physics.strain import polar_strain

    seeds, rot, u = displacement_sample(p)
    pts = probe_points(p)
    grain = grain_of(seeds, pts)
    f = np.eye(2) + u.gradient(pts)
    c, s = np.cos(rot[grain]), np.sin(rot[grain])
    r = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    m = np.swapaxes(np.linalg.inv(f), -1, -2) @ r
    out = {k: v.astype(np.float32) for k, v in polar_strain(m, frame="pattern").items()}
    out["grain"] = grain
    return out
