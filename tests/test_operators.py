"""Tests of the Gaussian-atom ray transform against independent computations.

References used here, none of which share code with the operator:
ASTRA's pixel-based ``RayTransform`` of atoms rendered on a fine grid, direct
numerical line integrals along ODL's own rays (``det_point_position`` +
``det_to_src``), ODL's ``OperatorTest`` (Taylor remainder and adjoint identity),
and finite differences.
"""

import contextlib
import io

import numpy as np
import odl
import pytest
from odl.applications import tomo

from odl_atoms import SparseMeasureSpace
from odl_atoms.geometry import as_data, projection_space
from odl_atoms.operators import GaussianBackProjection, GaussianRayTransform


# --- Fixtures and references


def geometry_2d(n_det=72, angles=(0.1, 0.9, 2.0), **kwargs):
    return tomo.Parallel2dGeometry(odl.nonuniform_partition(list(angles)),
                                   odl.uniform_partition(-9, 9, n_det), **kwargs)


def geometry_3d_axis(axis=(0, 0, 1), shape=(24, 20)):
    return tomo.Parallel3dAxisGeometry(
        odl.uniform_partition(-1.2, 1.2, 4),
        odl.uniform_partition([-7, -6], [7, 6], shape), axis=axis)


def geometry_3d_euler():
    return tomo.Parallel3dEulerGeometry(
        odl.uniform_partition([0, 0.2], [np.pi, 1.2], (3, 2)),
        odl.uniform_partition([-7, -6], [7, 6], (22, 18)))


