"""Tests for `odl_atoms.relax_defect`.

The reference relaxation is independent of the code under test: ASE's
Lennard-Jones calculator with the same parameters, ASE's BFGS optimiser and
a `FixAtoms` constraint on the atoms that must stay.
"""

import numpy as np
import odl
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones as AseLJ
from ase.constraints import FixAtoms
from ase.optimize import BFGS

import odl_atoms as oa
from odl_atoms.functionals import LennardJones


def ase_relaxed(positions, free, lj):
    """Positions relaxed by ASE (2D atoms at z = 0; z forces vanish)."""
    n, d = positions.shape
    pos3 = np.zeros((n, 3))
    pos3[:, :d] = positions
    atoms = Atoms(['Ar'] * n, positions=pos3, pbc=False)
    atoms.calc = AseLJ(epsilon=lj.epsilon, sigma=lj.sigma, rc=lj.cutoff,
                       ro=lj.onset, smooth=lj.smooth)
    atoms.set_constraint(FixAtoms(mask=~free))
    BFGS(atoms, logfile=None).run(fmax=1e-7, steps=2000)
    return atoms.get_positions()[:, :d], atoms


@pytest.mark.parametrize('shape, r_min', [((5, 5), 1.0), ((7, 7), 1.0),
                                           ((5, 5), 1.1)])
def test_interstitial_relaxed_as_ase_relaxes_it(shape, r_min):
    phantom = oa.defect_phantom('interstitial', shape=shape)
    a = phantom.lattice_spacing
    lj = oa.problem.default_lennard_jones(2, r_min * a)
    relaxed = oa.relax_defect(phantom,
                              potential=None if r_min == 1.0 else lj)
    before = phantom.measure.positions
    after = relaxed.measure.positions
    site = before[phantom.defect_atoms[0]]
    free = np.linalg.norm(before - site, axis=1) < 1.2 * a
    reference, atoms = ase_relaxed(before, free, lj)
    if r_min == 1.0:
        np.testing.assert_allclose(after, reference, atol=1e-4 * a)
    # (With r_min = 1.1 a the lattice around is strained, and the two
    # optimisers end in different minima.) What a relaxation must give: no
    # force left on a moved atom (ASE's forces), the others where they were,
    # a lower energy, and the neighbours pushed outward.
    atoms.set_positions(np.column_stack([after, np.zeros(len(after))]))
    atoms.set_constraint()
    assert np.abs(atoms.get_forces()[free]).max() < 1e-4 * lj.epsilon / a
    np.testing.assert_array_equal(after[~free], before[~free])
    assert lj.energy(after) < lj.energy(before) - 10 * lj.epsilon
    neighbours = free & (np.arange(len(before)) != phantom.defect_atoms[0])
    outward = (np.linalg.norm(after[neighbours] - site, axis=1)
               - np.linalg.norm(before[neighbours] - site, axis=1))
    assert np.all(outward > 0.1 * a)


def test_keeps_everything_but_positions():
    phantom = oa.defect_phantom('interstitial', species='Au', weight=2.0)
    relaxed = oa.relax_defect(phantom, radius=1.0)
    assert relaxed.name == phantom.name
    assert relaxed.lattice_spacing == phantom.lattice_spacing
    assert relaxed.space == phantom.space
    np.testing.assert_array_equal(relaxed.defect_atoms, phantom.defect_atoms)
    np.testing.assert_array_equal(relaxed.measure.weights, 2.0)
    assert list(relaxed.measure.species) == ['Au'] * phantom.n_atoms
    assert relaxed.description.startswith(phantom.description)
    # The input is not changed.
    np.testing.assert_array_equal(
        phantom.measure.positions,
        oa.defect_phantom('interstitial').measure.positions)


def test_radius_sets_which_atoms_move():
    phantom = oa.defect_phantom('interstitial', shape=(5, 5))
    a = phantom.lattice_spacing
    site = phantom.measure.positions[phantom.defect_atoms[0]]
    distance = np.linalg.norm(phantom.measure.positions - site, axis=1)
    for radius in (1.0, 1.7):
        relaxed = oa.relax_defect(phantom, radius=radius)
        moved = np.linalg.norm(relaxed.measure.positions
                               - phantom.measure.positions, axis=1) > 1e-9
        np.testing.assert_array_equal(moved & (distance >= radius * a), False)
        assert moved.sum() >= 4


def test_bad_input():
    phantom = oa.defect_phantom('interstitial', shape=(5, 5))
    with pytest.raises(ValueError, match='positive number of lattice'):
        oa.relax_defect(phantom, radius=0)
    with pytest.raises(ValueError, match='marks no defect'):
        oa.relax_defect(oa.defect_phantom('perfect'))
    with pytest.raises(ValueError, match='increase `radius`'):
        oa.relax_defect(oa.defect_phantom('vacancy'), radius=0.5)
    with pytest.raises(TypeError, match='must be a LennardJones'):
        oa.relax_defect(phantom, potential=2.885)
    with pytest.raises(TypeError, match='3D positions, the phantom is 2D'):
        oa.relax_defect(phantom, potential=LennardJones(odl.rn((2, 3))))


def test_warns_when_the_structure_changes():
    # The square grain boundary is not held by a pair potential whose
    # minimum is the square lattice's spacing: atoms move by over a spacing.
    with pytest.warns(UserWarning, match='not stable under this potential'):
        oa.relax_defect(oa.defect_phantom('grain_boundary'))
