"""ODL's BFGS as a local descent: the same minima as SciPy's L-BFGS-B.

The reference is SciPy's bound-constrained L-BFGS-B run to tight
tolerances (an independent implementation); the problems are the
reconstruction objective on a few atoms (`AtomObjective`, the fast path the
solvers use), a quadratic with a known constrained minimum and ODL's own
Rosenbrock functional.
"""

import numpy as np
import odl
import pytest
from odl.applications import tomo
from scipy.optimize import minimize

from odl_atoms import (AtomObjective, GaussianRayTransform, LennardJones,
                       SparseMeasureSpace)
from odl_atoms.descent import bfgs_descent, odl_local_descent

TRUTH = np.array([[0.0, 0.0], [2.5, 0.3], [-1.2, 2.4], [1.0, -2.6],
                  [-3.0, -1.5], [3.2, 3.1]])


def atom_problem(alpha):
    """Six atoms, three angles, noise-free data: F over flat positions."""
    space = SparseMeasureSpace([-5, -5], [5, 5])
    geometry = tomo.Parallel2dGeometry(odl.uniform_partition(0, np.pi, 3),
                                       odl.uniform_partition(-8, 8, 64))
    op = GaussianRayTransform(space, geometry, sigma=0.45)
    data = op(space.element(TRUTH))
    potential = LennardJones.from_r_min(odl.rn((2, 2)), 2.5, smooth=True)
    objective = AtomObjective(op, data, alpha, potential)
    weights = np.ones(len(TRUTH))

    def fun(flat):
        value, grad_x, _ = objective.value_and_gradient(
            flat.reshape(-1, 2), weights)
        return value, grad_x.ravel()

    return objective, fun


def scipy_reference(fun, x0, lower, upper):
    bounds = list(zip(np.broadcast_to(lower, x0.shape),
                      np.broadcast_to(upper, x0.shape)))
    return minimize(fun, x0, jac=True, method='L-BFGS-B', bounds=bounds,
                    options={'maxiter': 2000, 'ftol': 1e-15, 'gtol': 1e-12})


@pytest.mark.parametrize('alpha', [0.0, 1e-2])
@pytest.mark.parametrize('seed', [0, 1])
def test_same_minimum_as_scipy_lbfgsb_on_atom_objective(alpha, seed):
    objective, fun = atom_problem(alpha)
    rng = np.random.default_rng(seed)
    x0 = (TRUTH + rng.normal(scale=0.3, size=TRUTH.shape)).ravel()
    reference = scipy_reference(fun, x0, -5.0, 5.0)
    assert reference.success
    result = odl_local_descent(fun, x0, -5.0, 5.0)
    assert result.success, result.message
    # tol=1e-5 on the gradient (L-BFGS-B's default gtol): positions to 1e-5.
    np.testing.assert_allclose(result.x, reference.x, atol=3e-5)
    assert result.fun == pytest.approx(reference.fun,
                                       abs=1e-9 * objective.atom_energy)
    value, grad = fun(result.x)
    assert result.fun == value
    np.testing.assert_array_equal(result.jac, grad)
    assert np.abs(grad).max() <= 1e-5
    if alpha == 0:  # noise-free data, no energy: the truth is the minimum
        np.testing.assert_allclose(result.x, TRUTH.ravel(), atol=3e-5)


def test_active_bound_same_as_scipy():
    """A bound cuts off the true position of one atom: it ends on the bound."""
    _, fun = atom_problem(0.0)
    lower = np.full(TRUTH.size, -5.0)
    upper = np.full(TRUTH.size, 5.0)
    upper[2] = 2.2  # atom 1 sits at x = 2.5
    x0 = (TRUTH + 0.1).ravel()
    x0[2] = 2.0
    reference = scipy_reference(fun, x0, lower, upper)
    result = odl_local_descent(fun, x0, lower, upper)
    assert result.success, result.message
    assert result.x[2] == 2.2
    assert np.all(result.x <= upper) and np.all(result.x >= lower)
    np.testing.assert_allclose(result.x, reference.x, atol=1e-5)
    assert result.fun == pytest.approx(reference.fun, rel=1e-8)


