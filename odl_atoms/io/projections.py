"""Projection-data files: one tilt series and what is needed to reconstruct.

`ProjectionData` holds the fields of a projection-data file (see the
documentation of `odl_atoms.io` for the layout); `read_projections` and
`write_projections` move it to and from ``.npz`` and HDF5 files.
"""

import os
import warnings
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import odl
from odl.applications import tomo

from odl_atoms.errors import ValidationError
from odl_atoms.geometry import (DetectorFrame, as_data, check_parallel_geometry,
                                projection_space)
from odl_atoms.io.safety import (atomic_path, existing_file, read_hdf5,
                                 read_npz)
from odl_atoms.operators import GaussianRayTransform
from odl_atoms.space import SparseMeasure, SparseMeasureSpace

__all__ = ('ProjectionData', 'read_projections', 'write_projections',
           'PROJECTION_SUFFIXES')

#: File suffixes of projection-data files and their formats.
PROJECTION_SUFFIXES = {'.npz': 'npz', '.h5': 'hdf5', '.hdf5': 'hdf5'}

_REQUIRED_KEYS = ('data', 'angles', 'detector_min', 'detector_max', 'box_min',
                  'box_max')
_OPTIONAL_KEYS = ('sigma', 'angle_min', 'angle_max', 'axis', 'noise_std',
                  'positions', 'weights', 'species', 'intensity_unit',
                  'background', 'pixel_size', 'pixels_averaged', 'source')


# --- Projection data


