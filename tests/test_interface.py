"""The solvers are interchangeable: one problem, one call, one result type.

ADCG, simulated annealing and SIRT + picking (and SIRT + learned picking
when torch is installed) are swapped by changing only the line that builds
the solver, from its method's options alone; what to solve is one
`odl_atoms.Problem`. Each takes an ODL callback that it calls once per
iteration with the current atoms, and one solver's result starts another
(``initial=``). Problem settings given to a solver, and bad option values,
fail at once with a message that says where they belong.
"""

import numpy as np
import odl
import pytest
from odl.applications import tomo

import odl_atoms as oa
from odl_atoms.solvers.base import Reconstruction, Solver


def small_problem():
    """A 3 x 3 square lattice with its centre atom missing, 3 angles."""
    phantom = oa.lattice_with_vacancy(shape=(3, 3), spacing=2.885)
    measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]),
                           0.15 * 2.885, n_detector=48, noise=0.01, seed=0)
    return phantom, measured


def learned_sirt():
    torch = pytest.importorskip('torch')
    # The callback runs the network on every iteration's image: one thread,
    # as in test_learned (measured 0.05 s a pick with one thread, 1.3 s with
    # two on the busy 2-core test machine).
    torch.set_num_threads(1)
    from odl_atoms.learned import LearnedSIRT
    return LearnedSIRT(device='cpu')


# One line per solver: the only thing that changes. Method options only.
SOLVERS = {
    'adcg': lambda: oa.ADCG(max_iter=30),
    'annealing': lambda: oa.SimulatedAnnealing(
        n_sweeps=15, quench_sweeps=3, sweep_size=40, seed=0),
    'sirt': lambda: oa.SIRT(n_iter=30),
    'sirt+learned': learned_sirt,
}

# The problems every solver is given: the data alone, and with the energy.
PROBLEMS = {
    'alpha=0': dict(alpha=0),
    'energy': dict(potential=2.885),
}


@pytest.mark.parametrize('settings', list(PROBLEMS))
@pytest.mark.parametrize('name', list(SOLVERS))
def test_same_call_same_result_type(name, settings):
    phantom, measured = small_problem()
    op, data = measured.operator(), measured.element()
    problem = oa.Problem(op, data, **PROBLEMS[settings])
    solver = SOLVERS[name]()
    assert isinstance(solver, Solver)

    store = odl.solvers.CallbackStore()
    count = []
    callback = store & odl.solvers.CallbackApply(lambda x: count.append(1))
    result = solver.solve(problem, initial=None, callback=callback)

    assert isinstance(result, Reconstruction)
    assert isinstance(result.measure, oa.SparseMeasure)
    assert result.measure.space == op.domain
    # Once per iteration, and one objective value per iteration.
    assert result.n_iterations >= 1
    assert len(count) == len(store.results) == result.n_iterations
    assert len(result.objective) == result.n_iterations
    assert all(np.isfinite(result.objective))
    assert result.time > 0
    assert np.isfinite(result.data_misfit)
    assert result.solver == repr(solver)
    # Every method calls back with the atoms (pixel methods with those
    # picked from the current image; SIRT's image_callback gets the image).
    assert all(isinstance(x, oa.SparseMeasure) for x in store.results)
    # The small problem is easy enough that every method finds half the
    # atoms or more (ADCG without energy finds 5 of 8 from these angles):
    # the results are reconstructions, not only objects of the right type.
    assert oa.match_atoms(phantom.measure, result.measure).f1 >= 0.5


def test_sirt_image_callback_gets_the_images():
    _, measured = small_problem()
    problem = oa.Problem(measured.operator(), measured.element())
    solver = oa.SIRT(n_iter=12)
    images, atoms = [], odl.solvers.CallbackStore()
    result = solver.solve(problem, callback=atoms,
                          image_callback=images.append)
    assert len(images) == len(atoms.results) == result.n_iterations == 12
    image_space = solver.plan(problem).image_space
    assert all(isinstance(x, odl.DiscretizedSpaceElement) and
               x in image_space for x in images)
    # Every iterate's own image, the last one the result's.
    assert not np.array_equal(images[0].data, images[-1].data)
    assert np.array_equal(images[-1].data, result.image.data)
    # The atoms of each call are picked from that call's image: an
    # independent picking of the last image gives the last atoms.
    picked = oa.AtomPicker(problem.sigma, refine='com')(images[-1],
                                                        problem.space)
    assert np.array_equal(picked.positions, atoms.results[-1].positions)


def test_one_result_starts_another():
    """SIRT -> ADCG -> annealing, each started from the previous result."""
    phantom, measured = small_problem()
    problem = oa.Problem(measured.operator(), measured.element(), alpha=0)
    first = oa.SIRT(n_iter=30).solve(problem)
    second = oa.ADCG(max_iter=30).solve(problem, initial=first.measure)
    # ADCG from a good start improves the data fit of that start.
    assert second.data_misfit <= first.data_misfit * (1 + 1e-9)
    third = oa.SimulatedAnnealing(
        n_sweeps=10, quench_sweeps=3, sweep_size=40,
        seed=0).solve(problem, initial=second.measure)
    assert oa.match_atoms(phantom.measure, third.measure).f1 >= \
        oa.match_atoms(phantom.measure, second.measure).f1 - 0.2
    # And back to pixels: SIRT starts from the rendered atoms.
    fourth = oa.SIRT(n_iter=5).solve(problem, initial=third.measure)
    assert fourth.objective[0] < first.objective[0]


