"""Simulated annealing: incremental objective, recoveries, grid, interface.

The incremental objective is compared with `AtomObjective` evaluated from
scratch (full projection, KD-tree energy); recoveries with hand-placed ground
truths through `match_atoms`.
"""

import numpy as np
import odl
import pytest
from odl.applications import tomo

import odl_atoms as oa
from odl_atoms.objective import AtomObjective
from odl_atoms.simulation import simulate
from odl_atoms.solvers.annealing import AnnealingState, SimulatedAnnealing


def small_problem(truth=((-1.0, 0.5), (1.2, -0.7), (0.3, 1.9)), weights=1.0,
                  angles=(0, 60, 120), noise=0.0, seed=0):
    space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    truth = space.element(np.array(truth, float), weights=weights)
    measured = simulate(truth, np.radians(angles), 0.3, n_detector=48,
                        noise=noise, seed=seed)
    return truth, measured


def operator_3d():
    space = oa.SparseMeasureSpace([-3, -3, -3], [3, 3, 3])
    geometry = tomo.Parallel3dAxisGeometry(
        odl.uniform_partition(0, np.pi, 3),
        odl.uniform_partition([-5, -5], [5, 5], (24, 24)))
    return oa.GaussianRayTransform(space, geometry, sigma=0.4)


@pytest.mark.parametrize('ndim', [2, 3])
def test_incremental_objective_equals_full_objective(ndim):
    """2000 random moves of every type; tracked F equals F from scratch."""
    rng = np.random.default_rng(42)
    if ndim == 2:
        truth, measured = small_problem(noise=0.02, seed=1)
        op, data = measured.operator(), measured.element()
    else:
        op = operator_3d()
        truth = op.domain.element(rng.uniform(-2, 2, (5, 3)))
        data = op(truth)
    space = op.domain
    lj = oa.LennardJones.from_r_min(odl.rn((2, ndim)), 1.2, smooth=True)
    # A large alpha so that the energy is a sizeable part of F.
    objective = AtomObjective(op, data, alpha=0.5, potential=lj)
    allowed = np.array([1.0, 2.0])
    start = rng.uniform(space.min_pt, space.max_pt, (6, ndim))
    state = AnnealingState(objective, start, np.ones(6), ['A'] * 6)
    kinds = ['displace', 'add', 'remove', 'jump', 'swap', 'shift']
    counts = dict.fromkeys(kinds, 0)
    for step in range(2000):
        kind = kinds[rng.integers(len(kinds))]
        n = state.n_atoms
        if kind != 'add' and n == 0:
            continue
        i = int(rng.integers(n)) if n else -1
        if kind == 'add':
            # Also right next to existing atoms (inner core of the energy)
            # and at the box edge (windows clipped at the detector edge).
            if n and rng.random() < 0.3:
                x = state.positions[i] + rng.normal(scale=0.2, size=ndim)
            else:
                x = rng.uniform(space.min_pt, space.max_pt)
            x = np.clip(x, space.min_pt, space.max_pt)
            move = state.propose(-1, x, allowed[rng.integers(2)], 'A')
        elif kind == 'remove':
            move = state.propose(i, None)
        elif kind == 'displace':
            x = np.clip(state.positions[i] + rng.normal(scale=0.3, size=ndim),
                        space.min_pt, space.max_pt)
            move = state.propose(i, x)
        elif kind == 'jump':
            move = state.propose(i, rng.uniform(space.min_pt, space.max_pt))
        elif kind == 'shift':
            group = rng.choice(n, size=min(n, 3), replace=False)
            shift = rng.normal(scale=0.3, size=ndim)
            moved = state.positions[group] + shift
            if np.any(moved < space.min_pt) or np.any(moved > space.max_pt):
                continue
            move = state.propose_translation(group, shift)
        else:
            w = 3.0 - state.weights[i]
            move = state.propose(i, state.positions[i], w, 'B')
        if step % 40 == 0:
            # The predicted change is the change of F from scratch.
            before = objective(state.positions, state.weights)
            state.accept(move)
            after = objective(state.positions, state.weights)
            assert move.delta == pytest.approx(after - before, rel=1e-8,
                                               abs=1e-12 * abs(before))
        elif rng.random() < 0.7 or n < 3:
            state.accept(move)
        counts[kind] += 1
    assert min(counts.values()) > 150
    assert state.n_atoms > 0
    pos, w = state.positions, state.weights
    full_misfit, full_energy = objective.parts(pos, w)
    assert state.misfit == pytest.approx(full_misfit, rel=1e-9)
    assert state.energy == pytest.approx(full_energy, rel=1e-9, abs=1e-12)
    assert state.value == pytest.approx(objective(pos, w), rel=1e-9)
    residual = op(space.element(pos, weights=w)) - data
    assert np.allclose(state.residual, residual.data.ravel(), atol=1e-10)
    # The full recomputation agrees: the drift it reports is round-off.
    assert state.recompute() < 1e-9


