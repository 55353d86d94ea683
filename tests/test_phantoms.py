"""Tests of the phantoms: geometry checked with independent computations."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from odl_atoms.phantoms import (
    DEFAULT_SPACING, LATTICES_2D, NANOPARTICLE_SHAPES, PHANTOM_NAMES_2D,
    Phantom, defect_phantom, fcc_slab, hexagonal_lattice,
    lattice_with_displacements, lattice_with_edge_dislocation,
    lattice_with_grain_boundary, lattice_with_interstitial,
    lattice_with_substitution, lattice_with_vacancy, nanoparticle,
    square_lattice)

A = DEFAULT_SPACING


def nn_distances(positions):
    dist, _ = cKDTree(positions).query(positions, k=2)
    return dist[:, 1]


def bonds(positions, spacing, cutoff=1.2):
    """Index pairs closer than ``cutoff`` spacings."""
    return cKDTree(positions).query_pairs(cutoff * spacing,
                                          output_type='ndarray')


def assert_box_is_bbox_plus_margin(phantom, margin):
    pos = phantom.measure.positions
    np.testing.assert_allclose(phantom.space.min_pt, pos.min(axis=0) - margin)
    np.testing.assert_allclose(phantom.space.max_pt, pos.max(axis=0) + margin)


def rows_of(positions, row_step):
    """Group atoms into rows by gaps in y larger than half a row step."""
    order = np.argsort(positions[:, 1])
    gaps = np.flatnonzero(np.diff(positions[order, 1]) > row_step / 2)
    return np.split(order, gaps + 1)


# --- Defaults and the dispatcher


def test_default_spacing_is_gold_nearest_neighbour_distance():
    from ase.data import atomic_numbers, reference_states
    a = reference_states[atomic_numbers['Au']]['a']
    assert DEFAULT_SPACING == pytest.approx(a / np.sqrt(2), abs=1e-3)
    assert 2.5 <= DEFAULT_SPACING <= 3.0


@pytest.mark.parametrize('lattice', LATTICES_2D)
@pytest.mark.parametrize('name', PHANTOM_NAMES_2D)
def test_default_phantoms_have_40_to_50_atoms(name, lattice):
    p = defect_phantom(name, lattice=lattice)
    assert isinstance(p, Phantom)
    assert p.name == name and p.ndim == 2
    # The honeycomb bicrystal keeps a few more atoms at its boundary.
    assert 40 <= p.n_atoms <= (52 if lattice == 'honeycomb' else 50)
    assert p.lattice_spacing == DEFAULT_SPACING
    assert_box_is_bbox_plus_margin(p, DEFAULT_SPACING)
    assert p.defect_positions.shape[1] == 2
    assert p.description


def test_defect_phantom_passes_arguments_on():
    p = defect_phantom('vacancy', shape=(5, 4), spacing=2.0, margin=0.5,
                       index=0, species='Ag', weight=3.0)
    assert p.n_atoms == 19
    np.testing.assert_allclose(p.defect_sites, [[-4.0, -3.0]])
    assert set(p.measure.species) == {'Ag'}
    assert np.all(p.measure.weights == 3.0)
    assert_box_is_bbox_plus_margin(p, 0.5)
    a = defect_phantom('displaced', seed=3)
    b = lattice_with_displacements(seed=3)
    np.testing.assert_array_equal(a.measure.positions, b.measure.positions)


def test_defect_phantom_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="'perfect', 'vacancy'.*'displaced'"):
        defect_phantom('twin_boundary')
    with pytest.raises(ValueError, match="'square', 'hexagonal'"):
        defect_phantom('perfect', lattice='cubic')


# --- Perfect lattices


@pytest.mark.parametrize('shape', [(7, 7), (6, 7), (2, 3)])
def test_square_lattice_geometry(shape):
    p = square_lattice(shape=shape, spacing=2.5)
    n0, n1 = shape
    pos = p.measure.positions
    assert p.n_atoms == n0 * n1
    np.testing.assert_allclose(nn_distances(pos), 2.5)
    # Bonds of a square grid: n1 rows of n0 - 1, n0 columns of n1 - 1.
    assert len(bonds(pos, 2.5)) == n1 * (n0 - 1) + n0 * (n1 - 1)
    np.testing.assert_allclose(pos.mean(axis=0), 0, atol=1e-12)
    assert_box_is_bbox_plus_margin(p, 2.5)


@pytest.mark.parametrize('shape', [(7, 7), (6, 5)])
def test_hexagonal_lattice_geometry(shape):
    p = hexagonal_lattice(shape=shape, spacing=3.0)
    n0, n1 = shape
    pos = p.measure.positions
    assert p.n_atoms == n0 * n1
    np.testing.assert_allclose(nn_distances(pos), 3.0)
    # n1 rows of n0 - 1 bonds; 2 n0 - 1 bonds between neighbouring rows.
    pairs = bonds(pos, 3.0)
    assert len(pairs) == n1 * (n0 - 1) + (n1 - 1) * (2 * n0 - 1)
    np.testing.assert_allclose(
        np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1), 3.0)
    # Bond directions are multiples of 60 degrees.
    d = pos[pairs[:, 1]] - pos[pairs[:, 0]]
    angles = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 60
    assert np.all(np.minimum(angles, 60 - angles) < 1e-9)


def test_margin_and_labels():
    p = square_lattice(margin=0.0, species='Pt', weight=2.5)
    assert_box_is_bbox_plus_margin(p, 0.0)
    assert set(p.measure.species) == {'Pt'}
    assert np.all(p.measure.weights == 2.5)


# --- Point defects


@pytest.mark.parametrize('lattice', LATTICES_2D)
def test_vacancy_removes_the_central_atom(lattice):
    perfect = defect_phantom('perfect', lattice=lattice).measure.positions
    p = lattice_with_vacancy(lattice)
    pos = p.measure.positions
    assert p.n_atoms == len(perfect) - 1
    # The missing site, found by set difference, is the one reported.
    dist, _ = cKDTree(pos).query(perfect)
    missing = perfect[dist > 1e-9]
    np.testing.assert_allclose(p.defect_sites, missing)
    np.testing.assert_allclose(missing, [[0.0, 0.0]], atol=1e-12)
    assert len(p.defect_atoms) == 0
    # The box is that of the perfect lattice.
    assert p.space == defect_phantom('perfect', lattice=lattice).space


def test_vacancy_at_given_indices():
    perfect = square_lattice().measure.positions
    p = lattice_with_vacancy(index=[0, 48, -2])
    assert p.n_atoms == 46
    np.testing.assert_allclose(p.defect_sites, perfect[[0, 47, 48]])
    with pytest.raises(ValueError, match='must index the 49 lattice atoms'):
        lattice_with_vacancy(index=49)
    with pytest.raises(ValueError, match='sequence of ints'):
        lattice_with_vacancy(index=1.5)


@pytest.mark.parametrize('lattice, n_nbrs, distance', [
    ('square', 4, A / np.sqrt(2)), ('hexagonal', 3, A / np.sqrt(3))])
def test_interstitial_sits_in_a_central_cell(lattice, n_nbrs, distance):
    p = lattice_with_interstitial(lattice)
    pos = p.measure.positions
    assert p.n_atoms == 50
    (i,) = p.defect_atoms
    assert i == p.n_atoms - 1
    others = np.delete(pos, i, axis=0)
    dist = np.sort(np.linalg.norm(others - pos[i], axis=1))
    np.testing.assert_allclose(dist[:n_nbrs], distance)
    assert dist[n_nbrs] > distance * 1.5
    # Near the middle: within one spacing of the lattice's centre.
    assert np.linalg.norm(pos[i] - others.mean(axis=0)) < A


def test_interstitial_at_given_site():
    p = lattice_with_interstitial(site=[0.3, 0.4], shape=(3, 3))
    np.testing.assert_allclose(p.measure.positions[p.defect_atoms],
                               [[0.3, 0.4]])
    with pytest.raises(ValueError, match='finite 2D point'):
        lattice_with_interstitial(site=[0.0, np.nan])


def test_substitution_changes_species_and_weight():
    p = lattice_with_substitution(index=[3, 10], substitute_species='Pt',
                                  substitute_weight=1.7, species='Ag')
    m = p.measure
    assert p.n_atoms == 49
    np.testing.assert_array_equal(p.defect_atoms, [3, 10])
    assert list(np.flatnonzero(m.species == 'Pt')) == [3, 10]
    assert list(np.flatnonzero(m.weights == 1.7)) == [3, 10]
    assert np.sum(m.species == 'Ag') == 47
    np.testing.assert_array_equal(m.positions,
                                  square_lattice().measure.positions)
    # Default: the centre atom.
    centre = lattice_with_substitution()
    np.testing.assert_allclose(
        centre.measure.positions[centre.defect_atoms], [[0, 0]], atol=1e-12)
    with pytest.raises(ValueError, match='must differ from the host'):
        lattice_with_substitution(substitute_species='X')
    with pytest.raises(ValueError, match='tell species apart'):
        lattice_with_substitution(substitute_weight=1.0)


# --- Edge dislocation


def burgers_circuit(positions, start, steps, spacing):
    """Walk lattice steps from atom ``start``; return the closure vector.

    Each step goes to the atom nearest ``current + spacing * direction``, so
    the walk follows the distorted lattice; the sum of the ideal steps is
    zero, so a closed walk ends where it started.
    """
    tree = cKDTree(positions)
    current = start
    for direction, count in steps:
        for _ in range(count):
            target = positions[current] + spacing * np.asarray(direction)
            dist, current = tree.query(target)
            assert dist < 0.4 * spacing, 'walk left the lattice'
    return positions[current] - positions[start]


SQUARE_STEPS = [((1, 0), 3), ((0, 1), 3), ((-1, 0), 3), ((0, -1), 3)]
HEX_STEPS = [((1, 0), 3), ((0.5, np.sqrt(3) / 2), 3), ((-1, 0), 3),
             ((-0.5, -np.sqrt(3) / 2), 3)]


@pytest.mark.parametrize('lattice, steps, around, below', [
    ('square', SQUARE_STEPS, (-1.5, -1.5), (-2.5, -2.5)),
    ('hexagonal', HEX_STEPS, (-2.5, -1.3), (-2.5, -2.2))])
def test_burgers_circuit_fails_to_close_by_one_spacing(lattice, steps, around,
                                                       below):
    p = lattice_with_edge_dislocation(lattice)
    pos = p.measure.positions
    tree = cKDTree(pos)
    np.testing.assert_allclose(p.defect_sites, [[0, 0]])
    # Around the core (start bottom left of it) the circuit misses its start
    # by the Burgers vector, one spacing along x.
    start = tree.query(A * np.array(around))[1]
    closure = burgers_circuit(pos, start, steps, A)
    np.testing.assert_allclose(np.abs(closure), [A, 0], atol=0.25 * A)
    # A circuit below the slip plane, not around the core, closes.
    start = tree.query(A * np.array(below))[1]
    short = [(direction, 2 if k % 2 else 3)
             for k, (direction, _) in enumerate(steps)]
    np.testing.assert_allclose(burgers_circuit(pos, start, short, A), 0,
                               atol=1e-9)
    # So does the first circuit in the perfect lattice.
    perfect = defect_phantom('perfect', lattice=lattice).measure.positions
    start = cKDTree(perfect).query(A * np.array(around))[1]
    np.testing.assert_allclose(burgers_circuit(perfect, start, steps, A), 0,
                               atol=1e-9)


@pytest.mark.parametrize('lattice', LATTICES_2D)
def test_edge_dislocation_has_an_extra_half_row_above(lattice):
    shape = (7, 7)
    p = lattice_with_edge_dislocation(lattice, shape=shape)
    pos = p.measure.positions
    # Rows apart along y, and atoms apart along a row, of each lattice
    # (honeycomb: rows alternately A and A / 2 apart).
    step = {'square': A, 'hexagonal': A * np.sqrt(3) / 2,
            'rectangular': A * np.sqrt(2), 'centred_rectangular':
            A * np.sqrt(2 / 3), 'honeycomb': A / 2}[lattice]
    along = {'centred_rectangular': A * 2 / np.sqrt(3),
             'honeycomb': A * np.sqrt(3)}.get(lattice, A)
    if lattice == 'honeycomb':
        # Its rows bend into each other near the core (b = sqrt(3) A):
        # the atoms come row by row, 3 rows of 6 then 4 of 7, each row
        # flat and above the one before.
        rows = np.split(np.arange(len(pos)), np.cumsum([6] * 3 + [7] * 3))
        heights = [pos[r, 1].mean() for r in rows]
        assert np.all(np.diff(heights) > 0)
        assert max(np.ptp(pos[r, 1]) for r in rows) < A / 2
    else:
        rows = rows_of(pos, step)
    assert len(rows) == 7
    counts = [len(r) for r in rows]
    below = [c for r, c in zip(rows, counts) if pos[r, 1].mean() < 0]
    above = [c for r, c in zip(rows, counts) if pos[r, 1].mean() > 0]
    assert below == [6] * 3 and above == [7] * 4
    # The rows share one outline: an extra atom squeezed into the upper
    # rows, not a half-row pasted on the side.
    left = [pos[r, 0].min() for r in rows]
    right = [pos[r, 0].max() for r in rows]
    assert np.ptp(left) < along and np.ptp(right) < along


@pytest.mark.parametrize('nu', [0.3, 0.44])
def test_edge_dislocation_follows_the_elastic_field(nu):
    # Hirth & Lothe eq. 3-45 in polar form: every atom must be a site of the
    # perfect square lattice (core at the centre of a cell) plus u(site).
    b = A
    i, j = np.meshgrid(np.arange(-12, 12) + 0.5, np.arange(-12, 12) + 0.5)
    x, y = A * i.ravel(), A * j.ravel()
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    ux = b / (2 * np.pi) * (theta + np.sin(2 * theta) / (4 * (1 - nu)))
    uy = -b / (2 * np.pi) * ((1 - 2 * nu) / (2 * (1 - nu)) * np.log(r / b)
                             + np.cos(2 * theta) / (4 * (1 - nu)))
    sites = np.column_stack([x + ux, y + uy])
    p = lattice_with_edge_dislocation(poisson_ratio=nu)
    dist, _ = cKDTree(sites).query(p.measure.positions)
    np.testing.assert_allclose(dist, 0, atol=1e-9)


def test_edge_dislocation_strain_decays_away_from_the_core():
    p = lattice_with_edge_dislocation()
    pos = p.measure.positions
    pairs = bonds(pos, A, cutoff=1.3)
    length = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    strain = np.abs(length / A - 1)
    r = np.linalg.norm((pos[pairs[:, 0]] + pos[pairs[:, 1]]) / 2, axis=1)
    # Near the core the atoms are well off the lattice ...
    assert strain[r < A].max() > 0.1
    # ... and the strain falls off like b / (2 pi r).
    assert strain[r > 3 * A].max() < 0.5 * strain[r < A].max()
    assert np.median(strain[r > 3 * A]) < 0.05
    # Every atom keeps a neighbour at about the lattice spacing.
    assert np.all(np.abs(nn_distances(pos) / A - 1) < 0.2)
    # The defect atoms are those next to the core.
    assert set(p.defect_atoms) == set(
        np.flatnonzero(np.linalg.norm(pos, axis=1) < A))
    assert len(p.defect_atoms) >= 3


def test_edge_dislocation_bad_input():
    with pytest.raises(ValueError, match='poisson_ratio'):
        lattice_with_edge_dislocation(poisson_ratio=0.5)
    with pytest.raises(ValueError, match='>= \\(3, 2\\)'):
        lattice_with_edge_dislocation(shape=(2, 5))


# --- Grain boundary


def bond_angles(positions, spacing, symmetry):
    """Directions of nearest-neighbour bonds modulo the lattice symmetry."""
    pairs = bonds(positions, spacing, cutoff=1.01)
    d = positions[pairs[:, 1]] - positions[pairs[:, 0]]
    return np.arctan2(d[:, 1], d[:, 0]) % symmetry


def circular_mean(angles, period):
    z = np.mean(np.exp(2j * np.pi * angles / period))
    return (np.angle(z) * period / (2 * np.pi)) % period


@pytest.mark.parametrize('lattice, angle', [
    ('square', None), ('square', np.radians(20.0)),
    ('hexagonal', None), ('hexagonal', np.radians(13.0))])
def test_grain_boundary_misorientation(lattice, angle):
    p = lattice_with_grain_boundary(lattice, angle=angle, min_distance=0.7)
    pos = p.measure.positions
    symmetry = np.pi / 2 if lattice == 'square' else np.pi / 3
    if angle is None:
        angle = np.radians(36.8699 if lattice == 'square' else 21.7868)
    left = pos[pos[:, 0] < -A]
    right = pos[pos[:, 0] > A]
    left_angles = bond_angles(left, A, symmetry)
    right_angles = bond_angles(right, A, symmetry)
    # Every bond inside a grain points the same way modulo symmetry.
    for angles, expected in ((left_angles, angle / 2),
                             (right_angles, -angle / 2)):
        diff = (angles - expected + symmetry / 2) % symmetry - symmetry / 2
        np.testing.assert_allclose(diff, 0, atol=1e-6)
    misorientation = (circular_mean(left_angles, symmetry)
                      - circular_mean(right_angles, symmetry)) % symmetry
    assert misorientation == pytest.approx(angle, abs=1e-6)


@pytest.mark.parametrize('min_distance', [0.5, 0.7, 0.9])
def test_grain_boundary_removes_close_atoms(min_distance):
    p = lattice_with_grain_boundary(min_distance=min_distance)
    pos = p.measure.positions
    assert nn_distances(pos).min() >= min_distance * A - 1e-9
    # Two perfect grains: all close contacts are across the boundary.
    close = bonds(pos, A, cutoff=0.999)
    assert np.all(pos[close[:, 0], 0] * pos[close[:, 1], 0] <= 0)
    # The boundary atoms are those near x = 0.
    np.testing.assert_array_equal(
        p.defect_atoms, np.flatnonzero(np.abs(pos[:, 0]) < A))


def test_grain_boundary_bad_angle():
    with pytest.raises(ValueError, match='angle'):
        lattice_with_grain_boundary(angle=np.pi / 2)
    with pytest.raises(ValueError, match='angle'):
        lattice_with_grain_boundary('hexagonal', angle=-0.1)
    with pytest.raises(ValueError, match='min_distance'):
        lattice_with_grain_boundary(min_distance=1.2)


# --- Smooth random displacements


@pytest.mark.parametrize('lattice', LATTICES_2D)
def test_displacement_field_is_smooth(lattice):
    reference = defect_phantom('perfect', lattice=lattice).measure.positions
    p = lattice_with_displacements(lattice, amplitude=0.4, seed=7)
    u = p.measure.positions - reference
    assert np.sqrt(np.mean(np.sum(u ** 2, axis=1))) == pytest.approx(0.4)
    pairs = bonds(reference, A, cutoff=1.01)
    neighbour_diff = np.linalg.norm(u[pairs[:, 0]] - u[pairs[:, 1]], axis=1)
    i, j = np.triu_indices(len(u), 1)
    any_diff = np.linalg.norm(u[i] - u[j], axis=1)
    # Neighbours move alike, far more than arbitrary pairs of atoms do.
    assert neighbour_diff.mean() < 0.4 * any_diff.mean()
    # A genuine field, not a rigid shift.
    assert any_diff.mean() > 0.2


def test_displacement_field_is_seeded():
    a = lattice_with_displacements(seed=1).measure.positions
    b = lattice_with_displacements(seed=1).measure.positions
    c = lattice_with_displacements(seed=2).measure.positions
    d = lattice_with_displacements(
        seed=np.random.default_rng(1)).measure.positions
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)
    assert np.abs(a - c).max() > 0.05
    zero = lattice_with_displacements(amplitude=0.0).measure.positions
    np.testing.assert_allclose(zero, square_lattice().measure.positions)
    with pytest.raises(ValueError, match='amplitude'):
        lattice_with_displacements(amplitude=-0.1)
    with pytest.raises(ValueError, match='n_modes'):
        lattice_with_displacements(n_modes=0)


# --- Bad 2D input


@pytest.mark.parametrize('kwargs, match', [
    ({'shape': (1, 7)}, 'shape'),
    ({'shape': 7}, 'pair of ints'),
    ({'shape': (7.0, 7)}, 'shape'),
    ({'spacing': -1.0}, 'spacing'),
    ({'spacing': np.nan}, 'spacing'),
    ({'margin': -1.0}, 'margin'),
])
def test_bad_lattice_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        square_lattice(**kwargs)


# --- 3D nanoparticles


def ase_cluster(shape, size):
    from ase.cluster import Decahedron, Icosahedron, Octahedron
    if shape == 'octahedron':
        return Octahedron('Au', size)
    if shape == 'decahedron':
        return Decahedron('Au', *((size, 1, 0) if np.ndim(size) == 0
                                  else size))
    return Icosahedron('Au', size)


@pytest.mark.parametrize('shape, size, count', [
    ('octahedron', 3, 19), ('octahedron', 4, 44), ('octahedron', 5, 85),
    ('decahedron', 3, 23), ('decahedron', 4, 54),
    ('decahedron', (2, 1, 1), 49),
    ('icosahedron', 2, 13), ('icosahedron', 3, 55)])
def test_nanoparticle_matches_ase(shape, size, count):
    p = nanoparticle(shape, size)
    ref = ase_cluster(shape, size).positions
    assert p.n_atoms == len(ref) == count
    np.testing.assert_allclose(p.measure.positions, ref)
    assert set(p.measure.species) == {'Au'}
    assert np.all(p.measure.weights == 1.0)
    assert p.ndim == 3
    assert_box_is_bbox_plus_margin(p, p.lattice_spacing)


def test_nanoparticle_defaults_and_spacing():
    counts = {s: nanoparticle(s).n_atoms for s in NANOPARTICLE_SHAPES}
    assert counts == {'octahedron': 44, 'decahedron': 54, 'icosahedron': 55}
    p = nanoparticle('octahedron', 5)
    # Perfect fcc: every atom's nearest neighbour at a / sqrt(2).
    np.testing.assert_allclose(nn_distances(p.measure.positions),
                               4.08 / np.sqrt(2))
    assert p.lattice_spacing == pytest.approx(4.08 / np.sqrt(2))
    assert len(p.defect_atoms) == 0
    cu = nanoparticle('octahedron', 3, symbol='Cu', weights={'Cu': 0.5})
    assert cu.lattice_spacing == pytest.approx(3.61 / np.sqrt(2))
    assert set(cu.measure.species) == {'Cu'}
    assert np.all(cu.measure.weights == 0.5)
    own = nanoparticle('octahedron', 3, lattice_constant=4.0)
    np.testing.assert_allclose(nn_distances(own.measure.positions),
                               4.0 / np.sqrt(2))


def test_decahedron_twin_atoms_lie_on_five_planes():
    p = nanoparticle('decahedron', 5)
    pos = p.measure.positions
    twin = pos[p.defect_atoms]
    assert len(twin) > 0
    # Five-fold axis along z through the centre.
    on_axis = np.hypot(twin[:, 0], twin[:, 1]) < 1e-6
    assert on_axis.sum() >= 2
    azimuth = np.degrees(np.arctan2(twin[~on_axis, 1], twin[~on_axis, 0]))
    planes = np.unique(np.round(azimuth % 360, 3))
    assert len(planes) == 5
    np.testing.assert_allclose(np.diff(planes), 72.0, atol=1e-3)


def test_icosahedron_twin_atoms_are_its_inner_shell():
    p = nanoparticle('icosahedron', 3)
    r = np.linalg.norm(p.measure.positions, axis=1)
    inner = np.flatnonzero((r > 0.1) & (r < 1.2 * p.lattice_spacing))
    assert len(inner) == 12
    np.testing.assert_array_equal(np.sort(p.defect_atoms), inner)


def test_nanoparticle_vacancies_are_interior_and_seeded():
    ref = ase_cluster('octahedron', 6).positions
    counts = cKDTree(ref).query_ball_point(ref, 1.2 * 2.885,
                                           return_length=True) - 1
    p = nanoparticle('octahedron', 6, vacancies=5, seed=3)
    assert p.n_atoms == len(ref) - 5
    assert p.defect_sites.shape == (5, 3)
    # The reported sites are exactly the atoms missing from ASE's cluster.
    dist, _ = cKDTree(p.measure.positions).query(ref)
    missing = ref[dist > 1e-9]
    np.testing.assert_allclose(np.sort(p.defect_sites, axis=0),
                               np.sort(missing, axis=0))
    # ... and interior ones, with 12 neighbours.
    idx = cKDTree(ref).query(p.defect_sites)[1]
    assert np.all(counts[idx] == 12)
    q = nanoparticle('octahedron', 6, vacancies=5, seed=3)
    np.testing.assert_array_equal(p.defect_sites, q.defect_sites)
    r = nanoparticle('octahedron', 6, vacancies=5, seed=4)
    assert not np.array_equal(p.defect_sites, r.defect_sites)
    # More vacancies than interior atoms: surface atoms go too.
    small = nanoparticle('octahedron', 3, vacancies=10)
    assert small.n_atoms == 9


def test_nanoparticle_displacement():
    ref = ase_cluster('octahedron', 7).positions
    p = nanoparticle('octahedron', 7, displacement=0.1, seed=0)
    u = p.measure.positions - ref
    assert np.std(u) == pytest.approx(0.1, rel=0.15)
    assert np.abs(np.mean(u, axis=0)).max() < 0.03
    q = nanoparticle('octahedron', 7, displacement=0.1, seed=0)
    np.testing.assert_array_equal(p.measure.positions, q.measure.positions)
    # The box grows with the atoms: all stay inside (SparseMeasure checks).
    assert_box_is_bbox_plus_margin(p, p.lattice_spacing)


@pytest.mark.parametrize('kwargs, match', [
    ({'shape': 'cube'}, "'octahedron', 'decahedron', 'icosahedron'"),
    ({'size': 1}, 'integer >= 2'),
    ({'shape': 'decahedron', 'size': (3, 1)}, 'triple'),
    ({'symbol': 'Fe'}, 'not an fcc element'),
    ({'symbol': 'Qq'}, 'chemical symbol'),
    ({'vacancies': 44}, r'\[0, 43\]'),
    ({'vacancies': -1}, 'vacancies'),
    ({'displacement': -0.1}, 'displacement'),
    ({'weights': {'Ag': 1.0}}, 'no weight given'),
])
def test_nanoparticle_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nanoparticle(**kwargs)


# --- Stacking fault


def stacking_sequence(positions, spacing):
    """Labels A/B/C of the (111) layers from their lateral positions."""
    z = positions[:, 2]
    order = np.argsort(z)
    splits = np.flatnonzero(np.diff(z[order]) > 0.5) + 1
    layers = np.split(order, splits)
    # The triangular lattice of one layer and its A, B, C sublattices.
    basis = np.array([[spacing, 0], [spacing / 2, spacing * np.sqrt(3) / 2]])
    origin = positions[layers[0][0], :2]
    labels = ''
    for layer in layers:
        frac = np.linalg.solve(basis.T, (positions[layer, :2] - origin).T).T
        shift = np.round(3 * ((frac[:, 0] + frac[:, 1]) % 1)) % 3
        # All atoms of a layer sit on one sublattice.
        assert len(np.unique(shift)) == 1
        frac_off = (frac * 3 - np.round(frac * 3))
        assert np.abs(frac_off).max() < 1e-6
        labels += 'ABC'[int(shift[0])]
    # Which sublattice is called B or C is a convention: name them in order
    # of appearance.
    names = dict(zip(dict.fromkeys(labels), 'ABC'))
    return ''.join(names[label] for label in labels)


def test_slab_stacking_sequence():
    perfect = fcc_slab(stacking_fault=False)
    assert stacking_sequence(perfect.measure.positions,
                             perfect.lattice_spacing) == 'ABCABC'
    assert len(perfect.defect_atoms) == 0
    faulted = fcc_slab()
    seq = stacking_sequence(faulted.measure.positions,
                            faulted.lattice_spacing)
    assert seq == 'ABCBCA'
    assert seq in faulted.description
    other = fcc_slab(layers=7, fault_layer=2)
    assert stacking_sequence(other.measure.positions,
                            other.lattice_spacing) == 'ABABCAB'


def test_slab_fault_keeps_close_packing_and_marks_its_layers():
    for p in (fcc_slab(stacking_fault=False), fcc_slab()):
        pos = p.measure.positions
        assert p.n_atoms == 96
        np.testing.assert_allclose(nn_distances(pos), 4.08 / np.sqrt(2))
    p = fcc_slab()
    pos = p.measure.positions
    layer_z = np.unique(np.round(pos[:, 2], 6))
    assert len(layer_z) == 6
    fault_z = np.round(pos[p.defect_atoms, 2], 6)
    np.testing.assert_allclose(np.unique(fault_z), layer_z[[2, 3]])
    assert len(p.defect_atoms) == 32
    # The same lateral outline as the perfect slab: the shifted layers are
    # wrapped back into the rectangle.
    ref = fcc_slab(stacking_fault=False).measure.positions
    np.testing.assert_allclose(np.ptp(pos[:, :2], axis=0),
                               np.ptp(ref[:, :2], axis=0), atol=2.0)


def test_slab_vacancies_and_bad_input():
    p = fcc_slab(vacancies=3, seed=1)
    assert p.n_atoms == 93
    assert p.defect_sites.shape == (3, 3)
    # Fault atoms stay valid indices after the removal.
    assert p.defect_atoms.max() < p.n_atoms
    with pytest.raises(ValueError, match='even'):
        fcc_slab(size=(4, 3))
    with pytest.raises(ValueError, match='fault_layer'):
        fcc_slab(fault_layer=1)
    with pytest.raises(ValueError, match='layers'):
        fcc_slab(layers=3)
    with pytest.raises(ValueError, match='pair of positive ints'):
        fcc_slab(size=4)


def test_phantom_validates_its_fields():
    m = square_lattice().measure
    with pytest.raises(ValueError, match='must index the 49 atoms'):
        Phantom(m, 'x', 1.0, defect_atoms=[49])
    with pytest.raises(ValueError, match='lattice_spacing'):
        Phantom(m, 'x', 0.0)
    with pytest.raises(TypeError, match='SparseMeasure'):
        Phantom(m.positions, 'x', 1.0)
    p = Phantom(m, 'x', 1.0, defect_atoms=[2], defect_sites=[[0.5, 0.5]])
    np.testing.assert_allclose(p.defect_positions,
                               [m.positions[2], [0.5, 0.5]])
    with pytest.raises(Exception):
        p.name = 'y'
