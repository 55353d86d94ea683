"""How precisely can atom positions be measured? The Cramér-Rao bound.

For data ``y = R(x) + e`` with independent Gaussian noise ``e_j ~ N(0, s_j^2)``
and atom positions ``x`` (all ``n * d`` coordinates; weights and ``sigma``
known), the Fisher information of the positions is

    F = J^T diag(1 / s^2) J,        J = d R(x) / d x  (data x n d),

and every **unbiased** estimator ``x_hat`` of the positions has covariance at
least ``inv(F)`` (Cramér-Rao): ``E |x_hat_i - x_i|^2 >= trace(inv(F)_ii)`` for
each atom ``i`` (its ``d x d`` block). `position_crb` computes ``F``, the
bound and its per-atom and overall root-mean-square values.

What the bound does and does not say:

- It bounds *unbiased* estimators, and the least-squares fit of the data
  alone reaches it at high signal-to-noise ratio. A reconstruction with the
  energy prior (``alpha > 0``) is biased towards the potential's preferred
  configuration and can beat it, e.g. on a perfect lattice; it can be worse
  where the prior pulls atoms away from the truth.
- Model errors (wrong ``sigma``, wrong weights, a misaligned geometry) are not
  included; neither is the search failing to find the least-squares fit.
- Where ``F`` is singular, some combination of positions does not change the
  data at first order: atoms that lie on one ray at *every* angle (columns of
  a lattice seen along zone axes) can move against each other along that ray.
  No unbiased estimator of those combinations exists; the bound of the atoms
  involved is infinite and `PositionCRB.undetermined` lists them.
"""

import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from odl_atoms.operators import GaussianRayTransform

__all__ = ('position_crb', 'PositionCRB')


@dataclass(frozen=True, repr=False)
class PositionCRB:

    """The Cramér-Rao bound on atom positions (result of `position_crb`).

    All lengths are in the units of the positions (angstrom); the ``*_cells``
    attributes divide by the detector cell size.

    Attributes
    ----------
    fisher : numpy.ndarray, shape ``(n d, n d)``
        Fisher information of the coordinates, atom-major order
        (``x_0, y_0, x_1, y_1, ...``).
    covariance : numpy.ndarray, shape ``(n d, n d)``
        Lower bound on the covariance of unbiased estimators: ``inv(fisher)``,
        or its pseudo-inverse when ``fisher`` is singular (then it bounds only
        the combinations of coordinates the data determine).
    atom_rms : numpy.ndarray, shape ``(n,)``
        Per-atom root-mean-square error bound ``sqrt(trace(covariance_ii))``;
        ``inf`` for `undetermined` atoms.
    rmsd : float
        Bound on the RMSD over all atoms, ``sqrt(mean_i atom_rms_i^2)``
        (the matched-atom RMSD of `match_atoms` when every atom is matched);
        ``inf`` if any atom is undetermined.
    undetermined : numpy.ndarray of int
        Indices of the atoms some coordinate of which lies (partly) in the
        null space of ``fisher``.
    null_dim : int
        Dimension of that null space (0 when every position is determined).
    cell : float
        Detector cell size along the first detector axis (the convention of
        ``benchmarks/defects.py``).
    """

    fisher: np.ndarray
    covariance: np.ndarray
    atom_rms: np.ndarray
    rmsd: float
    undetermined: np.ndarray
    null_dim: int
    cell: float

    @property
    def n_atoms(self):
        """Number of atoms."""
        return self.atom_rms.shape[0]

    @property
    def ndim(self):
        """Spatial dimension."""
        return self.fisher.shape[0] // max(self.n_atoms, 1)

    @property
    def rmsd_cells(self):
        """`rmsd` in detector cells."""
        return self.rmsd / self.cell

    @property
    def atom_rms_cells(self):
        """`atom_rms` in detector cells."""
        return self.atom_rms / self.cell

    def atom_covariance(self, index):
        """Return the ``d x d`` covariance bound of atom ``index``."""
        d = self.ndim
        sl = slice(index * d, (index + 1) * d)
        return self.covariance[sl, sl]

    def __repr__(self):
        return (f'{type(self).__name__}(n_atoms={self.n_atoms}, '
                f'ndim={self.ndim}, rmsd={self.rmsd:.4g} '
                f'({self.rmsd_cells:.4g} cells), '
                f'undetermined={self.undetermined.size} atoms)')


