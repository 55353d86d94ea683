"""How far to trust a reconstruction: a certificate a user can read.

From 2-3 projections a wrong arrangement can fit the data as well as the
truth; a small objective alone does not say the answer is right. `certify`
checks what can be checked:

- **local minimum**: no atom moves downhill (the projected gradient in the
  box vanishes), no atom's removal lowers the objective and no atom added at
  the best candidate site lowers it by more than the stopping tolerance;
- **starts**: the objective against the best found from every start of the
  search, and how well the starts' answers agree (F1 of matching each to the
  answer): different starts reaching the same atoms is evidence; different
  atoms at the same objective say the data cannot tell them apart;
- **residual**: the misfit against what the noise alone explains, and where
  the residual is largest (the atoms whose projections hold most of it, and
  the point whose back-projection of the squared residual is largest), so
  a user knows where to look.

Units: objective values in atom energies ``E_atom`` (the data energy of one
atom, `odl_atoms.objective`), gradients in ``E_atom`` per ``sigma``.
"""

from dataclasses import dataclass, field

import numpy as np

from odl_atoms.metrics import match_atoms
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.moves import atom_residuals

__all__ = ('Certificate', 'certify')

#: Largest projected gradient (``E_atom`` per ``sigma``) of a stationary point.
GRADIENT_TOL = 0.05

#: Largest objective decrease (``E_atom``) a removal may give at a minimum.
REMOVAL_TOL = 1e-3


