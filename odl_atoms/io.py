"""Atom files and projection-data files, in and out.

Lengths are in angstrom, angles in radians, everywhere in these files.

Atom files
----------
`read_atoms` and `write_atoms` go through ASE (``ase.io.read``,
``ase.io.write``) and `odl_atoms.from_ase` / `odl_atoms.to_ase`, so every
format ASE reads or writes works. The format follows the file suffix unless
``format`` is given. What a file keeps depends on the format:

==================== ======================= ===================================
format               how to choose it        kept
==================== ======================= ===================================
extended XYZ         ``.extxyz`` or ``.xyz`` positions and weights (to 8
                     suffix                  decimals), species, box (and with
                                             it the dimension, 2 or 3)
plain XYZ            ``format='xyz'``        positions, species
CIF                  ``.cif`` suffix         species; positions relative to the
                                             box's lower corner (see below)
==================== ======================= ===================================

- ASE writes *extended* XYZ for the ``.xyz`` suffix: the box and the weights go
  into the comment line and an extra column, and plain XYZ readers still read
  the file. Pass ``format='xyz'`` for strictly plain XYZ (15 decimals).
- Extended XYZ rounds positions and weights to 8 decimals (1e-8 angstrom).
  Atoms that rounding puts less than 1e-7 angstrom outside the box are read
  back onto the box boundary. Use a projection-data file (`ProjectionData`) to
  keep a ground truth bit for bit.
- Without a stored box (plain XYZ, CIF, most other formats) reading builds a
  3D box around the atoms with a margin, as `odl_atoms.from_ase` does; pass
  ``space=`` to read into a known box, ``ndim=2`` to read a flat (``z``
  constant) configuration as 2D, and ``weights=`` (e.g. ``{'Au': 1.0}``) to
  give weights by species.
- CIF describes a periodic crystal by fractional coordinates in the unit cell,
  and ASE reads them back wrapped into the cell. `write_atoms` therefore uses
  the box as the unit cell (for 2D, with a third side of 1 angstrom) and writes
  positions relative to its lower corner ``box_min``: read back, a CIF file
  gives ``positions - box_min`` (the same positions when ``box_min`` is 0).

Projection-data files
---------------------
A projection-data file holds one measurement (a tilt series) and what is
needed to reconstruct from it; in memory it is a `ProjectionData`. It is
either a NumPy ``.npz`` archive or an HDF5 file (``.h5`` or ``.hdf5``) with one
dataset per key at the file root.

Required keys:

``data`` : ``(n_angles, n_det)`` in 2D, ``(n_angles, n_det_u, n_det_v)`` in 3D
    Projection data, float32 or float64 (the dtype is kept).
``angles`` : ``(n_angles,)``
    Tilt angles in radians, strictly increasing, not necessarily uniform.
``detector_min``, ``detector_max`` : ``(1,)`` in 2D, ``(2,)`` in 3D
    Outer edges of the detector in angstrom; its cells are uniform.
``box_min``, ``box_max`` : ``(d,)``, ``d = 2`` for 2D data and 3 for 3D
    Corners of the box where atoms may be.
``sigma`` : scalar
    Gaussian standard deviation of an atom, in angstrom.

Optional keys:

``angle_min``, ``angle_max`` : scalars
    Outer edges of the angle partition (see below).
``axis`` : ``(3,)``
    Tilt axis of 3D data; default ``(0, 0, 1)``. Not allowed for 2D data.
``noise_std`` : scalar
    Standard deviation of the Gaussian noise in ``data`` (see
    `odl_atoms.noise.add_noise`), for the discrepancy principle.
``positions`` : ``(n, d)``
    Ground-truth atom positions, inside the box.
``weights`` : ``(n,)``
    Ground-truth weights; default 1.
``species`` : ``(n,)`` strings
    Ground-truth species labels (UTF-8 strings in HDF5); default ``'X'``.

``weights`` and ``species`` need ``positions``. Optional keys that are not set
are not written. The geometry is ODL's::

    apart = odl.nonuniform_partition(angles, min_pt=angle_min, max_pt=angle_max)
    dpart = odl.uniform_partition(detector_min, detector_max, data.shape[1:])
    geometry = tomo.Parallel2dGeometry(apart, dpart)                 # 2D
    geometry = tomo.Parallel3dAxisGeometry(apart, dpart, axis=axis)  # 3D

with ODL's default detector position and orientation and no translation.
The angle partition only sets the constant weight of the projection space's
inner product (``angle extent x detector extent / number of values``, as ODL's
``RayTransform`` uses). Without ``angle_min`` and ``angle_max`` it is ODL's
``nonuniform_partition(angles)`` (cell boundaries half-way between angles, and
half a neighbouring step beyond the first and last angle); for a single angle,
where that rule would give an empty partition, it is ``angle +- pi / 2``, the
cell of ODL's ``uniform_partition(0, pi, 1)``. `ProjectionData.from_element`
always stores the edges of the geometry it is given, so that the file rebuilds
that geometry's projection space exactly.

Reading checks every key (a missing or malformed one gives an error that names
it and the expected shape). Keys not listed above are ignored with a
warning, so that files carrying extra metadata from other tools still load
while a misspelt optional key (say ``noise_sdt``) does not go unnoticed.

Writing is atomic
-----------------
Every writer here writes to a temporary file in the target's directory and
moves it onto the target only when the writing has succeeded (`atomic_path`):
an interrupted or failing write never leaves a half-written file and never
destroys an existing one.

Examples
--------
>>> import tempfile, os
>>> from odl_atoms.space import SparseMeasureSpace
>>> space = SparseMeasureSpace([-4, -4], [4, 4])
>>> truth = space.element([[0, 0], [1.5, 1]], weights=[1, 2])
>>> geometry = tomo.Parallel2dGeometry(odl.nonuniform_partition([0.2, 1.0, 2.5]),
...                                    odl.uniform_partition(-6, 6, 48))
>>> op = GaussianRayTransform(space, geometry, sigma=0.3)
>>> measured = ProjectionData.from_element(op(truth), geometry, space, 0.3,
...                                        ground_truth=truth)
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = os.path.join(tmp, 'tilts.h5')
...     write_projections(path, measured)
...     loaded = read_projections(path)
>>> loaded == measured
True
>>> loaded.ground_truth() == truth
True
>>> loaded.element().space == op.range
True
"""

