"""Slow scientific checks: ADCG recovers defects from zone-axis projections.

These are the targets of the defects benchmark that ADCG meets, kept as
tests so that a regression cannot land unnoticed. Run with
``python -m pytest -m slow`` (CI does).
"""

import numpy as np
import pytest

import odl_atoms as oa

pytestmark = pytest.mark.slow


@pytest.mark.parametrize('angles', [(0, 90), (0, 45, 90)], ids=['0-90', '0-45-90'])
@pytest.mark.parametrize('defect', ['vacancy', 'interstitial', 'displaced'])
def test_zone_axis_recovery_at_one_percent_noise(defect, angles):
    phantom = oa.defect_phantom(defect)
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians(angles), 0.15 * a,
                           n_detector=96, noise=0.01, seed=4)
    result = oa.ADCG().solve(oa.Problem(measured.operator(),
                                        measured.element(), potential=a,
                                        noise_std=measured.noise_std))
    match = oa.match_atoms(phantom.measure, result.measure)
    assert match.exact, match


def test_three_dimensional_cluster_from_five_angles():
    """A small fcc octahedron (19 atoms) from 5 tilts in +-60 degrees."""
    phantom = oa.nanoparticle('octahedron', size=3)
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians([-60, -30, 0, 30, 60]),
                           0.15 * a, n_detector=48, noise=0.01, seed=0)
    result = oa.ADCG().solve(oa.Problem(measured.operator(),
                                        measured.element(), potential=a,
                                        noise_std=measured.noise_std))
    assert oa.match_atoms(phantom.measure, result.measure).exact


def test_interstitial_with_wide_blur_from_two_angles():
    """Neighbours that moved in to absorb the interstitial's signal make its
    immediate gain negative; ADCG must still add it (it pays off after the
    local move)."""
    phantom = oa.defect_phantom('interstitial')
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians([0, 90]), 0.18 * a,
                           n_detector=96)
    result = oa.ADCG().solve(oa.Problem(measured.operator(),
                                        measured.element(), potential=a))
    assert oa.match_atoms(phantom.measure, result.measure).exact


@pytest.mark.parametrize('name', ['octahedron', 'decahedron', 'icosahedron',
                                  'stacking_fault'])
def test_3d_recovery_from_five_tilts_in_70_degrees(name):
    """Small particles (54-95 atoms) with a vacancy and 0.05 A displacements
    from 5 tilts in +-70 degrees about one axis at 1 % noise: every atom
    (batch additions, the 3D default)."""
    if name == 'stacking_fault':
        phantom = oa.fcc_slab(vacancies=1, displacement=0.05, seed=1)
    else:
        size = {'octahedron': 5}.get(name)
        phantom = oa.nanoparticle(name, size=size, vacancies=1,
                                  displacement=0.05, seed=1)
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians(np.linspace(-70, 70, 5)),
                           0.15 * a, detector_cell=0.5, noise=0.01, seed=0)
    result = oa.ADCG().solve(oa.Problem(measured.operator(),
                                        measured.element(), potential=a,
                                        noise_std=measured.noise_std))
    match = oa.match_atoms(phantom.measure, result.measure)
    assert match.f1 == 1.0, match