def random_measure(space, n, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = space.min_pt + 1.5, space.max_pt - 1.5
    return space.element(rng.uniform(lo, hi, (n, space.ndim)),
                         weights=rng.uniform(0.5, 2.0, n))


def numerical_line_integrals(geometry, measure, sigma, n_steps=4001,
                             dgrid=None):
    """Line integrals of the Gaussian density along ODL's rays.

    Uses only the geometry's definition of its rays and the trapezoidal rule;
    rays through the cell centres, or through the detector points ``dgrid``
    (shape ``(p, k)``).
    """
    d = geometry.ndim
    motion = geometry.motion_partition
    mparams = motion.grid.points()
    shape = geometry.partition.shape
    if dgrid is None:
        dgrid = geometry.det_partition.grid.points()
    else:
        shape = (mparams.shape[0], dgrid.shape[0])
    out = np.zeros((mparams.shape[0], dgrid.shape[0]))
    t = np.linspace(-15, 15, n_steps)
    for a, mp in enumerate(mparams):
        mp = mp[0] if motion.ndim == 1 else tuple(mp)
        dp = dgrid[:, 0] if dgrid.shape[1] == 1 else tuple(dgrid.T)
        start = geometry.det_point_position(mp, dp).reshape(-1, d)
        direction = geometry.det_to_src(mp, dp).reshape(-1, d)
        pts = start[:, None, :] + t[None, :, None] * direction[:, None, :]
        dens = np.zeros(pts.shape[:2])
        for x, w in zip(measure.positions, measure.weights):
            r2 = np.sum((pts - x) ** 2, axis=-1)
            dens += w * np.exp(-r2 / (2 * sigma ** 2)) / (
                (2 * np.pi * sigma ** 2) ** (d / 2))
        out[a] = np.trapezoid(dens, t, axis=1)
    return out.reshape(shape)


def render_gaussians(vol_space, measure, sigma):
    pts = vol_space.points()
    img = np.zeros(pts.shape[0])
    for x, w in zip(measure.positions, measure.weights):
        img += w * np.exp(-np.sum((pts - x) ** 2, axis=1) / (2 * sigma ** 2))
    img /= 2 * np.pi * sigma ** 2
    return vol_space.element(img.reshape(vol_space.shape).astype(vol_space.dtype))


def run_quietly(func):
    """Run an ODL diagnostic, return what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        func()
    return buf.getvalue()


# --- The projection space is ODL's


def test_range_is_raytransform_range_2d():
    geometry = geometry_2d()
    vol = odl.uniform_discr([-6, -6], [6, 6], [32, 32], dtype='float32')
    ray = tomo.RayTransform(vol, geometry)
    space = SparseMeasureSpace([-6, -6], [6, 6])
    op = GaussianRayTransform(space, geometry, 0.4, dtype='float32')
    assert op.range == ray.range
    op64 = GaussianRayTransform(space, geometry, 0.4)
    assert op64.range.dtype == np.float64
    assert op64.range.partition == ray.range.partition
    assert op64.range.weighting.const == pytest.approx(
        ray.range.weighting.const)


# --- Against ASTRA (2D)


@pytest.mark.parametrize('n_det', [72])
def test_matches_astra_and_converges_with_grid(n_det):
    space = SparseMeasureSpace([-6, -6], [6, 6])
    geometry = geometry_2d(n_det)
    mu = random_measure(space, 6)
    sigma = 0.4
    model = GaussianRayTransform(space, geometry, sigma, mode='sample')(mu).data
    errors = []
    for n in (128, 256, 512):
        vol = odl.uniform_discr([-8, -8], [8, 8], [n, n], dtype='float32')
        ray = tomo.RayTransform(vol, geometry)
        astra = ray(render_gaussians(vol, mu, sigma)).data.astype(float)
        errors.append(np.linalg.norm(astra - model) / np.linalg.norm(model))
    assert errors[-1] < 1e-3
    assert errors[0] < 1e-2
    # Pixelisation error shrinks about 4x per halving of the pixel size.
    assert errors[1] < 0.5 * errors[0] and errors[2] < 0.5 * errors[1]


def test_integrate_mode_agrees_with_astra_on_fine_detector():
    """With cells much smaller than sigma, averaging and sampling agree."""
    space = SparseMeasureSpace([-6, -6], [6, 6])
    geometry = geometry_2d(n_det=288)  # cell 1/16 angstrom, sigma 0.4
    mu = random_measure(space, 5, seed=3)
    sigma = 0.4
    model = GaussianRayTransform(space, geometry, sigma)(mu).data
    vol = odl.uniform_discr([-8, -8], [8, 8], [512, 512], dtype='float32')
    astra = tomo.RayTransform(vol, geometry)(
        render_gaussians(vol, mu, sigma)).data.astype(float)
    assert np.linalg.norm(astra - model) / np.linalg.norm(model) < 5e-3


def test_cell_integration_of_subpixel_atom_keeps_mass():
    """An atom much narrower than a cell: averages still hold its mass."""
    space = SparseMeasureSpace([-6, -6], [6, 6])
    geometry = geometry_2d(n_det=18)  # 1 angstrom cells
    mu = space.element([[0.37, -1.2]], weights=1.5)
    data = GaussianRayTransform(space, geometry, 0.05)(mu).data
    np.testing.assert_allclose(data.sum(axis=1) * 1.0, 1.5, rtol=1e-9)
    # Only one or two cells per angle are hit, at the projected position.
    u = geometry.det_axis(geometry.angles) @ mu.positions[0]
    hit = np.floor((u + 9) / 1.0).astype(int)
    np.testing.assert_allclose(data[np.arange(3), hit], 1.5, rtol=0.2)


# --- Against numerical line integrals (geometry definitions)


@pytest.mark.parametrize('make_geometry', [
    lambda: geometry_2d(40, translation=[0.3, -0.2]),
    lambda: geometry_3d_axis(),
    lambda: geometry_3d_axis(axis=(1, 0, 0)),
    geometry_3d_euler,
], ids=['2d-translated', '3d-axis-z', '3d-axis-x', '3d-euler'])
def test_matches_numerical_line_integrals(make_geometry):
    geometry = make_geometry()
    d = geometry.ndim
    space = SparseMeasureSpace([-5] * d, [5] * d)
    mu = random_measure(space, 3, seed=d)
    sigma = 0.6
    model = GaussianRayTransform(space, geometry, sigma, mode='sample')(mu).data
    reference = numerical_line_integrals(geometry, mu, sigma)
    np.testing.assert_allclose(model, reference, atol=1e-8 * reference.max())


def test_integrate_mode_is_cell_average_3d():
    """Cell average = Gauss-Legendre average of numerical line integrals."""
    geometry = tomo.Parallel3dAxisGeometry(
        odl.uniform_partition(-1.2, 1.2, 4),
        odl.uniform_partition([-3, -3], [3, 3], (6, 6)))  # 1 angstrom cells
    space = SparseMeasureSpace([-5] * 3, [5] * 3)
    mu = space.element([[0.3, -0.4, 0.2], [-0.8, 0.5, -0.6]], weights=[1, 2])
    sigma = 0.5
    model = GaussianRayTransform(space, geometry, sigma)(mu).data
    nodes, gl_weights = np.polynomial.legendre.leggauss(6)
    edges = np.arange(-3.0, 3.0, 1.0)
    u = (edges[:, None] + 0.5 + 0.5 * nodes[None, :]).ravel()  # (6 cells x 6)
    uu, vv = np.meshgrid(u, u, indexing='ij')
    lines = numerical_line_integrals(
        geometry, mu, sigma, n_steps=2001,
        dgrid=np.stack([uu.ravel(), vv.ravel()], axis=1))
    lines = lines.reshape(4, 6, 6, 6, 6)
    w = 0.5 * gl_weights  # weights of the mean over a unit cell
    averaged = np.einsum('acidj,i,j->acd', lines, w, w)
    np.testing.assert_allclose(model, averaged, atol=1e-7 * model.max())


# --- Linearity, derivative and adjoint (ODL diagnostics)


def test_linear_on_measures_operator_test():
    space = SparseMeasureSpace([-6, -6], [6, 6], kernel_width=0.4)
    op = GaussianRayTransform(space, geometry_2d(), 0.4)
    printed = run_quietly(lambda: odl.diagnostics.OperatorTest(
        op, operator_norm=10.0).linear())
    assert 'FAILED' not in printed, printed
    mu, nu = random_measure(space, 4, 1), random_measure(space, 3, 2)
    np.testing.assert_allclose(op(2.0 * mu - nu).data,
                               2 * op(mu).data - op(nu).data, atol=1e-12)


@pytest.mark.parametrize('make_geometry', [
    lambda: geometry_2d(), geometry_3d_axis, geometry_3d_euler],
    ids=['2d', '3d-axis', '3d-euler'])
@pytest.mark.parametrize('mode', ['integrate', 'sample'])
def test_derivative_and_adjoint_operator_test(make_geometry, mode):
    geometry = make_geometry()
    d = geometry.ndim
    space = SparseMeasureSpace([-5] * d, [5] * d)
    op = GaussianRayTransform(space, geometry, 0.7, mode=mode).parametrized(4)
    norm = 20.0
    printed = run_quietly(lambda: odl.diagnostics.OperatorTest(
        op, operator_norm=norm, tol=1e-5).derivative())
    assert 'FAILED' not in printed, printed
    mu = random_measure(space, 4, seed=11)
    jac = op.derivative(mu.to_parameters())
    printed = run_quietly(lambda: odl.diagnostics.OperatorTest(
        jac, operator_norm=norm, tol=1e-8).adjoint())
    assert 'FAILED' not in printed, printed


def test_jacobian_matches_finite_differences():
    geometry = geometry_3d_axis()
    space = SparseMeasureSpace([-5] * 3, [5] * 3)
    transform = GaussianRayTransform(space, geometry, 0.5)
    op = transform.parametrized(3)
    p = random_measure(space, 3, seed=5).to_parameters()
    rng = np.random.default_rng(0)
    dp = op.domain.element([rng.normal(size=(3, 3)), rng.normal(size=3)])
    h = 1e-6
    fd = (op(p + h * dp).data - op(p - h * dp).data) / (2 * h)
    np.testing.assert_allclose(op.derivative(p)(dp).data, fd,
                               atol=1e-6 * np.abs(fd).max())
    assert transform.jacobian(space.from_parameters(p))(dp) == \
        op.derivative(p)(dp)


# --- Correlation map


def test_correlation_matches_definition_and_gradient():
    geometry = geometry_2d()
    space = SparseMeasureSpace([-6, -6], [6, 6])
    op = GaussianRayTransform(space, geometry, 0.4)
    residual = op(random_measure(space, 5)) - op(random_measure(space, 2, 9))
    rng = np.random.default_rng(1)
    points = rng.uniform(-4, 4, (7, 2))
    values, grads = op.correlation(residual, points, gradient=True)
    # Definition: inner product (of the weighted projection space) between
    # the data of one unit atom at x and the residual.
    direct = [op.range.inner(op(space.element([x])), residual) for x in points]
    np.testing.assert_allclose(values, direct, rtol=1e-10, atol=1e-14)
    h = 1e-6
    for i in range(2):
        step = np.zeros(2)
        step[i] = h
        fd = (op.correlation(residual, points + step)
              - op.correlation(residual, points - step)) / (2 * h)
        np.testing.assert_allclose(grads[:, i], fd, rtol=1e-6,
                                   atol=1e-8 * np.abs(values).max())


def test_correlation_map_on_grid_3d():
    geometry = geometry_3d_axis()
    space = SparseMeasureSpace([-5] * 3, [5] * 3)
    op = GaussianRayTransform(space, geometry, 0.6)
    mu = space.element([[0.5, -1.0, 0.25]])
    grid = odl.uniform_discr([-4] * 3, [4] * 3, [16, 16, 16])
    image = op.correlation_map(op(mu), grid)
    assert image in grid
    # The correlation of an atom's own data peaks at the atom.
    peak = grid.points()[np.argmax(image.data)]
    assert np.linalg.norm(peak - mu.positions[0]) <= 0.5 * np.sqrt(3) * 0.5 + 1e-9
    np.testing.assert_allclose(image.data.ravel(),
                               op.correlation(op(mu), grid.points()))


# --- Scaling: cost follows the window, not the detector


def test_window_does_not_depend_on_detector_size():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    mu = random_measure(space, 3)
    small = GaussianRayTransform(space, geometry_2d(100), 0.3)
    large = GaussianRayTransform(space, geometry_2d(1000), 0.3)
    # Same window in angstrom -> about 10x more cells, not the whole detector.
    w_small = small.stencil(mu.positions).profiles[0][1].shape[-1]
    w_large = large.stencil(mu.positions).profiles[0][1].shape[-1]
    assert w_large < 1000 // 4
    assert w_large <= 11 * w_small


# --- Bad input


def test_bad_input_errors():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    geometry = geometry_2d()
    with pytest.raises(ValueError, match='sigma'):
        GaussianRayTransform(space, geometry, -0.1)
    with pytest.raises(ValueError, match='sigma'):
        GaussianRayTransform(space, geometry, float('nan'))
    with pytest.raises(ValueError, match='3D'):
        GaussianRayTransform(space, geometry_3d_axis(), 0.4)
    fan = tomo.FanBeamGeometry(odl.uniform_partition(0, np.pi, 3),
                               odl.uniform_partition(-9, 9, 20),
                               src_radius=50, det_radius=50)
    with pytest.raises(ValueError, match='parallel'):
        GaussianRayTransform(space, fan, 0.4)
    with pytest.raises(ValueError, match='mode'):
        GaussianRayTransform(space, geometry, 0.4, mode='exact')
    with pytest.raises(ValueError, match='finite'):
        space.element([[0.0, np.nan]])
    with pytest.raises(ValueError, match='outside the box'):
        space.element([[0.0, 7.0]])
    op = GaussianRayTransform(space, geometry, 0.4)
    with pytest.raises(odl.OpDomainError) as info:
        op(np.zeros((2, 3)))
    assert 'shape (n, 2)' in str(info.value.__cause__)
    other = projection_space(geometry_2d(n_det=50))
    with pytest.raises(ValueError, match='another geometry'):
        op.correlation(other.zero(), [[0, 0]])
    with pytest.raises(ValueError, match='NaN'):
        as_data(op.range, np.full(op.range.shape, np.nan))
    # The adjoint maps data into functions on the box (issue 20): what needs
    # it to map back into measures raises and names the operator on n atoms.
    assert isinstance(op.adjoint, GaussianBackProjection)
    with pytest.raises(NotImplementedError, match='parametrized'):
        op.norm(estimate=True)


def test_float32_data_accepted_as_same_geometry():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    geometry = geometry_2d()
    op = GaussianRayTransform(space, geometry, 0.4)
    data32 = projection_space(geometry, 'float32').element(
        op(space.element([[1, 1]])).data.astype('float32'))
    converted = as_data(op.range, data32)
    assert converted in op.range
    np.testing.assert_allclose(converted.data, data32.data)


def test_repr_reproduces():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    op = GaussianRayTransform(space, geometry_2d(), 0.4, mode='sample')
    namespace = {'SparseMeasureSpace': SparseMeasureSpace,
                 'GaussianRayTransform': GaussianRayTransform,
                 'Parallel2dGeometry': tomo.Parallel2dGeometry,
                 'nonuniform_partition': odl.nonuniform_partition,
                 'uniform_partition': odl.uniform_partition, 'array': np.array}
    rebuilt = eval(repr(op), namespace)
    assert repr(rebuilt) == repr(op)