import contextlib
import numbers
import os
import secrets
import stat
import warnings
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import odl
from odl.applications import tomo

from odl_atoms.atoms import DEFAULT_MARGIN, from_ase, to_ase
from odl_atoms.geometry import (DetectorFrame, as_data, check_parallel_geometry,
                                projection_space)
from odl_atoms.operators import GaussianRayTransform
from odl_atoms.space import SparseMeasure, SparseMeasureSpace

__all__ = ('atomic_path', 'read_atoms', 'write_atoms', 'ProjectionData',
           'read_projections', 'write_projections', 'PROJECTION_SUFFIXES')

#: File suffixes of projection-data files and their formats.
PROJECTION_SUFFIXES = {'.npz': 'npz', '.h5': 'hdf5', '.hdf5': 'hdf5'}

_REQUIRED_KEYS = ('data', 'angles', 'detector_min', 'detector_max', 'box_min',
                  'box_max', 'sigma')
_OPTIONAL_KEYS = ('angle_min', 'angle_max', 'axis', 'noise_std', 'positions',
                  'weights', 'species')


# --- Atomic writes


@contextlib.contextmanager
def atomic_path(path):
    """Context manager: write to a temporary file, then move it onto ``path``.

    Yields the path of a new, empty temporary file in the directory of
    ``path`` (a hidden name with the same suffix, so that writers that look at
    suffixes still work). When the ``with`` block ends without an exception,
    the file is flushed to disk and moved onto ``path`` with `os.replace`, an
    atomic operation: readers see either the old file or the complete new one.
    If the block raises (including ``KeyboardInterrupt``), the temporary file
    is removed and ``path`` is left as it was.

    A replaced file keeps its permission bits; a new one gets the usual ones
    (``0o666`` minus the umask).

    Parameters
    ----------
    path : str or os.PathLike
        Final destination. Its directory must exist.

    Yields
    ------
    tmp_path : pathlib.Path

    Raises
    ------
    FileNotFoundError
        If the directory of ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     target = os.path.join(tmp, 'numbers.txt')
    ...     with atomic_path(target) as part:
    ...         _ = part.write_text('1 2 3')
    ...     print(open(target).read(), os.listdir(tmp))
    1 2 3 ['numbers.txt']
    """
    path = Path(os.fspath(path))
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(
            f'cannot write {str(path)!r}: the directory {str(directory)!r} does '
            f'not exist; create it first')
    if path.is_dir():
        raise IsADirectoryError(
            f'cannot write {str(path)!r}: it is a directory; give a file name')
    tmp = _reserve_temporary(path)
    try:
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        yield tmp
        with open(tmp, 'rb+') as fobj:
            os.fsync(fobj.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(directory)


def _reserve_temporary(path):
    """Create an empty, uniquely named file next to ``path``."""
    for _ in range(100):
        tmp = path.with_name(f'.{path.stem}.{secrets.token_hex(4)}.tmp'
                             f'{path.suffix}')
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(
        f'could not create a temporary file next to {str(path)!r}')


def _fsync_directory(directory):
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _existing_file(path, what):
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f'no {what} file at {str(path)!r}')
    if path.is_dir():
        raise IsADirectoryError(
            f'{str(path)!r} is a directory, not a {what} file')
    return path


