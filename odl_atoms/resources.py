"""How much memory a problem needs, estimated before any of it is allocated.

A tilt series of ``10^9`` detector cells, a phantom of ``10^10`` atoms or a
candidate grid of ``10^14`` points is easy to ask for and impossible to
hold: NumPy then fails with a `MemoryError` after minutes, or the machine
starts swapping. The estimates here count the large arrays of a job from
its sizes alone (atoms, projections, detector cells, grid points, image
pixels), so that it can be refused in one line that says how much it would
take and which setting lowers it (`MemoryEstimate.check`), before any work.

The byte counts per item are those of the arrays the toolkit builds
(windows of ``2 truncate sigma / cell + 2`` detector cells per atom, angle
and detector axis; float64 values and derivatives and int64 indices), with
the copies the solvers keep, and were checked against the peaks
`tracemalloc` measures (``tests/test_hardening.py``): the estimates are
upper bounds, within a few times the measured peak. They count what grows
with the problem, not the fixed cost of the libraries (about 300 MB for
Python, ODL, ASTRA and SciPy).

`simulation_memory` estimates `odl_atoms.simulate`, `reconstruction_memory`
a reconstruction (`odl_atoms.reconstruct`), from a `ProblemSize` or a
`~odl_atoms.io.ProjectionData`; `phantom_atoms` counts a built-in phantom's
atoms without building it.
"""

import math
from dataclasses import dataclass

import numpy as np

from odl_atoms.errors import ValidationError

__all__ = ('MemoryEstimate', 'ProblemSize', 'simulation_memory',
           'reconstruction_memory', 'phantom_atoms', 'size_text')

#: Bytes per atom of a phantom while it is built (ASE's arrays, the
#: measure's copies; measured 80-610).
ATOM_BYTES = 1000

#: Bytes per data value (the data, the noise, the projection-space elements
#: and the residuals the solvers keep; measured 35-120 with the per-cell
#: term below).
VALUE_BYTES = 128

#: Bytes per detector cell of one projection axis (partitions, cell edges
#: and centres).
CELL_BYTES = 192

#: Bytes per candidate-grid point of ADCG and annealing in 3D with a tilt
#: axis along a box axis (separable correlations, no stored windows;
#: measured 670).
SEPARABLE_POINT_BYTES = 1000

#: Bytes per image pixel of SIRT (float32 image, the ray transform's
#: temporaries, ASTRA's copies; measured 7-14 times 4 bytes).
PIXEL_BYTES = 64

#: Copies of the atoms' windows a reconstruction keeps (the current, the
#: best and the trial configurations, gradients).
ATOM_COPIES = 8

#: 2D lattice starts fit occupations with a dense matrix of the data of up
#: to this many sites (`odl_atoms.solvers.starts.OCCUPANCY_SITES`).
OCCUPANCY_SITES = 1000


def size_text(nbytes):
    """``nbytes`` as text with a binary unit (``'7.45 GiB'``).

    Examples
    --------
    >>> size_text(8 * 10 ** 9), size_text(2 ** 51), size_text(512)
    ('7.45 GiB', '2 PiB', '512 bytes')
    """
    nbytes = float(nbytes)
    for unit, size in (('EiB', 2 ** 60), ('PiB', 2 ** 50), ('TiB', 2 ** 40),
                       ('GiB', 2 ** 30), ('MiB', 2 ** 20), ('KiB', 2 ** 10)):
        if nbytes >= size:
            return f'{nbytes / size:.3g} {unit}'
    return f'{int(nbytes)} bytes'


