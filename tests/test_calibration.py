"""Calibration from the data: noise model, atom width, atom intensity, factors.

Every estimator is checked on data with a known truth, built independently
of the estimator: the project's exact Gaussian-atom simulations
(`odl_atoms.simulate`), scaled to microscope units with a known intensity,
factors and backgrounds, and counted with Poisson (and Gaussian read)
noise drawn here; peak profiles written out with `scipy.stats.norm`; and
the abTEM multislice tilt series shipped in tests/data, compared with the
least-squares fit at its true atoms.
"""

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

import odl_atoms as oa
from odl_atoms.calibration import (OFFSETS, Calibration, NoiseModel,
                                   calibrate, column_bounds,
                                   estimate_intensity, estimate_noise,
                                   estimate_width, fit_forward_model,
                                   fit_peaks, fit_projections, integer_unit,
                                   projection_scales, refine_calibration)
from odl_atoms.errors import ValidationError
from odl_atoms.io import TiltSeries

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / 'tests' / 'data' / 'tiny_au5_vacancy_zone'

INTENSITY = 0.05                           # one atom, fraction of beam x A
SCALES = np.array([0.97, 1.07, 0.96])      # mean 1
BACKGROUNDS = np.array([0.001, 0.002, 0.0005])
ELECTRONS = 1e4                             # per pixel per unit of data
ROWS = 28                                   # image rows along the tilt axis


def _zone_axis_case(angles=(0, 45, 90), read_noise=0.0, gain=1.0, seed=0):
    """A 7 x 7 crystal with a vacancy as a microscope would record it.

    Returns ``(measured, series, truth)``: prepared profiles (the rows
    averaged), the images (the profile repeated along the tilt axis, each
    pixel counted), and the clean simulation (its ground truth).
    """
    phantom = oa.lattice_with_vacancy(spacing=2.04)
    clean = oa.simulate(phantom.measure, np.radians(angles), sigma=0.4,
                        detector_cell=0.29)
    m = len(angles)
    profile = INTENSITY * SCALES[:m, None] * clean.data + BACKGROUNDS[:m, None]
    rng = np.random.default_rng(seed)
    images = np.repeat(profile[:, None, :], ROWS, axis=1)
    counts = rng.poisson(ELECTRONS * images)
    images = gain * counts / ELECTRONS + rng.normal(0.0, read_noise,
                                                    images.shape)
    series = TiltSeries(images, np.radians(angles), pixel_size=0.29)
    measured = dataclasses.replace(
        clean, data=images.mean(axis=1) / gain, sigma=None, noise_std=None,
        pixels_averaged=ROWS, intensity_unit='fraction of beam')
    return measured, series, clean


# --- Noise model


def test_noise_model_formulas():
    model = NoiseModel(gain=2.0, read_noise=3.0)
    assert model.variance(5.0) == pytest.approx(2 * 5 + 9)
    assert model.std_of_mean(5.0, 4) == pytest.approx(np.sqrt(19 / 4))
    values = np.array([[3.0, 4.0], [2.0, 8.0]])   # above one electron (2)
    # Independent: the mean of the variances of values divided by 2 and 4.
    expected = np.sqrt(np.mean((2 * values + 9) / 3
                               / np.array([[2.0], [4.0]]) ** 2))
    assert model.effective_std(values, n=3, scale=[2.0, 4.0]) == \
        pytest.approx(expected)
    assert NoiseModel.from_dose(400.0).gain == pytest.approx(1 / 400)


def test_effective_std_is_the_rms_noise_of_averaged_counts():
    # Draw the noise of averaged Poisson-Gaussian pixels many times and
    # compare its mean square with the model's.
    rng = np.random.default_rng(3)
    mean = np.linspace(0.0, 50.0, 40)
    gain, read, n = 0.5, 1.5, 16
    draws = (gain * rng.poisson(mean / gain, (400, n, 40))
             + rng.normal(0, read, (400, n, 40))).mean(axis=1)
    empirical = np.sqrt(np.mean((draws - mean) ** 2))
    model = NoiseModel(gain, read)
    assert model.effective_std(mean, n) == pytest.approx(empirical, rel=0.02)


