"""Tests for `odl_atoms.functionals.LennardJones`.

References are independent of the code under test: ASE's Lennard-Jones
calculator (energies and forces), closed-form pair energies, central finite
differences, ASE crystals for nearest-neighbour distances, and brute-force
dense distance computations.
"""

import itertools

import numpy as np
import odl
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ
from ase.cluster import Icosahedron
from ase.neighborlist import neighbor_list

from odl_atoms.functionals import LennardJones

RTOL = 1e-10


# --- Independent references


def lj_pair(r, epsilon, sigma):
    """Plain Lennard-Jones pair energy and its derivative d e / d r."""
    sr6 = (sigma / r) ** 6
    return (4 * epsilon * (sr6 ** 2 - sr6),
            -24 * epsilon / r * (2 * sr6 ** 2 - sr6))


def ase_reference(positions, **params):
    """Energy and forces from ASE's calculator; 2D input embedded at z = 0.

    Returns the energy, the forces in the input dimension and the full 3D
    forces.
    """
    positions = np.asarray(positions, dtype=float)
    n, d = positions.shape
    pos3 = np.zeros((n, 3))
    pos3[:, :d] = positions
    atoms = Atoms(['Ar'] * n, positions=pos3, pbc=False)
    atoms.calc = AseLJ(**params)
    forces = atoms.get_forces()
    return atoms.get_potential_energy(), forces[:, :d], forces


def ase_params(lj):
    """ASE calculator parameters equal to those of ``lj``."""
    params = dict(epsilon=lj.epsilon, sigma=lj.sigma, rc=lj.cutoff,
                  smooth=lj.smooth)
    if lj.smooth:
        params['ro'] = lj.onset
    return params


def jittered_grid(shape, spacing, jitter, rng):
    """Positions on a jittered grid: minimum distance spacing - 2 * jitter."""
    grid = np.stack(np.meshgrid(*[np.arange(m) for m in shape],
                                indexing='ij'), axis=-1).reshape(-1, len(shape))
    return spacing * grid + rng.uniform(-jitter, jitter, grid.shape)


def min_distance(positions):
    diff = positions[:, None] - positions[None]
    dist = np.sqrt((diff ** 2).sum(-1))
    return dist[np.triu_indices(len(positions), 1)].min()


