"""Incremental updates of ADCG's 3D bookkeeping give what a recomputation gives.

- `RemovalChanges` (removal changes kept up to date while atoms are
  removed) against `removal_changes` of the atoms left, after every
  removal, and `_emptied` against the one-at-a-time loop written out here
  (every atom's change recomputed per removal), in 3D and 2D;
- `SeparableGrid.correlate_local` against `SeparableGrid.correlate`;
- `Oracle.score` updated from a stored score (an atom removed, moved,
  added; two removed) against a fresh oracle's full scoring, and
  `best_candidate`'s exclusion zone against the distance to every point;
- the attraction field with the compiled pair search (`kernels.grid_ball`)
  against the KD-tree search, bit for bit, and a fresh sum.
"""

import numpy as np
import pytest

import odl_atoms as oa
from odl_atoms import kernels
from odl_atoms.solvers.adcg.descent import removal_changes
from odl_atoms.solvers.adcg.oracle import Oracle
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.starts import _emptied
from problems import defect_problem, problem_of


def emptied_loop(context, positions):
    """`_emptied` as the plain loop: all removal changes per removal."""
    config = Configuration.lightest(context, positions)
    while config.n_atoms:
        change = removal_changes(context.objective, config)
        i = int(np.argmin(change))
        if not change[i] < 0:
            break
        config = config.without(i)
    config.value = context.objective(config.positions, config.weights)
    return config


def octahedron_sites():
    """An 85-atom fcc octahedron with 3 vacancies, 0.05 A displacements
    (sigma 0.15 spacings, 3 tilts, 1 % noise), its context, and sites: the
    perfect octahedron's plus 15 random ones in the box (some on top of
    atoms, some far)."""
    truth = oa.nanoparticle('octahedron', size=5, vacancies=3,
                            displacement=0.05, seed=1)
    perfect = oa.nanoparticle('octahedron', size=5)
    a = truth.lattice_spacing
    measured = oa.simulate(truth.measure, np.radians([-60, 0, 60]), 0.15 * a,
                           detector_cell=0.5, noise=0.01, seed=0)
    problem = problem_of(measured, potential=a, noise_std=measured.noise_std)
    context = oa.ADCG().context(problem)
    space = measured.operator().domain
    rng = np.random.default_rng(3)
    extra = rng.uniform(np.asarray(space.min_pt) + 1,
                        np.asarray(space.max_pt) - 1, (15, 3))
    sites = np.vstack([np.asarray(perfect.measure.positions), extra])
    return context, sites


def lattice_sites_2d():
    """A 6 x 6 square lattice with a vacancy (0/60/120 degrees, 1 % noise),
    its context and the sites of the full lattice plus 5 random ones."""
    phantom, measured = defect_problem('vacancy', shape=(6, 6))
    problem = problem_of(measured, potential=phantom.lattice_spacing,
                         noise_std=measured.noise_std)
    context = oa.ADCG().context(problem)
    full = oa.defect_phantom('vacancy', shape=(6, 6))
    x = np.asarray(phantom.measure.positions)
    space = measured.operator().domain
    rng = np.random.default_rng(4)
    extra = rng.uniform(np.asarray(space.min_pt) + 1,
                        np.asarray(space.max_pt) - 1, (5, 2))
    # The vacancy's site: the lattice site no atom of the phantom is near.
    a = full.lattice_spacing
    grid = np.asarray(full.measure.positions)
    sites = np.vstack([x, extra, grid[np.linalg.norm(
        grid[:, None] - x[None], axis=-1).min(axis=1) > 0.3 * a]])
    return context, sites


@pytest.mark.parametrize('case', [octahedron_sites, lattice_sites_2d])
def test_removal_changes_kept_up_to_date_equal_a_recomputation(case):
    """After every removal (the same choices as `_emptied`), the changes
    of the atoms left equal `removal_changes` of them to 1e-10 atom
    energies; removed atoms are inf."""
    context, sites = case()
    objective = context.objective
    config = Configuration.lightest(context, sites)
    removals = context.removals(config)
    unit = objective.atom_energy
    count = 0
    while True:
        i = int(np.argmin(removals.changes))
        if not removals.changes[i] < 0:
            break
        removals.remove(i)
        count += 1
        left = config.without(removals.removed)
        want = removal_changes(objective, left)
        got = removals.changes[~removals.removed]
        assert np.abs(got - want).max() < 1e-10 * unit
        assert np.all(np.isinf(removals.changes[removals.removed]))
    assert count >= 4  # the test removed atoms that interact


@pytest.mark.parametrize('case', [octahedron_sites, lattice_sites_2d])
def test_emptied_equals_the_one_at_a_time_loop(case):
    """`_emptied` removes the same sites as the loop that recomputes every
    atom's change per removal; the objective is the same to 1e-12."""
    context, sites = case()
    want = emptied_loop(context, sites)
    got = _emptied(context, sites)
    assert want.n_atoms < len(sites)
    assert np.array_equal(got.positions, want.positions)
    assert np.array_equal(got.weights, want.weights)
    assert got.value == pytest.approx(want.value, rel=1e-12)


