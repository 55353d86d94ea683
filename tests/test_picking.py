"""Atom picking on images rendered here, independently of the picker.

Images are point samples of Gaussians at pixel centres (the picker's model
integrates over pixels instead, so the two differ slightly by construction);
positions are compared with the truth through `match_atoms`.
"""

import numpy as np
import odl
import pytest

from odl_atoms.metrics import match_atoms
from odl_atoms.picking import (AtomPicker, atom_peak_height, pick_atoms,
                               render_atoms)
from odl_atoms.space import SparseMeasureSpace


def sampled_image(grid, positions, weights, sigma):
    """Point-sampled sum of normalised Gaussians on ``grid``."""
    points = grid.points()
    d = grid.ndim
    values = np.zeros(len(points))
    for pos, w in zip(positions, weights):
        r2 = np.sum((points - pos) ** 2, axis=1)
        values += w * np.exp(-r2 / (2 * sigma ** 2)) / (
            2 * np.pi * sigma ** 2) ** (d / 2)
    return grid.element(values.reshape(grid.shape))


def jittered_lattice(d, extent, spacing, jitter, rng):
    axis = np.arange(-extent + spacing, extent - spacing / 2, spacing)
    grid = np.stack(np.meshgrid(*[axis] * d, indexing='ij'), -1).reshape(-1, d)
    return grid + rng.uniform(-jitter, jitter, grid.shape)


@pytest.mark.parametrize('d', [2, 3])
def test_exact_positions_on_clean_image(d):
    rng = np.random.default_rng(1)
    h, sigma = 0.1, 0.2  # sigma = 2 pixels
    extent = 4.0 if d == 2 else 2.4
    grid = odl.uniform_discr([-extent] * d, [extent] * d,
                             [int(2 * extent / h)] * d)
    truth = jittered_lattice(d, extent, 8 * sigma, 0.3, rng)
    image = sampled_image(grid, truth, np.ones(len(truth)), sigma)
    space = SparseMeasureSpace([-extent] * d, [extent] * d)
    atoms = pick_atoms(image, space, sigma)
    match = match_atoms(truth, atoms, tolerance=sigma)
    assert match.exact, match
    # 16 atoms (2D) / 8 atoms (3D). Measured max errors: 3e-4 pixel (2D),
    # 1.5e-5 pixel (3D), the residue of the point-sampled image against the
    # pixel-averaged model; weights within 0.3 %.
    assert match.max_distance < 0.002 * h
    assert np.allclose(atoms.weights, 1, atol=0.01)


def test_subpixel_accuracy_with_noise_and_com_is_worse():
    rng = np.random.default_rng(2)
    h, sigma = 0.1, 0.2
    grid = odl.uniform_discr([-4, -4], [4, 4], [80, 80])
    truth = jittered_lattice(2, 4, 8 * sigma, 0.3, rng)
    peak = atom_peak_height(sigma, [h, h])
    clean = sampled_image(grid, truth, np.ones(len(truth)), sigma)
    noisy = grid.element(clean.data + 0.05 * peak * rng.standard_normal(
        grid.shape))
    space = SparseMeasureSpace([-4, -4], [4, 4])
    errors = {}
    for refine in ('fit', 'com'):
        atoms = pick_atoms(noisy, space, sigma, refine=refine)
        match = match_atoms(truth, atoms, tolerance=sigma)
        assert match.exact, (refine, match)
        errors[refine] = match.rmsd / h
    # Measured: fit 0.074 pixel RMS (0.12 max), centre of mass 0.15 pixel
    # RMS (0.28 max), noise std 5 % of an atom's peak.
    assert errors['fit'] < 0.1
    assert errors['fit'] < errors['com']


def test_noise_only_image_gives_no_atoms():
    rng = np.random.default_rng(3)
    sigma = 0.2
    grid = odl.uniform_discr([-4, -4], [4, 4], [80, 80])
    peak = atom_peak_height(sigma, grid.cell_sides)
    # Noise peaks reach ~0.2 atom heights, far above the candidate
    # threshold; the mass criterion must reject them.
    noise = grid.element(0.05 * peak * rng.standard_normal(grid.shape))
    space = SparseMeasureSpace([-4, -4], [4, 4])
    assert pick_atoms(noise, space, sigma).n_atoms == 0
    # A positive background (what non-negative SIRT makes of noise) too.
    floor = grid.element(np.abs(noise.data))
    assert pick_atoms(floor, space, sigma).n_atoms == 0


