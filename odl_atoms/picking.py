"""Atom picking: from a pixel/voxel image to atoms at continuous positions.

A reconstruction on a grid (SIRT, a learned post-processing, a rendered
density) shows every atom as a blob of width about ``sigma``. `AtomPicker`
turns such an image, an element of an ODL ``uniform_discr`` in 2D or 3D, into a
`SparseMeasure`:

1. **candidates**: local maxima of the image (`skimage.feature.peak_local_max`)
   within an ellipsoidal neighbourhood of radius ``min_distance`` (in
   angstrom, so anisotropic voxels are handled) and higher than a small
   fraction of the peak height of one atom;
2. **weights**: the integrated intensity of the pixels within
   ``integration_radius`` of each candidate and nearer to it than to any
   other (a Voronoi cell clipped to a ball), divided by the fraction of a
   Gaussian's mass inside that ball;
3. **decision**: a candidate is an atom when its weight is at least
   ``min_weight`` (weights are recomputed without the rejected ones until
   none is rejected). This first pass at pixel precision keeps the costly
   refinement for plausible atoms;
4. **sub-pixel positions**: a least-squares fit (`scipy.optimize.least_squares`)
   of one pixel-integrated isotropic Gaussian plus a constant to the pixels
   within ``fit_radius`` of each atom (``refine='fit'``, the default), or
   their centre of mass (``refine='com'``); atoms closer than
   ``min_distance`` are merged (the brighter kept), then steps 2-3 are
   repeated at the refined positions, and the weights are optionally
   snapped to the nearest allowed weight (species).

Why the decision is on the weight, not on the peak height: the height of an
atom's peak depends on how the reconstruction spreads it (few tilt angles
smear it along the rays, noise and the grid change it), while its mass is what
tomography conserves (a SIRT image has the data's total mass). Noise bumps and
streak crossings can be as high as a weak atom but hold little mass. The
height threshold only keeps the candidate list short.

Measured accuracy (``tests/test_picking.py``, atoms of ``sigma`` = 2 pixels
rendered by point sampling): on clean images the fit's largest position
error is 3e-4 pixel in 2D and 2e-5 pixel in 3D, weights within 0.3 %; with
white noise of 5 % of an atom's peak the fit's RMS error is 0.07 pixel and
the centre of mass's 0.15 pixel (which is also biased by 0.05-0.15 pixel on
clean images: the window truncates the Gaussian asymmetrically), hence the
default fit. Weights of 1 and 1.6 are told apart with 3 % noise. On SIRT
images the error is dominated by the reconstruction, not by the picker.
"""

import numbers

import numpy as np
import odl
from scipy.optimize import least_squares
from scipy.spatial import cKDTree
from scipy.special import erf, gammainc, ndtr

from odl_atoms.space import SparseMeasureSpace
from odl_atoms.weights import allowed_weights

__all__ = ('AtomPicker', 'pick_atoms', 'atom_peak_height', 'render_atoms')

#: Default minimum separation in units of ``sigma``: the sum of two Gaussians
#: of std ``sigma`` has a single maximum when their centres are closer than
#: ``2 sigma``, so no image can show two separate peaks there; real atoms are
#: several sigma apart (2-3 A against sigma of 0.1-0.5 A).
DEFAULT_SEPARATION = 2.0

#: Default candidate threshold: this fraction of the peak height of one atom
#: of the smallest allowed weight rendered on the image's grid. Low on
#: purpose: it only discards flat background; the weight decides.
DEFAULT_PEAK_FRACTION = 0.1

#: Default acceptance threshold: an atom must hold at least this fraction of
#: the smallest allowed weight. One half is the midpoint between "no atom"
#: and "one atom", the natural decision boundary for an estimated mass.
DEFAULT_MIN_WEIGHT_FRACTION = 0.5

#: Default fit window radius in units of ``sigma``: contains the Gaussian's
#: shoulders (where the position information is) yet stays inside the atom's
#: Voronoi cell for atoms more than ``4 sigma`` apart.
DEFAULT_FIT_RADIUS = 2.0

