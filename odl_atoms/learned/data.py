"""Training data of the learned picker: random crystals, SIRT images, targets.

Everything here is NumPy (no torch), so it can be tested and documented
without the ``learn`` extra.

The network's input distribution is what it will see: SIRT images
(`odl_atoms.SIRT`, fixed number of iterations, no discrepancy stop) of
projections simulated with `odl_atoms.simulate` at the target problem's
angles, atom width, detector and box. Only the configurations vary
(`random_crystal`): square or hexagonal lattices of random spacing around the
target's, aligned with the box (zone-axis orientation, as the defect
phantoms are) or randomly rotated, randomly offset and cut to a random
crystal shape, with vacancies, interstitials, random displacements and
occasionally an edge dislocation or a grain boundary from the package's
phantom builders; relative noise drawn uniformly from a range.

Targets (`encode_targets`) follow DECODE / DeepLoco: per pixel, the
probability that an atom lies in it and the sub-pixel offset of that atom
from the pixel centre; offsets are also taught on the 8 neighbours of an
atom's pixel (pointing at the atom), so that an atom on a pixel border,
whose probability the network may split between two pixels, is decoded at
the same place from either (`decode_maps`).

Coordinates: index coordinates of an image of shape ``(n0, n1)`` put the
centre of pixel ``(i, j)`` at ``(i, j)``; the physical point is
``min_pt + (index + 0.5) * cell``.
"""

import numbers

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from odl_atoms.phantoms import (DEFAULT_SPACING, hexagonal_lattice,
                                lattice_with_displacements,
                                lattice_with_edge_dislocation,
                                lattice_with_grain_boundary, square_lattice)
from odl_atoms.space import SparseMeasureSpace

__all__ = ('random_crystal', 'encode_targets', 'decode_maps',
           'to_index', 'from_index', 'normalise_image')

# Offsets are taught within this many pixels (Chebyshev) of an atom's pixel.
_OFFSET_REACH = 1


def to_index(positions, grid):
    """Return index coordinates of physical positions on a 2D grid.

    Parameters
    ----------
    positions : array-like of shape ``(n, 2)``
    grid : `odl.DiscretizedSpace`
        Uniform 2D grid.

    Examples
    --------
    >>> import odl
    >>> grid = odl.uniform_discr([0, 0], [4, 2], [4, 2])
    >>> to_index([[0.5, 0.5], [3.75, 1.0]], grid)
    array([[ 0.  ,  0.  ],
           [ 3.25,  0.5 ]])
    """
    cells = np.asarray(grid.cell_sides, dtype=float)
    return ((np.asarray(positions, dtype=float).reshape(-1, 2)
             - np.asarray(grid.min_pt, dtype=float)) / cells - 0.5)


def from_index(index, grid):
    """Return physical positions of index coordinates (inverse of `to_index`).

    Examples
    --------
    >>> import odl
    >>> grid = odl.uniform_discr([0, 0], [4, 2], [4, 2])
    >>> from_index([[3.25, 0.5]], grid)
    array([[ 3.75,  1.  ]])
    """
    cells = np.asarray(grid.cell_sides, dtype=float)
    return (np.asarray(grid.min_pt, dtype=float)
            + (np.asarray(index, dtype=float).reshape(-1, 2) + 0.5) * cells)


def normalise_image(image, sigma, cell_sides, weight=1.0):
    """Return an image in units of the peak height of one atom.

    A SIRT image is a density (atoms per unit area); dividing it by the
    height of one rendered atom of width ``sigma`` and weight ``weight`` on
    its grid (`odl_atoms.atom_peak_height`) makes a perfectly resolved atom
    a peak of 1, whatever the unit of length and the pixel size. This is the
    network's input.

    Parameters
    ----------
    image : array-like of shape ``(n0, n1)``
    sigma : positive float
        Atom width (angstrom).
    cell_sides : pair of float
        Pixel size (angstrom).
    weight : positive float, optional

    Returns
    -------
    normalised : numpy.ndarray of float32

    Examples
    --------
    >>> from odl_atoms import atom_peak_height
    >>> h = atom_peak_height(0.4, [0.3, 0.3])
    >>> normalise_image(np.full((2, 2), 2 * h), 0.4, [0.3, 0.3])
    array([[ 2.,  2.],
           [ 2.,  2.]], dtype=float32)
    """
    from odl_atoms.picking import atom_peak_height
    scale = atom_peak_height(sigma, cell_sides, weight)
    return (np.asarray(image, dtype=np.float64) / scale).astype(np.float32)


