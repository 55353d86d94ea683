"""Tests of the noise models against their statistical definitions.

Tolerances are several standard errors of the estimated quantities, worked
out for the sample sizes used (fixed seeds keep the tests deterministic).
"""

import numpy as np
import odl
import pytest
from odl.applications import tomo

from odl_atoms.geometry import projection_space
from odl_atoms.noise import add_noise, gaussian_noise, noise_std, poisson_noise


def space_2d(dtype='float64'):
    # Detector cells of 12 / 48 = 0.25 angstrom.
    geometry = tomo.Parallel2dGeometry(odl.uniform_partition(0, np.pi, 40),
                                       odl.uniform_partition(-6, 6, 48))
    return projection_space(geometry, dtype)


def space_3d():
    # Detector cells of (14 / 28) x (12 / 24) = 0.25 square angstrom.
    geometry = tomo.Parallel3dAxisGeometry(
        odl.nonuniform_partition([-1.0, -0.2, 0.5, 1.1]),
        odl.uniform_partition([-7, -6], [7, 6], (28, 24)))
    return projection_space(geometry)


def space_euler():
    # Two angle axes; detector cells of (14 / 10) x (12 / 8) = 2.1.
    geometry = tomo.Parallel3dEulerGeometry(
        odl.uniform_partition([0, 0.2], [np.pi, 1.2], (3, 2)),
        odl.uniform_partition([-7, -6], [7, 6], (10, 8)))
    return projection_space(geometry)


def smooth_data(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 3.0, shape)


# --- noise_std


def test_noise_std_formula():
    data = smooth_data((30, 40))
    level = 0.03
    expected = level * np.sqrt(np.sum(data ** 2)) / np.sqrt(data.size)
    assert noise_std(data, level) == pytest.approx(expected, rel=1e-12)
    # Same for an ODL element; the space's weighting does not enter.
    space = space_2d()
    elem = space.element(smooth_data(space.shape))
    arr = elem.data
    assert noise_std(elem, 0.1) == pytest.approx(
        0.1 * np.linalg.norm(arr.ravel()) / np.sqrt(arr.size), rel=1e-12)


def test_noise_std_rejects_bad_level():
    for level in (-0.1, float('nan'), float('inf'), '0.1'):
        with pytest.raises(ValueError, match='level'):
            noise_std(np.ones(3), level)


# --- Gaussian noise


def test_gaussian_noise_statistics():
    data = smooth_data((500, 400))
    level = 0.05
    std = level * np.sqrt(np.mean(data ** 2))
    noise = gaussian_noise(data, level, seed=1) - data
    n = noise.size
    # Mean within 5 standard errors, std within 5 standard errors of s.
    assert abs(noise.mean()) < 5 * std / np.sqrt(n)
    assert abs(noise.std() - std) < 5 * std / np.sqrt(2 * n)
    # Relative L2 size of the noise is the level.
    rel = np.linalg.norm(noise) / np.linalg.norm(data)
    assert rel == pytest.approx(level, rel=0.01)
    # White: neighbouring values are uncorrelated.
    corr = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
    assert abs(corr) < 5 / np.sqrt(n)


def test_gaussian_noise_on_elements_keeps_space_and_dtype():
    space = space_2d('float32')
    clean = space.element(smooth_data(space.shape).astype('float32'))
    noisy = gaussian_noise(clean, 0.1, seed=0)
    assert noisy in space
    assert noisy.space.dtype == np.float32
    assert noisy is not clean
    assert not np.array_equal(noisy.data, clean.data)
    # The input is untouched.
    assert np.array_equal(clean.data,
                          smooth_data(space.shape).astype('float32'))


