"""ADCG: the alternating descent conditional gradient method for atoms.

The modified ADCG of Ganguly, Lucka, Hupkes and Batenburg (after Boyd,
Schiebinger and Recht 2017) builds the configuration one atom at a time. Every
iteration

1. **scores candidates**: the exact decrease of the data misfit when one atom is
   added at ``x``, ``w <g_x, y - R(mu)> - 0.5 w^2 ||g_x||^2`` (``g_x`` the
   data of a unit atom at ``x``), evaluated on a coarse grid over the box;
2. **adds** the best one, after refining its position by a local maximisation
   of the correlation ``<g_x, y - R(mu)>``;
3. **moves** all atoms locally: bound-constrained L-BFGS-B (SciPy) on
   ``F = 0.5 ||R(mu) - y||^2 + lambda V`` inside the box; with several allowed
   weights (species), each atom then takes the weight that lowers ``F`` most;
4. **prunes**: removes atoms whose removal lowers ``F`` and merges atoms closer
   than ``merge_distance`` when that lowers ``F``.

It stops when an iteration no longer lowers ``F`` by more than ``tol`` atom
energies (or than the noise could explain; see `ADCG`), keeping the last
configuration that did.

Each step is a method (`ADCG.score_candidates`, `ADCG.refine_candidate`,
`ADCG.add_atom`, `ADCG.local_move`, `ADCG.choose_weights`, `ADCG.prune`) that
subclasses can replace.

In 3D (``batch='auto'``) the search first adds atoms in batches
(`ADCG.grow_batches`: `ADCG.add_atoms` picks many well-separated grid
maxima by their joint gain, `ADCG.block_move` relaxes them with their
neighbours only), with a stronger energy weight ``batch_alpha`` that sorts
them onto lattice sites, then continues one atom at a time as above. One
addition per iteration costs ``O(n^2)`` or more in all; the batches build a
particle in a handful of ``O(n)`` passes (``benchmarks/scale.py`` measures
the growth).
"""

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.spatial import cKDTree

from odl_atoms.defaults import DEFAULT_ALPHA, DISCREPANCY_TAU
from odl_atoms.objective import AtomObjective
from odl_atoms.weights import allowed_weights
from odl_atoms.solvers.base import Reconstruction, Solver
from odl_atoms.solvers.batch import BatchAdditions, _AttractionField
from odl_atoms.solvers.common import (check_alpha, default_potential,
                                      estimate_r_min, expected_atoms,
                                      parse_potential, scoring_grid)
from odl_atoms.solvers.certificate import certify
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.moves import auto_moves
from odl_atoms.solvers.starts import DEFAULT_STARTS, GreedyStart

__all__ = ('ADCG', 'DEFAULT_ALPHA', 'DISCREPANCY_TAU', 'DISCREPANCY_FLOOR',
           'auto_discrepancy')

#: Escape trials (in units of ``move_budget``) when batches run (3D).
BATCH_ESCAPES = 100

#: Fraction of ``alpha`` kept when polishing the positions at the end.
POLISH_FRACTION = 1e-2

#: Smallest noise norm the discrepancy principle assumes, relative to the
#: data norm: noise-free data still leave the residual the energy's bias
#: causes (measured on exact 7 x 7 reconstructions without noise: 0.2 % of
#: the data norm; wrong ones the energy preferred: 0.9-1.1 %).
DISCREPANCY_FLOOR = 5e-3


def auto_discrepancy(starts, ndim):
    """ADCG's ``discrepancy`` for ``'auto'``: `DISCREPANCY_TAU` or None.

    On (`DISCREPANCY_TAU`) when a 2D `LatticeStart` is among the starts,
    off otherwise. Measured on the 7 x 7 phantoms at twelve generic and
    random 3-angle sets, noise none and 1 % (``benchmarks/zone_axes.py
    --random`` and ``--generic``): with the lattice starts the search is
    reliable, and a residual above the noise meant the energy had
    overridden the data (the interstitial as built): lowering alpha made
    2 such runs exact and 2 others closer, and touched no exact run. From
    the greedy start alone every run there ended with such a residual
    because the search had failed, and lowering alpha fixed none of the
    48 while tripling the time.

    Examples
    --------
    >>> import odl_atoms as oa
    >>> auto_discrepancy(oa.lattice_starts('square'), 2)
    1.1
    >>> auto_discrepancy(DEFAULT_STARTS, 2) is None
    True
    """
    from odl_atoms.solvers.starts import LatticeStart

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


