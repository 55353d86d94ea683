"""ADCG (the driver): exact recoveries, noise, the energy, the interface,
the sequential discrepancy principle.

Ground truths are built independently (phantoms, hand-placed atoms) and
compared with `match_atoms`; nothing here compares ADCG with itself. The
starts, the escape moves and the certificate have their own test modules.
"""

import io
import contextlib

import numpy as np
import odl
import pytest

import odl_atoms as oa
from odl_atoms.objective import AtomObjective, objective_functional
from odl_atoms.simulation import simulate
from problems import four_atoms as small_problem
from problems import problem_of


def test_exact_recovery_small_configuration():
    truth, measured = small_problem()
    result = oa.ADCG().solve(problem_of(measured, alpha=0))
    match = oa.match_atoms(truth, result.measure)
    assert match.exact
    assert match.max_distance < 1e-4


@pytest.mark.parametrize('defect', ['vacancy', 'interstitial'])
def test_defect_from_three_angles_with_noise(defect):
    phantom = oa.defect_phantom(defect)
    a = phantom.lattice_spacing
    measured = simulate(phantom.measure, np.radians([0, 45, 90]), 0.15 * a,
                        n_detector=96, noise=0.01, seed=3)
    result = oa.ADCG().solve(problem_of(measured, potential=a,
                                        noise_std=measured.noise_std))
    match = oa.match_atoms(phantom.measure, result.measure)
    assert match.exact, match
    # The defect itself is found: the vacancy site stays empty / the
    # interstitial is matched.
    if defect == 'vacancy':
        site = phantom.defect_positions[0]
        assert np.min(np.linalg.norm(result.measure.positions - site, axis=1)) \
            > 0.5 * a
    else:
        site = phantom.measure.positions[phantom.defect_atoms[0]]
        assert np.min(np.linalg.norm(result.measure.positions - site, axis=1)) \
            < 0.1 * a
    assert match.rmsd < 0.25 * measured.geometry.det_partition.cell_sides[0]


def test_energy_helps_where_data_alone_fails():
    """Two zone-axis projections of a vacancy: many configurations fit."""
    phantom = oa.defect_phantom('vacancy')
    a = phantom.lattice_spacing
    measured = simulate(phantom.measure, np.radians([0, 90]), 0.15 * a,
                        n_detector=96)
    without = oa.ADCG().solve(problem_of(measured, alpha=0))
    with_energy = oa.ADCG().solve(problem_of(measured, potential=a))
    assert oa.match_atoms(phantom.measure, without.measure).f1 < 0.9
    assert oa.match_atoms(phantom.measure, with_energy.measure).exact


def test_callbacks_once_per_iteration():
    truth, measured = small_problem()
    store = odl.solvers.CallbackStore()
    counter = []
    printed = io.StringIO()
    callback = store & (lambda x: counter.append(x.n_atoms)) & \
        odl.solvers.CallbackPrintIteration()
    with contextlib.redirect_stdout(printed):
        result = oa.ADCG().solve(problem_of(measured, alpha=0),
                                 callback=callback)
    assert len(store.results) == result.n_iterations == len(counter)
    assert len(result.objective) == result.n_iterations
    assert printed.getvalue().count('iter =') == result.n_iterations
    assert all(isinstance(m, oa.SparseMeasure) for m in store.results)
    # The objective decreases at every iteration.
    assert np.all(np.diff(result.objective) < 0)


def test_initial_guess_is_kept_when_already_optimal():
    truth, measured = small_problem()
    result = oa.ADCG().solve(problem_of(measured, alpha=0), initial=truth)
    assert oa.match_atoms(truth, result.measure).exact
    assert result.n_iterations == 0


def test_result_fields_and_objective_parts():
    truth, measured = small_problem(noise=0.01, seed=2)
    op = measured.operator()
    solver = oa.ADCG()
    result = solver.solve(problem_of(measured, potential=1.5))
    assert result.time > 0 and result.n_atoms == 4
    residual = op(result.measure) - measured.element()
    assert result.data_misfit == pytest.approx(
        0.5 * residual.inner(residual), rel=1e-9)
    lj = result.info['potential']
    assert result.energy == pytest.approx(lj.energy(result.measure.positions))
    # The solver's repr holds its method options; the problem's alpha is
    # in the result's info.
    assert 'ADCG(' in result.solver and result.info['alpha'] == 1e-3


