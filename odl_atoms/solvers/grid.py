"""The candidate grid: where atom solvers look for atoms to add.

ADCG scores every point of a regular grid over the box for the addition of
one atom; simulated annealing draws its additions from the same scores.
"""

import numpy as np
import odl

from odl_atoms.projection import SeparableGrid, Stencil

__all__ = ('scoring_discr', 'scoring_grid')


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
