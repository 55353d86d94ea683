"""ADCG: the alternating descent conditional gradient method for atoms.

The modified ADCG of Ganguly, Lucka, Hupkes and Batenburg (after Boyd,
Schiebinger and Recht 2017) builds the configuration one atom at a time from
three pieces:

1. the **oracle** (`~odl_atoms.solvers.adcg.oracle.Oracle`) scores the exact
   decrease of the data misfit of adding one atom at every point of a
   coarse grid, refines the best point and adds it;
2. the **local descent** (`~odl_atoms.solvers.adcg.descent.LocalDescent`)
   moves all atoms downhill on ``F = 0.5 ||R(mu) - y||^2 + lambda V`` inside
   the box, gives each the best allowed weight, and prunes atoms whose
   removal (or merging) lowers ``F``;
3. the **driver** (`ADCG`, this module) repeats both while an iteration
   lowers ``F`` by more than a threshold, then tries escape moves
   (`odl_atoms.solvers.moves`) out of the local minimum, from each of its
   starts (`odl_atoms.solvers.starts`), keeps the lowest objective, and
   certifies the answer (`odl_atoms.solvers.certificate`).

In 3D (``batch='auto'``) the search first adds atoms in batches
(`odl_atoms.solvers.adcg.batch`). With a known noise level, alpha is lowered
while the answer misfits the data by more than the noise explains
(`odl_atoms.parameter_choice.DiscrepancyPrinciple`).
"""

import numbers
from dataclasses import dataclass

import numpy as np

from odl_atoms.parameter_choice import DISCREPANCY_FLOOR, DiscrepancyPrinciple
from odl_atoms.defaults import (DISCREPANCY_TAU, ESCAPE_STARTS,
                                 ESCAPE_STARTS_3D)
from odl_atoms.problem import check_alpha, estimate_r_min
from odl_atoms.solvers.adcg.batch import grow_batches
from odl_atoms.solvers.adcg.context import SearchContext
from odl_atoms.solvers.adcg.descent import DESCENT_METHODS, LocalDescent
from odl_atoms.solvers.adcg.oracle import Oracle
from odl_atoms.solvers.base import Reconstruction, Solver
from odl_atoms.solvers.certificate import certify
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.moves import auto_moves
from odl_atoms.solvers.options import (count, non_negative, one_of, optional,
                                       positive, set_option)
from odl_atoms.solvers.starts import DEFAULT_STARTS, GreedyStart, LatticeStart

__all__ = ('ADCG', 'auto_discrepancy', 'BATCH_ESCAPES', 'POLISH_FRACTION')

#: Escape trials (in units of ``move_budget``) when batches run (3D).
BATCH_ESCAPES = 100

#: Fraction of ``alpha`` kept when polishing the positions at the end.
POLISH_FRACTION = 1e-2


def auto_discrepancy(starts, ndim):
    """ADCG's ``discrepancy`` for ``'auto'``: `DISCREPANCY_TAU` or None.

    On (`DISCREPANCY_TAU`) when a 2D `LatticeStart` is among the starts,
    off otherwise: with the lattice starts the search is reliable, and a
    residual above the noise meant the energy had overridden the data; from
    the greedy start alone such a residual meant a failed search, which
    lowering alpha does not fix (measured in ``benchmarks/zone_axes.py
    --random`` and ``--generic``; see the benchmarks page).

    Examples
    --------
    >>> import odl_atoms as oa
    >>> auto_discrepancy(oa.lattice_starts('square'), 2)
    1.1
    >>> auto_discrepancy(DEFAULT_STARTS, 2) is None
    True
    """
    if ndim == 2 and any(isinstance(start, LatticeStart) for start in starts):
        return DISCREPANCY_TAU
    return None


@dataclass
class _Run:

    """The outcome of the search from one start."""

    config: Configuration
    history: list
    stop: str
    moves_taken: dict
    start: str = ''


@dataclass
class _Answer:

    """The searches at one alpha: every start's run and the polished best."""

    runs: list
    best: _Run
    config: Configuration
    objective: object
    refined_with: object
    data_misfit: float


