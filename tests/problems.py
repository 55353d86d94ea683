"""Test problems shared by the test modules (one place, not one per file).

Every builder makes its ground truth independently of the code under test
(hand-placed atoms, phantoms) and simulates data with `odl_atoms.simulate`.
"""

import numpy as np

import odl_atoms as oa
from odl_atoms.simulation import simulate


def four_atoms(angles=(0, 60, 120), noise=0.0, seed=0):
    """Four hand-placed atoms in an 8 x 8 A box, sigma 0.35 A, 64 cells."""
    space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    truth = space.element([[-1.5, 0.4], [1.2, -0.8], [0.3, 1.9], [-0.2, -2.1]])
    measured = simulate(truth, np.radians(angles), 0.35, n_detector=64,
                        noise=noise, seed=seed)
    return truth, measured


def defect_problem(defect='interstitial', shape=(4, 4), angles=(0, 60, 120),
                   noise=0.01, seed=0, n_detector=64):
    """A defect phantom (`odl_atoms.defect_phantom`), sigma 0.15 spacings."""
    phantom = oa.defect_phantom(defect, shape=shape)
    a = phantom.lattice_spacing
    measured = simulate(phantom.measure, np.radians(angles), 0.15 * a,
                        n_detector=n_detector, noise=noise, seed=seed)
    return phantom, measured


def problem_of(measured, **settings):
    """The `odl_atoms.Problem` of a simulated measurement."""
    return oa.Problem(measured.operator(), measured.element(), **settings)