#: Default integration radius in units of ``sigma``: 99 % (2D) / 97 % (3D) of
#: a Gaussian's mass, corrected for exactly.
DEFAULT_INTEGRATION_RADIUS = 3.0

REFINE_METHODS = ('fit', 'com', None)

# Evaluation budget of one peak fit (see `_refine_fit`).
_FIT_MAX_NFEV = 50


def atom_peak_height(sigma, cell_sides, weight=1.0):
    """Return the largest pixel value of one rendered Gaussian atom.

    The value is the average of ``weight`` times a normalised isotropic
    Gaussian of std ``sigma`` over a pixel (voxel) centred on the atom,
    ``weight * prod_i erf(h_i / (2 sqrt(2) sigma)) / h_i`` — the height of an
    atom in a density image on this grid.

    Parameters
    ----------
    sigma : positive float
        Atom width (angstrom).
    cell_sides : sequence of positive float
        Pixel/voxel size along each axis (angstrom); its length is the
        dimension.
    weight : float, optional

    Returns
    -------
    height : float
        In atoms per unit area (2D) or volume (3D).

    Examples
    --------
    Pixels much smaller than the atom give the Gaussian's maximum:

    >>> h = atom_peak_height(1.0, [0.01, 0.01])
    >>> abs(h - 1 / (2 * np.pi)) < 1e-4
    True
    """
    sigma = _positive(sigma, 'sigma')
    cells = np.asarray(cell_sides, dtype=float)
    return float(weight) * float(np.prod(
        erf(cells / (2 * np.sqrt(2) * sigma)) / cells))


def render_atoms(measure, grid, sigma, truncate=6.0):
    """Return the density image of Gaussian atoms on a grid.

    Each pixel (voxel) holds the average over its cell of
    ``sum_i w_i G_sigma(x - x_i)``, computed exactly (differences of ``erf``
    at the cell edges, separable per axis), so an atom integrates to its
    weight over the image however small it is. This is the image a perfect
    pixel reconstruction would show; `SIRT` starts from it when given an
    initial measure.

    Parameters
    ----------
    measure : `SparseMeasure`
    grid : `odl.DiscretizedSpace`
        A ``uniform_discr`` of the measure's dimension.
    sigma : positive float
        Atom width (angstrom).
    truncate : positive float, optional
        Each atom touches the cells within ``truncate * sigma``.

    Returns
    -------
    image : ``grid`` element

    Examples
    --------
    >>> from odl_atoms import SparseMeasureSpace
    >>> space = SparseMeasureSpace([-2, -2], [2, 2])
    >>> grid = odl.uniform_discr([-2, -2], [2, 2], [16, 16])
    >>> image = render_atoms(space.element([[0.1, 0.2]], weights=2.0), grid,
    ...                      0.3)
    >>> round(float(image.data.sum()) * grid.cell_volume, 6)
    2.0
    """
    sigma = _positive(sigma, 'sigma')
    if not isinstance(grid, odl.DiscretizedSpace) or not grid.is_uniform \
            or grid.ndim != measure.ndim:
        raise TypeError(f'`grid` must be a {measure.ndim}D odl.uniform_discr, '
                        f'got {grid!r}')
    cells = np.asarray(grid.cell_sides, dtype=float)
    lower = np.asarray(grid.min_pt, dtype=float)
    shape = np.array(grid.shape)
    out = np.zeros(grid.shape)
    reach = truncate * sigma
    for pos, weight in zip(measure.positions, measure.weights):
        lo = np.clip(np.floor((pos - reach - lower) / cells).astype(int), 0,
                     shape)
        hi = np.clip(np.ceil((pos + reach - lower) / cells).astype(int), 0,
                     shape)
        if np.any(hi <= lo):
            continue
        profiles = []
        for i in range(grid.ndim):
            edges = lower[i] + np.arange(lo[i], hi[i] + 1) * cells[i]
            cdf = ndtr((edges - pos[i]) / sigma)
            profiles.append(np.diff(cdf) / cells[i])
        block = profiles[0]
        for prof in profiles[1:]:
            block = np.multiply.outer(block, prof)
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] += weight * block
    return grid.element(out.astype(grid.dtype, copy=False))