@dataclass
class Certificate:

    """What is known about a reconstruction (see the module documentation).

    Attributes
    ----------
    objective : float
        ``F = 0.5 ||R(mu) - y||^2 + lambda V`` of the answer, in ``E_atom``
        (for an ADCG result: of the arrangement as the search left it,
        before the final polish, the value compared across starts).
    data_misfit : float
        ``0.5 ||R(mu) - y||^2``, in ``E_atom``.
    noise_misfit : float or None
        The misfit the noise alone gives (``0.5 c N noise_std^2``), if the
        noise level is known.
    gradient : float
        Largest component of the projected gradient of the objective the
        positions were last refined with (``E_atom / sigma``).
    best_removal : float
        Smallest objective change of removing one atom (``E_atom``; >= 0:
        every atom earns its place).
    best_addition : float
        Largest objective decrease of adding one atom at a candidate grid
        point (``E_atom``).
    addition_tol : float
        The stopping tolerance additions are measured against (``E_atom``).
    starts : list of dict
        For every start of the search: ``start`` (its name), ``objective``
        (``E_atom``), ``n_atoms`` and ``agreement`` (F1 of its atoms against
        the answer's).
    worst_atoms : numpy.ndarray
        Indices of the (up to five) atoms whose projections hold the largest
        mean squared residual, worst first.
    worst_point : numpy.ndarray
        The candidate grid point where the back-projected squared residual
        is largest.
    start : str or None
        The start the answer came from (its search objective is then the
        one compared with the other starts': the answer itself may have been
        polished with a smaller energy weight).
    """

    objective: float
    data_misfit: float
    noise_misfit: float = None
    gradient: float = 0.0
    best_removal: float = np.inf
    best_addition: float = 0.0
    addition_tol: float = 0.0
    starts: list = field(default_factory=list)
    worst_atoms: np.ndarray = None
    worst_point: np.ndarray = None
    start: str = None

    @property
    def stationary(self):
        """Whether no atom moves downhill (``gradient <= GRADIENT_TOL``)."""
        return self.gradient <= GRADIENT_TOL

    @property
    def local_minimum(self):
        """Stationary, and no single removal or addition pays off."""
        return (self.stationary and self.best_removal >= -REMOVAL_TOL
                and self.best_addition <= self.addition_tol)

    @property
    def best_of_starts(self):
        """Whether no start found a lower objective (within 1e-6 E_atom)."""
        mine = [s['objective'] for s in self.starts if s['start'] == self.start]
        value = mine[0] if mine else self.objective
        return all(s['objective'] >= value - 1e-6 for s in self.starts)

    @property
    def agreement(self):
        """Smallest F1 between the answer and another start's (1 if none)."""
        values = [s['agreement'] for s in self.starts
                  if s.get('agreement') is not None]
        return min(values) if values else 1.0

    @property
    def residual_ratio(self):
        """Data misfit over the noise's share (None if the noise is unknown)."""
        if not self.noise_misfit:
            return None
        return self.data_misfit / self.noise_misfit

    def __str__(self):
        """The certificate in plain quantities, one finding per line.

        Objective changes are in atom energies (the data energy of one
        atom: a change of 1 is what one whole atom's data is worth).
        """
        misfit = f'data misfit {self.data_misfit:.3f}'
        if self.noise_misfit:
            misfit += (f', {self.residual_ratio:.2f} times the '
                       f'{self.noise_misfit:.3f} the noise alone explains')
        lines = [f'objective {self.objective:.3f} atom energies (an atom '
                 f"energy is what one atom's data are worth); {misfit}",
                 f'local minimum: {"yes" if self.local_minimum else "NO"}',
                 '  ' + self._gradient_text(),
                 '  ' + self._removal_text(),
                 '  ' + self._addition_text()]
        if len(self.starts) > 1:
            lines.append(
                'starts (objective, atoms, F1 of their atoms against the '
                'answer\'s): ' + ', '.join(
                    f"{s['start']} {s['objective']:.3f} ({s['n_atoms']} atoms, "
                    f"F1 {s['agreement']:.2f})" for s in self.starts)
                + ('; no start found a lower objective' if self.best_of_starts
                   else '; ANOTHER START FOUND A LOWER OBJECTIVE'))
        if self.worst_atoms is not None and len(self.worst_atoms):
            point = ', '.join(f'{v:.2f}' for v in self.worst_point)
            atoms = [str(int(i)) for i in self.worst_atoms]
            atoms = (atoms[0] if len(atoms) == 1
                     else ', '.join(atoms[:-1]) + ' and ' + atoms[-1])
            lines.append(f'largest residual: at atom{"s" if len(self.worst_atoms) > 1 else ""} '
                         f'{atoms}, and around ({point})')
        return '\n'.join(lines)

    def _gradient_text(self):
        if self.stationary:
            return (f'no atom moves downhill (largest slope '
                    f'{self.gradient:.2g} atom energies per sigma, below '
                    f'{GRADIENT_TOL:g})')
        return (f'atoms still move downhill: the objective falls by '
                f'{self.gradient:.2g} atom energies per sigma of movement '
                f'(above {GRADIENT_TOL:g}); the positions are not converged')

    def _removal_text(self):
        if not np.isfinite(self.best_removal):
            return 'no atom to remove'
        if self.best_removal >= 0:
            return (f'removing any one atom would raise the objective by at '
                    f'least {self.best_removal:.2f} atom energies')
        verb = 'lower' if self.best_removal < -REMOVAL_TOL else 'barely lower'
        return (f'removing one atom would {verb} the objective by '
                f'{-self.best_removal:.3g} atom energies'
                + (': an atom does not earn its place'
                   if self.best_removal < -REMOVAL_TOL else ''))

    def _addition_text(self):
        need = (f'an atom must lower it by {self.addition_tol:.2f} to be '
                f'worth adding')
        if self.best_addition <= 0:
            return (f'adding an atom anywhere would raise the objective by '
                    f'at least {-self.best_addition:.2f} atom energies '
                    f'({need})')
        if self.best_addition <= self.addition_tol:
            return (f'adding an atom would lower the objective by at most '
                    f'{self.best_addition:.2f} atom energies ({need})')
        return (f'adding an atom would lower the objective by '
                f'{self.best_addition:.2f} atom energies ({need}): an atom is '
                f'missing')


