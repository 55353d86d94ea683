"""Physically realistic HAADF-STEM tilt series, simulated with abTEM.

Everything else in ``benchmarks/`` is made by the project's own Gaussian
model. The cases here are made by abTEM 1.0 (multislice, independent atom
model; https://abtem.readthedocs.io), with thermal averaging over frozen
phonons, Poisson noise at a stated dose and the data in the microscope's
units (fraction of the incident beam, or detector counts), written as the
image stacks a microscopist has: HyperSpy ``.hspy`` (through RosettaSciIO),
an ImageJ ``.tif`` stack with an IMOD ``.rawtlt`` tilt file, plus the ground
truth (``.extxyz``) and every simulation parameter (``.json``).

Cases
-----
2D column crystals (the project's 2D problem): fcc gold or platinum seen
along [001], the atomic columns running along the tilt axis, 7 x 7 to
10 x 10 columns, a periodic cell of 2-4 unit cells (8-16 angstrom) along
the columns, with a vacancy column, an interstitial column (tetrahedral
sites, unrelaxed) or a displaced column. In the plane perpendicular to the
tilt axis the columns form a square lattice of spacing ``a / 2`` (2.04
angstrom for gold); tilting about [001], the zone axes are at 0, 45, 90 and
135 degrees ([010], [-110], [-100], [-1-10]). Each tilt is a full multislice
HAADF-STEM simulation (abTEM's PRISM algorithm, see "Accuracy" below)
averaged over frozen-phonon configurations; each image is a strip one unit
cell long along the columns (``y``) and across the whole projected crystal
(``x``). The 2D data the reconstruction needs is the average of each image
along ``y``.

3D particles: `ase.cluster` octahedra, cuboctahedra and decahedra of gold
(100-1000 atoms), 5-9 tilts within +-70 degrees about one axis. Multislice
per tilt is too slow on two cores, so these use the incoherent-imaging
approximation: abTEM's projected potential, averaged over frozen phonons,
convolved with the intensity of abTEM's probe (same optics) and a Gaussian
source size, scaled so that one isolated atom scatters into the detector
what a multislice simulation of one atom gives (see `atom_cross_section`).
The JSON says so (``"method"``). This model is linear in the atoms: it has
no channelling, so it is kinder than real data.

``python benchmarks/realistic_data.py --list`` prints the cases.

Coordinates (the reconstruction must use the same)
--------------------------------------------------
Positions are in ODL's frame, the frame of `odl_atoms`: in 2D a column is at
``(q1, q2)``; in 3D an atom is at ``(q1, q2, q3)`` with the tilt axis along
``q3`` (``Parallel3dAxisGeometry``'s default axis ``(0, 0, 1)``). The 2D
columns run along ``q3`` too (file ``*_atoms.extxyz`` holds their atoms).

Images are arrays ``(n_tilts, ny, nx)``: tilt ``k``, row ``j`` (image ``y``),
column ``i`` (image ``x``). Pixel centres are at ``x_i = x_offset + i * dx``
and ``y_j = y_offset + j * dy`` (angstrom; the ``.hspy`` axes carry scale and
offset, the JSON too). The tilt axis is the image's ``+y`` axis (array axis
1) and passes through ``x = 0``. At tilt angle ``theta`` (degrees in the
files; ``theta_k`` below),

- an atom or column lands at ``x = q1 cos(theta) + q2 sin(theta) + s_k``: the
  detector coordinate ``u = <q, det_axis(theta)>`` of ODL's
  ``Parallel2dGeometry`` / ``Parallel3dAxisGeometry`` with their default
  detector (``det_axis(theta) = (cos theta, sin theta)``), plus the shift
  ``s_k`` of that projection (zero unless the case says otherwise);
- and at ``y = q3`` (``v`` of ``Parallel3dAxisGeometry``).

So the projection data of `odl_atoms` are: in 2D the images averaged over
``y``, ``data[k, i] = mean_j image[k, j, i]``, on the detector
``uniform_partition(x_offset - dx / 2, x_offset + (nx - 1 / 2) dx, nx)``; in
3D ``data[k, i, j] = image[k, j, i]`` (layout ``(n_angles, n_u, n_v)``) on
the detector with edges ``(x_offset, y_offset) - (dx, dy) / 2`` and
``... + (nx - 1 / 2, ny - 1 / 2) * (dx, dy)``. `check_convention` verifies
this against ODL's geometry for single atoms.

In microscope terms: the beam travels along ``+z`` (abTEM's propagation
axis, ``(x, y, z)`` right-handed); the ODL coordinates are ``(q1, q2, q3) =
(x0, z0, y0)`` of the sample at 0 degrees, and a tilt by ``+theta`` is a
right-handed rotation of the sample about ``+y``: ``x = x0 cos + z0 sin``,
``z = -x0 sin + z0 cos``. ODL's ray direction ``(-sin theta, cos theta)`` is
the beam direction.

Data units and noise
--------------------
A noise-free image is the fraction of the incident beam that reaches the
annular detector (abTEM's normalisation: the probe carries intensity 1).
Poisson noise: ``counts ~ Poisson(dose * image)`` with ``dose`` electrons per
probe position (per pixel). Stored are ``counts / dose`` (fraction of the
beam, ``"intensity_unit": "fraction of beam"``), or, for cases with a
detector gain, ``gain * counts + offset + Normal(0, read_noise)`` (detector
counts). The noise-free stack stays in the cache (see below); the JSON
holds its per-tilt integrals.

Files per case (folder ``<out>/<name>/``)
----------------------------------------
``<name>.hspy``
    HyperSpy signal: navigation axis ``tilt`` (degrees; uniform axis when
    the angles are, else a non-uniform axis), signal axes ``y`` and ``x``
    (scale and offset in ``'Å'``); metadata: beam energy, convergence and
    detector angles, ``Tomography.tilts`` (degrees), the case parameters
    in ``original_metadata``.
``<name>.tif`` and ``<name>.rawtlt``
    ImageJ hyperstack (axes ``ZYX``, float32; one slice per tilt, slice
    labels with the angle), pixel size in the resolution tags with unit
    ``'angstrom'``, ImageJ's ``xorigin``/``yorigin`` (pixels); the tilt
    angles, one per line in degrees, in the IMOD ``.rawtlt`` file.
``<name>_truth.extxyz``
    Ground truth in ODL's frame, written by ASE the way `odl_atoms`
    writes atom files (``odl_atoms.io.read_atoms`` reads it): the 2D
    column positions (``z = 0``) for 2D cases, the atoms for 3D cases;
    weights 1; the box (``box_min``, ``box_max``) in ``info``.
``<name>_atoms.extxyz`` (2D cases)
    Every atom of the periodic column crystal in ODL's 3D frame
    (``q3`` along the columns; cell periodic along ``q3``).
``<name>.json``
    Every parameter (optics, angles, pixel size, dose, detector model,
    frozen phonons, seeds, sampling, slices), the coordinate convention,
    the defect, CPU and wall times, per-tilt integrals, and
    ``params_hash``: a case is regenerated only when its parameters (or
    `GENERATOR_VERSION`) change.

Every folder is written into a temporary folder first and renamed into
place when complete. The noise-free stacks are cached under
``benchmarks/data/realistic/_clean/`` (keyed by the hash of the physics
parameters only, so that cases differing only in dose or detector reuse
them). ``benchmarks/data/realistic_summary.json`` collects the timings and
integrals of the cases generated (small; committed).

Accuracy trade-offs (2D)
------------------------
Measured on the 7 x 7 gold crystal at 45 degrees, one frozen-phonon
configuration, against finer settings (numbers in the report of issue 19):

- Potential sampling 0.04 angstrom, so that the detector's outer angle of
  200 mrad is simulated (abTEM's anti-aliasing keeps 2/3 of the Nyquist
  angle: 209 mrad at 0.04). An outer angle of 160 mrad (sampling 0.05)
  would be 1.6x cheaper but collects 8.5 % less.
- Slices 1 angstrom thick. Against 0.5 angstrom: mean signal -0.4 %, peak
  -5 %; 2 angstrom slices: about +1 % and +3 % (not monotone: abTEM's
  "infinite" projection puts each atom into one slice).
- PRISM (abTEM's SMatrix) with interpolation only across the columns and a
  window of at least 7.5 angstrom (factor 4 for 7 x 7): within 1 % of
  factor 3 and within 1.6 % (of the peak) of plain multislice, at a third
  of the cost; the full period is kept along the columns.
- FFT sizes with prime factors 2, 3, 5, 7 only, FFTW plans measured: a
  204-point axis (2 x 2 x 3 x 17) with estimated plans took 2.5x the CPU
  time of 216 points with measured ones.
- The periodic cell is 2-4 unit cells along the columns: the probe's tails
  wrap around after 8-16 angstrom (HAADF integrates over the detector, so
  the wrapped intensity adds nearly incoherently, along the same columns).

Commands
--------
::

    python benchmarks/realistic_data.py --list
    python benchmarks/realistic_data.py --case au7_vacancy_zone
    python benchmarks/realistic_data.py --all --workers 2
    python benchmarks/realistic_data.py --all --quick          # small, fast
    python benchmarks/realistic_data.py --check-convention
    # the case shipped in tests/data:
    python benchmarks/realistic_data.py --case tiny_au5_vacancy_zone --out tests/data

``--workers N`` runs abTEM's dask graph on N threads (the frozen-phonon
configurations of a tilt run in parallel; FFTW itself single-threaded).
abTEM is needed only to generate (``pip install .[realistic]``); reading
the files needs RosettaSciIO or tifffile.
"""

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Bump when a change of this code changes the data it makes; part of every
#: parameter hash, so that cached cases are made again.
GENERATOR_VERSION = 1