@dataclass(frozen=True, eq=False, repr=False)
class ProjectionData:

    """One parallel-beam measurement: data, geometry, atom model, ground truth.

    The fields are the keys of a projection-data file (see the module
    documentation for the layout); lengths in angstrom, angles in radians.
    They are checked on creation and stored as read-only arrays; use
    `dataclasses.replace` to change one.

    Parameters
    ----------
    data : array-like, shape ``(n_angles, n_det)`` or ``(n_angles, n_det_u, n_det_v)``
        Projection data. Floating-point dtypes are kept, others become float64.
    angles : array-like, shape ``(n_angles,)``
        Tilt angles, strictly increasing.
    detector_min, detector_max : array-like, shape ``(data.ndim - 1,)``
        Outer edges of the (uniformly partitioned) detector.
    box_min, box_max : array-like, shape ``(data.ndim,)``
        Corners of the box where atoms may be.
    sigma : positive float, optional
        Gaussian standard deviation of an atom; ``None`` (default) when not
        known yet (e.g. data prepared from microscope images, before
        calibration). `operator` needs it.
    angle_min, angle_max : float, optional
        Outer edges of the angle partition, ``angle_min <= angles[0]`` and
        ``angles[-1] <= angle_max``. Default: ODL's rule for
        ``nonuniform_partition(angles)``; ``angle +- pi / 2`` for one angle.
    axis : array-like, shape ``(3,)``, optional
        Tilt axis of 3D data; ``None`` means ODL's default ``(0, 0, 1)``.
    noise_std : float >= 0, optional
        Standard deviation of the Gaussian noise in ``data``.
    positions : array-like, shape ``(n, d)``, optional
        Ground-truth atom positions, inside the box.
    weights : array-like, shape ``(n,)``, optional
        Ground-truth weights; default 1.
    species : sequence of str, shape ``(n,)``, optional
        Ground-truth species labels; default ``'X'``.
    intensity_unit : str, optional
        Unit of the values in ``data`` (e.g. ``'counts'``), as the microscope
        file gave it.
    background : array-like, shape ``(n_angles,)``, optional
        The background that was subtracted from each projection, in data
        units (see `prepare_projections`).
    pixel_size : array-like, shape ``(2,)``, optional
        Pixel size of the microscope images the data come from, across and
        along the tilt axis, in angstrom.
    pixels_averaged : positive int, optional
        Number of image pixels averaged into each data value (the pixels
        along the tilt axis in 2D, times any binning), for noise models.
    source : str, optional
        Where the data come from (files, reader, conventions), as JSON text.

    Examples
    --------
    >>> measurement = ProjectionData(
    ...     data=np.zeros((2, 8)), angles=[0.0, 1.5], detector_min=[-4],
    ...     detector_max=[4], box_min=[-3, -3], box_max=[3, 3], sigma=0.5)
    >>> measurement.ndim, measurement.projection_space().shape
    (2, (2, 8))
    >>> measurement.geometry.motion_partition.cell_boundary_vecs[0]
    array([-0.75,  0.75,  2.25])
    >>> measurement.ground_truth() is None
    True

    Errors name the key and the expected shape:

    >>> ProjectionData(data=np.zeros((2, 8)), angles=[0.0, 1.0, 2.0],
    ...                detector_min=[-4], detector_max=[4], box_min=[-3, -3],
    ...                box_max=[3, 3], sigma=0.5)
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: 'angles' must have shape (2,) (one angle per row of 'data', ...
    """

    data: np.ndarray
    angles: np.ndarray
    detector_min: np.ndarray
    detector_max: np.ndarray
    box_min: np.ndarray
    box_max: np.ndarray
    sigma: float = None
    angle_min: float = None
    angle_max: float = None
    axis: np.ndarray = None
    noise_std: float = None
    positions: np.ndarray = None
    weights: np.ndarray = None
    species: np.ndarray = None
    intensity_unit: str = None
    background: np.ndarray = None
    pixel_size: np.ndarray = None
    pixels_averaged: int = None
    source: str = None

    def __post_init__(self):
        self.__setstate__({f.name: getattr(self, f.name) for f in fields(self)})

    def __getstate__(self):
        # Only the fields: derived ODL objects are rebuilt on demand.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state):
        for name, value in _validated_fields(state).items():
            object.__setattr__(self, name, value)

    # --- Derived objects

    @property
    def ndim(self):
        """Spatial dimension, 2 or 3 (``data.ndim``)."""
        return self.data.ndim

    @property
    def n_angles(self):
        """Number of projections."""
        return self.data.shape[0]

    @cached_property
    def angle_partition(self):
        """The angle partition, an `odl.RectPartition` (see the module notes)."""
        return _angle_partition(self.angles, self.angle_min, self.angle_max)

    @cached_property
    def geometry(self):
        """The ODL geometry: ``Parallel2dGeometry`` or ``Parallel3dAxisGeometry``."""
        dpart = odl.uniform_partition(self.detector_min, self.detector_max,
                                      self.data.shape[1:])
        if self.ndim == 2:
            return tomo.Parallel2dGeometry(self.angle_partition, dpart)
        axis = (0, 0, 1) if self.axis is None else self.axis
        return tomo.Parallel3dAxisGeometry(self.angle_partition, dpart,
                                           axis=axis)

    def projection_space(self, dtype='float64'):
        """Return the projection space of ``geometry`` (that of ODL's ``RayTransform``).

        Parameters
        ----------
        dtype : optional
            ``'float32'`` for ASTRA's CPU backend, ``'float64'`` (default) for
            the atom operator.
        """
        return projection_space(self.geometry, dtype)

    def element(self, dtype='float64'):
        """Return ``data`` as a (new) element of ``projection_space(dtype)``."""
        space = self.projection_space(dtype)
        return space.element(np.array(self.data, dtype=space.dtype))

    def measure_space(self):
        """Return the `SparseMeasureSpace` of the box."""
        return SparseMeasureSpace(self.box_min, self.box_max)

    def ground_truth(self):
        """Return the ground-truth `SparseMeasure`, or ``None`` if not stored."""
        if self.positions is None:
            return None
        return self.measure_space().element(
            self.positions, weights=self.weights, species=self.species)

    def operator(self, mode='integrate', **kwargs):
        """Return the `GaussianRayTransform` of this measurement.

        Parameters
        ----------
        mode : {'integrate', 'sample'}, optional
        **kwargs
            Further arguments of `GaussianRayTransform` (``truncate``,
            ``dtype``).

        Raises
        ------
        ValueError
            If ``sigma`` is not known (``None``).
        """
        if self.sigma is None:
            raise ValidationError(
                'this measurement has no atom width (sigma is None, as in '
                'data prepared from microscope images); estimate it '
                '(calibration) or give it: dataclasses.replace(measured, '
                'sigma=...) or --sigma on the command line')
        return GaussianRayTransform(self.measure_space(), self.geometry,
                                    self.sigma, mode=mode, **kwargs)

    # --- Construction from ODL objects

    @classmethod
    def from_element(cls, data, geometry, space, sigma, ground_truth=None,
                     noise_std=None):
        """Collect a measurement given as ODL objects.

        Parameters
        ----------
        data : projection-space element or array-like
            Data of ``geometry``; a float32 element stays float32.
        geometry : ``tomo.Parallel2dGeometry`` or ``tomo.Parallel3dAxisGeometry``
            With ODL's default detector position and orientation, a uniformly
            partitioned detector and no translation: the file layout stores
            only angles, detector edges and tilt axis.
        space : `SparseMeasureSpace`
            Its box is stored.
        sigma : positive float or None
            Gaussian standard deviation of an atom (``None``: not known).
        ground_truth : `SparseMeasure`, optional
            Atoms in ``space``'s box.
        noise_std : float, optional
            Standard deviation of the Gaussian noise in ``data``.

        Returns
        -------
        projection_data : `ProjectionData`

        Raises
        ------
        ValueError
            If the geometry cannot be written in the file layout (another
            geometry type, a translated or re-oriented detector, a non-uniform
            detector), or the data do not belong to it.
        """
        check_parallel_geometry(geometry)
        if not isinstance(geometry, (tomo.Parallel2dGeometry,
                                     tomo.Parallel3dAxisGeometry)):
            raise ValidationError(
                f'the projection-data layout stores a Parallel2dGeometry or a '
                f'Parallel3dAxisGeometry (one tilt angle per projection), got '
                f'{type(geometry).__name__}; geometries with several angles '
                f'per projection cannot be written')
        if not isinstance(space, SparseMeasureSpace):
            raise TypeError(f'`space` must be a SparseMeasureSpace, got {space!r}')
        check_parallel_geometry(geometry, ndim=space.ndim)
        dpart = geometry.det_partition
        if not dpart.is_uniform:
            raise ValidationError(
                'the projection-data layout stores a uniformly partitioned '
                'detector (detector_min, detector_max, number of cells); build '
                'the geometry with odl.uniform_partition for the detector')

        dtype = _data_dtype(data)
        values = as_data(projection_space(geometry, dtype), data).data

        apart = geometry.motion_partition
        positions = weights = species = None
        if ground_truth is not None:
            if not isinstance(ground_truth, SparseMeasure):
                raise TypeError(
                    f'`ground_truth` must be a SparseMeasure, got '
                    f'{type(ground_truth).__name__}')
            positions, weights, species = (ground_truth.positions,
                                           ground_truth.weights,
                                           ground_truth.species)
        result = cls(
            data=np.array(values), angles=apart.coord_vectors[0],
            detector_min=dpart.min_pt, detector_max=dpart.max_pt,
            box_min=space.min_pt, box_max=space.max_pt, sigma=sigma,
            angle_min=float(apart.min_pt[0]), angle_max=float(apart.max_pt[0]),
            axis=(np.array(geometry.axis) if space.ndim == 3 else None),
            noise_std=noise_std, positions=positions, weights=weights,
            species=species)
        _check_same_measurement(geometry, result.geometry)
        return result

    # --- Comparison and printing

    def __eq__(self, other):
        """True if every field is equal (``data`` also in dtype)."""
        if other is self:
            return True
        if type(other) is not type(self):
            return NotImplemented
        if self.data.dtype != other.data.dtype:
            return False
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if (a is None) != (b is None):
                return False
            if a is not None and not np.array_equal(a, b):
                return False
        return True

    __hash__ = None

    def __repr__(self):
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == 'data':
                text = f'<{value.dtype} array of shape {value.shape}>'
            elif isinstance(value, np.ndarray) and value.size > 8:
                text = f'<{value.dtype} array of shape {value.shape}>'
            elif isinstance(value, np.ndarray) and value.dtype.kind == 'U':
                text = repr(value.tolist())
            elif isinstance(value, np.ndarray):
                text = np.array2string(value, separator=', ', precision=6)
            else:
                text = repr(value)
            parts.append(f'{f.name}={text}')
        return f'{type(self).__name__}(\n    ' + ',\n    '.join(parts) + '\n)'

    __str__ = __repr__


