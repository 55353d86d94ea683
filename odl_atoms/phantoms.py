"""Test configurations: lattices with defects in 2D, nanocrystals in 3D.

Every builder returns a `Phantom`: the atomic configuration as a
`SparseMeasure`, the nearest-neighbour distance of the perfect lattice (the
length scale benchmarks express errors in) and the atoms and sites that make
the defect, for figures that highlight it.

2D phantoms are atomic columns seen along a zone axis: a square, hexagonal
(triangular), rectangular, centred rectangular or honeycomb lattice
(`LATTICES_2D`) with one kind of defect,

================  ============================================================
name              builder
================  ============================================================
perfect           `square_lattice`, `hexagonal_lattice`,
                  `rectangular_lattice`, `centred_rectangular_lattice`,
                  `honeycomb_lattice`
vacancy           `lattice_with_vacancy`
interstitial      `lattice_with_interstitial`
substitution      `lattice_with_substitution`
edge_dislocation  `lattice_with_edge_dislocation`
grain_boundary    `lattice_with_grain_boundary`
displaced         `lattice_with_displacements`
================  ============================================================

and `defect_phantom` builds any of them by name; `two_species` gives the
rows (honeycomb: the two sublattices) of one alternately two species. With the defaults (7 x 7
square lattice) every 2D phantom has 46 to 50 atoms, the size of the test cases
of Ganguly et al., "Atomic super-resolution tomography" (arXiv 2002.00710).

3D phantoms are fcc crystals built by ASE: `nanoparticle` (octahedron,
decahedron and icosahedron; the last two are multiply twinned) and `fcc_slab`
(a thin (111) slab with an intrinsic stacking fault).

Lengths are in angstrom. Every phantom lies in the box of the atoms' bounding
box enlarged by ``margin`` (default one lattice spacing), so that atoms a
reconstruction moves a little outward stay inside.
"""

import numbers
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from odl_atoms.atoms import from_ase
from odl_atoms.defaults import (LATTICES_2D, NANOPARTICLE_SHAPES,
                                 PHANTOM_NAMES_2D)
from odl_atoms.space import SparseMeasure, SparseMeasureSpace

__all__ = (
    'Phantom',
    'square_lattice',
    'hexagonal_lattice',
    'rectangular_lattice',
    'centred_rectangular_lattice',
    'honeycomb_lattice',
    'two_species',
    'lattice_with_vacancy',
    'lattice_with_interstitial',
    'lattice_with_substitution',
    'lattice_with_edge_dislocation',
    'lattice_with_grain_boundary',
    'lattice_with_displacements',
    'defect_phantom',
    'nanoparticle',
    'fcc_slab',
    'PHANTOM_NAMES_2D',
    'LATTICES_2D',
    'RECTANGULAR_ASPECT',
    'CENTRED_ASPECT',
    'NANOPARTICLE_SHAPES',
    'DEFAULT_SPACING',
)

#: Default distance (angstrom) between neighbouring atomic columns in 2D.
#: 2.885 A is the nearest-neighbour distance a / sqrt(2) of gold (fcc,
#: a = 4.08 A), so the 2D defaults are real projections: the square lattice is
#: one Au (100) layer, the hexagonal lattice one Au (111) layer, and columns
#: seen down [100] / [110] zone axes are 2-3 A apart as well. It is also the
#: `lattice_spacing` of the default 3D gold phantoms, so 2D and 3D benchmarks
#: share one length scale.
DEFAULT_SPACING = 2.885

#: Default number of atoms along the two axes of a 2D phantom: 7 x 7 = 49
#: atoms, the size of the test cases of the paper (40-50 atoms).
DEFAULT_SHAPE = (7, 7)

# The lattices the 2D builders know (LATTICES_2D: rectangular rows
# RECTANGULAR_ASPECT spacings apart, centred rectangular cells of shape
# CENTRED_ASPECT) live in odl_atoms.defaults, shared with the lattice starts.

#: Distance between the rows of the ``'rectangular'`` phantoms in spacings:
#: sqrt(2), the ratio of the column distances of fcc [110] seen as a
#: rectangular lattice (a / sqrt(2) and a).
RECTANGULAR_ASPECT = np.sqrt(2)

#: ``b / a`` of the ``'centred_rectangular'`` phantoms' cell: sqrt(2), the
#: columns of fcc and bcc crystals seen down [110] (bcc: a cell of a x a
#: sqrt(2) with a column at its centre; the nearest neighbours are the
#: centre and the corners, a sqrt(3) / 2 apart, at 70.53 degrees).
CENTRED_ASPECT = np.sqrt(2)

# The names `defect_phantom` and `nanoparticle` accept live in
# odl_atoms.defaults, where the command line reads them without loading ODL.

# Default `size` per nanoparticle shape: all give 44-55 atoms, like the 2D
# defaults (see `nanoparticle` for what `size` means for each shape).
_DEFAULT_NANOPARTICLE_SIZE = {'octahedron': 4, 'decahedron': 4,
                              'icosahedron': 3}

# Neighbours of an atom are closer than this many nearest-neighbour distances.
# It lies between the first (1) and second (sqrt(2) in fcc, sqrt(3) in the
# hexagonal lattice) neighbour shells, with room for the few-percent strain of
# multiply twinned particles.
_NEIGHBOUR_CUTOFF = 1.2


@dataclass(frozen=True, eq=False, repr=False)
class Phantom:

    """An atomic test configuration and what makes it special.

    Parameters
    ----------
    measure : `SparseMeasure`
        The atoms.
    name : str
        Short name, e.g. ``'vacancy'``.
    lattice_spacing : positive float
        Nearest-neighbour distance (angstrom) of the perfect lattice the
        phantom is built from. Benchmarks express position errors in units of
        it and derive blur widths and matching tolerances from it.
    defect_atoms : array-like of int, optional
        Indices into ``measure`` of the atoms that make the defect: the
        interstitial, the substituted atoms, the atoms around a dislocation
        core, the atoms of a grain, twin or stacking-fault boundary. Empty for
        perfect crystals and vacancies.
    defect_sites : array-like of shape ``(k, d)``, optional
        Points that mark the defect but hold no atom: the sites of removed
        atoms (vacancies) and dislocation cores. Empty otherwise.
    description : str, optional
        One line saying how the phantom was built.

    Examples
    --------
    >>> p = lattice_with_vacancy(shape=(3, 3), spacing=2.0)
    >>> p
    Phantom('vacancy', 8 atoms in 2D, lattice_spacing=2.0)
    >>> p.defect_sites
    array([[ 0.,  0.]])
    >>> p.measure.space
    SparseMeasureSpace([-4.0, -4.0], [4.0, 4.0])
    """

    measure: SparseMeasure
    name: str
    lattice_spacing: float
    defect_atoms: np.ndarray = field(default=None)
    defect_sites: np.ndarray = field(default=None)
    description: str = ''

    def __post_init__(self):
        if not isinstance(self.measure, SparseMeasure):
            raise TypeError(f'`measure` must be a SparseMeasure, got '
                            f'{type(self.measure).__name__}')
        spacing = float(self.lattice_spacing)
        if not (np.isfinite(spacing) and spacing > 0):
            raise ValueError(f'`lattice_spacing` must be a positive length, '
                             f'got {self.lattice_spacing!r}')
        atoms = np.zeros(0, dtype=int) if self.defect_atoms is None else (
            np.array(self.defect_atoms, dtype=int).ravel())
        if atoms.size and (atoms.min() < 0 or atoms.max() >= self.n_atoms):
            raise ValueError(
                f'`defect_atoms` must index the {self.n_atoms} atoms of the '
                f'measure, got indices in [{atoms.min()}, {atoms.max()}]')
        sites = np.zeros((0, self.ndim)) if self.defect_sites is None else (
            np.array(self.defect_sites, dtype=float).reshape(-1, self.ndim))
        for arr in (atoms, sites):
            arr.flags.writeable = False
        # Frozen dataclass: normalise the fields once, here.
        object.__setattr__(self, 'lattice_spacing', spacing)
        object.__setattr__(self, 'defect_atoms', atoms)
        object.__setattr__(self, 'defect_sites', sites)

    @property
    def space(self):
        """The `SparseMeasureSpace` (box) of the measure."""
        return self.measure.space

    @property
    def ndim(self):
        """Spatial dimension, 2 or 3."""
        return self.measure.ndim

    @property
    def n_atoms(self):
        """Number of atoms."""
        return self.measure.n_atoms

    @property
    def defect_positions(self):
        """Every point a figure should mark: defect atoms, then defect sites.

        Returns
        -------
        positions : numpy.ndarray of shape ``(k, d)``
        """
        return np.concatenate([self.measure.positions[self.defect_atoms],
                               self.defect_sites])

    def __repr__(self):
        return (f'Phantom({self.name!r}, {self.n_atoms} atoms in '
                f'{self.ndim}D, lattice_spacing={self.lattice_spacing!r})')