HERE = Path(__file__).resolve().parent
#: Default output folder (git-ignored except for small JSON files).
DEFAULT_OUT = HERE / 'data' / 'realistic'
#: Cache of the noise-free stacks (expensive part), keyed by physics hash.
CLEAN_CACHE = DEFAULT_OUT / '_clean'
#: Summary of every case generated (timings, integrals); committed.
SUMMARY = HERE / 'data' / 'realistic_summary.json'

#: fcc lattice constants (angstrom, room temperature).
LATTICE_CONSTANT = {'Au': 4.078, 'Pt': 3.924}
#: Root-mean-square thermal displacement along one direction (angstrom) at
#: room temperature, sqrt(B / (8 pi^2)) with the Debye-Waller factors B of
#: Peng et al., Acta Cryst. A52 (1996) 456: about 0.62 (Au) and 0.32 (Pt)
#: square angstrom. abTEM's FrozenPhonons takes this per-direction value.
THERMAL_SIGMA = {'Au': 0.0886, 'Pt': 0.0637}


# --- Parameters


@dataclass(frozen=True)
class Optics:

    """Microscope settings (aberration-free probe).

    Attributes
    ----------
    energy : float
        Beam energy in eV.
    semiangle_cutoff : float
        Convergence semi-angle in mrad.
    detector_inner, detector_outer : float
        Annular (HAADF) detector angles in mrad.
    source_size : float
        Standard deviation (angstrom) of the Gaussian blur of the image
        by the finite source size (partial spatial coherence).
    """

    energy: float = 200e3
    semiangle_cutoff: float = 25.0
    detector_inner: float = 70.0
    detector_outer: float = 200.0
    source_size: float = 0.2


@dataclass(frozen=True)
class Detector:

    """Dose and detector model (applied to the noise-free stack).

    Attributes
    ----------
    dose : float
        Electrons per probe position (per pixel).
    gain : float or None
        None: data are ``counts / dose``, fractions of the beam. Otherwise
        detector units per electron, ``gain * counts + offset + read
        noise``.
    offset, read_noise : float
        Detector offset and standard deviation of Gaussian read noise, in
        detector units (only with ``gain``).
    """

    dose: float = 1e4
    gain: float = None
    offset: float = 0.0
    read_noise: float = 0.0


@dataclass(frozen=True)
class ColumnCase:

    """A 2D column crystal: fcc [001] columns along the tilt axis.

    Attributes
    ----------
    name, description : str
    element : {'Au', 'Pt'}
    columns : (int, int)
        Number of columns along ``q1`` and ``q2``.
    cells : int
        Unit cells along the columns in the periodic cell (column length
        ``cells * a``).
    defect : {'none', 'vacancy', 'interstitial', 'displaced'}
    defect_offset : (int, int)
        Column (vacancy, displaced) or cell corner (interstitial, at the
        cell's centre), in column steps from the central column.
    displacement : (float, float)
        Shift of the displaced column in ``(q1, q2)``, angstrom.
    angles : tuple of float
        Tilt angles in degrees.
    shifts : tuple of float or None
        Shift ``s_k`` (angstrom, along ``x``) of each projection.
    phonons : int
        Frozen-phonon configurations per tilt.
    thermal_sigma : float, optional
        RMS displacement along one direction (angstrom); default
        `THERMAL_SIGMA` of the element.
    rows : int
        Scan positions along ``y`` per unit cell; the scan step (``dx =
        dy``) is ``a / rows``.
    margin : float
        Box margin around the columns (angstrom); the image covers the
        box's projection at every angle.
    sampling : float
        Largest potential sampling (angstrom).
    slice_thickness : float
        Multislice slice thickness (angstrom).
    prism_window : float
        Smallest PRISM interpolation window across the columns (angstrom);
        0 for plain multislice.
    probe_margin : float
        Vacuum between the scanned region and the cell's edge (angstrom).
    seed : int
        Seed of the frozen phonons and the noise.
    optics, detector : `Optics`, `Detector`
    """

    name: str
    description: str
    element: str = 'Au'
    columns: tuple = (7, 7)
    cells: int = 2
    defect: str = 'vacancy'
    defect_offset: tuple = (1, -1)
    displacement: tuple = (0.6, 0.3)
    angles: tuple = (0.0, 45.0, 90.0)
    shifts: tuple = None
    phonons: int = 6
    thermal_sigma: float = None
    rows: int = 14
    margin: float = None
    sampling: float = 0.04
    slice_thickness: float = 1.0
    prism_window: float = 7.5
    probe_margin: float = 4.0
    seed: int = 0
    optics: Optics = field(default_factory=Optics)
    detector: Detector = field(default_factory=Detector)

    kind = '2d'

    @property
    def lattice_constant(self):
        return LATTICE_CONSTANT[self.element]

    @property
    def spacing(self):
        """Distance between neighbouring columns, ``a / 2``."""
        return self.lattice_constant / 2

    @property
    def sigma(self):
        return (THERMAL_SIGMA[self.element] if self.thermal_sigma is None
                else self.thermal_sigma)

    @property
    def box_margin(self):
        return self.spacing if self.margin is None else self.margin

    def quick(self):
        """A small, fast variant (5 x 5 at most, 2 phonons, coarse)."""
        n = tuple(min(c, 5) for c in self.columns)
        return dataclasses.replace(
            self, name=self.name + '-quick',
            description=self.description + ' (quick variant)',
            columns=n, phonons=2, sampling=0.05, slice_thickness=2.0,
            optics=dataclasses.replace(self.optics, detector_outer=160.0))