@pytest.mark.parametrize('gain, read_noise', [(1.0, 0.0), (1.0, 0.004)])
def test_estimate_noise_from_images(gain, read_noise):
    measured, series, _ = _zone_axis_case(read_noise=read_noise, gain=gain)
    model = estimate_noise(series)
    # 3 images of 28 x 80 pixels: a standard error of about 5 %.
    assert model.gain == pytest.approx(gain / ELECTRONS, rel=0.15)
    assert model.read_noise == pytest.approx(read_noise, abs=0.0015)


def test_estimate_noise_of_smooth_blobs_with_read_noise():
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:96, 0:96]
    clean = np.stack([sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 18)
                          for cx, cy in rng.uniform(8, 88, (40, 2)))
                      for _ in range(4)])
    noisy = 3.0 * rng.poisson(200 * clean) / 200 + rng.normal(0, 0.03,
                                                             clean.shape)
    model = estimate_noise(noisy)
    assert model.gain == pytest.approx(3.0 / 200, rel=0.1)
    assert model.read_noise == pytest.approx(0.03, rel=0.15)


def test_estimate_noise_from_prepared_profiles():
    # The profiles average ROWS pixels: the model returned is per pixel.
    measured, _, _ = _zone_axis_case()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = estimate_noise(measured)
    assert model.gain == pytest.approx(1 / ELECTRONS, rel=0.15)


def test_noise_bad_inputs():
    with pytest.raises(ValidationError, match='gain must be'):
        NoiseModel(-1.0, 0.0)
    with pytest.raises(ValidationError, match='noise-free'):
        NoiseModel(0.0, 0.0)
    with pytest.raises(ValidationError, match='too small'):
        estimate_noise(np.ones((2, 4, 4)))
    with pytest.raises(ValidationError, match='constant'):
        estimate_noise(np.ones((2, 16, 16)))
    with pytest.raises(TypeError, match='TiltSeries'):
        estimate_noise(object())


# --- Peak fits


def _profile(edges, peaks, sigma, background=0.0):
    h = np.diff(edges)
    return background + sum(a * np.diff(norm.cdf(edges, c, sigma)) / h
                            for a, c in peaks)


def test_fit_peaks_recovers_profile_peaks_with_noise():
    edges = np.linspace(-10, 10, 161)
    peaks = [(1.0, -6.0), (3.0, -3.5), (2.0, -1.0), (5.0, 2.0), (1.0, 5.5)]
    clean = _profile(edges, peaks, 0.45, background=0.05)
    rng = np.random.default_rng(1)
    var = np.full(clean.shape, 0.01 ** 2)
    fit = fit_peaks(clean + rng.normal(0, 0.01, clean.shape), edges,
                    variance=var)
    assert fit.n_peaks == 5
    assert fit.sigma == pytest.approx(0.45, rel=0.02)
    assert fit.areas == pytest.approx([a for a, _ in peaks], abs=0.03)
    assert fit.centres[:, 0] == pytest.approx([c for _, c in peaks], abs=0.02)
    assert fit.background == pytest.approx(0.05, abs=0.003)
    assert fit.reduced_misfit == pytest.approx(1.0, abs=0.3)
    # The standard errors describe the scatter (within a factor of 2).
    assert np.all(np.abs(fit.areas - [a for a, _ in peaks])
                  < 4 * fit.area_errors)


def test_fit_peaks_on_an_image():
    edges = [np.linspace(-6, 6, 49), np.linspace(-5, 5, 41)]
    peaks = [(1.0, (-3.0, -2.0)), (2.0, (0.0, 1.5)), (4.0, (2.5, -1.0))]
    h = [np.diff(e) for e in edges]
    clean = sum(a * np.outer(np.diff(norm.cdf(edges[0], c[0], 0.5)) / h[0],
                             np.diff(norm.cdf(edges[1], c[1], 0.5)) / h[1])
                for a, c in peaks)
    fit = fit_peaks(clean, edges)
    assert fit.n_peaks == 3
    assert fit.sigma == pytest.approx(0.5, rel=1e-3)
    order = np.argsort(fit.areas)
    assert fit.areas[order] == pytest.approx([1.0, 2.0, 4.0], rel=1e-3)
    assert fit.centres[order] == pytest.approx(
        np.array([c for _, c in peaks]), abs=1e-3)


