"""Tests of atom matching on hand-made cases with known answers."""

import json
import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from odl_atoms import metrics
from odl_atoms.metrics import (DEFAULT_RELATIVE_TOLERANCE, AtomMatch,
                               match_atoms, nearest_neighbour_distance)
from odl_atoms.space import SparseMeasureSpace


def grid(n0, n1, spacing=3.0):
    i, j = np.meshgrid(np.arange(n0), np.arange(n1))
    return spacing * np.column_stack([i.ravel(), j.ravel()]).astype(float)


def dense_optimum(ref, rec, tolerance):
    """Independent reference: one dense assignment over all atoms.

    Returns the number of pairs within the tolerance and their total distance
    for the assignment that maximises the first and minimises the second.
    """
    d = cdist(ref, rec)
    within = d <= tolerance
    big = (min(d.shape) + 1) * (tolerance + 1.0)
    r, c = linear_sum_assignment(np.where(within, d, big))
    keep = within[r, c]
    return int(keep.sum()), float(d[r, c][keep].sum())


# --- Hand-made cases


def test_identical_sets_match_exactly():
    ref = grid(7, 7)
    rec = ref[np.random.default_rng(0).permutation(len(ref))]
    m = match_atoms(ref, rec)
    assert isinstance(m, AtomMatch)
    assert m.f1 == m.precision == m.recall == 1.0
    assert m.rmsd == 0.0 and m.exact and m.count_error == 0
    np.testing.assert_array_equal(rec[m.pairs[:, 1]], ref[m.pairs[:, 0]])
    assert m.unmatched_reference.size == m.unmatched_reconstruction.size == 0


def test_default_tolerance_is_a_fraction_of_the_spacing():
    ref = grid(5, 5, spacing=2.5)
    m = match_atoms(ref, ref)
    assert m.tolerance == pytest.approx(DEFAULT_RELATIVE_TOLERANCE * 2.5)
    assert DEFAULT_RELATIVE_TOLERANCE == 0.3
    # Just inside and just outside the default tolerance.
    assert match_atoms(ref, ref + [0.74, 0]).f1 == 1.0
    assert match_atoms(ref, ref + [0.76, 0]).f1 == 0.0


def test_shift_within_tolerance_gives_rmsd_of_the_shift():
    ref = grid(6, 5)
    shift = np.array([0.3, -0.4])
    m = match_atoms(ref, ref + shift, tolerance=1.0)
    assert m.f1 == 1.0
    assert m.rmsd == pytest.approx(0.5)
    np.testing.assert_allclose(m.distances, 0.5)
    # Every atom pairs with its own shifted copy.
    np.testing.assert_array_equal(m.pairs[:, 0], m.pairs[:, 1])


def test_extra_atom_lowers_precision():
    ref = grid(5, 4)
    n = len(ref)
    rec = np.vstack([ref, [[1.5, 1.5]]])
    m = match_atoms(ref, rec)
    assert m.precision == pytest.approx(n / (n + 1))
    assert m.recall == 1.0
    assert m.f1 == pytest.approx(2 * n / (2 * n + 1))
    assert m.count_error == 1 and not m.exact
    np.testing.assert_array_equal(m.unmatched_reconstruction, [n])


def test_missing_atom_lowers_recall():
    ref = grid(5, 4)
    n = len(ref)
    rec = np.delete(ref, 7, axis=0)
    m = match_atoms(ref, rec)
    assert m.recall == pytest.approx((n - 1) / n)
    assert m.precision == 1.0
    assert m.count_error == -1
    np.testing.assert_array_equal(m.unmatched_reference, [7])


def test_optimal_assignment_beats_greedy():
    # Reference sites at 0 and 1; reconstructed atoms at 0.45 (near both)
    # and -0.55 (near the first only). Greedy matching by distance takes
    # (0, 0.45) first and then cannot match -0.55: one pair. The optimum
    # pairs 0 with -0.55 and 1 with 0.45: two pairs.
    ref = np.array([[0.0, 0.0], [1.0, 0.0]])
    rec = np.array([[0.45, 0.0], [-0.55, 0.0]])
    m = match_atoms(ref, rec, tolerance=0.6)
    assert m.n_matched == 2
    np.testing.assert_array_equal(m.pairs, [[0, 1], [1, 0]])
    np.testing.assert_allclose(m.distances, [0.55, 0.55])
    # The greedy answer really is worse.
    d = cdist(ref, rec)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    d[i, :] = d[:, j] = np.inf
    assert not np.any(d <= 0.6)


