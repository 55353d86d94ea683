"""Multiply twinned particles: the twinned templates and `TwinnedStart`.

The ground truths are `ase.cluster` particles turned by a random rotation
(so that no axis of the template is given) and displaced; the checks
compare with those atoms, never with another run of the code under test.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import odl_atoms as oa
from odl_atoms.reconstruction import fit_twins
from odl_atoms.solvers.twinned import (TWIN_KINDS, FittedTwin, TwinnedStart,
                                       bond_axes, fit_twinned, twin_template)

A = 2.885


def held_out(atoms, seed, displacement=0.05):
    """``atoms`` (ase) turned by a random rotation and displaced, as a
    3D measure with a margin of one spacing."""
    rng = np.random.default_rng(seed)
    x = atoms.positions - atoms.positions.mean(axis=0)
    atoms.positions = (Rotation.random(random_state=rng).apply(x)
                       + rng.normal(0, displacement, x.shape))
    return oa.from_ase(atoms, ndim=3, margin=A)


def measure(truth, seed=0):
    return oa.simulate(truth, np.radians(np.linspace(-70, 70, 5)), 0.15 * A,
                       detector_cell=0.5, noise=0.01, seed=seed)


def rough(truth, seed, drop=0.15, extra=0.1, jitter=0.25):
    """A rough reconstruction of ``truth``: some atoms missing, some
    spurious ones, every one off by ``jitter`` A rms per axis."""
    rng = np.random.default_rng(seed)
    x = truth.positions
    kept = x[rng.random(len(x)) > drop]
    lo, hi = x.min(axis=0), x.max(axis=0)
    spurious = rng.uniform(lo, hi, (int(extra * len(x)), 3))
    return (np.concatenate([kept, spurious])
            + rng.normal(0, jitter, (len(kept) + len(spurious), 3)))


def test_templates_are_ase_particles_with_their_domains():
    from ase.cluster import Icosahedron

    sites, axis, domains = twin_template('icosahedral', A, 5.0)
    ico = Icosahedron('Au', 5, latticeconstant=A * np.sqrt(2))
    assert oa.match_atoms(ico.positions - ico.positions.mean(axis=0),
                          sites).exact
    # The axis is five-fold: the template turned by 72 degrees about it is
    # itself.
    turned = Rotation.from_rotvec(axis * 2 * np.pi / 5).apply(sites)
    assert oa.match_atoms(sites, turned).exact
    assert len(set(domains)) == TWIN_KINDS['icosahedral']
    sites, axis, domains = twin_template('decahedral', A, 5.0)
    turned = Rotation.from_rotvec(axis * 2 * np.pi / 5).apply(sites)
    assert oa.match_atoms(sites, turned).exact
    assert np.bincount(domains).tolist()[1:] == [np.bincount(domains)[1]] * 4
    # Every domain is one fcc crystal: its bonds take 6 directions.
    for d in range(5):
        part = sites[domains == d]
        axes = bond_axes(part, A, count=12, width=2.0, apart=10.0)
        assert len(axes) <= 6
    with pytest.raises(ValueError, match='kind'):
        twin_template('cubic', A, 5.0)


def test_bond_axes_find_a_turned_decahedron_axis():
    from ase.cluster import Decahedron

    truth = held_out(Decahedron('Au', 4, 2, 1,
                                latticeconstant=A * np.sqrt(2)), seed=3)
    turn = Rotation.random(random_state=np.random.default_rng(3))
    axis = turn.apply([0, 0, 1.0])
    found = bond_axes(rough(truth, 1), A, count=1)[0]
    assert abs(found @ axis) > np.cos(np.radians(3))


@pytest.mark.parametrize('kind, seed', [('decahedral', 0),
                                        ('icosahedral', 1)])
def test_fit_twinned_recovers_a_turned_particle_from_rough_atoms(kind, seed):
    from ase.cluster import Decahedron, Icosahedron

    a = A * np.sqrt(2)
    atoms = (Decahedron('Au', 4, 1, 1, latticeconstant=a)
             if kind == 'decahedral' else Icosahedron('Au', 4,
                                                      latticeconstant=a))
    truth = held_out(atoms, seed)
    measured = measure(truth, seed)
    # A spacing guess 2 % off, as the energy-free estimate can be.
    fitted = fit_twinned(measured.operator(), measured.element(),
                         rough(truth, seed), 1.02 * A, kind)
    assert oa.match_atoms(truth, fitted.positions).exact
    assert fitted.residual_fraction < 0.01
    assert fitted.domains == TWIN_KINDS[kind]
    assert abs(fitted.spacing / A - 1) < 0.01
    other = 'icosahedral' if kind == 'decahedral' else 'decahedral'
    wrong = fit_twinned(measured.operator(), measured.element(),
                        rough(truth, seed), A, other)
    assert wrong.residual_fraction > 0.05


def test_a_single_crystal_is_no_twin():
    """An octahedron (one fcc crystal): no template leaves it within the
    lattices' threshold, so `reconstruct` keeps what it did."""
    from ase.cluster import Octahedron

    truth = held_out(Octahedron('Au', 6, latticeconstant=A * np.sqrt(2)),
                     seed=2)
    measured = measure(truth, 2)
    fits, chosen = fit_twins(measured, truth.positions, A)
    assert chosen is None
    assert [fit.lattice for fit in fits] and all(
        fit.residual_fraction > oa.defaults.LATTICE_RESIDUAL for fit in fits)