# --- Atom files


def read_atoms(path, space=None, weights=None, ndim=None, index=-1,
               format=None):
    """Read an atomic configuration from any file ASE reads.

    Parameters
    ----------
    path : str or os.PathLike
    space : `SparseMeasureSpace`, optional
        Space of the result. Default: the box stored in the file (extended
        XYZ written by `write_atoms`), else the atoms' bounding box enlarged by
        3 angstrom.
    weights : mapping or float or array-like, optional
        Atom weights: by species (``{'Au': 1.0, 'Pt': 1.2}``), one for all, or
        one per atom. Default: the weights stored in the file, else 1.
    ndim : {2, 3}, optional
        Dimension; default that of ``space`` or of the stored box, else 3. A
        2D configuration needs all atoms at one ``z``.
    index : int, optional
        Which configuration of a multi-frame file (trajectory); default the
        last.
    format : str, optional
        ASE format name; default guessed from the suffix and contents.

    Returns
    -------
    measure : `SparseMeasure`

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If ASE cannot read the file (unknown format, malformed contents), or
        the atoms do not fit ``space``/``ndim``.

    Examples
    --------
    >>> import tempfile, os
    >>> space = SparseMeasureSpace([0, 0], [5, 5])
    >>> mu = space.element([[1, 2], [3, 3]], weights=[1, 2], species=['Au', 'Pt'])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_atoms(os.path.join(tmp, 'atoms.xyz'), mu)
    ...     back = read_atoms(os.path.join(tmp, 'atoms.xyz'))
    >>> back == mu
    True
    """
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    path = _existing_file(path, 'atom')
    if not isinstance(index, numbers.Integral):
        raise TypeError(
            f'`index` must be an integer (one configuration), got {index!r}')
    try:
        atoms = ase.io.read(path, index=int(index), format=format)
    except UnknownFileTypeError as exc:
        raise ValueError(
            f'cannot read atoms from {str(path)!r}: ASE does not recognise the '
            f'format ({exc}); use a known suffix (.extxyz, .xyz, .cif, ...) or '
            f'pass format=...') from exc
    except Exception as exc:  # ASE's parsers raise many kinds of errors
        raise ValueError(
            f'cannot read atoms from {str(path)!r}: {type(exc).__name__}: '
            f'{exc}') from exc
    _snap_to_box(atoms, space)
    return from_ase(atoms, space=space, weights=weights, ndim=ndim,
                    margin=DEFAULT_MARGIN)


#: Text formats round positions (extended XYZ: 8 decimals); atoms this close
#: outside the box are put back on its boundary when reading.
_ROUNDING_TOLERANCE = 1e-7


def _snap_to_box(atoms, space):
    """Undo text-format rounding that would put boundary atoms outside the box."""
    if space is not None:
        lo, hi = space.min_pt, space.max_pt
    elif 'box_min' in atoms.info and 'box_max' in atoms.info:
        lo = np.ravel(atoms.info['box_min']).astype(float)
        hi = np.ravel(atoms.info['box_max']).astype(float)
    else:
        return
    d = min(lo.size, 3)
    if len(atoms) == 0 or lo.size != hi.size:
        return
    positions = atoms.positions.copy()
    coords = positions[:, :d]
    near_lo = (coords < lo[:d]) & (coords >= lo[:d] - _ROUNDING_TOLERANCE)
    near_hi = (coords > hi[:d]) & (coords <= hi[:d] + _ROUNDING_TOLERANCE)
    if np.any(near_lo) or np.any(near_hi):
        coords[near_lo] = np.broadcast_to(lo[:d], coords.shape)[near_lo]
        coords[near_hi] = np.broadcast_to(hi[:d], coords.shape)[near_hi]
        atoms.positions = positions