def test_among_largest_matchings_the_shortest_wins():
    # Both pairings match both atoms; the crossed one is longer.
    ref = np.array([[0.0, 0.0], [1.0, 0.0]])
    rec = np.array([[0.9, 0.0], [0.1, 0.0]])
    m = match_atoms(ref, rec, tolerance=1.0)
    np.testing.assert_array_equal(m.pairs, [[0, 1], [1, 0]])
    assert m.rmsd == pytest.approx(0.1)


def test_more_pairs_beat_shorter_distances():
    # A chain: ref at 0 and 1.09, rec at 0.99 and 2.08, tolerance 1. The
    # shortest pair (1.09, 0.99) is 0.1 long but leaves both others alone;
    # the two pairs of length 0.99 are more. Costing an unmatched pair at the
    # tolerance (0.1 + 1 < 0.99 + 0.99) would pick the single pair.
    ref = np.array([[0.0], [1.09]])
    rec = np.array([[0.99], [2.08]])
    m = match_atoms(ref, rec, tolerance=1.0)
    assert m.n_matched == 2
    np.testing.assert_array_equal(m.pairs, [[0, 0], [1, 1]])
    np.testing.assert_allclose(m.distances, [0.99, 0.99])


def test_species_accuracy():
    space = SparseMeasureSpace([-1, -1], [10, 10])
    pos = grid(3, 3)
    ref = space.element(pos, species=['Au'] * 8 + ['Ag'])
    rec = space.element(pos + 0.1, species=['Au'] * 6 + ['Ag'] * 3)
    m = match_atoms(ref, rec)
    assert m.species_accuracy == pytest.approx(7 / 9)
    # Unknown species on both sides: not applicable.
    assert match_atoms(space.element(pos), space.element(pos)) \
        .species_accuracy is None
    assert match_atoms(pos, pos).species_accuracy is None
    # A reconstruction that does not say the species gets none right.
    assert match_atoms(ref, pos).species_accuracy == 0.0


def test_measures_and_arrays_give_the_same_match():
    space = SparseMeasureSpace([-1, -1], [20, 20])
    pos = grid(4, 4)
    rec = pos + np.random.default_rng(1).normal(0, 0.2, pos.shape)
    a = match_atoms(space.element(pos), space.element(rec))
    b = match_atoms(pos, rec.tolist())
    np.testing.assert_array_equal(a.pairs, b.pairs)
    assert a.rmsd == b.rmsd


# --- Empty sets


def test_empty_sets():
    ref = grid(3, 3)
    empty = np.zeros((0, 2))
    m = match_atoms(ref, empty)
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)
    assert math.isnan(m.rmsd) and m.count_error == -9
    np.testing.assert_array_equal(m.unmatched_reference, np.arange(9))
    m = match_atoms(empty, ref)
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)
    assert m.tolerance == pytest.approx(0.9)   # from the reconstruction
    m = match_atoms(empty, [])
    assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)
    assert m.exact and math.isnan(m.tolerance)
    space = SparseMeasureSpace([0, 0], [1, 1])
    assert match_atoms(space.zero(), space.zero()).f1 == 1.0
    # JSON has no NaN: the dict says null.
    text = json.dumps(match_atoms(ref, empty).as_dict(), allow_nan=False)
    assert '"rmsd": null' in text


def test_as_dict_is_json_friendly():
    ref = grid(3, 3)
    m = match_atoms(ref, ref[:-1] + 0.1)
    d = m.as_dict(pairs=True)
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back['n_matched'] == 8 and back['count_error'] == -1
    assert back['f1'] == pytest.approx(16 / 17)
    assert back['pairs'] == m.pairs.tolist()
    assert 'pairs' not in m.as_dict()
    assert all(type(v) in (int, float, bool, type(None))
               for v in m.as_dict().values())


# --- Scale and agreement with a dense assignment


