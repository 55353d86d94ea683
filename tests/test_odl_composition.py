"""The atom operator inside ODL: adjoints, norms, composed functionals, solvers.

Checked with ODL's own diagnostics (``OperatorTest``: Taylor remainder,
adjoint identity, power-method norm) and against independent computations:
inner products of forward projections in ODL's data space, finite
differences, the singular values of a Jacobian built by finite differences,
and SciPy's L-BFGS-B.
"""

import contextlib
import io

import numpy as np
import odl
import pytest
from odl.applications import tomo
from scipy.optimize import minimize

import odl_atoms as oa
from odl_atoms import (AtomObjective, GaussianBackProjection,
                       GaussianRayTransform, LennardJones, SparseMeasureSpace,
                       objective_functional)
from odl_atoms.descent import bfgs_descent


def run_quietly(func):
    """Run an ODL diagnostic, return what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        func()
    return buf.getvalue()


def geometry_2d():
    return tomo.Parallel2dGeometry(odl.nonuniform_partition([0.1, 0.9, 2.0]),
                                   odl.uniform_partition(-9, 9, 72))


def geometry_3d_axis():
    return tomo.Parallel3dAxisGeometry(
        odl.uniform_partition(-1.2, 1.2, 4),
        odl.uniform_partition([-7, -6], [7, 6], (24, 20)), axis=(0, 0, 1))


def geometry_3d_euler():
    return tomo.Parallel3dEulerGeometry(
        odl.uniform_partition([0, 0.2], [np.pi, 1.2], (3, 2)),
        odl.uniform_partition([-7, -6], [7, 6], (22, 18)))


GEOMETRIES = [geometry_2d, geometry_3d_axis, geometry_3d_euler]
IDS = ['2d', '3d-axis', '3d-euler']


def random_measure(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return space.element(rng.uniform(space.min_pt + 1.5, space.max_pt - 1.5,
                                     (n, space.ndim)),
                         weights=rng.uniform(0.5, 2.0, n))


def make_op(make_geometry, sigma=0.7, **kwargs):
    geometry = make_geometry()
    d = geometry.ndim
    space = SparseMeasureSpace([-5] * d, [5] * d)
    return GaussianRayTransform(space, geometry, sigma, **kwargs)


# --- ODL's OperatorTest on the parametrized operator and its Jacobian


@pytest.mark.parametrize('make_geometry', GEOMETRIES, ids=IDS)
def test_operator_test_parametrized_and_jacobian(make_geometry):
    op = make_op(make_geometry)
    atoms_op = op.parametrized(4)
    p = random_measure(op.domain, 4, seed=3).to_parameters()
    jac = atoms_op.derivative(p)
    norm = jac.norm(estimate=True)  # the local Lipschitz constant
    printed = run_quietly(lambda: odl.diagnostics.OperatorTest(
        atoms_op, operator_norm=norm, tol=1e-5).derivative())
    assert 'FAILED' not in printed and 'no derivative' not in printed, printed
    # All of ODL's tests on the Jacobian: norm, linearity, adjoint.
    printed = run_quietly(odl.diagnostics.OperatorTest(jac, tol=1e-8)
                          .run_tests)
    assert 'FAILED' not in printed and 'ERROR' not in printed, printed
    assert 'Operator has no adjoint' not in printed


def test_jacobian_norm_estimate_matches_singular_values():
    """Power method (through the adjoint) vs SVD of a finite-difference matrix."""
    op = make_op(geometry_2d)
    atoms_op = op.parametrized(3)
    p = random_measure(op.domain, 3, seed=4).to_parameters()
    pspace = atoms_op.domain
    flat = np.concatenate([p[0].data.ravel(), p[1].data])
    h = 1e-6
    columns = []
    for k in range(flat.size):
        step = np.zeros(flat.size)
        step[k] = h

        def at(x):
            return atoms_op(pspace.element([x[:6].reshape(3, 2), x[6:]])).data

        columns.append(((at(flat + step) - at(flat - step)) / (2 * h)).ravel())
    # The data space's inner product has a constant weight.
    matrix = np.sqrt(op.inner_weight) * np.stack(columns, axis=1)
    largest = np.linalg.svd(matrix, compute_uv=False)[0]
    jacobian = atoms_op.derivative(p)
    # A seeded start and a tight stopping rule: ODL's defaults (a random start,
    # rtol 1e-5 between iterations) stop early by up to 2 % on this Jacobian,
    # whose two largest singular values are close.
    rng = np.random.default_rng(0)
    start = jacobian.domain.element([rng.standard_normal(part.shape)
                                     for part in jacobian.domain])
    estimate = jacobian.norm(estimate=True, xstart=start, maxiter=1000,
                             rtol=1e-10)
    assert estimate == pytest.approx(largest, rel=1e-3)


# --- The adjoint on measures: the Gaussian back-projection


@pytest.mark.parametrize('make_geometry', GEOMETRIES, ids=IDS)
def test_backprojection_is_the_correlation_with_unit_atoms(make_geometry):
    """(A* r)(x) = <A delta_x, r>_Y, computed by projecting one atom."""
    op = make_op(make_geometry)
    backprojection = op.correlation_operator(spacing=1.0)
    assert isinstance(backprojection, GaussianBackProjection)
    assert backprojection.domain == op.range
    residual = op(random_measure(op.domain, 5)) - op(
        random_measure(op.domain, 2, seed=9))
    f = backprojection(residual)
    assert f in backprojection.range
    points = backprojection.range.points()
    rng = np.random.default_rng(0)
    for j in rng.choice(points.shape[0], 6, replace=False):
        direct = op.range.inner(op(op.domain.element([points[j]])), residual)
        assert f.data.ravel()[j] == pytest.approx(direct, rel=1e-10,
                                                  abs=1e-12)


@pytest.mark.parametrize('make_geometry', GEOMETRIES, ids=IDS)
def test_dual_pairing(make_geometry):
    """<A mu, r>_Y = sum_i w_i (A* r)(x_i) for atoms on the grid points."""
    op = make_op(make_geometry)
    f_op = op.correlation_operator(spacing=1.0)
    points = f_op.range.points()
    rng = np.random.default_rng(2)
    index = rng.choice(points.shape[0], 5, replace=False)
    weights = rng.normal(size=5)
    mu = op.domain.element(points[index], weights=weights)
    residual = op(random_measure(op.domain, 4, seed=5))
    lhs = op.range.inner(op(mu), residual)
    rhs = float(weights @ f_op(residual).data.ravel()[index])
    assert lhs == pytest.approx(rhs, rel=1e-10)


@pytest.mark.parametrize('make_geometry', GEOMETRIES, ids=IDS)
def test_operator_test_on_backprojection(make_geometry):
    """The back-projection and its L2 adjoint (grid atoms projected)."""
    op = make_op(make_geometry)
    spacing = 0.35 if op.domain.ndim == 2 else 1.25
    backprojection = op.correlation_operator(spacing=spacing)
    printed = run_quietly(odl.diagnostics.OperatorTest(
        backprojection, tol=1e-8).run_tests)
    assert 'FAILED' not in printed and 'ERROR' not in printed, printed
    assert 'Operator has no adjoint' not in printed


def test_default_adjoint_grid_and_what_it_is_not():
    op = make_op(geometry_2d, sigma=0.5)
    grid = op.adjoint.range
    assert grid.min_pt.tolist() == [-5, -5] and grid.max_pt.tolist() == [5, 5]
    assert np.allclose(grid.cell_sides, 0.25)  # sigma / 2
    assert op.adjoint is op.adjoint  # built once
    # ODL's adjoint test cannot apply: the range is not the domain.
    printed = run_quietly(odl.diagnostics.OperatorTest(
        op, operator_norm=10.0).adjoint)
    assert 'A.domain != A.adjoint.range' in printed
    # What needs the adjoint to land back in the domain says where to go.
    with pytest.raises(NotImplementedError, match=r'parametrized\(n\)'):
        op.norm(estimate=True)
    y = op(random_measure(op.domain, 2))
    misfit = odl.functionals.L2NormSquared(op.range).translated(y) @ op
    with pytest.raises(odl.OpRangeError) as info:
        misfit.gradient(random_measure(op.domain, 2, seed=1))
    assert 'parametrized' in str(info.value.__cause__)
    # Scaled operators keep their adjoint.
    np.testing.assert_allclose((2 * op).adjoint(y).data,
                               2 * op.adjoint(y).data, rtol=1e-14)


def test_correlation_map_and_correlation_agree_with_adjoint():
    op = make_op(geometry_3d_axis)
    residual = op(random_measure(op.domain, 3))
    grid = odl.uniform_discr([-4] * 3, [4] * 3, [6, 5, 4])
    image = op.correlation_map(residual, grid)
    np.testing.assert_allclose(image.data,
                               op.correlation_operator(grid)(residual).data)
    np.testing.assert_allclose(image.data.ravel(),
                               op.correlation(residual, grid.points()),
                               rtol=1e-10, atol=1e-14)
    with pytest.raises(TypeError, match='uniform_discr'):
        op.correlation_operator(odl.uniform_discr([-4] * 2, [4] * 2, [3, 3]))
    with pytest.raises(ValueError, match='spacing'):
        op.correlation_operator(spacing=-1.0)


# --- Gradients of composed functionals on positions and weights


def test_composed_gradient_matches_finite_differences():
    op = make_op(geometry_2d)
    atoms_op = op.parametrized(3)
    y = op(random_measure(op.domain, 3, seed=6))
    misfit = 0.5 * odl.functionals.L2NormSquared(op.range).translated(y) \
        @ atoms_op
    p = random_measure(op.domain, 3, seed=7).to_parameters()
    grad = misfit.gradient(p)
    assert grad in atoms_op.domain
    rng = np.random.default_rng(1)
    direction = atoms_op.domain.element([rng.normal(size=(3, 2)),
                                         rng.normal(size=3)])
    h = 1e-6
    fd = (misfit(p + h * direction) - misfit(p - h * direction)) / (2 * h)
    assert grad.inner(direction) == pytest.approx(fd, rel=1e-6)


# --- The README's composition: objective_functional + ODL's BFGS


def vacancy_problem(alpha):
    """Eight atoms of a 3 x 3 lattice (one missing), three angles, no noise."""
    spacing = 2.9
    grid = spacing * (np.stack(np.meshgrid(np.arange(3), np.arange(3),
                                           indexing='ij'), -1).reshape(-1, 2)
                      - 1.0)
    truth = np.delete(grid, 4, axis=0) + 0.1
    space = SparseMeasureSpace([-6, -6], [6, 6])
    geometry = tomo.Parallel2dGeometry(
        odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-9, 9, 72))
    op = GaussianRayTransform(space, geometry, 0.43)
    data = op(space.element(truth))
    potential = LennardJones.from_r_min(odl.rn((2, 2)), spacing, smooth=True)
    func = objective_functional(op, data, len(truth), alpha, potential)
    return op, data, potential, truth, func


def test_objective_functional_bfgs_finds_the_truth():
    """The gallery example's vacancy, noise-free, alpha = 0: F(truth) = 0.

    ODL's BFGS with a backtracking line search finds the truth from a
    perturbed start; with bfgs_method's default (a constant step of 1) it
    diverges on the same problem.
    """
    phantom = oa.defect_phantom('vacancy', shape=(4, 4))
    n = phantom.n_atoms
    measured = oa.simulate(phantom.measure, np.radians([0, 60, 120]),
                           sigma=0.43, n_detector=64, noise=0.0, seed=1)
    op = measured.operator()
    func = objective_functional(op, measured.element(), n)
    truth = phantom.measure.to_parameters()
    rng = np.random.default_rng(0)
    start = func.domain.element([
        truth[0].data + rng.normal(scale=0.2, size=(n, 2)),
        truth[1].data + rng.normal(scale=0.1, size=n)])
    x = start.copy()
    assert bfgs_descent(func, x, maxiter=300) == 'gradient'
    np.testing.assert_allclose(x[0].data, truth[0].data, atol=1e-6)
    np.testing.assert_allclose(x[1].data, truth[1].data, atol=1e-6)
    y = start.copy()
    odl.solvers.bfgs_method(func, y, maxiter=50)
    assert func(y) > 10 * func(start)


def test_objective_functional_with_energy_same_minimum_as_scipy():
    """alpha > 0: ODL's BFGS on the ODL functional vs L-BFGS-B on AtomObjective."""
    op, data, potential, truth, func = vacancy_problem(0.01)
    fast = AtomObjective(op, data, 0.01, potential)
    n = len(truth)
    rng = np.random.default_rng(1)
    start = truth + rng.normal(scale=0.15, size=truth.shape)

    def fun(flat):
        value, grad_x, grad_w = fast.value_and_gradient(
            flat[:2 * n].reshape(n, 2), flat[2 * n:])
        return value, np.concatenate([grad_x.ravel(), grad_w])

    reference = minimize(fun, np.concatenate([start.ravel(), np.ones(n)]),
                         jac=True, method='L-BFGS-B',
                         options={'maxiter': 2000, 'ftol': 1e-15,
                                  'gtol': 1e-12})
    x = func.domain.element([start, np.ones(n)])
    bfgs_descent(func, x, maxiter=500, tol=1e-10)
    np.testing.assert_allclose(x[0].data.ravel(), reference.x[:2 * n],
                               atol=1e-5)
    np.testing.assert_allclose(x[1].data, reference.x[2 * n:], atol=1e-5)
    assert func(x) == pytest.approx(reference.fun, abs=1e-10)