def test_fit_peaks_bad_inputs():
    edges = np.linspace(-1, 1, 11)
    with pytest.raises(ValidationError, match='n \\+ 1 cell boundaries'):
        fit_peaks(np.ones(5), edges)
    with pytest.raises(ValidationError, match='NaN'):
        fit_peaks(np.full(10, np.nan), edges)
    with pytest.raises(ValidationError, match='no peak'):
        fit_peaks(np.zeros(10), edges, variance=np.ones(10))
    with pytest.raises(ValidationError, match='fix_sigma needs'):
        fit_peaks(np.ones(10), edges, fix_sigma=True)


# --- Width and intensity


def test_width_of_the_zone_axis_projections():
    measured, _, _ = _zone_axis_case()
    var = NoiseModel(1 / ELECTRONS, 0).variance(measured.data) / ROWS
    width = estimate_width(fit_projections(measured, variance=var))
    assert width.used.all()
    assert width.sigma == pytest.approx(0.4, rel=0.01)
    assert abs(width.sigma - 0.4) < 4 * width.sigma_error + 1e-3


def test_width_warns_without_resolved_columns():
    measured, _, _ = _zone_axis_case(angles=(10, 70, 130))
    with pytest.warns(UserWarning, match='no projection has resolved'):
        width = estimate_width(fit_projections(measured))
    assert width.sigma > 0.4     # an upper bound


def test_calibrate_asks_for_the_width_without_resolved_columns():
    measured, series, _ = _zone_axis_case(angles=(10, 70, 130))
    with pytest.raises(ValidationError, match='give it .*sigma'):
        calibrate(measured, images=series)


def test_integer_unit_finds_one_atom_columns():
    rng = np.random.default_rng(2)
    counts = np.concatenate([np.arange(1, 8), np.arange(6, 0, -1),
                             np.full(7, 7)])
    areas = 0.3 * counts * (1 + 0.02 * rng.standard_normal(counts.size))
    unit = integer_unit(areas, 0.003)
    assert unit.decided
    assert unit.counts.tolist() == counts.tolist()
    assert unit.unit == pytest.approx(0.3, rel=0.01)


def test_integer_unit_does_not_collapse_to_tiny_units():
    # Counts 2 and 3 only: 0.3 explains them; 0.15, 0.1, ... would too.
    areas = 0.3 * np.array([2, 3, 3, 2, 3, 2, 2, 3])
    unit = integer_unit(areas, 0.003)
    assert unit.unit == pytest.approx(0.3, rel=0.01)
    assert unit.evidence > 0


def test_integer_unit_bounds_and_offsets_bad_inputs():
    areas = 0.3 * np.array([1, 2, 3, 2, 1])
    with pytest.raises(ValidationError, match='max_counts'):
        integer_unit(areas, max_counts=0)
    with pytest.raises(ValidationError, match='max_counts'):
        integer_unit(areas, max_counts=[3, 3])
    with pytest.raises(ValidationError, match='offsets'):
        integer_unit(areas, offsets=[1.0])
    with pytest.raises(ValidationError, match='max_counts'):
        estimate_intensity([], totals=[1.0, 1.0], max_counts=[3, 3, 3])


def test_integer_unit_with_offsets_keeps_a_proportional_comb():
    # Areas exactly proportional to the counts: the offset family must not
    # move the unit or the counts (an offset of 0 is in it).
    rng = np.random.default_rng(5)
    counts = np.concatenate([np.arange(1, 8), np.arange(6, 0, -1),
                             np.full(7, 7)])
    areas = 0.3 * counts * (1 + 0.02 * rng.standard_normal(counts.size))
    unit = integer_unit(areas, 0.003, max_counts=7, offsets=OFFSETS)
    assert unit.counts.tolist() == counts.tolist()
    assert unit.unit == pytest.approx(0.3, rel=0.01)