# --- 2D lattices


def square_lattice(shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING, margin=None,
                   species='X', weight=1.0):
    """Return a perfect square lattice of atomic columns.

    Parameters
    ----------
    shape : pair of int, optional
        Number of atoms along the first and second axis, each at least 2.
    spacing : positive float, optional
        Distance between neighbouring atoms in angstrom.
    margin : non-negative float, optional
        Distance between the outermost atoms and the box. Default: ``spacing``.
    species : str, optional
        Label of the atoms. Default ``'X'``, unknown species.
    weight : float, optional
        Weight of every atom.

    Returns
    -------
    phantom : `Phantom`
        Atoms ordered row by row (second coordinate outer, first inner),
        centred on the origin.

    Examples
    --------
    >>> p = square_lattice(shape=(3, 2), spacing=2.0)
    >>> p.measure.positions
    array([[-2., -1.],
           [ 0., -1.],
           [ 2., -1.],
           [-2.,  1.],
           [ 0.,  1.],
           [ 2.,  1.]])
    >>> square_lattice().n_atoms
    49
    """
    return _perfect('square', shape, spacing, margin, species, weight)


def hexagonal_lattice(shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING,
                      margin=None, species='X', weight=1.0):
    """Return a perfect hexagonal (triangular) lattice of atomic columns.

    Every atom has six neighbours at distance ``spacing``, as the columns of
    an fcc crystal seen down [111] or one close-packed layer. Rows run along
    the first axis, ``spacing * sqrt(3) / 2`` apart; every other row is
    shifted by half a spacing.

    Parameters
    ----------
    shape : pair of int, optional
        Atoms per row and number of rows, each at least 2.
    spacing : positive float, optional
        Nearest-neighbour distance in angstrom.
    margin : non-negative float, optional
        Distance between the outermost atoms and the box. Default: ``spacing``.
    species : str, optional
        Label of the atoms.
    weight : float, optional
        Weight of every atom.

    Returns
    -------
    phantom : `Phantom`
        Atoms ordered row by row, centred on the origin: for odd shapes the
        middle atom of the middle row is at the origin.

    Examples
    --------
    >>> p = hexagonal_lattice(shape=(2, 2), spacing=2.0)
    >>> p.measure.positions.round(3)
    array([[-1.   , -0.866],
           [ 1.   , -0.866],
           [ 0.   ,  0.866],
           [ 2.   ,  0.866]])
    """
    return _perfect('hexagonal', shape, spacing, margin, species, weight)


def rectangular_lattice(shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING,
                        margin=None, species='X', weight=1.0):
    """Return a perfect rectangular lattice of atomic columns.

    Rows run along the first axis with atoms ``spacing`` apart (the nearest
    neighbours); the rows are `RECTANGULAR_ASPECT` (sqrt(2)) spacings
    apart, as the columns of an fcc crystal seen down [110] drawn on a
    rectangular lattice.

    Parameters
    ----------
    shape, spacing, margin, species, weight : optional
        As for `square_lattice`.

    Returns
    -------
    phantom : `Phantom`
        Atoms ordered row by row, centred on the origin.

    Examples
    --------
    >>> p = rectangular_lattice(shape=(2, 2), spacing=2.0)
    >>> p.measure.positions.round(3)
    array([[-1.   , -1.414],
           [ 1.   , -1.414],
           [-1.   ,  1.414],
           [ 1.   ,  1.414]])
    """
    return _perfect('rectangular', shape, spacing, margin, species, weight)


def centred_rectangular_lattice(shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING,
                                margin=None, species='X', weight=1.0):
    """Return a perfect centred rectangular lattice of atomic columns.

    A rectangular cell ``a x b`` with ``b / a =`` `CENTRED_ASPECT`
    (sqrt(2)) and an atom at its centre: the columns of a bcc or fcc
    crystal seen down [110]. The nearest neighbours, ``spacing`` apart,
    are the centre and the corners (``a = 2 spacing / sqrt(3)``); rows
    run along the first axis, ``b / 2`` apart, every other one shifted by
    ``a / 2``.

    Parameters
    ----------
    shape, spacing, margin, species, weight : optional
        As for `square_lattice`.

    Returns
    -------
    phantom : `Phantom`
        Atoms ordered row by row, centred on the origin.

    Examples
    --------
    >>> p = centred_rectangular_lattice(shape=(2, 2), spacing=2.0)
    >>> p.measure.positions.round(3)
    array([[-1.155, -0.816],
           [ 1.155, -0.816],
           [ 0.   ,  0.816],
           [ 2.309,  0.816]])
    >>> float(np.linalg.norm(p.measure.positions[2] - p.measure.positions[0]))
    2.0
    """
    return _perfect('centred_rectangular', shape, spacing, margin, species,
                    weight)


def honeycomb_lattice(shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING,
                      margin=None, species='X', weight=1.0):
    """Return a perfect honeycomb lattice of atomic columns (graphene).

    A hexagonal lattice of spacing ``sqrt(3) spacing`` with two atoms per
    cell: every atom has three neighbours ``spacing`` apart. The rows run
    along the first axis (zigzag direction), in pairs: the two atoms of a
    cell, one spacing apart along the second axis; pairs 1.5 spacings
    apart, every other one shifted by half a cell.

    Parameters
    ----------
    shape : pair of int, optional
        Atoms per row and number of rows (``shape[1]`` rows: ``shape[1] /
        2`` cells), each at least 2.
    spacing, margin, species, weight : optional
        As for `square_lattice` (``spacing``: the bond length).

    Returns
    -------
    phantom : `Phantom`
        Atoms ordered row by row; the middle atom of the middle row at the
        origin.

    Examples
    --------
    >>> p = honeycomb_lattice(shape=(2, 3), spacing=1.0)
    >>> p.measure.positions.round(3)
    array([[ 0.   , -0.5  ],
           [ 1.732, -0.5  ],
           [-0.866,  0.   ],
           [ 0.866,  0.   ],
           [-0.866,  1.   ],
           [ 0.866,  1.   ]])
    """
    return _perfect('honeycomb', shape, spacing, margin, species, weight)


