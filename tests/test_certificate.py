"""The certificate: what a user can check of an answer without a truth.

Checked on hand-placed atoms and on deliberately broken configurations
(one atom missing, a ghost added, an atom moved), whose right readings are
known by construction.
"""

import numpy as np

import odl_atoms as oa
from odl_atoms.simulation import simulate
from problems import defect_problem as generic_problem
from problems import problem_of


def test_certificate_reads_right_on_exact_and_broken_configurations():
    space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    truth = np.array([[-1.5, 0.4], [1.2, -0.8], [0.3, 1.9], [-0.2, -2.1]])
    measured = simulate(space.element(truth), np.radians([0, 60, 120]), 0.35,
                        n_detector=64)
    problem = problem_of(measured, alpha=0)
    solver = oa.ADCG()

    exact = solver.certify(problem, space.element(truth))
    assert exact.local_minimum
    assert exact.data_misfit < 1e-12
    assert exact.gradient < 1e-6

    missing = solver.certify(problem, space.element(truth[1:]))
    assert not missing.local_minimum
    assert missing.best_addition > 0.5  # adding the atom back pays off
    # The largest residual is where the missing atom belongs.
    spacing = solver.resolved_grid_spacing(problem)
    assert np.linalg.norm(missing.worst_point - truth[0]) < 2 * spacing

    extra = solver.certify(problem, space.element(
        np.vstack([truth, [[3.0, 3.0]]])))
    assert not extra.local_minimum
    assert extra.best_removal < -0.5  # removing the ghost pays off
    assert 4 in extra.worst_atoms[:1]

    moved = truth.copy()
    moved[2] += [0.2, 0.0]
    shifted = solver.certify(problem, space.element(moved))
    assert not shifted.stationary
    assert shifted.worst_atoms[0] == 2
    text = str(shifted)
    assert 'local minimum: NO' in text and 'largest residual' in text


def test_solve_stores_a_certificate_and_is_reproducible():
    phantom, measured = generic_problem('vacancy', shape=(3, 3),
                                        angles=(0, 45, 90))
    a = phantom.lattice_spacing
    problem = problem_of(measured, potential=a, noise_std=measured.noise_std)
    solver = oa.ADCG(seed=1,
                     starts=[oa.GreedyStart(), oa.LatticeStart('square')])
    first = solver.solve(problem)
    second = solver.solve(problem)
    np.testing.assert_array_equal(first.measure.positions,
                                  second.measure.positions)
    cert = first.info['certificate']
    assert [s['start'] for s in cert.starts] == ['greedy', 'lattice']
    assert cert.noise_misfit is not None
    assert 0.3 < cert.residual_ratio < 3  # misfit at the noise level
