"""The problem object: settings, variants, the equilibrium-distance estimate.

Checked against constructions whose answer is known (lattices built by hand,
ODL's own projection of a scaled operator).
"""

import numpy as np
import pytest

import odl_atoms as oa
from odl_atoms.problem import estimate_r_min


@pytest.mark.parametrize('basis', ['fcc', 'bcc', 'sc'])
def test_r_min_of_3d_lattices_with_ghosts_and_stacked_pairs(basis):
    """The first shell of a cubic lattice, whatever its coordination, with
    ghosts (atoms between sites) and pairs stacked on one site (closer than
    2 sigma) mixed in: the estimate stays within 2 % of the true spacing."""
    from odl_atoms.solvers.starts import CUBIC

    spacing = 2.885
    cells = np.stack(np.meshgrid(*[np.arange(-3, 4)] * 3), -1).reshape(-1, 3)
    sites = (cells @ CUBIC[basis]) * spacing
    sites = sites[np.linalg.norm(sites, axis=1) < 3.2 * spacing]
    rng = np.random.default_rng(0)
    ghosts = sites[rng.choice(len(sites), len(sites) // 10)] + rng.uniform(
        -0.5, 0.5, (len(sites) // 10, 3)) * spacing
    stacked = sites[:5] + 0.1
    positions = np.vstack([sites + rng.normal(scale=0.03, size=sites.shape),
                           ghosts, stacked])
    assert estimate_r_min(positions, sigma=0.43) == pytest.approx(spacing,
                                                                  rel=0.02)


def test_r_min_of_a_2d_lattice_is_its_spacing():
    grid = np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1)
    assert estimate_r_min(3.1 * grid.reshape(-1, 2), sigma=0.4) == \
        pytest.approx(3.1)
    assert estimate_r_min(np.zeros((1, 2)), sigma=0.4) is None


@pytest.mark.slow
def test_auto_potential_finds_the_decahedron_spacing():
    """``potential='auto'`` on a decahedron from 5 tilts: the estimate from
    the energy-free reconstruction is within 2 % of the true spacing (the
    2D rule, an upper quartile of nearest-neighbour distances, was 17 %
    short here)."""
    from odl_atoms.reconstruction import (default_grid_spacing,
                                          estimate_equilibrium_distance)

    particle = oa.nanoparticle('decahedron', size=4)
    a = particle.lattice_spacing
    measured = oa.simulate(particle.measure,
                           np.radians(np.linspace(-70, 70, 5)), 0.15 * a,
                           detector_cell=0.5, noise=0.01, seed=0)
    r_min, _ = estimate_equilibrium_distance(
        measured, grid_spacing=default_grid_spacing(measured))
    assert r_min == pytest.approx(a, rel=0.02)


def test_variants_share_the_data_and_change_one_setting():
    phantom = oa.defect_phantom('vacancy', shape=(3, 3))
    measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]), 0.43,
                           n_detector=48)
    problem = oa.Problem(measured.operator(), measured.element(),
                         potential=2.885, noise_std=0.01)
    lower = problem.with_alpha(1e-4)
    assert lower.alpha == 1e-4 and problem.alpha == 1e-3
    assert lower.data is problem.data and lower.potential is problem.potential
    assert problem.with_noise_std(None).noise_std is None
    assert problem.with_potential(None).has_energy is False
    assert 'noise_std=0.01' in repr(problem)
    with pytest.raises(ValueError, match='noise_std'):
        problem.with_noise_std(-1)
    with pytest.raises(ValueError, match='max_atoms'):
        oa.Problem(measured.operator(), measured.element(), max_atoms=0)
    # The data hold the phantom's atoms (integral of every projection).
    assert problem.expected_atoms() == pytest.approx(phantom.n_atoms,
                                                     rel=1e-3)
