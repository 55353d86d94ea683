"""Choosing the energy weight ``alpha``: the sweep and the discrepancy principle.

More energy (larger ``alpha``) pulls the atoms towards the potential's
preferred arrangement and away from the many wrong arrangements that fit 2-3
projections equally well; too much of it distorts a lattice the potential does
not prefer, or fills vacancies with atoms the data do not support. The data
discrepancy ``||R(mu_alpha) - y||`` grows with ``alpha``; the energy ``V``
falls.

`alpha_sweep` reconstructs for a list of alphas and returns both curves (the
"effect of adding energy" plot). `AlphaSweep.discrepancy_choice` applies
Morozov's discrepancy principle: with known noise of standard deviation ``s``
per data value, the expected squared noise norm is ``delta^2 = c * N * s^2``
(``N`` data values, ``c`` the cell weight of the projection space); choose the
largest ``alpha`` whose reconstruction still fits the data to within
``tau * delta`` (``tau = 1.1``). Without a noise estimate it falls back on
`DEFAULT_ALPHA`, which was measured to work on noiseless and low-noise data
(see the defects benchmark).

`ADCG` applies the rule by itself, sequentially, when it knows the noise
level: an answer that fits the data worse than ``tau * delta`` is searched
again with a smaller alpha (its ``discrepancy``, ``alpha_step`` and
``max_lowerings``). A sweep holds every alpha fixed instead.
"""

import inspect
from dataclasses import dataclass, field

import numpy as np

from odl_atoms.geometry import as_data
from odl_atoms.defaults import DEFAULT_ALPHA
from odl_atoms.solvers.adcg import ADCG

__all__ = ('alpha_sweep', 'AlphaSweep')


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

    def discrepancy_choice(self, tau=1.1):
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


def alpha_sweep(operator, data, alphas, noise_std=None, solver=ADCG,
                callback=None, **solver_kwargs):
    """Reconstruct for every ``alpha`` and collect discrepancy and energy.

    Parameters
    ----------
    operator : `GaussianRayTransform`
    data : projection data
    alphas : sequence of float
    noise_std : float, optional
        Noise standard deviation per data value, for the discrepancy principle.
    solver : type, optional
        A `Solver` class taking ``alpha`` (default `ADCG`).
    callback : callable, optional
        Called after each reconstruction with ``(alpha, result)`` (for
        progress bars).
    solver_kwargs :
        Further arguments of the solver (e.g. ``potential=2.885``). ADCG's
        own discrepancy principle is off (``discrepancy=None``) unless given
        here: the sweep reconstructs with every alpha as it is.

    Returns
    -------
    sweep : `AlphaSweep`
    """
    data = as_data(operator.range, data)
    alphas = np.array(sorted(float(a) for a in alphas))
    if alphas.size == 0 or np.any(alphas < 0) or not np.all(np.isfinite(alphas)):
        raise ValueError(f'`alphas` must be numbers >= 0, got {alphas.tolist()}')
    if 'discrepancy' in inspect.signature(solver).parameters:
        # Every alpha as given: ADCG's own discrepancy principle would
        # lower the large ones and flatten the curves.
        solver_kwargs.setdefault('discrepancy', None)
    results = []
    for alpha in alphas:
        result = solver(operator, alpha=float(alpha), noise_std=noise_std,
                        **solver_kwargs).solve(data)
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
    if noise_std:
        noise_norm = float(noise_std) * np.sqrt(
            operator.inner_weight * operator.range.size)
    return AlphaSweep(alphas=alphas, discrepancies=np.array(disc),
                      energies=np.array(energy), n_atoms=np.array(count),
                      results=results, noise_norm=noise_norm)