@dataclass(frozen=True)
class MemoryEstimate:

    """The memory a job needs, by its large parts.

    Parameters
    ----------
    what : str
        The job, for messages (``'simulate'``, ``'ADCG'``).
    parts : tuple of (str, float, str)
        ``(label, bytes, setting)``: what the part is (``'candidate grid of
        3.1e+11 points'``), its bytes, and the setting that lowers it
        (``'grid_spacing'``; the messages name it through ``names``).

    Examples
    --------
    >>> estimate = MemoryEstimate('ADCG', (
    ...     ('candidate grid of 1e+12 points', 9e14, 'grid_spacing'),
    ...     ('data', 1e6, None)))
    >>> size_text(estimate.total), estimate.largest[2]
    ('819 TiB', 'grid_spacing')
    >>> estimate.check(max_memory=2 ** 30)
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: ADCG would need about 819 TiB of memory (candidate grid of 1e+12 points: 819 TiB), more than the limit of 1 GiB: a larger grid_spacing lowers it (max_memory= raises the limit)
    """

    what: str
    parts: tuple

    @property
    def total(self):
        """Bytes of all parts."""
        return float(sum(nbytes for _, nbytes, _ in self.parts))

    @property
    def largest(self):
        """The part with the most bytes, ``(label, bytes, setting)``."""
        return max(self.parts, key=lambda part: part[1])

    def check(self, max_memory=None, names=None):
        """Raise `ValidationError` if the job needs more than the limit.

        Parameters
        ----------
        max_memory : float, optional
            The limit in bytes (``inf``: no check). Default: the memory
            available to this process (`odl_atoms.io.safety.available_memory`;
            no check where it cannot be read).
        names : dict, optional
            How the message names the settings: ``{setting: text}``, e.g.
            ``{'grid_spacing': 'a larger --grid-spacing', 'max_memory':
            '--max-memory GiB'}``. A setting not named is shown as "a larger
            (smaller) ``setting``" by the rule of `LOWERED_BY`.
        """
        if max_memory is None:
            from odl_atoms.io.safety import available_memory
            limit = available_memory()
            if limit is None:
                return
            where = f'the {size_text(limit)} of memory available'
        else:
            limit = float(max_memory)
            if not limit > 0:
                raise ValidationError(f'the memory limit must be positive, '
                                      f'got {max_memory!r}')
            if math.isinf(limit):
                return
            where = f'the limit of {size_text(limit)}'
        total = self.total
        if total <= limit:
            return
        names = dict(names or {})
        label, nbytes, setting = self.largest
        lower = names.get(setting, _lowered_by(setting))
        override = names.get('max_memory', 'max_memory=')
        raise ValidationError(
            f'{self.what} would need about {size_text(total)} of memory '
            f'({label}: {size_text(nbytes)}), more than {where}: {lower} '
            f'lowers it ({override} raises the limit)')

    def __str__(self):
        parts = ', '.join(f'{label} {size_text(nbytes)}'
                          for label, nbytes, _ in self.parts)
        return f'{self.what}: {size_text(self.total)} ({parts})'


#: How `MemoryEstimate.check` names a setting that lowers the memory.
LOWERED_BY = {
    'grid_spacing': 'a larger grid_spacing',
    'proposal_spacing': 'a larger proposal_spacing',
    'pixel_size': 'a larger pixel_size',
    'n_detector': 'fewer detector cells (n_detector, or a larger '
                  'detector_cell)',
    'atoms': 'fewer atoms',
    'box': 'a smaller box',
    'data': 'less data (fewer projections or detector cells)',
    'starts': 'reconstructing without lattice starts (or a larger r_min)',
    'data_scale': 'data in units of one atom (the atoms the data hold '
                  'count)',
}


def _lowered_by(setting):
    return LOWERED_BY.get(setting, f'a different {setting}')


# --- Sizes of a problem


@dataclass(frozen=True)
class ProblemSize:

    """The sizes of a measurement that its memory depends on.

    Parameters
    ----------
    box_min, box_max : sequence of float
        The box (angstrom); its length is the dimension, 2 or 3.
    n_angles : int
        Projections.
    detector_shape : sequence of int
        Detector cells per axis (one in 2D, two in 3D).
    detector_cell : sequence of float
        Cell sides per detector axis (angstrom).
    sigma : float
        Atom width (angstrom).
    separable : bool, optional
        Whether a 3D tilt axis lies along a box axis (then the candidate
        grid's correlations need no stored windows). Default True.
    truncate : float, optional
        Window half-width in units of ``sigma`` (the operator's).
    """

    box_min: tuple
    box_max: tuple
    n_angles: int
    detector_shape: tuple
    detector_cell: tuple
    sigma: float
    separable: bool = True
    truncate: float = 6.0

    @classmethod
    def of(cls, measured, sigma=None):
        """The sizes of a `~odl_atoms.io.ProjectionData` (a `ProblemSize` is
        returned as it is); ``sigma`` overrides the measurement's."""
        if isinstance(measured, cls):
            return measured
        shape = tuple(int(n) for n in measured.data.shape[1:])
        lo = np.asarray(measured.detector_min, dtype=float)
        hi = np.asarray(measured.detector_max, dtype=float)
        axis = getattr(measured, 'axis', None)
        separable = axis is None or int(np.count_nonzero(
            np.abs(np.asarray(axis, dtype=float)) > 1e-12)) == 1
        return cls(tuple(np.asarray(measured.box_min, dtype=float)),
                   tuple(np.asarray(measured.box_max, dtype=float)),
                   int(measured.data.shape[0]), shape,
                   tuple((hi - lo) / np.asarray(shape)),
                   float(measured.sigma if sigma is None else sigma),
                   separable)

    @property
    def ndim(self):
        return len(self.box_min)

    @property
    def extent(self):
        return np.asarray(self.box_max, float) - np.asarray(self.box_min,
                                                           float)

    @property
    def n_values(self):
        """Data values: projections times detector cells."""
        return float(self.n_angles) * float(np.prod(
            np.asarray(self.detector_shape, dtype=float)))

    def window(self):
        """Detector cells of an atom's window per detector axis."""
        cells = np.asarray(self.detector_cell, dtype=float)
        shape = np.asarray(self.detector_shape, dtype=float)
        return np.minimum(shape, np.ceil(2 * self.truncate * self.sigma
                                         / cells) + 2)

    def atom_bytes(self):
        """Bytes of the windows of one atom (or candidate point): per
        detector axis and angle its first cell (int64) and its values,
        derivatives and indices (float64/int64) over the window."""
        return float(np.sum(self.n_angles * (8 + 24 * self.window())))

    def data_bytes(self):
        return VALUE_BYTES * self.n_values + CELL_BYTES * float(
            np.sum(np.asarray(self.detector_shape, dtype=float)))

    def grid_points(self, spacing):
        """Points of the regular grid of ``spacing`` over the box (as
        `odl_atoms.solvers.grid.scoring_discr` builds it)."""
        return float(np.prod(np.maximum(np.round(self.extent / spacing), 1)))