def numerical_gradient(func, x, step=1e-6):
    """Central finite differences of ``func`` at a positions array ``x``."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += step
        xm[idx] -= step
        grad[idx] = (func(xp) - func(xm)) / (2 * step)
    return grad


def energy_of(lj, positions):
    return lj(lj.domain.element(positions))


def gradient_of(lj, positions):
    return lj.gradient(lj.domain.element(positions)).data


def check_against_ase(lj, positions):
    energy, forces, forces3 = ase_reference(positions, **ase_params(lj))
    x = lj.domain.element(positions)
    assert lj(x) == pytest.approx(energy, rel=RTOL, abs=RTOL * lj.epsilon)
    scale = np.abs(forces).max()
    np.testing.assert_allclose(lj.gradient(x).data, -forces, rtol=RTOL,
                               atol=RTOL * scale)
    return forces3


# --- Agreement with ASE


@pytest.mark.parametrize('smooth', [False, True])
@pytest.mark.parametrize('epsilon, sigma, cutoff, onset', [
    (1.0, 1.0, None, None),
    (0.3, 2.2, 5.0, 3.5),
    (2.5, 0.7, 2.5, 1.0),
])
def test_two_dimensional_matches_ase(smooth, epsilon, sigma, cutoff, onset):
    rng = np.random.default_rng(0)
    positions = jittered_grid((5, 4), 1.05 * sigma, 0.1 * sigma, rng)
    assert min_distance(positions) > 0.8 * sigma  # outside the core
    lj = LennardJones(odl.rn(positions.shape), epsilon=epsilon, sigma=sigma,
                      cutoff=cutoff, smooth=smooth,
                      onset=onset if smooth else None)
    forces3 = check_against_ase(lj, positions)
    assert np.all(forces3[:, 2] == 0)
    assert np.abs(forces3[:, :2]).max() > 0.1 * epsilon / sigma  # non-trivial


@pytest.mark.parametrize('smooth', [False, True])
def test_icosahedron_matches_ase(smooth):
    cluster = Icosahedron('Ar', 3)
    positions = cluster.positions - cluster.positions.mean(axis=0)
    # Argon: sigma = 3.4 angstrom, epsilon = 10.3 meV. Compress a little so
    # that pairs sample both sides of the minimum.
    positions *= 0.97
    space = odl.ProductSpace(odl.rn(positions.shape), odl.rn(len(positions)))
    lj = LennardJones(space, epsilon=0.0103, sigma=3.4, smooth=smooth)
    energy, forces, _ = ase_reference(positions, **ase_params(lj))
    p = space.element([positions, np.linspace(0.5, 2, len(positions))])
    assert lj(p) == pytest.approx(energy, rel=RTOL)
    grad = lj.gradient(p)
    np.testing.assert_allclose(grad[0].data, -forces, rtol=RTOL,
                               atol=RTOL * np.abs(forces).max())
    assert np.all(grad[1].data == 0)
    assert energy < -50 * lj.epsilon  # a bound cluster, not a trivial case


@pytest.mark.parametrize('smooth', [False, True])
def test_random_cluster_matches_ase(smooth):
    rng = np.random.default_rng(1)
    positions = jittered_grid((4, 4, 4), 1.1, 0.15, rng)
    positions = positions[rng.permutation(len(positions))[:50]]
    assert min_distance(positions) > 0.8
    lj = LennardJones(odl.rn(positions.shape), epsilon=1.3, sigma=1.0,
                      cutoff=2.7, smooth=smooth,
                      onset=1.6 if smooth else None)
    check_against_ase(lj, positions)


def test_crystal_matches_ase():
    crystal = bulk('Cu', 'fcc', a=3.61, cubic=True).repeat((5, 5, 5))
    rng = np.random.default_rng(2)
    positions = crystal.positions + rng.normal(0, 0.05, crystal.positions.shape)
    assert len(positions) == 500
    lj = LennardJones.from_element(odl.rn(positions.shape), 'Cu',
                                   epsilon=0.4)
    check_against_ase(lj, positions)


def test_large_crystal_against_brute_force():
    """~20k atoms: gradient and energy changes vs dense reference sums."""
    a = 3.61
    crystal = bulk('Cu', 'fcc', a=a, cubic=True).repeat((17, 17, 17))
    rng = np.random.default_rng(3)
    positions = crystal.positions + rng.normal(0, 0.05, crystal.positions.shape)
    n = len(positions)
    assert n > 19000
    lj = LennardJones.from_lattice(odl.rn((n, 3)), a / np.sqrt(2), epsilon=0.4)
    sigma, eps, rc = lj.sigma, lj.epsilon, lj.cutoff

    def atom_terms(pos, k):
        """Dense sum over all partners of atom k: energy and gradient."""
        diff = pos[k] - np.delete(pos, k, axis=0)
        r = np.sqrt((diff ** 2).sum(axis=1))
        r = r[r < rc]
        diff = diff[np.sqrt((diff ** 2).sum(axis=1)) < rc]
        e, de = lj_pair(r, eps, sigma)
        e_rc, _ = lj_pair(rc, eps, sigma)
        return np.sum(e - e_rc), (de / r) @ diff

    x = lj.domain.element(positions)
    energy = lj(x)
    grad = lj.gradient(x).data
    for k in rng.choice(n, 20, replace=False):
        np.testing.assert_allclose(grad[k], atom_terms(positions, k)[1],
                                   rtol=1e-9, atol=1e-9)

    # Moving one atom changes the energy by its own pair terms only.
    k = n // 2
    moved = positions.copy()
    moved[k] += [0.3, -0.2, 0.1]
    delta = lj(lj.domain.element(moved)) - energy
    expected = atom_terms(moved, k)[0] - atom_terms(positions, k)[0]
    assert delta == pytest.approx(expected, rel=1e-8)


# --- Closed forms


def test_two_atoms_at_equilibrium():
    eps, sigma = 2.0, 1.7
    lj = LennardJones(odl.rn((2, 3)), epsilon=eps, sigma=sigma)
    r_min = 2 ** (1 / 6) * sigma
    assert lj.r_min == pytest.approx(r_min, rel=1e-15)
    x = [[0, 0, 0], [r_min / np.sqrt(3)] * 3]
    e_rc = 4 * eps * (3.0 ** -12 - 3.0 ** -6)
    assert energy_of(lj, x) == pytest.approx(-eps - e_rc, rel=1e-13)
    np.testing.assert_allclose(gradient_of(lj, x), 0, atol=1e-12)

    smooth = LennardJones(odl.rn((2, 3)), epsilon=eps, sigma=sigma,
                          smooth=True)
    assert energy_of(smooth, x) == pytest.approx(-eps, rel=1e-13)


def test_beyond_cutoff_no_interaction():
    lj = LennardJones(odl.rn((2, 2)), cutoff=2.0)
    assert energy_of(lj, [[0, 0], [2.0, 0]]) == 0
    assert energy_of(lj, [[0, 0], [2.5, 0]]) == 0
    np.testing.assert_array_equal(gradient_of(lj, [[0, 0], [2.5, 0]]), 0)
    e, _ = lj_pair(1.9, 1.0, 1.0)
    e_rc, _ = lj_pair(2.0, 1.0, 1.0)
    assert energy_of(lj, [[0, 0], [1.9, 0]]) == pytest.approx(e - e_rc,
                                                              rel=1e-13)


@pytest.mark.parametrize('n', [0, 1])
def test_fewer_than_two_atoms(n):
    lj = LennardJones(odl.rn((n, 2)))
    x = np.ones((n, 2))
    assert energy_of(lj, x) == 0
    np.testing.assert_array_equal(gradient_of(lj, x), np.zeros((n, 2)))


# --- Finite differences


@pytest.mark.parametrize('smooth', [False, True])
def test_gradient_finite_differences(smooth):
    """Pairs in the core, the plain region and the smooth cut-off region."""
    rng = np.random.default_rng(4)
    positions = np.array([[0.0, 0.0, 0.0], [0.5, 0.1, 0.0], [0.1, 0.3, 0.05],
                          [1.1, 0.9, 0.2], [2.3, 0.2, -0.3], [0.4, 2.6, 0.1],
                          [1.5, -1.0, 0.8], [-0.2, -0.1, 1.2]])
    positions += rng.uniform(-0.02, 0.02, positions.shape)
    lj = LennardJones(odl.rn(positions.shape), epsilon=1.5, smooth=smooth)
    dist = np.sqrt(((positions[:, None] - positions[None]) ** 2).sum(-1))
    dist = dist[np.triu_indices(len(positions), 1)]
    assert np.any(dist < lj.core_radius)
    assert np.any((dist > lj.core_radius) & (dist < 1.5))
    assert np.any((dist > 0.66 * lj.cutoff) & (dist < lj.cutoff))
    assert np.all(np.abs(dist - lj.cutoff) > 1e-3)

    numerical = numerical_gradient(lambda p: energy_of(lj, p), positions)
    np.testing.assert_allclose(gradient_of(lj, positions), numerical,
                               rtol=1e-6, atol=1e-6 * np.abs(numerical).max())


def test_derivative_is_directional_derivative():
    """``lj.derivative(p)(v)`` (ODL's default from the gradient) vs FD."""
    rng = np.random.default_rng(5)
    positions = jittered_grid((3, 3), 1.1, 0.1, rng)
    space = odl.ProductSpace(odl.rn(positions.shape), odl.rn(len(positions)))
    lj = LennardJones(space, smooth=True)
    p = space.element([positions, np.ones(len(positions))])
    direction = space.element([rng.normal(size=positions.shape),
                               rng.normal(size=len(positions))])
    step = 1e-6
    fd = (lj(p + step * direction) - lj(p - step * direction)) / (2 * step)
    assert lj.derivative(p)(direction) == pytest.approx(fd, rel=1e-6)


# --- Inner core


def core_constants(eps, sigma, rc, core):
    """A and B of the core continuation with a shifted cut-off, by hand."""
    e, de = lj_pair(core, eps, sigma)
    e_rc, _ = lj_pair(rc, eps, sigma)
    b = -de / (2 * core)
    return e - e_rc + b * core ** 2, b


def test_coincident_atoms_finite():
    eps, sigma = 1.2, 2.0
    lj = LennardJones(odl.rn((2, 3)), epsilon=eps, sigma=sigma)
    a, b = core_constants(eps, sigma, 3 * sigma, 0.8 * sigma)
    assert b > 0
    x = np.full((2, 3), 1.5)
    assert energy_of(lj, x) == pytest.approx(a, rel=1e-13)
    np.testing.assert_array_equal(gradient_of(lj, x), 0)
    for r in (1e-300, 1e-12, 1e-6):
        y = np.zeros((2, 3))
        y[1, 0] = r
        assert energy_of(lj, y) == pytest.approx(a - b * r ** 2, rel=1e-13)
        grad = gradient_of(lj, y)
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad[1], [-2 * b * r, 0, 0], rtol=1e-12)