def four_atoms():
    """Four hand-placed atoms, 3 angles: ADCG recovers them exactly."""
    space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    truth = space.element([[-1.5, 0.4], [1.2, -0.8], [0.3, 1.9],
                           [-0.2, -2.1]])
    measured = oa.simulate(truth, np.radians([0, 60, 120]), 0.35,
                           n_detector=64)
    return truth, measured


def test_scaled_operator_is_an_atom_intensity():
    """``Problem(2 * op, data)``: weights are relative to ``2 * op``, so an
    atom of weight 1 has the data of an atom of weight 2 under ``op``."""
    truth, measured = four_atoms()
    op = measured.operator()
    space = op.domain
    # Data of atoms of weight 2 under op, projected by op itself.
    data = op(space.element(truth.positions, weights=2.0))
    problem = oa.Problem(2 * op, data, alpha=0)
    result = oa.ADCG().solve(problem)
    match = oa.match_atoms(truth, result.measure)
    assert match.exact, match
    assert match.max_distance < 1e-4
    assert np.allclose(result.measure.weights, 1.0)
    assert result.measure.space == space
    # Checked against op's projection: the atoms found, at twice their
    # weight, reproduce the data...
    found = result.measure
    doubled = space.element(found.positions, weights=2 * found.weights)
    assert (op(doubled) - data).norm() < 1e-5 * data.norm()
    # ... and so do they under ODL's scaled operator itself, whose misfit
    # is the one reported.
    residual = (2 * op)(found) - data
    assert residual.norm() < 1e-5 * data.norm()
    assert result.data_misfit == pytest.approx(
        0.5 * residual.norm() ** 2, rel=1e-6, abs=1e-12 * data.norm() ** 2)
    # Without the scale, the same data are atoms of weight 2 (the allowed
    # weight given in op's units): the same positions.
    plain = oa.ADCG().solve(oa.Problem(op, data, alpha=0, weights=2.0))
    assert np.allclose(plain.measure.weights, 2.0)
    assert oa.match_atoms(found, plain.measure).max_distance < 1e-4


def test_non_atom_operator_is_a_clear_type_error():
    _, measured = small_problem()
    data = measured.element()
    pixels = odl.uniform_discr([-5, -5], [5, 5], [32, 32], dtype='float32')
    ray = tomo.RayTransform(pixels, measured.geometry)
    for operator in (ray, odl.IdentityOperator(data.space)):
        with pytest.raises(TypeError, match='GaussianRayTransform'):
            oa.Problem(operator, data)
    # A multiple is an atom intensity: it must be positive.
    with pytest.raises(ValueError, match='positive'):
        oa.Problem(-1.0 * measured.operator(), data)


def solver_class(name):
    if name == 'LearnedSIRT':
        pytest.importorskip('torch')
        from odl_atoms.learned import LearnedSIRT
        return LearnedSIRT
    return getattr(oa, name)


@pytest.mark.parametrize('name', ['ADCG', 'SimulatedAnnealing', 'SIRT',
                                  'LearnedSIRT'])
def test_problem_settings_are_not_solver_options(name):
    cls = solver_class(name)
    _, measured = small_problem()
    op, data = measured.operator(), measured.element()
    settings = dict(alpha=0.0, potential=2.885, weights=1.0, noise_std=0.01,
                    max_atoms=10)
    for setting, value in settings.items():
        with pytest.raises(TypeError, match=f"'{setting}'.*Problem"):
            cls(**{setting: value})
    # The call from before the Problem: operator and settings to the solver.
    with pytest.raises(TypeError, match='Problem'):
        cls(op, alpha=0.0)
    with pytest.raises(TypeError, match='Problem'):
        cls(op)
    # Data instead of a problem.
    with pytest.raises(TypeError, match='Problem'):
        cls().solve(data)
    # And the same settings are accepted by the problem.
    assert oa.Problem(op, data, **settings).max_atoms == 10


@pytest.mark.parametrize('name, option, value', [
    ('ADCG', 'tol', -1),
    ('ADCG', 'local_maxiter', 'x'),
    ('ADCG', 'max_iter', 0),
    ('ADCG', 'descent', 'newton'),
    ('SimulatedAnnealing', 'n_sweeps', 0),
    ('SimulatedAnnealing', 't_end', -1),
    ('SIRT', 'n_iter', 0),
    ('SIRT', 'impl', 'gpu'),
    ('SIRT', 'tau', 0),
])
def test_bad_option_values_name_the_option(name, option, value):
    cls = getattr(oa, name)
    with pytest.raises(ValueError, match=f'`{option}`'):
        cls(**{option: value})
    # Changing an option checks it the same way; options cannot be changed
    # in place (a solver is the same method for every problem).
    solver = cls()
    with pytest.raises(ValueError, match=f'`{option}`'):
        solver.with_options(**{option: value})
    with pytest.raises(AttributeError):
        setattr(solver.options, option, value)
