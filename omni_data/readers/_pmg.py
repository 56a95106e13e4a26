"""Read a pymatgen ``Structure.as_dict()`` into arrays without building pymatgen objects.

Why: MPtrj, MatPES and the matsciml Alexandria LMDB carry structures as pymatgen dicts; reading
the plain dict (``lattice.matrix``, ``sites[].species/xyz/abc``) is much faster than
``Structure.from_dict`` and needs no pymatgen import in workers. Disordered sites (several
species or partial occupancy) cannot be one atom and raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def structure_arrays(struct: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """numbers (n,), Cartesian positions (n,3) Å, cell (3,3) Å, pbc (3,) from a Structure dict."""
    from ase.data import atomic_numbers

    try:
        lattice = struct["lattice"]
        cell = np.asarray(lattice["matrix"], dtype=np.float64).reshape(3, 3)
        pbc = np.asarray(lattice.get("pbc", (True, True, True)), dtype=bool).reshape(3)
        numbers, positions = [], []
        for site in struct["sites"]:
            species = site["species"]
            if len(species) != 1 or abs(float(species[0].get("occu", 1)) - 1.0) > 1e-8:
                raise ValueError(f"disordered site {site.get('label')!r} ({species})")
            symbol = species[0]["element"]
            if symbol not in atomic_numbers:
                raise ValueError(f"unknown element {symbol!r}")
            numbers.append(atomic_numbers[symbol])
            positions.append(site["xyz"] if "xyz" in site else np.asarray(site["abc"], dtype=np.float64) @ cell)
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"not a pymatgen Structure dict ({type(exc).__name__}: {exc})") from None
    return np.asarray(numbers, dtype=np.int64), np.asarray(positions, dtype=np.float64).reshape(-1, 3), cell, pbc


def site_property(struct: dict[str, Any], name: str) -> np.ndarray | None:
    """Per-site property ``name`` (e.g. ``magmom``) as a float array, or None if any site lacks it."""
    values = [(site.get("properties") or {}).get(name) for site in struct.get("sites", [])]
    if not values or any(v is None for v in values):
        return None
    return np.asarray(values, dtype=np.float64)