def two_species(phantom, lattice, species=('B', 'N'), weights=(1.0, 1.5)):
    """The phantom with its rows alternately of two species.

    Rows (of the phantom's lattice, before any defect moved its atoms) of
    even index hold ``species[0]``, odd ones ``species[1]``: the two
    sublattices of a honeycomb crystal (hexagonal boron nitride), or
    alternating rows of a rectangular one. Each atom takes the row nearest
    its height (phantoms of `LATTICES_2D` at their default ``spacing``
    and no ``margin`` change needed: the box stays).

    Parameters
    ----------
    phantom : `Phantom`
        A 2D phantom of ``lattice`` (not a grain boundary: its grains are
        rotated).
    lattice : str
        Its lattice (`LATTICES_2D`).
    species : pair of str, optional
    weights : pair of float, optional
        Different weights: the data tell species apart by them.

    Returns
    -------
    phantom : `Phantom`
        The same atoms, box, defect and name.

    Examples
    --------
    >>> p = two_species(honeycomb_lattice(shape=(2, 2)), 'honeycomb')
    >>> p.measure.species.tolist(), p.measure.weights.tolist()
    (['B', 'B', 'N', 'N'], [1.0, 1.0, 1.5, 1.5])
    """
    lattice = _check_lattice(lattice)
    if len(set(map(float, weights))) != 2 or len(set(species)) != 2:
        raise ValueError('two species need two names and two different '
                         f'weights, got {species!r} and {weights!r}')
    a = phantom.lattice_spacing
    y = phantom.measure.positions[:, 1]
    if lattice == 'honeycomb':
        # Rows at (1.5 c + s) a: the nearest row's site s is the species.
        rows = np.arange(-4 * len(y) - 2, 4 * len(y) + 2)
        heights = _honeycomb_row_y(rows, a)
        nearest = np.argmin(np.abs(y[:, None] - heights[None]), axis=1)
        parity = rows[nearest] % 2
    else:
        step = _row_step(lattice, a)
        low = y.min()
        parity = np.round((y - low) / step).astype(int) % 2
    labels = np.array(species, dtype=object)[parity].astype(str)
    values = np.array(weights, dtype=float)[parity]
    measure = phantom.space.element(phantom.measure.positions, weights=values,
                                    species=labels)
    return Phantom(measure, phantom.name, phantom.lattice_spacing,
                   defect_atoms=phantom.defect_atoms,
                   defect_sites=phantom.defect_sites,
                   description=(f'{phantom.description}; rows alternately '
                                f'{species[0]} (weight {weights[0]:g}) and '
                                f'{species[1]} ({weights[1]:g})'))


def lattice_with_vacancy(lattice='square', shape=DEFAULT_SHAPE,
                         spacing=DEFAULT_SPACING, index=None, margin=None,
                         species='X', weight=1.0):
    """Return a 2D lattice with one or more atoms missing.

    Parameters
    ----------
    lattice : str, optional
        The perfect lattice, one of `LATTICES_2D` (default ``'square'``),
        see `square_lattice` and `hexagonal_lattice`.
    shape, spacing, margin, species, weight : optional
        As for the perfect lattice.
    index : int or sequence of int, optional
        Index (in the perfect lattice's order) of the atom(s) to remove.
        Default: the atom nearest the centre of the lattice.

    Returns
    -------
    phantom : `Phantom`
        ``defect_sites`` holds the positions of the removed atoms. The box is
        that of the perfect lattice, so the vacancy does not move it.

    Examples
    --------
    >>> p = lattice_with_vacancy()
    >>> p.n_atoms, p.defect_sites
    (48, array([[ 0.,  0.]]))
    """
    positions, spacing, margin = _lattice_and_checks(lattice, shape, spacing,
                                                     margin)
    if index is None:
        index = [_index_nearest_centre(positions)]
    index = _checked_indices(index, len(positions), 'index')
    keep = np.ones(len(positions), dtype=bool)
    keep[index] = False
    # The box comes from the perfect lattice: a vacancy at a corner must not
    # shrink it, or the phantom would no longer compare with its lattice.
    space = _box_around(positions, margin)
    measure = space.element(positions[keep], weights=weight, species=species)
    return Phantom(
        measure, 'vacancy', spacing, defect_sites=positions[index],
        description=(f'{_lattice_text(lattice, shape, spacing)} with '
                     f'{len(index)} vacanc{"y" if len(index) == 1 else "ies"}'
                     f' at {_points_text(positions[index])}'))


def lattice_with_interstitial(lattice='square', shape=DEFAULT_SHAPE,
                              spacing=DEFAULT_SPACING, site=None, margin=None,
                              species='X', weight=1.0):
    """Return a 2D lattice with one extra atom between the lattice sites.

    Parameters
    ----------
    lattice : str, optional
        The perfect lattice, one of `LATTICES_2D` (default ``'square'``),
        see `square_lattice` and `hexagonal_lattice`.
    shape, spacing, margin, species, weight : optional
        As for the perfect lattice.
    site : array-like of shape ``(2,)``, optional
        Position of the extra atom. Default: the centre of the lattice cell
        nearest the centre of the lattice, ``spacing / sqrt(2)`` from its
        four neighbours (square) or ``spacing / sqrt(3)`` from its three
        neighbours (hexagonal).

    Returns
    -------
    phantom : `Phantom`
        The extra atom is the last one; ``defect_atoms`` is its index.

    Examples
    --------
    >>> p = lattice_with_interstitial(shape=(3, 3), spacing=2.0)
    >>> p.n_atoms, p.measure.positions[p.defect_atoms]
    (10, array([[-1., -1.]]))
    """
    positions, spacing, margin = _lattice_and_checks(lattice, shape, spacing,
                                                     margin)
    if site is None:
        site = _central_cell_centre(lattice, positions, spacing)
    else:
        site = np.array(site, dtype=float)
        if site.shape != (2,) or not np.all(np.isfinite(site)):
            raise ValueError(f'`site` must be a finite 2D point, got {site!r}')
    new = np.vstack([positions, site])
    space = _box_around(new, margin)
    measure = space.element(new, weights=weight, species=species)
    return Phantom(
        measure, 'interstitial', spacing, defect_atoms=[len(positions)],
        description=(f'{_lattice_text(lattice, shape, spacing)} with an '
                     f'interstitial atom at {_points_text(site[None])}'))


def lattice_with_substitution(lattice='square', shape=DEFAULT_SHAPE,
                              spacing=DEFAULT_SPACING, index=None,
                              substitute_species='Au', substitute_weight=2.0,
                              margin=None, species='X', weight=1.0):
    """Return a 2D lattice with atoms of a second species on lattice sites.

    Parameters
    ----------
    lattice : str, optional
        The perfect lattice, one of `LATTICES_2D` (default ``'square'``),
        see `square_lattice` and `hexagonal_lattice`.
    shape, spacing, margin, species, weight : optional
        As for the perfect lattice.
    index : int or sequence of int, optional
        Index (in the perfect lattice's order) of the substituted atom(s).
        Default: the atom nearest the centre.
    substitute_species : str, optional
        Label of the substituted atoms; must differ from ``species``.
    substitute_weight : float, optional
        Weight of the substituted atoms; must differ from ``weight``, since
        the weight is what tells species apart in the data. The default, twice
        the host's weight, is about the contrast ratio of Au columns in Ag in
        HAADF-STEM (intensity ~ Z^1.7).

    Returns
    -------
    phantom : `Phantom`
        Atoms in lattice order; ``defect_atoms`` are the substituted ones.

    Examples
    --------
    >>> p = lattice_with_substitution(shape=(3, 3))
    >>> p.defect_atoms, p.measure.species[4], p.measure.weights[4]
    (array([4]), 'Au', 2.0)
    """
    positions, spacing, margin = _lattice_and_checks(lattice, shape, spacing,
                                                     margin)
    if str(substitute_species) == str(species):
        raise ValueError(
            f'`substitute_species` must differ from the host `species`, both '
            f'are {species!r}')
    if float(substitute_weight) == float(weight):
        raise ValueError(
            f'`substitute_weight` must differ from the host `weight` '
            f'({weight!r}): the weights are what tell species apart')
    if index is None:
        index = [_index_nearest_centre(positions)]
    index = _checked_indices(index, len(positions), 'index')
    labels = np.full(len(positions), str(species), dtype=object)
    labels[index] = str(substitute_species)
    weights = np.full(len(positions), float(weight))
    weights[index] = float(substitute_weight)
    space = _box_around(positions, margin)
    measure = space.element(positions, weights=weights,
                            species=labels.astype(str))
    return Phantom(
        measure, 'substitution', spacing, defect_atoms=index,
        description=(f'{_lattice_text(lattice, shape, spacing)} with '
                     f'{len(index)} {substitute_species} atom(s) (weight '
                     f'{float(substitute_weight):g}) at '
                     f'{_points_text(positions[index])}'))