def test_many_coincident_atoms_finite():
    lj = LennardJones(odl.rn((6, 2)), smooth=True)
    x = np.zeros((6, 2))
    x[4:] = [[3.0, 0.0], [0.0, 1e-9]]
    energy = energy_of(lj, x)
    grad = gradient_of(lj, x)
    assert np.isfinite(energy) and energy > 10 * 0.5 * 6 * 5 * lj.epsilon
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize('smooth', [False, True])
def test_core_continuity(smooth):
    """Value and slope match across the core radius (one-sided differences)."""
    eps, sigma = 0.7, 1.3
    lj = LennardJones(odl.rn((2, 2)), epsilon=eps, sigma=sigma,
                      smooth=smooth, core_radius=0.85 * sigma)
    rc0 = lj.core_radius

    def energy(r):
        return energy_of(lj, [[0, 0], [r, 0]])

    h = 1e-6
    left_slope = (energy(rc0) - energy(rc0 - h)) / h
    right_slope = (energy(rc0 + h) - energy(rc0)) / h
    _, slope = lj_pair(rc0, eps, sigma)  # smooth cut-off is 1 here
    assert left_slope == pytest.approx(slope, rel=1e-5)
    assert right_slope == pytest.approx(slope, rel=1e-5)
    assert abs(energy(rc0 - 1e-12) - energy(rc0 + 1e-12)) < 1e-9

    # Just outside the core the energy is ASE's.
    ase_energy, _, _ = ase_reference([[0, 0], [rc0 * (1 + 1e-12), 0]],
                                     **ase_params(lj))
    assert energy(rc0 * (1 + 1e-12)) == pytest.approx(ase_energy, rel=1e-9)


