"""The exact ray transform of Gaussian atoms, as ODL operators.

`GaussianRayTransform` maps an atomic configuration ``mu = sum_i w_i delta_{x_i}``
(an element of a `SparseMeasureSpace`) to the projections of
``G_sigma * mu`` in the projection space of ODL's ASTRA-backed ``RayTransform``
for the same geometry. It is linear in the measure. Solvers that move atoms use

- `GaussianRayTransform.parametrized`: the same map on the fixed-size space of
  ``n`` positions and weights, a nonlinear ODL operator whose
  `~GaussianAtomsTransform.derivative` is the Jacobian
  (`GaussianRayTransformJacobian`, linear, with an adjoint);
- `GaussianRayTransform.correlation`: the map ``x -> <R(G * delta_x), r>`` for a
  residual ``r`` (the exact Gaussian-filtered back-projection) and its
  gradient, at arbitrary points;
- `GaussianRayTransform.adjoint` (a `GaussianBackProjection`): that map as a
  linear ODL operator from the data space into functions on the box, sampled
  on a grid. It is the adjoint of the operator on measures for the dual
  pairing ``<mu, f> = sum_i w_i f(x_i)``; its range is a function space, not
  the space of measures.

Where ODL needs an adjoint that maps back into the domain (power-method norm
estimates, gradients of composed functionals, smooth solvers), use the
operator on ``n`` atoms, ``op.parametrized(n)``, whose derivative has an
adjoint into ``ProductSpace(rn((n, d)), rn(n))``.

The range can live on either of ODL's array backends: ``impl='numpy'`` (the
default) or ``impl='pytorch'`` with a ``device`` (``'cpu'``, ``'cuda'``), where
the projections, the Jacobian and its adjoint and the correlation run as
torch kernels on that device (`odl_atoms.projection_torch`), so the same code
uses a GPU when there is one. The domain (atoms: positions and weights) stays
on the host; only those small arrays are copied to the device.

Projections may sit shifted on the detector (drift, a tilt-axis offset):
``detector_shifts`` (one shift per projection and detector axis) moves every
atom's projection at that angle; `GaussianRayTransform.shifted` returns the
same operator with other shifts (`odl_atoms.alignment` estimates them). The
data space is unchanged.
"""

import copy
import numbers

import numpy as np
import odl

from odl_atoms.geometry import (DetectorFrame, as_data,
                                check_detector_shifts,
                                check_parallel_geometry, projection_space)
from odl_atoms.projection import MODES, SeparableGrid, Stencil
from odl_atoms.space import SparseMeasureSpace

__all__ = ('GaussianRayTransform', 'GaussianAtomsTransform',
           'GaussianRayTransformJacobian', 'GaussianBackProjection')

#: Grid points per stencil when a grid is evaluated in pieces (bounds the
#: stencil's memory to some tens of MB for 3D windows).
_GRID_CHUNK = 4096


def _check_sigma(sigma):
    if not isinstance(sigma, numbers.Real) or not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(
            f'`sigma` (the Gaussian std of an atom, in angstrom) must be a '
            f'positive number, got {sigma!r}')
    return float(sigma)


def _to_numpy(arr):
    """Host NumPy copy of a torch tensor (or an array)."""
    if hasattr(arr, 'detach'):
        return arr.detach().cpu().numpy()
    return np.asarray(arr)


