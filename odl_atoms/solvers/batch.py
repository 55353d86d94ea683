"""ADCG at scale: many atoms per iteration, moves of local blocks.

One atom per iteration followed by a move of all atoms costs ``O(n)`` per
iteration and ``n`` iterations. `BatchAdditions` (a mixin of `ADCG`) adds
many well-separated atoms at once (`BatchAdditions.add_atoms`: greedy on
their joint gain, non-maximum suppression at ``batch_separation``), moves
only the new atoms and their neighbours (`BatchAdditions.block_move`) and
repeats while a batch pays off (`BatchAdditions.grow_batches`);
`_AttractionField` keeps the energy terms of the candidate scoring up to
date where atoms changed. See the model page of the documentation
("Batch additions: 3D at scale") and ``benchmarks/scale.py``.
"""

import numbers

import numpy as np
from scipy.optimize import minimize
from scipy.spatial import cKDTree

from odl_atoms.projection import Stencil
from odl_atoms.solvers.common import expected_atoms
from odl_atoms.solvers.configuration import Configuration

__all__ = ('BatchAdditions',)


class _AttractionField:

    """Attraction and exclusion of grid points by atoms, kept up to date.

    ``field[p] = sum_i min(phi(|p - x_i|), 0)`` (the bonds an atom added at
    grid point ``p`` would form) and ``count[p]`` = number of atoms within
    the exclusion radius of ``p``, as `ADCG.addition_energies` computes
    them. Between two calls ADCG changes few atoms (an escape trial
    removes one, a batch adds some, a block move shifts a region), so
    `update` re-sums only the grid points near atoms that were removed,
    added or moved (matched by exact coordinates), and recomputes from
    scratch when more than half of them changed.
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


class BatchAdditions:

    """The batch-addition steps of `ADCG` (see the module documentation).

    A mixin: it uses the solver's ``batch``, ``batch_alpha``, ``operator``,
    scoring (``score_candidates``), ``local_move`` and ``prune``.
    """

    def batch_size(self, objective):
        """Largest number of atoms `add_atoms` adds at once (1: no batches).

        ``'auto'``: a quarter of the expected atom count in 3D (so that a
        particle is built in a handful of batches, each costing about one
        pass over the atoms: time grows about linearly with their number),
        one in 2D (2D problems are small, and their behaviour, tuned and
        tested one addition at a time, stays exactly as it was).
        """
        if self.batch is None:
            return 1
        if isinstance(self.batch, numbers.Integral):
            return int(self.batch)
        if self.operator.domain.ndim != 3:
            return 1
        expected = expected_atoms(self.operator, objective.y, self.allowed.min())
        return max(1, int(np.ceil(0.25 * expected)))

    def batch_separation(self, objective):
        """Least distance between atoms added in one batch.

        ``0.8 r_min`` with a potential (nearest neighbours of a lattice may
        come in the same batch; closer pairs are what the energy forbids),
        else ``3 sigma`` (where two atoms' projections are told apart).
        """
        if objective.energy_weight:
            return 0.8 * objective.potential.r_min
        return 3.0 * self.operator.sigma

    def add_atoms(self, objective, config, max_new, min_gain=0.0):
        """Return ``config`` plus up to ``max_new`` new atoms, or None.

        The candidates are the grid's local maxima of the addition gain
        (`score_candidates`, with its energy-aware exclusion around existing
        atoms), at least `batch_separation` apart (non-maximum
        suppression). From them, atoms are chosen greedily by their *joint*
        gain: after choosing ``i``, the gain of every other candidate ``j``
        drops by ``w_i w_j <g_i, g_j>`` (the data the two would share; exact
        for the data misfit), so that two candidates on one ray of one
        projection do not both claim its signal. Only candidates whose joint
        gain stays above ``min_gain`` are added; None if there is none.
        Positions are not refined one by one: `block_move` relaxes the new
        atoms and their neighbours together.
        """
        points, gains, best = self.score_candidates(objective, config)
        order = np.argsort(-gains, kind='stable')
        order = order[gains[order] > min_gain]
        if order.size == 0:
            return None
        # Non-maximum suppression: walk down the gains, keep a point unless
        # a kept one is closer than the separation. Pool of at most 3 x
        # max_new (the joint selection below needs some spare).
        separation = self.batch_separation(objective)
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
        from scipy.sparse import csr_matrix
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

    def block_move(self, objective, config, new, radius=None):
        """Relax atoms ``new`` (indices) and their neighbours only.

        The block is the new atoms and every atom within ``radius`` (default
        ``1.2 r_min``, the first shell; ``3 sigma`` without potential) of
        one; the others stay fixed. Data: only the block is projected per
        evaluation (`AtomObjective.restricted`); energy: a neighbour list of
        the block taken once (``local_energy=True``), with every atom kept
        within one cut-off of its start so that the list stays exact.
        """
        n, d = config.positions.shape
        new = np.asarray(new, int)
        if new.size == 0:
            return config
        if radius is None:
            radius = (1.2 * objective.potential.r_min if objective.energy_weight
                      else 3.0 * self.operator.sigma)
        active = np.zeros(n, bool)
        active[new] = True
        near = cKDTree(config.positions[new]).query_ball_point(
            config.positions, radius, return_length=True) > 0
        active |= near
        index = np.flatnonzero(active)
        fun = objective.restricted(config.positions, config.weights, index,
                                   local_energy=True)
        space = self.operator.domain
        x0 = np.clip(config.positions[index], space.min_pt, space.max_pt)
        lo, hi = np.broadcast_to(space.min_pt, x0.shape), np.broadcast_to(
            space.max_pt, x0.shape)
        if objective.energy_weight:
            reach = objective.potential.cutoff
            lo, hi = np.maximum(lo, x0 - reach), np.minimum(hi, x0 + reach)

        def flat_fun(flat):
            value, grad = fun(flat.reshape(-1, d))
            return value, grad.ravel()

        res = minimize(flat_fun, x0.ravel(), jac=True, method='L-BFGS-B',
                       bounds=list(zip(lo.ravel(), hi.ravel())),
                       options={'maxiter': self.local_maxiter})
        positions = config.positions.copy()
        positions[index] = res.x.reshape(-1, d)
        moved = Configuration(positions, config.weights.copy(),
                              config.labels.copy())
        moved.value = objective(moved.positions, moved.weights)
        return moved if moved.value <= config.value else config

    def grow_batches(self, objective, config, threshold, max_atoms, max_iter,
                     report, history):
        """Add atoms in batches while a batch lowers F by > ``threshold``.

        Every iteration: `add_atoms` (joint gain of each atom above
        ``threshold``), `block_move` around the new atoms, `choose_weights`,
        `prune`; the batch is accepted if the objective dropped by more than
        ``threshold``, else the loop ends (the caller's one-at-a-time loop
        takes over from the last accepted configuration). One full
        `local_move` closes the phase. Returns ``config`` unchanged if
        `batch_size` is 1.
        """
        k = self.batch_size(objective)
        if k <= 1:
            return config
        begin = config
        final = objective
        if objective.energy_weight:
            objective = objective.with_alpha(self.batch_alpha)
            config = config.copy()
            config.value = objective(config.positions, config.weights)
        start_value = final(config.positions, config.weights)
        added = False
        while len(history) < max_iter and config.n_atoms < max_atoms:
            n_old = config.n_atoms
            candidate = self.add_atoms(objective, config,
                                       min(k, max_atoms - n_old),
                                       min_gain=threshold)
            if candidate is None:
                break
            candidate = self.block_move(objective, candidate,
                                        np.arange(n_old, candidate.n_atoms))
            candidate = self.choose_weights(objective, candidate)
            candidate = self.prune(objective, candidate)
            if not config.value - candidate.value > threshold:
                break
            config = candidate
            added = True
            shown = config.copy()  # history holds values of the objective
            shown.value = final(shown.positions, shown.weights)
            report(shown)
        if final is not objective:
            # Back to the search's own energy weight: relax, and remove the
            # atoms only the batch energy had justified.
            config = config.copy()
            config.value = final(config.positions, config.weights)
            objective = final
        if added:
            config = self.prune(objective, self.local_move(objective, config))
            if not config.value < start_value:  # never worse than the start
                return begin
        return config
