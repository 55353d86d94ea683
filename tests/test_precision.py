"""Tests of the Cramér-Rao bound on atom positions (`odl_atoms.precision`).

Every check compares with a computation that does not use the bound's code:
finite differences of the forward operator, the hand-derived Fisher
information of one Gaussian, and Monte Carlo least-squares fits.
"""

import numpy as np
import odl
import pytest
import scipy.optimize
from odl.applications import tomo

import odl_atoms as oa

SIGMA = 0.4


def _op2d(angles_deg, n_det=64, half=8.0, box=5.0, sigma=SIGMA):
    space = oa.SparseMeasureSpace([-box, -box], [box, box])
    geometry = tomo.Parallel2dGeometry(
        odl.nonuniform_partition(np.radians(angles_deg)),
        odl.uniform_partition(-half, half, n_det))
    return oa.GaussianRayTransform(space, geometry, sigma)


def _op3d(angles_deg, n_det=(48, 40), half=(8.0, 6.0), sigma=SIGMA):
    space = oa.SparseMeasureSpace([-4, -4, -3], [4, 4, 3])
    geometry = tomo.Parallel3dAxisGeometry(
        odl.nonuniform_partition(np.radians(angles_deg)),
        odl.uniform_partition([-half[0], -half[1]], list(half), n_det),
        axis=(0, 0, 1))
    return oa.GaussianRayTransform(space, geometry, sigma)


def _fd_fisher(op, measure, noise_std, step=1e-5):
    """F from central differences of ``op(measure)`` (no Jacobian code)."""
    pos, w = measure.positions, measure.weights
    n, d = pos.shape
    cols = []
    for k in range(n * d):
        delta = np.zeros(n * d)
        delta[k] = step
        delta = delta.reshape(n, d)
        plus = op(op.domain.element(pos + delta, w)).data
        minus = op(op.domain.element(pos - delta, w)).data
        cols.append(((plus - minus) / (2 * step) / noise_std).ravel())
    jac = np.stack(cols, axis=1)
    return jac.T @ jac


# --- (a) against finite differences of the forward operator


@pytest.mark.parametrize('dim', [2, 3])
def test_fisher_matches_finite_differences(dim):
    rng = np.random.default_rng(1)
    if dim == 2:
        op = _op2d([0, 50, 110])
        pos = rng.uniform(-3, 3, (5, 2))
    else:
        op = _op3d([-60, 0, 45])
        pos = rng.uniform(-2.5, 2.5, (4, 3))
    weights = rng.uniform(0.7, 1.5, pos.shape[0])
    measure = op.domain.element(pos, weights)
    bound = oa.position_crb(op, measure, noise_std=0.03)
    expected = _fd_fisher(op, measure, 0.03)
    scale = np.abs(expected).max()
    assert np.allclose(bound.fisher, expected, rtol=0, atol=1e-6 * scale)
    # Nonsingular here, so the covariance bound is the plain inverse.
    assert bound.null_dim == 0 and bound.undetermined.size == 0
    assert np.allclose(bound.covariance @ expected, np.eye(expected.shape[0]),
                       atol=1e-5)


def test_fisher_matches_jacobian_operator_and_noise_array():
    """The same F from the public Jacobian on unit vectors; per-cell stds."""
    rng = np.random.default_rng(2)
    op = _op2d([0, 60, 120], n_det=48)
    pos = rng.uniform(-3, 3, (4, 2))
    measure = op.domain.element(pos, [1, 2, 1, 1.5])
    std = rng.uniform(0.01, 0.05, op.range.shape)
    jac_op = op.jacobian(measure)
    cols = []
    for k in range(8):
        dx = np.zeros(8)
        dx[k] = 1
        dparams = jac_op.domain.element([dx.reshape(4, 2), np.zeros(4)])
        cols.append((jac_op(dparams).data / std).ravel())
    jac = np.stack(cols, axis=1)
    bound = oa.position_crb(op, measure, noise_std=std)
    assert np.allclose(bound.fisher, jac.T @ jac, rtol=1e-10,
                       atol=1e-12 * np.abs(bound.fisher).max())
    # A ProjectionSpace element works as noise_std too.
    bound2 = oa.position_crb(op, measure, op.range.element(std))
    assert np.allclose(bound2.fisher, bound.fisher)


# --- (b) one isolated atom: the bound derived by hand


def test_single_atom_2d_analytic():
    """One Gaussian on a fine detector.

    d y_j / d c ~ w g'(u_j - c) (cell averages of a smooth profile), so one
    projection carries the information sum_j (w g'_j / s)^2
    ~ (w / s)^2 / h * int g'(u)^2 du = w^2 / (4 sqrt(pi) sigma^3 h s^2) about
    the projected centre c = <x, e_u>; the angles add up as
    F = I * sum_m e_u(m) e_u(m)^T.
    """
    angles = np.array([0.0, 35.0, 100.0])
    op = _op2d(angles, n_det=640, half=8.0)  # h = 0.025 = sigma / 16
    h, w, s = 16 / 640, 1.3, 0.02
    measure = op.domain.element([[0.7, -1.1]], [w])
    bound = oa.position_crb(op, measure, noise_std=s)
    per_angle = w ** 2 / (4 * np.sqrt(np.pi) * SIGMA ** 3 * h * s ** 2)
    axes = op.geometry.det_axis(np.radians(angles))  # (m, 2)
    fisher = per_angle * axes.T @ axes
    assert np.allclose(bound.fisher, fisher, rtol=2e-3)
    cov = np.linalg.inv(fisher)
    assert np.allclose(bound.atom_covariance(0), cov, rtol=2e-3)
    assert bound.rmsd == pytest.approx(np.sqrt(np.trace(cov)), rel=2e-3)
    assert bound.atom_rms[0] == bound.rmsd
    assert bound.rmsd_cells == pytest.approx(bound.rmsd / h)


