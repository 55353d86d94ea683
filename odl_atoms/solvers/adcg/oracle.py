"""ADCG's oracle: where one more atom lowers the objective most.

Boyd, Schiebinger and Recht's ADCG alternates a *linear minimisation oracle*
(the point whose unit atom correlates best with the residual) with a local
descent. Here the oracle scores the exact decrease of the data misfit when
one atom of weight ``w`` is added at ``x``,

    w <g_x, y - R(mu)> - 0.5 w^2 ||g_x||^2      (g_x: the data of a unit atom),

on a coarse grid over the box (`candidate_grid`), with the energy's
exclusion zone and attraction (`score`); refines the best point to the
local maximum of the correlation (`refine`) and returns the configuration
with it added (`add_atom`). `add_atoms` chooses many well-separated atoms
at once by their joint gain (batch additions, for 3D at scale).
"""

import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import cKDTree

from odl_atoms import kernels
from odl_atoms.descent import lbfgsb
from odl_atoms.functionals import LennardJones
from odl_atoms.projection import Stencil
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.grid import scoring_grid

__all__ = ('Oracle',)


class Oracle:

    """Candidate atoms for ADCG: scoring, refining, adding.

    Parameters
    ----------
    operator : `GaussianRayTransform`
    allowed, labels : numpy.ndarray
        The allowed atom weights (in the operator's units) and their labels.
    grid_spacing : float
        Spacing of the coarse candidate grid (angstrom).
    """

    def __init__(self, operator, allowed, labels, grid_spacing):
        self.operator = operator
        self.allowed = np.asarray(allowed, float)
        self.labels = np.asarray(labels)
        self.grid_spacing = float(grid_spacing)
        self._grid = None
        self._field = None
        self._tree = None

    def candidate_grid(self):
        """Return the coarse grid, its stencil and ``||g_x||^2`` (cached)."""
        if self._grid is None:
            self._grid = scoring_grid(self.operator, self.grid_spacing)
        return self._grid

    def score(self, objective, config):
        """Return grid points and the data-misfit decrease of adding an atom.

        Returns
        -------
        points : (p, d) array
        gains : (p,) array
            Best decrease over the allowed weights at every point.
        best_weight_index : (p,) int array
        """
        points, stencil, norms = self.candidate_grid()
        residual = -objective.residual(config.positions, config.weights)
        corr = stencil.correlate(residual)
        c = objective.inner_weight
        corr *= c
        norms = c * norms
        w = self.allowed[None, :]
        gains = w * corr[:, None] - 0.5 * w ** 2 * norms[:, None]
        if objective.energy_weight and config.n_atoms > 0:
            # Energy in the scoring: a hard exclusion zone around every atom
            # (no atom on top of another: a stacked pair can fit a column of
            # double weight) and the attractive part of the pair energy (the
            # bonds a new atom would form). Not the repulsion between the
            # exclusion radius and the bond length: an interstitial's
            # neighbours relax outwards in the local move, and scoring it
            # with rigid neighbours would veto it (measured: 2.5 atom
            # energies of repulsion before relaxing, a net gain after).
            potential = objective.potential
            if points.shape[1] == 3:
                # 3D: the same terms, kept up to date incrementally (only
                # the atoms that changed since the last call are re-summed:
                # 10^6 grid-atom pairs for 10^3 atoms otherwise).
                attraction, excluded = self._attraction_field(
                    potential, points).update(config.positions)
            else:
                attraction, nearest = addition_energies(
                    potential, config.positions, points, attractive_only=True,
                    points_tree=self._grid_tree(points))
                excluded = nearest < exclusion_radius(potential)
            gains -= objective.energy_weight * attraction[:, None]
            gains[excluded] = -np.inf
        best = np.argmax(gains, axis=1)
        return points, gains[np.arange(points.shape[0]), best], best

    def _grid_tree(self, points):
        """The (cached) KD-tree of the candidate grid ``points``."""
        tree = self._tree
        if tree is None or tree[0] is not points:
            tree = self._tree = (points, cKDTree(points))
        return tree[1]

    def _attraction_field(self, potential, points):
        """The (cached) `_AttractionField` of the grid for ``potential``."""
        field = self._field
        radius = exclusion_radius(potential)
        if (field is None or field.potential is not potential
                or field.radius != radius or field.points is not points):
            field = _AttractionField(potential, points, radius)
            self._field = field
        return field

    def refine(self, objective, config, point):
        """Move a candidate to the local maximum of the residual correlation."""
        op = self.operator
        space = op.domain
        residual = -objective.residual(config.positions, config.weights)
        lo = np.maximum(point - self.grid_spacing, space.min_pt)
        hi = np.minimum(point + self.grid_spacing, space.max_pt)
        if op.impl == 'numpy':
            # `GaussianRayTransform.correlation` without its checks of the
            # residual (one projection-space membership test per
            # evaluation cost as much as the correlation).
            # (Through the data's dtype, as the projection-space element.)
            flat = np.asarray(residual.astype(objective.data.space.dtype,
                                              copy=False), float).ravel()
            weight = op.inner_weight

            def correlation(x):
                grad, value = Stencil(op.frame, x[None, :], op.sigma,
                                      op.truncate, op.mode).adjoint_jacobian(
                    np.ones(1), flat)
                return weight * value, weight * grad
        else:
            element = objective.data.space.element(
                residual.reshape(objective.data.space.shape))

            def correlation(x):
                return op.correlation(element, x[None, :], gradient=True)

        def negative_correlation(x):
            value, grad = correlation(x)
            return -value[0], -grad[0]

        res = lbfgsb(negative_correlation, point, lo, hi, maxiter=50)
        return res.x if res.fun <= negative_correlation(point)[0] else point

    def best_candidate(self, objective, config, exclude=None):
        """Return ``(point, weight_index, gain)`` of the best grid candidate.

        ``gain`` is the exact objective decrease of adding that atom at the
        grid point (before refinement); ``exclude = (point, radius)`` forbids
        candidates near ``point``.
        """
        points, gains, best = self.score(objective, config)
        if exclude is not None:
            near = np.linalg.norm(points - exclude[0], axis=1) < exclude[1]
            gains = np.where(near, -np.inf, gains)
        k = int(np.argmax(gains))
        return points[k], int(best[k]), float(gains[k])

    def add_atom(self, objective, config, exclude=None, candidate=None,
                 min_gain=0.0):
        """Return ``config`` plus the best candidate atom, or None.

        None if the best candidate's immediate gain is not above
        ``min_gain``; ``exclude = (point, radius)`` forbids candidates near
        ``point``; ``candidate`` is a `best_candidate` result to use instead
        of scoring.
        """
        point, j, gain = candidate or self.best_candidate(objective, config,
                                                          exclude)
        if not gain > min_gain:
            return None
        point = self.refine(objective, config, point)
        new = Configuration(
            np.vstack([config.positions, point[None, :]]),
            np.append(config.weights, self.allowed[j]),
            np.append(config.labels, self.labels[j]))
        new.value = objective(new.positions, new.weights)
        return new

    def add_atoms(self, objective, config, max_new, separation, min_gain=0.0):
        """Return ``config`` plus up to ``max_new`` new atoms, or None.

        The candidates are the grid's local maxima of the addition gain
        (`score`, with its energy-aware exclusion around existing atoms), at
        least ``separation`` apart (non-maximum suppression). From them,
        atoms are chosen greedily by their *joint* gain: after choosing
        ``i``, the gain of every other candidate ``j`` drops by
        ``w_i w_j <g_i, g_j>`` (the data the two would share; exact for the
        data misfit), so that two candidates on one ray of one projection do
        not both claim its signal. Only candidates whose joint gain stays
        above ``min_gain`` are added; None if there is none. Positions are
        not refined one by one: the block move relaxes the new atoms and
        their neighbours together.
        """
        points, gains, best = self.score(objective, config)
        order = np.argsort(-gains, kind='stable')
        order = order[gains[order] > min_gain]
        if order.size == 0:
            return None
        # Non-maximum suppression: walk down the gains, keep a point unless
        # a kept one is closer than the separation. Pool of at most 3 x
        # max_new (the joint selection below needs some spare).
        tree = cKDTree(points[order])
        suppressed = np.zeros(order.size, bool)
        pool = []
        for rank in range(order.size):
            if suppressed[rank]:
                continue
            pool.append(order[rank])
            if len(pool) >= 3 * max_new:
                break
            suppressed[tree.query_ball_point(points[order[rank]],
                                             separation)] = True
        pool = np.array(pool)
        weights = self.allowed[best[pool]]
        # Joint gains: the Gram matrix of the pool's unit-atom data (sparse:
        # only candidates whose projections overlap somewhere interact).
        op = self.operator
        idx, val = Stencil(op.frame, points[pool], op.sigma, op.truncate,
                           op.mode).windows()
        rows = np.repeat(np.arange(pool.size), idx.shape[1])
        data_size = int(np.prod(op.frame.shape))
        g = csr_matrix((val.ravel(), (rows, idx.ravel())),
                       shape=(pool.size, data_size))
        gram = (g @ g.T).tocsr()
        gram = gram * objective.inner_weight
        current = gains[pool].astype(float)
        chosen = []
        while len(chosen) < max_new:
            k = int(np.argmax(current))
            if not current[k] > min_gain:
                break
            chosen.append(k)
            row = gram.getrow(k)
            current[row.indices] -= weights[k] * weights[row.indices] * row.data
            current[k] = -np.inf
        if not chosen:
            return None
        chosen = pool[np.array(chosen)]
        j = best[chosen]
        new = Configuration(
            np.vstack([config.positions, points[chosen]]),
            np.append(config.weights, self.allowed[j]),
            np.append(config.labels, self.labels[j]))
        new.value = objective(new.positions, new.weights)
        return new