def test_core_repulsive():
    lj = LennardJones(odl.rn((2, 2)))
    r = np.linspace(0, lj.core_radius, 50)
    energies = np.array([energy_of(lj, [[0, 0], [ri, 0]]) for ri in r])
    assert np.all(np.diff(energies) < 0)
    np.testing.assert_allclose(lj.pair_energy(r), energies, rtol=1e-14)
    # Repulsion continues outside the core, down to the minimum.
    r_out = np.linspace(lj.core_radius, lj.r_min, 50)
    assert np.all(np.diff(lj.pair_energy(r_out)) < 0)


# --- Composition with ODL and optimisation


def test_composition_with_odl_operators():
    rng = np.random.default_rng(6)
    n, d = 5, 2
    positions = jittered_grid((n, 1), 1.2, 0.1, rng)
    space = odl.ProductSpace(odl.rn((n, d)), odl.rn(n))
    lj = LennardJones(space)
    p = space.element([positions, rng.uniform(0.5, 1.5, n)])

    # Scaling operator on the whole parameter space.
    y = space.element([rng.normal(size=(n, d)), rng.normal(size=n)])
    op = odl.ScalingOperator(space, 2.0)
    objective = (odl.functionals.L2NormSquared(space).translated(y) @ op
                 + 0.5 * lj)
    e_ase, forces, _ = ase_reference(positions, epsilon=1.0, sigma=1.0)
    residual = [2 * p[0].data - y[0].data, 2 * p[1].data - y[1].data]
    expected = sum(np.sum(res ** 2) for res in residual) + 0.5 * e_ase
    assert objective(p) == pytest.approx(expected, rel=1e-12)
    grad = objective.gradient(p)
    np.testing.assert_allclose(grad[0].data, 4 * residual[0] - 0.5 * forces,
                               rtol=1e-10)
    np.testing.assert_allclose(grad[1].data, 4 * residual[1], rtol=1e-12)

    # A matrix acting on the positions of a positions-only domain.
    pos_space = odl.rn((n, d))
    matrix = rng.normal(size=(n, n))
    op = odl.MatrixOperator(matrix, domain=pos_space, axis=0)
    y = pos_space.element(rng.normal(size=(n, d)))
    lj_pos = LennardJones(pos_space)
    objective = (odl.functionals.L2NormSquared(pos_space).translated(y) @ op
                 + 0.5 * lj_pos)
    residual = matrix @ positions - y.data
    assert objective(positions) == pytest.approx(
        np.sum(residual ** 2) + 0.5 * e_ase, rel=1e-12)
    np.testing.assert_allclose(
        objective.gradient(pos_space.element(positions)).data,
        2 * matrix.T @ residual - 0.5 * forces, rtol=1e-10)