def lattice_with_edge_dislocation(lattice='square', shape=DEFAULT_SHAPE,
                                  spacing=DEFAULT_SPACING, poisson_ratio=0.3,
                                  margin=None, species='X', weight=1.0):
    """Return a 2D lattice with an edge dislocation at the origin.

    The rows above the slip plane (``y > 0``) hold one atom more than those
    below: an extra half-row of atoms ends at the dislocation core at the
    origin, with Burgers vector ``b = (spacing, 0)``. Positions are those of
    the perfect lattice moved by the displacement field of an edge
    dislocation in an isotropic elastic medium (Hirth & Lothe, Theory of
    Dislocations, eq. 3-45), with ``r^2 = x^2 + y^2``,

    .. math::

        u_x &= \\frac{b}{2\\pi}\\left[\\theta
               + \\frac{x y}{2(1-\\nu) r^2}\\right], \\qquad
        \\theta = \\operatorname{atan2}(y, x),\\\\
        u_y &= -\\frac{b}{2\\pi}\\left[\\frac{1-2\\nu}{4(1-\\nu)}
               \\ln\\frac{r^2}{b^2} + \\frac{x^2-y^2}{4(1-\\nu) r^2}\\right],

    applied to the perfect lattice placed so that the core is the centre of
    a lattice cell. The jump of ``u_x`` by ``b`` across the slip plane left
    of the core is what turns the perfect lattice into one with an extra
    half-row. Atoms near the core
    are therefore off the lattice (bonds there are strained by 10-20 %) and
    the strain decays like ``b / (2 pi r)`` away from it. Each row is then
    trimmed to ``shape[0]`` atoms above and ``shape[0] - 1`` below the slip
    plane, centred on the same vertical line.

    Parameters
    ----------
    lattice : str, optional
        The lattice, one of `LATTICES_2D`. For 'hexagonal', ``b`` runs along
        the close-packed rows and the core is a 5-7 ring pair; for the
        centred rectangular and honeycomb lattices ``b`` is the shortest
        translation along the rows (``2 / sqrt(3)`` and ``sqrt(3)``
        spacings).
    shape : pair of int, optional
        Atoms per row above the slip plane (at least 3) and number of rows
        (at least 2); the lower ``shape[1] // 2`` rows hold one atom fewer.
    spacing : positive float, optional
        Nearest-neighbour distance of the perfect lattice and length of the
        Burgers vector, in angstrom.
    poisson_ratio : float in (-1, 0.5), optional
        Poisson ratio of the medium. 0.3 is typical of metals; it changes
        only how the distortion is shared between ``u_x`` and ``u_y``.
    margin, species, weight : optional
        As for the perfect lattice.

    Returns
    -------
    phantom : `Phantom`
        Atoms ordered row by row; ``defect_sites`` is the core (the origin),
        ``defect_atoms`` the atoms closer than one spacing to it.

    Examples
    --------
    >>> p = lattice_with_edge_dislocation()
    >>> p.n_atoms, p.defect_sites
    (46, array([[ 0.,  0.]]))
    >>> upper = p.measure.positions[:, 1] > 0
    >>> int(upper.sum()), int((~upper).sum())   # 4 rows of 7, 3 rows of 6
    (28, 18)
    """
    lattice = _check_lattice(lattice)
    lattice = _check_lattice(lattice)
    n0, n1 = _check_shape(shape, minimum=(3, 2))
    spacing = _check_length(spacing, 'spacing')
    margin = _check_margin(margin, spacing)
    nu = float(poisson_ratio)
    if not -1 < nu < 0.5:
        raise ValueError(f'`poisson_ratio` must lie in (-1, 0.5) for a stable '
                         f'isotropic solid, got {poisson_ratio!r}')
    # The Burgers vector: a lattice translation along the rows.
    b = step = _x_step(lattice, spacing)
    row_step = _row_step(lattice, spacing)
    first_upper = n1 // 2
    # Reference columns at half-integer multiples of the spacing, so no atom
    # sits on the branch cut of atan2 (the slip plane left of the core).
    pad = n0 + 2
    rows = []
    for j in range(n1):
        if lattice == 'honeycomb':
            # The slip plane cuts the bonds along y of one cell row, half
            # a spacing from either end (between two cell rows, a quarter
            # spacing, the field crushed atoms to 0.37 spacings).
            row = j - first_upper + 1
            y = float(_honeycomb_row_y(row, spacing) - 0.5 * spacing)
        else:
            row = j - first_upper
            y = (j - first_upper + 0.5) * row_step
        offset = _row_offset(lattice, row)
        x = (np.arange(-pad, pad) + 0.5 + offset) * step
        ux, uy = _edge_dislocation_field(x, np.full_like(x, y), b, nu)
        x_new, y_new = x + ux, y + uy
        # Keep the run of atoms whose centre is closest to where the perfect
        # row's centre would be: rows stay vertically aligned, and the extra
        # atom of the upper rows appears in the middle, at the core.
        count = n0 if j >= first_upper else n0 - 1
        centres = np.convolve(x_new, np.ones(count) / count, mode='valid')
        target = (offset - 0.25) * step
        start = int(np.argmin(np.abs(centres - target)))
        rows.append(np.column_stack([x_new, y_new])[start:start + count])
    positions = np.concatenate(rows)
    core = np.zeros((1, 2))
    near_core = np.flatnonzero(np.hypot(*positions.T) < spacing)
    space = _box_around(positions, margin)
    measure = space.element(positions, weights=weight, species=species)
    return Phantom(
        measure, 'edge_dislocation', spacing, defect_atoms=near_core,
        defect_sites=core,
        description=(f'{_lattice_text(lattice, shape, spacing)} with an edge '
                     f'dislocation (b = {b:g} A along x, extra half-row in '
                     f'y > 0, Poisson ratio {nu:g}) at the origin'))