def test_odl_objective_matches_fast_path_and_minimises():
    """The ODL composition is the same objective; ODL's BFGS can minimise it."""
    truth, measured = small_problem()
    op = measured.operator()
    lj = oa.LennardJones.from_r_min(odl.rn((4, 2)), 2.0, smooth=True)
    fast = AtomObjective(op, measured.element(), 0.01, lj)
    func = objective_functional(op, measured.element(), 4, 0.01, lj)
    rng = np.random.default_rng(0)
    start = truth.positions + rng.normal(scale=0.05, size=(4, 2))
    p = func.domain.element([start, np.ones(4)])
    value, grad_x, grad_w = fast.value_and_gradient(start, np.ones(4))
    assert func(p) == pytest.approx(value, rel=1e-10)
    np.testing.assert_allclose(func.gradient(p)[0].data, grad_x, rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(func.gradient(p)[1].data, grad_w, rtol=1e-8,
                               atol=1e-12)
    # Positions only (weights fixed) through ODL's BFGS on the position part.
    x = p.copy()
    line_search = odl.solvers.BacktrackingLineSearch(func)
    try:
        odl.solvers.bfgs_method(func, x, line_search=line_search, maxiter=50,
                                tol=1e-10)
    except (ValueError, AssertionError):
        pass  # ODL's line search gives up once no decrease is possible
    assert func(x) < func(p)
    assert np.abs(x[0].data - truth.positions).max() < 0.05


def test_several_species_get_their_weights():
    space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    truth = space.element([[-1.5, 0.4], [1.2, -0.8], [0.3, 1.9]],
                          weights=[1.0, 2.0, 1.0], species=['Au', 'Pt', 'Au'])
    measured = simulate(truth, np.radians([0, 60, 120]), 0.35, n_detector=64)
    result = oa.ADCG().solve(problem_of(measured, alpha=0,
                                        weights={'Au': 1.0, 'Pt': 2.0}))
    match = oa.match_atoms(truth, result.measure)
    assert match.exact and match.species_accuracy == 1.0


def test_alpha_sweep_and_discrepancy_choice():
    phantom = oa.defect_phantom('vacancy', shape=(4, 4))
    a = phantom.lattice_spacing
    measured = simulate(phantom.measure, np.radians([0, 45, 90]), 0.15 * a,
                        n_detector=64, noise=0.02, seed=1)
    sweep = oa.alpha_sweep(oa.ADCG(), problem_of(
        measured, noise_std=measured.noise_std, potential=a),
        [0, 1e-3, 1e-2, 10.0])
    assert sweep.alphas.tolist() == [0, 1e-3, 1e-2, 10.0]
    assert np.all(np.isfinite(sweep.energies))
    # More energy weight: lower energy, larger data discrepancy (end points).
    assert sweep.energies[-1] < sweep.energies[0]
    assert sweep.discrepancies[-1] > sweep.discrepancies[0]
    chosen = sweep.discrepancy_choice()
    assert chosen in sweep.alphas
    assert sweep.discrepancies[list(sweep.alphas).index(chosen)] <= \
        1.1 * sweep.noise_norm


def test_bad_input():
    truth, measured = small_problem()
    op = measured.operator()
    data = measured.element()
    with pytest.raises(ValueError, match='alpha'):
        oa.Problem(op, data, alpha=-1)
    with pytest.raises(ValueError, match='NaN'):
        oa.ADCG().solve(oa.Problem(op, np.full(op.range.shape, np.nan)))
    other = simulate(truth, np.radians([0, 90]), 0.35, n_detector=50)
    with pytest.raises(ValueError, match='another geometry|shape'):
        oa.ADCG().solve(oa.Problem(op, other.element()))
    with pytest.raises(ValueError, match='weights'):
        oa.Problem(op, data, weights=[-1.0])
    with pytest.raises(TypeError, match='SparseMeasure'):
        oa.ADCG().solve(oa.Problem(op, data), initial=np.zeros((2, 2)))
    with pytest.raises(TypeError, match='GaussianRayTransform'):
        oa.Problem(odl.IdentityOperator(op.range), data)
    # Bad method options fail when the solver is built, naming the option.
    with pytest.raises(ValueError, match='tol'):
        oa.ADCG(tol=-1)
    with pytest.raises(ValueError, match='local_maxiter'):
        oa.ADCG(local_maxiter='x')
    with pytest.raises(TypeError, match='Problem'):
        oa.ADCG(alpha=0)


# --- The sequential discrepancy principle


def core_problem(noise=0.01):
    """`small_problem`, to be solved with a potential of ``r_min = 3``.

    The closest true pairs (1.9 and 2.3 apart) then sit in the potential's
    repulsive core: a large energy weight keeps out atoms the data need,
    and the answer fits the data worse than the noise explains.
    """
    truth, measured = small_problem(noise=noise)
    return truth, measured, measured.operator(), measured.element()


def test_discrepancy_bound_is_tau_squared_times_the_noise_norm():
    truth, measured, op, y = core_problem()
    solver = oa.ADCG(discrepancy=1.1)
    problem = oa.Problem(op, y, potential=3.0, noise_std=measured.noise_std)
    # 0.5 tau^2 delta^2, delta^2 = c N s^2, from ODL's own norm of ones
    # (c N) - independent of how ADCG computes it.
    c_n = op.range.one().norm() ** 2
    expected = 0.5 * 1.1 ** 2 * c_n * measured.noise_std ** 2
    assert solver.discrepancy_bound(problem) == pytest.approx(expected)
    # Noise-free data (noise_std=0): the floor, 0.5 % of the data norm.
    exact = oa.ADCG(discrepancy=1.1)
    assert exact.discrepancy_bound(problem.with_noise_std(0.0)) == \
        pytest.approx(0.5 * 1.1 ** 2 * (5e-3 * y.norm()) ** 2)
    # Does not apply: unknown noise, switched off, no energy, and by
    # default ('auto') without a lattice start.
    assert oa.ADCG(discrepancy=1.1).discrepancy_bound(
        problem.with_noise_std(None)) is None
    assert oa.ADCG(discrepancy=None).discrepancy_bound(
        problem.with_noise_std(0.01)) is None
    assert solver.discrepancy_bound(problem.with_alpha(0)) is None
    # (The principle depends on the problem's dimension: it is resolved
    # for a problem, `ADCG.principle`.)
    assert oa.ADCG().principle(problem) is None
    assert oa.ADCG(starts=oa.lattice_starts('square')).principle(
        problem).tau == 1.1


@pytest.mark.parametrize('noise', [0.0, 0.01])
def test_discrepancy_principle_lowers_alpha_until_the_data_fit(noise):
    truth, measured, op, y = core_problem(noise)
    noise_std = measured.noise_std or 0.0
    c_n = op.range.one().norm() ** 2
    delta2 = max(c_n * noise_std ** 2, (5e-3 * y.norm()) ** 2)

    def misfit(measure):
        return 0.5 * (op(measure) - y).norm() ** 2

    problem = oa.Problem(op, y, alpha=0.1, potential=3.0, noise_std=noise_std)
    fixed = oa.ADCG(discrepancy=None).solve(problem)
    # Alpha fixed: the energy overrides the data (atoms missing).
    assert misfit(fixed.measure) > 0.5 * 1.1 ** 2 * delta2
    assert oa.match_atoms(truth, fixed.measure).f1 < 1
    assert fixed.info['lowered_alpha'] == [] and fixed.info['alpha'] == 0.1

    result = oa.ADCG(discrepancy=1.1, max_lowerings=10).solve(problem)
    steps = result.info['lowered_alpha']
    assert len(steps) >= 1
    # Each step lowered alpha by 0.3 because its answer did not fit ...
    assert [s['alpha'] for s in steps] == pytest.approx(
        [0.1 * 0.3 ** k for k in range(len(steps))])
    assert all(s['data_misfit'] > s['bound'] for s in steps)
    assert result.info['alpha'] == pytest.approx(0.1 * 0.3 ** len(steps))
    # ... and the answer returned fits the data to tau * delta: exact.
    assert misfit(result.measure) <= 0.5 * 1.1 ** 2 * delta2
    assert oa.match_atoms(truth, result.measure).exact
    # The certificate is that of the alpha used.
    cert = result.info['certificate']
    assert cert.data_misfit == pytest.approx(
        misfit(result.measure) / result.info['atom_energy'])


def test_discrepancy_principle_stops_after_max_lowerings():
    truth, measured, op, y = core_problem()
    result = oa.ADCG(discrepancy=1.1).solve(oa.Problem(
        op, y, alpha=1.0, potential=3.0, noise_std=measured.noise_std))
    assert len(result.info['lowered_alpha']) == 2
    assert result.info['alpha'] == pytest.approx(0.09)
    # Stopped by the limit, not by a fit: the answer at 0.09 still misfits.
    assert (result.info['certificate'].data_misfit
            > result.info['discrepancy_bound'])


def test_discrepancy_principle_bad_input_and_repr():
    truth, measured, op, y = core_problem()
    with pytest.raises(ValueError, match='tau'):
        oa.ADCG(discrepancy=0.9)
    with pytest.raises(ValueError, match="'auto'"):
        oa.ADCG(discrepancy='on')
    with pytest.raises(ValueError, match='alpha_step'):
        oa.ADCG(alpha_step=1.0)
    with pytest.raises(ValueError, match='max_lowerings'):
        oa.ADCG(max_lowerings=-1)
    solver = oa.ADCG(discrepancy=1.5, alpha_step=0.5, max_lowerings=3)
    text = repr(solver)
    assert ('discrepancy=1.5' in text and 'alpha_step=0.5' in text
            and 'max_lowerings=3' in text)
    assert 'discrepancy' not in repr(oa.ADCG())
    assert 'discrepancy=None' in repr(oa.ADCG(discrepancy=None))


def test_odl_local_descent_reaches_the_same_answer():
    """``descent='odl'`` (ODL's BFGS with a backtracking line search in the
    local moves) finds the same atoms as SciPy's L-BFGS-B (measured on the
    demo too: 48 atoms, the same answer to 0.009 A, 10x slower)."""
    phantom = oa.defect_phantom('vacancy', shape=(3, 3))
    a = phantom.lattice_spacing
    measured = simulate(phantom.measure, np.radians([0, 45, 90]), 0.15 * a,
                        n_detector=64, noise=0.01, seed=0)
    problem = problem_of(measured, potential=a, noise_std=measured.noise_std)
    scipy_answer = oa.ADCG().solve(problem)
    odl_answer = oa.ADCG(descent='odl').solve(problem)
    assert oa.match_atoms(phantom.measure, scipy_answer.measure).exact
    match = oa.match_atoms(scipy_answer.measure, odl_answer.measure)
    assert match.exact and match.max_distance < 0.02
    assert odl_answer.data_misfit == pytest.approx(scipy_answer.data_misfit,
                                                   rel=0.05)
    with pytest.raises(ValueError, match='descent'):
        oa.ADCG(descent='newton')


@pytest.mark.parametrize('solver', [oa.ADCG(), oa.SimulatedAnnealing(seed=0),
                                    oa.SIRT(n_iter=10 ** 6)],
                         ids=lambda s: type(s).__name__)
def test_time_limit_stops_every_solver(solver):
    """A time limit ends any solve at its next iteration with the answer so
    far (the demo takes tens of seconds without one)."""
    import time

    phantom = oa.defect_phantom('vacancy')
    measured = simulate(phantom.measure, np.radians([0, 45, 90]), 0.43,
                        n_detector=96, noise=0.01, seed=0)
    # (No noise level: SIRT would stop by the discrepancy principle first.)
    problem = problem_of(measured, potential=phantom.lattice_spacing)
    start = time.perf_counter()
    result = solver.solve(problem, time_limit=0.5)
    assert time.perf_counter() - start < 20
    assert result.info['stop_reason'] == 'time_limit'
    assert isinstance(result.measure, oa.SparseMeasure)
    with pytest.raises(ValueError, match='time_limit'):
        solver.solve(problem, time_limit=0)