def _count(value):
    return f'{value:.3g}' if value >= 1e5 else f'{int(round(value))}'


def _data_part(size, setting='data'):
    shape = ' x '.join(str(n) for n in size.detector_shape)
    return (f'data: {size.n_angles} projections of {shape} detector cells',
            size.data_bytes(), setting)


def simulation_memory(n_atoms, size):
    """Estimate the memory of `odl_atoms.simulate`.

    Parameters
    ----------
    n_atoms : int
        Atoms to project.
    size : `ProblemSize`
        The simulated measurement.

    Returns
    -------
    estimate : `MemoryEstimate`

    Examples
    --------
    >>> size = ProblemSize((-8, -8), (8, 8), 3, (10 ** 9,), (1.6e-8,), 0.43)
    >>> estimate = simulation_memory(48, size)
    >>> print(estimate)
    simulate: 1.54 TiB (48 atoms 46.9 KiB, windows of 3.23e+08 cells 1.01 TiB, data: 3 projections of 1000000000 detector cells 536 GiB)
    >>> estimate.largest[2]
    'n_detector'
    """
    n_atoms = float(n_atoms)
    window = float(np.max(size.window()))
    # Windows of many cells mean cells much finer than an atom: fewer
    # cells lower them; otherwise fewer atoms do.
    setting = 'n_detector' if window > 100 else 'atoms'
    return MemoryEstimate('simulate', (
        (f'{_count(n_atoms)} atoms', n_atoms * ATOM_BYTES, 'atoms'),
        (f'windows of {_count(window)} cells', n_atoms * size.atom_bytes(),
         setting),
        _data_part(size, 'n_detector')))


def _n_species(weights):
    if weights is None:
        return 1
    if hasattr(weights, 'values'):
        return max(len(weights), 1)
    return max(int(np.size(weights)), 1)