def _data_dtype(data):
    """Floating dtype to keep for ``data`` (float64 for non-float input)."""
    if isinstance(data, odl.DiscretizedSpaceElement):
        dtype = np.dtype(data.space.dtype)
    else:
        dtype = np.asarray(data.data if hasattr(data, 'data') else data).dtype
    if dtype.kind == 'c':
        raise ValidationError(
            f"'data' holds complex numbers (dtype {dtype}); it must be real "
            f"(the imaginary part would be lost): pass the real part (or the "
            f"modulus) if that is what is meant")
    return dtype if dtype.kind == 'f' else np.dtype('float64')


def _default_angle_edges(angles):
    if angles.size == 1:
        return float(angles[0] - np.pi / 2), float(angles[0] + np.pi / 2)
    return None, None


def _angle_partition(angles, angle_min=None, angle_max=None):
    default_min, default_max = _default_angle_edges(angles)
    return odl.nonuniform_partition(
        angles,
        min_pt=default_min if angle_min is None else angle_min,
        max_pt=default_max if angle_max is None else angle_max)


def _check_same_measurement(geometry, rebuilt):
    """Raise unless ``rebuilt`` (from the layout) measures what ``geometry`` does."""
    name = type(geometry).__name__
    if not np.allclose(geometry.motion_partition.cell_boundary_vecs[0],
                       rebuilt.motion_partition.cell_boundary_vecs[0],
                       rtol=1e-12, atol=1e-12):
        raise ValidationError(
            f'the angle partition of the {name} has cell boundaries that are '
            f'not half-way between the angles; the projection-data layout '
            f'stores only the angles and the outer edges. Build it with '
            f'odl.uniform_partition or odl.nonuniform_partition(angles)')
    if rebuilt.det_partition != geometry.det_partition:
        raise ValidationError(
            f'the detector partition of the {name} ({geometry.det_partition}) '
            f'cannot be rebuilt from its edges and shape')
    frame, ours = (DetectorFrame.from_geometry(geometry),
                   DetectorFrame.from_geometry(rebuilt))
    scale = 1.0 + float(np.max(np.abs(np.concatenate(
        [geometry.det_partition.min_pt, geometry.det_partition.max_pt]))))
    if not (np.allclose(frame.axes, ours.axes, rtol=0, atol=1e-9)
            and np.allclose(frame.offsets, ours.offsets, rtol=0,
                            atol=1e-9 * scale)):
        raise ValidationError(
            f'the {name} does not project points where ODL\'s default {name} '
            f'with the same angles, detector and axis does (a translation, a '
            f'shifted detector or non-default detector axes); the '
            f'projection-data layout cannot represent that. Build the geometry '
            f'with default det_pos_init/det_axes_init and no translation, and '
            f'move or rotate the atoms instead')