class ADCG(BatchAdditions, Solver):

    """Alternating descent conditional gradient with a potential energy.

    Parameters
    ----------
    operator : `GaussianRayTransform`
    alpha : float, optional
        Dimensionless energy weight: ``lambda = alpha * E_atom / epsilon`` with
        ``E_atom`` the data energy of one atom of the smallest allowed weight
        (`odl_atoms.objective`). ``0`` reconstructs from the data alone.
    potential : `LennardJones`, float, 'auto' or None, optional
        The pair potential. A float is the equilibrium distance ``r_min`` (the
        lattice's nearest-neighbour distance, angstrom) of a Lennard-Jones
        potential with a smooth cut-off. ``'auto'`` (default) estimates it
        as the median nearest-neighbour distance of an energy-free
        reconstruction first, then reconstructs with energy. ``None``: no
        energy.
    weights : float, sequence or mapping, optional
        Allowed atom weights: one number (a single species, default 1), a
        sequence, or a mapping ``{label: weight}`` for several species.
    grid_spacing : float, optional
        Spacing of the coarse candidate grid (angstrom). Default: the atom
        width ``sigma`` in 2D, ``2 sigma`` in 3D.
    tol : float, optional
        Stop when an iteration lowers the objective by less than ``tol`` times
        the data energy ``E_atom`` of one atom (default 0.5: adding a missing
        atom lowers it by about one ``E_atom``; an atom that explains less than
        half of its own data is not worth its place).
    fine_tol : float, optional
        Second stage: from the configuration found with ``tol``, atoms are
        added (and escapes tried) while they lower the objective by more than
        ``fine_tol`` atom energies (default 0.2). Atoms close to others lower
        it by less than one ``E_atom`` when their neighbours had partly
        absorbed their signal; adding them only once the skeleton is right
        keeps partial fits in wrong places from blocking the escape moves.
    noise_std : float, optional
        Standard deviation of the data noise, if known. The stopping threshold
        is then at least ``noise_factor * (d + 1) * 0.5 * c * noise_std**2``
        (``c`` the projection space's cell weight): the decrease that fitting
        ``d + 1`` parameters to pure noise gives, with a safety factor.
    noise_factor : float, optional
        Safety factor of the noise term (default 10).
    max_atoms : int, optional
        Guard on the number of atoms. Default: twice the total weight in the
        data divided by the smallest allowed weight, plus 10.
    max_iter : int, optional
        Guard on the number of iterations (default ``2 * max_atoms``).
    local_maxiter : int, optional
        Iteration limit of each L-BFGS-B local move.
    merge_distance : float, optional
        Atoms closer than this are candidates for merging (default
        ``0.5 * sigma``).
    moves : sequence of moves or 'auto', optional
        Escape moves tried, in order, when no addition pays off any more
        (`odl_atoms.solvers.moves`). ``'auto'`` (default, `auto_moves`):
        ``(Relocate(), Regrow())`` from a single start, ``(Relocate(),)``
        with several (`MULTI_START_MOVES`: there Regrow changed no answer
        on the benchmarks and cost half the time), and when a 2D
        `LatticeStart` is among the starts `RefitLattice` first and
        `RegrowColumn` last, with 3 or more angles after `Stiffen`;
        ``()`` gives the plain ADCG of the paper.
    move_budget : float, optional
        Total number of escape trials, in units of ``max_atoms`` (default 2);
        with batch additions at most ``move_budget * BATCH_ESCAPES`` (200).
    starts : sequence of starts, optional
        Where the search starts (`odl_atoms.solvers.starts`). Every start
        runs the search (see ``escape_starts``) and the lowest objective
        wins; the others are kept for the certificate. For a crystal of a
        known lattice, `lattice_starts` gives the recommended set. Default
        ``(GreedyStart(),)``: the
        ``initial`` measure of `solve`, or no atom (the paper's ADCG). Add
        ``LatticeStart('square')`` (or the crystal's lattice) when the
        angles are not zone axes: from 2-3 generic angles greedy addition
        ends in arrangements that fit the data as well as the truth does.
    escape_starts : int or None, optional
        With several starts, every start's search first runs without the
        escape moves, and only the ``escape_starts`` best of them (lowest
        objective) continue with the escapes (default 1). ``None``: every
        start runs the full search. The escapes cost most of a search
        (measured with four starts on a 7 x 7 lattice: 21 of 28 s);
        ``benchmarks/global_search.py`` compares both (ablation
        ``escapes from every start``).
    polish : bool, optional
        After the search (with energy), refine the positions with 1 % of the
        energy weight (a local move from the found arrangement), so that the
        potential's preference for its own lattice does not bias the
        positions while its core still keeps atoms apart. Default True.
    batch : 'auto', int or None, optional
        Batch additions (`add_atoms`): up to this many atoms are added in one
        iteration, chosen from the scored grid by non-maximum suppression and
        by their joint gain, then relaxed together with their neighbours only
        (`block_move`); one full local move follows once no batch pays off,
        and the usual one-at-a-time loop (with escapes) finishes the job.
        ``'auto'`` (default): in 3D, a quarter of the atoms the data hold
        (`odl_atoms.solvers.common.expected_atoms`), when that is at least
        2; in 2D no batches, so 2D results are exactly those of one addition
        per iteration. ``None`` or 1: no batches. See `batch_size`.
    batch_alpha : float, optional
        Energy weight during the batch additions (default 0.1, used only
        when batches run and there is a potential). The batches build the
        whole particle at once, and in 3D the Lennard-Jones energy (whose
        ground state is the close-packed lattice) is what sorts dozens of
        new atoms onto sites: measured on a 343-atom octahedron from 5
        tilts in +-70 degrees at 1 % noise, F1 after the batches was 0.98
        with 0.1, 0.52 with ``alpha = 1e-3``, 0.43 with 0.01, 0.84 with
        0.3 (and with 1 surface sites the data do not support fill up).
        Afterwards the search continues with ``alpha``, which removes the
        atoms only the stronger energy had justified (vacancies).
    discrepancy : float, 'auto' or None, optional
        Morozov's ``tau`` of the sequential discrepancy principle; None
        switches it off. ``'auto'`` (default, `auto_discrepancy`):
        `DISCREPANCY_TAU` (1.1) when a 2D `LatticeStart` is among the
        starts, else off. It applies when ``noise_std`` is given (0 for
        noise-free data) and there is an energy: if the answer's data
        residual exceeds ``tau`` times the
        expected noise norm (at least `DISCREPANCY_FLOOR` of the data norm),
        the energy has overridden the data. Alpha is then multiplied by
        ``alpha_step`` and the search runs again from every start, the
        answer among them, up to ``max_lowerings`` times. The alpha used is
        in ``result.info['alpha']``, the steps (alpha, data misfit and bound
        in ``E_atom``) in ``info['lowered_alpha']``, the final bound in
        ``info['discrepancy_bound']``. Why 'auto' is what it is:
        `auto_discrepancy`.
    alpha_step : float, optional
        Factor in (0, 1) by which alpha is lowered (default 0.3).
    max_lowerings : int, optional
        Most times alpha is lowered (default 2; 0 is the same as
        ``discrepancy=None``).
    seed : int or Generator, optional
        Seeds the escape moves that draw random numbers (`Perturb`); ADCG
        with its default moves is deterministic.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import SparseMeasureSpace, GaussianRayTransform
    >>> space = SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.3)
    >>> truth = space.element([[-1.0, 0.5], [1.2, -0.7], [0.3, 1.9]])
    >>> result = ADCG(op, alpha=0).solve(op(truth))
    >>> result.n_atoms
    3
    >>> np.abs(np.sort(result.measure.positions, 0)
    ...        - np.sort(truth.positions, 0)).max() < 1e-4
    True
    """

    def __init__(self, operator, alpha=DEFAULT_ALPHA, potential='auto',
                 weights=1.0, grid_spacing=None, tol=0.5, fine_tol=0.2,
                 noise_std=None,
                 noise_factor=10.0, max_atoms=None, max_iter=None,
                 local_maxiter=100, merge_distance=None, moves='auto',
                 move_budget=2.0, polish=True, starts=DEFAULT_STARTS,
                 escape_starts=1, batch='auto', batch_alpha=0.1,
                 discrepancy='auto', alpha_step=0.3, max_lowerings=2,
                 seed=None):
        super().__init__(operator, seed=seed)
        self._auto_discrepancy = isinstance(discrepancy, str)
        if self._auto_discrepancy:
            if discrepancy != 'auto':
                raise ValueError(f"`discrepancy` must be 'auto', None or a "
                                 f"number tau >= 1, got {discrepancy!r}")
            discrepancy = auto_discrepancy(starts, operator.domain.ndim)
        if discrepancy is not None:
            discrepancy = float(discrepancy)
            if not discrepancy >= 1:
                raise ValueError(f'`discrepancy` (tau) must be None or >= 1, '
                                 f'got {discrepancy!r}')
        self.discrepancy = discrepancy
        self.alpha_step = float(alpha_step)
        if not 0 < self.alpha_step < 1:
            raise ValueError(f'`alpha_step` must lie in (0, 1), got '
                             f'{alpha_step!r}')
        if not (isinstance(max_lowerings, numbers.Integral)
                and max_lowerings >= 0):
            raise ValueError(f'`max_lowerings` must be an int >= 0, got '
                             f'{max_lowerings!r}')
        self.max_lowerings = int(max_lowerings)
        if not (batch is None or (isinstance(batch, str) and batch == 'auto')
                or (isinstance(batch, numbers.Integral) and batch >= 1)):
            raise ValueError(f"`batch` must be 'auto', None or an int >= 1, "
                             f"got {batch!r}")
        self.batch = batch
        self.batch_alpha = check_alpha(batch_alpha)
        self.starts = tuple(starts)
        if not (escape_starts is None or (
                isinstance(escape_starts, numbers.Integral)
                and escape_starts >= 1)):
            raise ValueError(f'`escape_starts` must be None or an int >= 1, '
                             f'got {escape_starts!r}')
        self.escape_starts = escape_starts
        if not self.starts:
            raise ValueError('`starts` needs at least one start, e.g. '
                             '(GreedyStart(),)')
        for start in self.starts:
            if not (hasattr(start, 'configuration') and hasattr(start, 'name')):
                raise TypeError(
                    f'a start needs a `name` and a `configuration(...)` method '
                    f'(see odl_atoms.solvers.starts), got {start!r}')
        self.alpha = check_alpha(alpha)
        potential = parse_potential(operator, potential)
        self.polish = bool(polish)
        self._auto_moves = isinstance(moves, str)
        if self._auto_moves:
            if moves != 'auto':
                raise ValueError(f"`moves` must be 'auto' or a sequence of "
                                 f"moves, got {moves!r}")
            moves = auto_moves(self.starts, operator.domain.ndim,
                               len(operator.geometry.angles))
        self.moves = tuple(moves or ())
        for move in self.moves:
            if not (hasattr(move, 'trials') and hasattr(move, 'name')):
                raise TypeError(
                    f'a move needs a `name` and a `trials(...)` method (see '
                    f'odl_atoms.solvers.moves), got {move!r}')
            # A move that needs something of the solver (RefitLattice: a
            # lattice start) says so now, not minutes into a solve.
            if hasattr(move, 'check'):
                move.check(self)
        self.move_budget = float(move_budget)
        self.potential = potential
        self.labels, self.allowed = allowed_weights(weights)
        self.weights = weights
        # Coarse grid + local refinement: sigma in 2D; 2 sigma in 3D, where a
        # sigma grid has (box / sigma)^3 points and scoring it dominates
        # (measured: same atoms, 7x faster on a 19-atom octahedron).
        if grid_spacing is None:
            grid_spacing = operator.sigma * (1 if operator.domain.ndim == 2 else 2)
        self.grid_spacing = float(grid_spacing)
        if not self.grid_spacing > 0:
            raise ValueError(f'`grid_spacing` must be positive, got {grid_spacing}')
        self.tol = float(tol)
        self.fine_tol = float(fine_tol)
        self.noise_std = None if noise_std is None else float(noise_std)
        self.noise_factor = float(noise_factor)
        self.max_atoms = max_atoms
        self.max_iter = max_iter
        self.local_maxiter = int(local_maxiter)
        self.merge_distance = float(merge_distance if merge_distance is not None
                                    else 0.5 * operator.sigma)

    def lennard_jones(self, r_min):
        """Return the default potential with equilibrium distance ``r_min``.

        See `odl_atoms.solvers.common.default_potential`.
        """
        return default_potential(self.operator, r_min)

    # --- Driver

    def _solve(self, data, initial, callback, rng):
        info = {}
        potential = self.potential
        alpha = self.alpha
        d = self.operator.domain.ndim
        if initial is None:
            begin = Configuration(np.zeros((0, d)), np.zeros(0),
                                  np.zeros(0, dtype=self.labels.dtype))
        else:
            begin = Configuration(np.array(initial.positions),
                                  np.array(initial.weights),
                                  np.array(initial.species))
        if alpha > 0 and potential == 'auto':
            first = self._run(AtomObjective(
                self.operator, data, reference_weight=self.allowed.min()),
                begin, None, rng)
            r_min = estimate_r_min(first.config.positions, self.operator.sigma)
            potential = None if r_min is None else self.lennard_jones(r_min)
            info['estimated_r_min'] = r_min
        elif alpha == 0 or potential == 'auto':
            potential = None
        objective = AtomObjective(self.operator, data, alpha if potential else 0.0,
                                  potential, reference_weight=self.allowed.min())
        runs = self._search(objective, begin, callback, rng)
        lowered = []
        while True:
            best = min(runs, key=lambda run: run.config.value)
            config, polish_objective = self._polish(objective, best.config,
                                                    info)
            bound = self.discrepancy_bound(objective)
            misfit = objective.data_misfit(config.positions, config.weights)
            if (bound is None or misfit <= bound
                    or len(lowered) == self.max_lowerings):
                break
            # The answer fits the data worse than the noise explains: the
            # energy overrode the data (an unrelaxed interstitial, say, whose
            # true neighbours sit in the potential's repulsive core). Lower
            # alpha and search again, the answer among the starts: the
            # sequential discrepancy principle (the largest alpha of
            # alpha_0 q^k whose answer fits the data).
            unit = objective.atom_energy
            lowered.append(dict(alpha=objective.alpha, data_misfit=misfit / unit,
                                bound=bound / unit))
            objective = objective.with_alpha(self.alpha_step * objective.alpha)
            runs = self._search(objective, best.config, callback, rng,
                                answer=True)
        info['alpha'] = objective.alpha
        info['lowered_alpha'] = lowered
        info['discrepancy_bound'] = (None if bound is None
                                     else bound / objective.atom_energy)
        info['moves_taken'] = dict(best.moves_taken)
        info['starts'] = [
            dict(start=run.start, objective=run.config.value,
                 n_atoms=run.config.n_atoms, stop=run.stop,
                 positions=run.config.positions) for run in runs]
        info['best_start'] = best.start
        measure = self._measure(config)
        # ``misfit`` is the polished answer's, from the loop (the data
        # misfit does not depend on alpha).
        energy = objective.energy(config.positions)
        info.update(stop_reason=best.stop, atom_energy=objective.atom_energy,
                    energy_weight=objective.energy_weight,
                    potential=potential)
        info['certificate'] = self.certify(
            data, measure, objective=objective, refined_with=polish_objective,
            starts=info['starts'], start=best.start,
            search_value=best.config.value)
        return Reconstruction(measure=measure, objective=best.history,
                              n_iterations=len(best.history), data_misfit=misfit,
                              energy=energy if potential is not None else None,
                              info=info)

    def _polish(self, objective, config, info):
        """Return the polished answer and the objective it was refined with.

        The energy chose the arrangement; the positions are then refined
        with `POLISH_FRACTION` of its weight, so that a lattice the potential
        does not prefer (a square one, a strained one) is not biased, while
        its repulsive core still keeps atoms apart.
        """
        if not (self.polish and objective.energy_weight and config.n_atoms):
            return config, objective
        polish_objective = objective.with_alpha(POLISH_FRACTION * objective.alpha)
        start = config.copy()
        start.value = polish_objective(start.positions, start.weights)
        polished = self.local_move(polish_objective, start)
        shift = np.linalg.norm(polished.positions - config.positions, axis=1)
        info['polish_max_shift'] = float(shift.max())
        return (Configuration(polished.positions, config.weights, config.labels),
                polish_objective)

    def _search(self, objective, begin, callback, rng, answer=False):
        """Run the search from every start; return the runs (`_Run`).

        ``begin`` is the configuration the greedy start continues: the
        ``initial`` measure of `solve`, or with ``answer=True`` an earlier
        answer, which is then continued even without a greedy start. Every
        start runs the full search; the lowest objective wins (the
        objective, not the data fit alone: from 2-3 angles many wrong
        arrangements fit the data to the noise level).
        """
        starts = self.starts
        if answer and not any(isinstance(start, GreedyStart)
                              for start in starts):
            starts = starts + (GreedyStart(),)
        runs = []
        screen = (self.escape_starts is not None and self.moves
                  and len(starts) > self.escape_starts)
        # Scratch space the starts and moves of this search share (lattice
        # data computed by one serve the next); dropped afterwards.
        self.start_scratch = {}
        try:
            for start in starts:
                config = start.configuration(self, objective, begin.copy())
                runs.append(self._run(objective, config, callback, rng,
                                      escapes=not screen))
                runs[-1].start = start.name
            if screen:
                # The escape moves cost most of a search (measured: 21 of
                # 28 s with four starts on the 7 x 7 vacancy); they run
                # from the best starts only, continuing those searches.
                order = np.argsort([run.config.value for run in runs],
                                   kind='stable')
                for i in order[:self.escape_starts]:
                    screened = runs[i]
                    more = self._run(objective, screened.config, callback, rng)
                    more.history = screened.history + more.history
                    more.start = screened.start
                    runs[i] = more
        finally:
            self.start_scratch = None
        return runs

    def _run(self, objective, config, callback, rng, escapes=True):
        """The search from one start: additions, local moves, escapes."""
        rng = np.random.default_rng(rng)
        config.value = objective(config.positions, config.weights)
        max_atoms = self.max_atoms or self._default_max_atoms(objective)
        max_iter = self.max_iter or 2 * max_atoms
        history = []
        moves_taken = {move.name: 0 for move in self.moves}

        def report(new):
            history.append(new.value)
            if callback is not None:
                callback(self._measure(new))

        stop = 'max_iter'
        # Two stages: first the skeleton (atoms that explain at least
        # ``tol`` of an atom's data energy), then, from there, the atoms the
        # skeleton's neighbours had partly absorbed (``fine_tol``). Adding
        # those early lets partial fits in wrong places block the escapes.
        for tol in sorted({self.tol, min(self.fine_tol, self.tol)},
                          reverse=True):
            threshold = self.stop_threshold(objective, tol)
            budget = int(self.move_budget * max_atoms)
            if self.batch_size(objective) > 1:
                # At scale, escape trials (each a grid scoring, some a
                # regional regrowth) would cost O(n) each and O(n) of them
                # would run: cap them. The batches with their stronger
                # energy leave few misplaced atoms (none on the 343-atom
                # octahedron, where 700 escape trials found nothing).
                budget = min(budget, int(self.move_budget * BATCH_ESCAPES))
            config = self.grow_batches(objective, config, threshold,
                                       max_atoms, max_iter, report, history)
            while len(history) < max_iter:
                candidate = None
                if config.n_atoms >= max_atoms:
                    stop = 'max_atoms'
                else:
                    # A candidate may pay off only after the local move:
                    # neighbours that had moved in to absorb a missing
                    # atom's signal (around an interstitial, say) make its
                    # immediate gain negative. Try the best one anyway.
                    candidate = self.add_atom(
                        objective, config,
                        min_gain=-self.tol * objective.atom_energy)
                    stop = 'no_candidate' if candidate is None else 'converged'
                if candidate is not None:
                    candidate = self.local_move(objective, candidate)
                    candidate = self.choose_weights(objective, candidate)
                    candidate = self.prune(objective, candidate)
                    if config.value - candidate.value > threshold:
                        config = candidate
                        report(config)
                        continue
                # No addition helps: try to escape the local minimum.
                if stop == 'max_atoms' or not escapes:
                    break
                moved, name, budget = self.escape(objective, config,
                                                  threshold, budget, rng)
                if moved is None:
                    if budget <= 0:
                        stop = 'move_budget'
                    break
                moves_taken[name] += 1
                config = moved
                report(config)
        return _Run(config, history, stop, moves_taken)

    def certify(self, data, measure, **kwargs):
        """Return the `Certificate` of ``measure`` for this solver's problem.

        `solve` stores the answer's in ``result.info['certificate']``; this
        certifies any configuration (another solver's, say). Keyword
        arguments go to `odl_atoms.solvers.certificate.certify`.
        """
        return certify(self, data, measure, **kwargs)

    def escape(self, objective, config, threshold, budget, rng):
        """Try the escape moves in turn; return the first improvement.

        Returns
        -------
        config : `Configuration` or None
        name : str or None
            Name of the move that succeeded.
        budget : int
            Remaining number of trials.
        """
        min_gain = 1e-3 * objective.atom_energy
        for move in self.moves:
            if budget <= 0:
                break
            for trial in move.trials(self, objective, config, threshold, rng):
                budget -= 1
                if trial is not None and config.value - trial.value > min_gain:
                    return trial, move.name, budget
                if budget <= 0:
                    break
        return None, None, budget

    def grow(self, objective, config, threshold, max_new=None, region=None):
        """Add atoms (with local moves) while each lowers F by > ``threshold``.

        ``region(positions) -> bool mask`` relaxes only the atoms it selects
        (and the new one) after each addition (cheap regional growth).
        """
        count = 0
        while max_new is None or count < max_new:
            more = self.add_atom(objective, config)
            if more is None:
                break
            active = None
            if region is not None:
                active = region(more.positions)
                active[-1] = True
            more = self.local_move(objective, more, active=active)
            if config.value - more.value <= threshold:
                break
            config = more
            count += 1
        return config

    def finish_trial(self, objective, trial, current):
        """Relax, reweigh and prune a promising escape trial in full.

        A trial still worse than ``current`` by a quarter of an atom energy
        after its regional relaxation is returned as it is (it will be
        rejected); the others get a full local move, weight choice and
        pruning.
        """
        if trial.value > current.value + 0.25 * objective.atom_energy:
            return trial
        trial = self.local_move(objective, trial)
        return self.prune(objective, self.choose_weights(objective, trial))

    def _measure(self, config):
        space = self.operator.domain
        return space.element(np.clip(config.positions, space.min_pt, space.max_pt),
                             weights=config.weights, species=config.labels)

    def stop_threshold(self, objective, tol=None):
        """Smallest objective decrease that counts as progress (see ``tol``)."""
        threshold = (self.tol if tol is None else tol) * objective.atom_energy
        if self.noise_std:
            d = self.operator.domain.ndim
            noise = (0.5 * objective.inner_weight * self.noise_std ** 2
                     * (d + 1) * self.noise_factor)
            threshold = max(threshold, noise)
        return threshold

    def discrepancy_bound(self, objective):
        """Largest data misfit the discrepancy principle accepts, or None.

        ``0.5 c tau^2 delta^2`` with ``delta^2 = max(N noise_std^2,
        (DISCREPANCY_FLOOR ||y||)^2)`` the expected squared noise norm
        (``N`` data values, ``c`` the cell weight), in the units of
        ``objective.data_misfit``. None when the principle does not apply:
        ``discrepancy`` is None, the noise level is unknown or the objective
        has no energy.
        """
        if (self.discrepancy is None or self.noise_std is None
                or not objective.energy_weight):
            return None
        y = objective.y
        floor = (0.5 * objective.inner_weight * DISCREPANCY_FLOOR ** 2
                 * float(y @ y))
        return self.discrepancy ** 2 * max(
            objective.noise_misfit(self.noise_std), floor)

    def _default_max_atoms(self, objective):
        expected = expected_atoms(self.operator, objective.y, self.allowed.min())
        return int(np.ceil(2 * expected)) + 10

    # --- Steps

    def score_candidates(self, objective, config):
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
                attraction, nearest = self.addition_energies(
                    potential, config.positions, points, attractive_only=True)
                excluded = nearest < self.exclusion_radius(potential)
            gains -= objective.energy_weight * attraction[:, None]
            gains[excluded] = -np.inf
        best = np.argmax(gains, axis=1)
        return points, gains[np.arange(points.shape[0]), best], best

    def candidate_grid(self):
        """Return the coarse grid, its stencil and ``||g_x||^2`` (cached)."""
        if getattr(self, '_grid', None) is None:
            self._grid = scoring_grid(self.operator, self.grid_spacing)
        return self._grid

    def _attraction_field(self, potential, points):
        """The (cached) `_AttractionField` of the grid for ``potential``."""
        field = getattr(self, '_field', None)
        radius = self.exclusion_radius(potential)
        if (field is None or field.potential is not potential
                or field.radius != radius or field.points is not points):
            field = _AttractionField(potential, points, radius)
            self._field = field
        return field

    def exclusion_radius(self, potential):
        """No candidate closer than this to an atom: half a bond length."""
        return 0.5 * potential.r_min

    @staticmethod
    def addition_energies(potential, positions, points, attractive_only=False):
        """Energy change of adding one atom at each of ``points``.

        Returns ``(energies, nearest)``: the energy change (only its
        attractive, negative pair terms with ``attractive_only``) and the
        distance from each point to the nearest atom.
        """
        tree = cKDTree(positions)
        nearest = tree.query(points)[0]
        pairs = cKDTree(points).sparse_distance_matrix(
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

    def refine_candidate(self, objective, config, point):
        """Move a candidate to the local maximum of the residual correlation."""
        space = self.operator.domain
        residual = objective.data.space.element(
            -objective.residual(config.positions, config.weights).reshape(
                objective.data.space.shape))
        lo = np.maximum(point - self.grid_spacing, space.min_pt)
        hi = np.minimum(point + self.grid_spacing, space.max_pt)

        def negative_correlation(x):
            value, grad = self.operator.correlation(residual, x[None, :],
                                                    gradient=True)
            return -value[0], -grad[0]

        res = minimize(negative_correlation, point, jac=True, method='L-BFGS-B',
                       bounds=list(zip(lo, hi)), options={'maxiter': 50})
        return res.x if res.fun <= negative_correlation(point)[0] else point

    def best_candidate(self, objective, config, exclude=None):
        """Return ``(point, weight_index, gain)`` of the best grid candidate.

        ``gain`` is the exact objective decrease of adding that atom at the
        grid point (before refinement); ``exclude = (point, radius)`` forbids
        candidates near ``point``.
        """
        points, gains, best = self.score_candidates(objective, config)
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
        point = self.refine_candidate(objective, config, point)
        new = Configuration(
            np.vstack([config.positions, point[None, :]]),
            np.append(config.weights, self.allowed[j]),
            np.append(config.labels, self.labels[j]))
        new.value = objective(new.positions, new.weights)
        return new

    def local_move(self, objective, config, active=None):
        """Minimise the objective over positions (weights fixed), in the box.

        ``active`` (bool mask or indices) restricts the move to some atoms;
        the others stay fixed (a cheap relaxation after a local change).
        """
        if config.n_atoms == 0:
            return config
        space = self.operator.domain
        n, d = config.positions.shape
        weights = config.weights
        if active is None:
            index = np.arange(n)

            def fun(flat):
                value, grad_x, _ = objective.value_and_gradient(
                    flat.reshape(n, d), weights)
                return value, grad_x.ravel()
        else:
            index = np.arange(n)[active]
            if index.size == 0:
                return config
            restricted = objective.restricted(config.positions, weights, index)

            def fun(flat):
                value, grad_x = restricted(flat.reshape(-1, d))
                return value, grad_x.ravel()

        k = index.size
        bounds = list(zip(np.tile(space.min_pt, k), np.tile(space.max_pt, k)))
        x0 = np.clip(config.positions[index], space.min_pt, space.max_pt).ravel()
        res = minimize(fun, x0, jac=True, method='L-BFGS-B', bounds=bounds,
                       options={'maxiter': self.local_maxiter})
        positions = config.positions.copy()
        positions[index] = res.x.reshape(k, d)
        new = Configuration(positions, weights.copy(), config.labels.copy())
        new.value = objective(new.positions, new.weights)
        if new.value > config.value:  # never accept a worse configuration
            return config
        return new

    def choose_weights(self, objective, config):
        """Give each atom the allowed weight that lowers the objective most."""
        if self.allowed.size == 1 or config.n_atoms == 0:
            return config
        config = config.copy()
        changed = False
        for _ in range(config.n_atoms):
            stencil = self.operator.stencil(config.positions)
            r = stencil.project(config.weights) - objective.y
            c = objective.inner_weight
            _, corr = stencil.adjoint_jacobian(np.ones(config.n_atoms), r)
            corr *= c
            norms = c * stencil.self_inner()
            dw = self.allowed[None, :] - config.weights[:, None]
            delta = dw * corr[:, None] + 0.5 * dw ** 2 * norms[:, None]
            i, j = np.unravel_index(np.argmin(delta), delta.shape)
            if not delta[i, j] < -1e-12 * objective.atom_energy:
                break
            config.weights[i] = self.allowed[j]
            config.labels[i] = self.labels[j]
            changed = True
        if changed:
            config.value = objective(config.positions, config.weights)
            config = self.local_move(objective, config)
        return config

    def prune(self, objective, config):
        """Remove atoms whose removal lowers the objective; merge near pairs."""
        changed = False
        while config.n_atoms > 0:
            delta = self.removal_changes(objective, config)
            i = int(np.argmin(delta))
            if not delta[i] < 0:
                break
            config = config.without(i)
            config.value = objective(config.positions, config.weights)
            changed = True
        merged = self._merge(objective, config)
        if merged is not config:
            config, changed = merged, True
        if changed:
            config = self.local_move(objective, config)
        return config

    def removal_changes(self, objective, config):
        """Exact objective change of removing each atom."""
        stencil = self.operator.stencil(config.positions)
        r = stencil.project(config.weights) - objective.y
        c = objective.inner_weight
        _, corr = stencil.adjoint_jacobian(np.ones(config.n_atoms), r)
        w = config.weights
        delta = -w * c * corr + 0.5 * w ** 2 * c * stencil.self_inner()
        if objective.energy_weight and config.n_atoms > 1:
            delta += objective.energy_weight * objective.potential.removal_energies(
                config.positions)
        return delta

    def _merge(self, objective, config):
        """Merge the closest pair within ``merge_distance`` if that helps."""
        if config.n_atoms < 2:
            return config
        pairs = cKDTree(config.positions).query_pairs(self.merge_distance,
                                                      output_type='ndarray')
        best = config
        for i, j in pairs:
            wi, wj = config.weights[i], config.weights[j]
            k = int(np.argmin(np.abs(self.allowed - (wi + wj))))
            merged = config.without(j)
            idx = i if i < j else i - 1
            merged.positions[idx] = (wi * config.positions[i]
                                     + wj * config.positions[j]) / (wi + wj)
            merged.weights[idx] = self.allowed[k]
            merged.labels[idx] = self.labels[k]
            merged.value = objective(merged.positions, merged.weights)
            if merged.value < best.value:
                best = merged
        return best

    def __repr__(self):
        args = [repr(self.operator), f'alpha={self.alpha!r}']
        if not (isinstance(self.potential, str) and self.potential == 'auto'):
            args.append(f'potential={self.potential!r}')
        if not (isinstance(self.weights, numbers.Real) and self.weights == 1.0):
            args.append(f'weights={self.weights!r}')
        if not self._auto_moves:
            args.append(f'moves={list(self.moves)!r}')
        if self.starts != DEFAULT_STARTS:
            args.append(f'starts={list(self.starts)!r}')
        if not self._auto_discrepancy:
            args.append(f'discrepancy={self.discrepancy!r}')
        for name, default in (('tol', 0.5), ('fine_tol', 0.2), ('noise_std', None),
                              ('max_atoms', None), ('max_iter', None),
                              ('local_maxiter', 100), ('move_budget', 2.0),
                              ('polish', True), ('escape_starts', 1),
                              ('batch', 'auto'),
                              ('batch_alpha', 0.1),
                              ('alpha_step', 0.3), ('max_lowerings', 2),
                              ('seed', None)):
            value = getattr(self, name)
            if value != default:
                args.append(f'{name}={value!r}')
        return f'{type(self).__name__}(' + ', '.join(args) + ')'