class AtomPicker:

    """Find atoms in a pixel/voxel image.

    Parameters
    ----------
    sigma : positive float
        Width (Gaussian std, angstrom) of an atom in the image. For a
        reconstruction this is the operator's ``sigma``; the fit lets the
        actual width vary (a reconstruction may blur more).
    min_distance : positive float, optional
        Minimum distance (angstrom) between two atoms. Default
        ``2 * sigma`` (see `DEFAULT_SEPARATION`).
    threshold : float, optional
        Smallest peak value (image units) of a candidate. Default: 0.1 times
        `atom_peak_height` of an atom of the smallest allowed weight on the
        image's grid.
    min_weight : float, optional
        Smallest estimated weight of an accepted atom. Default: half the
        smallest allowed weight (half of 1 without ``weights``).
    weights : float, sequence or mapping, optional
        Allowed atom weights (species), as for `ADCG`: one number, a sequence,
        or a mapping ``{label: weight}``. Each atom's estimated weight is
        snapped to the nearest allowed one and labelled. ``None`` (default):
        keep the estimated weights.
    refine : {'fit', 'com', None}, optional
        Sub-pixel refinement: Gaussian fit (default), centre of mass of the
        background-subtracted window, or none (pixel centres).
    fit_radius : positive float, optional
        Radius (angstrom) of the refinement window. Default ``2 * sigma``,
        at least 1.5 pixels.
    integration_radius : positive float, optional
        Radius (angstrom) within which an atom's intensity is summed. Default
        ``3 * sigma``.

    Examples
    --------
    Render two atoms of weights 1 and 2 on a 0.1 A grid and pick them:

    >>> from odl_atoms import SparseMeasureSpace
    >>> grid = odl.uniform_discr([-3, -3], [3, 3], [60, 60])
    >>> x, y = grid.meshgrid
    >>> s = 0.3
    >>> blob = lambda cx, cy: np.exp(-((x - cx)**2 + (y - cy)**2) / (2 * s**2))
    >>> image = grid.element((blob(-1.03, 0.52) + 2 * blob(1.21, -0.44))
    ...                      / (2 * np.pi * s**2))
    >>> atoms = AtomPicker(s).pick(image, SparseMeasureSpace([-3, -3], [3, 3]))
    >>> np.round(atoms.positions, 3)
    array([[ 1.21, -0.44],
           [-1.03,  0.52]])
    >>> np.round(atoms.weights, 2)
    array([ 2.,  1.])

    With allowed weights, each atom gets the nearest one and its label:

    >>> picker = AtomPicker(s, weights={'Ag': 1.0, 'Au': 2.0})
    >>> picker.pick(image, SparseMeasureSpace([-3, -3], [3, 3])).species
    array(['Au', 'Ag'], dtype='<U2')
    """

    def __init__(self, sigma, min_distance=None, threshold=None,
                 min_weight=None, weights=None, refine='fit', fit_radius=None,
                 integration_radius=None):
        self.sigma = _positive(sigma, 'sigma')
        self.min_distance = (None if min_distance is None
                             else _positive(min_distance, 'min_distance'))
        if threshold is not None:
            threshold = float(threshold)
            if not np.isfinite(threshold):
                raise ValueError(f'`threshold` must be a finite number, got '
                                 f'{threshold}')
        self.threshold = threshold
        if min_weight is not None:
            min_weight = float(min_weight)
            if not np.isfinite(min_weight) or min_weight < 0:
                raise ValueError(f'`min_weight` must be a number >= 0, got '
                                 f'{min_weight}')
        self.min_weight = min_weight
        self.weights = weights
        self._labels, self._allowed = _allowed_weights(weights)
        if refine not in REFINE_METHODS:
            raise ValueError(f'`refine` must be one of {REFINE_METHODS}, got '
                             f'{refine!r}')
        self.refine = refine
        self.fit_radius = (None if fit_radius is None
                           else _positive(fit_radius, 'fit_radius'))
        self.integration_radius = (
            None if integration_radius is None
            else _positive(integration_radius, 'integration_radius'))

    # --- Resolved parameters

    @property
    def reference_weight(self):
        """Smallest allowed weight (1 without ``weights``)."""
        return 1.0 if self._allowed is None else float(self._allowed.min())

    def separation(self):
        """Minimum distance between atoms (angstrom)."""
        return (self.min_distance if self.min_distance is not None
                else DEFAULT_SEPARATION * self.sigma)

    def peak_threshold(self, grid):
        """Candidate threshold (image units) on the grid ``grid``."""
        if self.threshold is not None:
            return self.threshold
        return DEFAULT_PEAK_FRACTION * atom_peak_height(
            self.sigma, grid.cell_sides, self.reference_weight)

    def weight_threshold(self):
        """Smallest weight of an accepted atom."""
        if self.min_weight is not None:
            return self.min_weight
        return DEFAULT_MIN_WEIGHT_FRACTION * self.reference_weight

    # --- Picking

    def __call__(self, image, space):
        """Same as `pick`."""
        return self.pick(image, space)

    def pick(self, image, space):
        """Return the atoms in ``image`` as a measure of ``space``.

        Parameters
        ----------
        image : `odl.DiscretizedSpaceElement`
            A 2D or 3D image on a uniform grid, in density units (atoms per
            unit area/volume, so that an atom of weight ``w`` integrates to
            ``w``).
        space : `SparseMeasureSpace`
            Where the atoms live; its dimension must be the image's.
            Positions are clipped into its box (a grid may overhang the box
            by a fraction of a pixel).

        Returns
        -------
        atoms : `SparseMeasure`
            Ordered by decreasing weight.
        """
        if not isinstance(space, SparseMeasureSpace):
            raise TypeError(f'`space` must be a SparseMeasureSpace, got '
                            f'{space!r}')
        found = self.estimate(image)
        if found['positions'].shape[1] != space.ndim:
            raise ValueError(
                f'the image is {found["positions"].shape[1]}D but the atom '
                f'space is {space.ndim}D; pass a {space.ndim}D image')
        positions = np.clip(found['positions'], space.min_pt, space.max_pt)
        weights = found['weights']
        if self._allowed is None:
            return space.element(positions, weights=weights)
        nearest = np.argmin(np.abs(weights[:, None] - self._allowed[None, :]),
                            axis=1)
        return space.element(positions, weights=self._allowed[nearest],
                             species=self._labels[nearest])

    def estimate(self, image):
        """Return the accepted atoms with their estimated parameters.

        This is `pick` before clipping into a box and snapping weights; use
        it to inspect what the picker measured.

        Parameters
        ----------
        image : `odl.DiscretizedSpaceElement`

        Returns
        -------
        found : dict of numpy.ndarray
            ``positions`` ``(n, d)``, ``weights`` ``(n,)`` (integrated),
            ``heights`` ``(n,)`` (peak pixel values) and ``widths`` ``(n,)``
            (fitted Gaussian std, ``sigma`` without a fit), sorted by
            decreasing weight.
        """
        arr, grid = _image_array(image)
        d = grid.ndim
        cells = np.asarray(grid.cell_sides, dtype=float)
        separation = self.separation()
        peaks = _local_maxima(arr, cells, separation, self.peak_threshold(grid))
        empty = {'positions': np.zeros((0, d)), 'weights': np.zeros(0),
                 'heights': np.zeros(0), 'widths': np.zeros(0)}
        if len(peaks) == 0:
            return empty
        heights = arr[tuple(peaks.T)]
        centres = np.stack([np.asarray(c)[i] for c, i in
                            zip(grid.partition.coord_vectors, peaks.T)], axis=1)
        radius = (self.integration_radius if self.integration_radius
                  is not None else DEFAULT_INTEGRATION_RADIUS * self.sigma)
        min_weight = self.weight_threshold()

        # A first decision at pixel precision, so that only plausible atoms
        # are refined (noise gives many candidates; fits are the cost).
        keep = _thin(centres, separation)
        peaks, centres, heights = peaks[keep], centres[keep], heights[keep]
        keep = _accepted(arr, grid, centres, radius, self.sigma, min_weight)
        peaks, centres, heights = peaks[keep], centres[keep], heights[keep]

        fit_radius = (self.fit_radius if self.fit_radius is not None
                      else max(DEFAULT_FIT_RADIUS * self.sigma,
                               1.5 * cells.max()))
        if self.refine == 'fit':
            positions, widths = _refine_fit(arr, grid, peaks, fit_radius,
                                            self.sigma)
        elif self.refine == 'com':
            positions = _refine_com(arr, grid, peaks, fit_radius)
            widths = np.full(len(peaks), self.sigma)
        else:
            positions, widths = centres, np.full(len(peaks), self.sigma)

        # Refined positions of one atom's split peaks may now be close.
        keep = _thin(positions, separation)
        positions, heights, widths = positions[keep], heights[keep], widths[keep]
        keep = _accepted(arr, grid, positions, radius, self.sigma, min_weight)
        positions, heights, widths = positions[keep], heights[keep], widths[keep]
        weights = _integrate(arr, grid, positions, radius, self.sigma)
        order = np.argsort(-weights, kind='stable')
        return {'positions': positions[order], 'weights': weights[order],
                'heights': heights[order], 'widths': widths[order]}

    def __repr__(self):
        args = [repr(self.sigma)]
        for name, default in (('min_distance', None), ('threshold', None),
                              ('min_weight', None), ('weights', None),
                              ('refine', 'fit'), ('fit_radius', None),
                              ('integration_radius', None)):
            value = getattr(self, name)
            if value != default:
                args.append(f'{name}={value!r}')
        return f'{type(self).__name__}({", ".join(args)})'


