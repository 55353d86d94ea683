"""Detector shifts in the forward model and their estimation (odl_atoms.alignment).

References are independent of the shifted frame: the cell averages of the
Gaussians written out with ``scipy.special.ndtr`` at the shifted centres,
ODL geometries whose detector partition is moved instead, the unshifted
NumPy stencil on translated data, and finite differences.
"""

import warnings

import numpy as np
import odl
import pytest
from odl.applications import tomo
from scipy.special import ndtr

import odl_atoms as oa
from odl_atoms import kernels
from odl_atoms.alignment import (Alignment, centre_of_mass_shifts,
                                 decompose_shifts, refine_shifts,
                                 shift_misfit)
from odl_atoms.noise import add_noise
from odl_atoms.objective import AtomObjective
from odl_atoms.projection import Stencil

BACKENDS = ['numpy'] + (['numba'] if kernels.AVAILABLE else [])


def _op2d(n_angles=3, n_det=64, sigma=0.4, angles=None, **kwargs):
    space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    apart = (odl.uniform_partition(0, np.pi, n_angles) if angles is None
             else odl.nonuniform_partition(np.asarray(angles, float)))
    geometry = tomo.Parallel2dGeometry(
        apart, odl.uniform_partition(-8, 8, n_det))
    return oa.GaussianRayTransform(space, geometry, sigma, **kwargs)


def _op3d(n_angles=5, sigma=0.5, **kwargs):
    space = oa.SparseMeasureSpace([-3, -3, -3], [3, 3, 3])
    geometry = tomo.Parallel3dAxisGeometry(
        odl.uniform_partition(-1.0, 1.0, n_angles),
        odl.uniform_partition([-6, -5], [6, 5], (48, 40)))
    return oa.GaussianRayTransform(space, geometry, sigma, **kwargs)


def _cell_means(centres, edges, sigma):
    """Cell averages of unit Gaussians at ``centres`` (p,) -> (p, cells)."""
    z = (edges[None, :] - centres[:, None]) / sigma
    return np.diff(ndtr(z), axis=1) / np.diff(edges)[None, :]


def _analytic(op, positions, weights, shifts):
    """The data of Gaussians at the shifted detector coordinates, by hand."""
    geometry = op.geometry
    angles = geometry.angles
    d = positions.shape[1]
    out = np.zeros(op.range.shape)
    for a, angle in enumerate(angles):
        if d == 2:
            axis = geometry.det_axis(angle)
            u = positions @ axis + shifts[a, 0]
            edges = geometry.det_partition.cell_boundary_vecs[0]
            out[a] = weights @ _cell_means(u, edges, op.sigma)
        else:
            axes = geometry.det_axes(angle)
            u = positions @ axes[0] + shifts[a, 0]
            v = positions @ axes[1] + shifts[a, 1]
            eu, ev = geometry.det_partition.cell_boundary_vecs
            pu, pv = _cell_means(u, eu, op.sigma), _cell_means(v, ev, op.sigma)
            out[a] = np.einsum('i,iu,iv->uv', weights, pu, pv)
    return out


# --- The shifted forward model


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dim', [2, 3])
def test_shifted_projection_is_the_analytic_shifted_gaussians(dim, backend):
    rng = np.random.default_rng(0)
    op = _op2d() if dim == 2 else _op3d()
    m, k = op.frame.offsets.shape
    positions = rng.uniform(-2, 2, (4, dim))
    weights = rng.uniform(0.5, 2, 4)
    shifts = rng.uniform(-0.5, 0.5, (m, k))
    with kernels.use_backend(backend):
        moved = op.shifted(shifts).project(positions, weights)
        still = op.project(positions, weights)
    expected = _analytic(op, positions, weights, shifts)
    # (the operator's window of 6 sigma leaves 1e-8 of the peak out)
    assert np.allclose(moved, expected, rtol=0, atol=5e-8 * expected.max())
    # and the shift did something
    assert np.abs(still - expected).max() > 0.05 * expected.max()


def test_constant_shift_is_a_moved_detector():
    # A shift common to all angles is the geometry with its detector
    # partition moved the other way: ODL's own frame, no shift code.
    op = _op2d(n_angles=4)
    positions = np.array([[0.3, -1.0], [1.7, 0.4], [-2.0, 1.1]])
    weights = np.array([1.0, 2.0, 0.5])
    s = 0.37
    moved_geometry = tomo.Parallel2dGeometry(
        op.geometry.motion_partition, odl.uniform_partition(-8 - s, 8 - s, 64))
    reference = oa.GaussianRayTransform(op.domain, moved_geometry, op.sigma)
    expected = reference.project(positions, weights)
    got = op.shifted(np.full((4, 1), s)).project(positions, weights)
    assert np.allclose(got, expected, rtol=0, atol=1e-10)