def test_bfgs_relaxes_dimer_to_r_min():
    space = odl.rn((2, 3))
    lj = LennardJones(space, sigma=1.5, smooth=True)
    x = space.element([[0, 0, 0], [1.1, 1.2, -0.6]])  # r = 1.76 > r_min
    line_search = odl.solvers.BacktrackingLineSearch(lj)
    # Stop before the energy is flat to rounding: there ODL's line search
    # fails an internal ``assert fval < fx`` (an AssertionError).
    try:
        odl.solvers.bfgs_method(lj, x, line_search=line_search, maxiter=100,
                                tol=1e-7)
    except ValueError:  # no further decrease possible: converged
        pass
    distance = np.linalg.norm(x.data[0] - x.data[1])
    assert distance == pytest.approx(2 ** (1 / 6) * 1.5, rel=1e-6)
    assert lj(x) == pytest.approx(-1.0, rel=1e-10)


def test_steepest_descent_relaxes_trimer_to_triangle():
    space = odl.ProductSpace(odl.rn((3, 2)), odl.rn(3))
    lj = LennardJones.from_r_min(space, r_min=2.5, epsilon=0.5)
    x = space.element([[[0, 0], [2.9, 0.3], [1.0, 2.0]], [1, 1, 1]])
    line_search = odl.solvers.BacktrackingLineSearch(lj, max_num_iter=60)
    try:
        odl.solvers.steepest_descent(lj, x, line_search=line_search,
                                     maxiter=2000, tol=1e-12)
    except ValueError:
        pass
    pos = x[0].data
    sides = [np.linalg.norm(pos[i] - pos[j])
             for i, j in itertools.combinations(range(3), 2)]
    np.testing.assert_allclose(sides, 2.5, rtol=1e-4)
    np.testing.assert_array_equal(x[1].data, 1)  # weights untouched


# --- Caching


def test_cache_follows_in_place_changes():
    rng = np.random.default_rng(7)
    positions = jittered_grid((3, 3), 1.1, 0.1, rng)
    space = odl.rn(positions.shape)
    lj = LennardJones(space)
    x = space.element(positions)
    e1 = lj(x)
    x.data[0, 0] += 0.05
    e2 = lj(x)
    grad2 = lj.gradient(x).data
    assert e2 != e1
    assert e2 == pytest.approx(ase_reference(x.data)[0], rel=RTOL)
    np.testing.assert_allclose(grad2, -ase_reference(x.data)[1], rtol=RTOL,
                               atol=1e-12)


# --- Constructors, properties and printing


@pytest.mark.parametrize('symbol', ['Cu', 'Au', 'Fe', 'Si', 'Be', 'Zn', 'Po'])
def test_from_element_matches_ase_crystal(symbol):
    atoms = bulk(symbol)
    nn = neighbor_list('d', atoms, 2 * atoms.cell.lengths().max()).min()
    lj = LennardJones.from_element(odl.rn((4, 3)), symbol, epsilon=0.3)
    assert lj.r_min == pytest.approx(nn, rel=1e-12)
    assert lj.epsilon == 0.3
    _, slope = lj_pair(nn, 1.0, lj.sigma)
    assert slope == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize('symbol', ['H', 'He', 'Ga', 'Se', 'As', 'Xx', 'X'])
def test_from_element_without_crystal(symbol):
    with pytest.raises(ValueError, match='from_lattice|chemical symbol'):
        LennardJones.from_element(odl.rn((4, 3)), symbol)


def test_from_lattice_and_r_min():
    lj = LennardJones.from_lattice(odl.rn((4, 2)), 2.8, epsilon=0.2,
                                   smooth=True)
    assert lj.r_min == pytest.approx(2.8, rel=1e-15)
    assert lj.sigma == pytest.approx(2.8 / 2 ** (1 / 6), rel=1e-15)
    assert lj.cutoff == pytest.approx(3 * lj.sigma)
    assert lj.onset == pytest.approx(0.66 * lj.cutoff)
    assert lj.core_radius == pytest.approx(0.8 * lj.sigma)
    with pytest.raises(TypeError, match='sigma'):
        LennardJones.from_r_min(odl.rn((4, 2)), 2.8, sigma=1.0)