def test_equal_columns_cannot_decide_the_intensity():
    measured, _, _ = _zone_axis_case(angles=(0,))
    measured = dataclasses.replace(measured, positions=None, weights=None,
                                   species=None)
    # A perfect crystal: every column of the 0 degree view has 7 atoms.
    phantom = oa.square_lattice(spacing=2.04)
    clean = oa.simulate(phantom.measure, [0.0], sigma=0.4, detector_cell=0.29)
    data = INTENSITY * clean.data
    fits = fit_projections(dataclasses.replace(clean, data=data),
                           sigma=0.4, fix_sigma=True)
    with pytest.warns(UserWarning, match='cannot tell whether it is one '
                                         'atom or several'):
        estimate = estimate_intensity(fits)
    assert not estimate.decided
    with pytest.warns(UserWarning, match='--intensity'):
        calibrate(dataclasses.replace(clean, data=data, sigma=None,
                                      noise_std=None), noise=(1e-6, 0.0))


def test_projection_scales_and_bad_areas():
    assert projection_scales([2.0, 4.0]).tolist() == pytest.approx(
        [2 / 3, 4 / 3])
    with pytest.raises(ValidationError, match='no signal'):
        projection_scales([1.0, -1.0])
    with pytest.raises(ValidationError, match='positive'):
        integer_unit([1.0, -2.0])
    with pytest.raises(ValidationError, match='no areas'):
        integer_unit([])


# --- calibrate and Calibration


def test_calibrate_recovers_the_simulated_truth():
    measured, series, clean = _zone_axis_case(read_noise=0.002)
    cal = calibrate(measured, images=series)
    assert cal.sigma == pytest.approx(0.4, rel=0.01)
    assert cal.intensity == pytest.approx(INTENSITY, rel=0.01)
    assert cal.scales == pytest.approx(SCALES, abs=0.005)
    assert cal.backgrounds == pytest.approx(BACKGROUNDS, abs=2e-4)
    assert cal.atoms == pytest.approx(48, abs=0.5)
    assert cal.noise.gain == pytest.approx(1 / ELECTRONS, rel=0.1)
    assert cal.noise.read_noise == pytest.approx(0.002, abs=0.001)
    # Every value says where it came from.
    assert set(cal.sources) == {'sigma', 'intensity', 'scales',
                                'backgrounds', 'noise'}
    text = repr(cal)
    assert float(re.search(r'sigma=([0-9.]+)', text).group(1)) == \
        pytest.approx(cal.sigma, rel=1e-5)
    assert 'resolved columns' in text and 'isolated peak areas' in text
    json.dumps(cal.to_dict())


def test_apply_gives_atom_units_and_the_noise_level():
    measured, series, clean = _zone_axis_case()
    cal = calibrate(measured, images=series)
    calibrated = cal.apply(measured)
    # Back to microscope units: the inverse of the division.
    back = calibrated.data * (cal.intensity * cal.scales)[:, None] + \
        cal.backgrounds[:, None]
    assert back == pytest.approx(measured.data, rel=1e-12, abs=1e-15)
    # In atom units the data are the simulation's, up to the noise.
    residual = calibrated.data - clean.data
    assert np.sqrt(np.mean(residual ** 2)) == pytest.approx(
        calibrated.noise_std, rel=0.1)
    assert calibrated.sigma == cal.sigma
    assert calibrated.intensity_unit == 'atoms'
    assert json.loads(calibrated.source)['calibration']['sigma']['value'] == \
        cal.sigma
    problem = oa.Problem(calibrated.operator(), calibrated.element(),
                         noise_std=calibrated.noise_std)
    assert problem.expected_atoms() == pytest.approx(48, abs=0.5)
    with pytest.raises(ValidationError, match='calibrated already'):
        cal.apply(calibrated)
    with pytest.raises(ValidationError, match='3 projections'):
        cal.apply(dataclasses.replace(measured, data=measured.data[:2],
                                      angles=measured.angles[:2],
                                      angle_min=None, angle_max=None))