def test_shifted_data_are_translated_data():
    # A shift by a whole number of cells moves the data by that many cells
    # (np.roll away from the edges); a fractional one is what linear
    # interpolation of data on a detector 16x finer gives, to its error.
    space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    angles = odl.uniform_partition(0, np.pi, 3)
    coarse = tomo.Parallel2dGeometry(angles, odl.uniform_partition(-8, 8, 64))
    fine = tomo.Parallel2dGeometry(angles, odl.uniform_partition(-8, 8, 1024))
    positions = np.array([[0.5, 0.0], [-1.0, 1.5]])
    weights = np.ones(2)
    op = oa.GaussianRayTransform(space, coarse, 0.4, mode='sample')
    fine_op = oa.GaussianRayTransform(space, fine, 0.4, mode='sample')
    shifts = np.array([[0.5], [-0.75], [0.3]])  # 2, -3 and 1.2 cells
    got = op.shifted(shifts).project(positions, weights)
    plain = op.project(positions, weights)
    assert np.allclose(got[0], np.roll(plain[0], 2), atol=1e-12)
    assert np.allclose(got[1], np.roll(plain[1], -3), atol=1e-12)
    fine_data = fine_op.project(positions, weights)
    u_fine = fine.det_partition.coord_vectors[0]
    u = coarse.det_partition.coord_vectors[0]
    expected = np.interp(u - shifts[2, 0], u_fine, fine_data[2])
    assert np.allclose(got[2], expected, atol=2e-3 * expected.max())


def test_every_consumer_of_the_frame_sees_the_shifts():
    # 3D single-axis tilt series: the compiled data term (Projector.of,
    # cached by frame), the Jacobian, the separable correlation grid and
    # the stencil correlation all agree with the NumPy stencil of the
    # shifted frame, and differ from the unshifted operator's.
    rng = np.random.default_rng(1)
    op = _op3d(n_angles=3)
    positions = rng.uniform(-2, 2, (5, 3))
    weights = np.ones(5)
    shifts = rng.uniform(-0.6, 0.6, (3, 2))
    moved = op.shifted(shifts)
    y = op.project(positions + 0.1, weights)  # any data
    with kernels.use_backend('numpy'):
        ref = Stencil(op.frame.shifted(shifts), positions, op.sigma)
        r = ref.project(weights) - y.ravel()
        ref_gx, _ = ref.adjoint_jacobian(weights, r)
    c = op.inner_weight
    for backend in BACKENDS:
        with kernels.use_backend(backend):
            # Warm the cache with the unshifted operator first.
            AtomObjective(op, y, 0.0, None).value_and_gradient(positions, weights)
            value, gx, _ = AtomObjective(moved, y, 0.0, None).value_and_gradient(
                positions, weights)
        assert np.isclose(value, 0.5 * c * r @ r, rtol=1e-10)
        assert np.allclose(gx, c * ref_gx, rtol=1e-8, atol=1e-12)
    # The Jacobian of the parametrized operator.
    p = moved.parametrized(5).domain.element([positions, weights])
    dx = rng.normal(size=(5, 3))
    jac = moved.parametrized(5).derivative(p)
    with kernels.use_backend('numpy'):
        expected = ref.apply_jacobian(weights, dx, np.zeros(5))
    got = jac(jac.domain.element([dx, np.zeros(5)])).data.ravel()
    assert np.allclose(got, expected, atol=1e-10)
    # The adjoint on its grid (SeparableGrid for this geometry) and the
    # correlation at points (Stencil).
    grid = odl.uniform_discr([-3, -3, -3], [3, 3, 3], (6, 6, 6))
    residual = moved.range.element(y)
    on_grid = moved.correlation_operator(grid)(residual).data.ravel()
    at_points = moved.correlation(residual, grid.points())
    with kernels.use_backend('numpy'):
        by_hand = c * Stencil(op.frame.shifted(shifts), grid.points(),
                              op.sigma).correlate(y.ravel())
    assert np.allclose(on_grid, by_hand, rtol=1e-8, atol=1e-12)
    assert np.allclose(at_points, by_hand, rtol=1e-8, atol=1e-12)
    unshifted = op.correlation_operator(grid)(residual).data.ravel()
    assert np.abs(unshifted - by_hand).max() > 1e-3 * np.abs(by_hand).max()