# --- Validation of the fields


def _validated_fields(values):
    """Check and normalise the fields of a `ProjectionData`; errors name keys."""
    out = dict(values)
    data = _real_array(values['data'], 'data')
    if data.dtype.kind != 'f':
        data = data.astype(float)
    if data.ndim not in (2, 3):
        raise ValidationError(
            f"'data' must have shape (n_angles, n_det) for 2D or (n_angles, "
            f"n_det_u, n_det_v) for 3D, got shape {data.shape}")
    if data.size == 0:
        raise ValidationError(f"'data' is empty (shape {data.shape})")
    _check_finite(data, 'data')
    out['data'] = data
    d, n_angles = data.ndim, data.shape[0]
    k = d - 1

    angles = _vector(values['angles'], 'angles', n_angles,
                     "one angle per row of 'data', in radians")
    if np.any(np.diff(angles) <= 0):
        raise ValidationError(
            f"'angles' must be strictly increasing (sort the projections "
            f"by angle, and the rows of 'data' with them), got "
            f"{np.round(angles, 6).tolist()}")
    out['angles'] = angles

    for lo, hi, size, what in (
            ('detector_min', 'detector_max', k,
             f'{k} detector coordinate(s) for {d}D data, in angstrom'),
            ('box_min', 'box_max', d,
             f'{d} coordinates for {d}D data, in angstrom')):
        out[lo] = _vector(values[lo], lo, size, what)
        out[hi] = _vector(values[hi], hi, size, what)
        if np.any(out[hi] <= out[lo]):
            raise ValidationError(
                f"'{hi}' must be larger than '{lo}' in every coordinate, got "
                f"{lo}={out[lo].tolist()}, {hi}={out[hi].tolist()}")

    if values['sigma'] is not None:
        sigma = _scalar(values['sigma'], 'sigma')
        if not sigma > 0:
            raise ValidationError(
                f"'sigma' (Gaussian std of an atom, in angstrom) must be "
                f"positive, got {sigma}")
        out['sigma'] = sigma

    for name in ('angle_min', 'angle_max'):
        if values[name] is not None:
            out[name] = _scalar(values[name], name)
    default = _default_angle_edges(angles)
    amin = out['angle_min'] if out['angle_min'] is not None else default[0]
    amax = out['angle_max'] if out['angle_max'] is not None else default[1]
    if amin is not None and amin > angles[0]:
        raise ValidationError(
            f"'angle_min' ({amin}) must be <= the first angle ({angles[0]})")
    if amax is not None and amax < angles[-1]:
        raise ValidationError(
            f"'angle_max' ({amax}) must be >= the last angle ({angles[-1]})")
    if amin is not None and amax is not None and not amax > amin:
        raise ValidationError(
            f"'angle_max' must be larger than 'angle_min', got {amin} and "
            f"{amax}")

    if values['axis'] is not None:
        if d != 3:
            raise ValidationError(
                "'axis' (the tilt axis) is only defined for 3D data; remove it "
                "for 2D data")
        axis = _vector(values['axis'], 'axis', 3, 'the 3D tilt axis')
        if not np.any(axis != 0):
            raise ValidationError("'axis' must be a nonzero vector, got [0, 0, 0]")
        out['axis'] = axis

    if values['noise_std'] is not None:
        noise = _scalar(values['noise_std'], 'noise_std')
        if noise < 0:
            raise ValidationError(f"'noise_std' must be >= 0, got {noise}")
        out['noise_std'] = noise

    if values['positions'] is None:
        for name in ('weights', 'species'):
            if values[name] is not None:
                raise ValidationError(
                    f"'{name}' is given without 'positions'; ground-truth "
                    f"weights and species need the positions of the atoms")
    else:
        positions = _real_array(values['positions'], 'positions')
        if positions.ndim != 2 or positions.shape[1] != d:
            raise ValidationError(
                f"'positions' must have shape (n, {d}) for {d}D data, got "
                f"shape {positions.shape}")
        _check_finite(positions, 'positions')
        outside = ~np.all((positions >= out['box_min'])
                          & (positions <= out['box_max']), axis=1)
        if np.any(outside):
            i = int(np.flatnonzero(outside)[0])
            raise ValidationError(
                f"'positions': {int(outside.sum())} atom(s) lie outside the box "
                f"['box_min', 'box_max'] = [{out['box_min'].tolist()}, "
                f"{out['box_max'].tolist()}], e.g. atom {i} at "
                f"{positions[i].tolist()}")
        out['positions'] = positions.astype(float)
        n = positions.shape[0]
        if values['weights'] is not None:
            weights = _real_array(values['weights'], 'weights')
            if weights.shape != (n,):
                raise ValidationError(
                    f"'weights' must have shape ({n},), one per atom in "
                    f"'positions', got shape {weights.shape}")
            _check_finite(weights, 'weights')
            out['weights'] = weights.astype(float)
        if values['species'] is not None:
            species = _string_array(values['species'], 'species')
            if species.shape != (n,):
                raise ValidationError(
                    f"'species' must have shape ({n},), one label per atom in "
                    f"'positions', got shape {species.shape}")
            out['species'] = species

    for name in ('intensity_unit', 'source'):
        if values[name] is not None:
            out[name] = _string(values[name], name)
    if values['background'] is not None:
        out['background'] = _vector(
            values['background'], 'background', n_angles,
            "the background removed from each projection, in data units")
    if values['pixel_size'] is not None:
        pixel = _vector(values['pixel_size'], 'pixel_size', 2,
                        'image pixel size across and along the tilt axis, '
                        'in angstrom')
        if np.any(pixel <= 0):
            raise ValidationError(f"'pixel_size' must be positive, got "
                                  f"{pixel.tolist()}")
        out['pixel_size'] = pixel
    if values['pixels_averaged'] is not None:
        count = _scalar(values['pixels_averaged'], 'pixels_averaged')
        if not (count >= 1 and count == int(count)):
            raise ValidationError(f"'pixels_averaged' must be a positive integer, "
                                  f"got {count}")
        out['pixels_averaged'] = int(count)

    for name, value in out.items():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return out


