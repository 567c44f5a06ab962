"""Crystals seen down the beam (z): atoms for multislice, reciprocal lattices for both engines.

`[simulate] crystal` names one of CRYSTALS; "none" is the structureless lattice the kinematic
engine always had (`lattice` hexagonal / square / rectangular, constants `lattice_constant` and
`lattice_constant_b`). Every crystal is built in an orthogonal cell with its reference
orientation fixed by the detector convention of ccstae/physics/simulate.py:

- hexagonal: a first-order reflection along +x (g1 = |g| (1, 0), g2 = |g| (1/2, sqrt(3)/2));
- square / rectangular: reflections along x and y (a along x, b along y).

Grain rotations and strain act on that reference, in both engines.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ccstae.core.errors import UserError

# name: (lattice kind, thickness along the beam of one repeat, description)
CRYSTALS = {
    "none": ("from `lattice`", "-", "structureless lattice, kinematic engine only"),
    "MoS2": ("hexagonal", "monolayer", "2H MoS2 monolayer (a = lattice_constant, 3.16-3.19 A)"),
    "WS2": ("hexagonal", "monolayer", "2H WS2 monolayer"),
    "MoSe2": ("hexagonal", "monolayer", "2H MoSe2 monolayer"),
    "WSe2": ("hexagonal", "monolayer", "2H WSe2 monolayer"),
    "SrTiO3": ("square", "a", "cubic perovskite along [001] (a = lattice_constant, 3.905 A)"),
    "Si110": ("rectangular", "a / sqrt(2)", "diamond Si along [110]: a/sqrt(2) x a in plane (a = 5.431 A)"),
}
# Chalcogen-chalcogen distance of each 2H monolayer (Angstrom)
MX2_THICKNESS = {"MoS2": 3.19, "WS2": 3.14, "MoSe2": 3.34, "WSe2": 3.36}


def check_crystal(name: str, thickness_A: float) -> None:
    if name not in CRYSTALS:
        raise UserError(f"config simulate.crystal = {name!r}: unknown (known: {', '.join(CRYSTALS)})")
    if name in MX2_THICKNESS and thickness_A > 0:
        raise UserError(f"config simulate.thickness_A = {thickness_A}: {name} is built as a monolayer "
                        "(set thickness_A = 0)")


def lattice_kind(p) -> str:
    """hexagonal, square or rectangular: the crystal's, or `lattice` for crystal "none"."""
    return p.lattice if p.crystal == "none" else CRYSTALS[p.crystal][0]


def unit_cell(p):
    """ase.Atoms of one orthogonal cell in the reference orientation, repeated along z to thickness_A."""
    import ase
    import ase.build

    a = p.lattice_constant
    if p.crystal in MX2_THICKNESS:
        cell = _orthogonal_hexagonal(ase.build.mx2(p.crystal, "2H", a=a, thickness=MX2_THICKNESS[p.crystal],
                                                   vacuum=1.0))
        # The orthogonal cell (a, a sqrt(3)) has a reflection along +y: swap x and y so one lies along +x.
        cell = _permute(cell, (1, 0, 2))
    elif p.crystal == "SrTiO3":
        cell = ase.Atoms("SrTiO3", scaled_positions=[(0, 0, 0), (.5, .5, .5), (.5, .5, 0), (.5, 0, .5), (0, .5, .5)],
                         cell=[a, a, a], pbc=True)
    elif p.crystal == "Si110":
        cell = _permute(ase.build.bulk("Si", "diamond", a=a, orthorhombic=True), (1, 2, 0))
    else:
        raise UserError(f"config simulate.crystal = {p.crystal!r}: the multislice engine needs atoms "
                        f"(one of {', '.join(c for c in CRYSTALS if c != 'none')})")
    repeat = max(1, math.ceil(p.thickness_A / cell.cell[2, 2])) if p.thickness_A > 0 else 1
    return cell * (1, 1, repeat)


def _orthogonal_hexagonal(atoms):
    """The (a, a sqrt(3)) orthogonal cell of a hexagonal cell a1 = (a, 0), a2 = (-a/2, a sqrt(3)/2)."""
    import ase

    a1, a2 = atoms.cell[0, :2], atoms.cell[1, :2]
    box = np.array([np.linalg.norm(a1), np.linalg.norm(a1 + 2 * a2)])
    shifts = np.array([i * a1 + j * a2 for i in range(-2, 3) for j in range(-2, 3)])
    xy = (atoms.positions[None, :, :2] + shifts[:, None, :]).reshape(-1, 2)
    keep = np.all((xy >= -1e-6) & (xy < box - 1e-6), axis=1)
    z = np.tile(atoms.positions[:, 2], len(shifts))[keep]
    numbers = np.tile(atoms.numbers, len(shifts))[keep]
    return ase.Atoms(numbers=numbers, positions=np.column_stack([xy[keep], z]),
                     cell=[box[0], box[1], atoms.cell[2, 2]], pbc=True)