def exclusion_radius(potential):
    """No candidate closer than this to an atom: half a bond length."""
    return 0.5 * potential.r_min


def addition_energies(potential, positions, points, attractive_only=False,
                      points_tree=None):
    """Energy change of adding one atom at each of ``points``.

    Returns ``(energies, nearest)``: the energy change (only its
    attractive, negative pair terms with ``attractive_only``) and the
    distance from each point to the nearest atom. ``points_tree``: the
    ``cKDTree`` of ``points``, if there is one already.
    """
    if kernels.backend() == 'numba' and isinstance(potential, LennardJones):
        return kernels.addition_energies(
            positions, points, potential.kernel_parameters, attractive_only)
    tree = cKDTree(positions)
    nearest = tree.query(points)[0]
    if points_tree is None:
        points_tree = cKDTree(points)
    pairs = points_tree.sparse_distance_matrix(
        tree, potential.cutoff, output_type='coo_matrix')
    pair = np.asarray(potential.pair_energy(pairs.data), float)
    if attractive_only:
        pair = np.minimum(pair, 0.0)
    energies = np.bincount(pairs.row, pair,
                           minlength=points.shape[0]).astype(float)
    if not attractive_only:
        # sparse_distance_matrix drops exact zeros (an atom on a grid
        # point); those pairs cost the energy of coincident atoms.
        energies[nearest == 0] += potential.pair_energy(0.0)
    return energies, nearest