def test_given_values_are_kept():
    measured, _, _ = _zone_axis_case()
    cal = calibrate(measured, sigma=0.41, intensity=0.06, noise=(2e-4, 0.0),
                    scales=1, backgrounds=0)
    assert (cal.sigma, cal.intensity) == (0.41, 0.06)
    assert cal.scales.tolist() == [1.0, 1.0, 1.0]
    assert cal.backgrounds.tolist() == [0.0, 0.0, 0.0]
    assert cal.noise == NoiseModel(2e-4, 0.0)
    assert cal.sources['sigma'] == cal.sources['intensity'] == 'given'


def test_calibrate_bad_inputs():
    measured, series, _ = _zone_axis_case()
    with pytest.raises(TypeError, match='ProjectionData'):
        calibrate(measured.data)
    with pytest.raises(TypeError, match='TiltSeries'):
        calibrate(measured, images=measured.data)
    short = TiltSeries(series.images[:2], series.angles[:2], 0.29)
    with pytest.raises(ValidationError, match='2 images for 3 projections'):
        calibrate(measured, images=short)
    with pytest.raises(TypeError, match='gain, read_noise'):
        calibrate(measured, noise=0.1)
    with pytest.raises(ValidationError, match='sigma must be a positive'):
        Calibration(sigma=-1.0, intensity=1.0, scales=[1.0],
                    backgrounds=[0.0])


@pytest.mark.slow
def test_calibrate_a_nanoparticle():
    # 3D: an fcc octahedron tilted about [001]; 0 degrees is a zone axis.
    phantom = oa.nanoparticle('octahedron', size=5)
    angles = np.radians([-60, -30, 0, 30, 60])
    clean = oa.simulate(phantom.measure, angles, sigma=0.45,
                        detector_cell=0.25)
    scales = np.array([1.02, 0.97, 1.04, 0.99, 0.98])
    y = 0.01 * scales[:, None, None] * clean.data
    noisy = np.random.default_rng(4).poisson(ELECTRONS * y) / ELECTRONS
    measured = dataclasses.replace(clean, data=noisy, sigma=None,
                                   noise_std=None)
    cal = calibrate(measured)
    assert cal.sigma == pytest.approx(0.45, rel=0.02)
    assert cal.intensity == pytest.approx(0.01, rel=0.02)
    assert cal.scales == pytest.approx(scales, abs=0.01)
    assert cal.noise.gain == pytest.approx(1 / ELECTRONS, rel=0.1)


# --- At given atoms


def test_refine_calibration_at_the_true_atoms():
    measured, _, clean = _zone_axis_case()
    op = dataclasses.replace(clean, sigma=0.3).operator()
    var = NoiseModel(1 / ELECTRONS, 0.0).variance(measured.data) / ROWS
    fit = refine_calibration(op, measured.data, clean.positions,
                             variance=var)
    assert fit.sigma == pytest.approx(0.4, abs=3 * fit.sigma_error + 1e-4)
    assert fit.intensity == pytest.approx(INTENSITY,
                                          abs=3 * fit.intensity_error)
    assert fit.scales == pytest.approx(SCALES, abs=0.003)
    assert fit.backgrounds == pytest.approx(BACKGROUNDS, abs=1e-4)
    # Weighted by the true noise: the misfit is the noise's.
    assert fit.reduced_misfit == pytest.approx(1.0, abs=0.3)
    # One intensity and no backgrounds cannot fit these data as well.
    plain = fit_forward_model(op, measured.data, clean.positions,
                              variance=var, model='gaussian')
    assert plain.reduced_misfit > 5 * fit.reduced_misfit