def pick_atoms(image, space, sigma, **kwargs):
    """Return the atoms in an image, `AtomPicker(sigma, **kwargs).pick`.

    Parameters
    ----------
    image : `odl.DiscretizedSpaceElement`
        2D or 3D density image.
    space : `SparseMeasureSpace`
    sigma : positive float
        Atom width (angstrom).
    **kwargs
        Further `AtomPicker` parameters (``min_distance``, ``threshold``,
        ``min_weight``, ``weights``, ``refine``, ...).

    Returns
    -------
    atoms : `SparseMeasure`

    Examples
    --------
    >>> from odl_atoms import SparseMeasureSpace
    >>> grid = odl.uniform_discr([-2, -2], [2, 2], [40, 40])
    >>> x, y = grid.meshgrid
    >>> image = grid.element(np.exp(-((x - 0.33)**2 + y**2) / 0.18)
    ...                      / (0.18 * np.pi))
    >>> atoms = pick_atoms(image, SparseMeasureSpace([-2, -2], [2, 2]), 0.3)
    >>> atoms.n_atoms, np.round(atoms.positions, 3)
    (1, array([[ 0.33,  0.  ]]))
    """
    return AtomPicker(sigma, **kwargs).pick(image, space)


# --- Helpers


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not np.isfinite(value) or value <= 0:
        raise ValueError(f'`{name}` must be a positive length in angstrom, '
                         f'got {value!r}')
    return float(value)