def _real_array(value, name):
    if isinstance(value, odl.core.set.space.LinearSpaceElement):
        raise TypeError(
            f"'{name}' is an ODL element; pass its array ({name}.data), or use "
            f"ProjectionData.from_element, which also checks the geometry")
    try:
        arr = np.array(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"'{name}' must be a real array, got {value!r}") from exc
    if arr.dtype.kind == 'c':
        raise ValidationError(
            f"'{name}' holds complex numbers (dtype {arr.dtype}); it must be "
            f"real (the imaginary part would be lost): pass the real part "
            f"(or the modulus) if that is what is meant")
    if arr.dtype.kind not in 'fiu':
        raise ValidationError(
            f"'{name}' must hold real numbers, got dtype {arr.dtype}")
    return arr


def _vector(value, name, size, what):
    arr = _real_array(value, name).astype(float)
    if arr.ndim == 0 and size == 1:
        arr = arr.reshape(1)
    if arr.shape != (size,):
        raise ValidationError(
            f"'{name}' must have shape ({size},) ({what}), got shape "
            f"{arr.shape}")
    _check_finite(arr, name)
    return arr


def _scalar(value, name):
    arr = _real_array(value, name)
    if arr.size != 1:
        raise ValidationError(
            f"'{name}' must be a single number (shape ()), got shape "
            f"{arr.shape}")
    number = float(arr.reshape(()))
    if not np.isfinite(number):
        raise ValidationError(f"'{name}' must be finite, got {number}")
    return number