def random_crystal(space, spacing=DEFAULT_SPACING, seed=None,
                   spacing_range=0.15, aligned_fraction=0.5,
                   max_vacancy_fraction=0.06, mean_interstitials=1.0,
                   max_jitter=0.05):
    """Return a random 2D crystal with defects inside a box.

    Parameters
    ----------
    space : `SparseMeasureSpace`
        The 2D box; atoms are kept at least half a spacing inside it.
    spacing : positive float, optional
        Typical nearest-neighbour distance (angstrom); the crystal's is drawn
        uniformly within ``spacing * (1 +- spacing_range)``.
    seed : int or `numpy.random.Generator`, optional
    spacing_range : float in [0, 1), optional
    aligned_fraction : float in [0, 1], optional
        Probability that the lattice is aligned with the box axes (rotation
        0, as zone-axis phantoms are); otherwise its rotation is uniform.
    max_vacancy_fraction : float, optional
        Each crystal removes a uniform random fraction, up to this, of its
        atoms.
    mean_interstitials : float, optional
        Mean (Poisson) number of extra atoms at random places at least half
        a spacing from the others.
    max_jitter : float, optional
        Each crystal displaces its atoms by white Gaussian noise of a
        uniform random std up to ``max_jitter * spacing``.

    Returns
    -------
    measure : `SparseMeasure`
        Weight-1 atoms in ``space``, no two closer than half a spacing.

    Examples
    --------
    >>> space = SparseMeasureSpace([-11.54, -11.54], [11.54, 11.54])
    >>> atoms = random_crystal(space, seed=0)
    >>> 5 <= atoms.n_atoms <= 150
    True
    >>> bool(np.all(np.abs(atoms.positions) <= 11.54 - 2.885 / 2))
    True
    """
    if not isinstance(space, SparseMeasureSpace) or space.ndim != 2:
        raise ValueError(f'`space` must be a 2D SparseMeasureSpace, got '
                         f'{space!r}')
    if not (isinstance(spacing, numbers.Real) and spacing > 0):
        raise ValueError(f'`spacing` must be a positive length, got '
                         f'{spacing!r}')
    rng = np.random.default_rng(seed)
    a = float(spacing) * rng.uniform(1 - spacing_range, 1 + spacing_range)
    lo = np.asarray(space.min_pt, dtype=float)
    hi = np.asarray(space.max_pt, dtype=float)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    # Enough sites to cover the box at any rotation and offset.
    n = int(np.ceil(2 * np.linalg.norm(half) / a)) + 3
    n += n % 2 == 0  # odd: the builders put an atom at the origin
    lattice = 'square' if rng.random() < 0.5 else 'hexagonal'
    kind = rng.choice(['perfect', 'edge_dislocation', 'grain_boundary',
                       'displaced'], p=[0.55, 0.15, 0.15, 0.15])
    shape = (n, n)
    if kind == 'edge_dislocation':
        base = lattice_with_edge_dislocation(lattice, shape=shape, spacing=a)
    elif kind == 'grain_boundary':
        top = np.pi / 2 if lattice == 'square' else np.pi / 3
        base = lattice_with_grain_boundary(
            lattice, shape=shape, spacing=a,
            angle=float(rng.uniform(0.1, 0.9) * top))
    elif kind == 'displaced':
        base = lattice_with_displacements(
            lattice, shape=shape, spacing=a,
            amplitude=float(rng.uniform(0.05, 0.15) * a),
            seed=int(rng.integers(2 ** 31)))
    else:
        base = (square_lattice if lattice == 'square'
                else hexagonal_lattice)(shape=shape, spacing=a)
    pos = base.measure.positions.copy()
    if rng.random() >= aligned_fraction:
        t = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        pos = pos @ rot.T
    # The builders put the defect at the origin: move it anywhere in the
    # middle half of the box (the crystal's outline below is drawn
    # independently, so the lattice's offset relative to it is random too).
    pos = pos + centre + rng.uniform(-0.5, 0.5, 2) * half

    # The crystal: a random rectangle (edges along the box axes), half to
    # all of the box along each axis, held half a spacing inside the box.
    inner = half - a / 2
    size = rng.uniform(0.5, 1.0, 2) * inner
    mid = centre + rng.uniform(-1, 1, 2) * (inner - size)
    inside = np.all(np.abs(pos - mid) <= size, axis=1)
    pos = pos[inside]

    # Vacancies.
    if len(pos):
        keep = rng.random(len(pos)) >= rng.uniform(0, max_vacancy_fraction)
        pos = pos[keep]
    # Interstitials: random places inside the crystal, away from the atoms.
    for _ in range(rng.poisson(mean_interstitials)):
        for _ in range(20):
            cand = mid + rng.uniform(-1, 1, 2) * size
            if len(pos) == 0 or cKDTree(pos).query(cand)[0] >= 0.5 * a:
                pos = np.vstack([pos, cand])
                break
    # Thermal-like jitter.
    pos = pos + rng.normal(0, rng.uniform(0, max_jitter) * a, pos.shape)
    pos = pos[np.all(np.abs(pos - centre) <= inner, axis=1)]
    # No two atoms closer than half a spacing (grain boundaries, jitter).
    if len(pos) > 1:
        pos = pos[_separated(pos, 0.5 * a)]
    return space.element(pos.reshape(-1, 2))


