"""The reconstruction problem: what is to be solved, apart from how.

A `Problem` holds the measured data, the forward operator (the atom model:
geometry, box, atom width), the physical prior (a pair potential and its
dimensionless weight ``alpha``), the allowed atom weights (species) and the
noise model. Every solver takes one::

    problem = Problem(op, data, potential=2.885, noise_std=0.01)
    result = ADCG().solve(problem)          # or SimulatedAnnealing(), SIRT()

so that the problem's settings are given, checked and documented once, and a
solver's own options are only those of its method.

The objective all atom solvers minimise is the problem's
(`Problem.objective`, an `~odl_atoms.objective.AtomObjective`):

    F(x, w) = 0.5 ||R(x, w) - y||^2 + lambda V(x),   lambda = alpha E_atom / epsilon

with ``E_atom`` the data energy of one atom of the smallest allowed weight and
``epsilon`` the potential's well depth (see `odl_atoms.objective`).
"""

import copy
import math
import numbers

import numpy as np
import odl
from scipy.spatial import cKDTree

from odl_atoms.defaults import DEFAULT_ALPHA
from odl_atoms.errors import ValidationError, ValidationTypeError
from odl_atoms.functionals import LennardJones
from odl_atoms.geometry import as_data
from odl_atoms.objective import AtomObjective
from odl_atoms.operators import GaussianRayTransform
from odl_atoms.space import SparseMeasure
from odl_atoms.weights import allowed_weights

__all__ = ('Problem', 'check_alpha', 'default_lennard_jones',
           'parse_potential', 'estimate_r_min', 'expected_atoms',
           'atom_operator')


def check_alpha(alpha, name='alpha'):
    """Return ``alpha`` as a float, or raise ValueError if it is not >= 0.

    Examples
    --------
    >>> check_alpha(1e-3)
    0.001
    >>> check_alpha(-1)
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: `alpha` (the energy weight) must be a number >= 0, got -1.0
    """
    try:
        alpha = float(alpha)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f'`{name}` (the energy weight) must be a '
                              f'number >= 0, got {alpha!r}') from exc
    if not math.isfinite(alpha) or alpha < 0:
        raise ValidationError(
            f'`{name}` (the energy weight) must be a number >= 0, got {alpha}')
    return alpha


def default_lennard_jones(ndim, r_min):
    """Return the default Lennard-Jones potential for ``ndim``-D atoms.

    Lennard-Jones with ASE's smooth (force-continuous) cut-off, which keeps the
    objective differentiable for L-BFGS-B, and an inner core at half the
    Lennard-Jones ``sigma``: finite (no inf/NaN when atoms meet) yet so high
    (about 1e5 well depths) that two atoms never share a site to fit a column
    of double weight. The solvers use it for ``potential=r_min``, and
    `odl_atoms.relax_defect` relaxes phantoms under it.

    Examples
    --------
    >>> lj = default_lennard_jones(2, 2.885)
    >>> round(lj.r_min, 6)
    2.885
    """
    r_min = float(r_min)
    if not r_min > 0:
        raise ValidationError(f'`r_min` must be positive, got {r_min}')
    return LennardJones.from_r_min(odl.rn((2, ndim)), r_min, smooth=True,
                                   core_radius=0.5 * r_min / 2 ** (1 / 6))


def parse_potential(ndim, potential):
    """Return ``potential`` as a `LennardJones`, ``'auto'`` or None.

    A number is the equilibrium distance ``r_min`` of `default_lennard_jones`.
    """
    if isinstance(potential, numbers.Real) and not isinstance(potential, bool):
        return default_lennard_jones(ndim, potential)
    if potential is None or (isinstance(potential, str) and potential == 'auto'):
        return potential
    if not isinstance(potential, LennardJones):
        raise ValidationTypeError(
            f"`potential` must be a LennardJones, an r_min in angstrom, "
            f"'auto' or None, got {potential!r}")
    if potential.positions_space.shape[1] != ndim:
        raise ValidationError(
            f'the potential is for {potential.positions_space.shape[1]}D '
            f'positions, the atoms are {ndim}D')
    return potential


