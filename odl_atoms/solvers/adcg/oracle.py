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
from odl_atoms.projection import SeparableGrid, Stencil
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.grid import scoring_discr, scoring_grid

__all__ = ('Oracle', 'LOCAL_SCORE_ATOMS')

#: `Oracle.score` on a separable 3D grid updates a stored score when at most
#: this many atoms were removed, added or moved since (an escape trial
#: removes one), instead of scoring the whole grid again.
LOCAL_SCORE_ATOMS = 8
#: Full scores `Oracle.score` keeps to update from (the configuration the
#: escapes start from, and the last other one).
SCORE_BASES = 2


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
        self._bases = []

    def candidate_grid(self):
        """Return the coarse grid, its stencil and ``||g_x||^2`` (cached)."""
        if self._grid is None:
            self._grid = scoring_grid(self.operator, self.grid_spacing)
        return self._grid

    def score(self, objective, config):
        """Return grid points and the data-misfit decrease of adding an atom.

        On a separable 3D grid (`SeparableGrid`), a configuration that
        differs from one scored before by at most `LOCAL_SCORE_ATOMS` atoms
        is scored by updating that score: the residual changes only in the
        data windows of those atoms, so only the grid points whose windows
        reach them (`SeparableGrid.correlate_local`) or that are within the
        potential's cut-off of them get new gains; the others keep theirs
        (the same to rounding as scoring again).

        Returns
        -------
        points : (p, d) array
        gains : (p,) array
            Best decrease over the allowed weights at every point.
        best_weight_index : (p,) int array
        """
        points, stencil, norms = self.candidate_grid()
        energy = bool(objective.energy_weight) and config.n_atoms > 0
        if energy and points.shape[1] == 3:
            # 3D: the energy terms (below) kept up to date incrementally
            # (only the atoms that changed since the last call are
            # re-summed: 10^6 grid-atom pairs for 10^3 atoms otherwise).
            field = self._attraction_field(objective.potential, points)
            attraction, excluded = field.update(config.positions)
        update = None
        if isinstance(stencil, SeparableGrid):
            update = self._update(objective, config, stencil)
        if update is None:
            residual = -objective.residual(config.positions, config.weights)
            corr = stencil.correlate(residual)
            index = slice(None)
        else:
            base, corr, index = update
        c = objective.inner_weight
        norms = c * norms[index]
        w = self.allowed[None, :]
        gains = w * (c * corr[index])[:, None] - 0.5 * w ** 2 * norms[:, None]
        if energy:
            # Energy in the scoring: a hard exclusion zone around every atom
            # (no atom on top of another: a stacked pair can fit a column of
            # double weight) and the attractive part of the pair energy (the
            # bonds a new atom would form). Not the repulsion between the
            # exclusion radius and the bond length: an interstitial's
            # neighbours relax outwards in the local move, and scoring it
            # with rigid neighbours would veto it (measured: 2.5 atom
            # energies of repulsion before relaxing, a net gain after).
            if points.shape[1] == 3:
                attraction, excluded = attraction[index], excluded[index]
            else:
                attraction, nearest = addition_energies(
                    objective.potential, config.positions, points,
                    attractive_only=True, points_tree=self._grid_tree(points))
                excluded = nearest < exclusion_radius(objective.potential)
            gains -= objective.energy_weight * attraction[:, None]
            gains[excluded] = -np.inf
        best = np.argmax(gains, axis=1)
        gains = gains[np.arange(gains.shape[0]), best]
        if update is not None:
            gains, best = _patched(base.gains, index, gains), _patched(
                base.best, index, best)
        elif isinstance(stencil, SeparableGrid):
            self._bases = (self._bases + [
                _Score(objective, config, corr, gains, best)])[-SCORE_BASES:]
        return points, gains, best

    def _update(self, objective, config, stencil):
        """``(base, correlations, index)`` of ``config`` from a stored
        score, or None if no stored score is near enough.

        ``correlations`` of the residual at all grid points, ``index`` the
        grid points whose gains may differ from the stored score's.
        """
        for base in reversed(self._bases):
            if (base.objective is not objective
                    or base.energy_weight != objective.energy_weight):
                continue
            # (Rows compared as multisets only within a stretch of 64 x
            # the limit: a reordered configuration is scored again.)
            changes = _row_changes(base.atoms, _atoms(config),
                                   64 * LOCAL_SCORE_ATOMS)
            if changes is None:
                continue
            removed, added = changes
            if len(removed) + len(added) > LOCAL_SCORE_ATOMS:
                continue
            corr = base.corr.copy()
            near = np.zeros(corr.size, bool)
            if len(removed) + len(added):
                moved = np.vstack([removed, added])
                # The residual y - R(mu) gains the removed atoms' data and
                # loses the added ones'.
                change = objective.operator.stencil(moved[:, :-1]).project(
                    np.append(removed[:, -1], -added[:, -1]))
                index, values = stencil.correlate_local(change)
                corr[index] += values
                near[index] = True
                if objective.energy_weight:
                    points = self.candidate_grid()[0]
                    for rows in self._grid_tree(points).query_ball_point(
                            moved[:, :-1], objective.potential.cutoff):
                        near[rows] = True
            return base, corr, np.flatnonzero(near)
        return None

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
            vectors = scoring_discr(self.operator.domain,
                                    self.grid_spacing).partition.coord_vectors
            field = _AttractionField(potential, points, radius,
                                     self._grid_tree(points), vectors)
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
            # The points within the radius, from the grid's KD-tree (not a
            # distance to every point), strictly inside as the radius says.
            near = np.asarray(self._grid_tree(points).query_ball_point(
                exclude[0], exclude[1]), int)
            near = near[np.linalg.norm(points[near] - exclude[0], axis=1)
                        < exclude[1]]
            gains = gains.copy()
            gains[near] = -np.inf
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
    # Whether the sparse matrix keeps a zero distance (an atom on a grid
    # point) depends on SciPy's version (1.17 keeps it, older ones drop
    # it): such pairs are counted below, once, in either case.
    keep = pairs.data > 0
    pair = np.asarray(potential.pair_energy(pairs.data[keep]), float)
    if attractive_only:
        pair = np.minimum(pair, 0.0)
    energies = np.bincount(pairs.row[keep], pair,
                           minlength=points.shape[0]).astype(float)
    on = np.flatnonzero(nearest == 0)
    if on.size and not attractive_only:
        # Coincident atoms cost the energy of a pair at distance zero.
        count = tree.query_ball_point(points[on], 0.0, return_length=True)
        energies[on] += count * potential.pair_energy(0.0)
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
    them changed. The grid points near atoms come from ``tree`` (a
    ``cKDTree`` of ``points``, made if not given) or, if ``vectors`` (the
    coordinate vectors of a regular grid ``points``) are given and the
    compiled kernels run, from `kernels.grid_ball`: the same pairs, the
    same sums.
    """

    def __init__(self, potential, points, radius, tree=None, vectors=None):
        self.potential, self.points, self.radius = potential, points, radius
        self.tree = cKDTree(points) if tree is None else tree
        self.vectors = vectors
        self.positions = np.zeros((0, points.shape[1]))
        self.field = np.zeros(points.shape[0])
        self.count = np.zeros(points.shape[0], int)

    def _stamp(self, positions, sign, chunk=256):
        """Add (``sign=1``) or remove (-1) the terms of some atoms."""
        # In chunks of atoms: each has thousands of grid points within the
        # cut-off, and the neighbour lists are Python lists.
        for start in range(0, len(positions), chunk):
            self._stamp_chunk(positions[start:start + chunk], sign)

    def _stamp_chunk(self, positions, sign):
        if len(positions) == 0:
            return
        if self.vectors is not None and kernels.backend() == 'numba':
            # The pairs the tree gives, in the same order per grid point.
            index, atom, r = kernels.grid_ball(self.vectors, positions,
                                               self.potential.cutoff)
            if index.size == 0:
                return
        else:
            lists = self.tree.query_ball_point(positions,
                                               self.potential.cutoff)
            lengths = np.fromiter((len(x) for x in lists), int, len(lists))
            if lengths.sum() == 0:
                return
            index = np.concatenate([np.asarray(x, int) for x in lists])
            atom = np.repeat(np.arange(len(positions)), lengths)
            r = np.linalg.norm(self.points[index] - positions[atom], axis=1)
        pair = np.minimum(np.asarray(self.potential.pair_energy(r), float), 0.0)
        if 8 * index.size < self.field.size:
            # A few atoms: sums over the grid points they reach only (the
            # same sums, in the same order, as over the whole grid).
            index, slot = np.unique(index, return_inverse=True)
            self.field[index] += sign * np.bincount(slot, pair)
            self.count[index] += sign * np.bincount(
                slot, r < self.radius, minlength=index.size).astype(int)
            return
        self.field += sign * np.bincount(index, pair, minlength=self.field.size)
        self.count += sign * np.bincount(index[r < self.radius],
                                         minlength=self.count.size)

    def update(self, positions):
        """Return ``(attraction, excluded)`` for atoms at ``positions``."""
        positions = np.asarray(positions, float)
        removed, added = _row_changes(self.positions, positions)
        if len(added) + len(removed) > 0.5 * len(positions) + 10:
            self.field[:] = 0.0
            self.count[:] = 0
            self._stamp(positions, 1)
        else:
            self._stamp(removed, -1)
            self._stamp(added, 1)
        self.positions = positions.copy()
        return self.field, self.count > 0


class _Score:

    """A full `Oracle.score` of a configuration, to update from."""

    def __init__(self, objective, config, corr, gains, best):
        self.objective = objective
        self.energy_weight = objective.energy_weight
        self.atoms = _atoms(config)
        self.corr, self.gains, self.best = corr, gains, best


def _atoms(config):
    """Positions and weights of ``config`` as rows ``(n, d + 1)``."""
    return np.column_stack([config.positions, config.weights])


def _patched(array, index, values):
    """A copy of ``array`` with ``values`` at ``index``."""
    array = array.copy()
    array[index] = values
    return array


def _row_changes(old, new, limit=None):
    """Rows of ``old`` not in ``new`` and rows of ``new`` not in ``old``.

    Compared as multisets of exact values (bytes), each list in the order
    in which its rows first appear. The rows that both arrays have at the
    same place at their start and end are skipped first; returns None if
    more than ``limit`` rows are left in all (the arrays differ by more
    than ``limit`` rows, or by a reordering).

    Examples
    --------
    >>> old = np.array([[0., 0.], [1., 0.], [2., 0.], [3., 0.]])
    >>> removed, added = _row_changes(old, old[[0, 2, 3]])
    >>> removed.tolist(), added.tolist()
    ([[1.0, 0.0]], [])
    >>> removed, added = _row_changes(old, np.vstack([old[1:], [[5., 5.]]]))
    >>> removed.tolist(), added.tolist()
    ([[0.0, 0.0]], [[5.0, 5.0]])
    >>> _row_changes(old, old[::-1], limit=2) is None
    True
    """
    m = min(len(old), len(new))
    differ = np.any(old[:m] != new[:m], axis=1)
    head = int(np.argmax(differ)) if differ.any() else m
    k = m - head
    differ = np.any(old[len(old) - k:] != new[len(new) - k:], axis=1)
    tail = k - 1 - int(np.flatnonzero(differ)[-1]) if differ.any() else k
    old = np.ascontiguousarray(old[head:len(old) - tail])
    new = np.ascontiguousarray(new[head:len(new) - tail])
    if limit is not None and len(old) + len(new) > limit:
        return None
    rows = np.dtype((np.void, old.dtype.itemsize * old.shape[1]))
    keys, inverse = np.unique(np.concatenate([old, new]).view(rows).ravel(),
                              return_inverse=True)
    inverse = inverse.ravel()
    out = []
    for part, mine, other in ((old, inverse[:len(old)], inverse[len(old):]),
                              (new, inverse[len(old):], inverse[:len(old)])):
        extra = (np.bincount(mine, minlength=keys.size)
                 - np.bincount(other, minlength=keys.size))
        key, first = np.unique(mine, return_index=True)
        order = np.argsort(first)
        key, first = key[order], first[order]
        times = np.maximum(extra[key], 0)
        out.append(part[np.repeat(first, times)])
    return tuple(out)
