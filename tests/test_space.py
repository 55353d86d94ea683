"""The sparse-measure space: ODL's own space diagnostics, arithmetic, ASE."""

import contextlib
import io

import numpy as np
import odl
import pytest
from ase.cluster import Icosahedron

from odl_atoms import SparseMeasure, SparseMeasureSpace, from_ase, to_ase


def run_quietly(func):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        func()
    return buf.getvalue()


@pytest.mark.parametrize('ndim', [2, 3])
def test_odl_space_diagnostics(ndim):
    """ODL's SpaceTest: vector-space axioms, inner product, norm, distance."""
    space = SparseMeasureSpace([-5] * ndim, [5] * ndim, kernel_width=0.7)
    tester = odl.diagnostics.SpaceTest(space, verbose=False, tol=1e-8)
    for check in ('element_method', 'field', 'linearity', 'inner', 'norm',
                  'dist', 'equals', 'contains'):
        printed = run_quietly(getattr(tester, check))
        assert 'FAILED' not in printed, (check, printed)


def test_inner_product_is_that_of_blurred_densities():
    """<mu, nu> equals the L2 product of the blurred densities (quadrature)."""
    width = 0.6
    space = SparseMeasureSpace([-4, -4], [4, 4], kernel_width=width)
    mu = space.element([[0.3, -0.2], [1.5, 1.0]], weights=[1.0, 2.0])
    nu = space.element([[0.0, 0.5]], weights=[1.5])
    grid = np.linspace(-8, 8, 801)
    x, y = np.meshgrid(grid, grid, indexing='ij')

    def density(m):
        out = np.zeros_like(x)
        for p, w in zip(m.positions, m.weights):
            out += w * np.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2)
                              / (2 * width ** 2)) / (2 * np.pi * width ** 2)
        return out

    h = grid[1] - grid[0]
    reference = np.sum(density(mu) * density(nu)) * h * h
    assert mu.inner(nu) == pytest.approx(reference, rel=1e-6)


def test_arithmetic_as_measures():
    space = SparseMeasureSpace([0, 0], [10, 10])
    mu = space.element([[1, 1], [2, 2]], weights=[1.0, 2.0], species=['Au', 'Pt'])
    nu = space.element([[2, 2], [5, 5]], weights=[3.0, 1.0], species=['Pt', 'Au'])
    total = mu + nu
    # Atoms at the same point with the same label merge; others concatenate.
    assert total.n_atoms == 3
    np.testing.assert_allclose(sorted(total.weights), [1.0, 1.0, 5.0])
    assert mu - mu == space.zero()
    assert (mu - mu).n_atoms == 0
    assert 2 * mu == mu + mu
    assert (mu / 2.0).weights.tolist() == [0.5, 1.0]
    assert -mu == (-1.0) * mu
    # Order of atoms does not matter for equality.
    assert space.element([[2, 2], [1, 1]], weights=[2.0, 1.0],
                         species=['Pt', 'Au']) == mu
    assert mu != nu
    with pytest.raises(TypeError, match='measures support'):
        mu * nu


def test_parameter_space_round_trip():
    space = SparseMeasureSpace([-3, -3, -3], [3, 3, 3])
    mu = space.element(np.random.default_rng(0).uniform(-2, 2, (5, 3)),
                       weights=np.arange(1.0, 6.0))
    params = mu.to_parameters()
    assert params.space == odl.ProductSpace(odl.rn((5, 3)), odl.rn(5))
    assert space.from_parameters(params) == mu
    assert space.element((params[0].data, params[1].data)) == mu


def test_elements_are_read_only_and_copies_independent():
    space = SparseMeasureSpace([0, 0], [4, 4])
    mu = space.element([[1, 1]])
    with pytest.raises(ValueError):
        mu.positions[0, 0] = 2.0
    nu = mu.copy()
    assert nu == mu and nu is not mu
    assert mu[0] == mu and mu[mu.weights > 5].n_atoms == 0


def test_repr_reproduces():
    space = SparseMeasureSpace([0, 0], [4, 4], kernel_width=0.5)
    mu = space.element([[1, 2], [3, 1.5]], weights=[1.0, 2.0],
                       species=['Au', 'Pt'])
    namespace = {'SparseMeasureSpace': SparseMeasureSpace, 'np': np}
    assert eval(repr(space), namespace) == space
    assert eval(repr(mu), namespace) == mu
    assert eval(repr(space.zero()), namespace) == space.zero()


