"""Trust without a truth: per-atom confidence, the verdict, the film.

The confidence is checked on configurations whose right reading is known by
construction (an exact answer with one atom moved off its site, or a ghost
added), and its raw quantities against independent computations (the
objective evaluated with and without the atom, the Cramér-Rao bound,
finite differences of the energy's gradient). The verdict is checked on
searches whose starts agree (an exact 3 x 3 case) and disagree (a wrong
answer from two zone axes), the film by reading the GIF back with Pillow.
"""

import matplotlib
import numpy as np
import odl
import pytest

import odl_atoms as oa
from odl_atoms.confidence import (AtomConfidence, UNCERTAIN_BELOW,
                                  atom_confidence, verdict)
from odl_atoms.precision import position_crb
from odl_atoms.solvers.base import Reconstruction
from problems import problem_of

matplotlib.use('Agg')


def _lattice_case(defect='vacancy', lattice='square', shape=(3, 3),
                  angles=(0, 45, 90), noise=0.01, n_detector=48):
    phantom = oa.defect_phantom(defect, lattice=lattice, shape=shape)
    measured = oa.simulate(phantom.measure, np.radians(angles), 0.43,
                           n_detector=n_detector, noise=noise, seed=0)
    problem = problem_of(measured, potential=phantom.lattice_spacing,
                         noise_std=measured.noise_std)
    return phantom, measured, problem


@pytest.fixture(scope='module')
def exact_answer():
    """ADCG's answer on a 4 x 4 square lattice with a vacancy, verified
    exact against the phantom."""
    phantom, measured, problem = _lattice_case(shape=(4, 4), n_detector=64)
    result = oa.ADCG().solve(problem)
    assert oa.match_atoms(phantom.measure, result.measure).exact
    return phantom, problem, result


def _neighbours(positions, index, reach):
    dist = np.linalg.norm(positions - positions[index], axis=1)
    return np.flatnonzero((dist > 0) & (dist < reach))


def test_atom_moved_to_a_wrong_site_has_lower_confidence(exact_answer):
    phantom, problem, result = exact_answer
    a = phantom.lattice_spacing
    x = result.measure.positions.copy()
    # Move an atom next to the vacancy into it: its own site is left empty.
    truth = phantom.measure.positions
    hole = _vacant_site(truth, a)
    k = int(np.argmin(np.linalg.norm(x - hole, axis=1)))
    home = x[k].copy()
    x[k] = hole
    moved = problem.space.element(x)
    conf = atom_confidence(moved, problem)
    near = _neighbours(x, k, 1.5 * a)
    assert near.size >= 3
    assert conf.score[k] < conf.score[near].min()
    assert k in conf.uncertain()
    # Its best alternative is where it belongs, and moving it there lowers
    # the objective (checked by evaluating the objective there).
    assert conf.relocation[k] < 0
    assert np.linalg.norm(conf.alternative[k] - home) < conf.tolerance
    objective = problem.objective()
    back = x.copy()
    back[k] = home
    w = np.ones(len(x))
    assert objective(back, w) < objective(x, w)
    # The answer itself: every atom trusted.
    good = atom_confidence(result, problem)
    assert good.uncertain().size == 0


def _vacant_site(truth, a):
    """The lattice site of the vacancy (the square lattice's site with no
    atom), from the phantom's atoms."""
    lo = truth.min(axis=0)
    grid = np.round((truth - lo) / a).astype(int)
    n = grid.max(axis=0) + 1
    taken = {tuple(g) for g in grid}
    missing = [(i, j) for i in range(n[0]) for j in range(n[1])
               if (i, j) not in taken]
    assert len(missing) == 1
    return lo + a * np.array(missing[0], float)


def test_ghost_atom_has_lower_confidence_and_exact_removal(exact_answer):
    phantom, problem, result = exact_answer
    a = phantom.lattice_spacing
    x = result.measure.positions
    # A ghost at the centre of a square of four atoms (no atom there).
    corner = x[np.argsort(np.linalg.norm(x - x.mean(axis=0), axis=1))[0]]
    ghost = corner + [a / 2, a / 2]
    assert np.linalg.norm(x - ghost, axis=1).min() > 0.6 * a
    y = np.vstack([x, ghost])
    conf = atom_confidence(problem.space.element(y), problem)
    g = len(y) - 1
    near = _neighbours(y, g, 1.5 * a)
    assert conf.score[g] < conf.score[near].min()
    assert conf.score[g] < UNCERTAIN_BELOW
    # The removal changes are the objective with and without each atom.
    objective = problem.objective()
    unit = objective.atom_energy
    w = np.ones(len(y))
    full = objective(y, w)
    direct = [(objective(np.delete(y, i, axis=0), w[1:]) - full) / unit
              for i in range(len(y))]
    np.testing.assert_allclose(conf.removal, direct, rtol=1e-6, atol=1e-9)
    assert conf.removal[g] < 0
    # The relocation changes are the objective with the atom moved to its
    # alternative site (the oracle's grid gain is exact for it).
    for i in (0, g):
        there = y.copy()
        there[i] = conf.alternative[i]
        assert conf.relocation[i] == pytest.approx(
            (objective(there, w) - full) / unit, rel=1e-6, abs=1e-9)


