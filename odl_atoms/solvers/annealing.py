"""Simulated annealing over atomic configurations.

`SimulatedAnnealing` minimises the same objective as `ADCG`,

    F(x, w) = 0.5 * ||R(x, w) - y||_Y^2 + lambda * V(x),
    lambda = alpha * E_atom / epsilon

(`odl_atoms.objective`), by a Metropolis random walk over configurations of
any size while a temperature ``T`` falls from hot (atoms come and go freely)
to cold (only improvements pass). A move is proposed, its change ``dF``
computed, and it is accepted if ``dF <= 0`` or with probability
``exp(-dF / T)`` otherwise.

**Moves.** Each move changes one atom, or translates one column of atoms:

- ``displace``: a Gaussian step of std ``step`` (reflected at the box walls,
  which keeps the proposal symmetric); ``step`` is adapted after every sweep
  so that about 40 % of the displacements are accepted;
- ``add``: a new atom, at a point drawn from the *positive part of the data
  gain map*: the exact misfit decrease ``w <g_x, y - R> - 0.5 w^2 ||g_x||^2``
  of adding an atom at ``x`` (``g_x`` the data of a unit atom), evaluated on a
  grid of spacing ``proposal_spacing`` (default ``sigma``) and jittered
  uniformly inside the grid cell. Uniform proposals over the box are almost
  all hopeless (in a 50-atom box of 20 x 20 A, a random point lies within
  ``sigma / 2`` of a missing atom with probability ~1e-3); the gain map puts
  the proposals where the residual asks for atoms. The map is recomputed
  lazily from the current residual (see ``refresh_interval``);
- ``remove``: an atom, drawn preferably among those the data support least
  (weights ``exp(-removal change / (E_atom / 4))``: a misplaced atom, which
  explains one projection of three, is picked tens of times more often than
  one that explains all its data);
- ``jump``: an atom drawn like a removal moves to a point drawn like an
  addition (a removal and an addition in one move: at low temperature an
  atom in the wrong place cannot leave it through a removal, which costs
  about one atom energy, followed by an addition);
- ``slide``: an atom drawn like a removal moves along the ray through it of
  one projection, which leaves that projection's data unchanged, to a point
  drawn along the ray from the positive gain of the residual without it.
  With few projections, misplaced atoms typically sit on the right ray of one
  projection but at the wrong depth;
- ``shift``: the atoms on the ray of one projection through an atom drawn
  like a removal (a column: within ``sigma`` of it on that detector) move
  together along the ray by a Gaussian step of std ``2 sigma``; a column
  displaced as a whole, a ghost that few projections allow, can only be
  undone collectively;
- ``swap``: a uniformly chosen atom takes another allowed weight (only with
  several allowed weights / species).

Every data-driven draw (where to add, which atom, where along a ray) is
uniform instead with probability ``uniform_fraction`` (10 %), so that every
configuration stays reachable. Acceptance uses ``dF`` alone: the proposals
are not symmetric and no Hastings correction is applied, so at a finite
temperature the walk samples ``exp(-F / T)`` only approximately. As
``T -> 0`` this does not matter -- the walk ends in a minimum of ``F`` either
way -- and the proposals only decide how fast it gets there.

**Incremental objective changes.** An atom's data live in a window of
``2 * truncate * sigma`` detector cells per angle. `AnnealingState` keeps the
residual ``r = R(x, w) - y`` and each atom's window (flat data indices and
profile values of a `Stencil`) up to date; the change of the misfit of a move
is ``c (<r, d> + 0.5 ||d||^2)`` with ``d = w' P(x') - w P(x)``, over the union
of the old and new windows only (``c`` the cell weight of the projection
space). The change of the energy sums the moved atom's pair energies with its
neighbours, found in a cell list of cell size ``cutoff``. A move therefore
costs O(window + neighbours), independent of the detector size and of the
number of atoms (a column shift: that times the atoms in the column). After
every sweep the objective is recomputed from scratch (a full projection and a
full energy), which stops round-off drift; the largest drift found is
reported in ``info['max_drift']``.

**Temperature.** Temperatures are in units of the data energy ``E_atom`` of
one atom (the unit of ``alpha``). By default the schedule is geometric,
``T_k = T_0 (T_end / T_0)^(k / (n_sweeps - 1))``: equal time per decade.
``T_0`` is estimated at the start: after ``n_trial`` greedy moves (from an
empty start every addition is downhill, which says nothing about the
barriers), a batch of ``n_trial`` trial moves is drawn and ``T_0`` set so that
half of the uphill ones would be accepted, ``mean(exp(-dF_+ / T_0)) = 1/2``;
typically ``T_0 ~ E_atom``, where atoms come and go freely. ``T_end = 1e-5 E_atom`` is
far below the cost of a missing or spurious atom (about ``E_atom``) and the
energy of a bond (``alpha E_atom``, 1e-3 by default), so the last sweeps only
refine; with a known ``noise_std`` it is at least the noise scale
``0.5 c noise_std^2``. Then ``quench_sweeps`` sweeps at ``T = 0`` and
(continuous mode) a bound-constrained L-BFGS-B polish of the positions on
``F`` finish the search, from the best configuration seen at the end of a
sweep.

**Limits.** With projections along zone axes (0/45/90 degrees on a square
lattice) the annealing recovers the 2D defect phantoms exactly. With
generic angles (0/60/120 degrees), where the projections of a lattice blur
into each other, ``F`` has many near-degenerate minima (atoms bunched at the
wrong depth along the rays of one projection); single-atom and column moves
then end in one of them, as ADCG's greedy additions do, but more often.

**Grid mode.** With ``grid_spacing=h`` the atoms live on the sites
``c + h k`` (``c`` the box centre, ``k`` integer) inside the box and each site
holds at most one atom: the discrete baseline of Ganguly et al., where
a site is occupied (weight 1) or not (weight 0). The moves become occupancy
flips (``add`` / ``remove`` at a site drawn as above and snapped to the
nearest site), hops to one of the ``3^d - 1`` neighbouring sites
(``displace``) and jumps to a drawn site; rays do not run along the grid, so
there are no slides or shifts, and there is no continuous polish.
"""

import itertools
from dataclasses import dataclass

import numpy as np