def test_refined_calibration_moves_to_the_atoms_fit():
    measured, series, clean = _zone_axis_case()
    cal = dataclasses.replace(calibrate(measured, images=series),
                              sigma=0.37, intensity=0.055)
    refined = cal.refined(measured, clean.ground_truth())
    assert refined.sigma == pytest.approx(0.4, rel=0.005)
    assert refined.intensity == pytest.approx(INTENSITY, rel=0.005)
    assert 'refined' in refined.sources['sigma']
    with pytest.raises(ValidationError, match='needs atoms'):
        cal.refined(measured, np.zeros((0, 2)))


def test_refined_keeps_a_given_width_and_intensity():
    # reconstruct's calibration rounds refine at the atoms found; a width
    # and an intensity the user gave stay (the rounds had moved a given
    # width of 0.34 to 0.311 on the shipped abTEM case).
    measured, series, clean = _zone_axis_case()
    cal = calibrate(measured, images=series, sigma=0.37, intensity=0.055)
    refined = cal.refined(measured, clean.ground_truth())
    assert (refined.sigma, refined.intensity) == (0.37, 0.055)
    assert refined.sources['sigma'] == refined.sources['intensity'] == 'given'
    # The factors take up the intensity the data hold: the same model as a
    # free fit of the intensity at the given width.
    free = dataclasses.replace(cal, sources=dict(
        cal.sources, intensity='estimated')).refined(
            measured, clean.ground_truth())
    assert free.sigma == 0.37 and free.intensity != 0.055
    assert refined.intensity * refined.scales == pytest.approx(
        free.intensity * free.scales, rel=1e-12)
    assert refined.backgrounds == pytest.approx(free.backgrounds, rel=1e-12)


def test_forward_models_recover_what_made_the_data():
    # Data made of a core and a tail Gaussian per atom, and of atoms of two
    # intensities: the matching models fit them to the noise level.
    phantom = oa.lattice_with_vacancy(shape=(4, 4), spacing=2.04)
    angles = np.radians([0, 45, 90])
    core = oa.simulate(phantom.measure, angles, sigma=0.35, detector_cell=0.2)
    tail = oa.simulate(phantom.measure, angles, sigma=1.0, detector_cell=0.2)
    rng = np.random.default_rng(5)
    std = 0.002
    data = 0.8 * core.data + 0.2 * tail.data
    noisy = data + rng.normal(0, std, data.shape)
    op = dataclasses.replace(core, sigma=0.4).operator()
    var = np.full(data.shape, std ** 2)
    two = fit_forward_model(op, noisy, core.positions, variance=var,
                            model='two_gaussians')
    one = fit_forward_model(op, noisy, core.positions, variance=var,
                            model='scaled')
    assert two.reduced_misfit == pytest.approx(1.0, abs=0.25)
    assert one.reduced_misfit > 3
    assert two.parameters['sigma_core'] == pytest.approx(0.35, rel=0.03)
    assert two.parameters['sigma_tail'] == pytest.approx(1.0, rel=0.1)
    assert two.parameters['tail_fraction'] == pytest.approx(0.2, abs=0.03)

    # Atoms of two intensities, seen from five generic angles (three zone
    # axes would see only column sums).
    many = oa.simulate(phantom.measure, np.radians([5, 40, 75, 110, 145]),
                       sigma=0.35, detector_cell=0.2)
    weights = np.where(np.arange(many.positions.shape[0]) % 3 == 0, 1.3, 1.0)
    op35 = many.operator()
    data = op35.project(many.positions, weights).reshape(many.data.shape)
    noisy = data + rng.normal(0, std, data.shape)
    free = fit_forward_model(dataclasses.replace(many, sigma=0.4).operator(),
                             noisy, many.positions,
                             variance=np.full(data.shape, std ** 2),
                             model='free_intensities')
    assert free.reduced_misfit == pytest.approx(1.0, abs=0.25)
    relative = np.array(free.parameters['atom_intensities'])
    assert relative == pytest.approx(weights / weights.mean(), abs=0.03)
    with pytest.raises(ValidationError, match='unknown model'):
        fit_forward_model(op, noisy, core.positions, model='magic')