def _allowed_weights(weights):
    """Return (labels, weights) arrays of the allowed species, or Nones."""
    if weights is None:
        return None, None
    return allowed_weights(weights)


def _image_array(image):
    """Validate the image; return its float64 array and its space."""
    if not isinstance(image, odl.DiscretizedSpaceElement):
        raise TypeError(
            f'`image` must be an element of an odl.uniform_discr space (e.g. '
            f'a SIRT result.image), got {type(image).__name__}')
    grid = image.space
    if not grid.is_uniform or grid.ndim not in (2, 3):
        raise ValueError(f'`image` must live on a uniform 2D or 3D grid, got '
                         f'{grid!r}')
    arr = np.asarray(image.data, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f'`image` contains {int(np.sum(~np.isfinite(arr)))} NaN or inf '
            f'value(s); fix the reconstruction before picking atoms')
    return arr, grid


def _ball(cells, radius):
    """Boolean ellipsoidal footprint of physical radius ``radius``."""
    half = np.maximum(np.floor(radius / cells + 1e-9).astype(int), 1)
    axes = np.meshgrid(*[np.arange(-n, n + 1) * c for n, c in zip(half, cells)],
                       indexing='ij')
    dist2 = sum(a ** 2 for a in axes)
    # At least the nearest neighbours along every axis, so that a maximum is
    # strict with respect to them even for pixels larger than the radius.
    return dist2 <= max(radius ** 2, float(cells.max()) ** 2) + 1e-12


