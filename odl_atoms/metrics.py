"""Matching reconstructed atoms to the ground truth.

`match_atoms` pairs every reconstructed atom with at most one reference atom
closer than a tolerance, so that as many atoms as possible are matched and,
among all such pairings, the matched distances add up to the least. From the
pairing follow the scores a benchmark reports (`AtomMatch`): precision,
recall, F1, the RMSD of the matched pairs, the error in the atom count and the
fraction of matched atoms with the right species.

The assignment is exact (`scipy.optimize.linear_sum_assignment`) yet scales
to 10^5 atoms: only pairs within the tolerance can match, so the problem
splits into the connected components of the sparse graph of such pairs, and
each component, usually one atom and its counterpart, is solved on its own.
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import (connected_components,
                                  min_weight_full_bipartite_matching)
from scipy.spatial import cKDTree

from odl_atoms.space import UNKNOWN_SPECIES, SparseMeasure

__all__ = ('AtomMatch', 'match_atoms', 'nearest_neighbour_distance',
           'DEFAULT_RELATIVE_TOLERANCE')

#: Default matching tolerance as a fraction of the reference's median
#: nearest-neighbour distance. Below one half, a reconstructed atom is within
#: the tolerance of at most one reference atom, so what counts as "found" is
#: unambiguous; 0.3 keeps a margin to that limit (the next site is at least
#: 0.7 spacings away) while accepting the position errors of a reconstruction
#: that has the right atom (0.87 A for gold). How precisely it was found is
#: measured by the RMSD, not by the tolerance.
DEFAULT_RELATIVE_TOLERANCE = 0.3

# Components with more candidate pairs than this (rows x columns) are solved
# on the sparse graph (LAPJVsp) instead of a dense cost matrix, which for one
# large component (a tolerance of a spacing or more) would not fit in memory.
_DENSE_LIMIT = 250_000


@dataclass(frozen=True, eq=False, repr=False)
class AtomMatch:

    """Optimal pairing of reconstructed atoms with reference atoms.

    Create instances with `match_atoms`.

    Attributes
    ----------
    tolerance : float
        Largest distance (angstrom) of a matched pair; ``nan`` if one of the
        sets is empty and none was given.
    pairs : numpy.ndarray of int, shape ``(k, 2)``
        Matched ``(reference index, reconstruction index)``, sorted by the
        reference index.
    distances : numpy.ndarray, shape ``(k,)``
        Distance of each matched pair.
    n_reference, n_reconstruction : int
        Number of atoms in each set.
    species_accuracy : float or None
        Fraction of matched pairs whose species labels agree; ``None`` when
        both sets carry only the unknown label ``'X'`` or nothing matched.
    """

    tolerance: float
    pairs: np.ndarray
    distances: np.ndarray
    n_reference: int
    n_reconstruction: int
    species_accuracy: float = None

    def __post_init__(self):
        for arr in (self.pairs, self.distances):
            arr.flags.writeable = False

    @property
    def n_matched(self):
        """Number of matched pairs."""
        return len(self.distances)

    @property
    def unmatched_reference(self):
        """Indices of reference atoms without a partner (missed atoms)."""
        return np.setdiff1d(np.arange(self.n_reference), self.pairs[:, 0])

    @property
    def unmatched_reconstruction(self):
        """Indices of reconstructed atoms without a partner (spurious)."""
        return np.setdiff1d(np.arange(self.n_reconstruction), self.pairs[:, 1])

    @property
    def precision(self):
        """Matched fraction of the reconstructed atoms.

        An empty reconstruction has precision 1 if the reference is empty too,
        else 0: an empty set matches only an empty set.
        """
        return _ratio(self.n_matched, self.n_reconstruction, self.n_reference)

    @property
    def recall(self):
        """Matched fraction of the reference atoms (1 if both are empty)."""
        return _ratio(self.n_matched, self.n_reference, self.n_reconstruction)

    @property
    def f1(self):
        """Harmonic mean of precision and recall, ``2k / (n_ref + n_rec)``.

        1 if both sets are empty, 0 if only one is.
        """
        total = self.n_reference + self.n_reconstruction
        return 1.0 if total == 0 else 2 * self.n_matched / total

    @property
    def rmsd(self):
        """Root-mean-square distance of the matched pairs (``nan`` if none)."""
        if self.n_matched == 0:
            return math.nan
        return float(np.sqrt(np.mean(self.distances ** 2)))

    @property
    def max_distance(self):
        """Largest distance of a matched pair (``nan`` if none)."""
        return float(self.distances.max()) if self.n_matched else math.nan

    @property
    def count_error(self):
        """``n_reconstruction - n_reference``, positive for too many."""
        return self.n_reconstruction - self.n_reference

    @property
    def exact(self):
        """Whether every atom is matched and the counts agree (``f1 == 1``)."""
        return (self.n_matched == self.n_reference
                == self.n_reconstruction)

    def as_dict(self, pairs=False):
        """Return the scores as a JSON-friendly dict.

        Parameters
        ----------
        pairs : bool, optional
            Whether to include the matched index pairs and distances (lists;
            long for large configurations).

        Returns
        -------
        scores : dict
            Python ints, floats, bools and ``None`` only; ``nan`` becomes
            ``None`` so that strict JSON accepts it.

        Examples
        --------
        >>> import json
        >>> m = match_atoms([[0.0, 0.0], [3.0, 0.0]], [[0.1, 0.0]])
        >>> print(json.dumps(m.as_dict()))
        {"tolerance": 0.9, "n_reference": 2, "n_reconstruction": 1,
         "n_matched": 1, "precision": 1.0, "recall": 0.5, "f1": 0.666...,
         "rmsd": 0.1, "max_distance": 0.1, "count_error": -1, "exact": false,
         "species_accuracy": null}
        """
        out = {
            'tolerance': _json_float(self.tolerance),
            'n_reference': int(self.n_reference),
            'n_reconstruction': int(self.n_reconstruction),
            'n_matched': int(self.n_matched),
            'precision': _json_float(self.precision),
            'recall': _json_float(self.recall),
            'f1': _json_float(self.f1),
            'rmsd': _json_float(self.rmsd),
            'max_distance': _json_float(self.max_distance),
            'count_error': int(self.count_error),
            'exact': bool(self.exact),
            'species_accuracy': _json_float(self.species_accuracy),
        }
        if pairs:
            out['pairs'] = self.pairs.tolist()
            out['distances'] = self.distances.tolist()
        return out

    def __repr__(self):
        return (f'AtomMatch({self.n_matched} of {self.n_reference} '
                f'reference / {self.n_reconstruction} reconstructed atoms '
                f'matched within {self.tolerance:.3g}, f1={self.f1:.3f}, '
                f'rmsd={self.rmsd:.3g})')


def nearest_neighbour_distance(atoms):
    """Return the median nearest-neighbour distance of a configuration.

    Parameters
    ----------
    atoms : `SparseMeasure` or array-like of shape ``(n, d)``
        At least two atoms.

    Returns
    -------
    distance : float
        The median is the lattice spacing of a crystal even with defects,
        surfaces or a few stray atoms.

    Examples
    --------
    >>> nearest_neighbour_distance([[0, 0], [2, 0], [4, 0], [4, 3]])
    2.0
    """
    positions, _ = _positions_and_species(atoms, 'atoms')
    if len(positions) < 2:
        raise ValueError(f'a nearest-neighbour distance needs at least two '
                         f'atoms, got {len(positions)}')
    dist, _ = cKDTree(positions).query(positions, k=2)
    return float(np.median(dist[:, 1]))


def match_atoms(reference, reconstruction, tolerance=None):
    """Pair reconstructed atoms with reference atoms, as many as possible.

    Pairs are closer than ``tolerance``, each atom is in at most one pair,
    their number is the largest possible and, among pairings of that size,
    the sum of the pair distances is the smallest. Greedy nearest-neighbour
    matching can lose pairs when one reconstructed atom lies near two sites;
    this assignment does not.

    Parameters
    ----------
    reference : `SparseMeasure` or array-like of shape ``(n, d)``
        The ground truth.
    reconstruction : `SparseMeasure` or array-like of shape ``(m, d)``
        The atoms to score. Arrays carry no species (label ``'X'``).
    tolerance : non-negative float, optional
        Largest distance (angstrom) of a matched pair. Default:
        `DEFAULT_RELATIVE_TOLERANCE` (0.3) times the median nearest-neighbour
        distance of the reference (of the reconstruction if the reference
        has fewer than two atoms).

    Returns
    -------
    match : `AtomMatch`

    Raises
    ------
    ValueError
        If the arrays are not ``(n, d)`` with the same ``d``, hold NaN or
        inf, or the tolerance is negative or cannot be derived.

    Notes
    -----
    Candidate pairs come from a k-d tree (`scipy.spatial.cKDTree`), so memory
    and time grow with the number of atoms, not its square. The bipartite
    graph of candidate pairs splits into connected components
    (`scipy.sparse.csgraph.connected_components`); a component of one atom on
    each side is a pair outright, and every other one is solved exactly with
    `scipy.optimize.linear_sum_assignment` on the cost ``distance`` for
    candidate pairs and a constant larger than any sum of distances
    otherwise, so that the number of pairs is maximised first. Components too
    large for a dense cost matrix are solved on the sparse graph with
    `scipy.sparse.csgraph.min_weight_full_bipartite_matching`.

    Examples
    --------
    >>> ref = [[0.0, 0.0], [3.0, 0.0], [6.0, 0.0]]
    >>> rec = [[3.1, 0.0], [0.0, 0.2], [9.0, 0.0]]
    >>> m = match_atoms(ref, rec)
    >>> m.pairs
    array([[0, 1],
           [1, 0]])
    >>> m.precision, m.recall, m.rmsd, m.count_error
    (0.666..., 0.666..., 0.158..., 0)
    >>> m.unmatched_reference, m.unmatched_reconstruction
    (array([2]), array([2]))
    """
    ref, ref_species = _positions_and_species(reference, 'reference')
    rec, rec_species = _positions_and_species(reconstruction,
                                              'reconstruction')
    if len(ref) and len(rec) and ref.shape[1] != rec.shape[1]:
        raise ValueError(
            f'reference and reconstruction must have the same dimension, got '
            f'{ref.shape[1]}D and {rec.shape[1]}D positions')
    tolerance = _resolve_tolerance(tolerance, ref, rec)

    if len(ref) and len(rec):
        pairs = _candidate_pairs(ref, rec, tolerance)
        pairs = _optimal_pairs(pairs, len(ref), len(rec), tolerance)
    else:
        pairs = np.zeros((0, 2), dtype=int)
    distances = (np.linalg.norm(ref[pairs[:, 0]] - rec[pairs[:, 1]], axis=1)
                 if len(pairs) else np.zeros(0))

    species_accuracy = None
    known = (np.any(ref_species != UNKNOWN_SPECIES)
             or np.any(rec_species != UNKNOWN_SPECIES))
    if known and len(pairs):
        species_accuracy = float(np.mean(
            ref_species[pairs[:, 0]] == rec_species[pairs[:, 1]]))
    return AtomMatch(tolerance=tolerance, pairs=pairs, distances=distances,
                     n_reference=len(ref), n_reconstruction=len(rec),
                     species_accuracy=species_accuracy)


# --- Helpers


def _positions_and_species(atoms, name):
    """Positions ``(n, d)`` and species labels of a measure or an array."""
    if isinstance(atoms, SparseMeasure):
        return np.asarray(atoms.positions), np.asarray(atoms.species)
    try:
        positions = np.array(atoms, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f'`{name}` must be a SparseMeasure or an (n, d) array of '
            f'positions, got {type(atoms).__name__}') from None
    if positions.ndim == 1 and positions.size == 0:
        positions = positions.reshape(0, 0)
    if positions.ndim != 2:
        raise ValueError(
            f'`{name}` positions must have shape (n, d), got shape '
            f'{positions.shape}; pass one row per atom')
    if len(positions) and positions.shape[1] not in (1, 2, 3):
        raise ValueError(f'`{name}` positions must be 1D, 2D or 3D points, '
                         f'got shape {positions.shape}')
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
        raise ValueError(f'`{name}` positions must be finite; atom(s) '
                         f'{bad[:5].tolist()} have NaN or inf coordinates')
    return positions, np.full(len(positions), UNKNOWN_SPECIES)


def _resolve_tolerance(tolerance, ref, rec):
    if tolerance is not None:
        if isinstance(tolerance, bool) or not isinstance(
                tolerance, numbers.Real):
            raise ValueError(f'`tolerance` must be a length in angstrom, got '
                             f'{tolerance!r}')
        tolerance = float(tolerance)
        if not (np.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f'`tolerance` must be a finite length >= 0, got '
                             f'{tolerance!r}')
        return tolerance
    for positions in (ref, rec):
        if len(positions) >= 2:
            return DEFAULT_RELATIVE_TOLERANCE * nearest_neighbour_distance(
                positions)
    if len(ref) == 0 or len(rec) == 0:
        # Nothing can match, whatever the tolerance.
        return math.nan
    raise ValueError(
        'cannot derive a tolerance from single atoms (no nearest-neighbour '
        'distance); pass `tolerance=` in angstrom')


def _candidate_pairs(ref, rec, tolerance):
    """Candidate pairs ``(i, j, distance)`` with distance <= tolerance."""
    found = cKDTree(ref).sparse_distance_matrix(
        cKDTree(rec), tolerance, output_type='ndarray')
    return found['i'].astype(np.intp), found['j'].astype(np.intp), found['v']


def _optimal_pairs(candidates, n_ref, n_rec, tolerance):
    """Maximum-cardinality, minimum-distance matching of candidate pairs."""
    rows, cols, dist = candidates
    if rows.size == 0:
        return np.zeros((0, 2), dtype=int)
    # Bipartite graph on n_ref + n_rec nodes; reconstructed atoms follow the
    # reference atoms.
    n = n_ref + n_rec
    graph = coo_matrix((np.ones(rows.size), (rows, cols + n_ref)),
                       shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    comp = labels[rows]
    ref_count = np.bincount(labels[:n_ref], minlength=labels.max() + 1)
    rec_count = np.bincount(labels[n_ref:], minlength=labels.max() + 1)
    # One atom on each side: the single candidate pair is the answer. For
    # jittered crystals that is nearly every component, done here at once.
    single = (ref_count[comp] == 1) & (rec_count[comp] == 1)
    matched = [np.column_stack([rows[single], cols[single]])]

    order = np.argsort(comp[~single], kind='stable')
    r, c, d = rows[~single][order], cols[~single][order], dist[~single][order]
    starts = np.flatnonzero(np.r_[True, np.diff(comp[~single][order]) != 0])
    for lo, hi in zip(starts, np.r_[starts[1:], r.size]):
        matched.append(_match_component(r[lo:hi], c[lo:hi], d[lo:hi],
                                        tolerance))
    pairs = np.concatenate(matched).astype(int)
    return pairs[np.argsort(pairs[:, 0], kind='stable')]


def _match_component(rows, cols, dist, tolerance):
    """Solve one connected component exactly; return global index pairs."""
    ref_ids, r = np.unique(rows, return_inverse=True)
    rec_ids, c = np.unique(cols, return_inverse=True)
    n_r, n_c = ref_ids.size, rec_ids.size
    # Any pairing uses at most min(n_r, n_c) pairs of distance <= tolerance;
    # a non-candidate pair costing more than all of them together makes one
    # more real pair always worth any increase in total distance.
    big = (min(n_r, n_c) + 1) * (tolerance + 1.0)
    if n_r * n_c <= _DENSE_LIMIT:
        cost = np.full((n_r, n_c), big)
        cost[r, c] = dist
        candidate = np.zeros((n_r, n_c), dtype=bool)
        candidate[r, c] = True
        ri, ci = linear_sum_assignment(cost)
        keep = candidate[ri, ci]
        ri, ci = ri[keep], ci[keep]
    else:
        ri, ci = _sparse_assignment(r, c, dist, n_r, n_c, big)
    return np.column_stack([ref_ids[ri], rec_ids[ci]])


def _sparse_assignment(r, c, dist, n_r, n_c, big):
    """Maximum-cardinality minimum-cost matching on a sparse bipartite graph.

    The graph is made to have a perfect matching: every reference atom ``i``
    may instead pair with its own dummy ``n_c + i`` and every reconstructed
    atom ``j`` with its dummy ``n_r + j``, each at cost ``big / 2``; the
    dummies pair among themselves along the transposed candidate edges at no
    cost, so leaving a pair unmatched costs exactly ``big``. All costs are
    shifted by 1 because the sparse solver ignores zero entries; every
    perfect matching has ``n_r + n_c`` edges, so the shift changes nothing.
    """
    n = n_r + n_c
    half = big / 2
    rows = np.concatenate([r, np.arange(n_r), n_r + np.arange(n_c), n_r + c])
    cols = np.concatenate([c, n_c + np.arange(n_r), np.arange(n_c), n_c + r])
    cost = np.concatenate([dist, np.full(n_r, half), np.full(n_c, half),
                           np.zeros(r.size)]) + 1.0
    graph = csr_matrix((cost, (rows, cols)), shape=(n, n))
    ri, ci = min_weight_full_bipartite_matching(graph)
    real = (ri < n_r) & (ci < n_c)
    return ri[real], ci[real]


def _ratio(matched, total, other):
    if total == 0:
        return 1.0 if other == 0 else 0.0
    return matched / total


def _json_float(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
