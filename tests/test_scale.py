"""ADCG at scale: batch additions, block moves and their fast paths.

Every fast path is compared with the direct computation it replaces (the
full `Stencil`, the oracle's `addition_energies`, the energy of all atoms);
the batch addition with the ground truth.
"""

import numpy as np
import odl
import pytest

import odl_atoms as oa
from odl_atoms.objective import AtomObjective
from odl_atoms.projection import SeparableGrid, Stencil
from odl_atoms.problem import default_lennard_jones
from odl_atoms.solvers.adcg.batch import batch_separation, block_radius
from odl_atoms.solvers.adcg.oracle import _AttractionField, addition_energies
from odl_atoms.solvers.configuration import Configuration


def tilt_series(size=3, axis=(0, 0, 1), noise=0.01):
    phantom = oa.nanoparticle('octahedron', size=size)
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians(np.linspace(-70, 70, 5)),
                           0.15 * a, detector_cell=0.5, noise=noise, seed=0,
                           axis=axis)
    return phantom, measured


@pytest.mark.parametrize('axis', [(0, 0, 1), (1, 0, 0)], ids=['z', 'x'])
def test_separable_grid_matches_stencil(axis):
    _, measured = tilt_series(axis=axis)
    op = measured.operator()
    space = op.domain
    discr = odl.uniform_discr(space.min_pt, space.max_pt, (9, 11, 10))
    grid = SeparableGrid.build(op.frame, discr.partition.coord_vectors,
                               op.sigma, op.truncate, op.mode)
    assert grid is not None
    stencil = Stencil(op.frame, discr.points(), op.sigma, op.truncate, op.mode)
    data = np.random.default_rng(1).normal(size=op.frame.shape).ravel()
    np.testing.assert_allclose(grid.correlate(data), stencil.correlate(data),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grid.self_inner(), stencil.self_inner(),
                               rtol=1e-10)
    # ... and the correlation is the weight gradient of the projection.
    _, grad_w = stencil.adjoint_jacobian(np.ones(discr.size), data)
    np.testing.assert_allclose(stencil.correlate(data), grad_w, rtol=1e-12)


def test_separable_grid_refuses_a_tilted_axis():
    phantom = oa.nanoparticle('octahedron', size=2)
    measured = oa.simulate(phantom.measure, np.radians([-30, 0, 30]), 0.4,
                           detector_cell=0.5, axis=(1, 1, 1))
    op = measured.operator()
    space = op.domain
    discr = odl.uniform_discr(space.min_pt, space.max_pt, (4, 4, 4))
    assert SeparableGrid.build(op.frame, discr.partition.coord_vectors,
                               op.sigma) is None


def test_incremental_attraction_matches_direct_sum():
    phantom, measured = tilt_series()
    op = measured.operator()
    a = phantom.lattice_spacing
    potential = default_lennard_jones(3, a)
    problem = oa.Problem(op, measured.element(), potential=a)
    points = oa.ADCG().context(problem).oracle.candidate_grid()[0]
    field = _AttractionField(potential, points, 0.5 * a)
    positions = phantom.measure.positions.copy()
    rng = np.random.default_rng(0)
    for _ in range(4):
        attraction, excluded = field.update(positions)
        direct, nearest = addition_energies(
            potential, positions, points, attractive_only=True)
        np.testing.assert_allclose(attraction, direct, atol=1e-10)
        np.testing.assert_array_equal(excluded, nearest < 0.5 * a)
        # Remove one atom, move two, add one on a grid point (distance 0).
        positions = np.delete(positions, rng.integers(len(positions)), 0)
        positions[:2] += 0.2
        positions = np.vstack([positions, points[rng.integers(len(points))]])


def test_restricted_local_energy_matches_full_energy():
    phantom, measured = tilt_series()
    op = measured.operator()
    a = phantom.lattice_spacing
    objective = AtomObjective(op, measured.element(), 0.1,
                              default_lennard_jones(3, a))
    x = phantom.measure.positions
    w = np.ones(len(x))
    active = np.arange(3)
    full = objective.restricted(x, w, active)
    local = objective.restricted(x, w, active, local_energy=True)
    p = x[active] + np.random.default_rng(2).normal(scale=0.1, size=(3, 3))
    (v1, g1), (v2, g2) = full(p), local(p)
    assert v2 == pytest.approx(v1, rel=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-9, atol=1e-12)


def test_batch_addition_adds_separated_atoms_and_lowers_objective():
    phantom, measured = tilt_series(size=3)
    op = measured.operator()
    a = phantom.lattice_spacing
    problem = oa.Problem(op, measured.element(), potential=a,
                         noise_std=measured.noise_std)
    solver = oa.ADCG()
    context = solver.context(problem)
    objective = context.objective
    empty = Configuration(np.zeros((0, 3)), np.zeros(0),
                          np.zeros(0, dtype=problem.labels.dtype))
    empty.value = objective(empty.positions, empty.weights)
    assert solver.batch_size(problem) == 5  # a quarter of 19 atoms
    threshold = solver.stop_threshold(objective, noise_std=problem.noise_std)
    batch = context.oracle.add_atoms(objective, empty, 5,
                                     batch_separation(objective),
                                     min_gain=threshold)
    assert batch.n_atoms == 5
    separation = np.linalg.norm(batch.positions[:, None] - batch.positions,
                                axis=-1)[np.triu_indices(5, 1)]
    assert separation.min() >= batch_separation(objective)
    assert empty.value - batch.value > 5 * threshold
    moved = context.descent.block_move(objective, batch, np.arange(5),
                                       block_radius(objective))
    assert moved.value <= batch.value
    # The whole search: the 19 atoms, found in a few batches.
    result = solver.solve(problem)
    assert oa.match_atoms(phantom.measure, result.measure).exact
    assert result.n_iterations < phantom.n_atoms


def test_batch_changes_nothing_in_2d():
    phantom = oa.defect_phantom('vacancy', shape=(4, 4))
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]), 0.15 * a,
                           n_detector=64, noise=0.01, seed=1)
    problem = oa.Problem(measured.operator(), measured.element(), potential=a,
                         noise_std=measured.noise_std)
    default = oa.ADCG()
    assert default.batch_size(problem) == 1
    one = default.solve(problem)
    off = oa.ADCG(batch=None).solve(problem)
    np.testing.assert_array_equal(one.measure.positions, off.measure.positions)
    assert one.objective == off.objective


def test_batch_argument_is_checked():
    _, measured = tilt_series(size=2)
    with pytest.raises(ValueError, match='batch'):
        oa.ADCG(batch=0)
    with pytest.raises(ValueError, match='batch'):
        oa.ADCG(batch='many')
