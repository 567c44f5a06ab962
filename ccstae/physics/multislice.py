"""Multislice engine (abTEM 1.0.9, the optional extra `[multislice]`): the sample from atoms.

The specimen is the sample of ccstae/physics/sample.py made of atoms: the crystal's orthogonal cell
(ccstae/physics/crystal.py) tiled over the specimen once per grain, rotated by the grain's angle, each
atom kept in the grain whose Voronoi cell holds it, then moved by the displacement field u.
The specimen spans the scan plus a margin on every side, so the probe never sees the seam of
the periodic cell abTEM assumes, and is at least SAMPLES_PER_PX / k_px wide, so every pattern is
sampled at half a detector pixel or finer whatever the scan size. Its potential (Lobato parametrisation, infinite projection,
`slice_thickness_A` slices, `sampling_A` sampling) is built ONCE per sample; then each scan row
is one abTEM probe scan (CustomScan over the row's positions, PixelatedDetector).

Each diffraction pattern is resampled onto the project's detector grid (ccstae/physics/simulate.py: a
pixel (row, col) sees k = ((col - c) k_px, (row - c) k_px) as (kx, ky), c = (P - 1) / 2): the
abTEM intensity per reciprocal area is low-pass filtered to the detector pixel size when the
abTEM grid is finer, interpolated (bilinear) at the detector pixel centres, and normalised to
sum 1 like the kinematic patterns, so ccstae/physics/noise.py applies unchanged. The share of the
electrons that land on the detector is kept per pattern in the dataset /detected_fraction.

Rows are written one at a time through a resumable cube_writer.CubeWriter: an interrupted run
carries on from its last finished row. A GPU is used when abTEM can (cupy importable).
No thermal diffuse scattering (no frozen phonons): disks, no Kikuchi background.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.fft import next_fast_len
from scipy.ndimage import gaussian_filter, map_coordinates

from ccstae.core.errors import UserError


# abTEM computes through dask. Inside a study's Dask worker dask would hand that graph to the study's
# own cluster, whose workers may all be busy (one of them waiting for this very run): a deadlock.
# The engine's arrays are computed here, by this process's threads.
LOCAL_SCHEDULER = "threads"


def import_abtem():
    """abTEM, configured quietly (GPU when cupy is present); a UserError naming the extra if absent."""
    try:
        import abtem
    except ImportError:
        raise UserError('the multislice engine needs abTEM: pip install -e ".[multislice]"') from None
    try:
        import cupy  # noqa: F401
        device = "gpu"
    except ImportError:
        device = "cpu"
    abtem.config.set({"device": device, "diagnostics.progress_bar": False})
    return abtem


# abTEM samples a pattern at dk = 1 / (specimen width). Coarser than half a detector pixel, a disk's
# sharp edge is point-sampled and moves in steps (on a 16x16 scan of ms-mos2-single dk was 1.9 px,
# on its 64x64 training scan 0.7 px: other optics for test and training patterns), so the
# specimen is made at least this many samples per detector pixel wide, whatever the scan.
SAMPLES_PER_PX = 2.0
# Bumped whenever the patterns of one [simulate] change: cached clean runs carry it in their key.
RENDER_VERSION = 2


def min_extent_A(p) -> float:
    """The narrowest specimen that samples the pattern at SAMPLES_PER_PX per detector pixel."""
    return SAMPLES_PER_PX / p.k_px


def margin_A(p) -> float:
    """Specimen margin around the scan: a few probe radii (lambda / alpha), at least 6 A, and
    enough for the pattern's sampling (min_extent_A)."""
    rx, ry = p.scan
    short = min_extent_A(p) - min(rx, ry) * p.scan_step_A
    return max(6.0, 1.5 * p.wavelength / (p.convergence_mrad * 1e-3), short / 2)


def specimen_extent(p) -> tuple:
    rx, ry = p.scan
    m = margin_A(p)
    return (rx * p.scan_step_A + 2 * m, ry * p.scan_step_A + 2 * m)


def probe_positions_A(p) -> np.ndarray:
    """(Rx, Ry, 2) probe positions (x, y) in Angstrom in the specimen."""
    from ccstae.physics.sample import probe_points

    return margin_A(p) + probe_points(p) * p.scan_step_A


def build_specimen(p):
    """ase.Atoms of the whole specimen: grains of the rotated crystal, displaced by u."""
    import ase

    from ccstae.physics.crystal import unit_cell
    from ccstae.physics.sample import displacement_sample, grain_of

    seeds, rotations, u = displacement_sample(p)
    cell = unit_cell(p)
    ex, ey = specimen_extent(p)
    centre = np.array([ex / 2, ey / 2])
    half = math.hypot(ex, ey) / 2 + 2 * max(cell.cell[0, 0], cell.cell[1, 1])
    nx, ny = (int(math.ceil(2 * half / cell.cell[i, i])) for i in (0, 1))
    tiled = cell * (nx, ny, 1)
    xy0 = tiled.positions[:, :2] - np.array([nx * cell.cell[0, 0], ny * cell.cell[1, 1]]) / 2
    m = margin_A(p)
    numbers, positions = [], []
    for g, phi in enumerate(rotations):
        c, s = math.cos(phi), math.sin(phi)
        xy = xy0 @ np.array([[c, s], [-s, c]]) + centre  # rotate by +phi about the specimen centre
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < ex) & (xy[:, 1] >= 0) & (xy[:, 1] < ey)
        scan_units = (xy - m) / p.scan_step_A
        keep = inside & (grain_of(seeds, scan_units) == g)
        moved = xy[keep] + p.scan_step_A * u(scan_units[keep])
        positions.append(np.column_stack([moved, tiled.positions[keep, 2]]))
        numbers.append(tiled.numbers[keep])
    atoms = ase.Atoms(numbers=np.concatenate(numbers), positions=np.concatenate(positions),
                      cell=[ex, ey, cell.cell[2, 2]], pbc=True)
    atoms.wrap()  # atoms the field pushed over the edge come back in on the other side (margin)
    return atoms