def test_finds_small_configuration_exactly():
    truth, measured = small_problem()
    problem = oa.Problem(measured.operator(), measured.element(), alpha=0)
    result = SimulatedAnnealing(n_sweeps=60, seed=3).solve(problem)
    match = oa.match_atoms(truth, result.measure)
    assert match.exact, match
    assert match.max_distance < 1e-4
    assert result.data_misfit < 1e-8 * result.info['atom_energy']


def test_finds_species():
    """Two allowed weights: the heavy and the light atoms are told apart."""
    truth, measured = small_problem(weights=[2.0, 1.0, 2.0])
    space = truth.space
    truth = space.element(truth.positions, weights=truth.weights,
                          species=['Au' if w == 2 else 'Ag'
                                   for w in truth.weights])
    # Without energy, two light atoms on one site fit the data of a heavy
    # one exactly; the potential's repulsive core tells them apart.
    problem = oa.Problem(measured.operator(), measured.element(),
                         potential=2.0, weights={'Ag': 1.0, 'Au': 2.0})
    result = SimulatedAnnealing(n_sweeps=60, seed=0).solve(problem)
    match = oa.match_atoms(truth, result.measure)
    assert match.exact and match.species_accuracy == 1.0, match
    assert 'swap' in result.info['acceptance']


@pytest.mark.slow
def test_recovers_most_of_a_3d_cluster_from_five_tilts():
    """A 43-atom gold octahedron (one vacancy, 0.05 A displacements) from 5
    tilts in +-70 degrees about one axis at 1 % noise, atom count unknown.

    Annealing does not recover it reliably exactly. Measured with this
    configuration for annealing seeds 0-3 (2026-11-25): exact for seeds 0
    and 2, F1 0.989 and 0.759 for 3 and 1, 43-44 atoms, about 30 s each
    on a loaded 2-core machine. So this asserts the level every seed
    reached, F1 >= 0.75, and the atom count within 2, not exactness; an
    answer from the wrong basin (atoms at the wrong depth along the rays)
    scores F1 0.4-0.6 and fails. The gain map uses the coarser grid and
    rarer refreshes of ``benchmarks/clusters3d.py``: with the defaults
    (grid spacing sigma, refresh every 10 moves) refreshing the map takes
    most of the time in 3D.
    """
    phantom = oa.nanoparticle('octahedron', size=4, vacancies=1,
                              displacement=0.05, seed=0)
    a = phantom.lattice_spacing
    measured = simulate(phantom.measure, np.radians(np.linspace(-70, 70, 5)),
                        0.15 * a, detector_cell=0.5, noise=0.01, seed=0)
    op = measured.operator()
    problem = oa.Problem(op, measured.element(), potential=a,
                         noise_std=measured.noise_std)
    result = SimulatedAnnealing(
        n_sweeps=30, proposal_spacing=1.5 * op.sigma, refresh_interval=50,
        seed=0).solve(problem)
    match = oa.match_atoms(phantom.measure, result.measure)
    assert match.f1 >= 0.75, match
    assert abs(result.n_atoms - phantom.n_atoms) <= 2, match


def test_seeded_and_reproducible():
    truth, measured = small_problem(noise=0.01, seed=5)
    problem = oa.Problem(measured.operator(), measured.element(),
                         potential=1.5)

    def run(seed):
        return SimulatedAnnealing(n_sweeps=25, seed=seed).solve(problem)

    first, again, other = run(7), run(7), run(8)
    assert first.objective == again.objective
    assert np.array_equal(first.measure.positions, again.measure.positions)
    assert first.info['accepted'] == again.info['accepted']
    assert first.objective != other.objective


def test_grid_variant_finds_atoms_on_sites():
    h = 0.25
    truth, measured = small_problem(truth=((-1.0, 0.5), (1.25, -0.75),
                                           (0.25, 2.0)))
    problem = oa.Problem(measured.operator(), measured.element(), alpha=0)
    solver = SimulatedAnnealing(grid_spacing=h, n_sweeps=60, seed=0)
    sites = solver.grid_sites(problem)
    # The ground truth sits on grid sites (an independent check of the grid).
    assert np.all(np.min(np.linalg.norm(
        truth.positions[:, None] - sites[None], axis=-1), axis=1) < 1e-12)
    result = solver.solve(problem)
    assert result.n_atoms == 3
    found = np.sort(result.measure.positions, axis=0)
    assert np.allclose(found, np.sort(truth.positions, axis=0), atol=1e-9)
    assert 'polish_max_shift' not in result.info


