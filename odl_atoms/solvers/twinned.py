"""Multiply twinned particles: decahedral and icosahedral templates.

A five-fold twinned decahedron is five fcc tetrahedra around a five-fold
axis, an icosahedron twenty around a centre: no single lattice explains
them (the 3D lattice fits of `~odl_atoms.reconstruction.fit_lattices`
left 31-36 % of a 176-atom decahedron's data unexplained), so the defaults
ran the greedy start alone: at 5 tilts it was not exact on the largest
particles of ``benchmarks/twinned.py`` (a few atoms wrong: search
failures), and a 176-atom decahedron from 3 tilts ended at F1 0.944. Here
the ideal twinned particle, built by `ase.cluster`
(``Decahedron``, ``Icosahedron``) large enough to hold the particle, is
fitted to the data instead:

1. Orientation, coarse: in both particles the five-fold axes are bond
   directions shared by five domains, so the bond directions of a rough
   reconstruction (the energy-free one the defaults run to estimate
   r_min) peak there (`bond_axes`). The template's five-fold axis is
   turned onto each of the strongest peaks and spun about it (24 turns of
   its 72-degree period), and each of these orientations is refined by
   iterative closest points against the rough atoms (`_icp`: rotation,
   shift and scale, as `Umeyama's <https://doi.org/10.1109/34.88573>`_
   least squares).
2. The best orientation's sites the data support (every projection at
   least half an atom's peak, as `LatticeStart` tests sites) are pruned by
   the data (the exact misfit change of removing each site), and one
   affine map of each domain is fitted to the data misfit
   (`~odl_atoms.solvers.starts._affine_refine`: twin domains strain
   differently; ADCG moves single atoms afterwards).

`fit_twinned` returns the fit with the part of the data it leaves
unexplained (as `fit_lattice` does); `TwinnedStart` starts ADCG from it.
"""

import numpy as np
from scipy.spatial import cKDTree

from odl_atoms.geometry import as_data
from odl_atoms.objective import AtomObjective
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.starts import (FittedLattice, _affine_refine,
                                      _emptied, _inside, _LatticeFit)

__all__ = ('TWIN_KINDS', 'FittedTwin', 'TwinnedStart', 'fit_twinned',
           'twin_template', 'bond_axes', 'orient')

#: The twinned particles `fit_twinned` knows: name -> number of domains.
TWIN_KINDS = {'decahedral': 5, 'icosahedral': 20}

#: Five-fold axes (bond-direction peaks) tried per template.
N_AXES = 3

#: Turns about each axis over its 72-degree period (3 degrees apart).
N_SPINS = 24

#: Shifts along each axis tried per orientation (quarters of a spacing).
N_SHIFTS = 4

#: Iterations of the closest-point fit of each orientation and shift, ...
COARSE_ROUNDS = 4

#: ... and of the `N_REFINED` best of those.
ICP_ROUNDS = 20
N_REFINED = 8


def twin_template(kind, spacing, radius):
    """An ideal twinned particle that holds a sphere of ``radius``.

    Parameters
    ----------
    kind : {'decahedral', 'icosahedral'}
    spacing : float
        Nearest-neighbour distance (angstrom).
    radius : float
        The template covers every point within ``radius`` of its centre.

    Returns
    -------
    sites : numpy.ndarray
        ``(n, 3)``, centred at the particle's centre (the origin).
    axis : numpy.ndarray
        A five-fold axis (unit vector): z for the decahedron, a vertex
        direction for the icosahedron.
    domains : numpy.ndarray
        ``(n,)`` int, the fcc domain of every site (sites on a twin
        boundary belong to one of its domains).

    Examples
    --------
    >>> sites, axis, domains = twin_template('icosahedral', 2.885, 5.0)
    >>> len(sites), axis.round(3).tolist(), len(set(domains))
    (309, [0.851, 0.0, -0.526], 20)
    """
    from ase.cluster import Decahedron, Icosahedron

    if kind not in TWIN_KINDS:
        raise ValueError(f'`kind` must be one of {", ".join(TWIN_KINDS)}, '
                         f'got {kind!r}')
    a = spacing * np.sqrt(2)
    # Shells (icosahedron) or atoms per edge (decahedron) until the
    # template's inscribed sphere (its nearest facet) is beyond ``radius``.
    k = 2
    while True:
        if kind == 'icosahedral':
            atoms = Icosahedron('Au', k, latticeconstant=a)
        else:
            atoms = Decahedron('Au', k, k, 0, latticeconstant=a)
        x = atoms.positions - atoms.positions.mean(axis=0)
        if _inradius(x) >= radius + spacing:
            break
        k += 1
    if kind == 'decahedral':
        axis = np.array([0.0, 0.0, 1.0])
        # Domains: the five sectors between the twin planes, which hold
        # the outermost atoms of the pentagon (its vertices).
        phi = np.arctan2(x[:, 1], x[:, 0])
        rho = np.hypot(x[:, 0], x[:, 1])
        flat = np.abs(x[:, 2]) < 0.25 * spacing
        vertex = np.argmax(np.where(flat, rho, -1))
        first = phi[vertex]
        domains = (np.floor(((phi - first) % (2 * np.pi))
                            / (2 * np.pi / 5) + 1e-6) % 5).astype(int)
    else:
        r = np.linalg.norm(x, axis=1)
        outer = x[r > r.max() - 1e-6]          # the 12 vertices
        axis = outer[0] / np.linalg.norm(outer[0])
        # Domains: the twenty faces, whose centres are the means of
        # vertex triples at the edge length.
        u = outer / np.linalg.norm(outer, axis=1)[:, None]
        edge = np.min(np.linalg.norm(u[0] - u[1:], axis=1))
        faces = []
        for i in range(12):
            for j in range(i + 1, 12):
                for m in range(j + 1, 12):
                    if max(np.linalg.norm(u[i] - u[j]),
                           np.linalg.norm(u[j] - u[m]),
                           np.linalg.norm(u[i] - u[m])) < edge * 1.01:
                        faces.append(u[i] + u[j] + u[m])
        faces = np.array(faces)
        domains = np.argmax(x @ faces.T, axis=1)
    return x, axis, domains