def position_crb(operator, measure, noise_std, rtol=1e-10):
    """Return the Cramér-Rao lower bound on the positions of ``measure``'s atoms.

    The Fisher information of all coordinates is ``F = J^T J / noise_std^2``,
    ``J`` the Jacobian of the data values with respect to the positions at
    ``measure`` (weights and ``sigma`` held fixed, i.e. known). ``inv(F)``
    bounds the covariance of every unbiased estimator of the positions.

    The bound holds for unbiased estimators; least squares on the data alone
    reaches it at high signal-to-noise ratio. A reconstruction with the
    Lennard-Jones prior (``alpha > 0``) is biased and can beat it. Model errors
    (``sigma``, weights, geometry) are not included.

    Parameters
    ----------
    operator : `GaussianRayTransform`
        The forward operator of the measurement (its geometry, ``sigma`` and
        detector model), e.g. ``ProjectionData.operator()``.
    measure : `SparseMeasure`
        The configuration at which to evaluate the bound (the truth), an
        element of ``operator.domain``.
    noise_std : positive float or array-like
        Standard deviation of the Gaussian noise of one data value, in data
        units (``ProjectionData.noise_std``), or an array of the data's shape
        for independent noise of different size per cell (e.g. the variance
        ``y / (dose * cell)`` of Poisson noise at a high dose).
    rtol : float, optional
        Eigenvalues of ``F`` below ``rtol`` times the largest count as zero
        (undetermined directions: a bound more than ``rtol^(-1/2)`` times the
        best-determined direction's is no bound in practice).

    Returns
    -------
    bound : `PositionCRB`

    Notes
    -----
    ``J`` is built sparse, from each atom's window of detector cells, and
    ``F`` dense: memory ``8 (n d)^2`` bytes and time ``O((n d)^3)`` for its
    eigendecomposition, which is fine up to a few thousand atoms (1000 atoms in
    3D: a 3000 x 3000 matrix, 72 MB, seconds).

    Examples
    --------
    One atom seen from three angles, on a fine detector:

    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import SparseMeasureSpace
    >>> space = SparseMeasureSpace([-5, -5], [5, 5])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-8, 8, 256))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.4)
    >>> bound = position_crb(op, space.element([[0.5, -1.0]]), noise_std=0.01)
    >>> bound
    PositionCRB(n_atoms=1, ndim=2, rmsd=0.001948 (0.03116 cells), undetermined=0 atoms)

    The same from the analytic Fisher information of one Gaussian,
    ``w^2 / (4 sqrt(pi) sigma^3 h s^2)`` per projection on cells of size
    ``h``, summed over the angles (here ``sum e e^T = 3/2 I``):

    >>> per_angle = 1 / (4 * np.sqrt(np.pi) * 0.4 ** 3 * (16 / 256) * 0.01 ** 2)
    >>> float(np.sqrt(2 / (1.5 * per_angle)))
    0.00194...

    Two atoms on one column, seen at 0 and 90 degrees, can move against each
    other along the column without changing the data at first order:

    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.nonuniform_partition([0, np.pi / 2]),
    ...     odl.uniform_partition(-8, 8, 64))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.4)
    >>> bound = position_crb(op, space.element([[0, -1], [0, 1]]), 0.01)
    >>> bound.undetermined, bound.rmsd
    (array([0, 1]), inf)
    """
    if not isinstance(operator, GaussianRayTransform):
        raise TypeError(
            f'`operator` must be a GaussianRayTransform (the forward operator '
            f'on measures, e.g. ProjectionData.operator()), got '
            f'{type(operator).__name__}')
    if measure not in operator.domain:
        raise ValueError(
            f'`measure` must be an element of the operator\'s domain '
            f'{operator.domain!r}; build it with operator.domain.element('
            f'positions, weights), got {measure!r}')
    n, d = measure.positions.shape
    if n == 0:
        raise ValueError('`measure` has no atoms: there are no positions to '
                         'bound')
    std = _check_noise_std(noise_std, operator.range.shape)
    rtol = float(rtol)
    if not 0 <= rtol < 1:
        raise ValueError(f'`rtol` must be in [0, 1), got {rtol}')

    # J is sparse: atom i touches only its windows of cells (all angles),
    # so build it from the stencil instead of applying the Jacobian to n d
    # unit vectors (n d full projections of all atoms: O(n^2)).
    index, deriv = operator.stencil(measure.positions).position_derivatives(
        measure.weights)
    if std.ndim == 0:
        deriv = deriv / float(std)
    else:
        deriv = deriv / std.ravel()[index][:, None, :]
    rows = np.broadcast_to(index[:, None, :], deriv.shape)
    cols = np.broadcast_to(np.arange(n * d).reshape(n, d, 1), deriv.shape)
    jac = scipy.sparse.csr_matrix(
        (deriv.ravel(), (rows.ravel(), cols.ravel())),
        shape=(int(np.prod(operator.range.shape)), n * d))
    fisher = (jac.T @ jac).toarray()
    fisher = 0.5 * (fisher + fisher.T)  # exactly symmetric for eigh

    eigval, eigvec = np.linalg.eigh(fisher)
    keep = eigval > rtol * max(eigval[-1], 0.0)
    if eigval[-1] <= 0:
        keep[:] = False
    covariance = (eigvec[:, keep] / eigval[keep]) @ eigvec[:, keep].T
    # A coordinate with a component in the null space of F has no finite
    # bound; rounding leaves components of ~1e-8 in determined coordinates,
    # genuine null directions have components of at least 1/sqrt(n d).
    null_weight = np.sum(eigvec[:, ~keep] ** 2, axis=1).reshape(n, d)
    undetermined = np.flatnonzero(np.any(null_weight > 1e-6, axis=1))
    blocks = np.einsum('ijij->i', covariance.reshape(n, d, n, d))
    atom_rms = np.sqrt(np.maximum(blocks, 0.0))
    atom_rms[undetermined] = np.inf
    rmsd = float(np.sqrt(np.mean(atom_rms ** 2)))
    cell = float(operator.geometry.det_partition.cell_sides[0])
    return PositionCRB(fisher=fisher, covariance=covariance, atom_rms=atom_rms,
                       rmsd=rmsd, undetermined=undetermined,
                       null_dim=int(np.sum(~keep)), cell=cell)


def _check_noise_std(noise_std, shape):
    if isinstance(noise_std, numbers.Real):
        std = np.asarray(float(noise_std))
    else:
        std = np.asarray(getattr(noise_std, 'data', noise_std), dtype=float)
        if std.ndim == 0:
            pass
        elif std.shape != tuple(shape):
            raise ValueError(
                f'`noise_std` must be a number or an array of the data shape '
                f'{tuple(shape)}, got shape {std.shape}')
    if not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise ValueError(
            f'`noise_std` (the Gaussian noise std of one data value) must be '
            f'positive and finite, got {noise_std!r}; with noise-free data '
            f'the bound is 0')
    return std
