"""What starts and escape moves work with: the objective and ADCG's steps.

A start (`odl_atoms.solvers.starts`) builds a configuration and an escape
move (`odl_atoms.solvers.moves`) proposes trial configurations; both need
the objective and the steps of ADCG on configurations (add the best atom,
relax, prune, regrow), not the solver. `SearchContext` gives them exactly
that: the objective, the oracle's and the local descent's steps bound to
it, and a scratch dictionary that the starts and moves of one search share.
"""

import numpy as np
from scipy.sparse import csc_matrix
from scipy.spatial import cKDTree

from odl_atoms.projection import Stencil
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.adcg.descent import removal_changes

__all__ = ('SearchContext', 'GrowPath', 'RemovalChanges',
           'MEMO_CONFIGURATIONS')

#: Configurations whose escape trials `SearchContext.memo` keeps.
MEMO_CONFIGURATIONS = 2


class SearchContext:

    """The objective and ADCG's steps on configurations, for starts and moves.

    Parameters
    ----------
    objective : `AtomObjective`
    oracle : `~odl_atoms.solvers.adcg.oracle.Oracle`
    descent : `~odl_atoms.solvers.adcg.descent.LocalDescent`
    starts : sequence of starts, optional
        The search's starts (a move that repeats a start's lattice search
        finds it here).
    scratch : dict, optional
        Data the starts and moves of one search share (a lattice fit made
        by one start serves the next).
    """

    def __init__(self, objective, oracle, descent, starts=(), scratch=None):
        self.objective = objective
        self.oracle = oracle
        self.descent = descent
        self.starts = tuple(starts)
        self.scratch = {} if scratch is None else scratch

    def with_objective(self, objective):
        """The same steps under another objective (a stiffer energy, say)."""
        return SearchContext(objective, self.oracle, self.descent,
                             self.starts, self.scratch)

    # --- The problem's facts

    @property
    def operator(self):
        """The `GaussianRayTransform` of the objective."""
        return self.objective.operator

    @property
    def sigma(self):
        """Atom width (angstrom)."""
        return self.objective.operator.sigma

    @property
    def allowed(self):
        """Allowed atom weights (operator units)."""
        return self.oracle.allowed

    @property
    def labels(self):
        """Labels of the allowed weights."""
        return self.oracle.labels

    def lightest(self, positions):
        """A `Configuration` of the lightest species at ``positions``."""
        return Configuration.lightest(self, positions)

    # --- Steps

    def removal_changes(self, config):
        """Exact objective change of removing each atom."""
        return removal_changes(self.objective, config)

    def removals(self, config):
        """`RemovalChanges` of ``config``, kept up to date by its `remove`."""
        return RemovalChanges(self.objective, config)

    def score(self, config):
        """The oracle's scores of the candidate grid (`Oracle.score`)."""
        return self.oracle.score(self.objective, config)

    def best_candidate(self, config, exclude=None):
        """The best grid candidate (`Oracle.best_candidate`)."""
        return self.oracle.best_candidate(self.objective, config, exclude)

    def add_atom(self, config, exclude=None, candidate=None, min_gain=0.0):
        """``config`` plus the best candidate (`Oracle.add_atom`), or None."""
        return self.oracle.add_atom(self.objective, config, exclude,
                                    candidate, min_gain)

    def local_move(self, config, active=None):
        """Relax all atoms, or the ``active`` ones (`LocalDescent.move`)."""
        return self.descent.move(self.objective, config, active)

    def choose_weights(self, config):
        """Best allowed weight per atom (`LocalDescent.choose_weights`)."""
        return self.descent.choose_weights(self.objective, config)

    def prune(self, config):
        """Remove and merge atoms while that helps (`LocalDescent.prune`)."""
        return self.descent.prune(self.objective, config)

    def grow(self, config, threshold, max_new=None, region=None):
        """Add atoms (with local moves) while each lowers F by > ``threshold``.

        ``region(positions) -> bool mask`` relaxes only the atoms it selects
        (and the new one) after each addition (cheap regional growth).
        `GrowPath` is the same growth kept for other thresholds.
        """
        return GrowPath(self, config, max_new, region).grow(threshold)

    def memo(self, config, key, make):
        """What an escape trial from ``config`` computed, kept for the next
        pass from the same configuration.

        Returns the value stored under ``key`` for ``config`` (its atoms,
        exactly) under this objective, made by ``make()`` the first time.
        ADCG tries the escapes from the configuration where each tolerance
        stage stopped, often the same one in both stages; a trial's steps
        that do not depend on the stage's threshold (removals, relocations,
        stiff relaxations, lattice refits, and a `GrowPath`'s additions)
        are then made once. Kept for the last `MEMO_CONFIGURATIONS`
        configurations of the search.
        """
        memo = self.scratch.setdefault('escape memo', {})
        state = (self.objective, config.positions.tobytes(),
                 config.weights.tobytes())
        entries = memo.get(state)
        if entries is None:
            while len(memo) >= MEMO_CONFIGURATIONS:
                del memo[next(iter(memo))]
            entries = memo[state] = {}
        if key not in entries:
            entries[key] = make()
        return entries[key]

    def finish_trial(self, trial, current):
        """Relax, reweigh and prune a promising escape trial in full.

        A trial still worse than ``current`` by a quarter of an atom energy
        after its regional relaxation is returned as it is (it will be
        rejected); the others get a full local move, weight choice and
        pruning.
        """
        if trial.value > current.value + 0.25 * self.objective.atom_energy:
            return trial
        trial = self.local_move(trial)
        return self.prune(self.choose_weights(trial))

    def near(self, positions, centres):
        """Mask of the atoms within two neighbour distances of any centre.

        The neighbour distance is the potential's ``r_min``, or ``4 sigma``
        without a potential.
        """
        potential = self.objective.potential
        reach = (2.0 * potential.r_min if potential is not None
                 else 8 * self.sigma)
        dist = np.linalg.norm(positions[:, None, :]
                              - np.asarray(centres)[None], axis=-1)
        return dist.min(axis=1) < reach