def test_bad_input():
    with pytest.raises(ValueError, match='2D or 3D'):
        SparseMeasureSpace([0], [1])
    with pytest.raises(ValueError, match='larger'):
        SparseMeasureSpace([0, 0], [1, 0])
    with pytest.raises(ValueError, match='kernel_width'):
        SparseMeasureSpace([0, 0], [1, 1], kernel_width=-1)
    space = SparseMeasureSpace([0, 0], [4, 4])
    with pytest.raises(ValueError, match=r'shape \(n, 2\)'):
        space.element([[1, 1, 1]])
    with pytest.raises(ValueError, match='finite'):
        space.element([[1, np.inf]])
    with pytest.raises(ValueError, match='outside the box'):
        space.element([[1, 5]])
    with pytest.raises(ValueError, match='weights must have shape'):
        space.element([[1, 1]], weights=[1, 2])
    with pytest.raises(ValueError, match='weights must be finite'):
        space.element([[1, 1]], weights=[np.nan])
    with pytest.raises(ValueError, match='species'):
        space.element([[1, 1]], species=['Au', 'Pt'])
    with pytest.raises(LinearSpaceNotImplemented):
        space.element([[1, 1]]).norm()


LinearSpaceNotImplemented = odl.core.set.space.LinearSpaceNotImplementedError


# --- ASE


def test_ase_round_trip_3d_cluster():
    atoms = Icosahedron('Au', 3)
    mu = from_ase(atoms, weights={'Au': 1.0})
    assert isinstance(mu, SparseMeasure) and mu.n_atoms == len(atoms) == 55
    np.testing.assert_array_equal(mu.positions, atoms.positions)
    back = to_ase(mu)
    np.testing.assert_array_equal(back.positions, atoms.positions)
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    # The box travels with the atoms.
    assert from_ase(back) == mu


def test_ase_round_trip_2d_with_species():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    mu = space.element([[0, 0], [1.5, -2]], weights=[1.0, 1.6],
                       species=['Au', 'Pt'])
    atoms = to_ase(mu)
    assert np.all(atoms.positions[:, 2] == 0)
    assert from_ase(atoms) == mu
    # Weights from a species map replace stored ones.
    remapped = from_ase(atoms, weights={'Au': 2.0, 'Pt': 3.0})
    assert remapped.weights.tolist() == [2.0, 3.0]


def test_ase_errors():
    atoms = Icosahedron('Au', 2)
    with pytest.raises(ValueError, match='one plane'):
        from_ase(atoms, ndim=2)
    with pytest.raises(ValueError, match="species \\['Au'\\]"):
        from_ase(atoms, weights={'Pt': 1.0})
    space = SparseMeasureSpace([-1, -1, -1], [1, 1, 1])
    with pytest.raises(ValueError, match='outside the box'):
        from_ase(atoms, space=space)


# --- ODL's SpaceTest in full, and what the space does not claim


def test_odl_space_test_run_tests_passes_with_kernel():
    """Every check of SpaceTest.run_tests() with the kernel inner product.

    Pointwise multiplication is not claimed: SpaceTest must find none.
    """
    space = SparseMeasureSpace([-5, -5], [5, 5], kernel_width=0.7)
    printed = run_quietly(odl.diagnostics.SpaceTest(
        space, verbose=True, tol=1e-8).run_tests)
    assert 'FAILED' not in printed, printed
    assert 'Space has no vector multiplication' in printed
    assert 'Verifying positive definiteness of the inner product' in printed
    with pytest.raises(NotImplementedError, match='product of two measures'):
        space.multiply(space.zero(), space.zero())


def test_space_test_without_kernel_fails_only_at_rounding():
    """Without a distance, SpaceTest compares with exact ``==``.

    Exactly the two checks that compare two float computations of the same
    weights fail (as the space's docstring says), and the elements they
    compare agree in positions and labels and to rounding in the weights.
    """
    space = SparseMeasureSpace([-5, -5], [5, 5])
    printed = run_quietly(odl.diagnostics.SpaceTest(
        space, verbose=True, tol=1e-8).run_tests)
    failed = [block.splitlines()[0] for block in printed.split('Verifying ')
              if 'FAILED' in block]
    assert failed == [
        'commutativity of scalar multiplication',
        'distributivity of scalar multiplication under scalar addition'], \
        printed
    scalars = (-1.0, 0.5, 0.01, 1.0)
    for _, x in space.examples:
        for a in scalars:
            for b in scalars:
                for u, v in ((a * (b * x), (a * b) * x),
                             ((a + b) * x, a * x + b * x)):
                    assert u.n_atoms == v.n_atoms
                    order_u = np.lexsort(u.positions.T)
                    order_v = np.lexsort(v.positions.T)
                    np.testing.assert_array_equal(u.positions[order_u],
                                                  v.positions[order_v])
                    np.testing.assert_allclose(u.weights[order_u],
                                               v.weights[order_v],
                                               rtol=1e-15, atol=1e-17)


def test_grid_function_is_not_a_measure():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    grid = odl.uniform_discr([-5, -5], [5, 5], (2, 2))
    with pytest.raises(TypeError, match='parametrized'):
        space.element(grid.one())
