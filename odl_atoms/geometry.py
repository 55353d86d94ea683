"""Parallel-beam geometries: validation, projection spaces, detector frames.

The analytic atom projector and ASTRA's pixel-based ``RayTransform`` must read
and write the same data. This module builds, for an ODL parallel-beam geometry,

- the projection space ODL's ``RayTransform`` uses (same partition, same
  weighting), in any dtype (`projection_space`);
- the affine maps from a point ``x`` to its detector coordinates at every
  motion parameter (`DetectorFrame`), taken from the geometry's own methods
  (``det_point_position``, ``det_to_src``), so that every flat-detector
  parallel geometry ODL can describe works: ``Parallel2dGeometry``,
  ``Parallel3dAxisGeometry`` (the tilt series of electron tomography) and
  ``Parallel3dEulerGeometry``;
- per-projection detector shifts (drift, a tilt-axis offset) on top of the
  geometry (`DetectorFrame.shifted`, `check_detector_shifts`): ODL's parallel
  geometries have no shift per angle, so they live in the frame, and the
  data space stays ODL's.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import odl
from odl.applications import tomo

__all__ = ('projection_space', 'check_parallel_geometry', 'DetectorFrame',
           'same_geometry', 'as_data', 'check_detector_shifts')


def check_parallel_geometry(geometry, ndim=None):
    """Raise a clear error unless ``geometry`` is a flat parallel-beam geometry.

    Parameters
    ----------
    geometry : `odl.applications.tomo.Geometry`
    ndim : int, optional
        Required spatial dimension.
    """
    if not isinstance(geometry, tomo.Geometry):
        raise TypeError(
            f'expected an ODL geometry such as tomo.Parallel2dGeometry, got '
            f'{type(geometry).__name__}')
    if not isinstance(geometry, tomo.ParallelBeamGeometry):
        raise ValueError(
            f'{type(geometry).__name__} is a divergent-beam geometry; Gaussian '
            f'atoms project to Gaussians of the same width only in a '
            f'parallel beam. Use tomo.Parallel2dGeometry, '
            f'tomo.Parallel3dAxisGeometry or tomo.Parallel3dEulerGeometry')
    flat = (tomo.Flat1dDetector, tomo.Flat2dDetector)
    if not isinstance(geometry.detector, flat):
        raise ValueError(
            f'only flat detectors are supported, got '
            f'{type(geometry.detector).__name__}')
    if ndim is not None and geometry.ndim != ndim:
        raise ValueError(
            f'the geometry is {geometry.ndim}D but the atoms are {ndim}D; use a '
            f'{ndim}D geometry or a {geometry.ndim}D SparseMeasureSpace')
    return geometry


def projection_space(geometry, dtype='float64', impl='numpy', device='cpu'):
    """Return the projection space of ODL's ``RayTransform`` for ``geometry``.

    It is the space ``tomo.RayTransform(vol_space, geometry).range`` for a
    default (cell-volume weighted) ``vol_space``: the geometry's partition, the
    constant weighting ``extent / size`` of that partition, and the given dtype.
    One data element of this space serves the analytic atom operator and
    ASTRA's pixel-based transform alike.

    Parameters
    ----------
    geometry : `odl.applications.tomo.Geometry`
    dtype : str or numpy dtype, optional
        ``'float32'`` is what ASTRA's CPU backend needs; ``'float64'`` (the
        default) is what the atom operator and its tests use.
    impl : {'numpy', 'pytorch'}, optional
        ODL array backend of the space: with ``'pytorch'`` the elements hold
        ``torch.Tensor`` data, as ``RayTransform`` on a ``uniform_discr(...,
        impl='pytorch')`` volume produces them.
    device : str, optional
        Device of the data: ``'cpu'`` (default) or, with ``impl='pytorch'``,
        ``'cuda'`` / ``'cuda:<i>'`` (``'cuda'`` means the current CUDA device;
        ODL itself only accepts the indexed name).

    Examples
    --------
    >>> geometry = tomo.Parallel2dGeometry(odl.uniform_partition(0, np.pi, 3),
    ...                                    odl.uniform_partition(-5, 5, 20))
    >>> vol = odl.uniform_discr([-4, -4], [4, 4], [16, 16], dtype='float32')
    >>> projection_space(geometry, 'float32') == tomo.RayTransform(
    ...     vol, geometry).range
    True
    """
    if impl == 'pytorch':
        # Lazy: torch is optional, and only this backend needs it.
        from odl_atoms.projection_torch import check_torch_device
        device = check_torch_device(device)
    elif impl != 'numpy':
        raise ValueError(
            f"`impl` must be 'numpy' or 'pytorch' (ODL's array backends), got "
            f"{impl!r}")
    elif device != 'cpu':
        raise ValueError(
            f"impl='numpy' runs on the CPU only, got device={device!r}; use "
            f"impl='pytorch' for a GPU")
    partition = geometry.partition
    weighting = float(partition.extent.prod()) / float(partition.size)
    tspace = odl.tensor_space(partition.shape, dtype=dtype, weighting=weighting,
                              impl=impl, device=device)
    labels = (['$\\varphi$'] if geometry.motion_partition.ndim == 1 else
              ['$\\vartheta$', '$\\varphi$', '$\\psi$'][
                  :geometry.motion_partition.ndim])
    labels += ['$s$'] if geometry.det_partition.ndim == 1 else ['$u$', '$v$']
    return odl.DiscretizedSpace(partition, tspace, axis_labels=labels)


def same_geometry(space_a, space_b):
    """Return True if two projection spaces describe the same measurement.

    Dtypes may differ (a float32 ASTRA sinogram and a float64 model share a
    geometry); partitions must agree.
    """
    return (getattr(space_a, 'shape', None) == getattr(space_b, 'shape', None)
            and getattr(space_a, 'partition', None) is not None
            and space_a.partition == space_b.partition)


@dataclass(frozen=True)
class DetectorFrame:

    """Where points land on the detector, for every motion parameter.

    For a point ``x`` and the ``a``-th motion parameter (angles flattened in the
    order of the projection space), its detector coordinates are
    ``u = axes[a] @ x + offsets[a]``.

    Attributes
    ----------
    axes : numpy.ndarray, shape ``(m, k, d)``
        Unit detector axes (``k = d - 1``), orthogonal to the rays.
    offsets : numpy.ndarray, shape ``(m, k)``
    edges : tuple of k numpy.ndarray
        Cell boundaries along each detector axis.
    centres : tuple of k numpy.ndarray
        Cell midpoints along each detector axis.
    shape : tuple of int
        Shape of the data: ``(m, n_u)`` or ``(m, n_u, n_v)`` (with Euler
        geometries, ``m`` is the product of the motion-partition shape).
    rays : numpy.ndarray, shape ``(m, d)``
        Unit ray directions (towards the source): moving a point along them
        leaves its projection at that angle unchanged.
    """

    axes: np.ndarray
    offsets: np.ndarray
    edges: tuple
    centres: tuple
    shape: tuple
    rays: np.ndarray = None

    @classmethod
    def from_geometry(cls, geometry):
        """Build the frame from a flat parallel-beam ODL geometry."""
        check_parallel_geometry(geometry)
        motion = geometry.motion_partition
        points = motion.grid.points()  # (m, n_motion_params)
        mparam = points[:, 0] if motion.ndim == 1 else tuple(points.T)
        k = geometry.det_partition.ndim
        zero = 0.0 if k == 1 else (0.0, 0.0)
        origin = geometry.det_point_position(mparam, zero).reshape(-1, geometry.ndim)
        axes = []
        for i in range(k):
            unit = 1.0 if k == 1 else tuple(float(j == i) for j in range(k))
            pt = geometry.det_point_position(mparam, unit).reshape(
                -1, geometry.ndim)
            axes.append(pt - origin)
        axes = np.stack(axes, axis=1)  # (m, k, d)
        ray = geometry.det_to_src(mparam, zero).reshape(-1, geometry.ndim)

        # The projected Gaussian keeps its width only if the detector axes
        # are orthonormal and orthogonal to the rays (true for ODL's standard
        # parallel geometries); anything else would need an anisotropic model.
        gram = np.einsum('mkd,mld->mkl', axes, axes)
        ortho = np.einsum('mkd,md->mk', axes, ray)
        if (not np.allclose(gram, np.eye(k), atol=1e-9)
                or not np.allclose(ortho, 0, atol=1e-9)):
            raise ValueError(
                'the detector axes must be orthonormal and perpendicular to '
                'the rays; build the geometry with the default det_axes_init '
                'or orthonormal axes')
        offsets = -np.einsum('mkd,md->mk', axes, origin)
        dpart = geometry.det_partition
        edges = tuple(np.asarray(e, dtype=float) for e in dpart.cell_boundary_vecs)
        centres = tuple(np.asarray(c, dtype=float) for c in dpart.coord_vectors)
        shape = (points.shape[0],) + tuple(dpart.shape)
        rays = ray / np.linalg.norm(ray, axis=1, keepdims=True)
        return cls(axes=axes, offsets=offsets, edges=edges, centres=centres,
                   shape=shape, rays=rays)

    @property
    def n_angles(self):
        """Number of projections ``m``."""
        return self.axes.shape[0]

    def coordinates(self, positions):
        """Detector coordinates ``(n, m, k)`` of points ``(n, d)``."""
        return np.einsum('mkd,nd->nmk', self.axes, positions) + self.offsets

    def shifted(self, shifts):
        """Return the frame with ``shifts`` added to the offsets.

        A shift ``s[a]`` moves every point's projection at angle ``a`` by
        ``s[a]`` along the detector axes: ``u = axes[a] @ x + offsets[a] +
        s[a]``. Axes, cells and rays are shared with this frame.

        Parameters
        ----------
        shifts : array-like, shape ``(m, k)``
            In angstrom (``(m,)`` is accepted for a 1D detector).

        Examples
        --------
        >>> geometry = tomo.Parallel2dGeometry(
        ...     odl.uniform_partition(0, np.pi, 2), odl.uniform_partition(-4, 4, 8))
        >>> frame = DetectorFrame.from_geometry(geometry)
        >>> moved = frame.shifted([0.5, -0.25])
        >>> moved.coordinates(np.zeros((1, 2))) - frame.coordinates(np.zeros((1, 2)))
        array([[[ 0.5 ],
                [-0.25]]])
        """
        shifts = check_detector_shifts(shifts, self.offsets.shape)
        return dataclasses.replace(self, offsets=self.offsets + shifts)


def check_detector_shifts(shifts, shape):
    """Return ``shifts`` as a float array of ``shape`` ``(m, k)``, or raise.

    ``None`` means no shift (zeros); a 1D detector (``k = 1``) also accepts
    one value per projection, ``(m,)``.

    Parameters
    ----------
    shifts : array-like or None
        Detector shifts in angstrom, one row per projection (in the order
        of the projection space), one column per detector axis.
    shape : pair of int
        ``(m, k)``: projections and detector axes.

    Examples
    --------
    >>> check_detector_shifts([0.1, 0.0, -0.2], (3, 1)).shape
    (3, 1)
    >>> check_detector_shifts([0.1, 0.0], (3, 1))
    Traceback (most recent call last):
    ...
    ValueError: `detector_shifts` must have shape (3, 1) (projections x detector axes, in angstrom), got (2,)
    """
    shape = tuple(int(n) for n in shape)
    if shifts is None:
        return np.zeros(shape)
    try:
        arr = np.array(shifts, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f'`detector_shifts` must be an array of numbers of shape {shape} '
            f'(in angstrom), got {type(shifts).__name__}') from exc
    if shape[1] == 1 and arr.shape == shape[:1]:
        arr = arr[:, None]
    if arr.shape != shape:
        raise ValueError(
            f'`detector_shifts` must have shape {shape} (projections x '
            f'detector axes, in angstrom), got {arr.shape}')
    if not np.all(np.isfinite(arr)):
        raise ValueError('`detector_shifts` contains NaN or inf; give finite '
                         'shifts in angstrom')
    return arr


def as_data(space, data, name='data'):
    """Return ``data`` as an element of the projection space ``space``.

    Accepts an element of ``space``, an element of a projection space of the
    same geometry in another dtype (e.g. a float32 ASTRA sinogram), or an array
    of the right shape. Rejects other geometries and non-finite values with a
    message that says what differs.
    """
    if data in space:
        arr = data.data
    elif isinstance(data, odl.DiscretizedSpaceElement):
        if not same_geometry(data.space, space):
            raise ValueError(
                f'`{name}` comes from another geometry: its space has shape '
                f'{data.space.shape} and partition {data.space.partition}, the '
                f'operator expects shape {space.shape} and partition '
                f'{space.partition}; build the operator with the geometry the '
                f'data were measured with')
        arr = data.data
    elif _is_torch_tensor(data):
        arr = data  # stays on its device; converted by space.element below
        if tuple(arr.shape) != space.shape:
            raise ValueError(
                f'`{name}` has shape {tuple(arr.shape)}, but the geometry needs '
                f'{space.shape} (angles x detector cells)')
    else:
        try:
            arr = np.asarray(data, dtype=float)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f'`{name}` must be a projection-space element or an array, got '
                f'{type(data).__name__}') from exc
        if arr.shape != space.shape:
            raise ValueError(
                f'`{name}` has shape {arr.shape}, but the geometry needs '
                f'{space.shape} (angles x detector cells)')
    if _is_torch_tensor(arr):
        # Data on ODL's pytorch backend (possibly on a GPU): check it there.
        import torch
        if arr.numel() == 0:
            raise ValueError(f'`{name}` is empty')
        n_bad = int((~torch.isfinite(arr)).sum())
    else:
        if arr.size == 0:
            raise ValueError(f'`{name}` is empty')
        n_bad = 0 if np.all(np.isfinite(arr)) else int(
            np.sum(~np.isfinite(arr)))
    if n_bad:
        raise ValueError(
            f'`{name}` contains {n_bad} NaN or inf value(s); remove or '
            f'interpolate them before reconstructing')
    if data in space:
        return data
    if space.impl != 'numpy':
        return space.element(arr)  # ODL moves and casts to the space
    if _is_torch_tensor(arr):
        arr = arr.detach().cpu().numpy()
    return space.element(np.asarray(arr, dtype=space.dtype))


def _is_torch_tensor(arr):
    """Return True for a ``torch.Tensor``, without importing torch."""
    return type(arr).__module__.split('.')[0] == 'torch'