from odl_atoms.descent import lbfgsb
from odl_atoms.problem import estimate_r_min
from odl_atoms.projection import Stencil
from odl_atoms.solvers.base import Reconstruction, Solver
from odl_atoms.solvers.grid import scoring_discr, scoring_grid
from odl_atoms.solvers.options import count, optional, positive, set_option

__all__ = ('SimulatedAnnealing', 'AnnealingState')

#: Move types, in the order of ``move_probabilities``.
MOVES = ('displace', 'slide', 'shift', 'add', 'remove', 'jump', 'swap')

#: Named temperature schedules.
SCHEDULES = ('geometric', 'linear')

#: Default relative frequency of the moves (renormalised over the moves that
#: apply: no ``swap`` with a single species).
DEFAULT_MOVE_PROBABILITIES = {'displace': 0.3, 'slide': 0.15, 'shift': 0.1,
                              'add': 0.1, 'remove': 0.1, 'jump': 0.15,
                              'swap': 0.1}

# Target acceptance of displacements; the step is adapted towards it.
_TARGET_ACCEPTANCE = {'displace': 0.4}


def _windows(stencil):
    """Flat data indices and unit-weight values ``(n, K)`` of every atom."""
    return stencil.windows()


class _CellList:

    """Atoms binned in cubic cells, for neighbour queries around a point."""

    def __init__(self, origin, size, ndim):
        self.origin = np.asarray(origin, dtype=float)
        self.size = float(size)
        self.offsets = list(itertools.product((-1, 0, 1), repeat=ndim))
        self.cells = {}
        self.slot_key = {}

    def key(self, x):
        return tuple(((x - self.origin) // self.size).astype(int).tolist())

    def insert(self, slot, x):
        k = self.key(x)
        self.cells.setdefault(k, []).append(slot)
        self.slot_key[slot] = k

    def remove(self, slot):
        self.cells[self.slot_key.pop(slot)].remove(slot)

    def move(self, slot, x):
        k = self.key(x)
        if k != self.slot_key[slot]:
            self.remove(slot)
            self.cells.setdefault(k, []).append(slot)
            self.slot_key[slot] = k

    def relabel(self, old, new):
        """Atom in slot ``old`` now lives in slot ``new``."""
        k = self.slot_key.pop(old)
        cell = self.cells[k]
        cell[cell.index(old)] = new
        self.slot_key[new] = k

    def near(self, x):
        """Slots of the atoms in the ``3^d`` cells around ``x``."""
        k = self.key(x)
        get = self.cells.get
        out = []
        if len(k) == 2:
            k0, k1 = k
            for a, b in self.offsets:
                cell = get((k0 + a, k1 + b))
                if cell:
                    out.extend(cell)
        else:
            for off in self.offsets:
                cell = get(tuple(a + b for a, b in zip(k, off)))
                if cell:
                    out.extend(cell)
        return np.array(out, dtype=np.intp)


@dataclass
class Proposal:

    """A move and its objective change (see `AnnealingState`)."""

    kind: str
    index: int              # atom slot, -1 for an addition; array: a group
    position: np.ndarray    # new position(s), None for a removal
    weight: float
    label: str
    new_index: np.ndarray   # data indices of the new window(s)
    new_values: np.ndarray  # unit-weight profile in the new window
    cells: np.ndarray       # union of old and new window
    change: np.ndarray      # change of the residual on ``cells``
    d_misfit: float
    d_energy: float
    delta: float            # change of F


class AnnealingState:

    """An atomic configuration whose objective is updated move by move.

    Holds the atoms, the residual ``r = R(x, w) - y`` (flat), every atom's
    data window and a cell list, so that `propose` (one atom) and
    `propose_translation` (a group) evaluate the exact change of ``F`` from
    the moved atoms' windows and neighbours only, and `accept` applies it.
    `recompute` evaluates everything from scratch.

    Parameters
    ----------
    objective : `AtomObjective`
        The objective (operator, data, energy weight, potential).
    positions : array-like, shape ``(n, d)``
    weights : array-like, shape ``(n,)``
    labels : array-like of str, shape ``(n,)``

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import (AtomObjective, GaussianRayTransform,
    ...                        SparseMeasureSpace)
    >>> space = SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.3)
    >>> data = op(space.element([[-1.0, 0.5], [1.2, -0.7]]))
    >>> objective = AtomObjective(op, data)
    >>> state = AnnealingState(objective, [[-1.0, 0.5]], [1.0], ['X'])
    >>> move = state.propose(-1, np.array([1.2, -0.7]), 1.0)  # add the other
    >>> state.accept(move)
    >>> abs(state.value) < 1e-12   # both atoms found: F = 0
    True
    >>> abs(state.value - objective(state.positions, state.weights)) < 1e-12
    True
    """

    def __init__(self, objective, positions, weights, labels):
        self.objective = objective
        op = objective.operator
        self.operator = op
        d = op.domain.ndim
        positions = np.array(positions, dtype=float).reshape(-1, d)
        n = positions.shape[0]
        probe = Stencil(op.frame, op.domain.box.mid_pt[None, :], op.sigma,
                        op.truncate, op.mode)
        k = _windows(probe)[0].shape[1]
        cap = max(16, 2 * n)
        self._pos = np.zeros((cap, d))
        self._w = np.zeros(cap)
        self._lab = np.empty(cap, dtype=object)
        self._idx = np.zeros((cap, k), dtype=np.intp)
        self._val = np.zeros((cap, k))
        self.n_atoms = n
        self.version = 0    # number of accepted moves
        self._pos[:n] = positions
        self._w[:n] = np.asarray(weights, dtype=float)
        self._lab[:n] = list(labels)
        self.set_objective(objective)

    # --- Views

    @property
    def positions(self):
        """Positions ``(n, d)`` (a copy)."""
        return self._pos[:self.n_atoms].copy()

    @property
    def weights(self):
        """Weights ``(n,)`` (a copy)."""
        return self._w[:self.n_atoms].copy()

    @property
    def labels(self):
        """Species labels ``(n,)`` (a copy, str)."""
        return self._lab[:self.n_atoms].astype(str)

    @property
    def residual(self):
        """The tracked residual ``R(x, w) - y`` (flat, a copy)."""
        return self.r.copy()

    # --- Full evaluation

    def set_objective(self, objective):
        """Switch to another objective (e.g. the energy turned on)."""
        self.objective = objective
        self.c = objective.inner_weight
        self.energy_weight = objective.energy_weight
        self.potential = objective.potential if self.energy_weight else None
        op = self.operator
        size = (self.potential.cutoff if self.potential is not None
                else 4 * op.sigma)
        self.cells = _CellList(op.domain.min_pt, size, op.domain.ndim)
        for i in range(self.n_atoms):
            self.cells.insert(i, self._pos[i])
        self.value = None
        self.recompute()

    def recompute(self):
        """Recompute residual, misfit, energy and ``F`` from scratch.

        Returns
        -------
        drift : float
            ``|F_tracked - F_exact|`` before the reset, relative to
            ``max(|F_exact|, E_atom)`` (0 on the first call).
        """
        n = self.n_atoms
        op = self.operator
        y = self.objective.y
        if n:
            stencil = Stencil(op.frame, self._pos[:n], op.sigma, op.truncate,
                              op.mode)
            idx, val = _windows(stencil)
            self._idx[:n], self._val[:n] = idx, val
            model = np.bincount(idx.ravel(),
                                (self._w[:n, None] * val).ravel(),
                                minlength=y.size)
        else:
            model = np.zeros(y.size)
        self.r = model - y
        self.misfit = 0.5 * self.c * float(self.r @ self.r)
        self.energy = (self.potential.energy(self._pos[:n])
                       if self.potential is not None and n > 1 else 0.0)
        old = self.value
        self.value = self.misfit + self.energy_weight * self.energy
        if old is None:
            return 0.0
        return abs(old - self.value) / max(abs(self.value),
                                           self.objective.atom_energy)

    # --- Moves

    def window(self, position):
        """Data indices and unit profile of one atom at ``position``."""
        op = self.operator
        stencil = Stencil(op.frame, position[None, :], op.sigma, op.truncate,
                          op.mode)
        idx, val = _windows(stencil)
        return idx[0], val[0]

    def propose(self, index, position, weight=None, label=None, kind=None):
        """Return the `Proposal` of a one-atom move (nothing is changed).

        Parameters
        ----------
        index : int
            The atom that moves, or -1 to add one.
        position : numpy.ndarray or None
            Its new position; None removes it.
        weight, label : optional
            Its new weight and label (default: unchanged; for an addition,
            ``weight`` is required).
        kind : str, optional
            Name of the move, for bookkeeping.
        """
        if index >= 0:
            old_w = self._w[index]
            old_idx, old_val = self._idx[index], self._val[index]
            if weight is None:
                weight = old_w
            if label is None:
                label = self._lab[index]
        elif weight is None:
            raise ValueError('an addition needs a `weight`')
        same_place = (index >= 0 and position is not None
                      and np.array_equal(position, self._pos[index]))
        if position is None:
            new_idx = new_val = None
        elif same_place:
            new_idx, new_val = old_idx, old_val
        else:
            new_idx, new_val = self.window(position)
        parts_idx, parts_val = [], []
        if index >= 0:
            parts_idx.append(old_idx)
            parts_val.append(-old_w * old_val)
        if new_idx is not None:
            parts_idx.append(new_idx)
            parts_val.append(weight * new_val)
        # Windows of the old and new place may overlap (and a window clipped
        # at a small detector repeats its last cell): sum per distinct cell.
        cells, inverse = np.unique(np.concatenate(parts_idx),
                                   return_inverse=True)
        change = np.bincount(inverse, np.concatenate(parts_val),
                             minlength=cells.size)
        local = self.r[cells]
        d_misfit = self.c * (float(local @ change)
                             + 0.5 * float(change @ change))
        d_energy = 0.0
        if self.potential is not None and not same_place:
            # Pair distances at the new place, then at the old one; one
            # evaluation of the pair energy for both.
            dist = []
            for x in (position, self._pos[index] if index >= 0 else None):
                if x is None:
                    dist.append(np.zeros(0))
                    continue
                nb = self.cells.near(x)
                diff = self._pos[nb[nb != index]] - x
                dist.append(np.sqrt(np.einsum('ij,ij->i', diff, diff)))
            if dist[0].size + dist[1].size:
                pair = self.potential.pair_energy(np.concatenate(dist))
                k = dist[0].size
                d_energy = float(pair[:k].sum()) - float(pair[k:].sum())
        delta = d_misfit + self.energy_weight * d_energy
        return Proposal(kind, index, position, float(weight), label, new_idx,
                        new_val, cells, change, d_misfit, d_energy, delta)

    def accept(self, move):
        """Apply a `Proposal` made from the current state."""
        self.version += 1
        self.r[move.cells] += move.change
        self.misfit += move.d_misfit
        self.energy += move.d_energy
        self.value = self.misfit + self.energy_weight * self.energy
        i = move.index
        if isinstance(i, np.ndarray):                 # group translation
            k = move.new_values.shape[0]
            for j, x in zip(i, move.position):
                self.cells.move(j, x)
            self._pos[i] = move.position
            self._idx[i] = move.new_index.reshape(k, -1)
            self._val[i] = move.new_values
            return
        if move.position is None:                    # removal
            last = self.n_atoms - 1
            self.cells.remove(i)
            if i != last:
                for arr in (self._pos, self._w, self._lab, self._idx,
                            self._val):
                    arr[i] = arr[last]
                self.cells.relabel(last, i)
            self.n_atoms = last
            return
        if i < 0:                                     # addition
            if self.n_atoms == self._w.size:
                self._grow()
            i = self.n_atoms
            self.n_atoms += 1
            self.cells.insert(i, move.position)
        else:
            self.cells.move(i, move.position)
        self._pos[i] = move.position
        self._w[i] = move.weight
        self._lab[i] = move.label
        self._idx[i] = move.new_index
        self._val[i] = move.new_values

    def propose_translation(self, indices, shift, kind='shift'):
        """Return the `Proposal` of translating atoms ``indices`` by ``shift``.

        The pairs among the moved atoms keep their distances; only their
        pairs with the other atoms change the energy.
        """
        indices = np.asarray(indices, dtype=np.intp)
        old = self._pos[indices]
        new = old + shift
        op = self.operator
        stencil = Stencil(op.frame, new, op.sigma, op.truncate, op.mode)
        new_idx, new_val = _windows(stencil)
        w = self._w[indices, None]
        cells, inverse = np.unique(
            np.concatenate([self._idx[indices].ravel(), new_idx.ravel()]),
            return_inverse=True)
        change = np.bincount(
            inverse, np.concatenate([(-w * self._val[indices]).ravel(),
                                     (w * new_val).ravel()]),
            minlength=cells.size)
        local = self.r[cells]
        d_misfit = self.c * (float(local @ change)
                             + 0.5 * float(change @ change))
        d_energy = 0.0
        if self.potential is not None:
            dist = [[], []]
            for side, points in enumerate((new, old)):
                for x in points:
                    nb = self.cells.near(x)
                    nb = nb[~np.isin(nb, indices)]
                    diff = self._pos[nb] - x
                    dist[side].append(np.sqrt(np.einsum('ij,ij->i', diff,
                                                        diff)))
            d_new, d_old = np.concatenate(dist[0]), np.concatenate(dist[1])
            if d_new.size + d_old.size:
                pair = self.potential.pair_energy(np.concatenate([d_new,
                                                                  d_old]))
                d_energy = (float(pair[:d_new.size].sum())
                            - float(pair[d_new.size:].sum()))
        delta = d_misfit + self.energy_weight * d_energy
        return Proposal(kind, indices, new, None, None, new_idx.ravel(),
                        new_val, cells, change, d_misfit, d_energy, delta)

    def _grow(self):
        for name in ('_pos', '_w', '_lab', '_idx', '_val'):
            arr = getattr(self, name)
            new = np.zeros((2 * arr.shape[0],) + arr.shape[1:], arr.dtype)
            new[:arr.shape[0]] = arr
            setattr(self, name, new)

    def removal_changes(self):
        """Misfit change of removing each atom, ``(n,)`` (energy left out).

        ``c (0.5 w_i^2 ||P_i||^2 - w_i <r, P_i>)``: about ``+E_atom`` for an
        atom that explains its data, less for a misplaced one, negative for a
        spurious one. O(n * window).
        """
        n = self.n_atoms
        w, val = self._w[:n], self._val[:n]
        corr = np.einsum('ij,ij->i', self.r[self._idx[:n]], val)
        norms = np.einsum('ij,ij->i', val, val)
        return self.c * (0.5 * w * w * norms - w * corr)

    def nearest_distance(self, position, exclude=-1):
        """Distance from ``position`` to the nearest other atom in the cells."""
        nb = self.cells.near(position)
        nb = nb[nb != exclude]
        if nb.size == 0:
            return np.inf
        return float(np.min(np.linalg.norm(self._pos[nb] - position, axis=1)))


class _Snapshot:

    """A proposal helper computed from the state at some move."""

    cdf = version = clock = None


class _GainMap:

    """Where adding an atom lowers the misfit: a sampling distribution.

    The exact misfit decrease of adding an atom of weight ``w`` at each point
    of a grid, ``c (w <g, -r> - 0.5 w^2 ||g||^2)``, best over the allowed
    weights; points are drawn with probability proportional to its positive
    part (mixed with a uniform fraction) and jittered inside their grid cell.
    """

    def __init__(self, operator, spacing, allowed, uniform_fraction):
        # ADCG's scoring grid: correlations by matrix products in 3D, no
        # stored windows (which took 1.7-4.6 GB for 43-144-atom particles
        # and 80 % of the run time in refreshes).
        self.points, self.stencil, self.norms = scoring_grid(operator, spacing)
        space = operator.domain
        self.cell = np.asarray(scoring_discr(space, spacing).cell_sides,
                               dtype=float)
        self.lo, self.hi = space.min_pt, space.max_pt
        self.allowed = allowed
        self.uniform_fraction = float(uniform_fraction)
        self.cdf = None
        self.version = self.clock = None   # state version / move at refresh

    def refresh(self, state, clock):
        self.version, self.clock = state.version, clock
        residual, c = state.r, state.c
        corr = -c * self.stencil.correlate(residual)
        w = self.allowed[None, :]
        gains = w * corr[:, None] - 0.5 * c * w ** 2 * self.norms[:, None]
        self.best = np.argmax(gains, axis=1)
        positive = np.maximum(gains[np.arange(len(gains)), self.best], 0.0)
        total = positive.sum()
        u = self.uniform_fraction if total > 0 else 1.0
        prob = (1 - u) * (positive / total if total > 0 else 0.0) \
            + u / positive.size
        self.cdf = np.cumsum(prob)
        self.cdf /= self.cdf[-1]

    def sample(self, rng):
        """Return a point and the index of its best weight."""
        g = min(int(np.searchsorted(self.cdf, rng.random())),
                self.cdf.size - 1)
        jitter = (rng.random(self.points.shape[1]) - 0.5) * self.cell
        return np.clip(self.points[g] + jitter, self.lo, self.hi), self.best[g]


def move_probabilities(given):
    """The relative move frequencies: the defaults updated by ``given``."""
    probs = dict(DEFAULT_MOVE_PROBABILITIES)
    if given is not None:
        unknown = set(given) - set(MOVES)
        if unknown:
            raise ValueError(f'unknown move(s) {sorted(unknown)}; the '
                             f'moves are {MOVES}')
        probs.update({k: float(v) for k, v in given.items()})
    if any(not (np.isfinite(p) and p >= 0) for p in probs.values()):
        raise ValueError(f'move probabilities must be >= 0, got {probs}')
    return probs



def _schedule(name, value):
    if not (callable(value) or value in SCHEDULES):
        raise ValueError(f'`{name}` must be one of {SCHEDULES} or a '
                         f'callable, got {value!r}')
    return value


@dataclass(frozen=True)
class _Options:

    """Simulated annealing's options (see `SimulatedAnnealing`)."""

    n_sweeps: int = 300
    sweep_size: int = None
    schedule: object = 'geometric'
    t_start: float = None
    t_end: float = 1e-5
    step: float = None
    grid_spacing: float = None
    move_probabilities: dict = None
    quench_sweeps: int = 10
    polish: bool = True
    energy_start: float = 0.5
    proposal_spacing: float = None
    uniform_fraction: float = 0.1
    refresh_interval: int = 10
    n_trial: int = 200
    seed: object = None

    def __post_init__(self):
        set_option(self, 'n_sweeps', count('n_sweeps', self.n_sweeps))
        set_option(self, 'sweep_size',
                   optional(count, 'sweep_size', self.sweep_size))
        set_option(self, 'quench_sweeps',
                   count('quench_sweeps', self.quench_sweeps, 0))
        set_option(self, 'n_trial', count('n_trial', self.n_trial))
        set_option(self, 'refresh_interval',
                   count('refresh_interval', self.refresh_interval))
        _schedule('schedule', self.schedule)
        set_option(self, 't_start', optional(positive, 't_start',
                                             self.t_start))
        set_option(self, 't_end', positive('t_end', self.t_end))
        if self.t_start is not None and self.t_start < self.t_end:
            raise ValueError(f'`t_start` ({self.t_start}) must not be below '
                             f'`t_end` ({self.t_end})')
        set_option(self, 'step', optional(positive, 'step', self.step))
        set_option(self, 'grid_spacing',
                   optional(positive, 'grid_spacing', self.grid_spacing))
        set_option(self, 'proposal_spacing', optional(
            positive, 'proposal_spacing', self.proposal_spacing))
        probs = move_probabilities(self.move_probabilities)
        if probs['add'] <= 0 and probs['jump'] <= 0:
            raise ValueError('at least one of the moves `add` and `jump` '
                             'must have a positive probability')
        set_option(self, 'polish', bool(self.polish))
        energy_start = float(self.energy_start)
        if not 0 <= energy_start <= 1:
            raise ValueError(f'`energy_start` must be in [0, 1], got '
                             f'{energy_start}')
        set_option(self, 'energy_start', energy_start)
        uniform_fraction = float(self.uniform_fraction)
        if not 0 < uniform_fraction <= 1:
            raise ValueError(f'`uniform_fraction` must be in (0, 1], got '
                             f'{uniform_fraction}')
        set_option(self, 'uniform_fraction', uniform_fraction)



class SimulatedAnnealing(Solver):

    """Simulated annealing of atoms with a potential energy.

    Minimises the objective of a `~odl_atoms.problem.Problem` (the same as
    `ADCG`'s). With the problem's ``potential='auto'`` the energy is
    switched on after a fraction ``energy_start`` of the annealing sweeps,
    with ``r_min`` estimated from the configuration at that point (the
    objective history jumps there). The problem's noise level bounds the
    final temperature from below by ``0.5 * c * noise_std**2`` (objective
    changes below it are noise), and its ``max_atoms`` is a guard on the
    number of atoms (additions beyond it are rejected).

    Parameters
    ----------
    n_sweeps : int, optional
        Number of annealing sweeps (temperatures), default 300.
    sweep_size : int, optional
        Moves per sweep. Default: twice the number of atoms the data hold
        (total weight over the smallest allowed weight), at least 40.
    schedule : {'geometric', 'linear'} or callable, optional
        Temperature schedule from ``t_start`` to ``t_end`` over ``n_sweeps``;
        a callable ``schedule(k, n_sweeps, t_start, t_end)`` returns the
        temperature of sweep ``k``. Default ``'geometric'``.
    t_start : float, optional
        Initial temperature in units of ``E_atom``. Default: estimated so
        that half of the uphill trial moves of a batch of ``n_trial`` moves
        from the starting configuration would be accepted.
    t_end : float, optional
        Final temperature in units of ``E_atom`` (default ``1e-5``).
    step : float, optional
        Initial displacement step (angstrom), default ``0.5 * sigma``; it is
        adapted after every sweep (target acceptance 40 %), within
        ``[1e-4 sigma, box / 2]``.
    grid_spacing : float, optional
        If given, atoms live on the sites of a grid of this spacing
        (angstrom), at most one per site (see the module documentation).
    move_probabilities : mapping, optional
        Relative frequencies of the moves `MOVES`; missing moves keep their
        default (`DEFAULT_MOVE_PROBABILITIES`), 0 disables one.
    quench_sweeps : int, optional
        Sweeps at zero temperature after the annealing (default 10).
    polish : bool, optional
        Finish with a bound-constrained L-BFGS-B minimisation of ``F`` over
        the positions (continuous mode only). Default True.
    energy_start : float, optional
        With ``potential='auto'``: fraction of the annealing sweeps after
        which the energy is switched on (default 0.5).
    proposal_spacing : float, optional
        Spacing of the grid of the addition proposals (default ``sigma``).
    uniform_fraction : float, optional
        Probability that a data-driven draw (where to add or jump to, which
        atom to remove, where along a ray) is uniform instead (default 0.1).
    refresh_interval : int, optional
        The gain map (where to add) and the removal weights (which atom) are
        recomputed from the residual when they are needed, the configuration
        changed, and at least this many moves were made since they were last
        computed (default 10). Stale helpers only make proposals less apt;
        acceptance always uses the exact ``dF``.
    n_trial : int, optional
        Greedy moves and then trial moves for the estimate of ``t_start``
        (default 200 each).
    seed : int or Generator, optional
        Seed of the random walk.

    Notes
    -----
    ``Reconstruction.objective`` holds ``F`` after every sweep (recomputed
    from scratch), ``n_iterations`` the number of sweeps (annealing and
    quench), and ``info``:

    - ``acceptance``: accepted / proposed, per move type (`MOVES` that
      apply); ``proposed``, ``accepted``: the counts; ``n_moves``: all moves;
    - ``initial_temperature``, ``final_temperature``: in units of
      ``temperature_unit`` (``E_atom``);
    - ``final_steps``: the adapted displacement step and the shift step;
    - ``max_drift``: largest relative difference between the incrementally
      tracked and the recomputed ``F`` at the end of a sweep;
    - ``estimated_r_min`` (``potential='auto'``), ``polish_max_shift``,
      ``atom_energy``, ``energy_weight``, ``potential``, ``sweep_size``.

    Without energy, two atoms of weight ``w`` on one site fit the data of one
    atom of weight ``2 w`` exactly; with several allowed weights, only the
    potential's repulsive core tells the two apart.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import Problem, SparseMeasureSpace, GaussianRayTransform
    >>> space = SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.3)
    >>> truth = space.element([[-1.0, 0.5], [1.2, -0.7], [0.3, 1.9]])
    >>> solver = SimulatedAnnealing(n_sweeps=60, seed=1)
    >>> result = solver.solve(Problem(op, op(truth), alpha=0))
    >>> result.n_atoms
    3
    >>> np.abs(np.sort(result.measure.positions, 0)
    ...        - np.sort(truth.positions, 0)).max() < 1e-4
    True
    >>> sorted(result.info['acceptance'])
    ['add', 'displace', 'jump', 'remove', 'shift', 'slide']
    """

    Options = _Options

    def temperatures(self, t_start, t_end):
        """Return the annealing temperatures (units of ``E_atom``)."""
        n = self.options.n_sweeps
        schedule = self.options.schedule
        k = np.arange(n)
        frac = k / max(n - 1, 1)
        if callable(schedule):
            return np.array([float(schedule(i, n, t_start, t_end))
                             for i in k])
        if schedule == 'geometric':
            return t_start * (t_end / t_start) ** frac
        return t_start + (t_end - t_start) * frac

    def grid_sites(self, problem):
        """Return all grid sites ``(p, d)`` of ``problem``'s box (grid mode)."""
        return _Walk(self, problem).grid_sites()

    # --- Driver

    def _solve(self, problem, initial, callback, rng):
        options = self.options
        walk = _Walk(self, problem)
        op = problem.operator
        space = op.domain
        d = space.ndim
        auto = problem.alpha > 0 and isinstance(problem.potential, str)
        if problem.alpha == 0 or auto:
            problem = problem.with_potential(None)
        objective = problem.objective()
        e_atom = objective.atom_energy
        info = {'estimated_r_min': None}

        if initial is None:
            positions = np.zeros((0, d))
            weights = np.zeros(0)
            labels = np.zeros(0, dtype=str)
        else:
            positions, weights, labels = problem.arrays(initial)
            positions = np.clip(positions, space.min_pt, space.max_pt)
            if options.grid_spacing is not None:
                positions = walk.snap(positions)
        state = AnnealingState(objective, positions, weights, labels)

        expected = problem.expected_atoms()
        walk.max_atoms = problem.default_max_atoms()
        sweep_size = options.sweep_size or max(40, int(np.ceil(2 * expected)))
        step = options.step or 0.5 * op.sigma
        steps = ({'displace': step, 'shift': 2 * op.sigma}
                 if options.grid_spacing is None else
                 {'displace': options.grid_spacing})
        max_step = 0.5 * float(np.min(space.max_pt - space.min_pt))
        min_step = 1e-4 * op.sigma

        t_start = options.t_start
        if t_start is None:
            t_start = walk.estimate_t_start(state, rng, steps)
        t_end = options.t_end
        if problem.noise_std:
            t_end = max(t_end, 0.5 * objective.inner_weight
                        * problem.noise_std ** 2 / e_atom)
        t_start = max(t_start, t_end)
        temps = self.temperatures(t_start, t_end)
        if np.any(~np.isfinite(temps)) or np.any(temps < 0):
            raise ValueError('the temperature schedule must give finite '
                             'temperatures >= 0')
        switch = (int(round(options.energy_start * (options.n_sweeps - 1)))
                  if auto else -1)
        all_temps = np.concatenate([temps, np.zeros(options.quench_sweeps)])

        proposed = dict.fromkeys(walk.moves, 0)
        accepted = dict.fromkeys(walk.moves, 0)
        history, drifts = [], [0.0]
        best = None
        stop = 'schedule'
        for sweep, temp in enumerate(all_temps):
            if sweep and self.out_of_time():
                stop = 'time_limit'
                break
            t_abs = temp * e_atom
            sweep_proposed = dict.fromkeys(walk.moves, 0)
            sweep_accepted = dict.fromkeys(walk.moves, 0)
            for _ in range(sweep_size):
                kind = walk.draw_kind(rng)
                walk.clock += 1
                sweep_proposed[kind] += 1
                move = walk.propose(kind, state, rng, steps)
                if move is None:
                    continue
                dF = move.delta
                if dF < 0 or (t_abs > 0
                              and rng.random() < np.exp(-dF / t_abs)):
                    state.accept(move)
                    sweep_accepted[kind] += 1
            drifts.append(state.recompute())
            for kind in walk.moves:
                proposed[kind] += sweep_proposed[kind]
                accepted[kind] += sweep_accepted[kind]
            if options.grid_spacing is None:
                for kind in _TARGET_ACCEPTANCE:
                    if sweep_proposed.get(kind, 0) >= 5:
                        rate = sweep_accepted[kind] / sweep_proposed[kind]
                        steps[kind] = float(np.clip(
                            steps[kind] * np.exp(
                                rate - _TARGET_ACCEPTANCE[kind]),
                            min_step, max_step))
            if sweep == switch:
                r_min = estimate_r_min(state.positions, op.sigma)
                if r_min is not None:
                    info['estimated_r_min'] = r_min
                problem = problem.with_potential(r_min)
                objective = problem.objective()
                state.set_objective(objective)
                best = None  # values before the switch are another objective
            history.append(state.value)
            if best is None or state.value < best[0]:
                best = (state.value, state.positions, state.weights,
                        state.labels)
            if callback is not None:
                callback(problem.measure(state.positions, state.weights,
                                         state.labels))

        _, positions, weights, labels = best
        if options.polish and options.grid_spacing is None and len(weights):
            positions, info['polish_max_shift'] = _polish(
                objective, positions, weights)
        misfit, energy = objective.parts(positions, weights)
        info.update(
            acceptance={k: (accepted[k] / proposed[k] if proposed[k] else 0.0)
                        for k in walk.moves},
            stop_reason=stop, proposed=proposed, accepted=accepted,
            n_moves=int(sum(proposed.values())),
            initial_temperature=float(t_start),
            final_temperature=float(temps[-1]),
            temperature_unit=e_atom,
            final_steps=steps, sweep_size=sweep_size,
            max_drift=float(max(drifts)),
            atom_energy=e_atom, energy_weight=objective.energy_weight,
            potential=objective.potential if objective.energy_weight else None)
        has_energy = objective.energy_weight > 0
        return Reconstruction(
            measure=problem.measure(positions, weights, labels),
            objective=history, n_iterations=len(history),
            data_misfit=misfit, energy=energy if has_energy else None,
            info=info)


def _polish(objective, positions, weights):
    """L-BFGS-B on ``F`` over the positions, inside the box."""
    space = objective.operator.domain
    n, d = positions.shape

    def fun(flat):
        value, grad_x, _ = objective.value_and_gradient(
            flat.reshape(n, d), weights)
        return value, grad_x.ravel()

    start = objective(positions, weights)
    res = lbfgsb(fun, positions.ravel(), np.tile(space.min_pt, n),
                 np.tile(space.max_pt, n), maxiter=200)
    if not res.fun < start:
        return positions, 0.0
    new = res.x.reshape(n, d)
    return new, float(np.max(np.linalg.norm(new - positions, axis=1)))



class _Walk:

    """The random walk of one annealing run: the moves on one problem.

    Holds what the proposals need of the problem (the operator, the allowed
    weights, the projection rays) and the proposal helpers computed from the
    residual (the gain map of additions, the removal weights), refreshed
    lazily as the configuration changes.
    """

    def __init__(self, solver, problem):
        options = solver.options
        self.options = options
        self.operator = op = problem.operator
        self.allowed, self.labels = problem.allowed, problem.labels
        self.grid_spacing = options.grid_spacing
        self.uniform_fraction = options.uniform_fraction
        self.refresh_interval = options.refresh_interval
        probs = move_probabilities(options.move_probabilities)
        if self.allowed.size == 1:
            probs['swap'] = 0.0
        if self.grid_spacing is not None:
            # Rays do not run along the grid.
            probs['slide'] = probs['shift'] = 0.0
        self.moves = [m for m in MOVES if probs[m] > 0]
        p = np.array([probs[m] for m in self.moves])
        self.move_cdf = np.cumsum(p / p.sum())
        spacing = (float(op.sigma) if options.proposal_spacing is None
                   else options.proposal_spacing)
        self.gain_map = _GainMap(op, spacing, self.allowed,
                                 self.uniform_fraction)
        self.suspects = _Snapshot()
        self.clock = 0     # moves made, for the refresh of the helpers
        self.max_atoms = None
        # Unit ray directions of the projections: orthogonal to the detector
        # axes (the last right-singular vector of each (k, d) axes block).
        self.rays = np.array([np.linalg.svd(ax)[2][-1]
                              for ax in op.frame.axes])

    def grid_sites(self):
        """Return all grid sites ``(p, d)`` (grid mode only)."""
        if self.grid_spacing is None:
            raise ValueError('no grid: the solver was built without '
                             '`grid_spacing`')
        space = self.operator.domain
        mid, h = space.box.mid_pt, self.grid_spacing
        lo = np.ceil((space.min_pt - mid) / h - 1e-9).astype(int)
        hi = np.floor((space.max_pt - mid) / h + 1e-9).astype(int)
        axes = [mid[i] + h * np.arange(lo[i], hi[i] + 1)
                for i in range(space.ndim)]
        mesh = np.meshgrid(*axes, indexing='ij')
        return np.stack([m.ravel() for m in mesh], axis=1)

    def snap(self, points):
        """Return the nearest grid sites of ``points`` (grid mode)."""
        space = self.operator.domain
        mid, h = space.box.mid_pt, self.grid_spacing
        k = np.round((np.asarray(points, float) - mid) / h)
        lo = np.ceil((space.min_pt - mid) / h - 1e-9)
        hi = np.floor((space.max_pt - mid) / h + 1e-9)
        return mid + h * np.clip(k, lo, hi)

    # --- Moves

    def _stale(self, holder, state):
        """Whether a proposal helper computed from the residual is stale."""
        return holder.version is None or (
            holder.version != state.version
            and self.clock - holder.clock >= self.refresh_interval)

    def _draw_point(self, state, rng):
        """A point from the gain map (refreshed if stale) and a weight index."""
        gm = self.gain_map
        if self._stale(gm, state):
            gm.refresh(state, self.clock)
        x, best = gm.sample(rng)
        if rng.random() < self.uniform_fraction:
            best = int(rng.integers(self.allowed.size))
        if self.grid_spacing is not None:
            x = self.snap(x)
        return x, best

    def _occupied(self, state, x, exclude=-1):
        return (self.grid_spacing is not None and
                state.nearest_distance(x, exclude) < 0.5 * self.grid_spacing)

    def propose(self, kind, state, rng, steps):
        """Draw a move of type ``kind`` from ``state`` (nothing is applied).

        Parameters
        ----------
        kind : str
            One of `MOVES`.
        state : `AnnealingState`
        rng : numpy.random.Generator
        steps : dict
            Current ``'displace'`` and ``'shift'`` step lengths (angstrom).

        Returns
        -------
        move : `Proposal` or None
            None if the move cannot be made (nothing to remove, a site
            occupied, a step out of the box, the atom limit reached); that
            counts as a rejection.
        """
        n = state.n_atoms
        space = self.operator.domain
        if kind == 'add':
            if n >= self.max_atoms:
                return None
            x, j = self._draw_point(state, rng)
            if self._occupied(state, x):
                return None
            return state.propose(-1, x, self.allowed[j], self.labels[j],
                                 kind='add')
        if n == 0:
            return None
        if kind in ('remove', 'jump', 'slide', 'shift'):
            i = self._draw_suspect(state, rng)
        else:
            i = int(rng.integers(n))
        if kind == 'remove':
            return state.propose(i, None, kind='remove')
        if kind == 'displace':
            x = state._pos[i]
            if self.grid_spacing is not None:
                offset = rng.integers(-1, 2, size=x.size)
                while not offset.any():
                    offset = rng.integers(-1, 2, size=x.size)
                new = x + self.grid_spacing * offset
                if np.any(new < space.min_pt - 1e-9) or \
                        np.any(new > space.max_pt + 1e-9):
                    return None
            else:
                new = x + steps['displace'] * rng.standard_normal(x.size)
                # Reflect at the walls (a symmetric proposal), then clip in
                # case a step is longer than the box.
                lo, hi = space.min_pt, space.max_pt
                new = np.where(new < lo, 2 * lo - new, new)
                new = np.where(new > hi, 2 * hi - new, new)
                new = np.clip(new, lo, hi)
            if self._occupied(state, new, exclude=i):
                return None
            return state.propose(i, new, kind='displace')
        if kind == 'shift':
            # The atoms on the ray of atom i of one projection (a column),
            # translated together along that ray.
            a = int(rng.integers(len(self.rays)))
            u = np.einsum('kd,nd->nk', self.operator.frame.axes[a],
                          state._pos[:n])
            members = np.flatnonzero(
                np.linalg.norm(u - u[i], axis=1) < self.operator.sigma)
            shift = steps['shift'] * rng.standard_normal() * self.rays[a]
            moved = state._pos[members] + shift
            if np.any(moved < space.min_pt) or np.any(moved > space.max_pt):
                return None
            return state.propose_translation(members, shift)
        if kind == 'slide':
            new = self._slide_target(state, i, rng)
            if new is None or self._occupied(state, new, exclude=i):
                return None
            return state.propose(i, new, kind='slide')
        if kind == 'jump':
            x, _ = self._draw_point(state, rng)
            if self._occupied(state, x, exclude=i):
                return None
            return state.propose(i, x, kind='jump')
        # swap
        current = state._w[i]
        others = np.flatnonzero(self.allowed != current)
        if others.size == 0:
            return None
        j = int(others[rng.integers(others.size)])
        return state.propose(i, state._pos[i].copy(), self.allowed[j],
                             self.labels[j], kind='swap')

    def _slide_target(self, state, i, rng):
        """A new place for atom ``i`` on the ray through it of one projection.

        Moving along the rays of one projection leaves that projection's data
        as they are: in few-angle data, misplaced atoms typically sit on the
        right ray of one projection but at the wrong depth. The new place is
        drawn along the ray (points ``sigma / 2`` apart, jittered) with
        probability proportional to the positive part of the misfit decrease
        of putting the atom there, computed from the residual without it
        (mixed with ``uniform_fraction`` uniform draws).
        """
        op = self.operator
        space = op.domain
        ray = self.rays[rng.integers(len(self.rays))]
        x = state._pos[i]
        # Range of t with x + t * ray inside the box.
        with np.errstate(divide='ignore', invalid='ignore'):
            t1 = (space.min_pt - x) / ray
            t2 = (space.max_pt - x) / ray
        lo = np.max(np.where(ray != 0, np.minimum(t1, t2), -np.inf))
        hi = np.min(np.where(ray != 0, np.maximum(t1, t2), np.inf))
        spacing = 0.5 * op.sigma
        n_pts = int(np.floor((hi - lo) / spacing))
        if n_pts < 2:
            return None
        t = lo + spacing * (np.arange(n_pts) + rng.random())
        t = t[t <= hi]
        points = x + t[:, None] * ray
        stencil = Stencil(op.frame, points, op.sigma, op.truncate, op.mode)
        idx, val = _windows(stencil)
        w = state._w[i]
        without = state.r.copy()
        np.add.at(without, state._idx[i], -w * state._val[i])
        corr = -np.einsum('ij,ij->i', without[idx], val)
        norms = np.einsum('ij,ij->i', val, val)
        gain = np.maximum(w * corr - 0.5 * w * w * norms, 0.0)
        total = gain.sum()
        if total > 0 and rng.random() >= self.uniform_fraction:
            k = min(int(np.searchsorted(np.cumsum(gain) / total,
                                        rng.random())), t.size - 1)
        else:
            k = int(rng.integers(t.size))
        return np.clip(points[k], space.min_pt, space.max_pt)

    def _draw_suspect(self, state, rng):
        """An atom to remove or relocate, preferably a badly supported one.

        With probability ``1 - uniform_fraction`` the atom is drawn with
        weights ``exp(-removal change / (E_atom / 4))`` (`removal_changes`):
        a misplaced atom (which explains only part of its data, say one
        projection of three) is tens of times more likely to be picked than
        one that explains all of its data, a spurious one more still.
        Otherwise it is uniform.
        """
        n = state.n_atoms
        if rng.random() < self.uniform_fraction:
            return int(rng.integers(n))
        sus = self.suspects
        if sus.cdf is None or sus.cdf.size != n or self._stale(sus, state):
            change = state.removal_changes()
            scale = 0.25 * state.objective.atom_energy
            weight = np.exp(-(change - change.min()) / scale)
            sus.cdf = np.cumsum(weight)
            sus.cdf /= sus.cdf[-1]
            sus.version, sus.clock = state.version, self.clock
        return min(int(np.searchsorted(sus.cdf, rng.random())), n - 1)

    def draw_kind(self, rng):
        return self.moves[min(int(np.searchsorted(self.move_cdf,
                                                   rng.random())),
                               len(self.moves) - 1)]

    def estimate_t_start(self, state, rng, steps):
        """Estimate the initial temperature (units of ``E_atom``).

        ``n_trial`` greedy moves (only improvements accepted) bring ``state``
        near a local minimum; then ``n_trial`` trial moves are drawn (none is
        applied) and the temperature is chosen so that the mean of
        ``exp(-dF / T)`` over the uphill ones is 1/2 (bisection on
        ``log T``). Without uphill trial moves, ``T = 1``.
        """
        # From an empty or random start nearly every move is downhill (in a
        # crystal every ray carries atoms, so any addition helps), which says
        # nothing about the barriers. The uphill moves out of a local minimum
        # do: descend greedily first (this is the start of the walk anyway).
        for _ in range(self.options.n_trial):
            self.clock += 1
            move = self.propose(self.draw_kind(rng), state, rng, steps)
            if move is not None and move.delta < 0:
                state.accept(move)
        state.recompute()
        deltas = []
        for _ in range(self.options.n_trial):
            move = self.propose(self.draw_kind(rng), state, rng, steps)
            if move is not None:
                deltas.append(move.delta)
        e_atom = state.objective.atom_energy
        up = np.array([d for d in deltas if d > 0]) / e_atom
        if up.size == 0:
            return 1.0
        lo, hi = np.log(up.min()) - 10, np.log(up.max()) + 10
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if np.mean(np.exp(-up / np.exp(mid))) > 0.5:
                hi = mid
            else:
                lo = mid
        return float(np.exp(0.5 * (lo + hi)))