@dataclass(frozen=True)
class _Options:

    """ADCG's options (see `ADCG`)."""

    grid_spacing: float = None
    tol: float = 0.5
    fine_tol: float = 0.2
    noise_factor: float = 10.0
    max_iter: int = None
    local_maxiter: int = 100
    merge_distance: float = None
    descent: str = 'scipy'
    moves: object = 'auto'
    move_budget: float = 2.0
    starts: tuple = DEFAULT_STARTS
    escape_starts: object = 'auto'
    polish: bool = True
    batch: object = 'auto'
    batch_alpha: float = 0.1
    discrepancy: object = 'auto'
    alpha_step: float = 0.3
    max_lowerings: int = 2
    seed: object = None

    def __post_init__(self):
        set_option(self, 'grid_spacing',
                   optional(positive, 'grid_spacing', self.grid_spacing))
        set_option(self, 'tol', positive('tol', self.tol))
        set_option(self, 'fine_tol', positive('fine_tol', self.fine_tol))
        set_option(self, 'noise_factor',
                   non_negative('noise_factor', self.noise_factor))
        set_option(self, 'max_iter', optional(count, 'max_iter', self.max_iter))
        set_option(self, 'local_maxiter',
                   count('local_maxiter', self.local_maxiter))
        set_option(self, 'merge_distance', optional(
            non_negative, 'merge_distance', self.merge_distance))
        one_of('descent', self.descent, DESCENT_METHODS)
        set_option(self, 'move_budget',
                   non_negative('move_budget', self.move_budget))
        set_option(self, 'polish', bool(self.polish))
        set_option(self, 'batch_alpha', check_alpha(self.batch_alpha,
                                                    'batch_alpha'))
        if not (self.batch is None or self.batch == 'auto'
                or (isinstance(self.batch, numbers.Integral)
                    and not isinstance(self.batch, bool) and self.batch >= 1)):
            raise ValueError(f"`batch` must be 'auto', None or an int >= 1, "
                             f"got {self.batch!r}")
        starts = tuple(self.starts)
        if not starts:
            raise ValueError('`starts` needs at least one start, e.g. '
                             '(GreedyStart(),)')
        for start in starts:
            if not (hasattr(start, 'configuration') and hasattr(start, 'name')):
                raise TypeError(
                    f'a start needs a `name` and a `configuration(...)` method '
                    f'(see odl_atoms.solvers.starts), got {start!r}')
        set_option(self, 'starts', starts)
        if not (self.escape_starts is None or self.escape_starts == 'auto'
                or (isinstance(self.escape_starts, numbers.Integral)
                    and not isinstance(self.escape_starts, bool)
                    and self.escape_starts >= 1)):
            raise ValueError(f"`escape_starts` must be 'auto', None or an int "
                             f">= 1, got {self.escape_starts!r}")
        if isinstance(self.moves, str):
            if self.moves != 'auto':
                raise ValueError(f"`moves` must be 'auto' or a sequence of "
                                 f"moves, got {self.moves!r}")
        else:
            moves = tuple(self.moves or ())
            for move in moves:
                if not (hasattr(move, 'trials') and hasattr(move, 'name')):
                    raise TypeError(
                        f'a move needs a `name` and a `trials(...)` method '
                        f'(see odl_atoms.solvers.moves), got {move!r}')
                # A move that needs something of the search (RefitLattice:
                # a lattice start) says so now, not minutes into a solve.
                if hasattr(move, 'check'):
                    move.check(starts)
            set_option(self, 'moves', moves)
        if isinstance(self.discrepancy, str):
            if self.discrepancy != 'auto':
                raise ValueError(f"`discrepancy` must be 'auto', None or a "
                                 f"number tau >= 1, got {self.discrepancy!r}")
        # The principle checks tau, the step and the number of lowerings.
        DiscrepancyPrinciple(
            DISCREPANCY_TAU if self.discrepancy in (None, 'auto')
            else self.discrepancy, self.alpha_step, self.max_lowerings)
        if self.discrepancy not in (None, 'auto'):
            set_option(self, 'discrepancy', float(self.discrepancy))
        set_option(self, 'alpha_step', float(self.alpha_step))


