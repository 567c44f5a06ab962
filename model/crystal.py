"""Crystals seen down the beam (z): atoms for multislice, reciprocal lattices for both engines.

`[simulate] crystal` names one of CRYSTALS; "none" is the structureless lattice the kinematic
engine always had (`lattice` hexagonal / square / rectangular, constants `lattice_constant` and
`lattice_constant_b`). Every crystal is built in an orthogonal cell with its reference
orientation fixed by the detector convention of model/simulate.py:

- hexagonal: a first-order reflection along +x (g1 = |g| (1, 0), g2 = |g| (1/2, sqrt(3)/2));
- square / rectangular: reflections along x and y (a along x, b along y).

Grain rotations and strain act on that reference, in both engines.
"""
from __future__ import annotations

import math

import numpy as np

from model.errors import UserError

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
        from abtem.atoms import orthogonalize_cell

        cell = orthogonalize_cell(ase.build.mx2(p.crystal, "2H", a=a, thickness=MX2_THICKNESS[p.crystal],
                                                vacuum=1.0))
        # mx2's orthogonal cell (a, a sqrt(3)) has a reflection along +y: swap x and y so one lies along +x.
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