def write_atoms(path, measure, format=None):
    """Write an atomic configuration to a file, atomically, through ASE.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; an existing file is replaced only once the new one is
        completely written.
    measure : `SparseMeasure`
    format : str, optional
        ASE format name. Default: from the suffix (``.xyz`` and ``.extxyz``
        give extended XYZ, which keeps weights, species and box; ``.cif``
        gives CIF). See the module documentation for what each format keeps.

    Raises
    ------
    ValueError
        If the format is unknown or ASE cannot write it.

    Examples
    --------
    >>> import tempfile, os
    >>> space = SparseMeasureSpace([-3, -3, -3], [3, 3, 3])
    >>> mu = space.element([[0, 0, 0], [1, 1, 1]], species='Au')
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_atoms(os.path.join(tmp, 'atoms.xyz'), mu, format='xyz')
    ...     lines = open(os.path.join(tmp, 'atoms.xyz')).read().splitlines()
    >>> lines[0], lines[1], lines[2].split()[0]
    ('2', '', 'Au')
    """
    import ase.io
    from ase.io.formats import UnknownFileTypeError, filetype, ioformats

    if not isinstance(measure, SparseMeasure):
        raise TypeError(
            f'`measure` must be a SparseMeasure, got {type(measure).__name__}')
    path = Path(os.fspath(path))
    if format is None:
        try:
            format = filetype(path, read=False)
        except UnknownFileTypeError as exc:
            raise ValueError(
                f'cannot tell the atom file format of {str(path)!r} from its '
                f'name; add a suffix (.extxyz, .xyz, .cif, ...) or pass '
                f'format=...') from exc
    if format not in ioformats or not ioformats[format].can_write:
        raise ValueError(
            f'ASE cannot write the format {format!r} (from {str(path)!r}); use '
            f'.extxyz or .xyz (keeps weights, species and box), .cif, or '
            f'another format ASE writes')
    atoms = _atoms_for_format(measure, format)
    with atomic_path(path) as tmp:
        ase.io.write(tmp, atoms, format=format)