def test_position_spread_is_the_bound_without_energy():
    phantom, measured, problem = _lattice_case(shape=(3, 3))
    plain = problem.with_alpha(0)
    conf = atom_confidence(phantom.measure, plain)
    bound = position_crb(measured.operator(), phantom.measure,
                         measured.noise_std)
    np.testing.assert_allclose(conf.position_std, bound.atom_rms, rtol=1e-8)
    np.testing.assert_allclose(conf.position_crb, bound.atom_rms, rtol=1e-8)
    # Noise-free data fix every position.
    exact = atom_confidence(phantom.measure, plain.with_noise_std(0))
    assert np.all(exact.position_std == 0)


def test_energy_fixes_positions_the_zone_axes_leave_open():
    # A square lattice seen along its two axes: atoms of one row can slide
    # against each other without changing the data at first order (the
    # bound is infinite); the energy holds them.
    phantom, measured, problem = _lattice_case('perfect', angles=(0, 90))
    conf = atom_confidence(phantom.measure, problem)
    assert np.any(np.isinf(conf.position_crb))
    assert np.all(np.isfinite(conf.position_std))
    assert np.all(conf.position_std < 0.5 * conf.tolerance)


def test_energy_hessian_against_finite_differences():
    from odl_atoms.confidence import _energy_hessian

    phantom, _, problem = _lattice_case('interstitial', shape=(3, 3))
    objective = problem.objective()
    rng = np.random.default_rng(0)
    x = phantom.measure.positions + rng.normal(0, 0.1, (phantom.n_atoms, 2))
    hessian = _energy_hessian(objective, x).toarray()
    h = 1e-6
    potential = objective.potential
    for k in rng.choice(x.size, 5, replace=False):
        step = np.zeros(x.size)
        step[k] = h
        plus = potential.energy(x + step.reshape(x.shape), gradient=True)[1]
        minus = potential.energy(x - step.reshape(x.shape), gradient=True)[1]
        column = objective.energy_weight * (plus - minus).ravel() / (2 * h)
        np.testing.assert_allclose(hessian[:, k], column, rtol=1e-4,
                                   atol=1e-4 * np.abs(column).max())


def test_verdict_agrees_on_an_exact_case_with_lattice_starts():
    phantom, _, problem = _lattice_case()
    result = oa.ADCG(starts=oa.lattice_starts('square')).solve(problem)
    assert oa.match_atoms(phantom.measure, result.measure).exact
    line = verdict(result, problem)
    assert line.startswith(f'all 4 starts agree on the {phantom.n_atoms} '
                           f'atoms; local minimum')
    assert '\n' not in line
    conf = atom_confidence(result, problem)
    assert conf.n_starts == 4 and np.all(conf.agreement == 1)
    assert len(conf.disagreement) == 0


def test_verdict_flags_starts_that_disagree():
    # Two starts as good as each other that put one atom in different
    # places (the record ADCG keeps in info['starts']): that atom is
    # uncertain and the verdict names where it is.
    phantom, _, problem = _lattice_case('perfect')
    x = phantom.measure.positions
    value = problem.objective()(x, np.ones(len(x)))
    other = x.copy()
    other[4] += [1.4, 0.0]
    starts = [dict(start='greedy', objective=value, n_atoms=len(x),
                   positions=x),
              dict(start='lattice', objective=value, n_atoms=len(x),
                   positions=other)]
    result = Reconstruction(phantom.measure, info={'starts': starts})
    conf = atom_confidence(result, problem)
    assert conf.agreement[4] == 0.5
    assert np.all(np.delete(conf.agreement, 4) == 1)
    assert conf.score[4] < np.delete(conf.score, 4).min()
    line = verdict(result, problem, confidence=conf)
    assert line.startswith('starts disagree at 1 of the 9 atoms around ')
    assert 'treat these as uncertain' in line
    # A start that ended far higher lost: it is not counted against the
    # answer, and the verdict says by how much it lost.
    starts[1]['objective'] = value + 3 * problem.objective().atom_energy
    line = verdict(result, problem)
    assert line.startswith('only the best start (greedy) found these 9 '
                           'atoms (lattice ended >= 3.00 atom energies '
                           'higher with other atoms)')
    # One start: nothing to compare with, and the line says so.
    line = verdict(Reconstruction(phantom.measure,
                                  info={'starts': starts[:1]}), problem)
    assert line.startswith('one start only (greedy): nothing to compare')