def _inradius(x):
    """The smallest extent of points ``x`` over many directions."""
    u = _fibonacci(200)
    return float(np.min(np.max(x @ u.T, axis=0)))


def _fibonacci(n):
    """``n`` nearly uniform unit vectors (a Fibonacci sphere)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5 ** 0.5) * i
    s = np.sqrt(1 - z ** 2)
    return np.stack([s * np.cos(phi), s * np.sin(phi), z], axis=1)


def bond_axes(points, spacing, count=N_AXES, width=6.0, apart=20.0):
    """The ``count`` most frequent bond directions of ``points``.

    Bonds are pairs ``0.8-1.25 spacing`` apart; a direction's count is the
    number of bonds within ``width`` degrees of it (either sign), and the
    peaks are at least ``apart`` degrees from each other. In five-fold
    twinned particles the five-fold axes are the strongest peaks (five
    domains share each of them, at most two any other bond direction).

    Returns
    -------
    axes : numpy.ndarray
        ``(k, 3)`` unit vectors, strongest first (``k <= count``).

    Examples
    --------
    >>> sites, axis, _ = twin_template('decahedral', 2.885, 6.0)
    >>> abs(bond_axes(sites, 2.885, count=1)[0] @ axis).round(3)
    1.0
    """
    points = np.asarray(points, dtype=float)
    if len(points) < 2:
        return np.zeros((0, 3))
    pairs = cKDTree(points).query_pairs(1.25 * spacing, output_type='ndarray')
    v = points[pairs[:, 1]] - points[pairs[:, 0]]
    length = np.linalg.norm(v, axis=1)
    v = v[length > 0.8 * spacing] / length[length > 0.8 * spacing, None]
    if not len(v):
        return np.zeros((0, 3))
    both = np.concatenate([v, -v])
    tree = cKDTree(both)
    chord = 2 * np.sin(np.radians(width) / 2)
    counts = tree.query_ball_point(v, chord, return_length=True)
    cos_apart = np.cos(np.radians(apart))
    axes = []
    for i in np.argsort(-counts, kind='stable'):
        if any(abs(v[i] @ u) > cos_apart for u in axes):
            continue
        # The peak's mean direction (its bonds' signs aligned).
        near = both[tree.query_ball_point(v[i], chord)]
        mean = near.sum(axis=0)
        axes.append(mean / np.linalg.norm(mean))
        if len(axes) == count:
            break
    return np.array(axes)


def _turn(u, v):
    """A rotation matrix taking unit vector ``u`` to unit vector ``v``."""
    w = np.cross(u, v)
    s, c = np.linalg.norm(w), float(u @ v)
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        # Half a turn about any axis normal to u.
        n = np.cross(u, [1.0, 0, 0] if abs(u[0]) < 0.9 else [0, 1.0, 0])
        n /= np.linalg.norm(n)
        return 2 * np.outer(n, n) - np.eye(3)
    k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) / s
    return np.eye(3) + s * k + (1 - c) * k @ k


def _about(axis, angle):
    """Rotation by ``angle`` about unit vector ``axis``."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]],
                  [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _icp(tree, sites, guide, rotation, shift, spacing, rounds=ICP_ROUNDS):
    """Closest-point fit of the template to the rough atoms ``guide``.

    The map ``x -> s R x + t`` of template sites; each round pairs every
    guide point with its nearest mapped site (pairs closer than half a
    spacing) and fits ``s, R, t`` to the pairs by least squares
    (Umeyama). Returns ``(cost, s, R, t)``; the cost is the sum over guide
    points of their squared distance to the nearest site, capped at
    ``(0.3 spacing)^2`` (points on no site cost the cap).
    """
    scale, cap = 1.0, (0.3 * spacing) ** 2
    for _ in range(rounds):
        local = (guide - shift) @ rotation / scale
        dist, index = tree.query(local)
        near = dist * scale < 0.5 * spacing
        if near.sum() < 4:
            break
        p, q = sites[index[near]], guide[near]
        mp, mq = p.mean(axis=0), q.mean(axis=0)
        cov = (q - mq).T @ (p - mp) / len(p)
        u, d, vt = np.linalg.svd(cov)
        flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        rotation = u @ flip @ vt
        var = np.mean(np.sum((p - mp) ** 2, axis=1))
        # The scale refines the spacing estimate by a few percent at most.
        scale = float(np.clip(np.trace(np.diag(d) @ flip) / var, 0.9, 1.1))
        shift = mq - scale * rotation @ mp
    local = (guide - shift) @ rotation / scale
    dist = tree.query(local)[0] * scale
    return float(np.minimum(dist ** 2, cap).sum()), scale, rotation, shift


def orient(kind, guide, spacing, n_axes=N_AXES, n_spins=N_SPINS):
    """The template of ``kind`` placed on the rough atoms ``guide``.

    Returns ``(cost, sites, domains)``: the cost of the best placement
    (`_icp`) and the template's sites and domains placed there.
    """
    guide = np.asarray(guide, dtype=float)
    centre = guide.mean(axis=0)
    radius = float(np.max(np.linalg.norm(guide - centre, axis=1)))
    sites, axis, domains = twin_template(kind, spacing, radius + spacing)
    tree = cKDTree(sites)
    tried = []
    for target in bond_axes(guide, spacing, n_axes):
        base = _turn(axis, target)
        for angle in np.arange(n_spins) * (2 * np.pi / 5) / n_spins:
            rotation = _about(target, angle) @ base
            # The rough atoms' centroid can be off the template's layers
            # along the axis (measured: a 176-atom decahedron whose
            # closest-point fit from the centroid ended at 5 times the
            # cost of one from a quarter spacing away): a spacing along
            # the axis (the template's period there) in quarters.
            for step in np.arange(N_SHIFTS) / N_SHIFTS:
                shift = centre + step * spacing * target
                tried.append(_icp(tree, sites, guide, rotation, shift,
                                  spacing, rounds=COARSE_ROUNDS))
    tried.sort(key=lambda found: found[0])
    best = min((_icp(tree, sites, guide, rotation, shift, spacing)
                for _, _, rotation, shift in tried[:N_REFINED]),
               key=lambda found: found[0],
               default=(np.inf, 1.0, np.eye(3), centre))
    cost, scale, rotation, shift = best
    return cost, scale * sites @ rotation.T + shift, domains


class FittedTwin(FittedLattice):

    """A twinned template fitted to data (`fit_twinned`).

    A `~odl_atoms.solvers.starts.FittedLattice` whose ``lattice`` is the
    kind (``'decahedral'``, ``'icosahedral'``) and ``domains`` its number
    of fcc domains (5, 20); ``groups`` is the domain of every site of
    ``positions``, and ``guide_cost`` the closest-point cost of the
    orientation (`orient`).
    """

    def __init__(self, lattice, spacing, misfit, data_energy, positions,
                 groups, guide_cost=float('nan')):
        super().__init__(lattice, spacing, float('inf'), misfit, data_energy,
                         positions, domains=TWIN_KINDS[lattice])
        self.groups = np.asarray(groups, dtype=int)
        self.guide_cost = float(guide_cost)

    def __repr__(self):
        return (f'{type(self).__name__}({self.lattice!r}, spacing='
                f'{self.spacing:.4g}, residual '
                f'{100 * self.residual_fraction:.3g} %, '
                f'{len(self.positions)} sites, {self.domains} domains)')


def fit_twinned(operator, data, guide, spacing, kind, level=0.5):
    """Fit a twinned template of ``kind`` to the data.

    Parameters
    ----------
    operator : `GaussianRayTransform`
        3D.
    data : projection data
    guide : array-like
        ``(m, 3)`` rough atom positions (e.g. an energy-free
        reconstruction): they place the template (`orient`); the data then
        decide which of its sites are occupied and how each domain is
        strained.
    spacing : float
        First guess of the nearest-neighbour distance (angstrom).
    kind : {'decahedral', 'icosahedral'}
    level : float, optional
        Support level of the sites (see `LatticeStart`).

    Returns
    -------
    fitted : `FittedTwin`

    Examples
    --------
    >>> import odl_atoms as oa
    >>> from ase.cluster import Icosahedron
    >>> truth = oa.from_ase(Icosahedron('Au', 3), ndim=3, margin=2.885)
    >>> measured = oa.simulate(truth, np.radians([-60, 0, 60]), 0.43,
    ...                        detector_cell=0.5)
    >>> fit = fit_twinned(measured.operator(), measured.element(),
    ...                   truth.positions, 2.885, 'icosahedral')
    >>> oa.match_atoms(truth, fit.positions).exact
    True
    """
    data = as_data(operator.range, data)
    y = np.asarray(data.data, dtype=float)
    c = operator.inner_weight
    energy = 0.5 * c * float(y.ravel() @ y.ravel())
    guide = np.asarray(guide, dtype=float).reshape(-1, 3)
    if len(guide) < 4:
        return FittedTwin(kind, spacing, energy, energy, np.zeros((0, 3)),
                          np.zeros(0, int))
    cost, sites, domains = orient(kind, guide, spacing)
    scale = _median_neighbour(sites) / spacing
    # The sites in the box that every projection supports.
    fit = _LatticeFit(operator, y, level, occupancy=False)
    keep = _inside(sites, *fit.box)
    sites, domains = sites[keep], domains[keep]
    keep = fit.support(sites) >= fit.threshold if len(sites) else keep[:0]
    sites, domains = sites[keep], domains[keep]
    misfit = AtomObjective(operator, data)
    sites, domains = _pruned(misfit, sites, domains)
    if len(sites):
        refined, maps = _affine_refine(misfit, sites, domains,
                                       operator.domain, maps=True)
        if len(refined) == len(sites):
            scale *= float(np.mean(np.abs(np.linalg.det(maps))) ** (1 / 3))
            sites = refined
        sites, domains = _pruned(misfit, sites, domains)
    value = misfit.data_misfit(sites, np.ones(len(sites)))
    return FittedTwin(kind, spacing * scale, value, energy, sites, domains,
                      cost)


def _median_neighbour(points):
    if len(points) < 2:
        return float('nan')
    return float(np.median(cKDTree(points).query(points, 2)[0][:, 1]))


def _pruned(misfit, sites, domains):
    """The sites without those whose removal lowers the data misfit.

    The exact change of removing each site
    (`~odl_atoms.solvers.adcg.descent.removal_changes`, no energy); the
    worst eighth of those that lower it removed at a time, then the
    changes computed again (sites in one ray share their signal: removing
    all at once would empty columns).
    """
    from odl_atoms.solvers.adcg.descent import removal_changes

    while len(sites):
        config = Configuration(sites, np.ones(len(sites)),
                               np.zeros(len(sites), int))
        change = removal_changes(misfit, config)
        bad = np.flatnonzero(change < 0)
        if not len(bad):
            break
        worst = bad[np.argsort(change[bad])[:max(1, len(bad) // 8)]]
        keep = np.ones(len(sites), bool)
        keep[worst] = False
        sites, domains = sites[keep], domains[keep]
    return sites, domains


class TwinnedStart:

    """Start ADCG from a twinned template fitted to the data.

    Parameters
    ----------
    fitted : `FittedTwin`
        The fit (`fit_twinned`): its sites are the start, less those the
        data (with the energy) do not support
        (`~odl_atoms.solvers.starts._emptied`).

    Examples
    --------
    >>> fitted = FittedTwin('decahedral', 2.885, 0.0, 1.0, np.zeros((0, 3)),
    ...                     np.zeros(0, int))
    >>> TwinnedStart(fitted)
    TwinnedStart(FittedTwin('decahedral', spacing=2.885, residual 0 %, 0 sites, 5 domains))
    """

    name = 'twinned'

    def __init__(self, fitted):
        if not isinstance(fitted, FittedTwin):
            raise TypeError(f'`fitted` must be a FittedTwin (fit_twinned), '
                            f'got {fitted!r}')
        self.fitted = fitted

    def configuration(self, context, initial):
        positions = self.fitted.positions
        if not len(positions):
            return initial
        # Relaxed before ADCG's first addition: the template's sites are
        # off by the atoms' displacements, and the oracle adds atoms to
        # that residual (measured on the 921-atom icosahedron of
        # benchmarks/twinned.py: the fit was exact and relaxed to the
        # truth's objective, but ADCG from the unrelaxed sites ended
        # with 924 atoms and 0.5 atom energies above the greedy start).
        return context.local_move(
            _emptied(context, positions, type(initial)))

    def __repr__(self):
        return f'TwinnedStart({self.fitted!r})'