def test_objective_functional_bad_input():
    op, data, potential, truth, _ = vacancy_problem(0.0)
    with pytest.raises(ValueError, match='alpha'):
        objective_functional(op, data, 2, alpha=-1.0, potential=potential)
    with pytest.raises(ValueError, match='potential'):
        objective_functional(op, data, 2, alpha=0.1)
    with pytest.raises(TypeError, match='GaussianRayTransform'):
        objective_functional(op.parametrized(2), data, 2)


# --- The torch backend (CPU)


def test_torch_backend_adjoint_matches_numpy():
    pytest.importorskip('torch')
    geometry = geometry_2d()
    space = SparseMeasureSpace([-5, -5], [5, 5])
    op_np = GaussianRayTransform(space, geometry, 0.7)
    op_pt = GaussianRayTransform(space, geometry, 0.7, impl='pytorch',
                                 device='cpu')
    mu = random_measure(space, 4)
    data_pt = op_pt(mu)
    f_pt = op_pt.adjoint(data_pt)
    assert f_pt.space.impl == 'pytorch'
    f_np = op_np.adjoint(op_np(mu))
    np.testing.assert_allclose(f_pt.data.cpu().numpy(), f_np.data,
                               rtol=1e-10, atol=1e-13)
    back = op_pt.adjoint.adjoint(f_pt)
    np.testing.assert_allclose(back.data.cpu().numpy(),
                               op_np.adjoint.adjoint(f_np).data, rtol=1e-9,
                               atol=1e-12)
    # The pairing <A mu, r>_Y = sum_i w_i (A* r)(x_i) on the device.
    points = f_pt.space.points()[[40, 300]]
    nu = space.element(points, weights=[1.5, -0.5])
    lhs = op_pt.range.inner(op_pt(nu), data_pt)
    values = f_pt.data.cpu().numpy().ravel()
    assert lhs == pytest.approx(1.5 * values[40] - 0.5 * values[300],
                                rel=1e-10)