def estimate_r_min(positions, sigma):
    """Equilibrium distance for ``potential='auto'``, or None.

    From the atoms of an energy-free reconstruction: the nearest-neighbour
    distance of the lattice they sit on, ignoring pairs closer than
    ``2 sigma`` (without the energy, two atoms often share one site, and
    the data cannot tell apart two atoms closer than about ``2 sigma``
    anyway).

    - 2D: the upper quartile over the atoms of the distance to the nearest
      other atom at least ``2 sigma`` away (few-angle ghosts shorten some
      of these distances, while a lattice's nearest-neighbour distances are
      all alike);
    - 3D: the mode of the distances to each atom's 6 nearest neighbours
      (a kernel density estimate, 3 % bandwidth): the first shell of fcc,
      bcc and simple cubic lattices alike, where ghosts and surface atoms
      spread the tail. Measured from 5 tilts in +-70 degrees: on a
      simulated 54-atom decahedron the quartile was 17 % short of the true
      spacing, the mode 0.5 % long; on the abTEM 140-atom octahedron
      (from the images alone) 10 % and 0.6 % short; octahedra of 44 and 146
      atoms 0.0-0.1 %, a 55-atom icosahedron 3 % long. In 2D the mode was
      worse than the quartile at generic angles (the second shell
      competes) and is not used.

    Examples
    --------
    >>> grid = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1)
    >>> estimate_r_min(2.5 * grid.reshape(-1, 2), sigma=0.4)
    2.5
    >>> cube = np.stack(np.meshgrid(*[np.arange(4)] * 3), -1).reshape(-1, 3)
    >>> round(estimate_r_min(2.0 * cube, sigma=0.3), 2)
    2.0
    """
    positions = np.asarray(positions, dtype=float)
    n = positions.shape[0]
    if n < 2:
        return None
    if positions.shape[1] == 3:
        return _distance_mode(positions, sigma, min(n - 1, 6))
    k = min(n, 8)
    dist = cKDTree(positions).query(positions, k=k)[0][:, 1:]
    dist = np.where(dist >= 2 * sigma, dist, np.inf)
    nearest = dist.min(axis=1)
    nearest = nearest[np.isfinite(nearest)]
    return float(np.percentile(nearest, 75)) if nearest.size else None