class _AttractionField:

    """Attraction and exclusion of grid points by atoms, kept up to date.

    ``field[p] = sum_i min(phi(|p - x_i|), 0)`` (the bonds an atom added at
    grid point ``p`` would form) and ``count[p]`` = number of atoms within
    the exclusion radius of ``p``, as `addition_energies` computes them.
    Between two calls ADCG changes few atoms (an escape trial removes one, a
    batch adds some, a block move shifts a region), so `update` re-sums only
    the grid points near atoms that were removed, added or moved (matched by
    exact coordinates), and recomputes from scratch when more than half of
    them changed.
    """

    def __init__(self, potential, points, radius):
        self.potential, self.points, self.radius = potential, points, radius
        self.tree = cKDTree(points)
        self.rows = {}
        self.field = np.zeros(points.shape[0])
        self.count = np.zeros(points.shape[0], int)

    @staticmethod
    def _keys(positions):
        return [row.tobytes() for row in np.ascontiguousarray(positions)]

    def _stamp(self, positions, sign, chunk=256):
        """Add (``sign=1``) or remove (-1) the terms of some atoms."""
        # In chunks of atoms: each has thousands of grid points within the
        # cut-off, and the neighbour lists are Python lists.
        for start in range(0, len(positions), chunk):
            self._stamp_chunk(positions[start:start + chunk], sign)

    def _stamp_chunk(self, positions, sign):
        if len(positions) == 0:
            return
        lists = self.tree.query_ball_point(positions, self.potential.cutoff)
        lengths = np.fromiter((len(x) for x in lists), int, len(lists))
        if lengths.sum() == 0:
            return
        index = np.concatenate([np.asarray(x, int) for x in lists])
        atom = np.repeat(np.arange(len(positions)), lengths)
        r = np.linalg.norm(self.points[index] - positions[atom], axis=1)
        pair = np.minimum(np.asarray(self.potential.pair_energy(r), float), 0.0)
        self.field += sign * np.bincount(index, pair, minlength=self.field.size)
        self.count += sign * np.bincount(index[r < self.radius],
                                         minlength=self.count.size)

    def update(self, positions):
        """Return ``(attraction, excluded)`` for atoms at ``positions``."""
        positions = np.asarray(positions, float)
        keys = self._keys(positions)
        new = {}
        for k, row in zip(keys, positions):
            new.setdefault(k, []).append(row)
        added, removed = [], []
        for k, rows in new.items():
            extra = len(rows) - len(self.rows.get(k, ()))
            added += rows[:max(extra, 0)]
        for k, rows in self.rows.items():
            missing = len(rows) - len(new.get(k, ()))
            removed += rows[:max(missing, 0)]
        if len(added) + len(removed) > 0.5 * len(positions) + 10:
            self.field[:] = 0.0
            self.count[:] = 0
            self._stamp(positions, 1)
        else:
            self._stamp(np.array(removed).reshape(-1, positions.shape[1]), -1)
            self._stamp(np.array(added).reshape(-1, positions.shape[1]), 1)
        self.rows = new
        return self.field, self.count > 0