def _separated(positions, distance):
    """Indices of a subset without pairs closer than ``distance``."""
    tree = cKDTree(positions)
    dropped = np.zeros(len(positions), dtype=bool)
    for i, j in sorted(tree.query_pairs(distance)):
        if not dropped[i]:
            dropped[j] = True
    return np.flatnonzero(~dropped)


def encode_targets(index_positions, shape):
    """Return the training targets of atoms on an image grid.

    Parameters
    ----------
    index_positions : array-like of shape ``(n, 2)``
        Atom positions in index coordinates (`to_index`).
    shape : pair of int
        Image shape.

    Returns
    -------
    prob : numpy.ndarray of shape ``shape``
        1 in every pixel that holds an atom, else 0.
    offsets : numpy.ndarray of shape ``(2,) + shape``
        At every pixel within one pixel (Chebyshev) of an atom's pixel, the
        atom's index position minus the pixel's (nearest atom if several);
        0 elsewhere.
    mask : numpy.ndarray of shape ``shape``
        1 where ``offsets`` are defined, else 0.

    Examples
    --------
    >>> prob, offsets, mask = encode_targets([[2.2, 1.0]], (5, 4))
    >>> np.argwhere(prob)
    array([[2, 1]])
    >>> offsets[:, 2, 1].tolist(), offsets[:, 3, 2].tolist(), int(mask.sum())
    ([0.2, 0.0], [-0.8, -1.0], 9)
    """
    shape = tuple(int(s) for s in shape)
    idx = np.asarray(index_positions, dtype=float).reshape(-1, 2)
    prob = np.zeros(shape, dtype=np.float32)
    offsets = np.zeros((2,) + shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.float32)
    if len(idx) == 0:
        return prob, offsets, mask
    pix = np.rint(idx).astype(int)
    inside = np.all((pix >= 0) & (pix < shape), axis=1)
    prob[tuple(pix[inside].T)] = 1.0
    # Pixels near atoms, each assigned to its nearest atom.
    r = _OFFSET_REACH
    steps = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1),
                                 indexing='ij'), -1).reshape(-1, 2)
    near = np.unique((pix[:, None, :] + steps[None]).reshape(-1, 2), axis=0)
    near = near[np.all((near >= 0) & (near < shape), axis=1)]
    _, owner = cKDTree(idx).query(near)
    offsets[:, near[:, 0], near[:, 1]] = (idx[owner] - near).T
    mask[near[:, 0], near[:, 1]] = 1.0
    return prob, offsets, mask