class GaussianRayTransform(odl.Operator):

    """Exact parallel-beam projection of Gaussian atoms.

    For ``mu = sum_i w_i delta_{x_i}`` the result is ``sum_i w_i R(G * delta_{x_i})``,
    where ``G`` is the normalised isotropic Gaussian of standard deviation
    ``sigma`` and ``R`` the ray transform: each atom becomes a normalised
    Gaussian of the same ``sigma`` on the detector, centred where the atom
    projects. The total of every projection is therefore ``sum_i w_i`` (per unit
    detector length/area).

    Parameters
    ----------
    domain : `SparseMeasureSpace`
        Space of atomic configurations; its dimension must match the geometry.
    geometry : `odl.applications.tomo.Geometry`
        A parallel-beam geometry with a flat detector: ``Parallel2dGeometry``,
        ``Parallel3dAxisGeometry`` or ``Parallel3dEulerGeometry``.
    sigma : positive float
        Standard deviation of an atom's Gaussian (thermal motion and blur), in
        angstrom.
    mode : {'integrate', 'sample'}, optional
        ``'integrate'`` (default): each data value is the average of the
        projected Gaussian over the detector cell (difference of ``erf`` at the
        cell edges), exact for atoms of any size. ``'sample'``: its value at the
        cell centre, as a pixel-based ray transform approximates it.
    truncate : positive float, optional
        Each atom touches the detector cells within ``truncate * sigma`` of its
        projection (mass lost beyond it: ``2 * ndtr(-truncate)``, 2e-9 for the
        default 6).
    dtype : optional
        Data type of the range; ``'float64'`` by default, ``'float32'`` to match
        ASTRA's CPU backend directly.
    impl : {'numpy', 'pytorch'}, optional
        ODL array backend of the range (the names ODL's spaces use). With
        ``'pytorch'`` the data are ``torch.Tensor`` s and the operator computes
        them with torch on ``device``; this needs torch installed.
    device : str, optional
        ``'cpu'`` (default) or, with ``impl='pytorch'``, a CUDA device
        (``'cuda'`` or ``'cuda:<i>'``); asking for CUDA where torch sees none
        raises a `ValueError`.
    detector_shifts : array-like, shape ``(m, k)``, optional
        Shift of each projection along the detector axes, in angstrom
        (``m`` projections in the order of the projection space, ``k = d -
        1`` detector axes; ``(m,)`` for a 1D detector): an atom at ``x``
        lands at ``u = axes[a] @ x + offsets[a] + detector_shifts[a]`` (see
        `~odl_atoms.geometry.DetectorFrame`). Default: no shift. ODL's
        geometry (and ASTRA's transform built from it) does not see them.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> space = SparseMeasureSpace([-5, -5], [5, 5])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-8, 8, 64))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.4)
    >>> data = op(space.element([[0, 0], [2, 1]]))
    >>> data.shape
    (3, 64)

    Every projection holds the total weight (two atoms of weight 1):

    >>> cell = 16 / 64
    >>> np.round(data.data.sum(axis=1) * cell, 6)
    array([ 2.,  2.,  2.])

    **The adjoint.** The dual of a space of measures is a space of continuous
    functions: ``op.adjoint`` maps data ``r`` to the function
    ``f(x) = <g_x, r>_Y``, ``g_x`` the data of a unit atom at ``x`` (the
    correlation map ADCG maximises), sampled on a grid over the box (cells
    ``sigma / 2`` wide; `correlation_operator` takes another grid or
    spacing). It is the adjoint for the dual pairing
    ``<mu, f> = sum_i w_i f(x_i)``: for atoms on the grid's points,
    ``<op(mu), r>_Y = sum_i w_i f(x_i)`` with ``f = op.adjoint(r)``.

    >>> r = data
    >>> f = op.adjoint(r)
    >>> f.space
    uniform_discr([-5., -5.], [ 5.,  5.], (50, 50))
    >>> x = f.space.points()[[100, 312]]
    >>> mu = space.element(x, weights=[1.0, -2.0])
    >>> lhs = op.range.inner(op(mu), r)
    >>> rhs = 1.0 * f.data.ravel()[100] - 2.0 * f.data.ravel()[312]
    >>> bool(np.isclose(lhs, rhs))
    True

    What it is not: its range is not ``op.domain``, so ODL code that needs
    the adjoint to map back into the domain cannot use it. The power method
    behind ``op.norm(estimate=True)`` is one (it raises and says so), and
    the gradient of a functional composed with ``op`` another: such a
    gradient would be a function, not a measure. Both work on the operator
    on ``n`` atoms, ``op.parametrized(n)`` (a nonlinear operator on
    positions and weights), whose derivative has an adjoint into its
    domain:

    >>> atoms_op = op.parametrized(2)
    >>> p = atoms_op.domain.element([[[0, 0], [2, 1]], [1, 1]])
    >>> jac_norm = atoms_op.derivative(p).norm(estimate=True)
    >>> misfit = 0.5 * odl.functionals.L2NormSquared(op.range).translated(
    ...     data) @ atoms_op
    >>> misfit(p)
    0.0
    >>> grad = misfit.gradient(p + atoms_op.domain.element([[[0.1, 0], [0, 0]],
    ...                                                      [0, 0]]))
    >>> grad.space
    ProductSpace(rn((2, 2)), rn(2))
    >>> bool(grad[0].data[0, 0] > 0)  # the misfit grows with the shift
    True

    **Detector shifts.** Moving the first projection by one cell (0.25)
    moves its data by one cell:

    >>> moved = op.shifted([[0.25], [0.0], [0.0]])
    >>> moved.detector_shifts[:, 0]
    array([ 0.25,  0.  ,  0.  ])
    >>> shifted_data = moved(space.element([[0, 0], [2, 1]]))
    >>> bool(np.allclose(shifted_data.data[0, 1:], data.data[0, :-1]))
    True
    >>> bool(np.allclose(shifted_data.data[1:], data.data[1:]))
    True
    """

    def __init__(self, domain, geometry, sigma, mode='integrate', truncate=6.0,
                 dtype='float64', impl='numpy', device='cpu',
                 detector_shifts=None):
        if not isinstance(domain, SparseMeasureSpace):
            raise TypeError(
                f'`domain` must be a SparseMeasureSpace, got {domain!r}')
        check_parallel_geometry(geometry, ndim=domain.ndim)
        if mode not in MODES:
            raise ValueError(f'`mode` must be one of {MODES}, got {mode!r}')
        truncate = float(truncate)
        if not truncate > 0:
            raise ValueError(f'`truncate` must be positive, got {truncate}')
        self.__geometry = geometry
        self.__sigma = _check_sigma(sigma)
        self.__mode = mode
        self.__truncate = truncate
        self.__base_frame = DetectorFrame.from_geometry(geometry)
        range_ = projection_space(geometry, dtype, impl=impl, device=device)
        super().__init__(domain=domain, range=range_, linear=True)
        self.__set_shifts(detector_shifts)

    def __set_shifts(self, shifts):
        """Set the detector shifts: the frame and everything built from it."""
        shifts = check_detector_shifts(shifts, self.__base_frame.offsets.shape)
        self.__shifts = shifts
        self.__shifts.flags.writeable = False
        # Unshifted operators share the geometry's frame object, so that
        # caches keyed on the frame (kernels.Projector.of) are shared too.
        self.__frame = (self.__base_frame.shifted(shifts) if np.any(shifts)
                        else self.__base_frame)
        self.__cache = (None, None)
        self.__device_cache = (None, None)
        self.__adjoint = None
        if self.range.impl == 'pytorch':
            # Imported here so that torch stays optional for the NumPy path.
            from odl_atoms.projection_torch import TorchFrame
            self.__torch_frame = TorchFrame(self.__frame, self.range.device)
        else:
            self.__torch_frame = None

    def shifted(self, shifts):
        """Return this operator with other detector shifts.

        The geometry, spaces and atom model are shared; only the frame's
        offsets are recomputed. The shifts replace this operator's (they are
        not added to them).

        Parameters
        ----------
        shifts : array-like, shape ``(m, k)``, or None
            Shift of each projection along the detector axes, in angstrom
            (``(m,)`` for a 1D detector); None for no shift.

        Returns
        -------
        op : `GaussianRayTransform`
        """
        new = copy.copy(self)
        new.__set_shifts(shifts)
        return new

    # --- Properties

    @property
    def geometry(self):
        """The ODL geometry of the measurement."""
        return self.__geometry

    @property
    def sigma(self):
        """Standard deviation of an atom's Gaussian."""
        return self.__sigma

    @property
    def mode(self):
        """``'integrate'`` (cell averages) or ``'sample'`` (cell centres)."""
        return self.__mode

    @property
    def truncate(self):
        """Window half-width in units of ``sigma``."""
        return self.__truncate

    @property
    def frame(self):
        """The `DetectorFrame` of the geometry, with the detector shifts."""
        return self.__frame

    @property
    def detector_shifts(self):
        """Shift of each projection along the detector, ``(m, k)`` (read-only)."""
        return self.__shifts

    @property
    def impl(self):
        """ODL array backend of the range: ``'numpy'`` or ``'pytorch'``."""
        return self.range.impl

    @property
    def device(self):
        """Device of the range's data (``'cpu'``, ``'cuda:0'``, ...)."""
        return self.range.device

    @property
    def inner_weight(self):
        """Constant weight of the range's inner product (cell size x angle step)."""
        return float(self.range.weighting.const)

    # --- Evaluation

    def stencil(self, positions):
        """Return the `Stencil` of ``positions`` (the last one is cached)."""
        positions = np.asarray(positions, dtype=float)
        last_pos, last = self.__cache
        if last_pos is not None and last_pos.shape == positions.shape and \
                np.array_equal(last_pos, positions):
            return last
        stencil = Stencil(self.frame, positions, self.sigma, self.truncate,
                          self.mode)
        self.__cache = (positions.copy(), stencil)
        return stencil

    def project(self, positions, weights):
        """Return the projection data array of atoms given as arrays.

        This is the NumPy fast path the solvers use (float64, whatever
        `impl` is); ``op(measure)`` is the ODL way and uses the range's
        backend.
        """
        flat = self.stencil(positions).project(np.asarray(weights, dtype=float))
        return flat.reshape(self.range.shape)

    def device_stencil(self, positions):
        """Return the stencil of ``positions`` in the range's backend.

        For ``impl='numpy'`` this is `stencil`; for ``impl='pytorch'`` a
        `~odl_atoms.projection_torch.TorchStencil` on `device`, in the
        range's dtype (the last one is cached).
        """
        if self.__torch_frame is None:
            return self.stencil(positions)
        from odl_atoms.projection_torch import TorchStencil
        positions = np.asarray(positions, dtype=float)
        last_pos, last = self.__device_cache
        if last_pos is not None and last_pos.shape == positions.shape and \
                np.array_equal(last_pos, positions):
            return last
        stencil = TorchStencil(self.__torch_frame, positions, self.sigma,
                               self.truncate, self.mode,
                               dtype=self.range.dtype_identifier)
        self.__device_cache = (positions.copy(), stencil)
        return stencil

    def new_stencil(self, positions, dtype='float64'):
        """Return a new (uncached) stencil of ``positions`` in the range's backend.

        A `Stencil` for ``impl='numpy'``; for ``impl='pytorch'`` a
        `~odl_atoms.projection_torch.TorchStencil` on `device` in ``dtype``.
        For point sets that are not atoms (grids), so that the cached
        stencils of `stencil` and `device_stencil` stay those of the atoms.
        """
        positions = np.asarray(positions, dtype=float)
        if self.__torch_frame is None:
            return Stencil(self.frame, positions, self.sigma, self.truncate,
                           self.mode)
        from odl_atoms.projection_torch import TorchStencil
        return TorchStencil(self.__torch_frame, positions, self.sigma,
                            self.truncate, self.mode, dtype=dtype)

    def _project_data(self, positions, weights):
        """Projection data in the range's backend, dtype and shape."""
        if self.__torch_frame is None:
            return self.project(positions, weights).astype(
                self.range.dtype, copy=False)
        flat = self.device_stencil(positions).project(
            np.asarray(weights, dtype=float))
        return flat.reshape(self.range.shape)

    def _call(self, measure):
        return self._project_data(measure.positions, measure.weights)

    @property
    def adjoint(self):
        """Adjoint: data -> correlation function on a grid over the box.

        The `GaussianBackProjection` of `correlation_operator` with the
        default grid (cells ``sigma / 2`` wide). Its range is a function
        space (an ``odl.uniform_discr``), not `domain`: see the class
        documentation for what it is and is not.
        """
        if self.__adjoint is None:
            self.__adjoint = self.correlation_operator()
        return self.__adjoint

    def correlation_operator(self, grid=None, spacing=None):
        """Return the adjoint on a given grid or with a given spacing.

        Parameters
        ----------
        grid : `odl.DiscretizedSpace`, optional
            A ``uniform_discr`` of the atoms' dimension, usually over the
            box; the function is sampled at its cell centres.
        spacing : positive float, optional
            Without ``grid``: a grid over the box with cells about this
            wide (in angstrom). Default ``sigma / 2``, fine enough that the
            correlation of an atom's own data (a Gaussian of width about
            ``sigma * sqrt(2)``) is resolved.

        Returns
        -------
        backprojection : `GaussianBackProjection`

        Examples
        --------
        >>> import odl
        >>> from odl.applications import tomo
        >>> space = SparseMeasureSpace([-4, -4], [4, 4])
        >>> geometry = tomo.Parallel2dGeometry(
        ...     odl.uniform_partition(0, np.pi, 3),
        ...     odl.uniform_partition(-6, 6, 48))
        >>> op = GaussianRayTransform(space, geometry, sigma=0.5)
        >>> op.correlation_operator(spacing=1.0).range
        uniform_discr([-4., -4.], [ 4.,  4.], (8, 8))
        """
        if grid is None:
            if spacing is None:
                spacing = 0.5 * self.sigma
            if (not isinstance(spacing, numbers.Real) or not np.isfinite(spacing)
                    or spacing <= 0):
                raise ValueError(
                    f'`spacing` (the grid cell width, in angstrom) must be a '
                    f'positive number, got {spacing!r}')
            space = self.domain
            shape = np.maximum(
                np.round((space.max_pt - space.min_pt) / spacing), 1).astype(int)
            grid = odl.uniform_discr(space.min_pt, space.max_pt, shape,
                                     dtype=self.range.dtype_identifier,
                                     impl=self.impl, device=self.device)
        elif spacing is not None:
            raise TypeError('give `grid` or `spacing`, not both')
        return GaussianBackProjection(self, grid)

    def norm(self, estimate=False, **kwargs):
        """Raise: the operator norm on measures is not available.

        ODL estimates norms with the power method on ``A^* A``, which needs
        the adjoint to map back into the domain; here it maps into
        functions. Estimate the norm of the derivative on ``n`` atoms
        instead: ``op.parametrized(n).derivative(p).norm(estimate=True)``.
        """
        raise NotImplementedError(
            'the norm of GaussianRayTransform on measures is not available: '
            'its adjoint maps into functions on the box, not back to '
            'measures, so the power method does not apply. Estimate the norm '
            'on n atoms instead: op.parametrized(n).derivative(p)'
            '.norm(estimate=True)')

    def parametrized(self, n_atoms):
        """Return this operator on ``n`` positions and weights.

        Parameters
        ----------
        n_atoms : int

        Returns
        -------
        op : `GaussianAtomsTransform`
            Nonlinear operator from ``domain.parameter_space(n_atoms)`` to
            `range`, with derivative.
        """
        return GaussianAtomsTransform(self, n_atoms)

    def jacobian(self, measure):
        """Return the derivative with respect to positions and weights.

        Parameters
        ----------
        measure : `SparseMeasure` or element of a parameter space

        Returns
        -------
        jac : `GaussianRayTransformJacobian`
        """
        if measure in self.domain:
            positions, weights = measure.positions, measure.weights
        else:
            positions, weights = (np.asarray(p.data if hasattr(p, 'data') else p,
                                             dtype=float) for p in measure)
        return GaussianRayTransformJacobian(self, positions, weights)

    # --- Correlation with a residual

    def correlation(self, residual, points, gradient=False):
        """Return ``<R(G * delta_x), residual>`` at ``points``.

        This is the adjoint of the ray transform of one Gaussian atom, as a
        function of its position: ADCG adds an atom where it is largest. The
        inner product is that of the projection space (weighted).

        Parameters
        ----------
        residual : `range` element or array-like
            Data-space function, e.g. ``data - op(mu)``.
        points : array-like, shape ``(p, d)``
        gradient : bool, optional
            If True, also return the gradient with respect to the points.

        Returns
        -------
        values : numpy.ndarray, shape ``(p,)``
        grad : numpy.ndarray, shape ``(p, d)``
            Only if ``gradient`` is True.
        """
        residual = as_data(self.range, residual, 'residual')
        points = np.array(points, dtype=float, ndmin=2)
        if points.ndim != 2 or points.shape[1] != self.domain.ndim:
            raise ValueError(
                f'`points` must have shape (p, {self.domain.ndim}), got '
                f'{points.shape}')
        stencil = self.new_stencil(points)
        if self.__torch_frame is None:
            grad_x, values = stencil.adjoint_jacobian(
                np.ones(points.shape[0]),
                np.asarray(residual.data, float).ravel())
        else:
            # Gathered on the device in float64 (as the NumPy path), only the
            # p values and gradients come back to the host.
            grad_x, values = (_to_numpy(a) for a in stencil.adjoint_jacobian(
                np.ones(points.shape[0]), residual.data))
        weight = self.inner_weight
        if gradient:
            return weight * values, weight * grad_x
        return weight * values

    def correlation_map(self, residual, grid):
        """Return `correlation` on every point of an ODL grid.

        The same as ``op.correlation_operator(grid)(residual)``.

        Parameters
        ----------
        residual : `range` element or array-like
        grid : `odl.DiscretizedSpace`
            A ``uniform_discr`` over (part of) the box; the correlation is
            evaluated at its cell centres.

        Returns
        -------
        image : ``grid`` element
        """
        backprojection = GaussianBackProjection(self, grid)
        return backprojection(as_data(self.range, residual, 'residual'))

    def __repr__(self):
        args = [repr(self.domain), repr(self.geometry), f'sigma={self.sigma!r}']
        if self.mode != 'integrate':
            args.append(f'mode={self.mode!r}')
        if self.truncate != 6.0:
            args.append(f'truncate={self.truncate!r}')
        if self.range.dtype_identifier != 'float64':
            args.append(f"dtype='{self.range.dtype_identifier}'")
        if self.impl != 'numpy':
            args.append(f'impl={self.impl!r}')
        if self.device != 'cpu':
            args.append(f'device={self.device!r}')
        if np.any(self.detector_shifts):
            shifts = np.array2string(self.detector_shifts, separator=', ',
                                     threshold=20)
            args.append('detector_shifts=' + ' '.join(shifts.split()))
        return f'{type(self).__name__}(\n    ' + ',\n    '.join(args) + '\n)'

    __str__ = __repr__