def test_two_species_told_apart():
    rng = np.random.default_rng(4)
    sigma = 0.25
    grid = odl.uniform_discr([-5, -5], [5, 5], [100, 100])
    truth = jittered_lattice(2, 5, 1.5, 0.2, rng)
    heavy = rng.random(len(truth)) < 0.5
    weights = np.where(heavy, 1.6, 1.0)
    peak = atom_peak_height(sigma, grid.cell_sides)
    image = sampled_image(grid, truth, weights, sigma)
    image = grid.element(image.data + 0.03 * peak
                         * rng.standard_normal(grid.shape))
    space = SparseMeasureSpace([-5, -5], [5, 5])
    picker = AtomPicker(sigma)
    found = picker.estimate(image)
    match = match_atoms(truth, found['positions'], tolerance=sigma)
    assert match.exact
    estimated = found['weights'][match.pairs[:, 1]]
    light, heavy_w = (estimated[~heavy[match.pairs[:, 0]]],
                      estimated[heavy[match.pairs[:, 0]]])
    # The two weight distributions do not overlap.
    assert light.max() < heavy_w.min()
    assert np.allclose(light, 1.0, atol=0.1)
    assert np.allclose(heavy_w, 1.6, atol=0.1)

    labelled = AtomPicker(sigma, weights={'Ag': 1.0, 'Au': 1.6}).pick(image,
                                                                     space)
    reference = space.element(truth, weights=weights,
                              species=np.where(heavy, 'Au', 'Ag'))
    match = match_atoms(reference, labelled, tolerance=sigma)
    assert match.exact and match.species_accuracy == 1.0
    assert set(np.unique(labelled.weights)) == {1.0, 1.6}


def test_min_distance_and_thresholds_are_overridable():
    sigma = 0.2
    grid = odl.uniform_discr([-2, -2], [2, 2], [80, 80])
    # Two atoms 0.7 A apart (3.5 sigma): separate peaks.
    truth = np.array([[-0.35, 0.0], [0.35, 0.0]])
    image = sampled_image(grid, truth, [1.0, 0.8], sigma)
    space = SparseMeasureSpace([-2, -2], [2, 2])
    assert pick_atoms(image, space, sigma).n_atoms == 2
    # A minimum distance above their separation keeps the brighter one.
    one = pick_atoms(image, space, sigma, min_distance=1.0)
    assert one.n_atoms == 1
    assert np.linalg.norm(one.positions[0] - truth[0]) < 0.1
    # Raising the weight threshold drops the lighter atom; raising the
    # peak threshold above both peaks drops both.
    assert pick_atoms(image, space, sigma, min_weight=0.9).n_atoms == 1
    high = 2 * float(image.data.max())
    assert pick_atoms(image, space, sigma, threshold=high).n_atoms == 0


def test_positions_are_clipped_into_the_box():
    sigma = 0.2
    grid = odl.uniform_discr([-2, -2], [2, 2], [40, 40])
    image = sampled_image(grid, [[1.95, 0.0]], [1.0], sigma)
    space = SparseMeasureSpace([-1.9, -1.9], [1.9, 1.9])
    atoms = pick_atoms(image, space, sigma)
    assert atoms.n_atoms == 1
    assert atoms.positions[0, 0] == pytest.approx(1.9)


def test_render_atoms_integrates_and_matches_sampling():
    space = SparseMeasureSpace([-3, -3, -3], [3, 3, 3])
    mu = space.element([[0.1, -0.2, 0.3], [1.0, 0.6, -0.8]],
                       weights=[1.0, 2.5])
    fine = odl.uniform_discr([-3] * 3, [3] * 3, [60] * 3)
    image = render_atoms(mu, fine, 0.4)
    assert float(image.data.sum()) * fine.cell_volume == pytest.approx(3.5,
                                                                       rel=1e-6)
    sampled = sampled_image(fine, mu.positions, mu.weights, 0.4)
    # Cell averages and point samples differ by O(h^2 / sigma^2).
    assert np.abs(image.data - sampled.data).max() < 0.03 * sampled.data.max()


def test_peak_height_of_a_rendered_atom():
    grid = odl.uniform_discr([-2, -2], [2, 2], [20, 20])  # 0.2 A pixels
    space = SparseMeasureSpace([-2, -2], [2, 2])
    centre = grid.points()[210]  # a pixel centre
    image = render_atoms(space.element([centre]), grid, 0.3)
    assert float(image.data.max()) == pytest.approx(
        atom_peak_height(0.3, grid.cell_sides), rel=1e-6)


def test_repr_reproduces_constructor():
    picker = AtomPicker(0.3, min_distance=0.8, weights={'Au': 1.0},
                        refine='com')
    assert repr(picker) == ("AtomPicker(0.3, min_distance=0.8, "
                            "weights={'Au': 1.0}, refine='com')")
    assert repr(eval(repr(picker))) == repr(picker)


def test_bad_input_is_rejected_clearly():
    grid = odl.uniform_discr([-2, -2], [2, 2], [20, 20])
    space = SparseMeasureSpace([-2, -2], [2, 2])
    with pytest.raises(TypeError, match='uniform_discr'):
        pick_atoms(np.zeros((20, 20)), space, 0.3)
    bad = grid.element(np.full((20, 20), np.nan))
    with pytest.raises(ValueError, match='NaN'):
        pick_atoms(bad, space, 0.3)
    with pytest.raises(ValueError, match='3D'):
        pick_atoms(grid.one(), SparseMeasureSpace([0] * 3, [1] * 3), 0.3)
    with pytest.raises(TypeError, match='SparseMeasureSpace'):
        pick_atoms(grid.one(), 'box', 0.3)
    with pytest.raises(ValueError, match='sigma'):
        AtomPicker(-1.0)
    with pytest.raises(ValueError, match='refine'):
        AtomPicker(0.3, refine='peak')
    with pytest.raises(ValueError, match='weights'):
        AtomPicker(0.3, weights=[1.0, -2.0])
