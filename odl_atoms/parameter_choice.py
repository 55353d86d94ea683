"""Choosing the energy weight ``alpha``: the discrepancy principle and the sweep.

More energy (larger ``alpha``) pulls the atoms towards the potential's
preferred arrangement and away from the many wrong arrangements that fit 2-3
projections equally well; too much of it distorts a lattice the potential does
not prefer, or fills vacancies with atoms the data do not support. The data
discrepancy ``||R(mu_alpha) - y||`` grows with ``alpha``; the energy ``V``
falls.

**The discrepancy principle** (Morozov): with noise of standard deviation
``s`` per data value, the expected squared noise norm is ``delta^2 = c N s^2``
(``N`` data values, ``c`` the cell weight of the projection space); an
answer is acceptable while its residual is at most ``tau * delta``
(`~odl_atoms.defaults.DISCREPANCY_TAU`, 1.1). For noise whose variance
differs from value to value (a microscope's Poisson-Gaussian noise,
`~odl_atoms.calibration.NoiseModel`), ``s`` is the root-mean-square
standard deviation, ``s^2`` the mean of the variances
(`Calibration.noise_std <odl_atoms.calibration.Calibration.noise_std>`):
``c N s^2`` is then still the expected squared norm of the noise, the
misfit the solvers' unweighted least-squares data term gives it (tested
against the noise's own misfit in tests/test_noise_model.py; a data term
weighted by the variances was measured and not taken,
benchmarks/results/noise_model.md). `DiscrepancyPrinciple` is that rule,
in one place:

- `DiscrepancyPrinciple.bound`: the largest data misfit it accepts;
- `DiscrepancyPrinciple.search`: the sequential rule, around any
  reconstruction: solve, and while the answer misfits the data by more
  than the bound, lower alpha by ``step`` and solve again from the answer
  (the largest alpha of ``alpha_0 step^k`` whose answer fits the data);
- calling it, ``principle(solver, problem)``, does that with any solver.

`ADCG` applies the sequential rule itself (its ``discrepancy`` option),
searching again from all its starts at each lowered alpha; SIRT stops its
iterations by the same bound; `AlphaSweep.discrepancy_choice` picks the
largest swept alpha within it.

`alpha_sweep` reconstructs for a list of alphas, every alpha held fixed, and
returns the discrepancy and energy curves (the "effect of adding energy"
plot).
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np

from odl_atoms.defaults import DEFAULT_ALPHA, DISCREPANCY_TAU

__all__ = ('DiscrepancyPrinciple', 'discrepancy_bound', 'DISCREPANCY_FLOOR',
           'alpha_sweep', 'AlphaSweep')

#: Smallest noise norm ADCG's discrepancy principle assumes, relative to the
#: data norm: noise-free data still leave the residual the energy's bias
#: causes (measured on exact 7 x 7 reconstructions without noise: 0.2 % of
#: the data norm; wrong ones the energy preferred: 0.9-1.1 %).
DISCREPANCY_FLOOR = 5e-3


def discrepancy_bound(problem, tau=DISCREPANCY_TAU, floor=0.0):
    """Largest data misfit ``0.5 ||R(mu) - y||^2`` the principle accepts.

    ``0.5 c tau^2 delta^2`` with ``delta^2 = max(N noise_std^2,
    (floor ||y||)^2)`` the expected squared noise norm (``N`` data values,
    ``c`` the cell weight of the projection space). None when the noise
    level of ``problem`` is unknown.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> import odl_atoms as oa
    >>> space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = oa.GaussianRayTransform(space, geometry, sigma=0.3)
    >>> problem = oa.Problem(op, op.range.zero(), noise_std=0.1)
    >>> noise = op.range.element(np.full(op.range.shape, 0.1))
    >>> bool(np.isclose(discrepancy_bound(problem, tau=1.0),
    ...                 0.5 * noise.norm() ** 2))
    True
    """
    if problem.noise_std is None:
        return None
    y = np.asarray(problem.data.data, dtype=float).ravel()
    c = problem.operator.inner_weight
    noise = c * y.size * problem.noise_std ** 2
    floor_sq = c * (float(floor) ** 2) * float(y @ y)
    return 0.5 * float(tau) ** 2 * max(noise, floor_sq)


@dataclass(frozen=True)
class DiscrepancyPrinciple:

    """Morozov's discrepancy principle, applied sequentially in alpha.

    Parameters
    ----------
    tau : float, optional
        Safety factor ``>= 1`` (default `DISCREPANCY_TAU`, 1.1).
    step : float, optional
        Factor in (0, 1) by which alpha is lowered (default 0.3).
    max_lowerings : int, optional
        Most times alpha is lowered (default 2).
    floor : float, optional
        Smallest noise norm assumed, relative to the data norm (default 0;
        ADCG uses `DISCREPANCY_FLOOR`).

    Examples
    --------
    >>> DiscrepancyPrinciple()
    DiscrepancyPrinciple(tau=1.1, step=0.3, max_lowerings=2, floor=0.0)
    """

    tau: float = DISCREPANCY_TAU
    step: float = 0.3
    max_lowerings: int = 2
    floor: float = 0.0

    def __post_init__(self):
        tau = float(self.tau)
        if not (math.isfinite(tau) and tau >= 1):
            raise ValueError(f'`discrepancy` (tau) must be None or >= 1, '
                             f'got {self.tau!r}')
        step = float(self.step)
        if not 0 < step < 1:
            raise ValueError(f'`alpha_step` must lie in (0, 1), got '
                             f'{self.step!r}')
        if isinstance(self.max_lowerings, bool) or not isinstance(
                self.max_lowerings, (int, np.integer)) \
                or self.max_lowerings < 0:
            raise ValueError(f'`max_lowerings` must be an int >= 0, got '
                             f'{self.max_lowerings!r}')
        floor = float(self.floor)
        if not (math.isfinite(floor) and floor >= 0):
            raise ValueError(f'`floor` must be a number >= 0, got '
                             f'{self.floor!r}')
        object.__setattr__(self, 'tau', tau)
        object.__setattr__(self, 'step', step)
        object.__setattr__(self, 'max_lowerings', int(self.max_lowerings))
        object.__setattr__(self, 'floor', floor)

    def bound(self, problem):
        """The largest accepted data misfit (`discrepancy_bound`), or None.

        None also when the problem has no energy: then there is no alpha to
        lower.
        """
        if not problem.has_energy:
            return None
        return discrepancy_bound(problem, self.tau, self.floor)

    def search(self, run, problem):
        """Run ``run(problem, previous)`` and lower alpha until it fits.

        Parameters
        ----------
        run : callable
            ``run(problem, previous) -> answer``: a reconstruction of
            ``problem`` (continuing ``previous``, the answer at the last
            alpha, or None at first); ``answer.data_misfit`` is its misfit.
        problem : `~odl_atoms.problem.Problem`

        Returns
        -------
        answer
            The last answer.
        problem : `~odl_atoms.problem.Problem`
            The problem with the alpha of the last answer.
        lowered : list of dict
            One entry per lowering: ``alpha`` (the alpha left), the
            ``data_misfit`` of its answer and the ``bound``.
        bound : float or None
            The bound the last answer was held to.
        """
        answer = run(problem, None)
        lowered = []
        while True:
            bound = self.bound(problem)
            if (bound is None or answer.data_misfit <= bound
                    or len(lowered) == self.max_lowerings):
                return answer, problem, lowered, bound
            # The answer fits the data worse than the noise explains: the
            # energy overrode the data. Lower alpha and go on from there.
            lowered.append(dict(alpha=problem.alpha,
                                data_misfit=answer.data_misfit, bound=bound))
            problem = problem.with_alpha(self.step * problem.alpha)
            answer = run(problem, answer)

    def __call__(self, solver, problem, initial=None, callback=None):
        """Solve ``problem`` with any solver under the principle.

        Each lowered alpha starts from the previous answer's atoms. The
        result's ``info`` gets ``alpha`` (the alpha used), ``lowered_alpha``
        and ``discrepancy_bound`` (absolute misfits).
        """
        def run(current, previous):
            start = initial if previous is None else previous.measure
            return solver.solve(current, initial=start, callback=callback)

        result, problem, lowered, bound = self.search(run, problem)
        result.info.update(alpha=problem.alpha, lowered_alpha=lowered,
                           discrepancy_bound=bound)
        return result


@dataclass
class AlphaSweep:

    """Reconstructions for several energy weights.

    Attributes
    ----------
    alphas : numpy.ndarray
    discrepancies : numpy.ndarray
        ``||R(mu_alpha) - y||_Y`` (norm of the projection space).
    energies : numpy.ndarray
        Potential energy of each reconstruction (in units of the potential's
        well depth), nan without potential.
    n_atoms : numpy.ndarray
    results : list of `Reconstruction`
    noise_norm : float or None
        Expected noise norm ``delta`` if the noise level was given.
    """

    alphas: np.ndarray
    discrepancies: np.ndarray
    energies: np.ndarray
    n_atoms: np.ndarray
    results: list = field(repr=False)
    noise_norm: float = None

    def discrepancy_choice(self, tau=DISCREPANCY_TAU):
        """Return the largest alpha with discrepancy ``<= tau * delta``.

        Falls back on `DEFAULT_ALPHA` (if swept, else the smallest positive
        alpha) when the noise norm is unknown or no alpha qualifies.
        """
        positive = self.alphas[self.alphas > 0]
        fallback = (DEFAULT_ALPHA if np.any(np.isclose(positive, DEFAULT_ALPHA))
                    or positive.size == 0 else float(positive.min()))
        if not self.noise_norm:
            return fallback
        ok = self.discrepancies <= tau * self.noise_norm
        if not np.any(ok & (self.alphas > 0)):
            return fallback
        return float(self.alphas[ok & (self.alphas > 0)].max())

    def result(self, alpha):
        """Return the reconstruction for ``alpha``."""
        index = int(np.argmin(np.abs(self.alphas - alpha)))
        return self.results[index]

    def as_table(self):
        """Rows ``(alpha, discrepancy, energy, n_atoms)`` for printing."""
        return [(float(a), float(d), float(e), int(n)) for a, d, e, n in zip(
            self.alphas, self.discrepancies, self.energies, self.n_atoms)]


def alpha_sweep(solver, problem, alphas, callback=None, time_limit=None):
    """Reconstruct for every ``alpha`` and collect discrepancy and energy.

    Parameters
    ----------
    solver : `Solver`
        Any solver; one that lowers alpha by itself (`ADCG`'s
        ``discrepancy``) has that switched off here, so that every alpha is
        reconstructed as given.
    problem : `~odl_atoms.problem.Problem`
        The problem; its own alpha is replaced by each of ``alphas``.
    alphas : sequence of float
    callback : callable, optional
        Called after each reconstruction with ``(alpha, result)`` (for
        progress bars).
    time_limit : positive float, optional
        Seconds for the whole sweep: each reconstruction stops at the time
        left (`Solver.solve`'s ``time_limit``); default no limit.

    Returns
    -------
    sweep : `AlphaSweep`
    """
    alphas = np.array(sorted(float(a) for a in alphas))
    if alphas.size == 0 or np.any(alphas < 0) or not np.all(np.isfinite(alphas)):
        raise ValueError(f'`alphas` must be numbers >= 0, got {alphas.tolist()}')
    if 'discrepancy' in solver.option_names():
        # Every alpha as given: ADCG's own discrepancy principle would
        # lower the large ones and flatten the curves.
        solver = solver.with_options(discrepancy=None)
    deadline = None if time_limit is None else time.monotonic() + time_limit
    results = []
    for alpha in alphas:
        left = (None if deadline is None
                else max(deadline - time.monotonic(), 1e-3))
        result = solver.solve(problem.with_alpha(float(alpha)),
                              time_limit=left)
        results.append(result)
        if callback is not None:
            callback(float(alpha), result)
    # One potential measures every reconstruction (alpha = 0 runs have none).
    potentials = [r.info.get('potential') for r in results
                  if r.info.get('potential') is not None]
    potential = potentials[-1] if potentials else None
    energy = [potential.energy(r.measure.positions) / potential.epsilon
              if potential is not None and r.n_atoms > 1 else np.nan
              for r in results]
    disc = [np.sqrt(2 * r.data_misfit) for r in results]
    count = [r.n_atoms for r in results]
    noise_norm = None
    if problem.noise_std:
        bound = discrepancy_bound(problem, tau=1.0)
        noise_norm = float(np.sqrt(2 * bound))
    return AlphaSweep(alphas=alphas, discrepancies=np.array(disc),
                      energies=np.array(energy), n_atoms=np.array(count),
                      results=results, noise_norm=noise_norm)