def lattice_with_grain_boundary(lattice='square', shape=DEFAULT_SHAPE,
                                spacing=DEFAULT_SPACING, angle=None,
                                min_distance=0.7, margin=None, species='X',
                                weight=1.0):
    """Return a 2D bicrystal: two grains tilted by ``angle`` meeting at x = 0.

    The grain at ``x < 0`` is the lattice rotated by ``+angle / 2``, the grain
    at ``x >= 0`` the lattice rotated by ``-angle / 2``, both about a common
    atom at the origin and cut to the rectangle of ``shape[0] x shape[1]``
    lattice cells centred there. Where atoms of the two grains come closer
    than ``min_distance * spacing`` across the boundary, the atom of the right
    grain is removed.

    Parameters
    ----------
    lattice : str, optional
        The lattice of both grains, one of `LATTICES_2D`.
    shape : pair of int, optional
        Size of the rectangle in lattice cells (cell side ``spacing`` along
        the first axis, one row step along the second); it holds about
        ``shape[0] * shape[1]`` atoms.
    spacing : positive float, optional
        Nearest-neighbour distance in angstrom.
    angle : float, optional
        Misorientation of the grains in radians, in (0, pi/2) for the square,
        (0, pi/3) for the hexagonal and honeycomb and (0, pi) for the
        rectangular lattices (larger angles repeat by symmetry). Default:
        the coincidence-site boundaries the literature uses most, Sigma 5
        for square (``2 atan(1/3)``, 36.87 degrees) and Sigma 7 for
        hexagonal lattices (``2 atan(1/(3 sqrt 3))``, 21.79 degrees); the
        same 36.87 degrees for the rectangular and 21.79 for the honeycomb
        lattice (not coincidence boundaries there).
    min_distance : float in (0, 1), optional
        Closest allowed distance across the boundary, in spacings. Inside a
        grain atoms are a full spacing apart; 0.7 removes the atoms that
        overlap (Sigma 5 and Sigma 7 have pairs at 0.63 and 0.65 spacings)
        and keeps the boundary's compressed bonds.
    margin, species, weight : optional
        As for the perfect lattice.

    Returns
    -------
    phantom : `Phantom`
        Left grain first, then the right grain, each row by row;
        ``defect_atoms`` are the atoms within one spacing of the boundary.

    Examples
    --------
    >>> p = lattice_with_grain_boundary()
    >>> p.n_atoms, round(float(np.degrees(2 * np.arctan(1 / 3))), 2)
    (50, 36.87)
    """
    lattice = _check_lattice(lattice)
    n0, n1 = _check_shape(shape)
    spacing = _check_length(spacing, 'spacing')
    margin = _check_margin(margin, spacing)
    # The lattice's rotational period; rectangular lattices repeat after
    # half a turn only.
    symmetry = {'square': np.pi / 2, 'hexagonal': np.pi / 3,
                'honeycomb': np.pi / 3}.get(lattice, np.pi)
    if angle is None:
        angle = (2 * np.arctan(1 / (3 * np.sqrt(3)))
                 if lattice in ('hexagonal', 'honeycomb')
                 else 2 * np.arctan(1 / 3))
    angle = float(angle)
    if not 0 < angle < symmetry:
        raise ValueError(
            f'`angle` must lie in (0, {symmetry:.4f}) radians for a {lattice} '
            f'lattice (larger ones repeat by symmetry), got {angle!r}')
    min_distance = float(min_distance)
    if not 0 < min_distance < 1:
        raise ValueError(f'`min_distance` must lie in (0, 1) spacings, got '
                         f'{min_distance!r}')
    half_width = n0 * _x_step(lattice, spacing) / 2
    half_height = n1 * _row_step(lattice, spacing) / 2
    # A lattice large enough to cover the rectangle at any rotation.
    n_big = 2 * max(n0, n1) + 1
    # Honeycomb rows are 0.75 spacings apart, cells sqrt(3) wide: three
    # times the rows to cover the same height.
    big = _lattice_positions(lattice, (n_big, n_big * (
        3 if lattice == 'honeycomb' else 1)), spacing)
    big -= big[_index_nearest_centre(big)]
    # A tiny tolerance makes the cut independent of rounding for atoms that
    # fall exactly on the rectangle's edges.
    eps = 1e-9 * spacing
    grains = []
    for sign, side in ((1, -1), (-1, 1)):
        pts = _rotated(big, sign * angle / 2)
        inside = ((np.abs(pts[:, 0]) < half_width - eps)
                  & (np.abs(pts[:, 1]) < half_height - eps)
                  & (pts[:, 0] < 0 if side < 0 else pts[:, 0] >= 0))
        grains.append(pts[inside])
    left, right = grains
    if len(left) and len(right):
        dist, _ = cKDTree(left).query(right)
        right = right[dist >= min_distance * spacing]
    positions = np.concatenate([left, right])
    boundary = np.flatnonzero(np.abs(positions[:, 0]) < spacing)
    space = _box_around(positions, margin)
    measure = space.element(positions, weights=weight, species=species)
    return Phantom(
        measure, 'grain_boundary', spacing, defect_atoms=boundary,
        description=(f'{lattice} bicrystal of {n0} x {n1} cells, spacing '
                     f'{spacing:g} A, misorientation '
                     f'{np.degrees(angle):.2f} deg, boundary at x = 0'))


def lattice_with_displacements(lattice='square', shape=DEFAULT_SHAPE,
                               spacing=DEFAULT_SPACING, amplitude=0.3,
                               wavelength=None, n_modes=4, seed=0,
                               margin=None, species='X', weight=1.0):
    """Return a 2D lattice deformed by a smooth random displacement field.

    The field is a sum of ``n_modes`` plane waves,
    ``u(x) = sum_m e_m cos(k_m . x + phi_m)``, with random directions,
    wavelengths ``2 pi / |k_m|`` uniform in ``[wavelength, 2 * wavelength]``,
    phases and Gaussian polarisations ``e_m``, scaled so that the rms
    displacement of the atoms is exactly ``amplitude``. Unlike independent
    jitter, neighbouring atoms move alike: the lattice bends and strains, as
    near surfaces and interfaces of nanocrystals.

    Parameters
    ----------
    lattice : str, optional
        The perfect lattice, one of `LATTICES_2D` (default ``'square'``),
        see `square_lattice` and `hexagonal_lattice`.
    shape, spacing, margin, species, weight : optional
        As for the perfect lattice.
    amplitude : non-negative float, optional
        Root-mean-square length of the displacements in angstrom. The default
        0.3 A, about a tenth of a spacing, moves atoms well off any grid a
        lattice-based method would use, yet leaves the lattice recognisable.
    wavelength : positive float, optional
        Shortest wavelength of the field in angstrom. Default: the larger
        side of the lattice, so the field varies across the phantom but
        neighbouring atoms move nearly together.
    n_modes : positive int, optional
        Number of plane waves.
    seed : int or `numpy.random.Generator`, optional
        Randomness; the same seed gives the same field.

    Returns
    -------
    phantom : `Phantom`
        Atoms in the perfect lattice's order, so that
        ``phantom.measure.positions - square_lattice(...).measure.positions``
        is the displacement field. No ``defect_atoms``: every atom moved.

    Examples
    --------
    >>> p = lattice_with_displacements(seed=1)
    >>> ref = square_lattice().measure.positions
    >>> u = p.measure.positions - ref
    >>> float(np.sqrt(np.mean(np.sum(u ** 2, axis=1))))
    0.3
    """
    positions, spacing, margin = _lattice_and_checks(lattice, shape, spacing,
                                                     margin)
    amplitude = float(amplitude)
    if not (np.isfinite(amplitude) and amplitude >= 0):
        raise ValueError(f'`amplitude` must be a non-negative length in '
                         f'angstrom, got {amplitude!r}')
    if wavelength is None:
        wavelength = float(np.max(np.ptp(positions, axis=0))) + spacing
    wavelength = _check_length(wavelength, 'wavelength')
    if not isinstance(n_modes, numbers.Integral) or n_modes < 1:
        raise ValueError(f'`n_modes` must be a positive integer, got '
                         f'{n_modes!r}')
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(wavelength, 2 * wavelength, n_modes)
    directions = rng.uniform(0, 2 * np.pi, n_modes)
    k = (2 * np.pi / lengths)[:, None] * np.column_stack(
        [np.cos(directions), np.sin(directions)])
    phases = rng.uniform(0, 2 * np.pi, n_modes)
    polarisations = rng.standard_normal((n_modes, 2))
    u = np.cos(positions @ k.T + phases) @ polarisations
    rms = np.sqrt(np.mean(np.sum(u ** 2, axis=1)))
    if rms > 0:
        u *= amplitude / rms
    new = positions + u
    space = _box_around(new, margin)
    measure = space.element(new, weights=weight, species=species)
    return Phantom(
        measure, 'displaced', spacing,
        description=(f'{_lattice_text(lattice, shape, spacing)} displaced by '
                     f'a smooth random field ({n_modes} modes, wavelength >= '
                     f'{wavelength:.3g} A, rms {amplitude:g} A)'))


_BUILDERS_2D = {
    'vacancy': lattice_with_vacancy,
    'interstitial': lattice_with_interstitial,
    'substitution': lattice_with_substitution,
    'edge_dislocation': lattice_with_edge_dislocation,
    'grain_boundary': lattice_with_grain_boundary,
    'displaced': lattice_with_displacements,
}