def _two_species_case(light, seed=1):
    """A 5 x 5 crystal with a vacancy, a third of its columns of intensity
    0.05 (Au-like) and the rest ``0.05 * light``, at six angles, recorded as
    images (Poisson counts of 1e5 electrons per unit) and prepared."""
    phantom = oa.lattice_with_vacancy(shape=(5, 5), spacing=2.04)
    angles = np.radians([0, 30, 60, 90, 120, 150])
    clean = oa.simulate(phantom.measure, angles, sigma=0.4,
                        detector_cell=0.29)
    n = clean.positions.shape[0]
    rng = np.random.default_rng(seed)
    heavy = rng.permutation(n) < n // 3
    op = clean.operator()
    data = op.project(clean.positions, np.where(heavy, 1.0, light))
    images = np.repeat((INTENSITY * data.reshape(clean.data.shape)
                        + 0.001)[:, None, :], ROWS, axis=1)
    images = rng.poisson(1e5 * images) / 1e5
    series = TiltSeries(images, angles, pixel_size=0.29)
    return clean.positions, heavy, oa.prepare_projections(series, ndim=2), \
        series


def test_species_told_apart_by_their_fitted_intensities():
    from odl_atoms.calibration import fit_species

    # Au- and Ag-like columns (intensity ratio 0.45, about (47/79)^1.7):
    # every column gets its species, each species its intensity.
    positions, heavy, measured, series = _two_species_case(0.45)
    cal = calibrate(measured, images=series)
    op = dataclasses.replace(measured, sigma=cal.sigma).operator()
    species = fit_species(op, measured.data, positions)
    np.testing.assert_array_equal(species.labels, heavy.astype(int))
    np.testing.assert_allclose(species.intensities,
                               [0.45 * INTENSITY, INTENSITY], rtol=0.02)
    assert species.separation > 10
    # One species: the two clusters are noise, and the separation says so.
    positions, heavy, measured, series = _two_species_case(1.0)
    species = fit_species(op, measured.data, positions)
    assert species.separation < 5
    np.testing.assert_allclose(species.intensities, INTENSITY, rtol=0.01)
    with pytest.raises(ValidationError, match='n_species'):
        fit_species(op, measured.data, positions, n_species=1)


def test_refine_bad_inputs():
    measured, _, clean = _zone_axis_case()
    op = clean.operator()
    with pytest.raises(ValidationError, match='positions must have shape'):
        refine_calibration(op, measured.data, np.zeros((3, 3)))
    with pytest.raises(ValidationError, match='data have shape'):
        refine_calibration(op, measured.data[:2], clean.positions)
    with pytest.raises(ValidationError, match='NaN'):
        refine_calibration(op, np.full(measured.data.shape, np.nan),
                           clean.positions)


# --- abTEM multislice (tests/data)


@pytest.mark.slow
def test_abtem_tilt_series_against_the_fit_at_its_atoms():
    # The reference is what least squares at the true columns gives (the
    # atom model is not exact for multislice HAADF: columns channel).
    from odl_atoms.io import (prepare_projections, read_atoms,
                              read_tilt_series)

    series = read_tilt_series(TINY / f'{TINY.name}.hspy')
    measured = prepare_projections(series, ndim=2)
    truth = read_atoms(TINY / f'{TINY.name}_truth.extxyz', ndim=2)
    meta = json.loads((TINY / f'{TINY.name}.json').read_text())
    true_noise = NoiseModel.from_dose(meta['detector']['dose'])
    cal = calibrate(measured, images=series)
    op = dataclasses.replace(measured, sigma=0.4).operator()
    ref = refine_calibration(
        op, measured.data, truth.positions,
        variance=true_noise.variance(measured.data) / measured.pixels_averaged)
    assert cal.sigma == pytest.approx(ref.sigma, rel=0.05)
    assert cal.intensity == pytest.approx(ref.intensity, rel=0.08)
    assert cal.scales == pytest.approx(ref.scales, abs=0.02)
    # The noise of the averaged profiles, against the dose's.
    assert cal.noise_std(measured) == pytest.approx(
        true_noise.effective_std(measured.data, measured.pixels_averaged,
                                 cal.intensity * cal.scales), rel=0.25)