class GaussianAtomsTransform(odl.Operator):

    """The atom ray transform on ``n`` positions and weights.

    A nonlinear operator from ``ProductSpace(rn((n, d)), rn(n))`` to the
    projection space, ``(x, w) -> sum_i w_i R(G * delta_{x_i})``. Positions are
    not restricted to the box here, so that optimisers may step freely.

    Parameters
    ----------
    transform : `GaussianRayTransform`
    n_atoms : int

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> space = SparseMeasureSpace([-5, -5], [5, 5])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-8, 8, 64))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.4).parametrized(2)
    >>> op.domain
    ProductSpace(rn((2, 2)), rn(2))
    >>> p = op.domain.element([[[0, 0], [1, 1]], [1, 2]])
    >>> op.derivative(p).adjoint(op(p)).space == op.domain
    True
    """

    def __init__(self, transform, n_atoms):
        if not isinstance(transform, GaussianRayTransform):
            raise TypeError(f'expected a GaussianRayTransform, got {transform!r}')
        self.__transform = transform
        super().__init__(domain=transform.domain.parameter_space(n_atoms),
                         range=transform.range, linear=False)

    @property
    def transform(self):
        """The `GaussianRayTransform` on measures."""
        return self.__transform

    @property
    def n_atoms(self):
        """Number of atoms."""
        return self.domain[1].shape[0]

    def _call(self, params):
        return self.transform._project_data(params[0].data, params[1].data)

    def derivative(self, params):
        """Return the Jacobian at ``params`` (a linear operator with adjoint)."""
        params = self.domain.element(params)
        return GaussianRayTransformJacobian(self.transform, params[0].data,
                                            params[1].data)

    def __repr__(self):
        return f'{self.transform!r}.parametrized({self.n_atoms})'