@dataclass(frozen=True)
class ParticleCase:

    """A 3D nanoparticle from `ase.cluster`, tilted about ``q3``.

    Attributes
    ----------
    name, description : str
    element : str
    shape : {'octahedron', 'cuboctahedron', 'decahedron', 'icosahedron'}
    size : tuple of int
        Arguments of the `ase.cluster` builder after the element:
        ``(length, cutoff)`` for octahedra (a cuboctahedron is an
        octahedron with ``cutoff = (length - 1) / 2``), ``(p, q, r)`` for
        decahedra, ``(noshells,)`` for icosahedra.
    angles : tuple of float
        Tilt angles in degrees.
    rotation : (float, str) or None
        Rotation of the particle before tilting, ``(degrees, axis)`` as
        `ase.Atoms.rotate` takes it (axis ``'x'``, ``'y'`` or ``'z'`` of
        the ODL frame); `ase.cluster` builds its particles with a cube
        axis (the decahedron's five-fold axis) along ``z``, the tilt axis.
    shifts : tuple of float or None
        Shift ``s_k`` (angstrom, along ``x``) of each projection.
    phonons : int
        Frozen-phonon configurations averaged in the projected potential.
    pixel_size : float
        Scan step (angstrom).
    oversampling : int
        Potential samples per pixel along each axis.
    margin : float
        Box margin around the atoms (angstrom).
    probe_margin : float
        Vacuum between the field of view and the cell's edge (angstrom).
    seed : int
    optics, detector : `Optics`, `Detector`
    """

    name: str
    description: str
    element: str = 'Au'
    shape: str = 'octahedron'
    size: tuple = (6, 1)
    angles: tuple = (-70.0, -35.0, 0.0, 35.0, 70.0)
    rotation: tuple = None
    shifts: tuple = None
    phonons: int = 8
    pixel_size: float = 0.25
    oversampling: int = 5
    margin: float = 3.0
    probe_margin: float = 4.0
    seed: int = 0
    optics: Optics = field(default_factory=Optics)
    detector: Detector = field(default_factory=Detector)

    kind = '3d'

    @property
    def lattice_constant(self):
        return LATTICE_CONSTANT[self.element]

    def quick(self):
        """A fast variant (2 phonons, 0.3 angstrom pixels)."""
        return dataclasses.replace(
            self, name=self.name + '-quick',
            description=self.description + ' (quick variant)',
            phonons=2, pixel_size=0.3, oversampling=4)


def _column_cases():
    zone, generic = (0.0, 45.0, 90.0), (10.0, 70.0, 130.0)
    cases = [ColumnCase(
        'tiny_au5_vacancy_zone',
        '5 x 5 Au [001] columns (2 cells, 8.2 A), vacancy column, '
        '0/45/90 deg; shipped in tests/data',
        columns=(5, 5), seed=5)]
    for defect, seed in (('vacancy', 11), ('interstitial', 12),
                         ('displaced', 13)):
        for label, angles in (('zone', zone), ('generic', generic)):
            cases.append(ColumnCase(
                f'au7_{defect}_{label}',
                f'7 x 7 Au [001] columns (2 cells, 8.2 A), {defect} column, '
                f'{"/".join(f"{a:g}" for a in angles)} deg',
                defect=defect, angles=angles, seed=seed))
    for label, angles in (('zone', zone), ('generic', generic)):
        cases.append(ColumnCase(
            f'pt8_vacancy_{label}',
            f'8 x 8 Pt [001] columns (3 cells, 11.8 A), vacancy column, '
            f'{"/".join(f"{a:g}" for a in angles)} deg',
            element='Pt', columns=(8, 8), cells=3, angles=angles, seed=21))
    cases.append(ColumnCase(
        'au10_displaced_zone',
        '10 x 10 Au [001] columns (4 cells, 16.3 A), displaced column, '
        '0/45/90 deg',
        columns=(10, 10), cells=4, defect='displaced', defect_offset=(2, -1),
        displacement=(-0.5, 0.7), seed=31))
    cases.append(ColumnCase(
        'au7_vacancy_zone_shifted',
        '7 x 7 Au vacancy, 0/45/90 deg, projections shifted by '
        '+0.4/-0.5/+0.25 A (drift; tilt-axis offset), detector counts '
        '(gain 0.8, offset 30, read noise 3)',
        angles=zone, shifts=(0.4, -0.5, 0.25), seed=14,
        detector=Detector(dose=1e4, gain=0.8, offset=30.0, read_noise=3.0)))
    return cases


def _particle_cases():
    return [
        ParticleCase('au_octahedron_140', 'Au truncated octahedron, 140 '
                     'atoms, 5 tilts -70..70 deg', shape='octahedron',
                     size=(6, 1), seed=41),
        ParticleCase('au_cuboctahedron_309', 'Au cuboctahedron, 309 atoms, '
                     '7 tilts -70..70 deg', shape='cuboctahedron',
                     size=(9, 4), angles=tuple(np.linspace(-70, 70, 7)),
                     seed=42),
        ParticleCase('au_decahedron_318', 'Au decahedron (Marks, p q r = '
                     '4 3 1), 318 atoms, five-fold axis along the beam at '
                     '0 deg, 9 tilts -70..70 deg',
                     shape='decahedron', size=(4, 3, 1), rotation=(90, 'x'),
                     angles=tuple(np.linspace(-70, 70, 9)), seed=43),
        ParticleCase('au_octahedron_891', 'Au octahedron, 891 atoms, 5 '
                     'tilts -70..70 deg, shifted projections',
                     shape='octahedron', size=(11, 0),
                     shifts=(0.3, -0.2, 0.0, 0.45, -0.35), seed=44),
    ]


#: Every case by name.
CASES = {c.name: c for c in _column_cases() + _particle_cases()}


def case_params(case):
    """The case's parameters as a JSON-able dict (what the hash covers)."""
    params = dataclasses.asdict(case)
    params['kind'] = case.kind
    params['generator_version'] = GENERATOR_VERSION
    return params


def _hash(obj):
    text = json.dumps(obj, sort_keys=True, default=float)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def params_hash(case):
    """Hash of every parameter but the name and description."""
    params = case_params(case)
    params.pop('name')
    params.pop('description')
    return _hash(params)


def physics_hash(case):
    """Hash of the parameters the noise-free stack depends on."""
    params = case_params(case)
    for key in ('name', 'description', 'detector'):
        params.pop(key)
    return _hash(params)


# --- Structures (ODL frame)