def defect_phantom(name, lattice='square', shape=DEFAULT_SHAPE,
                   spacing=DEFAULT_SPACING, seed=0, **kwargs):
    """Return the 2D phantom called ``name``.

    Parameters
    ----------
    name : str
        One of `PHANTOM_NAMES_2D`: ``'perfect'``, ``'vacancy'``,
        ``'interstitial'``, ``'substitution'``, ``'edge_dislocation'``,
        ``'grain_boundary'``, ``'displaced'``.
    lattice : str, optional
        One of `LATTICES_2D` (default ``'square'``).
    shape : pair of int, optional
    spacing : positive float, optional
        Nearest-neighbour distance in angstrom.
    seed : int or `numpy.random.Generator`, optional
        Used by the random phantom (``'displaced'``); the others are
        deterministic.
    **kwargs
        Further arguments of the builder (see the table in the module
        docstring), e.g. ``index=`` for ``'vacancy'``, ``angle=`` for
        ``'grain_boundary'``, ``amplitude=`` for ``'displaced'``, and
        ``margin``, ``species``, ``weight`` for all.

    Returns
    -------
    phantom : `Phantom`

    Examples
    --------
    >>> for name in PHANTOM_NAMES_2D:
    ...     print(f'{name:16s} {defect_phantom(name).n_atoms}')
    perfect          49
    vacancy          48
    interstitial     50
    substitution     49
    edge_dislocation 46
    grain_boundary   50
    displaced        49
    >>> defect_phantom('twin')
    Traceback (most recent call last):
        ...
    ValueError: unknown 2D phantom 'twin'; choose one of 'perfect', ...
    """
    if name == 'perfect':
        return _perfect(_check_lattice(lattice), shape=shape,
                        spacing=spacing, **kwargs)
    if name not in _BUILDERS_2D:
        valid = ', '.join(repr(n) for n in PHANTOM_NAMES_2D)
        raise ValueError(f'unknown 2D phantom {name!r}; choose one of {valid}')
    if name == 'displaced':
        kwargs['seed'] = seed
    return _BUILDERS_2D[name](lattice=lattice, shape=shape, spacing=spacing,
                              **kwargs)


# --- 3D crystals


def nanoparticle(shape='octahedron', size=None, symbol='Au', vacancies=0,
                 displacement=0.0, seed=0, margin=None, weights=None,
                 lattice_constant=None):
    """Return an fcc nanoparticle built by `ase.cluster`.

    Parameters
    ----------
    shape : {'octahedron', 'decahedron', 'icosahedron'}, optional
        The particle:

        - ``'octahedron'``: single crystal,
          ``ase.cluster.Octahedron(symbol, length=size)``, a regular
          octahedron with ``size`` atoms along each edge; sizes 2, 3, 4, 5, 6
          give 6, 19, 44, 85, 146 atoms. Default size 4 (44 atoms).
        - ``'decahedron'``: five tetrahedral grains separated by five twin
          boundaries around a five-fold axis. An int ``size`` is
          ``ase.cluster.Decahedron(symbol, p=size, q=1, r=0)``, the regular
          pentagonal bipyramid with ``size`` atoms along each edge; sizes 3,
          4, 5 give 23, 54, 105 atoms. Default size 4 (54 atoms). A triple
          ``(p, q, r)`` is passed on as is (Ino and Marks decahedra, e.g.
          ``(2, 1, 1)`` gives 49 atoms).
        - ``'icosahedron'``: twenty twinned tetrahedra,
          ``ase.cluster.Icosahedron(symbol, noshells=size)``; sizes 2, 3, 4
          give 13, 55, 147 atoms. Default size 3 (55 atoms).
    size : int or triple of int, optional
        See ``shape``.
    symbol : str, optional
        Chemical symbol of an fcc element (Au, Ag, Cu, Pt, Pd, Al, Ni, ...).
    vacancies : int, optional
        Number of atoms to remove, chosen at random among the interior atoms
        (those with all 12 neighbours), then among surface atoms if there are
        too few interior ones.
    displacement : non-negative float, optional
        Standard deviation (angstrom) of independent Gaussian displacements
        of every atom along each axis, like thermal vibration (about 0.09 A
        for Au at room temperature).
    seed : int or `numpy.random.Generator`, optional
        Randomness of the vacancies and displacements.
    margin : non-negative float, optional
        Distance between the outermost atoms and the box. Default: one
        nearest-neighbour distance.
    weights : float or mapping, optional
        Weight of the atoms, or a mapping from chemical symbol to weight.
        Default 1.
    lattice_constant : positive float, optional
        Cubic lattice constant in angstrom. Default: ASE's reference value
        for ``symbol`` (4.08 A for Au).

    Returns
    -------
    phantom : `Phantom`
        3D measure with species ``symbol``; ``lattice_spacing`` is the
        nearest-neighbour distance ``lattice_constant / sqrt(2)``
        (multiply twinned particles are strained by a few percent around
        it). ``defect_atoms`` are the interior atoms on twin boundaries and
        five-fold axes (whose 12 neighbours are not centrosymmetric as in
        fcc), ``defect_sites`` the removed atoms.

    Examples
    --------
    >>> for shape in NANOPARTICLE_SHAPES:
    ...     p = nanoparticle(shape)
    ...     print(f'{shape:11s} {p.n_atoms} atoms, {p.lattice_spacing:.3f} A')
    octahedron  44 atoms, 2.885 A
    decahedron  54 atoms, 2.885 A
    icosahedron 55 atoms, 2.885 A
    >>> p = nanoparticle('octahedron', size=5, vacancies=2, seed=0)
    >>> p.n_atoms, p.defect_sites.shape
    (83, (2, 3))
    """
    from ase.cluster import Decahedron, Icosahedron, Octahedron

    if shape not in NANOPARTICLE_SHAPES:
        valid = ', '.join(repr(s) for s in NANOPARTICLE_SHAPES)
        raise ValueError(f'unknown nanoparticle shape {shape!r}; choose one '
                         f'of {valid}')
    a = _fcc_lattice_constant(symbol, lattice_constant)
    if size is None:
        size = _DEFAULT_NANOPARTICLE_SIZE[shape]
    if shape == 'decahedron' and not isinstance(size, numbers.Integral):
        pqr = tuple(size) if np.ndim(size) == 1 else ()
        if len(pqr) != 3 or not all(isinstance(v, numbers.Integral)
                                    for v in pqr):
            raise ValueError(f'decahedron `size` must be an int or a triple '
                             f'(p, q, r) of ints, got {size!r}')
        if min(pqr[:2]) < 1 or pqr[2] < 0:
            raise ValueError(f'decahedron (p, q, r) needs p, q >= 1 and '
                             f'r >= 0, got {pqr}')
        atoms = Decahedron(symbol, *pqr, latticeconstant=a)
    else:
        if not isinstance(size, numbers.Integral) or size < 2:
            raise ValueError(f'{shape} `size` must be an integer >= 2 (atoms '
                             f'along an edge), got {size!r}')
        if shape == 'octahedron':
            atoms = Octahedron(symbol, int(size), latticeconstant=a)
        elif shape == 'decahedron':
            atoms = Decahedron(symbol, int(size), 1, 0, latticeconstant=a)
        else:
            atoms = Icosahedron(symbol, int(size), latticeconstant=a)
    spacing = a / np.sqrt(2)
    twin = _non_fcc_interior_atoms(atoms.positions, spacing)
    return _finish_3d(atoms, shape, spacing, twin, vacancies, displacement,
                      seed, margin, weights,
                      f'{symbol} {shape} of size {size} from ase.cluster')