def test_callbacks_once_per_sweep_and_info():
    truth, measured = small_problem()
    store = odl.solvers.CallbackStore()
    temperatures = []
    problem = oa.Problem(measured.operator(), measured.element(), alpha=0)
    solver = SimulatedAnnealing(n_sweeps=12, quench_sweeps=3, sweep_size=30,
                                seed=1)
    result = solver.solve(problem,
                          callback=store & (lambda m: temperatures.append(1)))
    assert len(store.results) == len(temperatures) == 15
    assert result.n_iterations == len(result.objective) == 15
    assert all(isinstance(m, oa.SparseMeasure) for m in store.results)
    info = result.info
    assert set(info['acceptance']) == {'displace', 'slide', 'shift', 'add',
                                       'remove', 'jump'}
    assert all(0 <= r <= 1 for r in info['acceptance'].values())
    assert info['n_moves'] == 15 * 30 == sum(info['proposed'].values())
    assert info['final_temperature'] == pytest.approx(1e-5)
    assert info['initial_temperature'] > info['final_temperature']
    assert info['max_drift'] < 1e-9
    # The objective history is that of the returned objective (alpha = 0:
    # the data misfit), evaluated independently at the last sweep.
    last = store.results[-1]
    residual = measured.operator()(last) - measured.element()
    assert result.objective[-1] == pytest.approx(
        0.5 * residual.inner(residual), rel=1e-9, abs=1e-12)


def test_temperature_schedules():
    geo = SimulatedAnnealing(n_sweeps=5).temperatures(1.0, 1e-4)
    assert np.allclose(geo, [1, 1e-1, 1e-2, 1e-3, 1e-4])
    lin = SimulatedAnnealing(n_sweeps=3, schedule='linear').temperatures(
        1.0, 0.5)
    assert np.allclose(lin, [1, 0.75, 0.5])
    custom = SimulatedAnnealing(
        n_sweeps=3, schedule=lambda k, n, t0, t1: t0 / (1 + k))
    assert np.allclose(custom.temperatures(1.0, 0.1), [1, 1 / 2, 1 / 3])


def test_repr_reproduces_constructor():
    truth, measured = small_problem()
    op = measured.operator()
    # alpha and potential are the problem's now, and so is their repr.
    problem = oa.Problem(op, measured.element(), alpha=0.01, potential=None)
    solver = SimulatedAnnealing(n_sweeps=50, grid_spacing=0.2, seed=4)
    text = repr(solver)
    for part in ('n_sweeps=50', 'grid_spacing=0.2', 'seed=4'):
        assert part in text
    for part in ('alpha=0.01', 'potential=None'):
        assert part in repr(problem)
    assert repr(SimulatedAnnealing()) == 'SimulatedAnnealing()'
    # The repr is a constructor call that builds the same solver.
    again = eval(text, {'SimulatedAnnealing': SimulatedAnnealing})
    assert again.options == solver.options


def test_bad_input_gives_clear_errors():
    truth, measured = small_problem()
    op = measured.operator()
    data = measured.element()
    with pytest.raises(ValueError, match='alpha'):
        oa.Problem(op, data, alpha=-1)
    with pytest.raises(ValueError, match='t_end'):
        SimulatedAnnealing(t_end=0)
    with pytest.raises(ValueError, match='n_sweeps'):
        SimulatedAnnealing(n_sweeps=0)
    with pytest.raises(ValueError, match='unknown move'):
        SimulatedAnnealing(move_probabilities={'teleport': 1})
    with pytest.raises(TypeError, match='potential'):
        oa.Problem(op, data, potential='lj')
    with pytest.raises(TypeError, match='GaussianRayTransform'):
        oa.Problem(measured.geometry, data)
    solver = SimulatedAnnealing(n_sweeps=2)
    # Data from another geometry (other detector).
    _, other = small_problem(angles=(0, 45, 90))
    with pytest.raises(ValueError, match='another geometry'):
        solver.solve(oa.Problem(op, other.element(), alpha=0))
    bad = measured.element().data.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        solver.solve(oa.Problem(op, bad, alpha=0))
    with pytest.raises(ValueError, match='shape'):
        solver.solve(oa.Problem(op, np.zeros((2, 48)), alpha=0))
    with pytest.raises(TypeError, match='initial'):
        solver.solve(oa.Problem(op, data, alpha=0), initial=truth.positions)