def test_torch_backend_sees_the_shifts():
    pytest.importorskip('torch')
    op = _op2d(impl='pytorch')
    shifts = np.array([[0.3], [-0.2], [0.1]])
    positions = np.array([[0.0, 0.0], [1.0, -1.5]])
    measure = op.domain.element(positions)
    got = op.shifted(shifts)(measure).data.cpu().numpy()
    expected = _analytic(op, positions, np.ones(2), shifts)
    assert np.allclose(got, expected, rtol=0, atol=5e-8 * expected.max())


def test_shifts_api():
    op = _op2d()
    assert 'detector_shifts' not in repr(op)
    assert np.array_equal(op.detector_shifts, np.zeros((3, 1)))
    moved = op.shifted([0.1, 0.0, -0.2])
    assert 'detector_shifts=[[ 0.1], [ 0. ], [-0.2]]' in repr(moved)
    assert moved.shifted(None).frame is op.frame  # back to the geometry's
    assert moved.shifted([0.0, 0.2, 0.0]).detector_shifts[1, 0] == 0.2
    assert op.detector_shifts[0, 0] == 0.0  # the original is unchanged
    built = oa.GaussianRayTransform(op.domain, op.geometry, op.sigma,
                                    detector_shifts=[0.1, 0.0, -0.2])
    assert np.array_equal(built.frame.offsets, moved.frame.offsets)
    with pytest.raises(ValueError, match=r'shape \(3, 1\)'):
        op.shifted(np.zeros((2, 1)))
    with pytest.raises(ValueError, match='NaN'):
        op.shifted([0.0, np.nan, 0.0])
    with pytest.raises(ValueError):
        moved.detector_shifts[0, 0] = 1.0  # read-only