def test_quadratic_with_known_constrained_minimum():
    """min |x - c|^2 over a box is the box point nearest to c."""
    centre = np.array([2.0, -3.0, 0.25, 0.5])
    lower, upper = np.array([-1.0, -1.0, -1.0, 0.5]), np.array([1.0, 1.0, 1.0, 2])

    def fun(x):
        d = x - centre
        return float(d @ d), 2 * d

    x0 = np.array([0.3, 0.9, -0.8, 1.7])
    before = x0.copy()
    result = odl_local_descent(fun, x0, lower, upper, tol=1e-10)
    np.testing.assert_array_equal(x0, before)  # the start is not modified
    np.testing.assert_allclose(result.x, np.clip(centre, lower, upper),
                               atol=1e-10)
    # A start outside the box is moved into it first (as L-BFGS-B does).
    outside = odl_local_descent(fun, [5.0, 5.0, 5.0, 5.0], lower, upper,
                                tol=1e-10)
    np.testing.assert_allclose(outside.x, np.clip(centre, lower, upper),
                               atol=1e-10)


def test_rosenbrock_in_a_box_same_as_scipy():
    func = odl.functionals.RosenbrockFunctional(odl.rn(2))

    def fun(x):
        p = func.domain.element(x)
        return func(p), func.gradient(p).data.copy()

    for upper in ([2.0, 2.0], [0.5, 2.0]):  # minimum (1, 1) inside, cut off
        reference = scipy_reference(fun, np.array([-1.2, 1.0]), -2.0,
                                    np.array(upper))
        result = odl_local_descent(fun, [-1.2, 1.0], -2.0, upper,
                                   maxiter=1000, tol=1e-9)
        assert result.success, result.message
        np.testing.assert_allclose(result.x, reference.x, atol=1e-6)
    np.testing.assert_allclose(reference.x, [0.5, 0.25], atol=1e-6)


def test_start_at_the_minimum_and_maxiter():
    def fun(x):
        return float(x @ x), 2 * x

    result = odl_local_descent(fun, [0.0, 0.0], -1, 1)
    assert result.success and result.nfev == 1 and result.nit == 0
    np.testing.assert_array_equal(result.x, [0.0, 0.0])

    func = odl.functionals.RosenbrockFunctional(odl.rn(2))

    def rosenbrock(x):
        p = func.domain.element(x)
        return func(p), func.gradient(p).data.copy()

    stopped = odl_local_descent(rosenbrock, [-1.2, 1.0], -2, 2, maxiter=3)
    assert not stopped.success and 'maxiter' in stopped.message
    assert stopped.fun < rosenbrock(np.array([-1.2, 1.0]))[0]


def test_bfgs_descent_catches_the_line_search_giving_up():
    """At the exact minimum the line search has no decrease to find."""
    func = odl.functionals.L2NormSquared(odl.rn(3))
    x = func.domain.element([1.0, -2.0, 0.5])
    reason = bfgs_descent(func, x, tol=0.0)
    assert reason in ('no decrease', 'gradient')
    np.testing.assert_allclose(x.data, 0.0, atol=1e-12)


def test_bad_input():
    def fun(x):
        return float(x @ x), 2 * x

    with pytest.raises(ValueError, match='lower'):
        odl_local_descent(fun, [0.5, 0.5], [1, 1], [0, 0])
    with pytest.raises(ValueError, match='one per entry'):
        odl_local_descent(fun, [0.5, 0.5], [0, 0, 0], 1)
    with pytest.raises(ValueError, match='finite'):
        odl_local_descent(fun, [np.nan, 0.5], 0, 1)
    with pytest.raises(ValueError, match='maxiter'):
        odl_local_descent(fun, [0.5, 0.5], 0, 1, maxiter='x')
    with pytest.raises(ValueError, match='tol'):
        odl_local_descent(fun, [0.5, 0.5], 0, 1, tol=-1)
    with pytest.raises(ValueError, match='gradient of shape'):
        odl_local_descent(lambda x: (0.0, np.zeros(3)), [0.5, 0.5], 0, 1)
    with pytest.raises(ValueError, match='not finite at the start'):
        odl_local_descent(lambda x: (np.inf, x), [0.5, 0.5], 0, 1)
    with pytest.raises(TypeError, match='Functional'):
        bfgs_descent(fun, odl.rn(2).zero())
    with pytest.raises(TypeError, match='domain'):
        bfgs_descent(odl.functionals.L2NormSquared(odl.rn(2)),
                     odl.rn(3).zero())