def _distance_mode(positions, sigma, k, bandwidth=0.03):
    """Mode of the distances to each atom's ``k`` nearest neighbours beyond
    ``2 sigma`` (Gaussian kernel density, ``bandwidth`` relative to their
    median), or None."""
    dist = cKDTree(positions).query(positions, k=k + 1)[0][:, 1:].ravel()
    dist = dist[np.isfinite(dist) & (dist >= 2 * sigma)]
    if dist.size < 3:
        return None
    width = bandwidth * float(np.median(dist))
    grid = np.linspace(dist.min(), dist.max(), 2000)
    density = np.zeros(grid.size)
    for chunk in np.array_split(dist, max(1, dist.size // 2000)):
        density += np.exp(-0.5 * ((grid[:, None] - chunk[None]) / width)
                          ** 2).sum(axis=1)
    return float(grid[np.argmax(density)])


def expected_atoms(operator, data, min_weight=1.0):
    """Return how many atoms of weight ``min_weight`` the data hold.

    Every projection of an atom integrates to its weight, so the total of a
    projection (median over the angles, robust to a truncated one) divided by
    the weight is the atom count.
    """
    data = np.asarray(getattr(data, 'data', data), dtype=float)
    data = data.reshape(operator.range.shape)
    det_cell = float(np.prod(operator.range.partition.cell_sides[
        operator.range.ndim - (operator.domain.ndim - 1):]))
    per_angle = data.reshape(operator.frame.n_angles, -1).sum(axis=1) * det_cell
    return max(float(np.median(per_angle)), 0.0) / float(min_weight)


def atom_operator(operator):
    """Return ``(transform, scale)`` with ``operator == scale * transform``.

    Solvers need the `GaussianRayTransform` itself (it carries the atom
    model: geometry, box, atom width). A positive scalar multiple of one
    (``2 * op``, ``op * 2``, nested) is the same model with every atom's
    intensity multiplied by the scale, which is how `Problem` treats it.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import SparseMeasureSpace, GaussianRayTransform
    >>> space = SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.3)
    >>> atom_operator(2 * op)[1]
    2.0
    >>> atom_operator(odl.IdentityOperator(odl.rn(3)))
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationTypeError: the solvers need an operator that carries the atom model: a GaussianRayTransform or a positive multiple of one (2 * op); got IdentityOperator
    """
    scale = 1.0
    inner = operator
    while not isinstance(inner, GaussianRayTransform):
        if isinstance(inner, (odl.OperatorLeftScalarMult,
                              odl.OperatorRightScalarMult)):
            value = inner.scalar
            if not (isinstance(value, numbers.Real) and value > 0):
                raise ValidationError(
                    f'a multiple of the atom operator needs a positive real '
                    f'scale (an atom intensity), got {value!r}')
            scale *= float(value)
            inner = inner.operator
            continue
        raise ValidationTypeError(
            f'the solvers need an operator that carries the atom model: a '
            f'GaussianRayTransform or a positive multiple of one (2 * op); '
            f'got {type(operator).__name__}')
    return inner, scale


def _check_noise_std(noise_std):
    if noise_std is None:
        return None
    try:
        value = float(noise_std)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f'`noise_std` must be a number >= 0 or None, '
                              f'got {noise_std!r}') from exc
    if not (math.isfinite(value) and value >= 0):
        raise ValidationError(f'`noise_std` must be a number >= 0 or None, '
                              f'got {noise_std!r}')
    return value


class Problem:

    """Data, atom model, prior and noise: what a solver is asked to solve.

    Parameters
    ----------
    operator : `GaussianRayTransform`
        The forward operator: geometry, box and atom width. A positive
        multiple of one (``2 * op``) scales every atom's intensity.
    data : element of ``operator.range`` (or of a projection space of the
        same geometry, e.g. float32 for ASTRA), or an array of its shape
    alpha : float, optional
        Dimensionless energy weight: ``lambda = alpha * E_atom / epsilon``
        with ``E_atom`` the data energy of one atom of the smallest allowed
        weight (`odl_atoms.objective`). ``0`` reconstructs from the data
        alone. Default `~odl_atoms.defaults.DEFAULT_ALPHA`.
    potential : `LennardJones`, float, 'auto' or None, optional
        The pair potential. A float is the equilibrium distance ``r_min``
        (the lattice's nearest-neighbour distance, angstrom) of
        `default_lennard_jones`. ``'auto'`` (default): the solver estimates
        it from an energy-free reconstruction first (`estimate_r_min`).
        ``None``: no energy.
    weights : float, sequence or mapping, optional
        Allowed atom weights: one number (a single species), a sequence, or
        a mapping ``{label: weight}`` for several species
        (`~odl_atoms.weights.allowed_weights`). Default None: one species of
        weight 1 (and pixel methods keep the weights they estimate).
    noise_std : float, optional
        Standard deviation of the data noise per data value, if known (0 for
        noise-free data): the solvers' stopping rules and the discrepancy
        principle use it. For noise that varies from value to value
        (Poisson-Gaussian), the root-mean-square standard deviation
        (`Calibration.noise_std <odl_atoms.calibration.Calibration.noise_std>`),
        whose ``N noise_std^2`` is the expected squared noise norm the
        discrepancy principle needs
        (`~odl_atoms.parameter_choice.discrepancy_bound`).
    max_atoms : int, optional
        Guard on the number of atoms. Default (`default_max_atoms`): twice
        the atoms the data hold at the smallest weight, plus 10.

    Attributes
    ----------
    operator : `GaussianRayTransform`
        The atom model (a scalar multiple unwrapped into ``intensity``).
    data : element of ``operator.range``
    intensity : float
        Data of an atom of weight 1 relative to ``operator``'s (1 unless a
        multiple of the operator was given).
    labels, allowed : numpy.ndarray
        The allowed species and their weights in the operator's units (the
        given weights times ``intensity``).

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
    >>> problem = Problem(op, op(truth), alpha=0)
    >>> round(problem.expected_atoms(), 6)
    3.0
    >>> problem.objective()(truth.positions, truth.weights)
    0.0
    """

    def __init__(self, operator, data, alpha=DEFAULT_ALPHA, potential='auto',
                 weights=None, noise_std=None, max_atoms=None):
        self.operator, self.intensity = atom_operator(operator)
        self.data = as_data(self.operator.range, data)
        self.alpha = check_alpha(alpha)
        self.potential = parse_potential(self.operator.domain.ndim, potential)
        self.weights = weights
        self.labels, given = allowed_weights(1.0 if weights is None
                                             else weights)
        self.allowed = given * self.intensity
        self.noise_std = _check_noise_std(noise_std)
        if max_atoms is not None and not (
                isinstance(max_atoms, numbers.Integral)
                and not isinstance(max_atoms, bool) and max_atoms >= 1):
            raise ValidationError(f'`max_atoms` must be None or an int >= 1, '
                                  f'got {max_atoms!r}')
        self.max_atoms = None if max_atoms is None else int(max_atoms)

    # --- What the solvers read

    @property
    def space(self):
        """The `SparseMeasureSpace` of the atoms (the operator's domain)."""
        return self.operator.domain

    @property
    def ndim(self):
        """Dimension of the atoms, 2 or 3."""
        return self.operator.domain.ndim

    @property
    def sigma(self):
        """Atom width of the model (angstrom)."""
        return self.operator.sigma

    @property
    def has_energy(self):
        """Whether the objective has an energy term (alpha > 0, a potential)."""
        return self.alpha > 0 and self.potential is not None

    def objective(self, alpha=None):
        """Return the problem's `AtomObjective` (``alpha`` to override).

        An ``'auto'`` potential has no objective yet: the solvers resolve it
        (`with_potential`) before they minimise with energy.
        """
        alpha = self.alpha if alpha is None else alpha
        potential = self.potential
        if isinstance(potential, str):
            if alpha > 0:
                raise ValueError("the potential is 'auto': estimate its r_min "
                                 'first (Problem.with_potential)')
            potential = None
        return AtomObjective(self.operator, self.data,
                             alpha if potential is not None else 0.0,
                             potential, reference_weight=self.allowed.min())

    def expected_atoms(self):
        """How many atoms of the smallest allowed weight the data hold."""
        return expected_atoms(self.operator, self.data, self.allowed.min())

    def default_max_atoms(self):
        """``max_atoms``, or twice the atoms the data hold plus 10."""
        if self.max_atoms is not None:
            return self.max_atoms
        return int(np.ceil(2 * self.expected_atoms())) + 10

    # --- Variants

    def _replace(self, **changes):
        new = copy.copy(self)
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    def with_alpha(self, alpha):
        """The same problem with energy weight ``alpha``."""
        return self._replace(alpha=check_alpha(alpha))

    def with_noise_std(self, noise_std):
        """The same problem with another noise level (None: unknown)."""
        return self._replace(noise_std=_check_noise_std(noise_std))

    def with_potential(self, potential):
        """The same problem with another potential (an r_min, a
        `LennardJones`, ``'auto'`` or None)."""
        return self._replace(potential=parse_potential(self.ndim, potential))

    # --- Measures in and out

    def measure(self, positions, weights, labels):
        """The `SparseMeasure` of atoms at ``positions`` (clipped to the box),
        with weights in the units the problem was given in."""
        space = self.operator.domain
        return space.element(
            np.clip(positions, space.min_pt, space.max_pt),
            weights=np.asarray(weights, float) / self.intensity,
            species=labels)

    def arrays(self, measure):
        """``(positions, weights, labels)`` of a measure, weights in the
        operator's units (the inverse of `measure`)."""
        if not isinstance(measure, SparseMeasure):
            raise TypeError(
                f"an initial configuration must be a SparseMeasure (e.g. "
                f"another solver's result.measure), got "
                f"{type(measure).__name__}")
        measure = self.operator.domain.element(measure)
        return (np.array(measure.positions, dtype=float),
                np.array(measure.weights, dtype=float) * self.intensity,
                np.array(measure.species))

    def __repr__(self):
        args = [repr(self.operator), 'data']
        if self.intensity != 1.0:
            args[0] = f'{self.intensity!r} * {self.operator!r}'
        for name, default in (('alpha', DEFAULT_ALPHA), ('potential', 'auto'),
                              ('weights', None), ('noise_std', None),
                              ('max_atoms', None)):
            value = getattr(self, name)
            if name == 'potential' and isinstance(value, LennardJones):
                args.append(f'potential={value!r}')
                continue
            if isinstance(value, np.ndarray) or value != default:
                args.append(f'{name}={value!r}')
        return 'Problem(' + ', '.join(args) + ')'