def _string_array(value, name):
    arr = np.array(value)
    if arr.dtype.kind == 'S':
        arr = np.char.decode(arr, 'utf-8')
    elif arr.dtype.kind == 'O':
        arr = np.array([s.decode('utf-8') if isinstance(s, bytes) else s
                        for s in arr.ravel()], dtype=str).reshape(arr.shape)
    elif arr.dtype.kind != 'U':
        raise ValidationError(
            f"'{name}' must hold strings (one label per atom), got dtype "
            f"{arr.dtype}")
    return arr.astype(str)


def _string(value, name):
    arr = np.array(value)
    if arr.dtype.kind == 'S':
        arr = np.char.decode(arr, 'utf-8')
    elif arr.dtype.kind == 'O' and arr.ndim == 0:
        arr = np.array(str(arr[()]))
    if arr.dtype.kind != 'U' or arr.ndim != 0:
        raise ValidationError(f"'{name}' must be a single string, got {value!r}")
    return str(arr[()])


def _check_finite(arr, name):
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValidationError(
            f"'{name}' contains {bad} NaN or inf value(s); all values must be "
            f"finite")


# --- Projection files


def _projection_format(path):
    suffix = path.suffix.lower()
    if suffix not in PROJECTION_SUFFIXES:
        raise ValidationError(
            f'unsupported projection-data file suffix {suffix!r} in '
            f'{str(path)!r}; use one of {", ".join(PROJECTION_SUFFIXES)}')
    return PROJECTION_SUFFIXES[suffix]