class Engine:
    """The built potential and probe of one sample; `row(r)` -> (Ry, P, P) patterns, sum 1."""

    def __init__(self, p):
        abtem = import_abtem()
        self.p, self.abtem = p, abtem
        atoms = build_specimen(p)
        kmax = (p.pattern / 2 + 2) * p.k_px * math.sqrt(2) + 4 * p.jitter_px * p.k_px  # detector corner
        valid = abtem.config.get("antialias.cutoff") / (2 * p.sampling_A)
        if kmax >= valid:
            raise UserError(f"config simulate.sampling_A = {p.sampling_A}: the detector reaches k = {kmax:.2f} 1/A "
                            f"but multislice at this sampling holds k < {valid:.2f} 1/A; use sampling_A <= "
                            f"{abtem.config.get('antialias.cutoff') / (2 * kmax):.3f}")
        # FFT-friendly grid sizes at (at most) the requested sampling: odd prime factors make every FFT slow
        gpts = [next_fast_len(math.ceil(e / p.sampling_A)) for e in atoms.cell.lengths()[:2]]
        potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=p.slice_thickness_A,
                                    projection="infinite", parametrization="lobato")
        self.potential = potential.build().compute(scheduler=LOCAL_SCHEDULER)
        self.probe = abtem.Probe(energy=p.beam_energy_kv * 1e3, semiangle_cutoff=p.convergence_mrad)
        self.probe.grid.match(self.potential)
        self.detector = abtem.PixelatedDetector(max_angle=kmax * p.wavelength * 1e3)
        self.positions = probe_positions_A(p)
        self.n_atoms = len(atoms)

    def row(self, r: int, jitter: np.ndarray | None = None):
        """Patterns of scan row r (Ry, P, P) float32 summing to 1, and the detected fractions (Ry,).

        jitter: (Ry, 2) pattern-centre shifts (row, col) in pixels, or None.
        """
        scan = self.abtem.CustomScan(self.positions[r])
        m = self.probe.scan(self.potential, scan=scan, detectors=self.detector).compute(scheduler=LOCAL_SCHEDULER)
        arr = np.asarray(m.array, np.float64).reshape(-1, *m.array.shape[-2:])
        axes = m.axes_metadata[-2:]
        k0 = [ax.offset for ax in axes]  # k of index 0 along kx, ky
        dk = [ax.sampling for ax in axes]
        return resample(arr, k0, dk, self.p, jitter)


def resample(arr, k0, dk, p, jitter=None):
    """abTEM patterns (N, nkx, nky) on the project's detector -> (N, P, P) float32 sum 1, fractions (N,)."""
    P, c = p.pattern, p.centre
    rows, cols = np.mgrid[:P, :P].astype(np.float64)
    out = np.empty((len(arr), P, P), np.float32)
    fraction = np.empty(len(arr), np.float32)
    for n, pattern in enumerate(arr):
        total = pattern.sum()
        shift = (0.0, 0.0) if jitter is None else jitter[n]
        kx = (cols - c - shift[1]) * p.k_px  # x along columns
        ky = (rows - c - shift[0]) * p.k_px  # y along rows
        density = pattern
        sigma = [0.4 * p.k_px / d if p.k_px > 1.5 * d else 0 for d in dk]
        if any(sigma):
            density = gaussian_filter(pattern, sigma, mode="constant")
        coords = np.stack([(kx - k0[0]) / dk[0], (ky - k0[1]) / dk[1]])
        img = map_coordinates(density, coords, order=1, mode="constant") * (p.k_px**2 / (dk[0] * dk[1]))
        fraction[n] = img.sum() / total if total > 0 else 0.0
        out[n] = img / img.sum()
    return out, fraction


def simulate_rows(p, writer, gt, progress: bool = True):
    """Fill writer's rows from writer.rows_done on (resume) with clean multislice patterns, then its maps
    (gt: as they are to be stored, the user frame)."""
    from tqdm import tqdm

    engine = Engine(p)
    rx, ry = gt["exx"].shape
    if "detected_fraction" not in writer.file:  # share of the electrons on the detector, per pattern
        writer.file.create_dataset("detected_fraction", shape=(rx, ry), dtype="float32")
    bar = tqdm(range(writer.rows_done, rx), desc=f"multislice ({engine.n_atoms} atoms)", unit="row",
               disable=not progress, dynamic_ncols=True, initial=writer.rows_done, total=rx)
    for r in bar:
        jitter = (np.random.default_rng([p.seed, 1, r]).normal(0.0, p.jitter_px, size=(ry, 2))
                  if p.jitter_px > 0 else None)
        row, frac = engine.row(r, jitter)
        writer.file["detected_fraction"][r] = frac
        writer.write_rows(r, row.reshape(1, ry, p.pattern, p.pattern))
    writer.write_ground_truth(gt)
