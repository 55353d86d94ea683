"""The solvers are interchangeable: one problem, one call, one result type.

ADCG, simulated annealing and SIRT + picking (and SIRT + learned picking
when torch is installed) are swapped by changing only the line that builds
the solver; each takes an ODL callback that it calls once per iteration, and
one solver's result starts another (``initial=``).
"""

import numpy as np
import odl
import pytest

import odl_atoms as oa
from odl_atoms.solvers.base import Reconstruction, Solver


def small_problem():
    """A 3 x 3 square lattice with its centre atom missing, 3 angles."""
    phantom = oa.lattice_with_vacancy(shape=(3, 3), spacing=2.885)
    measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]),
                           0.15 * 2.885, n_detector=48, noise=0.01, seed=0)
    return phantom, measured


def learned_sirt(op):
    pytest.importorskip('torch')
    from odl_atoms.learned import LearnedSIRT
    return LearnedSIRT(op, device='cpu')


# One line per solver: the only thing that changes.
SOLVERS = {
    'adcg': lambda op: oa.ADCG(op, alpha=0, max_iter=30),
    'adcg+energy': lambda op: oa.ADCG(op, potential=2.885, max_iter=30),
    'annealing': lambda op: oa.SimulatedAnnealing(
        op, alpha=0, n_sweeps=15, quench_sweeps=3, sweep_size=40, seed=0),
    'sirt': lambda op: oa.SIRT(op, n_iter=30),
    'sirt+learned': learned_sirt,
}


@pytest.mark.parametrize('name', list(SOLVERS))
def test_same_call_same_result_type(name):
    phantom, measured = small_problem()
    op, data = measured.operator(), measured.element()
    solver = SOLVERS[name](op)
    assert isinstance(solver, Solver)

    store = odl.solvers.CallbackStore()
    count = []
    callback = store & odl.solvers.CallbackApply(lambda x: count.append(1))
    result = solver.solve(data, initial=None, callback=callback)

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
    # Atom methods call back with measures, pixel methods with images.
    kind = (odl.DiscretizedSpaceElement if name.startswith('sirt')
            else oa.SparseMeasure)
    assert all(isinstance(x, kind) for x in store.results)
    # The small problem is easy enough that every method finds half the
    # atoms or more (ADCG without energy finds 5 of 8 from these angles):
    # the results are reconstructions, not only objects of the right type.
    assert oa.match_atoms(phantom.measure, result.measure).f1 >= 0.5


def test_one_result_starts_another():
    """SIRT -> ADCG -> annealing, each started from the previous result."""
    phantom, measured = small_problem()
    op, data = measured.operator(), measured.element()
    first = oa.SIRT(op, n_iter=30).solve(data)
    second = oa.ADCG(op, alpha=0, max_iter=30).solve(
        data, initial=first.measure)
    # ADCG from a good start improves the data fit of that start.
    assert second.data_misfit <= first.data_misfit * (1 + 1e-9)
    third = oa.SimulatedAnnealing(
        op, alpha=0, n_sweeps=10, quench_sweeps=3, sweep_size=40,
        seed=0).solve(data, initial=second.measure)
    assert oa.match_atoms(phantom.measure, third.measure).f1 >= \
        oa.match_atoms(phantom.measure, second.measure).f1 - 0.2
    # And back to pixels: SIRT starts from the rendered atoms.
    fourth = oa.SIRT(op, n_iter=5).solve(data, initial=third.measure)
    assert fourth.objective[0] < first.objective[0]