class ADCG(Solver):

    """Alternating descent conditional gradient with a potential energy.

    The problem (data, atom model, energy weight, potential, allowed
    weights, noise level) is a `~odl_atoms.problem.Problem`; the options
    here are the method's.

    Parameters
    ----------
    grid_spacing : float, optional
        Spacing of the oracle's coarse candidate grid (angstrom). Default:
        the atom width ``sigma`` in 2D, ``2 sigma`` in 3D (a sigma grid has
        ``(box / sigma)^3`` points, and candidates are refined to the local
        maximum of the correlation anyway).
    tol : float, optional
        Stop when an iteration lowers the objective by less than ``tol`` times
        the data energy ``E_atom`` of one atom (default 0.5: adding a missing
        atom lowers it by about one ``E_atom``).
    fine_tol : float, optional
        Second stage: from the configuration found with ``tol``, atoms are
        added (and escapes tried) while they lower the objective by more than
        ``fine_tol`` atom energies (default 0.2): atoms whose neighbours had
        partly absorbed their signal come once the skeleton is right.
    noise_factor : float, optional
        With a known noise level, the stopping threshold is at least
        ``noise_factor * (d + 1) * 0.5 * c * noise_std**2`` (``c`` the
        projection space's cell weight): the decrease that fitting ``d + 1``
        parameters to pure noise gives, with this safety factor (default 10).
    max_iter : int, optional
        Guard on the number of iterations (default twice the problem's
        ``max_atoms``).
    local_maxiter : int, optional
        Iteration limit of each local minimisation (default 100).
    merge_distance : float, optional
        Atoms closer than this are candidates for merging (default
        ``0.5 * sigma``).
    descent : {'scipy', 'odl'}, optional
        The local minimiser: SciPy's L-BFGS-B (default) or ODL's
        ``bfgs_method`` with a backtracking line search (`odl_atoms.descent`).
    moves : sequence of moves or 'auto', optional
        Escape moves tried, in order, when no addition pays off any more
        (`odl_atoms.solvers.moves`). ``'auto'`` (default, `auto_moves`)
        depends on the starts, the dimension and the number of angles;
        ``()`` gives the plain ADCG of the paper.
    move_budget : float, optional
        Total number of escape trials, in units of ``max_atoms`` (default 2);
        with batch additions at most ``move_budget * BATCH_ESCAPES`` (200).
    starts : sequence of starts, optional
        Where the search starts (`odl_atoms.solvers.starts`). Every start
        runs the search and the lowest objective wins; the others are kept
        for the certificate. Default ``(GreedyStart(),)``: the ``initial``
        measure of `solve`, or no atom (the paper's ADCG). For a crystal of
        a known lattice, `lattice_starts` gives the recommended set.
    escape_starts : 'auto', int or None, optional
        With several starts, every start's search first runs without the
        escape moves, and only the ``escape_starts`` best of them (lowest
        objective) continue with the escapes. ``'auto'`` (default):
        `~odl_atoms.defaults.ESCAPE_STARTS` (2) in 2D, where the best start
        before the escapes was often not the one that ends best, and
        `~odl_atoms.defaults.ESCAPE_STARTS_3D` (1) in 3D, where the escapes
        are most of the time. ``None``: every start runs the full search.
    polish : bool, optional
        After the search (with energy), refine the positions with
        `POLISH_FRACTION` of the energy weight, so that the potential's
        preference for its own lattice does not bias the positions while its
        core still keeps atoms apart. Default True.
    batch : 'auto', int or None, optional
        Batch additions (`odl_atoms.solvers.adcg.batch`): up to this many
        atoms added per iteration, then the one-at-a-time loop. ``'auto'``
        (default): in 3D a quarter of the atoms the data hold (when that is
        at least 2); in 2D none. ``None`` or 1: no batches.
    batch_alpha : float, optional
        Energy weight during the batch additions (default 0.1, used only
        when batches run and there is a potential): in 3D the energy is
        what sorts dozens of new atoms onto lattice sites at once.
    discrepancy : float, 'auto' or None, optional
        Morozov's ``tau`` of the sequential discrepancy principle
        (`~odl_atoms.parameter_choice.DiscrepancyPrinciple`, with
        `~odl_atoms.parameter_choice.DISCREPANCY_FLOOR`); None switches it
        off. ``'auto'`` (default, `auto_discrepancy`): 1.1 when a 2D
        `LatticeStart` is among the starts, else off. It applies when the
        problem's noise level is given (0 for noise-free data) and there is
        an energy: while the answer's data misfit exceeds the bound, alpha
        is multiplied by ``alpha_step`` and the search runs again from every
        start, the answer among them. ``result.info['alpha']``,
        ``info['lowered_alpha']`` and ``info['discrepancy_bound']`` (in
        ``E_atom``) record it.
    alpha_step : float, optional
        Factor in (0, 1) by which alpha is lowered (default 0.3).
    max_lowerings : int, optional
        Most times alpha is lowered (default 2).
    seed : int or Generator, optional
        Seeds the escape moves that draw random numbers (`Perturb`); ADCG
        with its default moves is deterministic.

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
    >>> result = ADCG().solve(Problem(op, op(truth), alpha=0))
    >>> result.n_atoms
    3
    >>> np.abs(np.sort(result.measure.positions, 0)
    ...        - np.sort(truth.positions, 0)).max() < 1e-4
    True
    """

    Options = _Options

    # --- Settings resolved for a problem

    def resolved_grid_spacing(self, problem):
        """The candidate grid spacing for ``problem`` (see ``grid_spacing``)."""
        if self.options.grid_spacing is not None:
            return self.options.grid_spacing
        return problem.sigma * (1 if problem.ndim == 2 else 2)

    def resolved_moves(self, problem):
        """The escape moves for ``problem`` (``'auto'``: `auto_moves`)."""
        if isinstance(self.options.moves, str):
            return auto_moves(self.options.starts, problem.ndim,
                              len(problem.operator.geometry.angles))
        return self.options.moves

    def principle(self, problem):
        """The discrepancy principle for ``problem``, or None when off."""
        tau = self.options.discrepancy
        if isinstance(tau, str):
            tau = auto_discrepancy(self.options.starts, problem.ndim)
        if tau is None:
            return None
        return DiscrepancyPrinciple(tau, self.options.alpha_step,
                                    self.options.max_lowerings,
                                    floor=DISCREPANCY_FLOOR)

    def discrepancy_bound(self, problem):
        """Largest data misfit the discrepancy principle accepts, or None
        (principle off, noise level unknown, or no energy)."""
        principle = self.principle(problem)
        return None if principle is None else principle.bound(problem)

    def batch_size(self, problem):
        """Largest number of atoms added at once (1: no batches).

        ``'auto'``: a quarter of the expected atom count in 3D (so that a
        particle is built in a handful of batches, each costing about one
        pass over the atoms), one in 2D (2D results are exactly those of one
        addition per iteration).
        """
        batch = self.options.batch
        if batch is None:
            return 1
        if isinstance(batch, numbers.Integral):
            return int(batch)
        if problem.ndim != 3:
            return 1
        return max(1, int(np.ceil(0.25 * problem.expected_atoms())))

    def stop_threshold(self, objective, tol=None, noise_std=None):
        """Smallest objective decrease that counts as progress (see ``tol``
        and ``noise_factor``)."""
        tol = self.options.tol if tol is None else tol
        threshold = tol * objective.atom_energy
        if noise_std:
            d = objective.operator.domain.ndim
            noise = (0.5 * objective.inner_weight * noise_std ** 2
                     * (d + 1) * self.options.noise_factor)
            threshold = max(threshold, noise)
        return threshold

    def context(self, problem, objective=None):
        """The `SearchContext` (objective, oracle, local descent) of a search
        of ``problem``; ``objective`` defaults to the problem's."""
        op = problem.operator
        oracle = Oracle(op, problem.allowed, problem.labels,
                        self.resolved_grid_spacing(problem))
        merge = self.options.merge_distance
        descent = LocalDescent(
            op.domain, problem.allowed, problem.labels,
            merge if merge is not None else 0.5 * op.sigma,
            self.options.local_maxiter, self.options.descent)
        if objective is None:
            objective = problem.objective()
        return SearchContext(objective, oracle, descent, self.options.starts)

    # --- Driver

    def _solve(self, problem, initial, callback, rng):
        info = {}
        d = problem.ndim
        if initial is None:
            begin = Configuration(np.zeros((0, d)), np.zeros(0),
                                  np.zeros(0, dtype=problem.labels.dtype))
        else:
            begin = Configuration(*problem.arrays(initial))
        moves = self.resolved_moves(problem)
        for move in moves:
            # A move that needs something of the search (RefitLattice: 2D
            # atoms) says so before any work.
            if hasattr(move, 'check'):
                move.check(self.options.starts, problem.ndim)
        base = self.context(problem, problem.objective(alpha=0))
        if problem.alpha > 0 and isinstance(problem.potential, str):
            first = self._run(problem, base, moves, begin, None, rng)
            r_min = estimate_r_min(first.config.positions, problem.sigma)
            problem = problem.with_potential(r_min)
            info['estimated_r_min'] = r_min
        elif problem.alpha == 0 or isinstance(problem.potential, str):
            # No energy: no potential either (the moves and starts then
            # work in units of sigma).
            problem = problem.with_potential(None)

        def run(current, previous):
            objective = current.objective()
            context = base.with_objective(objective)
            if previous is None:
                runs = self._search(current, context, moves, begin, callback,
                                    rng)
            else:
                runs = self._search(current, context, moves,
                                    previous.best.config, callback, rng,
                                    answer=True)
            best = min(runs, key=lambda r: r.config.value)
            config, refined_with = self._polish(context, best.config, info)
            misfit = objective.data_misfit(config.positions, config.weights)
            return _Answer(runs, best, config, objective, refined_with, misfit)

        principle = self.principle(problem)
        if principle is None:
            answer, bound, lowered = run(problem, None), None, []
        else:
            answer, problem, lowered, bound = principle.search(run, problem)
        objective = answer.objective
        unit = objective.atom_energy
        best, config = answer.best, answer.config
        info['alpha'] = objective.alpha
        info['lowered_alpha'] = [
            dict(alpha=step['alpha'], data_misfit=step['data_misfit'] / unit,
                 bound=step['bound'] / unit) for step in lowered]
        info['discrepancy_bound'] = None if bound is None else bound / unit
        info['moves_taken'] = dict(best.moves_taken)
        info['starts'] = [
            dict(start=run.start, objective=run.config.value,
                 n_atoms=run.config.n_atoms, stop=run.stop,
                 positions=run.config.positions) for run in answer.runs]
        info['best_start'] = best.start
        measure = problem.measure(config.positions, config.weights,
                                  config.labels)
        potential = problem.potential
        info.update(stop_reason=best.stop, atom_energy=unit,
                    energy_weight=objective.energy_weight, potential=potential)
        info['certificate'] = certify(
            base.with_objective(objective), measure,
            addition_tol=self._addition_tol(objective, problem.noise_std),
            noise_std=problem.noise_std, refined_with=answer.refined_with,
            starts=info['starts'], start=best.start,
            search_value=best.config.value, intensity=problem.intensity)
        energy = objective.energy(config.positions)
        return Reconstruction(measure=measure, objective=best.history,
                              n_iterations=len(best.history),
                              data_misfit=answer.data_misfit,
                              energy=energy if potential is not None else None,
                              info=info)

    def _addition_tol(self, objective, noise_std):
        """The tolerance the certificate holds additions to (absolute)."""
        return self.stop_threshold(
            objective, min(self.options.fine_tol, self.options.tol), noise_std)

    def certify(self, problem, measure, **kwargs):
        """Return the `Certificate` of ``measure`` for ``problem``.

        `solve` stores the answer's in ``result.info['certificate']``; this
        certifies any configuration (another solver's, say). An ``'auto'``
        potential counts as none here. Keyword arguments go to
        `odl_atoms.solvers.certificate.certify`.
        """
        if isinstance(problem.potential, str):
            problem = problem.with_potential(None)
        objective = kwargs.pop('objective', None) or problem.objective()
        kwargs.setdefault('addition_tol', self._addition_tol(
            objective, problem.noise_std))
        kwargs.setdefault('noise_std', problem.noise_std)
        kwargs.setdefault('intensity', problem.intensity)
        return certify(self.context(problem, objective), measure, **kwargs)

    def _polish(self, context, config, info):
        """Return the polished answer and the objective it was refined with.

        The energy chose the arrangement; the positions are then refined
        with `POLISH_FRACTION` of its weight, so that a lattice the potential
        does not prefer (a square one, a strained one) is not biased, while
        its repulsive core still keeps atoms apart.
        """
        objective = context.objective
        if not (self.options.polish and objective.energy_weight
                and config.n_atoms):
            return config, objective
        polish_objective = objective.with_alpha(POLISH_FRACTION * objective.alpha)
        start = config.copy()
        start.value = polish_objective(start.positions, start.weights)
        polished = context.descent.move(polish_objective, start)
        shift = np.linalg.norm(polished.positions - config.positions, axis=1)
        info['polish_max_shift'] = float(shift.max())
        return (Configuration(polished.positions, config.weights, config.labels),
                polish_objective)

    def _search(self, problem, context, moves, begin, callback, rng,
                answer=False):
        """Run the search from every start; return the runs (`_Run`).

        ``begin`` is the configuration the greedy start continues: the
        ``initial`` measure of `solve`, or with ``answer=True`` an earlier
        answer, which is then continued even without a greedy start. Every
        start runs the full search; the lowest objective wins (the
        objective, not the data fit alone: from 2-3 angles many wrong
        arrangements fit the data to the noise level).
        """
        starts = self.options.starts
        if answer and not any(isinstance(start, GreedyStart)
                              for start in starts):
            starts = starts + (GreedyStart(),)
        escape_starts = self.options.escape_starts
        if escape_starts == 'auto':
            escape_starts = (ESCAPE_STARTS if problem.ndim == 2
                             else ESCAPE_STARTS_3D)
        screen = (escape_starts is not None and moves
                  and len(starts) > escape_starts)
        # Scratch space the starts and moves of this search share (lattice
        # data computed by one serve the next); dropped afterwards.
        context = SearchContext(context.objective, context.oracle,
                                context.descent, context.starts, scratch={})
        runs = []
        for start in starts:
            if runs and self.out_of_time():
                break
            config = start.configuration(context, begin.copy())
            runs.append(self._run(problem, context, moves, config, callback,
                                  rng, escapes=not screen))
            runs[-1].start = start.name
        if screen:
            # The escape moves cost most of a search; they run from the
            # best starts only, continuing those searches.
            order = np.argsort([run.config.value for run in runs],
                               kind='stable')
            for i in order[:escape_starts]:
                if self.out_of_time():
                    break
                screened = runs[i]
                more = self._run(problem, context, moves, screened.config,
                                 callback, rng)
                more.history = screened.history + more.history
                more.start = screened.start
                runs[i] = more
        return runs

    def _run(self, problem, context, moves, config, callback, rng,
             escapes=True):
        """The search from one start: additions, local moves, escapes."""
        rng = np.random.default_rng(rng)
        objective = context.objective
        options = self.options
        config.value = objective(config.positions, config.weights)
        max_atoms = problem.default_max_atoms()
        max_iter = options.max_iter or 2 * max_atoms
        history = []
        moves_taken = {move.name: 0 for move in moves}

        def report(new):
            history.append(new.value)
            if callback is not None:
                callback(problem.measure(new.positions, new.weights,
                                         new.labels))

        stop = 'max_iter'
        # Two stages: first the skeleton (atoms that explain at least
        # ``tol`` of an atom's data energy), then, from there, the atoms the
        # skeleton's neighbours had partly absorbed (``fine_tol``). Adding
        # those early lets partial fits in wrong places block the escapes.
        batch_size = self.batch_size(problem)
        for tol in sorted({options.tol, min(options.fine_tol, options.tol)},
                          reverse=True):
            threshold = self.stop_threshold(objective, tol, problem.noise_std)
            budget = int(options.move_budget * max_atoms)
            if batch_size > 1:
                # At scale, escape trials (each a grid scoring, some a
                # regional regrowth) would cost O(n) each and O(n) of them
                # would run: cap them.
                budget = min(budget, int(options.move_budget * BATCH_ESCAPES))
            config = grow_batches(context, config, threshold, batch_size,
                                  options.batch_alpha, max_atoms, max_iter,
                                  report, history)
            while len(history) < max_iter:
                if self.out_of_time():
                    stop = 'time_limit'
                    break
                candidate = None
                if config.n_atoms >= max_atoms:
                    stop = 'max_atoms'
                else:
                    # A candidate may pay off only after the local move:
                    # neighbours that had moved in to absorb a missing
                    # atom's signal (around an interstitial, say) make its
                    # immediate gain negative. Try the best one anyway.
                    candidate = context.add_atom(
                        config, min_gain=-options.tol * objective.atom_energy)
                    stop = 'no_candidate' if candidate is None else 'converged'
                if candidate is not None:
                    candidate = context.local_move(candidate)
                    candidate = context.choose_weights(candidate)
                    candidate = context.prune(candidate)
                    if config.value - candidate.value > threshold:
                        config = candidate
                        report(config)
                        continue
                # No addition helps: try to escape the local minimum.
                if stop == 'max_atoms' or not escapes:
                    break
                moved, name, budget = self.escape(context, moves, config,
                                                  threshold, budget, rng)
                if moved is None:
                    if budget <= 0:
                        stop = 'move_budget'
                    if self.out_of_time():
                        stop = 'time_limit'
                    break
                moves_taken[name] += 1
                config = moved
                report(config)
        return _Run(config, history, stop, moves_taken)

    def escape(self, context, moves, config, threshold, budget, rng):
        """Try the escape moves in turn; return the first improvement.

        Returns
        -------
        config : `Configuration` or None
        name : str or None
            Name of the move that succeeded.
        budget : int
            Remaining number of trials.
        """
        min_gain = 1e-3 * context.objective.atom_energy
        for move in moves:
            if budget <= 0:
                break
            for trial in move.trials(context, config, threshold, rng):
                budget -= 1
                if trial is not None and config.value - trial.value > min_gain:
                    return trial, move.name, budget
                if budget <= 0 or self.out_of_time():
                    break
        return None, None, budget