class GrowPath:

    """Greedy additions from one configuration, kept for any threshold.

    ``steps[k]`` is the configuration after ``k + 1`` additions, each the
    oracle's best atom followed by a local move (of the atoms
    ``region(positions)`` selects and the new one, or of all), or None
    where the oracle had no candidate. A step depends only on the one
    before it, not on the threshold that accepted that one, so `grow` with
    a lower threshold continues the path where a higher one stopped
    instead of starting again; `finish` keeps the finished trial of each
    end point.

    Parameters
    ----------
    context : `SearchContext`
    start : `Configuration`
    max_new : int, optional
        Most atoms added.
    region : callable, optional
        ``region(positions) -> bool mask`` of the atoms relaxed after an
        addition (the new one always is).
    """

    def __init__(self, context, start, max_new=None, region=None):
        self.context = context
        self.start = start
        self.max_new = max_new
        self.region = region
        self.steps = []
        self._finished = {}

    def _step(self, k):
        while len(self.steps) <= k:
            previous = self.steps[-1] if self.steps else self.start
            more = None if previous is None else self.context.add_atom(
                previous)
            if more is not None:
                active = None
                if self.region is not None:
                    active = self.region(more.positions)
                    active[-1] = True
                more = self.context.local_move(more, active=active)
            self.steps.append(more)
        return self.steps[k]

    def _end(self, threshold):
        """Number of atoms added at ``threshold`` and the configuration."""
        config, count = self.start, 0
        while self.max_new is None or count < self.max_new:
            more = self._step(count)
            if more is None or config.value - more.value <= threshold:
                break
            config = more
            count += 1
        return count, config

    def grow(self, threshold):
        """Add atoms while each lowers the objective by > ``threshold``."""
        return self._end(threshold)[1]

    def finish(self, threshold, current):
        """`SearchContext.finish_trial` of `grow` (kept per end point)."""
        count, config = self._end(threshold)
        if count not in self._finished:
            self._finished[count] = self.context.finish_trial(config, current)
        return self._finished[count]


class RemovalChanges:

    """Removal changes of a configuration while its atoms are removed.

    ``changes[j]`` is the exact objective change of removing atom ``j`` of
    the atoms left (`removal_changes`; ``inf`` for the removed ones). After
    `remove` of atom ``k`` only the atoms that share data cells with it
    (``<g_j, g_k> != 0``) or are within the potential's cut-off of it
    change: ``changes[j] += c w_j w_k <g_j, g_k> + lambda phi(r_jk)`` (the
    residual loses ``w_k g_k``, atom ``j``'s site energy the pair term).
    Removing unsupported atoms one at a time then costs the neighbourhoods
    of the removed atoms instead of a projection and a neighbour search of
    all atoms per removal; the changes agree with `removal_changes` of the
    atoms left to rounding.

    Parameters
    ----------
    objective : `AtomObjective`
    config : `Configuration`
    """

    def __init__(self, objective, config):
        self.objective = objective
        self.config = config
        self.changes = np.asarray(removal_changes(objective, config), float)
        self.removed = np.zeros(config.n_atoms, bool)
        op = objective.operator
        # Atom-by-cell matrix of the unit atoms' data, by columns: the
        # atoms that touch a cell are one column.
        idx, val = op.stencil(config.positions).windows()
        rows = np.repeat(np.arange(config.n_atoms, dtype=np.int32),
                         idx.shape[1])
        self._cells = csc_matrix(
            (val.ravel(), (rows, idx.ravel())),
            shape=(config.n_atoms, int(np.prod(op.frame.shape))))
        self._tree = (cKDTree(config.positions) if objective.energy_weight
                      else None)

    @property
    def n_atoms(self):
        """Number of atoms left."""
        return int(self.removed.size - np.count_nonzero(self.removed))

    def remove(self, k):
        """Remove atom ``k`` (an index into the original configuration)."""
        objective, config = self.objective, self.config
        if self.removed[k]:
            raise ValueError(f'atom {k} is removed already')
        self.removed[k] = True
        self.changes[k] = np.inf
        if self.n_atoms == 1:
            # No pairs left: `removal_changes` drops the energy term.
            left = np.flatnonzero(~self.removed)
            self.changes[left] = removal_changes(objective,
                                                 config.without(self.removed))
            return
        op = objective.operator
        w = config.weights
        idx, val = Stencil(op.frame, config.positions[k:k + 1], op.sigma,
                           op.truncate, op.mode).windows()
        # <g_j, g_k> for every atom j (0 for those that share no cell; out
        # of detector entries have value 0).
        shared = self._cells[:, idx[0]] @ val[0]
        self.changes += (objective.inner_weight * w[k]) * (w * shared)
        if self._tree is not None:
            potential = objective.potential
            near = np.asarray(self._tree.query_ball_point(
                config.positions[k], potential.cutoff), int)
            near = near[~self.removed[near]]
            r = np.linalg.norm(config.positions[near] - config.positions[k],
                               axis=1)
            inside = r < potential.cutoff  # the pairs of `removal_energies`
            self.changes[near[inside]] += objective.energy_weight * np.asarray(
                potential.pair_energy(r[inside]), float)
