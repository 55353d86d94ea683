"""The Gaussian-atom operator on ODL's PyTorch array backend.

Checks, on the CPU build of torch (skipped without torch): the range is the
projection space ODL's ``RayTransform`` gives on a ``impl='pytorch'`` volume;
the torch path (`odl_atoms.projection_torch`) equals the NumPy path for the
forward map, the Jacobian, its adjoint and the correlation; it matches ASTRA's
projection of finely rendered Gaussians independently; it is linear on
measures and passes ODL's derivative/adjoint diagnostics; and asking for CUDA
where there is none is a clear error. Tests for a real GPU run only where
torch sees one.
"""

import importlib
import sys

import numpy as np
import odl
import pytest
from odl.applications import tomo

torch = pytest.importorskip('torch')

from odl_atoms import SparseMeasureSpace  # noqa: E402
from odl_atoms.geometry import projection_space  # noqa: E402
from odl_atoms.operators import GaussianRayTransform  # noqa: E402
# Shared references and fixtures of the NumPy operator's tests (tests/ is on
# sys.path under pytest's default import mode).
from test_operators import (geometry_2d, geometry_3d_axis,  # noqa: E402
                            random_measure, render_gaussians, run_quietly)

CUDA = torch.cuda.is_available()
GEOMETRIES = {'2d': lambda: geometry_2d(), '3d-axis': geometry_3d_axis}
RTOL = {'float64': 1e-12, 'float32': 1e-5}


def make_ops(name, dtype='float64', mode='integrate', device='cpu'):
    geometry = GEOMETRIES[name]()
    d = geometry.ndim
    space = SparseMeasureSpace([-5] * d, [5] * d)
    ref = GaussianRayTransform(space, geometry, 0.5, mode=mode)
    op = GaussianRayTransform(space, geometry, 0.5, mode=mode, dtype=dtype,
                              impl='pytorch', device=device)
    return space, ref, op


def host(x):
    data = x.data if hasattr(x, 'space') else x
    return data.detach().cpu().numpy() if hasattr(data, 'detach') else data


def assert_close(actual, desired, rtol):
    actual, desired = host(actual), host(desired)
    scale = np.abs(desired).max()
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * scale)


# --- The range is ODL's pytorch projection space


def test_range_is_pytorch_raytransform_range():
    geometry = geometry_2d()
    vol = odl.uniform_discr([-6, -6], [6, 6], [32, 32], dtype='float32',
                            impl='pytorch')
    ray = tomo.RayTransform(vol, geometry)  # ASTRA on the CPU: 2D float32
    space = SparseMeasureSpace([-6, -6], [6, 6])
    op = GaussianRayTransform(space, geometry, 0.4, dtype='float32',
                              impl='pytorch')
    assert op.range == ray.range
    assert op.range.impl == 'pytorch' and op.device == 'cpu'
    assert op.impl == 'pytorch'


def test_range_3d_is_pytorch_projection_space():
    # ASTRA's 3D transforms need CUDA, so the 3D reference is the NumPy
    # projection space (itself checked against RayTransform in 2D).
    geometry = geometry_3d_axis()
    space = SparseMeasureSpace([-5] * 3, [5] * 3)
    op = GaussianRayTransform(space, geometry, 0.4, impl='pytorch')
    ref = projection_space(geometry)
    assert op.range.impl == 'pytorch' and ref.impl == 'numpy'
    assert op.range.shape == ref.shape
    assert op.range.partition == ref.partition
    assert op.range.weighting.const == pytest.approx(ref.weighting.const)
    assert op.range == projection_space(geometry, impl='pytorch')


# --- The torch path equals the NumPy path