def test_twinned_start_needs_a_fit():
    with pytest.raises(TypeError, match='FittedTwin'):
        TwinnedStart(np.zeros((3, 3)))
    fitted = FittedTwin('icosahedral', A, 1.0, 2.0, np.zeros((0, 3)),
                        np.zeros(0, int))
    assert repr(TwinnedStart(fitted)).startswith(
        "TwinnedStart(FittedTwin('icosahedral'")


@pytest.mark.slow
def test_defaults_reconstruct_a_held_out_decahedron_from_three_tilts():
    """`reconstruct` with nothing else given: the twinned start wins.

    A 176-atom decahedron turned at random, 3 tilts in +-70 degrees at 1 %
    noise. Measured: the defaults before the twinned start (the greedy
    start alone, ``lattice=None`` now) ended at F1 0.944 in 45 s; with it,
    exact in 16 s.
    """
    from ase.cluster import Decahedron

    truth = held_out(Decahedron('Au', 4, 1, 1,
                                latticeconstant=A * np.sqrt(2)), seed=0)
    measured = oa.simulate(truth, np.radians([-70, 0, 70]), 0.15 * A,
                           detector_cell=0.5, noise=0.01, seed=0)
    result = oa.reconstruct(measured)
    assert result.info['twinned']['chosen'] == 'decahedral'
    assert result.info['lattice']['starts'] == ['greedy', 'twinned']
    assert result.info['best_start'] == 'twinned'
    assert oa.match_atoms(truth, result.measure).exact
    assert abs(result.info['r_min']['value'] / A - 1) < 0.01


@pytest.mark.slow
def test_twinned_start_also_with_r_min_given():
    """With r_min given no energy-free reconstruction runs for it; the
    twinned fit runs one for its rough atoms, and the twin's start wins.

    A 247-atom decahedron turned at random, 3 tilts at 1 % noise. Measured:
    with r_min given, before the twinned start ran there, the greedy start
    alone ended at F1 0.990 (22 s CPU); with it, exact in 11 s.
    """
    from ase.cluster import Decahedron

    truth = held_out(Decahedron('Au', 4, 2, 1,
                                latticeconstant=A * np.sqrt(2)), seed=2)
    measured = oa.simulate(truth, np.radians([-70, 0, 70]), 0.15 * A,
                           detector_cell=0.5, noise=0.01, seed=0)
    result = oa.reconstruct(measured, r_min=A)
    assert result.info['r_min']['source'] == 'given'
    assert result.info['twinned']['chosen'] == 'decahedral'
    assert result.info['lattice']['starts'] == ['greedy', 'twinned']
    assert oa.match_atoms(truth, result.measure).exact


@pytest.mark.slow
def test_defaults_keep_the_lattice_of_a_single_crystal():
    """An octahedron in its cubic axes: the fcc lattice explains it, its
    lattice starts run as before and no twinned template is fitted."""
    phantom = oa.nanoparticle('octahedron', size=5, vacancies=1,
                              displacement=0.05, seed=0)
    result = oa.reconstruct(measure(phantom.measure, 0))
    assert result.info['lattice']['chosen'] == 'fcc'
    assert 'twinned' not in result.info
    assert 'twinned' not in result.info['lattice']['starts']
    assert oa.match_atoms(phantom.measure, result.measure).exact


def test_command_line_prints_the_twinned_fit():
    """``odl-atoms reconstruct`` says which template explained the data
    and how much each left unexplained (info['twinned'] of `reconstruct`)."""
    from odl_atoms.cli.reconstruct import _defaults_lines
    info = {'twinned': {'chosen': 'decahedral', 'threshold': 0.05,
                        'seconds': 4.2,
                        'fits': [{'lattice': 'decahedral',
                                  'residual_fraction': 0.003},
                                 {'lattice': 'icosahedral',
                                  'residual_fraction': 0.21}]}}
    line, = _defaults_lines(info)
    assert line.startswith('twinned fit (data left unexplained): '
                           'decahedral 0.3 %, icosahedral 21 %')
    assert 'decahedral explains the data (<= 5 %)' in line
    info['twinned']['chosen'] = None
    assert 'none explains the data (> 5 %)' in _defaults_lines(info)[0]