def write_projections(path, projection_data):
    """Write a `ProjectionData` to ``.npz`` or ``.h5``/``.hdf5``, atomically.

    The layout is described in the module documentation: one array or
    dataset per key, optional keys only when set.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its suffix chooses the format. An existing file is
        replaced only once the new one is completely written.
    projection_data : `ProjectionData`

    Raises
    ------
    ValueError
        If the suffix is not ``.npz``, ``.h5`` or ``.hdf5``.
    """
    if not isinstance(projection_data, ProjectionData):
        raise TypeError(
            f'expected a ProjectionData, got {type(projection_data).__name__}; '
            f'build one with ProjectionData.from_element(data, geometry, '
            f'space, sigma)')
    path = Path(os.fspath(path))
    kind = _projection_format(path)
    arrays = {}
    for f in fields(projection_data):
        value = getattr(projection_data, f.name)
        if value is not None:
            arrays[f.name] = np.asarray(value)
    with atomic_path(path) as tmp:
        if kind == 'npz':
            with open(tmp, 'wb') as fobj:
                np.savez(fobj, **arrays)
        else:
            _write_hdf5(tmp, arrays)


def _write_hdf5(path, arrays):
    import h5py

    with h5py.File(path, 'w') as fobj:
        for name, value in arrays.items():
            if value.dtype.kind == 'U':
                fobj.create_dataset(name, data=value.astype(object),
                                    dtype=h5py.string_dtype())
            else:
                fobj.create_dataset(name, data=value)


def read_projections(path, max_bytes=None):
    """Read a `ProjectionData` from a ``.npz`` or ``.h5``/``.hdf5`` file.

    Only the keys of the layout are read, and only after their declared
    sizes have been checked (see `odl_atoms.io.safety`); an HDF5 key that is
    a link or keeps its data outside the file is refused without reading it.

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int, optional
        Most bytes to read; default the memory available (at most
        `odl_atoms.io.safety.MAX_READ_BYTES`).

    Returns
    -------
    projection_data : `ProjectionData`

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the suffix is not supported, the file is not a valid archive or is
        damaged, declares more data than the limit, reaches outside itself,
        a required key is missing, or a key has the wrong shape or values;
        the message names the file and the key.

    Warns
    -----
    UserWarning
        For keys that are not part of the layout (they are ignored, not
        read).
    """
    path = Path(os.fspath(path))
    kind = _projection_format(path)
    path = existing_file(path, 'projection-data')
    reader = read_npz if kind == 'npz' else read_hdf5
    known = _REQUIRED_KEYS + _OPTIONAL_KEYS
    values, names = reader(path, keys=known, max_bytes=max_bytes)
    missing = [key for key in _REQUIRED_KEYS if key not in values]
    if missing:
        raise ValidationError(
            f'{str(path)!r} is missing the required key(s) '
            f'{", ".join(repr(k) for k in missing)}; a projection-data file '
            f'needs {", ".join(_REQUIRED_KEYS)} (optional: '
            f'{", ".join(_OPTIONAL_KEYS)})')
    unknown = sorted(set(names) - set(known))
    if unknown:
        warnings.warn(
            f'{str(path)!r}: ignoring unknown key(s) '
            f'{", ".join(repr(k) for k in unknown)}; known keys are '
            f'{", ".join(known)}',
            UserWarning, stacklevel=2)
    try:
        return ProjectionData(**values)
    except ValueError as exc:
        raise ValidationError(f'{str(path)!r}: {exc}') from exc