def decode_maps(prob, offsets, threshold=0.5, min_distance=1.5,
                candidate=0.05):
    """Return atoms from a probability map and an offset map.

    1. candidates: pixels that are the maximum of ``prob`` in their 3 x 3
       neighbourhood and at least ``candidate``;
    2. score: the sum of ``prob`` over that neighbourhood (an atom on a
       pixel border may share its probability with a neighbour; the sum is
       the expected number of atoms there); candidates scoring at least
       ``threshold`` are atoms;
    3. position: the probability-weighted mean, over the neighbourhood, of
       each pixel's centre plus its offset (every pixel there points at the
       atom);
    4. of two atoms closer than ``min_distance`` pixels, the lower-scoring
       one is dropped.

    Parameters
    ----------
    prob : array-like of shape ``(n0, n1)``
        Probabilities in [0, 1].
    offsets : array-like of shape ``(2, n0, n1)``
        Offsets in pixels from each pixel's centre.
    threshold : float, optional
    min_distance : float, optional
        In pixels.
    candidate : float, optional

    Returns
    -------
    index_positions : numpy.ndarray of shape ``(n, 2)``
        Index coordinates (`from_index` gives physical ones), sorted by
        decreasing score.
    scores : numpy.ndarray of shape ``(n,)``

    Examples
    --------
    An atom at index ``(2.3, 1.6)``, its probability split between two
    pixels, each pointing at it:

    >>> prob = np.zeros((5, 4)); offsets = np.zeros((2, 5, 4))
    >>> prob[2, 1], prob[2, 2] = 0.5, 0.4
    >>> offsets[:, 2, 1], offsets[:, 2, 2] = [0.3, 0.6], [0.3, -0.4]
    >>> decode_maps(prob, offsets)
    (array([[ 2.3,  1.6]]), array([ 0.9]))
    """
    prob = np.asarray(prob, dtype=float)
    offsets = np.asarray(offsets, dtype=float)
    if prob.ndim != 2 or offsets.shape != (2,) + prob.shape:
        raise ValueError(f'need prob of shape (n0, n1) and offsets of shape '
                         f'(2, n0, n1), got {prob.shape} and {offsets.shape}')
    peak = ndimage.maximum_filter(prob, size=3, mode='constant', cval=0.0)
    cand = np.argwhere((prob == peak) & (prob >= candidate))
    empty = np.zeros((0, 2)), np.zeros(0)
    if len(cand) == 0:
        return empty
    # Neighbourhood sums of p, p * (centre + offset), per axis.
    i0, i1 = np.meshgrid(np.arange(prob.shape[0]), np.arange(prob.shape[1]),
                         indexing='ij')
    box = np.ones((3, 3))

    def window_sum(arr):
        return ndimage.correlate(arr, box, mode='constant', cval=0.0)

    mass = window_sum(prob)
    first = window_sum(prob * (i0 + offsets[0]))
    second = window_sum(prob * (i1 + offsets[1]))
    scores = mass[tuple(cand.T)]
    ok = scores >= threshold
    cand, scores = cand[ok], scores[ok]
    if len(cand) == 0:
        return empty
    positions = np.stack([first[tuple(cand.T)], second[tuple(cand.T)]],
                         axis=1) / scores[:, None]
    order = np.argsort(-scores, kind='stable')
    positions, scores = positions[order], scores[order]
    if len(positions) > 1 and min_distance > 0:
        keep = _separated(positions, min_distance)
        positions, scores = positions[keep], scores[keep]
    return positions, scores