def fcc_slab(symbol='Au', size=(4, 4), layers=6, stacking_fault=True,
             fault_layer=None, vacancies=0, displacement=0.0, seed=0,
             margin=None, weights=None, lattice_constant=None):
    """Return a thin fcc (111) slab, by default with a stacking fault.

    The slab is ``ase.build.fcc111(symbol, (size[0], size[1], layers),
    orthogonal=True)`` taken as a finite flake (not periodic), with the
    close-packed layers normal to z stacked ``ABCABC...``. The intrinsic
    stacking fault shifts every layer from ``fault_layer`` up by the Shockley
    partial Burgers vector ``a/6 <112>`` (in-plane length
    ``a / sqrt(6)``), which maps A to B, B to C and C to A: six layers become
    ``ABC|BCA``, where the two layers at the fault have identical neighbour
    layers above and below, as in hcp. Atoms the shift moves out of the
    flake's rectangle come back in on the other side, so the outline stays
    that of the perfect slab.

    Parameters
    ----------
    symbol : str, optional
        Chemical symbol of an fcc element.
    size : pair of int, optional
        Atoms along x and rows along y per layer; ``size[1]`` must be even
        (the orthogonal (111) cell holds two rows).
    layers : int, optional
        Number of (111) layers, at least 2 (4 with a stacking fault).
    stacking_fault : bool, optional
        Whether to insert the fault.
    fault_layer : int, optional
        Index (from the bottom, 0-based) of the first shifted layer, in
        ``[2, layers - 2]`` so that both sides keep fcc stacking around the
        fault. Default: ``layers // 2``.
    vacancies, displacement, seed, margin, weights, lattice_constant :
        As for `nanoparticle`.

    Returns
    -------
    phantom : `Phantom`
        Atoms ordered layer by layer from the bottom. ``defect_atoms`` are the
        atoms of the two hcp-stacked layers at the fault (none without a
        fault), ``defect_sites`` the removed atoms. The default has
        4 x 4 x 6 = 96 atoms.

    Examples
    --------
    >>> p = fcc_slab()
    >>> p.n_atoms, len(p.defect_atoms)
    (96, 32)
    >>> print(p.description)
    Au fcc(111) slab, 4 x 4 atoms x 6 layers, stacking ABCBCA (fault below
    layer 3)
    """
    from ase.build import fcc111

    a = _fcc_lattice_constant(symbol, lattice_constant)
    size = tuple(size) if np.ndim(size) == 1 else ()
    if len(size) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1
                                 for v in size):
        raise ValueError(f'`size` must be a pair of positive ints, got '
                         f'{size!r}')
    if size[1] % 2:
        raise ValueError(f'`size[1]` must be even (an orthogonal (111) cell '
                         f'holds two rows of atoms), got {size[1]}')
    min_layers = 4 if stacking_fault else 2
    if not isinstance(layers, numbers.Integral) or layers < min_layers:
        raise ValueError(f'`layers` must be an int >= {min_layers}'
                         f'{" for a stacking fault" if stacking_fault else ""}'
                         f', got {layers!r}')
    atoms = fcc111(symbol, (size[0], size[1], int(layers)), a=a,
                   orthogonal=True)
    # Order layer by layer from the bottom (ASE tags count from the top).
    atoms = atoms[np.lexsort((atoms.positions[:, 1], atoms.positions[:, 0],
                              -atoms.get_tags()))]
    layer = int(layers) - atoms.get_tags()
    stacking = 'ABC' * int(layers)
    fault_atoms = np.zeros(0, dtype=int)
    fault_text = ''
    if stacking_fault:
        if fault_layer is None:
            fault_layer = int(layers) // 2
        if (not isinstance(fault_layer, numbers.Integral)
                or not 2 <= fault_layer <= layers - 2):
            raise ValueError(
                f'`fault_layer` must be an int in [2, {layers - 2}] so that '
                f'fcc stacking surrounds the fault, got {fault_layer!r}')
        # The lateral step from one layer to the next is the partial Burgers
        # vector; repeating it above the fault removes one layer from the
        # ABC sequence.
        # (Take it from the laterally closest pair of atoms of layers 0 and
        # 1, at a / sqrt(6); layer means are off by wrapping in the cell.)
        above = atoms.positions[layer == 1, :2]
        below = atoms.positions[layer == 0, :2]
        dist, nearest = cKDTree(below).query(above)
        step = above[np.argmin(dist)] - below[nearest[np.argmin(dist)]]
        shifted = layer >= fault_layer
        atoms.positions[shifted, :2] += step
        atoms.wrap()
        stacking = (stacking[:fault_layer]
                    + stacking[fault_layer + 1:int(layers) + 1])
        fault_atoms = np.flatnonzero((layer == fault_layer - 1)
                                     | (layer == fault_layer))
        fault_text = f' (fault below layer {fault_layer})'
    atoms.pbc = False
    description = (f'{symbol} fcc(111) slab, {size[0]} x {size[1]} atoms x '
                   f'{layers} layers, stacking {stacking[:int(layers)]}'
                   f'{fault_text}')
    return _finish_3d(atoms, 'stacking_fault' if stacking_fault else 'slab',
                      a / np.sqrt(2), fault_atoms, vacancies, displacement,
                      seed, margin, weights, description)


# --- Helpers: checks


def _check_lattice(lattice):
    if lattice not in LATTICES_2D:
        raise ValueError(f'unknown lattice {lattice!r}; choose one of '
                         f'{", ".join(repr(v) for v in LATTICES_2D)}')
    return lattice


def _check_shape(shape, minimum=(2, 2)):
    try:
        n0, n1 = shape
    except (TypeError, ValueError):
        raise ValueError(f'`shape` must be a pair of ints (atoms along the '
                         f'two axes), got {shape!r}') from None
    if not all(isinstance(v, numbers.Integral) for v in (n0, n1)) or (
            n0 < minimum[0] or n1 < minimum[1]):
        raise ValueError(f'`shape` must be a pair of ints >= {minimum}, got '
                         f'{shape!r}')
    return int(n0), int(n1)


def _check_length(value, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'`{name}` must be a positive length in angstrom, '
                         f'got {value!r}') from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f'`{name}` must be a positive length in angstrom, '
                         f'got {value!r}')
    return value


def _check_margin(margin, spacing):
    if margin is None:
        return spacing
    try:
        margin = float(margin)
    except (TypeError, ValueError):
        raise ValueError(f'`margin` must be a length >= 0 in angstrom, got '
                         f'{margin!r}') from None
    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f'`margin` must be a length >= 0 in angstrom, got '
                         f'{margin!r}')
    return margin


def _checked_indices(index, n, name):
    index = np.unique(np.array(index, ndmin=1))
    if index.dtype.kind not in 'iu' or index.ndim != 1 or index.size == 0:
        raise ValueError(f'`{name}` must be an int or a non-empty sequence of '
                         f'ints, got {index!r}')
    if index.min() < -n or index.max() >= n:
        raise ValueError(f'`{name}` must index the {n} lattice atoms, got '
                         f'{index.tolist()}')
    return np.unique(index % n)


def _fcc_lattice_constant(symbol, lattice_constant):
    from ase.data import atomic_numbers, reference_states

    if symbol not in atomic_numbers or symbol == 'X':
        raise ValueError(f'`symbol` must be a chemical symbol such as '
                         f"'Au', got {symbol!r}")
    if lattice_constant is not None:
        return _check_length(lattice_constant, 'lattice_constant')
    state = reference_states[atomic_numbers[symbol]] or {}
    if state.get('symmetry') != 'fcc':
        raise ValueError(
            f'{symbol} is not an fcc element (ASE lists it as '
            f'{state.get("symmetry")!r}); pass `lattice_constant` to build it '
            f'as fcc anyway')
    return float(state['a'])


# --- Helpers: 2D geometry


def _row_step(lattice, spacing):
    """Distance between neighbouring rows (the mean one for
    ``'honeycomb'``, whose rows are alternately 1 and 1/2 spacing apart)."""
    if lattice == 'square':
        return spacing
    if lattice == 'hexagonal':
        return spacing * np.sqrt(3) / 2
    if lattice == 'rectangular':
        return spacing * RECTANGULAR_ASPECT
    if lattice == 'centred_rectangular':
        # Half the cell's height b = CENTRED_ASPECT a.
        return _x_step(lattice, spacing) * CENTRED_ASPECT / 2
    return 0.75 * spacing  # honeycomb


def _x_step(lattice, spacing):
    """Distance between neighbouring atoms of one row (a lattice
    translation, the Burgers vector of the edge dislocation)."""
    if lattice == 'centred_rectangular':
        # The nearest neighbours are the cell's centre and corners,
        # sqrt(a^2 + b^2) / 2 = spacing apart.
        return 2 * spacing / np.sqrt(1 + CENTRED_ASPECT ** 2)
    if lattice == 'honeycomb':
        return spacing * np.sqrt(3)
    # The spacing itself (not a product): the square and hexagonal
    # phantoms stay bit for bit what they were.
    return spacing