@pytest.mark.parametrize('dtype', ['float64', 'float32'])
@pytest.mark.parametrize('mode', ['integrate', 'sample'])
@pytest.mark.parametrize('name', sorted(GEOMETRIES))
def test_forward_equals_numpy(name, mode, dtype):
    space, ref, op = make_ops(name, dtype, mode)
    mu = random_measure(space, 20, seed=1)
    out = op(mu)
    assert out in op.range
    assert isinstance(out.data, torch.Tensor)
    assert out.data.dtype == getattr(torch, dtype)
    assert_close(out, ref(mu), RTOL[dtype])
    # The parametrized (nonlinear) operator takes the same path.
    params = mu.to_parameters()
    assert_close(op.parametrized(20)(params), ref(mu), RTOL[dtype])


@pytest.mark.parametrize('name', sorted(GEOMETRIES))
def test_jacobian_adjoint_correlation_equal_numpy(name):
    space, ref, op = make_ops(name)
    mu = random_measure(space, 7, seed=2)
    params = mu.to_parameters()
    jac, jac_ref = (o.parametrized(7).derivative(params) for o in (op, ref))
    step = jac.domain.element([np.random.default_rng(3).normal(
        size=s.shape) for s in jac.domain])
    assert_close(jac(step), jac_ref(step), 1e-12)
    residual = ref(mu) - ref(random_measure(space, 5, seed=4))
    residual_t = op.range.element(residual.data)
    for got, want in zip(jac.adjoint(residual_t), jac_ref.adjoint(residual)):
        assert isinstance(got.data, np.ndarray)  # parameters stay on the host
        assert_close(got, want, 1e-12)
    points = np.random.default_rng(5).uniform(-4, 4, (30, space.ndim))
    values, grad = op.correlation(residual_t, points, gradient=True)
    values_ref, grad_ref = ref.correlation(residual, points, gradient=True)
    assert_close(values, values_ref, 1e-12)
    assert_close(grad, grad_ref, 1e-12)
    # NumPy data are accepted too (copied to the device).
    assert_close(op.correlation(residual.data, points), values_ref, 1e-12)


def test_large_configuration_in_chunks():
    """Enough atoms to take several chunks of the scatter."""
    from odl_atoms import projection_torch
    space, ref, op = make_ops('3d-axis')
    mu = random_measure(space, 1000, seed=6)
    old = projection_torch._CHUNK_VALUES
    projection_torch._CHUNK_VALUES = 20_000
    try:
        assert_close(op(mu), ref(mu), 1e-12)
    finally:
        projection_torch._CHUNK_VALUES = old


# --- Independent reference: ASTRA's pixel transform on pytorch spaces


def test_matches_astra_on_pytorch_spaces():
    space = SparseMeasureSpace([-6, -6], [6, 6])
    geometry = geometry_2d(72)
    mu = random_measure(space, 6)
    sigma = 0.4
    op = GaussianRayTransform(space, geometry, sigma, mode='sample',
                              dtype='float32', impl='pytorch')
    model = op(mu)
    vol = odl.uniform_discr([-8, -8], [8, 8], [256, 256], dtype='float32',
                            impl='pytorch')
    ray = tomo.RayTransform(vol, geometry)
    image = render_gaussians(odl.uniform_discr(vol.min_pt, vol.max_pt,
                                               vol.shape, dtype='float32'),
                             mu, sigma)
    astra = ray(vol.element(image.data))
    assert astra in op.range  # the same space: data can be subtracted
    diff = (astra - model).norm() / model.norm()
    assert diff < 3e-3  # measured 1.2e-3 (pixelisation, cf. test_operators)


# --- Linearity and ODL's diagnostics


def test_linear_on_measures():
    # The diagnostics need norms of measures: a space with a kernel width.
    space = SparseMeasureSpace([-6, -6], [6, 6], kernel_width=0.4)
    op = GaussianRayTransform(space, geometry_2d(), 0.4, impl='pytorch')
    mu, nu = random_measure(space, 4, 1), random_measure(space, 3, 2)
    assert_close(op(2.0 * mu - nu), 2.0 * op(mu) - op(nu), 1e-12)
    printed = run_quietly(lambda: odl.diagnostics.OperatorTest(
        op, operator_norm=10.0).linear())
    assert 'FAILED' not in printed, printed