def certify(context, measure, addition_tol, noise_std=None, refined_with=None,
            starts=(), start=None, search_value=None, tolerance=None,
            intensity=1.0):
    """Return the `Certificate` of ``measure`` under ``context``'s objective.

    Parameters
    ----------
    context : `~odl_atoms.solvers.adcg.context.SearchContext`
        The objective, the candidate grid (the oracle) and the removal
        changes (`ADCG.context` builds one; `ADCG.certify` calls this).
    measure : `SparseMeasure`
        The configuration to certify (from any solver).
    addition_tol : float
        The objective decrease an addition must beat to count (absolute;
        ADCG's stopping threshold).
    noise_std : float, optional
        The noise level, if known.
    refined_with : `AtomObjective`, optional
        The objective the positions were last minimised with (ADCG polishes
        with a smaller energy weight); default ``context.objective``.
    starts : sequence of dict, optional
        Per start: ``start``, ``objective`` (absolute), ``n_atoms`` and
        ``positions``, as ADCG records them in ``info['starts']``.
    start : str, optional
        Name of the start ``measure`` came from.
    search_value : float, optional
        The objective of the arrangement before ``measure``'s positions were
        polished (absolute); reported as ``objective`` instead of the
        objective of ``measure`` itself.
    tolerance : float, optional
        Matching tolerance of the agreement between starts (angstrom).
        Default: 0.3 equilibrium distances of the potential, or ``2 sigma``.
    intensity : float, optional
        The problem's intensity (`~odl_atoms.problem.Problem.intensity`):
        ``measure``'s weights times it are in the operator's units.
    """
    objective = context.objective
    op = objective.operator
    refined_with = refined_with or objective
    unit = objective.atom_energy
    x = np.asarray(measure.positions, float)
    w = np.asarray(measure.weights, float) * float(intensity)
    residual = objective.residual(x, w)
    misfit = 0.5 * objective.inner_weight * float(residual @ residual)
    value = misfit + objective.energy_weight * objective.energy(x)
    noise = None
    if noise_std:
        noise = objective.noise_misfit(noise_std) / unit

    config = Configuration(x, w, np.asarray(measure.species), value)
    gradient, removal = 0.0, np.inf
    if len(w):
        _, grad, _ = refined_with.value_and_gradient(x, w)
        # Projected gradient: a component pushing an atom out of the box
        # at its wall is not a descent direction.
        space = op.domain
        at_lo = (x <= space.min_pt + 1e-9) & (grad > 0)
        at_hi = (x >= space.max_pt - 1e-9) & (grad < 0)
        grad = np.where(at_lo | at_hi, 0.0, grad)
        gradient = float(np.abs(grad).max()) * op.sigma / unit
        removal = float(context.removal_changes(config).min()) / unit
    _, gains, _ = context.score(config)
    addition = float(np.max(gains)) / unit if gains.size else 0.0
    addition_tol = float(addition_tol) / unit

    if tolerance is None:
        tolerance = (0.3 * objective.potential.r_min
                     if objective.potential is not None else 2 * op.sigma)
    rows = []
    for s in starts:
        agreement = match_atoms(x, s['positions'], tolerance=tolerance).f1 \
            if len(x) or len(s['positions']) else 1.0
        rows.append(dict(start=s['start'], objective=s['objective'] / unit,
                         n_atoms=s['n_atoms'], agreement=agreement))

    r2 = residual ** 2
    worst_atoms = np.zeros(0, int)
    if len(w):
        seen = atom_residuals(op, residual, x)
        worst_atoms = np.argsort(seen)[::-1][:5]
    points, grid_stencil, _ = context.oracle.candidate_grid()
    spread = grid_stencil.correlate(r2)
    worst_point = points[int(np.argmax(spread))]
    if search_value is not None:
        value = search_value
    return Certificate(objective=value / unit, data_misfit=misfit / unit,
                       noise_misfit=noise, gradient=gradient,
                       best_removal=removal, best_addition=addition,
                       addition_tol=addition_tol, starts=rows,
                       worst_atoms=worst_atoms, worst_point=worst_point,
                       start=start)