def lbfgsb_cases():
    """(fun, x0, lower, upper, maxiter): atoms with and without energy,
    bounds that become active, an iteration limit that stops the run,
    infinite and one-sided bounds, a fixed coordinate."""
    rng = np.random.default_rng(3)
    cases = []
    for alpha in (0.0, 1e-2):
        _, fun = atom_problem(alpha)
        x0 = (TRUTH + rng.normal(scale=0.4, size=TRUTH.shape)).ravel()
        n = x0.size
        cases.append((fun, x0, np.full(n, -5.0), np.full(n, 5.0), 100))
        # A tight box: many bounds active at the answer.
        cases.append((fun, x0, x0 - 0.1, x0 + 0.1, 100))
        cases.append((fun, x0, np.full(n, -5.0), np.full(n, 5.0), 3))
    rosen = odl.functionals.RosenbrockFunctional(odl.rn(4))

    def rosenbrock(x):
        x = rosen.domain.element(x)
        return rosen(x), rosen.gradient(x).data

    x0 = np.array([-1.2, 1.0, -0.5, 2.0])
    cases.append((rosenbrock, x0, np.full(4, -np.inf), np.full(4, np.inf),
                  15000))
    cases.append((rosenbrock, x0, np.array([-2, -np.inf, 0.5, -1.0]),
                  np.array([np.inf, 0.8, 0.5, 1.5]), 15000))
    return cases


@pytest.mark.parametrize('case', range(8))
def test_lbfgsb_is_scipy_minimize_bit_for_bit(case):
    """`lbfgsb` drives SciPy's own routine: the same evaluation points,
    answer, value and counts as ``minimize(method='L-BFGS-B')``."""
    from odl_atoms.descent import lbfgsb

    fun, x0, lower, upper, maxiter = lbfgsb_cases()[case]
    points = {'minimize': [], 'lbfgsb': []}

    def recorded(name):
        def wrapped(x):
            points[name].append(x.copy())
            return fun(x)
        return wrapped

    reference = minimize(recorded('minimize'), x0, jac=True,
                         method='L-BFGS-B', bounds=list(zip(lower, upper)),
                         options={'maxiter': maxiter})
    result = lbfgsb(recorded('lbfgsb'), x0, lower, upper, maxiter=maxiter)
    assert len(points['lbfgsb']) == len(points['minimize']) > 1
    for mine, theirs in zip(points['lbfgsb'], points['minimize']):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(result.x, reference.x)
    assert result.fun == reference.fun
    assert (result.nfev, result.nit, result.status, result.success) == (
        reference.nfev, reference.nit, reference.status, reference.success)


def test_lbfgsb_fixed_variables_and_bad_bounds():
    from odl_atoms.descent import lbfgsb

    def fun(x):
        d = x - [2.0, -3.0]
        return float(d @ d), 2 * d

    # Every variable fixed: minimize's answer (the bounds, no iteration).
    res = lbfgsb(fun, [0.0, 0.0], [0.5, 0.5], [0.5, 0.5])
    np.testing.assert_array_equal(res.x, [0.5, 0.5])
    # One fixed: the other still minimised.
    res = lbfgsb(fun, [0.0, 0.0], [0.5, -1.0], [0.5, 1.0])
    np.testing.assert_allclose(res.x, [0.5, -1.0])
    with pytest.raises(ValueError, match='lower'):
        lbfgsb(fun, [0.0, 0.0], 1.0, -1.0)
    with pytest.raises(ValueError, match='maxiter'):
        lbfgsb(fun, [0.0, 0.0], -1.0, 1.0, maxiter=0)


def test_lbfgsb_falls_back_to_minimize_on_another_signature(monkeypatch):
    """A SciPy whose private routine takes other arguments: `lbfgsb` gives
    ``minimize``'s answer instead of failing; an error of the objective
    itself still propagates."""
    import odl_atoms.descent as descent

    fun, x0, lower, upper, maxiter = lbfgsb_cases()[1]
    reference = minimize(fun, x0, jac=True, method='L-BFGS-B',
                         bounds=list(zip(lower, upper)),
                         options={'maxiter': maxiter})

    def other_signature(m, x, low, up, nbd, f, g, factr, pgtol, wa, iwa,
                        task, lsave, isave, dsave, maxls):
        raise AssertionError('not reached: one argument short')

    monkeypatch.setattr(descent, '_setulb', other_signature)
    result = descent.lbfgsb(fun, x0, lower, upper, maxiter=maxiter)
    np.testing.assert_array_equal(result.x, reference.x)
    assert result.nfev == reference.nfev

    monkeypatch.undo()

    def broken(x):
        raise TypeError('the objective is broken')

    with pytest.raises(TypeError, match='objective is broken'):
        descent.lbfgsb(broken, x0, lower, upper)
