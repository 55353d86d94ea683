"""Conversions between sparse measures and `ase.Atoms`.

ASE builds crystals, surfaces and nanoparticles (`ase.build`, `ase.cluster`) and
reads and writes every common atom file format. These two functions make any of
them a `SparseMeasure`, and back:

- species labels travel as chemical symbols (``'X'``, ASE's dummy element, for
  atoms of unknown species);
- weights travel as the per-atom array ``'weights'`` (kept by extxyz);
- the box travels in ``atoms.info`` (``'box_min'``, ``'box_max'``), and 2D
  configurations are embedded in the plane ``z = 0``.
"""

from collections.abc import Mapping

import numpy as np

from odl_atoms.space import SparseMeasure, SparseMeasureSpace

__all__ = ('to_ase', 'from_ase')

#: Default margin (angstrom) between the atoms and the box built around them.
DEFAULT_MARGIN = 3.0


def to_ase(measure, extra=None):
    """Return a sparse measure as `ase.Atoms`.

    Parameters
    ----------
    measure : `SparseMeasure`
    extra : mapping, optional
        More per-atom arrays, ``{name: array}`` with one row per atom (e.g.
        the confidence of `odl_atoms.confidence.AtomConfidence.arrays`),
        stored in ``atoms.arrays`` (extended XYZ keeps them).

    Returns
    -------
    atoms : `ase.Atoms`
        Positions (2D ones at ``z = 0``), chemical symbols from the species
        labels, the per-atom array ``'weights'`` and the box in ``atoms.info``.
        The cell is the box, not periodic.

    Raises
    ------
    ValueError
        If an ``extra`` array does not have one row per atom, or its name is
        one ASE or this conversion uses already.

    Examples
    --------
    >>> space = SparseMeasureSpace([0, 0], [4, 4])
    >>> atoms = to_ase(space.element([[1, 2]], weights=2.0, species='Au'))
    >>> atoms.get_chemical_symbols(), atoms.positions.tolist()
    (['Au'], [[1.0, 2.0, 0.0]])
    >>> atoms.arrays['weights']
    array([ 2.])
    >>> to_ase(space.element([[1, 2]]), extra={'confidence': [0.9]}).arrays[
    ...     'confidence']
    array([ 0.9])
    """
    if not isinstance(measure, SparseMeasure):
        raise TypeError(f'expected a SparseMeasure, got {type(measure).__name__}')
    atoms = measure.to_ase()
    for name, values in dict(extra or {}).items():
        if not isinstance(name, str) or name in atoms.arrays or name in (
                'numbers', 'positions', 'species', 'pos', 'Z'):
            raise ValueError(
                f'per-atom array name {name!r} is taken (ASE and odl_atoms use '
                f'{sorted(atoms.arrays)}, species and pos); choose another')
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[0] != len(atoms):
            raise ValueError(
                f'per-atom array {name!r} must have one row per atom '
                f'({len(atoms)}), got shape {values.shape}')
        atoms.arrays[name] = values.copy()
    return atoms


def from_ase(atoms, space=None, weights=None, ndim=None, margin=DEFAULT_MARGIN):
    """Return `ase.Atoms` as a sparse measure.

    Parameters
    ----------
    atoms : `ase.Atoms`
    space : `SparseMeasureSpace`, optional
        Space of the result. Default: the box stored in ``atoms.info`` by
        `to_ase`, else the atoms' bounding box enlarged by ``margin``.
    weights : mapping or float or array-like, optional
        Atom weights: a mapping from chemical symbol to weight (how species are
        told apart), one number for all atoms, or one per atom. Default: the
        per-atom array ``'weights'`` if the atoms carry one, else 1.
    ndim : {2, 3}, optional
        Dimension of the result; default that of ``space`` or of the stored
        box, else 3. For 2D, all atoms must lie in one plane ``z = const``.
    margin : float, optional
        Margin in angstrom around the atoms when the box is built here.

    Returns
    -------
    measure : `SparseMeasure`

    Examples
    --------
    >>> from ase.cluster import Octahedron
    >>> mu = from_ase(Octahedron('Au', 3), weights={'Au': 1.0})
    >>> mu.n_atoms, mu.ndim, mu.species[0]
    (19, 3, 'Au')
    """
    if space is not None and not isinstance(space, SparseMeasureSpace):
        raise TypeError(f'`space` must be a SparseMeasureSpace, got {space!r}')
    box = None
    if space is None and 'box_min' in atoms.info and 'box_max' in atoms.info:
        box = (np.ravel(atoms.info['box_min']).astype(float),
               np.ravel(atoms.info['box_max']).astype(float))
    if ndim is None:
        ndim = space.ndim if space is not None else (
            box[0].size if box is not None else 3)
    if ndim not in (2, 3):
        raise ValueError(f'`ndim` must be 2 or 3, got {ndim!r}')
    if space is not None and space.ndim != ndim:
        raise ValueError(f'`ndim`={ndim} does not match the {space.ndim}D space')

    positions = np.array(atoms.positions, dtype=float)
    if ndim == 2 and len(atoms) > 0:
        z = positions[:, 2]
        if np.ptp(z) > 1e-6:
            raise ValueError(
                f'a 2D measure needs all atoms in one plane z = const, but z '
                f'ranges over [{z.min():.3g}, {z.max():.3g}]; select a layer '
                f'or use ndim=3')
    positions = positions[:, :ndim]

    symbols = atoms.get_chemical_symbols()
    if isinstance(weights, Mapping):
        missing = sorted(set(symbols) - set(weights))
        if missing:
            raise ValueError(
                f'no weight given for species {missing}; the weights mapping '
                f'has {sorted(weights)}')
        weights = np.array([weights[s] for s in symbols], dtype=float)
    elif weights is None:
        weights = atoms.arrays.get('weights', None)

    if space is None:
        if box is not None and box[0].size == ndim:
            space = SparseMeasureSpace(*box)
        else:
            if len(atoms) == 0:
                raise ValueError(
                    'cannot build a box around zero atoms; pass `space`')
            lo = positions.min(axis=0) - float(margin)
            hi = positions.max(axis=0) + float(margin)
            space = SparseMeasureSpace(lo, hi)
    return space.element(positions, weights=weights, species=symbols)