def _tiny_abtem_case():
    from odl_atoms.io import read_atoms, read_tilt_series

    series = read_tilt_series(TINY / f'{TINY.name}.hspy')
    truth = read_atoms(TINY / f'{TINY.name}_truth.extxyz', ndim=2)
    meta = json.loads((TINY / f'{TINY.name}.json').read_text())
    return series, truth, meta


def test_column_bounds_hold_for_the_true_columns_of_abtem_data():
    # The atoms of each fitted peak, counted from abTEM's true columns
    # (each assigned to the nearest peak), never exceed the bound; at the
    # zone axes of a square crystal the bound is the longest column (at 45
    # degrees the vacancy shortens the longest diagonal to 4).
    from odl_atoms.calibration import _edges
    from odl_atoms.io import prepare_projections

    series, truth, _ = _tiny_abtem_case()
    measured = prepare_projections(series, ndim=2)
    fits = [fit_peaks(d, _edges(measured), sigma=0.33, fix_sigma=True)
            for d in measured.data]
    bounds = column_bounds(fits, measured.angles)
    longest = []
    for theta, fit in zip(measured.angles, fits):
        u = truth.positions @ np.array([np.cos(theta), np.sin(theta)])
        peak = np.argmin(np.abs(u[:, None] - fit.centres[None, :, 0]), axis=1)
        longest.append(np.bincount(peak).max())
    assert np.all(np.array(longest) <= bounds)
    assert bounds.tolist() == [5, 5, 5]
    assert longest == [5, 4, 5]
    # Projections closer than 30 degrees do not bound each other.
    assert np.isinf(column_bounds(fits[:1] * 2, [0.0, 0.3])).all()


def test_counts_with_an_offset_and_a_gain_calibrate_like_the_beam_fraction():
    # The shipped abTEM case (fraction of the beam, Poisson noise at its
    # dose) recorded as detector counts: gain 0.8 counts per electron, an
    # offset of 30 counts and Gaussian read noise of 3 counts. Both must
    # give the width and the intensity of the least-squares fit at the
    # true columns, and the number of atoms (a finer comb of the channelling
    # columns' areas gave 25 atoms and an intensity 5 % low).
    from odl_atoms.io import prepare_projections

    series, truth, meta = _tiny_abtem_case()
    gain, offset, read_noise = 0.8, 30.0, 3.0
    per_unit = gain * meta['detector']['dose']      # counts per unit of beam
    rng = np.random.default_rng(3)
    images = np.asarray(series.images, dtype=float)
    counts = dataclasses.replace(
        series, images=per_unit * images + offset + rng.normal(
            0.0, read_noise, images.shape), intensity_unit='counts')
    results = []
    for stack, unit in ((series, 1.0), (counts, per_unit)):
        measured = prepare_projections(stack, ndim=2)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            cal = calibrate(measured, images=stack)
        ref = cal.refined(measured, truth)
        assert cal.sigma == pytest.approx(ref.sigma, rel=0.05)
        assert cal.intensity == pytest.approx(ref.intensity, rel=0.03)
        assert round(cal.atoms) == truth.n_atoms
        results.append((measured.background / unit, cal.sigma,
                        cal.intensity / unit))
    (bg_f, sigma_f, intensity_f), (bg_c, sigma_c, intensity_c) = results
    # prepare removes the offset with the vacuum level (a tenth of the
    # read noise), and the calibration is the same in both units.
    assert bg_c * per_unit == pytest.approx(offset + bg_f * per_unit,
                                            abs=0.1 * read_noise)
    assert sigma_c == pytest.approx(sigma_f, rel=0.02)
    assert intensity_c == pytest.approx(intensity_f, rel=0.02)
