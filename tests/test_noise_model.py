"""Tests of the noise model in the data term and of the data-scale messages.

Independent references: the expected squared norm of simulated noise
(Monte Carlo over seeds), the data's integral computed here from the array,
and the calibration's noise model against the dose of the simulation.
"""

import warnings

import numpy as np
import pytest

import odl_atoms as oa
from odl_atoms.solvers.sirt import SIRT


def lattice_data(scale=1.0, angles=(0, 45, 90)):
    phantom = oa.defect_phantom('perfect', shape=(3, 3))
    measured = oa.simulate(phantom.measure, np.radians(angles), 0.43,
                           n_detector=64)
    return phantom, measured, scale * np.asarray(measured.data)


# --- SIRT + picking that finds nothing says so


def test_sirt_finds_nothing_in_microscope_units_and_says_why():
    phantom, measured, data = lattice_data(scale=0.004)   # fraction of beam
    op = measured.operator()
    cell = float(np.prod(op.range.partition.cell_sides[1:]))
    held = np.median(data.reshape(len(data), -1).sum(axis=1) * cell)
    assert held == pytest.approx(9 * 0.004, rel=1e-3)
    with pytest.warns(UserWarning, match='not in units of one atom') as rec:
        result = SIRT(n_iter=30).solve(oa.Problem(op, data))
    assert result.n_atoms == 0
    message = str(rec[0].message)
    assert f'hold {held:.2g} atoms' in message
    assert 'intensity' in message and 'calibrat' in message
    assert result.info['message'] == message


def test_sirt_finds_nothing_with_a_picker_threshold_above_the_image():
    phantom, measured, data = lattice_data()
    op = measured.operator()
    picker = oa.AtomPicker(0.43, threshold=1e6)
    with pytest.warns(UserWarning, match='although the data hold 9 atoms'):
        result = SIRT(n_iter=30, picker=picker).solve(oa.Problem(op, data))
    assert result.n_atoms == 0
    assert 'threshold' in result.info['message']


def test_sirt_that_finds_atoms_does_not_warn():
    phantom, measured, data = lattice_data(angles=np.linspace(0, 165, 12))
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        result = SIRT(n_iter=100).solve(oa.Problem(measured.operator(), data))
    assert result.n_atoms > 0 and 'message' not in result.info


# --- A data scale that disagrees with the atom intensity


def test_atom_fraction_against_single_atom_fits_on_the_grid():
    # Independent: the least-squares weight of one atom at each grid point,
    # <A x, y> / <A x, A x> with ODL's inner product of the operator's own
    # output, maximised over the same grid.
    from odl_atoms.calibration import atom_fraction
    from odl_atoms.solvers.grid import scoring_discr

    phantom, measured, data = lattice_data(scale=0.01)
    op = measured.operator()
    y = op.range.element(data)
    spacing = 0.6
    points = scoring_discr(op.domain, spacing).points()
    best = 0.0
    for point in points:
        g = op(op.domain.element(point[None, :]))
        if g.norm() > 0:
            best = max(best, y.inner(g) / g.inner(g))
    assert atom_fraction(op, data, spacing=spacing) == pytest.approx(best,
                                                                     rel=1e-6)
    # Linear in the data, inverse in the weight.
    assert atom_fraction(op, 100 * data, weight=2.0, spacing=spacing) == \
        pytest.approx(50 * best, rel=1e-6)


def test_scale_message_for_a_particle_in_fractions_of_the_beam():
    # The 3D case: a particle of ~80 atoms at 2 % of the beam per
    # atom integrates to more than one "atom", so the integral's check is
    # silent; no single atom fits anywhere, and the message says so.
    from odl_atoms.calibration import scale_message

    from odl_atoms.phantoms import nanoparticle

    phantom = nanoparticle('octahedron', size=4)
    measured = oa.simulate(phantom.measure, np.radians([-60, 0, 60]), 0.45,
                           detector_cell=0.4)
    op = measured.operator()
    data = 0.02 * np.asarray(measured.data)
    problem = oa.Problem(op, data)
    assert problem.expected_atoms() > 0.5          # the integral is fooled
    message = scale_message(op, data)
    assert message is not None and 'intensity of one atom' in message
    assert scale_message(op, np.asarray(measured.data)) is None


# --- The discrepancy principle under the calibrated noise model


def test_discrepancy_bound_is_the_squared_norm_of_the_calibrated_noise():
    # Poisson counts (gain 0.8 units per electron) of a 7 x 7 crystal in
    # fractions of the beam, calibrated from the images; the bound ADCG and
    # SIRT stop at (tau = 1) against the mean of 0.5 c ||noise||^2 over
    # noise realisations put through the same preparation and calibration
    # (the noise-free images prepared and calibrated alike as reference).
    import dataclasses

    from odl_atoms.calibration import NoiseModel, calibrate
    from odl_atoms.io import TiltSeries
    from odl_atoms.parameter_choice import discrepancy_bound

    phantom = oa.lattice_with_vacancy(spacing=2.04)
    angles = np.radians([0, 45, 90])
    clean = oa.simulate(phantom.measure, angles, sigma=0.4,
                        detector_cell=0.29)
    expected = np.repeat((0.05 * np.asarray(clean.data) + 0.002)[:, None, :],
                         20, axis=1)
    electrons, gain = 2e4, 0.8
    rng = np.random.default_rng(7)

    def prepared(images):
        series = TiltSeries(images, angles, pixel_size=0.29)
        return series, oa.prepare_projections(series, ndim=2,
                                              background=None)

    series, measured = prepared(
        gain * rng.poisson(electrons * expected) / electrons)
    estimated = calibrate(measured, images=series, backgrounds=0.0)
    exact = dataclasses.replace(estimated,
                                noise=NoiseModel(gain / electrons, 0.0))

    def bound_of(cal):
        calibrated = cal.apply(measured)
        problem = oa.Problem(calibrated.operator(), calibrated.element(),
                             alpha=0, noise_std=calibrated.noise_std)
        return discrepancy_bound(problem, tau=1.0)

    cal = estimated
    op = cal.apply(measured).operator()
    reference = cal.apply(prepared(gain * expected)[1]).data
    c = op.inner_weight
    misfits = []
    for _ in range(30):
        noisy = cal.apply(prepared(
            gain * rng.poisson(electrons * expected) / electrons)[1]).data
        misfits.append(0.5 * c * float(np.sum((noisy - reference) ** 2)))
    empirical = float(np.mean(misfits))
    # 30 draws of a sum of 240 squares: their mean to about 2 %. With the
    # noise model that made the data, the bound is the noise's misfit.
    assert bound_of(exact) == pytest.approx(empirical, rel=0.05)
    # With the one estimated from the images (its gain 9 % low here).
    assert bound_of(estimated) == pytest.approx(empirical, rel=0.15)
    # A noise level off by 30 % would be seen.
    assert abs(1.3 ** 2 * bound_of(exact) / empirical - 1) > 0.3