class GaussianRayTransformJacobian(odl.Operator):

    """Derivative of the atom ray transform with respect to positions and weights.

    At ``(x, w)`` it maps ``(dx, dw)`` to
    ``sum_i dw_i R(G * delta_{x_i}) + w_i <grad_{x_i} R(G * delta_{x_i}), dx_i>``.
    Its adjoint maps a data-space element ``r`` to the gradient of
    ``(x, w) -> <R(mu(x, w)), r>``.

    Parameters
    ----------
    transform : `GaussianRayTransform`
    positions : array-like, shape ``(n, d)``
    weights : array-like, shape ``(n,)``
    """

    def __init__(self, transform, positions, weights):
        self.__transform = transform
        self.__positions = np.array(positions, dtype=float)
        self.__weights = np.array(weights, dtype=float)
        n = self.__weights.shape[0]
        if self.__positions.shape != (n, transform.domain.ndim):
            raise ValueError(
                f'positions must have shape ({n}, {transform.domain.ndim}), got '
                f'{self.__positions.shape}')
        super().__init__(domain=transform.domain.parameter_space(n),
                         range=transform.range, linear=True)

    @property
    def transform(self):
        """The `GaussianRayTransform` on measures."""
        return self.__transform

    @property
    def positions(self):
        """Positions where the derivative is taken."""
        return self.__positions

    @property
    def weights(self):
        """Weights where the derivative is taken."""
        return self.__weights

    def _stencil(self):
        return self.transform.device_stencil(self.positions)

    def _call(self, dparams):
        flat = self._stencil().apply_jacobian(
            self.weights, np.asarray(dparams[0].data, float),
            np.asarray(dparams[1].data, float))
        if self.transform.impl != 'numpy':
            return flat.reshape(self.range.shape)
        return flat.reshape(self.range.shape).astype(self.range.dtype, copy=False)

    @property
    def adjoint(self):
        """Adjoint: data-space element -> (position gradient, weight gradient)."""
        return _JacobianAdjoint(self)

    def __repr__(self):
        return (f'{self.transform!r}.jacobian(('
                f'{np.array2string(self.positions, separator=", ", threshold=10)}, '
                f'{np.array2string(self.weights, separator=", ", threshold=10)}))')