def test_correlate_local_equals_the_full_correlation():
    """`SeparableGrid.correlate_local` of data that vanish outside a few
    atoms' windows: the points it returns have the correlations of
    `correlate` (to 1e-12 of the largest), every other point has
    correlation 0, and no point is returned twice."""
    context, sites = octahedron_sites()
    op = context.operator
    points, grid, _ = context.oracle.candidate_grid()
    data = op.stencil(sites[[40, 41]]).project(np.array([1.0, -2.0]))
    want = grid.correlate(data)
    index, values = grid.correlate_local(data)
    assert np.unique(index).size == index.size
    scale = np.abs(want).max()
    assert np.abs(values - want[index]).max() < 1e-12 * scale
    others = np.ones(want.size, bool)
    others[index] = False
    assert np.all(want[others] == 0)
    assert 0 < index.size < 0.75 * want.size  # local, and not empty


def updated_and_fresh_scores(context, base, trial):
    """The oracle's score of ``trial`` after scoring ``base``, and a fresh
    oracle's (a full scoring) of ``trial``."""
    objective = context.objective
    context.oracle.score(objective, base)
    got = context.oracle.score(objective, trial)
    fresh = Oracle(context.operator, context.oracle.allowed,
                   context.oracle.labels, context.oracle.grid_spacing)
    return got, fresh.score(objective, trial)


@pytest.mark.parametrize('change', ['remove', 'move', 'add', 'remove two'])
def test_updated_scores_equal_a_full_scoring(change):
    """An escape-like change of a 3D configuration (an atom removed, moved
    by 0.3 A, added between atoms, or two removed): the oracle's updated
    gains equal a fresh oracle's to 1e-10 atom energies, with the same
    excluded points and best weights, and the update path was taken
    (the stored score was used)."""
    context, sites = octahedron_sites()
    objective = context.objective
    truth = _emptied(context, sites)
    x = truth.positions
    if change == 'remove':
        trial = truth.without(17)
    elif change == 'remove two':
        trial = truth.without([5, 60])
    elif change == 'move':
        trial = truth.copy()
        trial.positions[30] += [0.3, -0.2, 0.1]
    else:
        trial = Configuration(np.vstack([x, x[:2].mean(axis=0)]),
                              np.append(truth.weights, truth.weights[0]),
                              np.append(truth.labels, truth.labels[0]))
    calls = []
    original = context.oracle._update

    def spy(*args):
        calls.append(original(*args))
        return calls[-1]

    context.oracle._update = spy
    (points, got, best), (_, want, want_best) = updated_and_fresh_scores(
        context, truth, trial)
    assert calls[-1] is not None
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert np.abs(got[finite] - want[finite]).max() < 1e-10 * \
        objective.atom_energy
    assert np.array_equal(best[finite], want_best[finite])


def test_best_candidate_exclusion_equals_the_distance_test():
    """`best_candidate` with an exclusion zone (from the grid's KD-tree)
    picks the point the distance to every grid point picks."""
    context, sites = octahedron_sites()
    objective = context.objective
    config = _emptied(context, sites).without(10)
    centre, radius = sites[10], 2 * context.sigma
    points, gains, best = context.oracle.score(objective, config)
    near = np.linalg.norm(points - centre, axis=1) < radius
    k = int(np.argmax(np.where(near, -np.inf, gains)))
    point, j, gain = context.best_candidate(config, exclude=(centre, radius))
    assert np.array_equal(point, points[k])
    assert (j, gain) == (int(best[k]), float(gains[k]))
    # The zone mattered: the best point without it is inside it.
    assert near[int(np.argmax(gains))]


def test_attraction_field_compiled_equals_the_tree():
    """The attraction field of the 3D scoring, kept up to date through a
    full stamp, a removal, a move and additions: the compiled pair search
    (`kernels.grid_ball`) gives the field of the KD-tree search bit for
    bit, and both equal `addition_energies` (a fresh sum) to 1e-12."""
    if kernels.backend() != 'numba':
        pytest.skip('the compiled kernels do not run')
    from odl_atoms.solvers.adcg.oracle import (
        _AttractionField, addition_energies, exclusion_radius)
    from odl_atoms.solvers.grid import scoring_discr

    context, sites = octahedron_sites()
    potential = context.objective.potential
    oracle = context.oracle
    points = oracle.candidate_grid()[0]
    x = _emptied(context, sites).positions
    moved = x.copy()
    moved[7] += 0.4
    steps = [x, np.delete(x, 3, axis=0), moved,
             np.vstack([moved, sites[-3:]])]
    tree = oracle._grid_tree(points)
    vectors = scoring_discr(context.operator.domain,
                            oracle.grid_spacing).partition.coord_vectors
    fields = {}
    for name, field in (
            ('compiled', _AttractionField(potential, points,
                                          exclusion_radius(potential), tree,
                                          vectors)),
            ('tree', _AttractionField(potential, points,
                                      exclusion_radius(potential), tree))):
        fields[name] = [tuple(np.copy(a) for a in field.update(step))
                        for step in steps]
    for (a, ea), (b, eb), step in zip(fields['compiled'], fields['tree'],
                                      steps):
        assert np.array_equal(a, b) and np.array_equal(ea, eb)
        want, nearest = addition_energies(potential, step, points,
                                          attractive_only=True)
        assert np.abs(a - want).max() < 1e-12 * np.abs(want).max()
        assert np.array_equal(ea, nearest < exclusion_radius(potential))