def _starts_record(phantom, problem, records):
    """``info['starts']`` as ADCG records it: ``(name, gap in atom
    energies, moved)`` per start, the truth's atoms with atom 4 moved by
    1.4 A (half a spacing: another site) where ``moved``."""
    x = phantom.measure.positions
    objective = problem.objective()
    value = objective(x, np.ones(len(x)))
    starts = []
    for name, gap, moved in records:
        positions = x.copy()
        if moved:
            positions[4] += [1.4, 0.0]
        starts.append(dict(start=name, n_atoms=len(x), positions=positions,
                           objective=value + gap * objective.atom_energy))
    return Reconstruction(phantom.measure, info={'starts': starts})


def test_verdict_lattice_variants_are_one_opinion():
    # Only the lattice start and its two-patch variant found the answer's
    # atoms; greedy and the split start ended higher with atom 4 elsewhere.
    # The two begin from one fitted lattice: not an agreement.
    phantom, _, problem = _lattice_case('perfect')
    result = _starts_record(phantom, problem, [
        ('greedy', 3.0, True), ('lattice', 0.0, False),
        ('lattice/2', 0.0, False), ('lattice/split', 2.0, True)])
    conf = atom_confidence(result, problem, relocation=False)
    assert conf.starts == ['lattice', 'lattice/2']
    assert conf.agreeing == ['lattice', 'lattice/2']
    assert conf.n_opinions == 1
    line = verdict(result, problem, confidence=conf)
    assert line.startswith(
        'only one fitted lattice (lattice and lattice/2) found these 9 atoms '
        '(lattice/split and 1 more ended >= 2.00 atom energies higher with '
        'other atoms); ')
    assert 'agree' not in line.split(';')[0]
    # A search with the two variants only: nothing independent either.
    result = _starts_record(phantom, problem, [('lattice', 0.0, False),
                                               ('lattice/2', 0.1, False)])
    line = verdict(result, problem)
    assert line.startswith('only one fitted lattice (lattice and lattice/2) '
                           'found these 9 atoms; ')


def test_verdict_greedy_and_a_lattice_start_agree():
    # Greedy and the lattice start found the answer's atoms, the patches
    # and the split start ended higher elsewhere: two opinions agree.
    phantom, _, problem = _lattice_case('perfect')
    result = _starts_record(phantom, problem, [
        ('greedy', 0.0, False), ('lattice', 0.1, False),
        ('lattice/2', 1.0, True), ('lattice/split', 2.0, True)])
    conf = atom_confidence(result, problem, relocation=False)
    assert conf.agreeing == ['greedy', 'lattice'] and conf.n_opinions == 2
    line = verdict(result, problem, confidence=conf)
    assert line.startswith('the 2 best of 4 starts agree on the 9 atoms '
                           '(lattice/2 and 1 more ended >= 1.00 atom '
                           'energies higher with other atoms); ')
    # Greedy ended higher but with the same atoms: still a second opinion
    # (main's rule said "all starts agree" here too).
    result = _starts_record(phantom, problem, [
        ('greedy', 1.0, False), ('lattice', 0.0, False),
        ('lattice/2', 0.0, False)])
    conf = atom_confidence(result, problem, relocation=False)
    assert conf.starts == ['lattice', 'lattice/2']
    assert conf.agreeing == ['greedy', 'lattice', 'lattice/2']
    assert verdict(result, problem, confidence=conf).startswith(
        'all 3 starts agree on the 9 atoms; ')


@pytest.mark.slow
def test_verdict_flags_a_wrong_answer_from_two_zone_axes():
    # A hexagonal crystal with an interstitial from 0 and 60 degrees: the
    # lattice starts end in different arrangements within the search's
    # tolerance of each other, and the answer is wrong.
    phantom, _, problem = _lattice_case('interstitial', 'hexagonal', (4, 4),
                                        (0, 60), n_detector=64)
    result = oa.ADCG(starts=oa.lattice_starts('hexagonal')).solve(problem)
    assert not oa.match_atoms(phantom.measure, result.measure).exact
    line = verdict(result, problem)
    assert line.startswith('starts disagree at ')
    assert 'more angles or a lattice would help' in line