def reconstruction_memory(measured, solver='adcg', grid_spacing=None,
                          pixel_size=None, proposal_spacing=None, starts=None,
                          r_min=None, weights=None, atoms=None):
    """Estimate the memory of a reconstruction.

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData` or `ProblemSize`
    solver : str or type, optional
        ``'adcg'``, ``'sa'``, ``'sirt'``, ``'sirt+learned'`` or a solver
        class (by its name; others count the data and the atoms only).
    grid_spacing : float, optional
        ADCG's candidate grid spacing (default: its own, ``sigma`` in 2D and
        ``2 sigma`` in 3D); annealing's grid mode.
    pixel_size : float, optional
        SIRT's pixel side (default: the detector cell).
    proposal_spacing : float, optional
        Annealing's proposal grid (default ``sigma``).
    starts : sequence, optional
        ADCG's starts; lattice starts (those with a ``lattice``) add the
        lattice sites of the box at spacing ``r_min`` (default: ``2
        sigma``, the smallest distance `estimate_r_min` counts).
    r_min : float, optional
    weights : float or mapping, optional
        Allowed weights (their number multiplies the scores).
    atoms : float, optional
        Atoms the data hold (`odl_atoms.checks.expected_atoms`); their
        windows are kept in several copies. Default: not counted.

    Returns
    -------
    estimate : `MemoryEstimate`

    Examples
    --------
    A box of +-1e5 angstrom scored on ADCG's default grid:

    >>> size = ProblemSize((-1e5, -1e5), (1e5, 1e5), 3, (96,), (0.3,), 0.43)
    >>> estimate = reconstruction_memory(size)
    >>> estimate.largest[0], size_text(estimate.total)
    ('candidate grid of 2.16e+11 points (spacing 0.43 Å over a box of 2e+05 x 2e+05 Å)', '446 TiB')
    """
    size = ProblemSize.of(measured)
    name = solver if isinstance(solver, str) else getattr(solver, '__name__',
                                                          str(solver))
    name = name.lower()
    what = {'adcg': 'ADCG', 'sa': 'simulated annealing',
            'simulatedannealing': 'simulated annealing', 'sirt': 'SIRT',
            'sirt+learned': 'SIRT + learned picking',
            'learnedsirt': 'SIRT + learned picking'}.get(name, name)
    parts = [_data_part(size)]
    d = size.ndim
    species = _n_species(weights)
    if atoms is not None and math.isfinite(atoms):
        parts.append((f'{_count(atoms)} atoms the data hold',
                      float(atoms) * size.atom_bytes() * ATOM_COPIES,
                      'data_scale'))
    elif atoms is not None:
        parts.append(('the atoms the data hold', math.inf, 'data_scale'))

    def grid(spacing, setting):
        points = size.grid_points(spacing)
        if d == 3 and size.separable:
            per_point = SEPARABLE_POINT_BYTES + 24 * species
        else:
            per_point = (1.5 * size.atom_bytes() + 8 * d
                         + 8 * (4 + 3 * species))
        box = ' x '.join(f'{e:.3g}' for e in size.extent)
        return (f'candidate grid of {_count(points)} points (spacing '
                f'{spacing:.3g} Å over a box of {box} Å)', points * per_point,
                setting)

    if name in ('adcg',):
        spacing = grid_spacing or size.sigma * (1 if d == 2 else 2)
        parts.append(grid(spacing, 'grid_spacing'))
        lattices = [s for s in (starts or ()) if getattr(s, 'lattice', None)]
        if lattices:
            spacing = r_min or 2 * size.sigma
            sites = 1.5 * float(np.prod(size.extent)) / spacing ** d
            nbytes = 4 * sites * (8 * d + 16 * size.n_angles * (d - 1))
            if d == 2:
                nbytes += 16 * size.n_values * min(sites, OCCUPANCY_SITES)
            parts.append((f'lattice fits of {_count(sites)} sites', nbytes,
                          'starts'))
    elif name in ('sa', 'simulatedannealing'):
        parts.append(grid(proposal_spacing or size.sigma,
                          'proposal_spacing'))
        if grid_spacing:
            parts.append(grid(grid_spacing, 'grid_spacing'))
    elif name in ('sirt', 'sirt+learned', 'learnedsirt'):
        pixel = pixel_size or float(size.detector_cell[0])
        pixels = float(np.prod(np.maximum(np.ceil(size.extent / pixel), 1)))
        box = ' x '.join(f'{e:.3g}' for e in size.extent)
        parts.append((f'image of {_count(pixels)} pixels (pixel size '
                      f'{pixel:.3g} Å over a box of {box} Å)',
                      pixels * PIXEL_BYTES, 'pixel_size'))
    return MemoryEstimate(what, tuple(parts))


# --- Phantoms


def phantom_atoms(name, shape=None, size=None):
    """Atoms of a built-in phantom, counted without building it.

    An upper bound for the 2D defects (the lattice's sites plus one); exact
    for the nanoparticles (the closed forms of `ase.cluster`'s shapes) and
    the slab.

    Parameters
    ----------
    name : str
        A 2D defect (`odl_atoms.defaults.PHANTOM_NAMES_2D`), a nanoparticle
        shape or ``'slab'``.
    shape : pair of int, optional
        2D lattice size (default 7 x 7).
    size : int, optional
        3D size (`odl_atoms.nanoparticle`, `odl_atoms.fcc_slab`).

    Returns
    -------
    count : int

    Examples
    --------
    >>> phantom_atoms('vacancy'), phantom_atoms('octahedron', size=4)
    (50, 44)
    >>> phantom_atoms('octahedron', size=2000)
    5333334000
    """
    from odl_atoms.defaults import NANOPARTICLE_SHAPES, PHANTOM_NAMES_2D

    if name in PHANTOM_NAMES_2D:
        nx, ny = (7, 7) if shape is None else (int(shape[0]), int(shape[1]))
        return nx * ny + 1
    if name in NANOPARTICLE_SHAPES:
        default = {'octahedron': 4, 'decahedron': 4, 'icosahedron': 3}
        n = default[name] if size is None else int(size)
        if name == 'octahedron':
            return n * (2 * n * n + 1) // 3
        if name == 'decahedron':
            return (5 * n ** 3 + n) // 6
        return (10 * n ** 3 - 15 * n ** 2 + 11 * n - 3) // 3
    if name == 'slab':
        n = 4 if size is None else int(size)
        return n * n * 6
    raise ValidationError(f'unknown phantom {name!r}')