# --- The derivative with respect to the shifts


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dim', [2, 3])
def test_shift_gradient_matches_finite_differences(dim, backend):
    rng = np.random.default_rng(2)
    op = _op2d() if dim == 2 else _op3d(n_angles=3)
    m, k = op.frame.offsets.shape
    positions = rng.uniform(-2, 2, (6, dim))
    weights = rng.uniform(0.5, 1.5, 6)
    data = op.shifted(rng.uniform(-0.3, 0.3, (m, k))).project(
        positions, weights) + 0.01 * rng.normal(size=op.range.shape)
    shifts = rng.uniform(-0.3, 0.3, (m, k))
    with kernels.use_backend(backend):
        value, grad = shift_misfit(op, data, positions, weights, shifts)
        h = 1e-6
        fd = np.zeros((m, k))
        for a in range(m):
            for j in range(k):
                e = np.zeros((m, k))
                e[a, j] = h
                fd[a, j] = (shift_misfit(op, data, positions, weights,
                                         shifts + e, gradient=False)
                            - shift_misfit(op, data, positions, weights,
                                           shifts - e, gradient=False)) / (2 * h)
    direct = 0.5 * op.inner_weight * np.sum(
        (op.shifted(shifts).project(positions, weights) - data) ** 2)
    assert np.isclose(value, direct, rtol=1e-12)
    assert np.allclose(grad, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


# --- Estimating the shifts on simulated data


def _simulated(dim, n_angles, noise, seed):
    """A defect phantom, its operator, shifts of up to 2 cells, data."""
    rng = np.random.default_rng(seed)
    if dim == 2:
        phantom = oa.defect_phantom('vacancy')
        angles = np.radians(np.linspace(0, 180, n_angles, endpoint=False) + 10)
        geometry = oa.tilt_geometry(phantom.space, angles, 96)
        sigma = 0.15 * oa.DEFAULT_SPACING
    else:
        phantom = oa.nanoparticle('octahedron')
        angles = np.radians(np.linspace(-60, 60, n_angles))
        geometry = oa.tilt_geometry(phantom.space, angles, cell=0.5)
        sigma = 0.6
    op = oa.GaussianRayTransform(phantom.space, geometry, sigma)
    cell = float(geometry.det_partition.cell_sides[0])
    m, k = op.frame.offsets.shape
    shifts = rng.uniform(-2, 2, (m, k)) * cell
    clean = op.shifted(shifts)(phantom.measure)
    data, _ = add_noise(clean, level=noise, seed=seed)
    return phantom, op, shifts, data, cell


def _gauge_free_error(op, estimate, truth, cell):
    """Largest error (cells) of the part of the shifts the data determine."""
    m, k, d = op.frame.axes.shape
    tmat = op.frame.axes.reshape(m * k, d)
    diff = (estimate - truth).ravel()
    diff = diff - tmat @ np.linalg.lstsq(tmat, diff, rcond=None)[0]
    return np.abs(diff).max() / cell


def _gauge_atoms(op, phantom, truth):
    """The true atoms translated into the gauge of the estimators: with
    them, shifts orthogonal to the translations fit the data exactly."""
    m, k, d = op.frame.axes.shape
    tmat = op.frame.axes.reshape(m * k, d)
    t = np.linalg.lstsq(tmat, truth.ravel(), rcond=None)[0]
    return phantom.measure.positions + t


@pytest.mark.parametrize('dim, n_angles', [(2, 3), (2, 5), (3, 5)])
def test_centre_of_mass_recovers_shifts_modulo_translation(dim, n_angles):
    phantom, op, truth, data, cell = _simulated(dim, n_angles, 0.0, seed=3)
    result = centre_of_mass_shifts(op, data)
    assert isinstance(result, Alignment)
    assert result.determined == (n_angles - 2 if dim == 2 else 2 * n_angles - 3)
    assert _gauge_free_error(op, result.shifts, truth, cell) < 1e-3
    # The shifts are the least-norm ones: orthogonal to every translation.
    assert np.allclose(op.frame.axes.reshape(-1, dim).T @ result.shifts.ravel(),
                       0, atol=1e-10)
    # and the object's centre of mass is where they put it.
    expected_cm = _gauge_atoms(op, phantom, truth).mean(axis=0)
    assert np.allclose(result.centre_of_mass, expected_cm, atol=1e-3 * cell)
    # With 1 % noise, still well within the target of 0.1 cell.
    _, _, _, noisy, _ = _simulated(dim, n_angles, 0.01, seed=3)
    assert _gauge_free_error(op, centre_of_mass_shifts(op, noisy).shifts,
                             truth, cell) < 0.1


def test_centre_of_mass_with_background():
    phantom, op, truth, data, cell = _simulated(2, 4, 0.0, seed=4)
    background = np.array([0.1, 0.3, 0.0, 0.2]) * data.data.max()
    raised = data.data + background[:, None]
    biased = centre_of_mass_shifts(op, raised)
    right = centre_of_mass_shifts(op, raised, background=background)
    assert _gauge_free_error(op, right.shifts, truth, cell) < 1e-3
    assert _gauge_free_error(op, biased.shifts, truth, cell) > 0.05
    with pytest.raises(ValueError, match='no positive mass'):
        centre_of_mass_shifts(op, data, background=10.0)
    with pytest.raises(ValueError, match='one per projection'):
        centre_of_mass_shifts(op, data, background=[1.0, 2.0])


@pytest.mark.parametrize('dim, n_angles', [(2, 3), (3, 5)])
def test_refine_at_true_atoms_recovers_shifts_to_a_tenth_of_a_cell(dim,
                                                                   n_angles):
    phantom, op, truth, data, cell = _simulated(dim, n_angles, 0.01, seed=5)
    atoms = _gauge_atoms(op, phantom, truth)
    weights = phantom.measure.weights
    start = centre_of_mass_shifts(op, data)
    for initial in (None, start.shifts):  # from zero and from the centres
        result = refine_shifts(op, data, atoms, weights, shifts=initial)
        assert _gauge_free_error(op, result.shifts, truth, cell) < 0.1
        assert not result.at_bound
        assert result.misfit < result.misfit_start
    # Without noise: exact, and the misfit goes to zero.
    clean = op.shifted(truth).project(phantom.measure.positions, weights)
    exact = refine_shifts(op, clean, atoms, weights)
    assert _gauge_free_error(op, exact.shifts, truth, cell) < 1e-4
    assert exact.misfit < 1e-8 * exact.misfit_start
    # Projection by projection (no gauge), at the untranslated true atoms,
    # the shifts themselves come back.
    own = refine_shifts(op, clean, phantom.measure.positions, weights,
                        fix_translation=False)
    assert np.abs(own.shifts - truth).max() < 1e-4 * cell


def test_refine_is_bounded():
    # The best shifts lie 2 cells from the start (in the direction that is
    # no translation); with max_shift = 1/2 cell the fit stops there.
    phantom, op, _, data, cell = _simulated(2, 3, 0.0, seed=6)
    tmat = op.frame.axes.reshape(3, 2)
    direction = np.linalg.svd(tmat)[0][:, 2]  # orthogonal to translations
    far = (2 * cell * direction / np.abs(direction).max()).reshape(3, 1)
    far_data = op.shifted(far).project(phantom.measure.positions,
                                       phantom.measure.weights)
    free = refine_shifts(op, far_data, phantom.measure.positions,
                         phantom.measure.weights)
    assert not free.at_bound and np.allclose(free.shifts, far, atol=1e-4 * cell)
    result = refine_shifts(op, far_data, phantom.measure.positions,
                           phantom.measure.weights, max_shift=0.5 * cell)
    assert result.at_bound and 'max_shift' in result.message
    assert np.isclose(np.abs(result.shifts).max(), 0.5 * cell)
    assert result.misfit < result.misfit_start
    with pytest.raises(ValueError, match='max_shift'):
        refine_shifts(op, data, phantom.measure.positions,
                      phantom.measure.weights, max_shift=-1)


def test_two_angles_in_2d_determine_nothing():
    phantom, op, truth, data, cell = _simulated(2, 2, 0.0, seed=7)
    with pytest.warns(UserWarning, match='not determined'):
        com = centre_of_mass_shifts(op, data)
    assert com.determined == 0 and not com.identifiable
    assert np.array_equal(com.shifts, np.zeros((2, 1)))
    with pytest.warns(UserWarning, match='not determined'):
        ref = refine_shifts(op, data, phantom.measure.positions,
                            phantom.measure.weights, shifts=truth)
    assert np.array_equal(ref.shifts, truth) and 'translation' in ref.message


def test_tilt_axis_offset():
    # A tilt axis 0.4 A off the detector centre: every projection shifted by
    # 0.4 across the axis (and, in 3D, 0.3 along it, which is a translation
    # along the axis). Both estimators report the offset, not a translation.
    for dim, n_angles in ((2, 3), (3, 5)):
        phantom, op, _, _, cell = _simulated(dim, n_angles, 0.0, seed=8)
        m, k = op.frame.offsets.shape
        offset = np.array([0.4, 0.3][:k])
        data = op.shifted(np.tile(offset, (m, 1)))(phantom.measure)
        com = centre_of_mass_shifts(op, data)
        assert np.isclose(com.tilt_axis_offset[0], 0.4, atol=1e-3 * cell)
        assert np.allclose(com.residual_shifts, 0, atol=1e-3 * cell)
        if dim == 3:
            assert com.tilt_axis_offset[1] == 0.0
        t, o, r = decompose_shifts(op, np.tile(offset, (m, 1)))
        assert np.isclose(o[0], 0.4) and np.allclose(r, 0, atol=1e-12)
        if dim == 3:  # along the axis: a translation along the axis (z)
            assert np.isclose(t[2], 0.3) and np.allclose(t[:2], 0, atol=1e-12)
        refined = refine_shifts(op, data, com.centre_of_mass
                                - phantom.measure.positions.mean(axis=0)
                                + phantom.measure.positions,
                                phantom.measure.weights)
        assert np.isclose(refined.tilt_axis_offset[0], 0.4, atol=1e-4 * cell)


def test_scaled_operator_scales_the_weights():
    phantom, op, truth, data, cell = _simulated(2, 4, 0.01, seed=9)
    atoms = _gauge_atoms(op, phantom, truth)
    w = phantom.measure.weights
    a = refine_shifts(2 * op, data, atoms, w / 2)
    b = refine_shifts(op, data, atoms, w)
    assert np.allclose(a.shifts, b.shifts, atol=1e-9)
    v2, g2 = shift_misfit(2 * op, data, atoms, w / 2, truth)
    v1, g1 = shift_misfit(op, data, atoms, w, truth)
    assert np.isclose(v1, v2) and np.allclose(g1, g2)


def test_bad_inputs_say_what_to_give():
    phantom, op, truth, data, cell = _simulated(2, 3, 0.0, seed=10)
    pos, w = phantom.measure.positions, phantom.measure.weights
    with pytest.raises(ValueError, match=r'positions.*\(n, 2\)'):
        refine_shifts(op, data, pos[:, :1], w)
    with pytest.raises(ValueError, match='one per atom'):
        refine_shifts(op, data, pos, w[:-1])
    with pytest.raises(ValueError, match='no atoms'):
        refine_shifts(op, data, np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match='shape'):
        refine_shifts(op, data, pos, w, shifts=np.zeros((2, 1)))
    with pytest.raises(ValueError, match='shape'):
        centre_of_mass_shifts(op, np.zeros((3, 5)))
    with pytest.raises(TypeError, match='atom model'):
        centre_of_mass_shifts(odl.IdentityOperator(op.range), data)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        centre_of_mass_shifts(op, data)  # 3 angles: no warning