def _local_maxima(arr, cells, separation, threshold):
    """Pixel indices of local maxima, highest first."""
    from skimage.feature import peak_local_max
    footprint = _ball(cells, separation)
    return peak_local_max(arr, footprint=footprint, threshold_abs=threshold,
                          exclude_border=False)


def _window(grid, index, radius):
    """Index slices and physical coordinates of a window around ``index``."""
    cells = np.asarray(grid.cell_sides, dtype=float)
    half = np.ceil(radius / cells).astype(int)
    slices = tuple(slice(max(i - n, 0), min(i + n + 1, s))
                   for i, n, s in zip(index, half, grid.shape))
    coords = np.meshgrid(*[np.asarray(c)[sl] for c, sl in
                           zip(grid.partition.coord_vectors, slices)], indexing='ij')
    return slices, np.stack([c.ravel() for c in coords], axis=1)


def _refine_com(arr, grid, peaks, radius):
    """Centre of mass of the background-subtracted window of each peak."""
    positions = np.empty((len(peaks), grid.ndim))
    for k, index in enumerate(peaks):
        slices, points = _window(grid, index, radius)
        centre = np.array([np.asarray(c)[i] for c, i in
                           zip(grid.partition.coord_vectors, index)])
        inside = np.sum((points - centre) ** 2, axis=1) <= radius ** 2
        values = arr[slices].ravel()[inside]
        values = values - values.min()
        total = values.sum()
        positions[k] = (values @ points[inside] / total if total > 0
                        else centre)
    return positions


def _gaussian_cells(points, cells, centre, width, jacobian=False):
    """Pixel averages of a normalised Gaussian at pixel centres ``points``.

    With ``jacobian``, also return the derivatives with respect to the
    centre ``(p, d)`` and the width ``(p,)``.
    """
    lo = (points - 0.5 * cells - centre) / width
    hi = (points + 0.5 * cells - centre) / width
    factors = (ndtr(hi) - ndtr(lo)) / cells  # (p, d), one per axis
    value = np.prod(factors, axis=1)
    if not jacobian:
        return value
    pdf_lo = np.exp(-0.5 * lo ** 2) / np.sqrt(2 * np.pi)
    pdf_hi = np.exp(-0.5 * hi ** 2) / np.sqrt(2 * np.pi)
    d_centre = (pdf_lo - pdf_hi) / (width * cells)
    d_width = (lo * pdf_lo - hi * pdf_hi) / (width * cells)
    d = points.shape[1]
    # Product of the other axes' factors, without dividing by small ones.
    others = np.stack([np.prod(np.delete(factors, i, axis=1), axis=1)
                       for i in range(d)], axis=1)
    return value, others * d_centre, np.sum(others * d_width, axis=1)