def test_single_atom_3d_analytic():
    """In 3D the profile is g(u) g(v): per projection and detector axis,
    I = (w / s)^2 / h^2 * int g'^2 * int g^2 = w^2 / (8 pi sigma^4 h^2 s^2).
    """
    angles = np.array([-50.0, 10.0, 70.0])
    op = _op3d(angles, n_det=(256, 192), half=(6.4, 4.8))  # h = 0.05
    h, s = 0.05, 0.01
    measure = op.domain.element([[0.3, -0.2, 0.4]])
    bound = oa.position_crb(op, measure, noise_std=s)
    per_axis = 1 / (8 * np.pi * SIGMA ** 4 * h ** 2 * s ** 2)
    axes = op.geometry.det_axes(np.radians(angles))  # (m, 2, 3)
    fisher = per_axis * np.einsum('mki,mkj->ij', axes, axes)
    assert np.allclose(bound.fisher, fisher, rtol=5e-3, atol=1e-9 * fisher.max())


# --- (c) Monte Carlo: least squares on the data reaches the bound


def test_monte_carlo_least_squares_reaches_bound():
    """Least-squares fits of the positions (weights known, data term only,
    started at the truth) over 150 noise realisations: at high SNR the
    estimator is efficient, so its RMSD is the bound's."""
    op = _op2d([0, 60, 120], n_det=64, half=8.0)
    truth = np.array([[-2.1, -1.3], [0.4, -2.2], [1.9, 0.3], [-0.6, 1.7],
                      [2.6, 2.4], [-2.8, 2.0]])
    n = truth.shape[0]
    weights = np.ones(n)
    measure = op.domain.element(truth, weights)
    clean = op.project(truth, weights)
    noise_std = 0.02 * clean.max()
    bound = oa.position_crb(op, measure, noise_std)
    assert bound.null_dim == 0
    # High SNR: the bound is small against sigma, the linear regime.
    assert bound.rmsd < 0.05 * SIGMA

    rng = np.random.default_rng(12345)

    def residual(x, data):
        return (op.project(x.reshape(n, 2), weights) - data).ravel()

    sq_errors = []
    for _ in range(150):
        data = clean + noise_std * rng.standard_normal(clean.shape)
        fit = scipy.optimize.least_squares(residual, truth.ravel(),
                                           args=(data,), method='lm',
                                           xtol=1e-12, ftol=1e-12)
        sq_errors.append(np.sum((fit.x.reshape(n, 2) - truth) ** 2, axis=1))
    sq_errors = np.array(sq_errors)  # (realisations, atoms)
    empirical = np.sqrt(sq_errors.mean())
    # 150 x 12 correlated squared errors: a few % statistical error.
    assert empirical == pytest.approx(bound.rmsd, rel=0.15)
    per_atom = np.sqrt(sq_errors.mean(axis=0))
    assert np.allclose(per_atom, bound.atom_rms, rtol=0.2)


# --- Undetermined directions


def test_aligned_atoms_are_undetermined():
    """Two atoms on one column seen at 0 and 90 degrees: moving them against
    each other along the column leaves the data unchanged at first order; a
    third atom on no shared ray keeps a finite bound."""
    op = _op2d([0, 90], n_det=64)
    axis0 = op.geometry.det_axis(0.0)
    ray0 = np.array([-axis0[1], axis0[0]])  # along the rays at 0 degrees
    pos = np.array([-1.5 * ray0, 1.0 * ray0, [2.2, 2.9]])
    measure = op.domain.element(pos)
    bound = oa.position_crb(op, measure, noise_std=0.01)
    assert bound.undetermined.tolist() == [0, 1]
    assert bound.null_dim == 1
    assert np.isinf(bound.rmsd) and np.all(np.isinf(bound.atom_rms[:2]))
    assert np.isfinite(bound.atom_rms[2])
    # Independent check of that null direction: the data change is
    # second order in the step t (first order for a generic direction).
    move = np.zeros_like(pos)
    move[0], move[1] = axis0, -axis0
    for direction, order in ((move, 2), (np.roll(move, 1, axis=0), 1)):
        change = [np.abs(op(op.domain.element(pos + t * direction)).data
                         - op(measure).data).max() for t in (1e-3, 2e-3)]
        assert change[1] / change[0] == pytest.approx(2 ** order, rel=0.05)


# --- (d) bad input


def test_bad_input():
    op = _op2d([0, 60, 120])
    measure = op.domain.element([[0.0, 0.0], [1.0, 1.0]])
    for bad in (-0.1, 0.0, np.nan, np.inf):
        with pytest.raises(ValueError, match='noise_std'):
            oa.position_crb(op, measure, bad)
    with pytest.raises(ValueError, match='data shape'):
        oa.position_crb(op, measure, np.ones((2, 2)))
    other = oa.SparseMeasureSpace([-3, -3], [3, 3]).element([[0.0, 0.0]])
    with pytest.raises(ValueError, match="operator's domain"):
        oa.position_crb(op, other, 0.01)
    with pytest.raises(ValueError, match='no atoms'):
        oa.position_crb(op, op.domain.zero(), 0.01)
    with pytest.raises(TypeError, match='GaussianRayTransform'):
        oa.position_crb(op.parametrized(2), measure, 0.01)
    with pytest.raises(ValueError, match='rtol'):
        oa.position_crb(op, measure, 0.01, rtol=-1)


def test_repr():
    op = _op2d([0, 60, 120])
    bound = oa.position_crb(op, op.domain.element([[0.0, 0.0]]), 0.01)
    assert repr(bound).startswith('PositionCRB(n_atoms=1, ndim=2, rmsd=')