def test_large_jittered_crystal():
    rng = np.random.default_rng(0)
    ref = np.stack(np.meshgrid(*[np.arange(28)] * 3), -1).reshape(-1, 3)
    ref = 2.885 * ref[:20000].astype(float)
    rec = ref + rng.normal(0, 0.15, ref.shape)
    rec = np.vstack([np.delete(rec, rng.choice(len(rec), 100, replace=False),
                               axis=0),
                     rng.uniform(0, 2.885 * 27, (50, 3))])
    m = match_atoms(ref, rec)
    # All atoms jittered by 0.15 A rms (max ~0.8 A < 0.87 A tolerance) match,
    # except the 100 removed; few of the 50 random atoms land near a free site.
    assert m.n_matched <= 19900 + 50
    assert m.n_matched >= 19900 - 5
    assert m.rmsd == pytest.approx(0.15 * np.sqrt(3), rel=0.05)
    # A 300-atom corner solved by one dense assignment gives the same answer.
    corner = np.all(ref < 2.885 * 6.5, axis=1)[:20000]
    sub_ref = ref[corner][:300]
    sub_rec = rec[np.all(rec < sub_ref.max(axis=0) + 0.5, axis=1)
                  & np.all(rec > -0.5, axis=1)]
    sub = match_atoms(sub_ref, sub_rec, tolerance=m.tolerance)
    count, total = dense_optimum(sub_ref, sub_rec, m.tolerance)
    assert sub.n_matched == count
    assert sub.distances.sum() == pytest.approx(total)


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('sparse', [False, True])
def test_ambiguous_random_case_agrees_with_dense_assignment(seed, sparse,
                                                            monkeypatch):
    # Random points with a tolerance near the point spacing: many atoms have
    # several candidates, components are large and greedy choices fail.
    if sparse:
        monkeypatch.setattr(metrics, '_DENSE_LIMIT', 0)
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0, 30, (300, 2))
    rec = np.vstack([ref[:280] + rng.normal(0, 0.6, (280, 2)),
                     rng.uniform(0, 30, (40, 2))])
    tolerance = 0.9 * nearest_neighbour_distance(ref)
    m = match_atoms(ref, rec, tolerance=tolerance)
    count, total = dense_optimum(ref, rec, tolerance)
    assert m.n_matched == count
    assert m.distances.sum() == pytest.approx(total)
    # A valid matching: each atom at most once, all pairs within tolerance.
    assert len(np.unique(m.pairs[:, 0])) == len(np.unique(m.pairs[:, 1])) \
        == m.n_matched
    assert m.distances.max() <= tolerance
    np.testing.assert_allclose(
        m.distances, np.linalg.norm(ref[m.pairs[:, 0]] - rec[m.pairs[:, 1]],
                                    axis=1))


def test_nearest_neighbour_distance():
    assert nearest_neighbour_distance(grid(4, 4, 2.5)) == pytest.approx(2.5)
    with pytest.raises(ValueError, match='at least two atoms'):
        nearest_neighbour_distance([[0.0, 0.0]])


# --- Bad input


@pytest.mark.parametrize('ref, rec, kwargs, match', [
    (grid(2, 2), np.zeros((3, 3)), {}, 'same dimension'),
    (grid(2, 2), [[0.0, np.nan]], {}, 'finite'),
    ([[np.inf, 0.0]], grid(2, 2), {}, 'finite'),
    (grid(2, 2), grid(2, 2), {'tolerance': -0.1}, '>= 0'),
    (grid(2, 2), grid(2, 2), {'tolerance': math.nan}, '>= 0'),
    (grid(2, 2), grid(2, 2), {'tolerance': '1'}, 'length'),
    (np.zeros(4), grid(2, 2), {}, r'shape \(n, d\)'),
    ([[0.0, 0.0]], [[0.1, 0.0]], {}, 'pass `tolerance='),
    ('abc', grid(2, 2), {}, 'SparseMeasure or an'),
])
def test_bad_input(ref, rec, kwargs, match):
    with pytest.raises(ValueError, match=match):
        match_atoms(ref, rec, **kwargs)


def test_zero_tolerance_matches_only_coincident_atoms():
    ref = grid(3, 3)
    rec = np.vstack([ref[:5], ref[5:] + 1e-3])
    m = match_atoms(ref, rec, tolerance=0.0)
    assert m.n_matched == 5