@pytest.mark.parametrize('kwargs', [
    {},
    dict(epsilon=0.5, sigma=2.0, cutoff=7.0),
    dict(sigma=1.0 / 3, smooth=True, onset=0.5, core_radius=0.3),
])
def test_repr_reproduces(kwargs):
    space = odl.ProductSpace(odl.rn((4, 3)), odl.rn(4))
    lj = LennardJones(space, **kwargs)
    namespace = {'LennardJones': LennardJones, 'rn': odl.rn,
                 'ProductSpace': odl.ProductSpace}
    again = eval(repr(lj), namespace)
    assert repr(again) == repr(lj)
    for name in ('epsilon', 'sigma', 'cutoff', 'smooth', 'onset',
                 'core_radius'):
        assert getattr(again, name) == getattr(lj, name)
    assert repr(lj.gradient) == repr(lj) + '.gradient'


# --- Bad input


@pytest.mark.parametrize('kwargs, match', [
    (dict(epsilon=-1.0), 'epsilon'),
    (dict(epsilon=0.0), 'epsilon'),
    (dict(sigma=-1.0), 'sigma'),
    (dict(sigma=np.nan), 'sigma'),
    (dict(cutoff=0.0), 'cutoff'),
    (dict(cutoff=-2.0), 'cutoff'),
    (dict(cutoff=0.5), 'cutoff'),
    (dict(core_radius=1.2), 'r_min'),
    (dict(core_radius=0.0), 'core_radius'),
    (dict(onset=1.0), 'smooth=True'),
    (dict(smooth=True, onset=3.0), 'onset'),
    (dict(smooth=True, onset=-1.0), 'onset'),
    (dict(smooth=True, onset=0.5, cutoff=1.1, core_radius=1.05), 'repulsive'),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LennardJones(odl.rn((3, 2)), **kwargs)


def test_bad_parameter_types():
    with pytest.raises(TypeError, match='smooth'):
        LennardJones(odl.rn((3, 2)), smooth='yes')
    with pytest.raises(TypeError, match='epsilon'):
        LennardJones(odl.rn((3, 2)), epsilon='big')


@pytest.mark.parametrize('space', [
    odl.rn(6),
    odl.rn((3, 4)),
    odl.rn((3, 1)),
    odl.cn((3, 2)),
    odl.ProductSpace(odl.rn((3, 2)), odl.rn(4)),
    odl.ProductSpace(odl.rn(3), odl.rn((3, 2))),
    odl.ProductSpace(odl.rn((3, 2)), odl.rn(3), odl.rn(3)),
    odl.RealNumbers(),
])
def test_wrong_domain(space):
    with pytest.raises(TypeError, match=r'rn\(\(n, d\)\)'):
        LennardJones(space)


def test_non_finite_positions():
    lj = LennardJones(odl.rn((3, 2)))
    x = np.zeros((3, 2))
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match='finite'):
        energy_of(lj, x)
    with pytest.raises(ValueError, match='finite'):
        gradient_of(lj, x)


def test_energy_of_arrays_of_any_size_matches_ase():
    """``lj.energy`` (solvers' fast path) works for any number of atoms."""
    rng = np.random.default_rng(5)
    lj = LennardJones(odl.rn((3, 2)), epsilon=0.7, sigma=1.0, cutoff=2.5)
    for n in (0, 1, 7, 30):
        positions = jittered_grid((6, 6), 1.1, 0.1, rng)[:n]
        energy, grad = lj.energy(positions, gradient=True)
        if n < 2:
            assert energy == 0 and grad.shape == (n, 2)
            continue
        ref_energy, ref_forces, _ = ase_reference(positions, **ase_params(lj))
        assert energy == pytest.approx(ref_energy, rel=1e-10)
        np.testing.assert_allclose(grad, -ref_forces, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match='shape'):
        lj.energy(np.zeros((4, 3)))


def test_removal_energies_match_ase_differences():
    """Energy change of removing each atom, against ASE on the smaller set."""
    rng = np.random.default_rng(8)
    positions = jittered_grid((4, 4), 1.1, 0.1, rng)
    lj = LennardJones(odl.rn((2, 2)), epsilon=0.8, sigma=1.0, cutoff=2.5,
                      smooth=True, onset=1.8)
    full, _, _ = ase_reference(positions, **ase_params(lj))
    removal = lj.removal_energies(positions)
    for i in (0, 5, 15):
        rest = np.delete(positions, i, axis=0)
        reduced, _, _ = ase_reference(rest, **ase_params(lj))
        assert removal[i] == pytest.approx(reduced - full, rel=1e-10)
