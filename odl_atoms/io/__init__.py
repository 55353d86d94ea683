"""Files in and out: microscope tilt series, projection data, atoms.

Lengths are in angstrom, angles in radians, everywhere in these files.

One module per idea:

- `odl_atoms.io.microscope`: image stacks from microscopes in
  (`read_tilt_series`, `TiltSeries`; RosettaSciIO, tifffile, mrcfile);
- `odl_atoms.io.prepare`: a tilt series onto the detector of the geometry
  (`prepare_projections`, conventions, background);
- `odl_atoms.io.projections`: projection-data files (`ProjectionData`,
  `read_projections`, `write_projections`);
- `odl_atoms.io.atomfiles`: atom files through ASE (`read_atoms`,
  `write_atoms`);
- `odl_atoms.io.safety`: atomic writes (`atomic_path`), size limits and
  self-contained HDF5 files;
- `odl_atoms.io.units`: the length and angle units microscope files use.

Every name is importable from ``odl_atoms.io``.

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

Optional keys:

``sigma`` : scalar
    Gaussian standard deviation of an atom, in angstrom. Data prepared from
    microscope images have none until it is estimated (calibration) or given;
    building the atom operator needs it.
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
``intensity_unit`` : string
    Unit of the values in ``data`` as the microscope file gave it (e.g.
    ``'counts'``); absent when unknown.
``background`` : ``(n_angles,)``
    The background subtracted from each projection when the data were
    prepared, in data units.
``pixel_size`` : ``(2,)``
    Pixel size of the microscope images, across and along the tilt axis, in
    angstrom (before any binning or averaging).
``pixels_averaged`` : integer scalar
    How many image pixels each data value averages (in 2D the pixels along
    the tilt axis, times any binning), for noise models.
``source`` : string
    Where the data come from (files, reader, where the angles and the pixel
    size were found, tilt-axis direction), as JSON text.

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
it and the expected shape). Keys not listed above are ignored (not read) with
a warning, so that files carrying extra metadata from other tools still load
while a misspelt optional key (say ``noise_sdt``) does not go unnoticed.
Complex values are refused (their imaginary part would be lost).

Files that cannot reach outside themselves
------------------------------------------
Reading never loads more than it checked first (`odl_atoms.io.safety`):

- the size each key declares (the ``.npz`` member's uncompressed size from
  the zip directory and its ``.npy`` header; the HDF5 dataset's shape and
  item size) is checked against a limit, by default the memory available
  (at most `MAX_READ_BYTES`), before anything is decompressed or read
  (``max_bytes=`` overrides it);
- an HDF5 key is read only if it is a dataset stored in the file itself: a
  soft or external link, external raw storage or a virtual dataset is
  refused without reading it;
- a damaged archive (a decompression or checksum error) gives a one-line
  `ValueError` that names the file.

Writing is atomic
-----------------
Every writer here writes to a temporary file in the target's directory and
moves it onto the target only when the writing has succeeded (`atomic_path`):
an interrupted or failing write never leaves a half-written file and never
destroys an existing one. A writer that is killed cannot remove its
temporary file; the next write to the same target does (see `atomic_path`
for which ones).

Examples
--------
>>> import tempfile, os
>>> import odl
>>> from odl.applications import tomo
>>> from odl_atoms.operators import GaussianRayTransform
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

from odl_atoms.io import atomfiles, microscope, prepare, projections, safety, units
from odl_atoms.io.atomfiles import read_atoms, write_atoms
from odl_atoms.io.microscope import (TILT_SERIES_SUFFIXES, TiltSeries,  # noqa: F401
                                     read_tilt_file, read_tilt_series)
from odl_atoms.io.prepare import (BACKGROUND_SMOOTHING, estimate_background,  # noqa: F401
                                  field_of_view_box, prepare_projections)
from odl_atoms.io.projections import (PROJECTION_SUFFIXES, ProjectionData,
                                      read_projections, write_projections)
from odl_atoms.io.safety import (MAX_READ_BYTES, STALE_TEMPORARY_SECONDS,  # noqa: F401
                                 atomic_path, available_memory,
                                 check_read_size)

# The names that also go to the top level (odl_atoms._EXPORTS['io'] lists
# the same); the others above are importable from here.
__all__ = ('atomic_path', 'read_atoms', 'write_atoms', 'ProjectionData',
           'read_projections', 'write_projections', 'PROJECTION_SUFFIXES',
           'TiltSeries', 'read_tilt_series', 'prepare_projections')