class _JacobianAdjoint(odl.Operator):

    """Adjoint of `GaussianRayTransformJacobian`."""

    def __init__(self, jacobian):
        self.__jacobian = jacobian
        super().__init__(domain=jacobian.range, range=jacobian.domain,
                         linear=True)

    def _call(self, residual):
        jac = self.__jacobian
        if jac.transform.impl == 'numpy':
            grad_x, grad_w = jac._stencil().adjoint_jacobian(
                jac.weights, np.asarray(residual.data, float).ravel())
        else:
            # Gathered on the device; the (n, d) and (n,) gradients live in
            # the NumPy parameter space.
            grad_x, grad_w = (_to_numpy(a).astype(float) for a in
                              jac._stencil().adjoint_jacobian(
                                  jac.weights, residual.data))
        weight = jac.transform.inner_weight
        return self.range.element([weight * grad_x, weight * grad_w])

    @property
    def adjoint(self):
        return self.__jacobian

    def __repr__(self):
        return f'{self.__jacobian!r}.adjoint'


class GaussianBackProjection(odl.Operator):

    """Adjoint of the atom ray transform: data -> correlation function on a grid.

    For data ``r`` this is the function ``f(x) = <g_x, r>_Y`` on the box,
    ``g_x = R(G * delta_x)`` the data of a unit atom at ``x`` and
    ``<., .>_Y`` the (weighted) inner product of the projection space: the
    exact Gaussian-filtered back-projection of ``r``, sampled at the cell
    centres of an ``odl.uniform_discr``. ADCG adds atoms where it is largest
    for the residual.

    It is the adjoint of `GaussianRayTransform` ``A`` for the dual pairing
    of measures and functions, ``<mu, f> = sum_i w_i f(x_i)``:
    ``<A mu, r>_Y = <mu, A^* r>`` (exactly for atoms on the grid points;
    elsewhere the samples are those of a smooth function, not an
    interpolation rule). Its range is the grid function space, not the
    space of measures, so it is not an adjoint in ODL's sense of mapping
    back into ``A.domain`` (see `GaussianRayTransform`).

    As an operator between two Hilbert spaces (the data space and the
    grid's ``L^2`` space) it has an adjoint of its own, which puts an atom
    of weight ``f_j * cell_volume`` at every grid point ``x_j`` and projects
    them: ``f -> A(sum_j |cell| f_j delta_{x_j})``.

    Parameters
    ----------
    transform : `GaussianRayTransform`
    grid : `odl.DiscretizedSpace`
        A ``uniform_discr`` of the atoms' dimension (usually over the box,
        as `GaussianRayTransform.correlation_operator` builds it).

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> space = SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.5)
    >>> backprojection = op.adjoint
    >>> backprojection.domain == op.range
    True

    The correlation of an atom's own data peaks at the atom:

    >>> f = backprojection(op(space.element([[1.125, -0.625]])))
    >>> f.space.points()[np.argmax(f.data)]
    array([ 1.125, -0.625])
    """

    def __init__(self, transform, grid):
        if not isinstance(transform, GaussianRayTransform):
            raise TypeError(f'expected a GaussianRayTransform, got {transform!r}')
        ndim = transform.domain.ndim
        if not isinstance(grid, odl.DiscretizedSpace) or grid.ndim != ndim:
            raise TypeError(
                f'`grid` must be a {ndim}D odl.uniform_discr, got {grid!r}')
        self.__transform = transform
        self.__separable = None
        super().__init__(domain=transform.range, range=grid, linear=True)

    @property
    def transform(self):
        """The `GaussianRayTransform` on measures."""
        return self.__transform

    def _chunks(self):
        """Grid points in pieces of at most `_GRID_CHUNK`."""
        points = self.range.points()
        for start in range(0, points.shape[0], _GRID_CHUNK):
            yield points[start:start + _GRID_CHUNK]

    def _separable_grid(self):
        """The `SeparableGrid` of a 3D single-axis tilt series, or None."""
        if self.__separable is None:
            op = self.transform
            grid = None
            if op.impl == 'numpy' and self.range.ndim == 3:
                grid = SeparableGrid.build(
                    op.frame, self.range.partition.coord_vectors, op.sigma,
                    op.truncate, op.mode)
            self.__separable = grid if grid is not None else False
        return self.__separable or None

    def _call(self, residual):
        op = self.transform
        if op.impl == 'numpy':
            data = np.asarray(residual.data, float).ravel()
            separable = self._separable_grid()
            if separable is not None:
                values = separable.correlate(data)
            else:
                values = np.concatenate([op.new_stencil(points).correlate(data)
                                         for points in self._chunks()])
        else:
            # The weight gradient of the adjoint Jacobian of unit atoms is the
            # correlation; gathered on the device, sent back per piece.
            values = np.concatenate([
                _to_numpy(op.new_stencil(points).adjoint_jacobian(
                    np.ones(points.shape[0]), residual.data)[1])
                for points in self._chunks()])
        values = op.inner_weight * values
        return self.range.element(values.reshape(self.range.shape))

    @property
    def adjoint(self):
        """``f -> A(sum_j |cell| f_j delta_{x_j})`` (grid ``L^2`` -> data)."""
        return _GridProjection(self)

    def __repr__(self):
        return f'{self.transform!r}.correlation_operator({self.range!r})'


class _GridProjection(odl.Operator):

    """Adjoint of `GaussianBackProjection`: grid function -> data.

    Atoms of weight ``|cell| * f_j`` at the grid points, projected.
    """

    def __init__(self, backprojection):
        self.__backprojection = backprojection
        super().__init__(domain=backprojection.range,
                         range=backprojection.domain, linear=True)

    def _call(self, func):
        op = self.__backprojection.transform
        weights = float(self.domain.weighting.const) * np.asarray(
            _to_numpy(func.data), float).ravel()
        out = None
        start = 0
        for points in self.__backprojection._chunks():
            stop = start + points.shape[0]
            part = op.new_stencil(points, dtype=self.range.dtype_identifier) \
                .project(weights[start:stop])
            out = part if out is None else out + part
            start = stop
        if op.impl == 'numpy':
            out = out.astype(self.range.dtype, copy=False)
        return self.range.element(out.reshape(self.range.shape))

    @property
    def adjoint(self):
        return self.__backprojection

    def __repr__(self):
        return f'{self.__backprojection!r}.adjoint'
