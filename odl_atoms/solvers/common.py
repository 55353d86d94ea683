"""Pieces the atom solvers (ADCG, simulated annealing) share.

- `check_alpha`: the dimensionless energy weight must be a number >= 0;
- `default_potential`, `default_lennard_jones`, `parse_potential`: what
  ``potential=`` means (a `LennardJones`, an equilibrium distance
  ``r_min``, ``'auto'`` or None);
- `estimate_r_min`: the equilibrium distance for ``'auto'``, from a
  reconstruction made without energy;
- `expected_atoms`: how many atoms the data hold (total projected weight).
"""

import numbers

import numpy as np
import odl
from scipy.spatial import cKDTree

from odl_atoms.functionals import LennardJones
from odl_atoms.projection import SeparableGrid, Stencil

__all__ = ('check_alpha', 'default_potential', 'default_lennard_jones',
           'parse_potential', 'estimate_r_min', 'expected_atoms',
           'scoring_discr', 'scoring_grid')


def check_alpha(alpha):
    """Return ``alpha`` as a float, or raise if it is not a number >= 0."""
    try:
        alpha = float(alpha)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'`alpha` (the energy weight) must be a number >= 0, '
                         f'got {alpha!r}') from exc
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(
            f'`alpha` (the energy weight) must be a number >= 0, got {alpha}')
    return alpha


def default_potential(operator, r_min):
    """Return the solvers' default potential with equilibrium distance ``r_min``.

    `default_lennard_jones` in the dimension of ``operator``'s atoms.
    """
    return default_lennard_jones(operator.domain.ndim, r_min)


def default_lennard_jones(ndim, r_min):
    """Return the default Lennard-Jones potential for ``ndim``-D atoms.

    Lennard-Jones with ASE's smooth (force-continuous) cut-off, which keeps the
    objective differentiable for L-BFGS-B, and an inner core at half the
    Lennard-Jones ``sigma``: finite (no inf/NaN when atoms meet) yet so high
    (about 1e5 well depths) that two atoms never share a site to fit a column
    of double weight. The solvers use it for ``potential=r_min``, and
    `odl_atoms.relax_defect` relaxes phantoms under it.
    """
    r_min = float(r_min)
    if not r_min > 0:
        raise ValueError(f'`r_min` must be positive, got {r_min}')
    return LennardJones.from_r_min(odl.rn((2, ndim)), r_min, smooth=True,
                                   core_radius=0.5 * r_min / 2 ** (1 / 6))


def parse_potential(operator, potential):
    """Return ``potential`` as a `LennardJones`, ``'auto'`` or None.

    A number is the equilibrium distance ``r_min`` of `default_potential`.
    """
    d = operator.domain.ndim
    if isinstance(potential, numbers.Real) and not isinstance(potential, bool):
        return default_potential(operator, potential)
    if potential is None or (isinstance(potential, str) and potential == 'auto'):
        return potential
    if not isinstance(potential, LennardJones):
        raise TypeError(
            f"`potential` must be a LennardJones, an r_min in angstrom, "
            f"'auto' or None, got {potential!r}")
    if potential.positions_space.shape[1] != d:
        raise ValueError(
            f'the potential is for {potential.positions_space.shape[1]}D '
            f'positions, the atoms are {d}D')
    return potential


def estimate_r_min(positions, sigma):
    """Equilibrium distance for ``potential='auto'``, or None.

    The upper quartile over the atoms of the distance to the nearest other
    atom at least ``2 sigma`` away. Without the energy, two atoms often share
    one site (their data fit a site of double weight next to an empty one),
    and the data cannot tell apart two atoms closer than about ``2 sigma``
    anyway; counting such pairs would make the estimate a fraction of the
    lattice spacing. Few-angle ghosts (atoms bunched along the rays of one
    projection) still shorten some distances, while a lattice's
    nearest-neighbour distances are all alike: the upper quartile, not the
    median, is the lattice's.

    Examples
    --------
    >>> grid = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1)
    >>> estimate_r_min(2.5 * grid.reshape(-1, 2), sigma=0.4)
    2.5
    """
    positions = np.asarray(positions, dtype=float)
    n = positions.shape[0]
    if n < 2:
        return None
    k = min(n, 8)
    dist = cKDTree(positions).query(positions, k=k)[0][:, 1:]
    dist = np.where(dist >= 2 * sigma, dist, np.inf)
    nearest = dist.min(axis=1)
    nearest = nearest[np.isfinite(nearest)]
    return float(np.percentile(nearest, 75)) if nearest.size else None


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


def scoring_discr(space, spacing):
    """The regular grid of `scoring_grid` (cells about ``spacing`` wide)."""
    shape = np.maximum(np.round((space.max_pt - space.min_pt) / spacing),
                       1).astype(int)
    return odl.uniform_discr(space.min_pt, space.max_pt, shape)


def scoring_grid(operator, spacing):
    """Return a regular grid over the box, its stencil and ``||g_x||^2``.

    The grid on which ADCG scores candidate atoms and annealing samples
    additions: points about ``spacing`` apart (cell centres), a stencil
    whose ``correlate(data)`` gives ``<g_x, data>`` for every point, and the
    squared norms of the unit atoms' data. With a single tilt axis along a
    box axis (the usual 3D tilt series) the correlations are matrix
    products (`SeparableGrid`): O(grid) BLAS work and no stored windows;
    otherwise a `Stencil`, evaluated in chunks.

    Returns
    -------
    points : (p, d) numpy.ndarray
    stencil : `Stencil` or `SeparableGrid`
    norms : (p,) numpy.ndarray
    """
    space = operator.domain
    discr = scoring_discr(space, spacing)
    points = discr.points()
    stencil = None
    if space.ndim == 3:
        stencil = SeparableGrid.build(
            operator.frame, discr.partition.coord_vectors, operator.sigma,
            operator.truncate, operator.mode)
    if stencil is None:
        stencil = Stencil(operator.frame, points, operator.sigma,
                          operator.truncate, operator.mode)
    return points, stencil, stencil.self_inner()