def column_crystal(case):
    """Atoms and 2D columns of a `ColumnCase`, in ODL's frame.

    Returns
    -------
    atoms : ase.Atoms
        Every atom at ``(q1, q2, q3)``, ``q3`` along the columns in
        ``[0, cells * a)``; the cell is periodic along ``q3``.
    columns : numpy.ndarray, shape (n, 2)
        Mean ``(q1, q2)`` of each column (the 2D ground truth).
    defect : dict
        What the defect is and where (2D positions).
    """
    from ase import Atoms
    from ase.build import bulk

    a = case.lattice_constant
    nx, nz = case.columns
    crystal = bulk(case.element, 'fcc', a=a, cubic=True).repeat(
        ((nx + 1) // 2 + 1, (nz + 1) // 2 + 1, case.cells))
    index = np.round(crystal.positions[:, :2] / (a / 2)).astype(int)
    keep = (index[:, 0] < nx) & (index[:, 1] < nz)
    crystal, index = crystal[keep], index[keep]
    centre = np.array([(nx - 1) / 2, (nz - 1) / 2])
    q = crystal.positions.copy()
    q[:, :2] = (index - centre) * (a / 2)

    centre_col = np.floor(centre).astype(int)
    site = centre_col + np.asarray(case.defect_offset, dtype=int)
    on_site = np.all(index == site, axis=1)
    defect = {'kind': case.defect}
    symbols = list(crystal.get_chemical_symbols())
    if case.defect == 'vacancy':
        defect['position'] = ((site - centre) * a / 2).tolist()
        q, symbols = q[~on_site], [s for s, o in zip(symbols, on_site) if not o]
        index = index[~on_site]
    elif case.defect == 'displaced':
        shift = np.asarray(case.displacement, dtype=float)
        q[on_site, :2] += shift
        defect['position'] = ((site - centre) * a / 2 + shift).tolist()
        defect['from'] = ((site - centre) * a / 2).tolist()
        defect['displacement'] = shift.tolist()
    elif case.defect == 'interstitial':
        # Tetrahedral sites (1/4, 1/4, 1/4) + lattice: they project onto the
        # centre of a square of columns; one atom per unit cell along it.
        xy = (site + 0.5 - centre) * a / 2
        extra = np.array([[xy[0], xy[1], (k + 0.25) * a]
                          for k in range(case.cells)])
        q = np.vstack([q, extra])
        symbols += [case.element] * case.cells
        index = np.vstack([index, np.tile([-1, -1], (case.cells, 1))])
        defect['position'] = xy.tolist()
        defect['site'] = 'tetrahedral (unrelaxed)'
    elif case.defect != 'none':
        raise ValueError(f'unknown defect {case.defect!r}')
    if case.defect in ('vacancy', 'displaced') and not on_site.any():
        raise ValueError(f'defect_offset {case.defect_offset} is outside the '
                         f'{nx} x {nz} crystal')

    atoms = Atoms(symbols, positions=q, cell=[0, 0, case.cells * a],
                  pbc=(False, False, True))
    # The column of each atom: equal (q1, q2) up to the displacement.
    keys = np.round(q[:, :2], 6)
    columns = np.unique(keys, axis=0)
    return atoms, columns, defect


def particle(case):
    """Atoms of a `ParticleCase` in ODL's frame, centred at the origin."""
    from ase import cluster

    a = case.lattice_constant
    if case.shape in ('octahedron', 'cuboctahedron'):
        atoms = cluster.Octahedron(case.element, *case.size,
                                   latticeconstant=a)
    elif case.shape == 'decahedron':
        atoms = cluster.Decahedron(case.element, *case.size,
                                   latticeconstant=a)
    elif case.shape == 'icosahedron':
        atoms = cluster.Icosahedron(case.element, *case.size,
                                    latticeconstant=a)
    else:
        raise ValueError(f'unknown particle shape {case.shape!r}')
    atoms.positions -= atoms.positions.mean(axis=0)
    if case.rotation is not None:
        atoms.rotate(*case.rotation)
    atoms.cell = None
    atoms.pbc = False
    return atoms


def box_of(positions, margin):
    """Bounding box of ``positions`` enlarged by ``margin``."""
    return positions.min(axis=0) - margin, positions.max(axis=0) + margin


def to_microscope(q, theta, shift=0.0):
    """Positions ``q`` (ODL frame, ``(n, 3)``) in the microscope frame.

    Returns ``(x, y, z)`` with ``x = <(q1, q2), det_axis(theta)> + shift``,
    ``y = q3`` (tilt axis) and ``z`` along the beam: a right-handed rotation
    of ``(x0, y0, z0) = (q1, q3, q2)`` by ``theta`` (radians) about ``+y``.
    """
    c, s = math.cos(theta), math.sin(theta)
    q = np.asarray(q, dtype=float)
    return np.stack([q[:, 0] * c + q[:, 1] * s + shift, q[:, 2],
                     -q[:, 0] * s + q[:, 1] * c], axis=1)


def _smooth_size(n, multiple=1):
    """Smallest m >= n, a multiple of ``multiple``, with prime factors <= 7."""
    m = max(int(math.ceil(n)), 1)
    while True:
        if m % multiple == 0:
            r = m
            for p in (2, 3, 5, 7):
                while r % p == 0:
                    r //= p
            if r == 1:
                return m
        m += 1


def _phonon_seeds(seed, tilt, n):
    state = np.random.SeedSequence([seed, 0, tilt]).generate_state(n)
    return tuple(int(s) for s in state)


# --- abTEM


def _abtem(workers=None):
    import abtem
    abtem.config.set({'device': 'cpu', 'fft': 'fftw',
                      'diagnostics.progress_bar': False,
                      'fftw.planning_effort': 'FFTW_MEASURE',
                      'warnings.overspecified-grid': False})
    return abtem


def _compute(lazy, workers):
    import dask
    with dask.config.set(scheduler='threads', num_workers=workers):
        return lazy.compute()


def _column_geometry(case):
    """Image grid and cell of a `ColumnCase` (everything but the atoms)."""
    a = case.lattice_constant
    step = a / case.rows
    _, columns, _ = column_crystal(case)
    lo, hi = box_of(columns, case.box_margin)
    corners = np.array([[x, z] for x in (lo[0], hi[0]) for z in (lo[1], hi[1])])
    radius = float(np.max(np.linalg.norm(corners, axis=1)))
    if case.shifts is not None:
        radius += float(np.max(np.abs(case.shifts)))
    half = int(math.ceil(radius / step))
    nx, ny = 2 * half + 1, case.rows
    scan_width = (nx - 1) * step
    length_x = scan_width + 2 * case.probe_margin
    length_y = case.cells * a
    f = 1 if not case.prism_window else max(
        1, int(length_x // case.prism_window))
    gx = _smooth_size(length_x / case.sampling, multiple=f)
    gy = _smooth_size(length_y / case.sampling)
    return dict(step=step, nx=nx, ny=ny, x_offset=-half * step,
                y_offset=step / 2, length=(length_x, length_y), gpts=(gx, gy),
                interpolation=f)


def simulate_columns(case, workers=2, progress=True):
    """Noise-free HAADF images of a `ColumnCase`, fraction of the beam.

    Returns
    -------
    images : numpy.ndarray, shape (n_tilts, ny, nx)
    info : dict
        Grid, timings and abTEM settings.
    """
    from ase import Atoms
    from scipy import ndimage
    from tqdm import tqdm

    abtem = _abtem()
    grid = _column_geometry(case)
    atoms_q, _, _ = column_crystal(case)
    lx, ly = grid['length']
    step, nx, ny = grid['step'], grid['nx'], grid['ny']
    x0 = lx / 2 + grid['x_offset']  # abTEM x of the first pixel centre
    optics = case.optics
    detector = abtem.AnnularDetector(inner=optics.detector_inner,
                                     outer=optics.detector_outer)
    scan = abtem.GridScan(start=(x0, grid['y_offset']),
                          end=(x0 + nx * step, grid['y_offset'] + ny * step),
                          gpts=(nx, ny), endpoint=False)
    sigma = {case.element: case.sigma}
    shifts = case.shifts or (0.0,) * len(case.angles)
    images, times = [], []
    bar = tqdm(total=len(case.angles), desc=case.name, unit='tilt',
               disable=not progress)
    for k, (angle, shift) in enumerate(zip(case.angles, shifts)):
        t_cpu, t_wall = time.process_time(), time.perf_counter()
        xyz = to_microscope(atoms_q.positions, math.radians(angle), shift)
        xyz[:, 0] += lx / 2
        xyz[:, 1] %= ly
        zmin, zmax = xyz[:, 2].min(), xyz[:, 2].max()
        xyz[:, 2] -= zmin - 1.0
        atoms = Atoms(atoms_q.get_chemical_symbols(), positions=xyz,
                      cell=[lx, ly, zmax - zmin + 2.0], pbc=True)
        phonons = abtem.FrozenPhonons(
            atoms, num_configs=case.phonons, sigmas=sigma,
            seed=_phonon_seeds(case.seed, k, case.phonons))
        potential = abtem.Potential(phonons, gpts=grid['gpts'],
                                    slice_thickness=case.slice_thickness,
                                    projection='infinite',
                                    parametrization='lobato')
        if grid['interpolation'] > 1:
            wave = abtem.SMatrix(potential=potential, energy=optics.energy,
                                 semiangle_cutoff=optics.semiangle_cutoff,
                                 interpolation=(grid['interpolation'], 1))
            lazy = wave.scan(scan=scan, detectors=detector)
        else:
            probe = abtem.Probe(energy=optics.energy,
                                semiangle_cutoff=optics.semiangle_cutoff)
            lazy = probe.scan(potential, scan=scan, detectors=detector)
        measured = _compute(lazy, workers)
        images.append(np.asarray(measured.array, dtype=float).T)
        times.append((time.process_time() - t_cpu,
                      time.perf_counter() - t_wall))
        bar.update()
    bar.close()
    images = np.stack(images)
    if optics.source_size > 0:
        # periodic along y (the strip is one period), vacuum along x
        images = ndimage.gaussian_filter(
            images, (0, optics.source_size / step, optics.source_size / step),
            mode=('nearest', 'wrap', 'nearest'))
    info = dict(grid, potential_sampling=[lx / grid['gpts'][0],
                                          ly / grid['gpts'][1]],
                n_slices=int(potential.num_slices),
                cpu_seconds=[t[0] for t in times],
                wall_seconds=[t[1] for t in times],
                method=('PRISM (abTEM SMatrix), interpolation '
                        f'({grid["interpolation"]}, 1)'
                        if grid['interpolation'] > 1 else
                        'multislice (abTEM Probe.scan)'))
    return images, info


_CROSS_SECTIONS = {}


def atom_cross_section(element, optics, sampling=0.02, extent=12.0):
    """HAADF cross-section of one atom (angstrom^2), by multislice.

    A plane wave through one atom (abTEM, one slice, no thermal motion):
    the fraction of the intensity in the detector's annulus times the cell
    area. Summed over probe positions, a STEM image of an isolated atom
    integrates to about this (reciprocity; the probe's incidence angles
    within the convergence angle are neglected).
    """
    key = (element, dataclasses.astuple(optics), sampling, extent)
    if key not in _CROSS_SECTIONS:
        from ase import Atoms
        abtem = _abtem()
        atoms = Atoms(element, positions=[[extent / 2] * 3],
                      cell=[extent] * 3)
        potential = abtem.Potential(atoms, sampling=sampling,
                                    slice_thickness=extent,
                                    projection='infinite')
        wave = abtem.PlaneWave(energy=optics.energy)
        exit_wave = wave.multislice(potential).compute()
        patterns = exit_wave.diffraction_patterns(max_angle='valid')
        total = float(patterns.array.sum())
        inner = patterns.integrate_radial(optics.detector_inner,
                                          optics.detector_outer)
        fraction = float(np.asarray(inner.array).sum()) / total
        _CROSS_SECTIONS[key] = fraction * extent ** 2
    return _CROSS_SECTIONS[key]


def _particle_geometry(case, atoms_q):
    step = case.pixel_size
    lo, hi = box_of(atoms_q.positions, case.margin)
    corners = np.array([[x, z] for x in (lo[0], hi[0]) for z in (lo[1], hi[1])])
    radius = float(np.max(np.linalg.norm(corners, axis=1)))
    if case.shifts is not None:
        radius += float(np.max(np.abs(case.shifts)))
    half_x = int(math.ceil(radius / step))
    half_y = int(math.ceil(max(abs(lo[2]), abs(hi[2])) / step))
    k = case.oversampling
    sampling = step / k
    margin = int(math.ceil(case.probe_margin / sampling))
    gx = _smooth_size(2 * (half_x * k + margin) + 1)
    gy = _smooth_size(2 * (half_y * k + margin) + 1)
    return dict(step=step, nx=2 * half_x + 1, ny=2 * half_y + 1,
                x_offset=-half_x * step, y_offset=-half_y * step,
                potential_sampling=[sampling, sampling], gpts=(gx, gy),
                length=(gx * sampling, gy * sampling),
                centre_index=(gx // 2, gy // 2), box=(lo, hi))


def project_particle(atoms_q, case, workers=2, progress=True, name=None):
    """Noise-free HAADF images by projected potential x probe intensity.

    For each tilt: abTEM's projected potential of the rotated atoms,
    averaged over ``case.phonons`` frozen-phonon configurations, convolved
    (periodically) with the intensity of abTEM's probe and a Gaussian
    source size, scaled by ``atom_cross_section / (integral of one atom's
    projected potential)``, and sampled at the scan positions.

    Returns
    -------
    images : numpy.ndarray, shape (n_tilts, ny, nx)
    info : dict
    """
    from ase import Atoms
    from scipy import ndimage
    from tqdm import tqdm

    abtem = _abtem()
    optics = case.optics
    grid = _particle_geometry(case, atoms_q)
    gx, gy = grid['gpts']
    lx, ly = grid['length']
    sampling = grid['potential_sampling'][0]
    cx, cy = grid['centre_index']
    k = case.oversampling

    def projected(atoms, seeds):
        if seeds is None:
            potential = abtem.Potential(atoms, gpts=(gx, gy),
                                        slice_thickness=atoms.cell[2, 2],
                                        projection='infinite')
        else:
            phonons = abtem.FrozenPhonons(
                atoms, num_configs=len(seeds), seed=seeds,
                sigmas={s: THERMAL_SIGMA.get(s, 0.08)
                        for s in set(atoms.get_chemical_symbols())})
            potential = abtem.Potential(phonons, gpts=(gx, gy),
                                        slice_thickness=atoms.cell[2, 2],
                                        projection='infinite')
        image = np.asarray(_compute(potential.project(), workers).array,
                           dtype=float)
        return image.reshape((-1, gx, gy)).mean(axis=0)

    def place(xyz, symbols):
        xyz = xyz.copy()
        xyz[:, 0] += cx * sampling
        xyz[:, 1] += cy * sampling
        zmin, zmax = xyz[:, 2].min(), xyz[:, 2].max()
        xyz[:, 2] -= zmin - 2.0
        return Atoms(symbols, positions=xyz, cell=[lx, ly, zmax - zmin + 4.0],
                     pbc=True)

    # Point spread function: probe intensity (centred at the origin, sum 1)
    # blurred by the source size.
    probe = abtem.Probe(energy=optics.energy,
                        semiangle_cutoff=optics.semiangle_cutoff,
                        gpts=(gx, gy), extent=(lx, ly))
    psf = np.asarray(probe.build(scan=(0.0, 0.0)).intensity().compute().array,
                     dtype=float).reshape(gx, gy)
    if optics.source_size > 0:
        psf = ndimage.gaussian_filter(psf, optics.source_size / sampling,
                                      mode='wrap')
    psf /= psf.sum()
    psf_ft = np.fft.rfft2(psf)

    # Scale: one isolated atom integrates to its HAADF cross-section.
    one = projected(place(np.zeros((1, 3)), [case.element]), None)
    scale = atom_cross_section(case.element, optics) / (one.sum()
                                                         * sampling ** 2)

    shifts = case.shifts or (0.0,) * len(case.angles)
    symbols = atoms_q.get_chemical_symbols()
    rows = cy + (np.arange(grid['ny']) - (grid['ny'] - 1) // 2) * k
    cols = cx + (np.arange(grid['nx']) - (grid['nx'] - 1) // 2) * k
    images, times = [], []
    bar = tqdm(total=len(case.angles), desc=name or case.name, unit='tilt',
               disable=not progress)
    for t, (angle, shift) in enumerate(zip(case.angles, shifts)):
        t_cpu, t_wall = time.process_time(), time.perf_counter()
        xyz = to_microscope(atoms_q.positions, math.radians(angle), shift)
        seeds = (_phonon_seeds(case.seed, t, case.phonons)
                 if case.phonons else None)
        potential = projected(place(xyz, symbols), seeds)
        image = np.fft.irfft2(np.fft.rfft2(potential) * psf_ft, s=(gx, gy))
        images.append(scale * image[np.ix_(cols, rows)].T)
        times.append((time.process_time() - t_cpu,
                      time.perf_counter() - t_wall))
        bar.update()
    bar.close()
    info = dict(grid, box=[grid['box'][0].tolist(), grid['box'][1].tolist()],
                cross_section=atom_cross_section(case.element, optics),
                scale=scale, cpu_seconds=[t[0] for t in times],
                wall_seconds=[t[1] for t in times],
                method=('incoherent imaging: abTEM projected potential '
                        '(frozen-phonon average) convolved with the abTEM '
                        'probe intensity and the source size, scaled to the '
                        'multislice HAADF cross-section of one atom; no '
                        'channelling (not a multislice simulation)'))
    return np.stack(images), info


def simulate_particle(case, workers=2, progress=True):
    """Noise-free images of a `ParticleCase` (see `project_particle`)."""
    return project_particle(particle(case), case, workers, progress)


# --- Detector


def detect(clean, detector, seed):
    """Noisy data from noise-free images (fraction of the beam).

    Returns ``(data float32, unit)``; see `Detector`.
    """
    rng = np.random.default_rng([seed, 1])
    counts = rng.poisson(detector.dose * np.clip(clean, 0, None))
    if detector.gain is None:
        return (counts / detector.dose).astype(np.float32), 'fraction of beam'
    data = detector.gain * counts + detector.offset
    if detector.read_noise:
        data = data + rng.normal(0.0, detector.read_noise, size=data.shape)
    return data.astype(np.float32), 'counts'


# --- Writing


def _uniform(angles):
    angles = np.asarray(angles, dtype=float)
    if angles.size < 2:
        return True
    steps = np.diff(angles)
    return bool(np.allclose(steps, steps[0], rtol=0, atol=1e-9))


def write_hspy(path, data, angles, meta):
    """Write the stack as a HyperSpy signal through RosettaSciIO."""
    from rsciio.hspy import file_writer

    angles = np.asarray(angles, dtype=float)
    if _uniform(angles):
        tilt = {'name': 'tilt', 'units': 'deg', 'navigate': True,
                'size': len(angles), 'offset': float(angles[0]),
                'scale': float(angles[1] - angles[0]) if len(angles) > 1
                else 1.0}
    else:
        tilt = {'name': 'tilt', 'units': 'deg', 'navigate': True,
                'axis': angles}
    ny, nx = data.shape[1:]
    axes = [tilt,
            {'name': 'y', 'units': 'Å', 'navigate': False, 'size': ny,
             'scale': meta['pixel_size'], 'offset': meta['y_offset']},
            {'name': 'x', 'units': 'Å', 'navigate': False, 'size': nx,
             'scale': meta['pixel_size'], 'offset': meta['x_offset']}]
    optics = meta['optics']
    metadata = {
        'General': {'title': meta['name'],
                    'original_filename': Path(path).name},
        'Signal': {'signal_type': '', 'quantity':
                   f'Intensity ({meta["intensity_unit"]})'},
        'Acquisition_instrument': {'TEM': {
            'beam_energy': optics['energy'] / 1e3,
            'convergence_angle': optics['semiangle_cutoff'],
            'Detector': {'STEM': {'inner_angle': optics['detector_inner'],
                                  'outer_angle': optics['detector_outer']}}}},
        'Tomography': {'tilts': angles.tolist(), 'tilt_axis': '+y',
                       'tilt_axis_angle_deg': 90.0},
        'Simulation': {'program': 'abTEM', 'generator':
                       'benchmarks/realistic_data.py',
                       'params_hash': meta['params_hash']},
    }
    signal = {'data': data, 'axes': axes, 'metadata': metadata,
              'original_metadata': {'realistic_data_json':
                                    json.dumps(meta, default=float)},
              # what HyperSpy's own signal dict holds besides the above
              'attributes': {'_lazy': False}, 'tmp_parameters': {},
              'learning_results': {}, 'models': {},
              'package_info': {'package': '', 'package_version': ''}}
    file_writer(str(path), signal, show_progressbar=False)


def write_tif(path, data, angles, meta):
    """Write an ImageJ hyperstack (pixel size in angstrom) and .rawtlt."""
    import tifffile

    h = meta['pixel_size']
    labels = [f'tilt {a:+.2f} deg' for a in angles]
    tifffile.imwrite(
        path, data.astype(np.float32), imagej=True,
        resolution=(1 / h, 1 / h),
        metadata={'axes': 'ZYX', 'unit': 'angstrom', 'Labels': labels,
                  'xorigin': -meta['x_offset'] / h,
                  'yorigin': -meta['y_offset'] / h})
    with open(Path(path).with_suffix('.rawtlt'), 'w') as f:
        f.write(''.join(f'{a:.4f}\n' for a in angles))


def write_truth(path, positions, box, element, ndim):
    """Ground truth as extended XYZ, the way `odl_atoms` writes atoms."""
    import ase.io
    from ase import Atoms

    positions = np.asarray(positions, dtype=float)
    xyz = np.zeros((len(positions), 3))
    xyz[:, :ndim] = positions
    lo, hi = (np.asarray(b, dtype=float) for b in box)
    extent = np.zeros(3)
    extent[:ndim] = hi - lo
    atoms = Atoms([element] * len(positions), positions=xyz,
                  cell=np.diag(extent), pbc=False)
    atoms.set_array('weights', np.ones(len(positions)))
    atoms.info['box_min'] = lo
    atoms.info['box_max'] = hi
    ase.io.write(path, atoms, format='extxyz')


def _integrals(images, meta):
    """Per-tilt integrals: 2D ``mean_y sum_x * dx`` (angstrom x fraction),
    3D ``sum * dx * dy`` (angstrom^2 x fraction)."""
    h = meta['pixel_size']
    if meta['kind'] == '2d':
        return (images.mean(axis=1).sum(axis=1) * h).tolist()
    return (images.sum(axis=(1, 2)) * h * h).tolist()


# --- Cases end to end


def _clean_stack(case, workers, progress, cache=CLEAN_CACHE):
    """The noise-free stack of ``case`` (cached by its physics hash)."""
    path = Path(cache) / f'{physics_hash(case)}.npz'
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return f['images'], json.loads(str(f['info']))
    simulate = simulate_columns if case.kind == '2d' else simulate_particle
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    images, info = simulate(case, workers=workers, progress=progress)
    # everything: structure, probe, calibration, every tilt
    info['total_cpu_seconds'] = time.process_time() - t_cpu
    info['total_wall_seconds'] = time.perf_counter() - t_wall
    info['machine_load'] = os.getloadavg()
    info['workers'] = workers
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.npz', dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, images=images,
                            info=json.dumps(info, default=_json_default))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return images, json.loads(json.dumps(info, default=_json_default))


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f'{type(obj).__name__} is not JSON serialisable')


def _convention(meta):
    nx, ny, h = meta['nx'], meta['ny'], meta['pixel_size']
    x0, y0 = meta['x_offset'], meta['y_offset']
    text = {
        'frame': ("ODL's: 2D columns at (q1, q2); 3D atoms at (q1, q2, q3) "
                  'with the tilt axis along q3 (Parallel3dAxisGeometry, '
                  'axis (0, 0, 1)); 2D columns run along q3'),
        'array_layout': ('images[k, j, i]: tilt k, image row j (y), image '
                         'column i (x)'),
        'pixel_centres': ('x_i = x_offset + i * pixel_size, y_j = y_offset '
                          '+ j * pixel_size (angstrom)'),
        'projection': ('at tilt angle theta_k an atom (column) at q lands '
                       'at x = q1 cos(theta_k) + q2 sin(theta_k) + '
                       'shift_k (= <q, det_axis(theta_k)> of ODL '
                       'Parallel2dGeometry / Parallel3dAxisGeometry with '
                       'the default detector, plus the shift) and at y = q3'),
        'tilt_axis': ('+y of the images (array axis 1), through x = 0; '
                      'positive theta is a right-handed rotation of the '
                      'sample about +y, the beam travels along ODL\'s ray '
                      'direction (-sin theta, cos theta) of (q1, q2)'),
        'odl_data_2d': ('data[k, i] = mean over j of images[k, j, i] on '
                        'detector uniform_partition(detector_min, '
                        'detector_max, nx)'),
        'odl_data_3d': ('data[k, i, j] = images[k, j, i] (n_angles, n_u, '
                        'n_v) on detector uniform_partition(detector_min, '
                        'detector_max, (nx, ny))'),
    }
    machine = {
        'tilt_axis_image': [0.0, 1.0],
        'tilt_axis_angle_deg': 90.0,
        'detector_min': ([x0 - h / 2] if meta['kind'] == '2d'
                         else [x0 - h / 2, y0 - h / 2]),
        'detector_max': ([x0 + (nx - 0.5) * h] if meta['kind'] == '2d'
                         else [x0 + (nx - 0.5) * h, y0 + (ny - 0.5) * h]),
    }
    return text, machine


def generate(case, out=DEFAULT_OUT, workers=2, force=False, progress=True,
             clean_cache=CLEAN_CACHE):
    """Make ``case`` in ``out/<name>/`` unless it is there with its hash.

    Returns the path of the case's JSON file.
    """
    import abtem
    import ase

    folder = Path(out) / case.name
    json_path = folder / f'{case.name}.json'
    phash = params_hash(case)
    if not force and json_path.exists():
        try:
            with open(json_path) as f:
                if json.load(f).get('params_hash') == phash:
                    return json_path
        except (OSError, ValueError):
            pass

    t_cpu, t_wall = time.process_time(), time.perf_counter()
    clean, info = _clean_stack(case, workers, progress, cache=clean_cache)
    data, unit = detect(clean, case.detector, case.seed)

    if case.kind == '2d':
        atoms_q, truth, defect = column_crystal(case)
        box = box_of(truth, case.box_margin)
        ndim = 2
    else:
        atoms_q = particle(case)
        truth, defect = atoms_q.positions, {'kind': case.shape}
        box = box_of(truth, case.margin)
        ndim = 3
    angles = [float(a) for a in case.angles]
    meta = {
        'name': case.name, 'description': case.description,
        'kind': case.kind, 'params_hash': params_hash(case),
        'physics_hash': physics_hash(case),
        'generator': 'benchmarks/realistic_data.py',
        'generator_version': GENERATOR_VERSION,
        'command': _command(case, out),
        'abtem_version': abtem.__version__, 'ase_version': ase.__version__,
        'python': platform.python_version(),
        'angles_deg': angles,
        'shifts': list(case.shifts) if case.shifts else [0.0] * len(angles),
        'pixel_size': info['step'], 'nx': info['nx'], 'ny': info['ny'],
        'x_offset': info['x_offset'], 'y_offset': info['y_offset'],
        'shape': [len(angles), info['ny'], info['nx']],
        'intensity_unit': unit,
        'element': case.element,
        'lattice_constant': case.lattice_constant,
        'thermal_sigma': (case.sigma if case.kind == '2d'
                          else THERMAL_SIGMA[case.element]),
        'n_atoms': len(atoms_q),
        'n_truth': len(truth),
        'box_min': box[0].tolist(), 'box_max': box[1].tolist(),
        'defect': defect,
        'optics': dataclasses.asdict(case.optics),
        'detector': dataclasses.asdict(case.detector),
        'seed': case.seed,
        'seeds': ('frozen phonons of tilt k: numpy SeedSequence([seed, 0, '
                  'k]).generate_state(phonons); noise: '
                  'numpy.random.default_rng([seed, 1])'),
        'params': case_params(case),
        'simulation': info,
        'integral_clean': _integrals(clean, {'kind': case.kind,
                                             'pixel_size': info['step']}),
    }
    if unit == 'fraction of beam':
        meta['integral_data'] = _integrals(
            data.astype(float), {'kind': case.kind,
                                 'pixel_size': info['step']})
    meta['integral_note'] = (
        '2D: mean over y, sum over x times pixel size (angstrom x fraction '
        'of beam); 3D: sum times pixel area (angstrom^2 x fraction of beam)')
    text, machine = _convention(meta)
    meta['convention'] = text
    meta.update(machine)

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{case.name}.', dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
    try:
        write_hspy(tmp / f'{case.name}.hspy', data, angles, meta)
        write_tif(tmp / f'{case.name}.tif', data, angles, meta)
        write_truth(tmp / f'{case.name}_truth.extxyz', truth[:, :ndim], box,
                    case.element, ndim)
        if case.kind == '2d':
            ase.io.write(tmp / f'{case.name}_atoms.extxyz', atoms_q,
                         format='extxyz')
        meta['generation_seconds'] = {
            'cpu_this_process': time.process_time() - t_cpu,
            'wall': time.perf_counter() - t_wall,
            'simulation_cpu': info.get('total_cpu_seconds',
                                       float(sum(info['cpu_seconds']))),
            'simulation_wall': info.get('total_wall_seconds',
                                        float(sum(info['wall_seconds'])))}
        with open(tmp / f'{case.name}.json', 'w') as f:
            json.dump(meta, f, indent=1, default=_json_default)
            f.write('\n')
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f'.{case.name}.old.',
                                        dir=folder.parent))
            os.replace(folder, old / 'case')
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    try:  # cases made in this repository (not in a scratch folder)
        folder.resolve().relative_to(HERE.parent)
        _update_summary(meta)
    except ValueError:
        pass
    return json_path


def _command(case, out):
    """The command line that makes ``case`` in ``out``."""
    name, quick = case.name, ''
    if name.endswith('-quick') and name[:-len('-quick')] in CASES:
        name, quick = name[:-len('-quick')], ' --quick'
    out = Path(out).resolve()
    where = ''
    if out != DEFAULT_OUT.resolve():
        try:
            where = f' --out {out.relative_to(HERE.parent)}'
        except ValueError:
            where = f' --out {out}'
    return f'python benchmarks/realistic_data.py --case {name}{quick}{where}'


def _update_summary(meta):
    entry = {
        'name': meta['name'], 'kind': meta['kind'],
        'description': meta['description'],
        'params_hash': meta['params_hash'],
        'method': meta['simulation']['method'],
        'shape': meta['shape'], 'pixel_size': meta['pixel_size'],
        'angles_deg': meta['angles_deg'],
        'dose': meta['detector']['dose'],
        'phonons': meta['params']['phonons'],
        'intensity_unit': meta['intensity_unit'],
        'integral_clean': meta['integral_clean'],
        'simulation_cpu_seconds': meta['generation_seconds']['simulation_cpu'],
        'simulation_wall_seconds':
            meta['generation_seconds']['simulation_wall'],
        'workers': meta['simulation'].get('workers'),
        'machine_load': meta['simulation'].get('machine_load'),
        'date': time.strftime('%Y-%m-%d'),
        'command': meta['command'],
    }
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    summary = {}
    if SUMMARY.exists():
        try:
            with open(SUMMARY) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            summary = {}
    summary[meta['name']] = entry
    fd, tmp = tempfile.mkstemp(suffix='.json', dir=SUMMARY.parent)
    with os.fdopen(fd, 'w') as f:
        json.dump(dict(sorted(summary.items())), f, indent=1,
                  default=_json_default)
        f.write('\n')
    os.replace(tmp, SUMMARY)


# --- Checks


def _fit_peak(values, index, amplitude):
    """Centre (in pixels) of a symmetric peak: a Gaussian plus a constant
    fitted to the 9 pixels (1D) or 9 x 9 pixels (2D) around ``index``."""
    from scipy import optimize

    grids = np.meshgrid(*[np.arange(i - 4, i + 5) for i in index],
                        indexing='ij')
    window = values[tuple(slice(i - 4, i + 5) for i in index)]

    def gaussian(coords, amplitude, width, background, *centre):
        r2 = sum((c - c0) ** 2 for c, c0 in zip(coords, centre))
        return amplitude * np.exp(-r2 / (2 * width ** 2)) + background

    p0 = (amplitude, 2.0, 0.0) + tuple(float(i) for i in index)
    popt, _ = optimize.curve_fit(gaussian, [g.ravel() for g in grids],
                                 window.ravel(), p0=p0)
    return popt[3:]


def check_convention(angles=(-60.0, 0.0, 30.0, 100.0, 160.0),
                     position=(2.1, -1.3, 0.73), shift=0.35):
    """Compare where one atom or column lands with ODL's geometry.

    Runs both pipelines on one gold atom (column) at ``position`` with a
    projection shift ``shift``, on noise-free images without thermal
    motion or source size:

    - the 3D pipeline (`project_particle`): one atom at ``position``;
    - the 2D pipeline (`simulate_columns`, multislice): one column at
      ``position[:2]``, its image averaged along ``y``.

    The centre of each peak is found by fitting a symmetric Gaussian (the
    peaks are symmetric, so the centre is unbiased) and compared with
    ``u = <q, det_axis(theta)>`` from ODL's ``Parallel2dGeometry`` and
    ``(u, v) = det_axes(theta) @ q`` from ``Parallel3dAxisGeometry``.

    Returns
    -------
    rows : list of dict
        ``pipeline``, ``angle`` (degrees), ``found`` (``x`` or ``(x,
        y)``), ``odl`` (``u + shift`` or ``(u + shift, v)``).
    """
    import odl
    from ase import Atoms
    from odl.applications import tomo

    n = len(angles)
    rad = np.radians(angles)
    apart = odl.nonuniform_partition(rad)
    geometry_3d = tomo.Parallel3dAxisGeometry(
        apart, odl.uniform_partition([-1, -1], [1, 1], (2, 2)))
    geometry_2d = tomo.Parallel2dGeometry(
        apart, odl.uniform_partition(-1, 1, 2))
    q = np.asarray(position, dtype=float)
    rows = []

    particle_case = ParticleCase(
        'convention-3d', 'one atom', angles=tuple(angles),
        shifts=(shift,) * n, phonons=0, pixel_size=0.1, oversampling=2,
        margin=3.0, optics=Optics(source_size=0.0))
    images, info = project_particle(Atoms('Au', positions=[q]),
                                    particle_case, workers=1, progress=False)
    for k, theta in enumerate(rad):
        index = np.unravel_index(np.argmax(images[k]), images[k].shape)
        j0, i0 = _fit_peak(images[k], index, images[k].max())
        found = (info['x_offset'] + info['step'] * i0,
                 info['y_offset'] + info['step'] * j0)
        u, v = geometry_3d.det_axes(theta) @ q
        rows.append({'pipeline': '3D projected potential',
                     'angle': float(angles[k]),
                     'found': tuple(float(f) for f in found),
                     'odl': (float(u) + shift, float(v))})

    column_case = ColumnCase(
        'convention-2d', 'one column', columns=(1, 1), defect='displaced',
        defect_offset=(0, 0), displacement=tuple(q[:2]),
        angles=tuple(angles), shifts=(shift,) * n, phonons=1,
        thermal_sigma=0.0, sampling=0.05, slice_thickness=2.0,
        optics=Optics(detector_outer=160.0, source_size=0.0))
    images, info = simulate_columns(column_case, workers=1, progress=False)
    profiles = images.mean(axis=1)
    for k, theta in enumerate(rad):
        (i0,) = _fit_peak(profiles[k], (int(np.argmax(profiles[k])),),
                          profiles[k].max())
        u = float(geometry_2d.det_axis(theta) @ q[:2])
        rows.append({'pipeline': '2D multislice',
                     'angle': float(angles[k]),
                     'found': float(info['x_offset'] + info['step'] * i0),
                     'odl': u + shift})
    return rows


# --- Command line


def _selected(args):
    names = list(CASES) if args.all else args.case
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(2)
    cases = [CASES[n] for n in names]
    if args.quick:
        cases = [c.quick() for c in cases]
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Make abTEM HAADF-STEM tilt series with ground truth '
                    '(see the module docstring for formats and conventions).')
    parser.add_argument('--list', action='store_true', help='list the cases')
    parser.add_argument('--case', action='append', default=[],
                        metavar='NAME', help='make this case (repeatable)')
    parser.add_argument('--all', action='store_true', help='make every case')
    parser.add_argument('--quick', action='store_true',
                        help='small, fast variants (suffix -quick)')
    parser.add_argument('--out', default=str(DEFAULT_OUT),
                        help='output folder (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=2,
                        help='threads for abTEM (dask) (default: 2)')
    parser.add_argument('--force', action='store_true',
                        help='make the case even if it is cached')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--check-convention', action='store_true',
                        help='check image coordinates against ODL geometry')
    args = parser.parse_args(argv)

    unknown = [n for n in args.case if n not in CASES]
    if unknown:
        parser.exit(2, f'error: unknown case(s) {", ".join(unknown)}; '
                       f'see --list\n')
    if args.workers < 1:
        parser.exit(2, 'error: --workers must be at least 1\n')
    if not (args.list or args.case or args.all or args.check_convention):
        parser.exit(2, 'error: give --list, --case NAME, --all or '
                       '--check-convention\n')

    if args.list:
        for case in CASES.values():
            case = case.quick() if args.quick else case
            path = Path(args.out) / case.name / f'{case.name}.json'
            state = 'missing'
            if path.exists():
                with open(path) as f:
                    state = ('cached' if json.load(f).get('params_hash')
                             == params_hash(case) else 'outdated')
            print(f'{case.name:30s} {case.kind}  {state:8s} '
                  f'{case.description}')
    if args.check_convention:
        worst = 0.0
        print('pipeline                angle   image peak          ODL '
              '(u + shift, v)')
        for row in check_convention():
            found = np.atleast_1d(row['found'])
            odl_value = np.atleast_1d(row['odl'])
            print(f'{row["pipeline"]:22s} {row["angle"]:6.1f}   '
                  f'{", ".join(f"{f:7.3f}" for f in found):18s}  '
                  f'{", ".join(f"{f:7.3f}" for f in odl_value)}')
            worst = max(worst, float(np.max(np.abs(found - odl_value))))
        print(f'largest difference {worst:.4f} angstrom')
        if worst > 0.02:
            parser.exit(1, "error: the images do not follow ODL's geometry\n")
    if args.case or args.all:
        cases = _selected(args)
        for case in cases:
            path = generate(case, out=args.out, workers=args.workers,
                            force=args.force, progress=not args.no_progress)
            with open(path) as f:
                meta = json.load(f)
            g = meta['generation_seconds']
            print(f'{case.name}: {path.parent} shape {meta["shape"]}, '
                  f'pixel {meta["pixel_size"]:.3f} A, simulation '
                  f'{g["simulation_cpu"]:.0f} s CPU / '
                  f'{g["simulation_wall"]:.0f} s wall')
    return 0


if __name__ == '__main__':
    sys.exit(main())