def _atoms_for_format(measure, format):
    """`to_ase`, adapted to what CIF can represent (see the module notes)."""
    atoms = to_ase(measure)
    if format == 'cif':
        space = measure.space
        shift = np.zeros(3)
        shift[:space.ndim] = space.min_pt
        atoms.positions = atoms.positions - shift
        extent = np.ones(3)
        extent[:space.ndim] = space.max_pt - space.min_pt
        atoms.set_cell(np.diag(extent))
    return atoms


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
    sigma : positive float
        Gaussian standard deviation of an atom.
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
    ValueError: 'angles' must have shape (2,) (one angle per row of 'data', ...
    """

    data: np.ndarray
    angles: np.ndarray
    detector_min: np.ndarray
    detector_max: np.ndarray
    box_min: np.ndarray
    box_max: np.ndarray
    sigma: float
    angle_min: float = None
    angle_max: float = None
    axis: np.ndarray = None
    noise_std: float = None
    positions: np.ndarray = None
    weights: np.ndarray = None
    species: np.ndarray = None

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
        """
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
        sigma : positive float
            Gaussian standard deviation of an atom.
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
            raise ValueError(
                f'the projection-data layout stores a Parallel2dGeometry or a '
                f'Parallel3dAxisGeometry (one tilt angle per projection), got '
                f'{type(geometry).__name__}; geometries with several angles '
                f'per projection cannot be written')
        if not isinstance(space, SparseMeasureSpace):
            raise TypeError(f'`space` must be a SparseMeasureSpace, got {space!r}')
        check_parallel_geometry(geometry, ndim=space.ndim)
        dpart = geometry.det_partition
        if not dpart.is_uniform:
            raise ValueError(
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
        raise ValueError(
            f'the angle partition of the {name} has cell boundaries that are '
            f'not half-way between the angles; the projection-data layout '
            f'stores only the angles and the outer edges. Build it with '
            f'odl.uniform_partition or odl.nonuniform_partition(angles)')
    if rebuilt.det_partition != geometry.det_partition:
        raise ValueError(
            f'the detector partition of the {name} ({geometry.det_partition}) '
            f'cannot be rebuilt from its edges and shape')
    frame, ours = (DetectorFrame.from_geometry(geometry),
                   DetectorFrame.from_geometry(rebuilt))
    scale = 1.0 + float(np.max(np.abs(np.concatenate(
        [geometry.det_partition.min_pt, geometry.det_partition.max_pt]))))
    if not (np.allclose(frame.axes, ours.axes, rtol=0, atol=1e-9)
            and np.allclose(frame.offsets, ours.offsets, rtol=0,
                            atol=1e-9 * scale)):
        raise ValueError(
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
        raise ValueError(
            f"'data' must have shape (n_angles, n_det) for 2D or (n_angles, "
            f"n_det_u, n_det_v) for 3D, got shape {data.shape}")
    if data.size == 0:
        raise ValueError(f"'data' is empty (shape {data.shape})")
    _check_finite(data, 'data')
    out['data'] = data
    d, n_angles = data.ndim, data.shape[0]
    k = d - 1

    angles = _vector(values['angles'], 'angles', n_angles,
                     "one angle per row of 'data', in radians")
    if np.any(np.diff(angles) <= 0):
        raise ValueError(
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
            raise ValueError(
                f"'{hi}' must be larger than '{lo}' in every coordinate, got "
                f"{lo}={out[lo].tolist()}, {hi}={out[hi].tolist()}")

    sigma = _scalar(values['sigma'], 'sigma')
    if not sigma > 0:
        raise ValueError(
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
        raise ValueError(
            f"'angle_min' ({amin}) must be <= the first angle ({angles[0]})")
    if amax is not None and amax < angles[-1]:
        raise ValueError(
            f"'angle_max' ({amax}) must be >= the last angle ({angles[-1]})")
    if amin is not None and amax is not None and not amax > amin:
        raise ValueError(
            f"'angle_max' must be larger than 'angle_min', got {amin} and "
            f"{amax}")

    if values['axis'] is not None:
        if d != 3:
            raise ValueError(
                "'axis' (the tilt axis) is only defined for 3D data; remove it "
                "for 2D data")
        axis = _vector(values['axis'], 'axis', 3, 'the 3D tilt axis')
        if not np.any(axis != 0):
            raise ValueError("'axis' must be a nonzero vector, got [0, 0, 0]")
        out['axis'] = axis

    if values['noise_std'] is not None:
        noise = _scalar(values['noise_std'], 'noise_std')
        if noise < 0:
            raise ValueError(f"'noise_std' must be >= 0, got {noise}")
        out['noise_std'] = noise

    if values['positions'] is None:
        for name in ('weights', 'species'):
            if values[name] is not None:
                raise ValueError(
                    f"'{name}' is given without 'positions'; ground-truth "
                    f"weights and species need the positions of the atoms")
    else:
        positions = _real_array(values['positions'], 'positions')
        if positions.ndim != 2 or positions.shape[1] != d:
            raise ValueError(
                f"'positions' must have shape (n, {d}) for {d}D data, got "
                f"shape {positions.shape}")
        _check_finite(positions, 'positions')
        outside = ~np.all((positions >= out['box_min'])
                          & (positions <= out['box_max']), axis=1)
        if np.any(outside):
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"'positions': {int(outside.sum())} atom(s) lie outside the box "
                f"['box_min', 'box_max'] = [{out['box_min'].tolist()}, "
                f"{out['box_max'].tolist()}], e.g. atom {i} at "
                f"{positions[i].tolist()}")
        out['positions'] = positions.astype(float)
        n = positions.shape[0]
        if values['weights'] is not None:
            weights = _real_array(values['weights'], 'weights')
            if weights.shape != (n,):
                raise ValueError(
                    f"'weights' must have shape ({n},), one per atom in "
                    f"'positions', got shape {weights.shape}")
            _check_finite(weights, 'weights')
            out['weights'] = weights.astype(float)
        if values['species'] is not None:
            species = _string_array(values['species'], 'species')
            if species.shape != (n,):
                raise ValueError(
                    f"'species' must have shape ({n},), one label per atom in "
                    f"'positions', got shape {species.shape}")
            out['species'] = species

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
        raise ValueError(f"'{name}' must be a real array, got {value!r}") from exc
    if arr.dtype.kind not in 'fiu':
        raise ValueError(
            f"'{name}' must hold real numbers, got dtype {arr.dtype}")
    return arr


def _vector(value, name, size, what):
    arr = _real_array(value, name).astype(float)
    if arr.ndim == 0 and size == 1:
        arr = arr.reshape(1)
    if arr.shape != (size,):
        raise ValueError(
            f"'{name}' must have shape ({size},) ({what}), got shape "
            f"{arr.shape}")
    _check_finite(arr, name)
    return arr


def _scalar(value, name):
    arr = _real_array(value, name)
    if arr.size != 1:
        raise ValueError(
            f"'{name}' must be a single number (shape ()), got shape "
            f"{arr.shape}")
    number = float(arr.reshape(()))
    if not np.isfinite(number):
        raise ValueError(f"'{name}' must be finite, got {number}")
    return number


def _string_array(value, name):
    arr = np.array(value)
    if arr.dtype.kind == 'S':
        arr = np.char.decode(arr, 'utf-8')
    elif arr.dtype.kind == 'O':
        arr = np.array([s.decode('utf-8') if isinstance(s, bytes) else s
                        for s in arr.ravel()], dtype=str).reshape(arr.shape)
    elif arr.dtype.kind != 'U':
        raise ValueError(
            f"'{name}' must hold strings (one label per atom), got dtype "
            f"{arr.dtype}")
    return arr.astype(str)


def _check_finite(arr, name):
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(
            f"'{name}' contains {bad} NaN or inf value(s); all values must be "
            f"finite")


# --- Projection files


def _projection_format(path):
    suffix = path.suffix.lower()
    if suffix not in PROJECTION_SUFFIXES:
        raise ValueError(
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


def read_projections(path):
    """Read a `ProjectionData` from a ``.npz`` or ``.h5``/``.hdf5`` file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    projection_data : `ProjectionData`

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the suffix is not supported, the file is not a valid archive, a
        required key is missing, or a key has the wrong shape or values; the
        message names the key.

    Warns
    -----
    UserWarning
        For keys that are not part of the layout (they are ignored).
    """
    path = Path(os.fspath(path))
    kind = _projection_format(path)
    path = _existing_file(path, 'projection-data')
    reader = _read_npz if kind == 'npz' else _read_hdf5
    values = reader(path)
    missing = [key for key in _REQUIRED_KEYS if key not in values]
    if missing:
        raise ValueError(
            f'{str(path)!r} is missing the required key(s) '
            f'{", ".join(repr(k) for k in missing)}; a projection-data file '
            f'needs {", ".join(_REQUIRED_KEYS)} (optional: '
            f'{", ".join(_OPTIONAL_KEYS)})')
    unknown = sorted(set(values) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        warnings.warn(
            f'{str(path)!r}: ignoring unknown key(s) '
            f'{", ".join(repr(k) for k in unknown)}; known keys are '
            f'{", ".join(_REQUIRED_KEYS + _OPTIONAL_KEYS)}',
            UserWarning, stacklevel=2)
    known = {key: value for key, value in values.items() if key not in unknown}
    try:
        return ProjectionData(**known)
    except ValueError as exc:
        raise ValueError(f'{str(path)!r}: {exc}') from exc


def _read_npz(path):
    import zipfile

    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError('it holds a single array, not named arrays')
        with archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(
            f'cannot read {str(path)!r} as a NumPy .npz archive of plain '
            f'arrays: {exc}') from exc


def _read_hdf5(path):
    import h5py

    try:
        fobj = h5py.File(path, 'r')
    except OSError as exc:
        raise ValueError(
            f'cannot read {str(path)!r} as an HDF5 file: {exc}') from exc
    values = {}
    with fobj:
        for name, item in fobj.items():
            if not isinstance(item, h5py.Dataset):
                if name in _REQUIRED_KEYS + _OPTIONAL_KEYS:
                    raise ValueError(
                        f"{str(path)!r}: '{name}' is an HDF5 group; the "
                        f"layout needs a dataset at the file root")
                values[name] = None  # reported as an unknown key, ignored
            elif h5py.check_string_dtype(item.dtype) is not None:
                values[name] = np.array(item.asstr()[()], dtype=str)
            else:
                values[name] = item[()]
    return values