def test_gaussian_noise_seeds():
    data = smooth_data((20, 30))
    a = gaussian_noise(data, 0.1, seed=7)
    b = gaussian_noise(data, 0.1, seed=7)
    c = gaussian_noise(data, 0.1, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # A Generator is drawn from: same state, same noise; it advances.
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(gaussian_noise(data, 0.1, seed=rng), a)
    assert not np.allclose(gaussian_noise(data, 0.1, seed=rng), a)


def test_level_zero_returns_equal_copy():
    data = smooth_data((5, 6))
    out = gaussian_noise(data, 0.0, seed=0)
    assert out is not data
    np.testing.assert_array_equal(out, data)
    out[0, 0] = -1
    assert data[0, 0] != -1

    space = space_2d()
    elem = space.element(smooth_data(space.shape))
    out = gaussian_noise(elem, 0)
    assert out is not elem and out in space
    np.testing.assert_array_equal(out.data, elem.data)


def test_gaussian_noise_rejects_bad_data():
    with pytest.raises(ValueError, match='NaN'):
        gaussian_noise(np.array([1.0, np.nan]), 0.1)
    with pytest.raises(ValueError, match='empty'):
        gaussian_noise(np.zeros((0, 3)), 0.1)
    with pytest.raises(TypeError, match='real'):
        gaussian_noise(np.array(['a', 'b']), 0.1)


# --- Poisson noise


def test_poisson_noise_mean_and_variance():
    values = np.array([0.2, 1.0, 4.0])
    data = np.repeat(values, 200_000).reshape(3, -1)
    dose, cell = 30.0, 0.5
    noisy = poisson_noise(data, dose, seed=2, cell=cell)
    scale = dose * cell
    for row, y in zip(noisy, values):
        lam = scale * y
        n = row.size
        # Counts are integers.
        counts = row * scale
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
        # Mean preserved, variance y / (dose * cell); 5 standard errors.
        assert abs(row.mean() - y) < 5 * np.sqrt(y / scale / n)
        var_err = np.sqrt((lam + 2 * lam ** 2) / n) / scale ** 2
        assert abs(row.var() - y / scale) < 5 * var_err


@pytest.mark.parametrize('make_space, cell', [(space_2d, 0.25),
                                              (space_3d, 0.25),
                                              (space_euler, 2.1)])
def test_poisson_noise_cell_from_partition(make_space, cell):
    space = make_space()
    clean = space.element(smooth_data(space.shape))
    dose = 8.0
    noisy = poisson_noise(clean, dose, seed=0)
    assert noisy in space
    # Only with the right cell size are all values whole counts.
    counts = noisy.data * dose * cell
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert np.any(np.abs(noisy.data * dose * cell * 1.1
                         - np.round(noisy.data * dose * cell * 1.1)) > 0.01)
    # An explicit cell overrides the partition.
    noisy = poisson_noise(clean, dose, seed=0, cell=1.0)
    np.testing.assert_allclose(noisy.data * dose, np.round(noisy.data * dose),
                               atol=1e-9)


def test_poisson_noise_errors():
    with pytest.raises(ValueError, match='negative'):
        poisson_noise(np.array([[1.0, -0.5]]), 10.0, cell=1.0)
    with pytest.raises(ValueError, match='cell'):
        poisson_noise(np.ones((2, 3)), 10.0)
    for dose in (0, -1.0, float('nan')):
        with pytest.raises(ValueError, match='dose'):
            poisson_noise(np.ones((2, 3)), dose, cell=1.0)
    with pytest.raises(ValueError, match='cell'):
        poisson_noise(np.ones((2, 3)), 1.0, cell=0.0)


def test_poisson_noise_seeds():
    data = smooth_data((20, 30))
    a = poisson_noise(data, 5.0, seed=3, cell=1.0)
    np.testing.assert_array_equal(a, poisson_noise(data, 5.0, seed=3, cell=1.0))
    assert not np.array_equal(a, poisson_noise(data, 5.0, seed=4, cell=1.0))


# --- Both


def test_add_noise_matches_single_models_and_returns_std():
    space = space_2d()
    clean = space.element(smooth_data(space.shape))
    noisy, std = add_noise(clean, level=0.02, seed=5)
    assert std == pytest.approx(
        0.02 * np.linalg.norm(clean.data) / np.sqrt(clean.size))
    np.testing.assert_array_equal(noisy.data,
                                  gaussian_noise(clean, 0.02, seed=5).data)
    noisy, std = add_noise(clean, dose=3.0, seed=5)
    assert std is None
    np.testing.assert_array_equal(noisy.data,
                                  poisson_noise(clean, 3.0, seed=5).data)
    noisy, std = add_noise(clean)
    assert std is None and noisy is not clean
    np.testing.assert_array_equal(noisy.data, clean.data)


def test_add_noise_both_variances_add():
    values = np.array([0.5, 2.0])
    data = np.repeat(values, 200_000).reshape(2, -1)
    dose, cell, level = 20.0, 0.5, 0.1
    noisy, std = add_noise(data, level=level, dose=dose, seed=9, cell=cell)
    # The Gaussian part is relative to the clean data.
    assert std == pytest.approx(level * np.sqrt(np.mean(data ** 2)))
    for row, y in zip(noisy, values):
        expected = y / (dose * cell) + std ** 2
        assert abs(row.mean() - y) < 5 * np.sqrt(expected / row.size)
        assert row.var() == pytest.approx(expected, rel=0.02)