def _row_offset(lattice, row):
    """Shift of a row along the first axis, in row steps (`_x_step`)."""
    if lattice in ('square', 'rectangular'):
        return 0.0
    if lattice == 'honeycomb':
        # Rows in pairs (the two atoms of a cell, one spacing apart
        # along y); every other pair shifted by half a cell.
        return 0.5 * ((row // 2) % 2)
    return 0.5 * (row % 2)


def _honeycomb_row_y(row, spacing):
    """Height of honeycomb row ``row`` (0 at row 0): rows ``2 c`` and
    ``2 c + 1`` hold the two atoms of cell row ``c``, one spacing apart
    (a bond along y); cell rows are ``1.5`` spacings apart (zigzag bonds
    between them)."""
    cell, site = np.divmod(np.asarray(row), 2)
    return (1.5 * cell + site) * spacing


def _lattice_positions(lattice, shape, spacing):
    """Lattice points row by row, centred on the origin.

    For odd sizes the middle atom of the middle row is at the origin
    (honeycomb: at the origin for any size; its rows are not evenly
    spaced).
    """
    n0, n1 = shape
    j, i = np.divmod(np.arange(n0 * n1), n0)
    middle_row = (n1 - 1) // 2
    offsets = np.array([_row_offset(lattice, r - middle_row) for r in j])
    x = (i - (n0 - 1) / 2 + offsets) * _x_step(lattice, spacing)
    if lattice == 'honeycomb':
        y = _honeycomb_row_y(j - middle_row, spacing)
    else:
        y = (j - (n1 - 1) / 2) * _row_step(lattice, spacing)
    return np.column_stack([x, y]).astype(float)


def _lattice_and_checks(lattice, shape, spacing, margin):
    lattice = _check_lattice(lattice)
    shape = _check_shape(shape)
    spacing = _check_length(spacing, 'spacing')
    margin = _check_margin(margin, spacing)
    return _lattice_positions(lattice, shape, spacing), spacing, margin


def _perfect(lattice, shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING,
             margin=None, species='X', weight=1.0):
    positions, spacing, margin = _lattice_and_checks(lattice, shape, spacing,
                                                     margin)
    space = _box_around(positions, margin)
    measure = space.element(positions, weights=weight, species=species)
    return Phantom(measure, 'perfect', spacing,
                   description=_lattice_text(lattice, shape, spacing))


def _box_around(positions, margin):
    return SparseMeasureSpace(positions.min(axis=0) - margin,
                              positions.max(axis=0) + margin)


def _index_nearest_centre(positions):
    centre = positions.mean(axis=0)
    return int(np.argmin(np.sum((positions - centre) ** 2, axis=1)))


def _central_cell_centre(lattice, positions, spacing):
    """Centre of the lattice cell (square, rectangle, triangle or hexagon)
    nearest the centre: the point farthest from its neighbours."""
    if lattice == 'square':
        offset, n_corners = (spacing / 2, spacing / 2), 4
        corner_distance = spacing / np.sqrt(2)
    elif lattice == 'hexagonal':
        offset, n_corners = (spacing / 2, spacing * np.sqrt(3) / 6), 3
        corner_distance = spacing / np.sqrt(3)
    elif lattice == 'rectangular':
        b = spacing * RECTANGULAR_ASPECT
        offset, n_corners = (spacing / 2, b / 2), 4
        corner_distance = np.hypot(spacing, b) / 2
    elif lattice == 'centred_rectangular':
        # The circumcentre of the triangle of two neighbouring corners and
        # the cell's centre: (a/2, (b^2 - a^2) / (4 b)) from a corner.
        a = _x_step(lattice, spacing)
        b = a * CENTRED_ASPECT
        height = (b ** 2 - a ** 2) / (4 * b)
        offset, n_corners = (a / 2, height), 3
        corner_distance = np.hypot(a / 2, height)
    else:
        # Honeycomb: the hexagon's centre, a spacing from its six atoms
        # (from the lower atom of a vertical bond: half a cell along x,
        # half a spacing up).
        offset, n_corners = (spacing * np.sqrt(3) / 2, spacing / 2), 6
        corner_distance = spacing
    candidates = positions + np.array(offset)
    # Only centres of complete cells: those with all corners in the lattice.
    corners = cKDTree(positions).query_ball_point(
        candidates, corner_distance * 1.001, return_length=True)
    candidates = candidates[corners == n_corners]
    centre = positions.mean(axis=0)
    return candidates[np.argmin(np.sum((candidates - centre) ** 2, axis=1))]


def _rotated(points, angle):
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, -s], [s, c]]).T


def _edge_dislocation_field(x, y, b, nu):
    """Isotropic-elasticity displacement of an edge dislocation at 0."""
    r2 = x ** 2 + y ** 2
    theta = np.arctan2(y, x)
    ux = b / (2 * np.pi) * (theta + x * y / (2 * (1 - nu) * r2))
    uy = -b / (2 * np.pi) * (
        (1 - 2 * nu) / (4 * (1 - nu)) * np.log(r2 / b ** 2)
        + (x ** 2 - y ** 2) / (4 * (1 - nu) * r2))
    return ux, uy


def _lattice_text(lattice, shape, spacing):
    return f'{shape[0]} x {shape[1]} {lattice} lattice, spacing {spacing:g} A'


def _points_text(points):
    pts = [f'({", ".join(f"{v:.3g}" for v in p)})' for p in points[:3]]
    return ', '.join(pts) + (', ...' if len(points) > 3 else '')


# --- Helpers: 3D


def _neighbour_lists(positions, spacing):
    return cKDTree(positions).query_ball_point(
        positions, _NEIGHBOUR_CUTOFF * spacing)


def _non_fcc_interior_atoms(positions, spacing):
    """Interior atoms whose 12 neighbours do not come in 6 opposite pairs.

    In fcc every neighbour bond has its opposite; on a twin boundary or
    stacking fault (hcp-like) only 3 of the 6 do, on a five-fold axis 1.
    """
    if len(positions) == 0:
        return np.zeros(0, dtype=int)
    tree = cKDTree(positions)
    flagged = []
    for i, nbrs in enumerate(_neighbour_lists(positions, spacing)):
        nbrs = [j for j in nbrs if j != i]
        if len(nbrs) != 12:
            continue
        bonds = positions[nbrs] - positions[i]
        # An opposite bond ends near the point reflection of each neighbour.
        d, _ = tree.query(positions[i] - bonds)
        if np.sum(d < 0.25 * spacing) < 12:
            flagged.append(i)
    return np.array(flagged, dtype=int)


def _finish_3d(atoms, name, spacing, defect_atoms, vacancies, displacement,
               seed, margin, weights, description):
    """Remove vacancies, displace, and wrap up as a `Phantom`."""
    n = len(atoms)
    if not isinstance(vacancies, numbers.Integral) or not (
            0 <= vacancies < n):
        raise ValueError(f'`vacancies` must be an int in [0, {n - 1}] for '
                         f'this {n}-atom crystal, got {vacancies!r}')
    displacement = float(displacement)
    if not (np.isfinite(displacement) and displacement >= 0):
        raise ValueError(f'`displacement` must be a non-negative length in '
                         f'angstrom, got {displacement!r}')
    margin = _check_margin(margin, spacing)
    rng = np.random.default_rng(seed)
    positions = np.array(atoms.positions)
    removed = np.zeros(0, dtype=int)
    if vacancies:
        counts = np.array([len(nb) - 1 for nb in
                           _neighbour_lists(positions, spacing)])
        interior = rng.permutation(np.flatnonzero(counts >= 12))
        surface = rng.permutation(np.flatnonzero(counts < 12))
        removed = np.sort(np.concatenate([interior, surface])[:vacancies])
    keep = np.ones(n, dtype=bool)
    keep[removed] = False
    sites = positions[removed]
    # Indices of the kept atoms after removal.
    new_index = np.cumsum(keep) - 1
    defect_atoms = new_index[[i for i in defect_atoms if keep[i]]]
    atoms = atoms[keep]
    if displacement > 0:
        atoms.positions += rng.normal(0.0, displacement, (len(atoms), 3))
    if weights is None:
        weights = 1.0
    measure = from_ase(atoms, weights=weights, ndim=3, margin=margin)
    if vacancies:
        plural = 'y' if vacancies == 1 else 'ies'
        description += f', {vacancies} vacanc{plural}'
    if displacement:
        description += f', displaced by {displacement:g} A rms per axis'
    return Phantom(measure, name, spacing, defect_atoms=defect_atoms,
                   defect_sites=sites, description=description)