def test_confidence_in_the_atom_file(tmp_path, exact_answer):
    import ase.io

    _, problem, result = exact_answer
    conf = atom_confidence(result, problem)
    path = tmp_path / 'atoms.extxyz'
    oa.write_atoms(path, result.measure, extra=conf.arrays())
    atoms = ase.io.read(path)
    np.testing.assert_allclose(atoms.arrays['confidence'], conf.score,
                               atol=1e-7)
    np.testing.assert_allclose(atoms.arrays['removal_change'], conf.removal,
                               atol=1e-7)
    np.testing.assert_allclose(oa.read_atoms(path).positions,
                               result.measure.positions, atol=1e-7)
    with pytest.raises(ValueError, match='one row per atom'):
        oa.write_atoms(path, result.measure, extra={'confidence': [1.0]})


def test_bad_input():
    phantom, _, problem = _lattice_case()
    with pytest.raises(TypeError, match='Problem'):
        atom_confidence(phantom.measure, problem.operator)
    with pytest.raises(TypeError, match='Reconstruction'):
        atom_confidence(phantom.measure.positions, problem)
    with pytest.raises(ValueError, match='margin'):
        atom_confidence(phantom.measure, problem, margin=-1)


# --- Figures


def test_plot_without_truth_colours_by_confidence(exact_answer):
    import matplotlib.pyplot as plt

    phantom, problem, result = exact_answer
    conf = atom_confidence(result, problem)
    ax = oa.plot_atoms(result.measure, confidence=conf)
    scatter = ax.collections[0]
    np.testing.assert_allclose(scatter.get_array(), conf.score)
    assert scatter.get_cmap().name == 'RdYlGn'
    assert ax.figure.axes[-1].get_ylabel() == 'confidence'
    plt.close(ax.figure)
    # The comparison figure computes the confidence when there is no truth
    # and keeps the distance to the truth when there is one.
    op, data = problem.operator, problem.data
    fig = oa.plot_comparison({'adcg': result}, None, data, op,
                             noise_std=problem.noise_std)
    colours = fig.axes[0].collections[0].get_array()
    np.testing.assert_allclose(colours, conf.score)
    assert fig.axes[-1].get_ylabel() == 'confidence'
    plt.close(fig)
    fig = oa.plot_comparison({'adcg': result}, phantom.measure, data, op)
    match = oa.match_atoms(phantom.measure, result.measure)
    colours = fig.axes[0].collections[0].get_array()
    np.testing.assert_allclose(np.sort(colours), np.sort(match.distances))
    plt.close(fig)
    with pytest.raises(ValueError, match='one score per atom'):
        oa.plot_atoms(result.measure, confidence=[0.5])


def test_movie_has_one_frame_per_callback(tmp_path):
    from PIL import Image

    from odl_atoms.plot import animate_reconstruction, save_movie

    phantom, measured, problem = _lattice_case()
    store = odl.solvers.CallbackStore()
    oa.ADCG().solve(problem, callback=store)
    assert len(store.results) >= phantom.n_atoms
    path = save_movie(tmp_path / 'run.gif', store.results, problem,
                      truth=phantom.measure)
    with Image.open(path) as image:
        assert image.format == 'GIF'
        assert image.n_frames == len(store.results)
    assert [p.name for p in tmp_path.iterdir()] == ['run.gif']
    # From data and an operator, at most 3 frames (first and last kept).
    anim = animate_reconstruction(store.results, data=measured.element(),
                                  operator=measured.operator(), max_frames=3)
    path = tmp_path / 'short.gif'
    anim.save(path, writer=matplotlib.animation.PillowWriter(fps=2), dpi=40)
    with Image.open(path) as image:
        assert image.n_frames == 3
    matplotlib.pyplot.close(anim._fig)
    with pytest.raises(ValueError, match='.gif'):
        save_movie(tmp_path / 'run.mp4', store.results, problem)
    with pytest.raises(ValueError, match='empty'):
        save_movie(tmp_path / 'none.gif', [], problem)
    with pytest.raises(TypeError, match='problem'):
        save_movie(tmp_path / 'none.gif', store.results)
    assert not (tmp_path / 'none.gif').exists()