def _refine_fit(arr, grid, peaks, radius, sigma):
    """Least-squares fit of ``b + w * G_s(x - x0)`` (pixel-averaged)."""
    d = grid.ndim
    cells = np.asarray(grid.cell_sides, dtype=float)
    positions = np.empty((len(peaks), d))
    widths = np.empty(len(peaks))
    for k, index in enumerate(peaks):
        slices, points = _window(grid, index, radius)
        centre = np.array([np.asarray(c)[i] for c, i in
                           zip(grid.partition.coord_vectors, index)])
        inside = np.sum((points - centre) ** 2, axis=1) <= radius ** 2
        points = points[inside]
        values = arr[slices].ravel()[inside]
        background = float(values.min())
        mass = max(float((values - background).sum() * np.prod(cells)), 1e-12)

        def residual(p):
            return (p[d + 2] + p[d] * _gaussian_cells(points, cells, p[:d],
                                                      p[d + 1]) - values)

        def jacobian(p):
            value, d_centre, d_width = _gaussian_cells(
                points, cells, p[:d], p[d + 1], jacobian=True)
            return np.column_stack([p[d] * d_centre, value, p[d] * d_width,
                                    np.ones_like(value)])

        start = np.concatenate([centre, [mass, sigma, background]])
        # Bounds keep the fit local: the centre within a pixel of the peak
        # pixel (the maximum is there), the width between a small fraction
        # and a few times sigma (a reconstruction blurs, it does not sharpen
        # much).
        lower = np.concatenate([centre - cells, [0.0, 0.2 * sigma, -np.inf]])
        upper = np.concatenate([centre + cells, [np.inf, 5.0 * sigma, np.inf]])
        if points.shape[0] <= d + 2:
            positions[k], widths[k] = centre, sigma
            continue
        # A clean blob converges in 10-30 evaluations; streaked blobs of
        # few-angle reconstructions can crawl along a bound for hundreds,
        # for no useful gain: cap them.
        fit = least_squares(residual, start, jac=jacobian,
                            bounds=(lower, upper), max_nfev=_FIT_MAX_NFEV,
                            x_scale=np.concatenate([cells, [mass, sigma,
                                                           mass / sigma ** d]]))
        positions[k], widths[k] = fit.x[:d], fit.x[d + 1]
    return positions, widths


def _thin(positions, separation):
    """Indices of a subset without pairs closer than ``separation``.

    Positions are in order of priority (brightest first); a position is
    dropped when a kept one is closer than ``separation``.
    """
    if len(positions) < 2:
        return np.arange(len(positions))
    tree = cKDTree(positions)
    dropped = np.zeros(len(positions), dtype=bool)
    keep = []
    for i in range(len(positions)):
        if dropped[i]:
            continue
        keep.append(i)
        for j in tree.query_ball_point(positions[i], separation * (1 - 1e-9)):
            if j > i:
                dropped[j] = True
    return np.array(keep, dtype=int)


def _accepted(arr, grid, positions, radius, sigma, min_weight):
    """Indices of the positions whose integrated weight is large enough.

    Rejected candidates no longer claim pixels of their neighbours, so the
    weights are computed again without them, until nothing changes.
    """
    keep = np.arange(len(positions))
    while keep.size:
        ok = _integrate(arr, grid, positions[keep], radius, sigma) >= min_weight
        if np.all(ok):
            break
        keep = keep[ok]
    return keep


def _integrate(arr, grid, positions, radius, sigma):
    """Mass in the ball of each atom, Voronoi-split, corrected to full mass.

    Every pixel within ``radius`` of an atom counts for the nearest atom;
    the sum is divided by the fraction of a Gaussian's (std ``sigma``) mass
    inside the ball, ``P(chi_d <= radius / sigma)``.
    """
    n, d = positions.shape
    if n == 0:
        return np.zeros(0)
    cells = np.asarray(grid.cell_sides, dtype=float)
    # Pixel index ranges around every atom, gathered into one list.
    lower = np.asarray(grid.min_pt, dtype=float)
    indices = []
    for pos in positions:
        lo = np.maximum(np.floor((pos - radius - lower) / cells).astype(int), 0)
        hi = np.minimum(np.ceil((pos + radius - lower) / cells).astype(int),
                        np.array(grid.shape))
        block = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)],
                            indexing='ij')
        indices.append(np.stack([b.ravel() for b in block], axis=1))
    indices = np.unique(np.concatenate(indices), axis=0)
    points = lower + (indices + 0.5) * cells
    dist, owner = cKDTree(positions).query(points)
    inside = dist <= radius
    values = arr[tuple(indices[inside].T)]
    mass = np.bincount(owner[inside], weights=values, minlength=n)
    mass *= float(np.prod(cells))
    fraction = gammainc(d / 2, radius ** 2 / (2 * sigma ** 2))
    return mass / fraction