def test_derivative_and_adjoint_operator_test():
    # 3D only (the separable outer products); the diagnostics take seconds.
    space, _, op = make_ops('3d-axis')
    atoms = op.parametrized(4)
    printed = run_quietly(lambda: odl.diagnostics.OperatorTest(
        atoms, operator_norm=20.0, tol=1e-5).derivative())
    assert 'FAILED' not in printed, printed
    jac = atoms.derivative(random_measure(space, 4, seed=11).to_parameters())
    printed = run_quietly(lambda: odl.diagnostics.OperatorTest(
        jac, operator_norm=20.0, tol=1e-8).adjoint())
    assert 'FAILED' not in printed, printed


# --- Devices, repr, errors


@pytest.mark.skipif(CUDA, reason='torch sees a CUDA device here')
@pytest.mark.parametrize('device', ['cuda', 'cuda:0'])
def test_cuda_without_cuda_is_clear_error(device):
    with pytest.raises(ValueError, match='no CUDA device'):
        make_ops('2d', device=device)


@pytest.mark.skipif(not CUDA, reason='needs a CUDA build of torch and a GPU')
@pytest.mark.parametrize('dtype', ['float64', 'float32'])
def test_cuda_equals_numpy(dtype):
    space, ref, op = make_ops('3d-axis', dtype, device='cuda')
    assert op.device.startswith('cuda:')
    mu = random_measure(space, 50, seed=7)
    out = op(mu)
    assert out.data.is_cuda
    assert_close(out, ref(mu), RTOL[dtype])


def test_bad_impl_and_device():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    with pytest.raises(ValueError, match="'numpy' or 'pytorch'"):
        GaussianRayTransform(space, geometry_2d(), 0.4, impl='jax')
    with pytest.raises(ValueError, match='CPU only'):
        GaussianRayTransform(space, geometry_2d(), 0.4, device='cuda')
    with pytest.raises(ValueError, match='torch device'):
        GaussianRayTransform(space, geometry_2d(), 0.4, impl='pytorch',
                             device='tpu!')


def test_nan_data_rejected_on_device():
    space, _, op = make_ops('2d')
    bad = op.range.zero()
    bad.data[0, 3] = float('nan')
    with pytest.raises(ValueError, match='1 NaN'):
        op.correlation(bad, [[0.0, 0.0]])


def test_repr_reproduces():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    op = GaussianRayTransform(space, geometry_2d(), 0.4, dtype='float32',
                              impl='pytorch')
    text = repr(op)
    assert "impl='pytorch'" in text and 'device' not in text
    namespace = {'SparseMeasureSpace': SparseMeasureSpace,
                 'GaussianRayTransform': GaussianRayTransform,
                 'Parallel2dGeometry': tomo.Parallel2dGeometry,
                 'nonuniform_partition': odl.nonuniform_partition,
                 'uniform_partition': odl.uniform_partition, 'array': np.array}
    rebuilt = eval(text, namespace)
    assert repr(rebuilt) == text and rebuilt.range == op.range
    assert 'impl' not in repr(GaussianRayTransform(space, geometry_2d(), 0.4))


def test_missing_torch_error_says_what_to_install(monkeypatch):
    # The module imports without torch (torch is imported on use, as the
    # package's convention wants, see test_learned); using it says what to do.
    monkeypatch.setitem(sys.modules, 'torch', None)  # import torch -> error
    monkeypatch.delitem(sys.modules, 'odl_atoms.projection_torch',
                        raising=False)
    module = importlib.import_module('odl_atoms.projection_torch')
    with pytest.raises(ImportError, match=r'odl_atoms\[learn\]'):
        module.check_torch_device('cpu')
    space = SparseMeasureSpace([-5, -5], [5, 5])
    with pytest.raises(ImportError, match=r'odl_atoms\[learn\]'):
        GaussianRayTransform(space, geometry_2d(), 0.4, impl='pytorch')