def _permute(atoms, order):
    """Atoms with axes relabelled: new axis k is old axis order[k] (orthogonal cells only)."""
    out = atoms.copy()
    out.set_cell(np.diag(atoms.cell.lengths()[list(order)]))
    out.positions = atoms.positions[:, list(order)]
    return out


def in_plane_cell(p) -> np.ndarray:
    """(2, 2) rows a1, a2 (Angstrom) of the in-plane orthogonal cell of the reference orientation."""
    kind = lattice_kind(p)
    a = p.lattice_constant
    if p.crystal == "none":
        b = p.lattice_constant_b or a
        return {"hexagonal": np.array([[a * math.sqrt(3), 0], [0, a]]), "square": np.diag([a, a]),
                "rectangular": np.diag([a, b])}[kind]
    lengths = {"hexagonal": (a * math.sqrt(3), a), "square": (a, a), "rectangular": (a / math.sqrt(2), a)}[kind]
    return np.diag(lengths)


# ---------------------------------------------------------------------------------------
# Kinematic diffraction: reciprocal lattice and structure factors


def reciprocal_basis(p) -> np.ndarray:
    """(2, 2) rows b1, b2 (1/Angstrom): every reflection is h b1 + k b2 (some may be extinct).

    Structureless lattices use their primitive basis (hexagonal g1 along x, g2 at 60 degrees);
    crystals use the reciprocal of their orthogonal cell and let structure factors sort it out.
    """
    if p.crystal == "none" and lattice_kind(p) == "hexagonal":
        g = 2 / (math.sqrt(3) * p.lattice_constant)
        return g * np.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    return np.diag(1 / np.diag(in_plane_cell(p)))


def scattering_factor(symbol: str):
    """Electron scattering factor f(g) (g in 1/Angstrom, no 2 pi).

    Lobato and Van Dyck's parametrisation, the one the multislice potential uses, read from
    abTEM's parameter table without importing abTEM (seconds): f = sum_i a_i (2 + b_i g^2) /
    (1 + b_i g^2)^2. Without abTEM, a Z-weighted stand-in f = Z / (1 + (g / 0.5)^2).
    """
    params = _lobato_table().get(symbol)
    if params is None:
        from ase.data import atomic_numbers

        z = atomic_numbers[symbol]
        return lambda g: z / (1 + (np.asarray(g) / 0.5) ** 2)
    a, b = (np.asarray(v, np.float64)[:, None] for v in params)

    def f(g):
        g2 = np.asarray(g, np.float64).ravel()[None] ** 2
        return (a * (2 + b * g2) / (1 + b * g2) ** 2).sum(axis=0).reshape(np.shape(g))
    return f


@functools.lru_cache(maxsize=1)
def _lobato_table() -> dict:
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.find_spec("abtem")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(spec.submodule_search_locations[0]) / "parametrizations" / "data" / "lobato.json"
    return json.loads(path.read_text()) if path.exists() else {}


def intensities(p, g: np.ndarray) -> np.ndarray:
    """Kinematic intensities |F(g)|^2 of reflections g (N, 2) in 1/Angstrom (1 for structureless lattices).

    F(g) = sum_j f_j(|g|) exp(2 pi i g . r_j) over the atoms of one orthogonal cell, projected
    along the beam (zero-order Laue zone): relative intensities of a thin crystal, no dynamical
    scattering. Thermal damping is the config's intensity_decay, applied by the caller.
    """
    if p.crystal == "none":
        return np.ones(len(g))
    cell = unit_cell(p.__class__(**{**p.__dict__, "thickness_A": 0.0}))
    gabs = np.hypot(g[:, 0], g[:, 1])
    amp = np.zeros(len(g), np.complex128)
    for symbol in set(cell.get_chemical_symbols()):
        xy = cell.positions[np.array(cell.get_chemical_symbols()) == symbol, :2]
        amp += scattering_factor(symbol)(gabs) * np.exp(2j * np.pi * g @ xy.T).sum(axis=1)
    return np.abs(amp) ** 2
