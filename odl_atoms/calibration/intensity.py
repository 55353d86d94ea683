"""The intensity of one atom, from the data alone.

A projection's peaks are columns of atoms along the rays: each peak's
integral (`~odl_atoms.calibration.peaks.PeakFit` areas) is a whole number
of atoms times the intensity of one atom, times the projection's intensity
factor ``k_a`` (beam current, channelling). `estimate_intensity` finds

- the factors ``k_a`` from the projections' totals: every projection holds
  all ``N`` atoms, so its total is ``N k_a I`` (``k_a`` normalised to mean
  1, so that ``I`` is the mean over the projections of one atom's
  intensity);
- the unit ``I`` from the areas of the isolated peaks of all projections
  (each divided by its ``k_a``), as the unit that explains them as whole
  numbers (`integer_unit`).

Finding the unit
----------------
A unit ``I`` explains any areas as integers once it is small enough, so
the least misfit is no criterion. `integer_unit` compares units by their
marginal likelihood under a mixture model (the areas as a comb of Gaussians
at ``I, 2 I, ..., M I``, equally likely, ``M`` up to the largest area):
a smaller unit spreads the same probability over more counts and is paid
for by ``log M`` per peak, and of the units within `SUPPORT` of the best
likelihood the largest is taken, so the fit prefers the largest unit that
the areas allow, in the spirit of the ICL criterion StatSTEM uses to count
atoms (De Backer et al., Ultramicroscopy 134, 2013), without collapsing to
tiny units. Each count's spread is the area's standard error plus a
relative model error (fitted from a few values, at least 5 %), the teeth
may grow slightly faster than the counts (``unit * n ** power``, power up
to 1.3: channelling makes the area per atom of a short HAADF column grow
with its length), and a small uniform component absorbs stray peaks. The
intensity returned is the least-squares proportional unit at the counts
found, the value a fit of the linear atom model at those columns gives.

In 2D three more facts pin the unit (`estimate_intensity`'s
``max_counts``, ``offsets`` and ``atoms_from_counts``, all used by
`~odl_atoms.calibration.calibrate` for profiles): a column holds no more
atoms than another projection at a clearly different angle resolves
columns (`column_bounds`), which excludes the finer combs that explain
channelling columns about as well as the right one; the teeth may start
lower (``unit * (n ** power - offset)``: the first atoms of a HAADF column
scatter less, later ones about one unit each); and every projection holds
all the atoms, so where all of a projection's peaks are isolated their
counts add up to the number of atoms, and the intensity is the total per
atom.

When every usable peak has the same area (columns of one length, as in a
zone-axis view along the edge of a square crystal), the unit is any
fraction of that area: the estimate is then marked undecided and a warning
says what to give (the intensity, ``--intensity``) or what data decide it
(a projection with columns of different lengths, e.g. 45 degrees for a
square crystal).
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from odl_atoms.errors import ValidationError

__all__ = ('UnitEstimate', 'IntensityEstimate', 'integer_unit', 'OFFSETS',
           'ranked_unit', 'estimate_intensity', 'projection_scales',
           'column_bounds', 'MIN_BOUND_SINE')

#: Relative model errors of an area per atom tried by `integer_unit`. No
#: smaller ones: with them a fine unit explains the areas of abTEM
#: multislice columns by chance (their areas scatter by 5-8 % between
#: columns of one length), measured in benchmarks/calibration.py.
RELATIVE_ERRORS = (0.05, 0.08, 0.12, 0.16)

#: Responses ``area = unit * n ** power`` tried by `integer_unit`: HAADF
#: columns of a few atoms along a zone axis channel the beam, so the area
#: per atom grows with the column's length.
POWERS = (1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3)

#: Offsets ``c`` of the responses ``area = unit * (n ** power - c)`` the
#: 2D calibration tries (`integer_unit`'s ``offsets``): the first atoms of
#: a HAADF column scatter less than the later ones (the probe channels
#: onto the column), while long columns grow by about one unit per atom;
#: the abTEM 7 x 7 to 10 x 10 gold and platinum columns (1 to 10 atoms)
#: measure about 0.7, 1.6, 2.7, 3.9, 5.0, 6.1, 7.0 units for 1 to 7
#: atoms, which a power law alone bends too much at the top
#: (benchmarks/realistic.py).
OFFSETS = (0.0, 0.15, 0.3)

#: Log-likelihood within which a larger unit is preferred to the best
#: (a likelihood ratio of e^2: "support" in Edwards' sense).
SUPPORT = 2.0

#: Weight of the uniform (stray peak) component.
_OUTLIER_WEIGHT = 0.05


@dataclass(frozen=True, eq=False)
class UnitEstimate:

    """The unit that explains areas as whole numbers.

    Attributes
    ----------
    unit : float
        The area of one atom.
    unit_error : float
        Its standard error.
    counts : numpy.ndarray of int
        The whole number of each area (0 for areas taken as stray).
    relative_error : float
        The relative model error per count that fitted best.
    decided : bool
        False when the areas do not decide the unit (all counts equal, or
        no areas): any fraction ``unit / m`` explains them as well.
    evidence : float
        Log-likelihood of the unit over the best unit below ``0.75 unit``
        (the next candidates ``unit / 2``, ``unit / 3``, ...).
    power, offset : float
        The response that fitted best: the areas of ``n`` atoms as
        ``unit * (n ** power - offset)`` (``unit`` itself is the
        least-squares proportional unit at the counts).
    """

    unit: float
    unit_error: float
    counts: np.ndarray
    relative_error: float
    decided: bool
    evidence: float
    method: str = 'comb'
    power: float = 1.0
    offset: float = 0.0
    log_likelihood: float = float('nan')
    n_parameters: int = 2

    @property
    def bic(self):
        """Bayesian information criterion of the fit (lower is better)."""
        return (-2.0 * self.log_likelihood
                + self.n_parameters * np.log(max(self.counts.size, 1)))

    def __repr__(self):
        return (f'{type(self).__name__}(unit={self.unit:.6g}, '
                f'counts={np.unique(self.counts[self.counts > 0]).tolist()}, '
                f'decided={self.decided})')


def integer_unit(areas, errors=None, max_count=100,
                 relative_errors=RELATIVE_ERRORS, powers=POWERS,
                 max_counts=None, offsets=(0.0,)):
    """Return the unit that explains ``areas`` as whole numbers.

    Parameters
    ----------
    areas : array-like
        Positive areas (peak integrals).
    errors : array-like, optional
        Their standard errors (default 0: only the relative model error).
    max_count : int, optional
        Largest count considered (the smallest unit is
        ``max(areas) / max_count``).
    relative_errors : sequence of float, optional
        Relative model errors per count to try.
    powers : sequence of float, optional
        Responses to try: the areas of ``n`` atoms as ``unit * n ** power``
        (the unit returned is the least-squares proportional one at the
        counts found, the atom model being linear).
    max_counts : array-like, optional
        The largest count each area can be (one number per area, or one for
        all; ``inf`` for no bound), known from elsewhere: the comb of an
        area has no teeth beyond it, so a unit that would need more atoms
        in a column than the column can hold explains that area only as a
        stray peak. See `estimate_intensity` for where such bounds come
        from.
    offsets : sequence of float in [0, 1), optional
        Offsets ``c`` to try with every power: the areas of ``n`` atoms as
        ``unit * (n ** power - c)`` (`OFFSETS`: HAADF columns).

    Returns
    -------
    estimate : `UnitEstimate`

    Examples
    --------
    Columns of 1 to 5 atoms of 0.3 each, with 2 % scatter:

    >>> rng = np.random.default_rng(0)
    >>> counts = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1])
    >>> areas = 0.3 * counts * (1 + 0.02 * rng.standard_normal(9))
    >>> estimate = integer_unit(areas)
    >>> round(estimate.unit, 2), estimate.counts.tolist(), estimate.decided
    (0.3, [1, 2, 3, 4, 5, 4, 3, 2, 1], True)

    Equal areas cannot tell one atom from several:

    >>> integer_unit([0.9, 0.91, 0.89]).decided
    False

    The areas of the columns of an abTEM HAADF simulation of a 7 x 7 gold
    crystal with a vacancy, in units of the intensity fitted at the true
    columns: at 0 degrees 7 columns of 7 atoms (one of 6), at 45 degrees 13
    columns of 1 to 6. The area per atom grows with the column's length,
    and a finer comb, with up to 9 atoms in a column, explains them best;
    a bound of 7 atoms per column (the 7 columns another projection
    resolves, `column_bounds`) excludes it:

    >>> zero = [5.54, 6.61, 6.88, 6.94, 6.99, 6.99, 7.26]
    >>> diagonal = [0.71, 0.75, 1.56, 1.66, 2.34, 2.94, 3.74, 3.93, 4.92,
    ...             5.37, 5.91, 6.52, 7.05]
    >>> estimate = integer_unit(zero + diagonal, errors=0.04)
    >>> round(estimate.unit, 2), estimate.counts.max()
    (0.77, 9)
    >>> estimate = integer_unit(zero + diagonal, errors=0.04, max_counts=7,
    ...                         offsets=OFFSETS)
    >>> estimate.counts[:7].tolist(), estimate.counts[7:].sum()
    ([6, 7, 7, 7, 7, 7, 7], 51)

    The counts add up to the 48 atoms at 0 degrees, to 51 at 45 degrees
    (two of its columns brighter per atom); `estimate_intensity` takes the
    number of atoms as the median of such sums over the projections.
    """
    a = np.asarray(areas, dtype=float).ravel()
    if a.size == 0:
        raise ValidationError('no areas to find a unit in')
    if np.any(~np.isfinite(a)) or np.any(a <= 0):
        raise ValidationError('areas must be positive and finite')
    s = (np.zeros_like(a) if errors is None
         else np.broadcast_to(np.asarray(errors, dtype=float), a.shape))
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValidationError('area errors must be >= 0 and finite')
    if not (int(max_count) >= 1):
        raise ValidationError(f'max_count must be >= 1, got {max_count!r}')
    caps = None
    if max_counts is not None:
        try:
            caps = np.broadcast_to(np.asarray(max_counts, dtype=float),
                                   a.shape).copy()
        except ValueError:
            raise ValidationError(f'max_counts must be one number or one per '
                                  f'area ({a.size}), got shape '
                                  f'{np.shape(max_counts)}') from None
        if np.any(np.isnan(caps)) or np.any(caps < 1):
            raise ValidationError('max_counts must be >= 1 (inf: no bound)')
        caps = np.floor(caps)
    a_max = float(a.max())
    units = np.geomspace(a_max / int(max_count), 1.25 * a_max, 2500)
    profile = np.full(units.size, -np.inf)
    offsets = [float(c) for c in offsets]
    if not offsets or any(not 0 <= c < 1 for c in offsets):
        raise ValidationError(f'offsets must lie in [0, 1), got {offsets!r}')
    best_power = np.ones(units.size)
    best_offset = np.zeros(units.size)
    best_eps = np.zeros(units.size)
    for power, offset in [(p, c) for p in powers for c in offsets]:
        table = np.array([_log_likelihood(a, s, units, eps, power, caps,
                                          offset)
                          for eps in relative_errors])      # (n_eps, n_units)
        j = np.argmax(table, axis=0)
        value = table[j, np.arange(units.size)]
        # The responses are a bounded family (a prior, not a free
        # parameter): no price for a power other than 1 or an offset.
        better = value > profile
        profile = np.where(better, value, profile)
        best_power = np.where(better, power, best_power)
        best_offset = np.where(better, offset, best_offset)
        best_eps = np.where(better, np.asarray(relative_errors)[j], best_eps)
    # The largest unit whose likelihood is within SUPPORT of the best (a
    # finer comb that fits a little better by chance is no evidence), at
    # its local maximum.
    top = float(profile.max())
    largest = float(units[profile >= top - SUPPORT].max())
    near = (units >= largest / 1.15) & (units <= largest * 1.15)
    i = int(np.flatnonzero(near)[np.argmax(profile[near])])
    unit, power, eps = float(units[i]), float(best_power[i]), \
        float(best_eps[i])
    offset = float(best_offset[i])
    smaller = units <= 0.75 * unit
    evidence = float(profile[i] - profile[smaller].max()) if smaller.any() \
        else np.inf

    # The counts, then the unit by weighted least squares on the inlying
    # counts (proportional, as the atom model has it).
    top_count = np.inf if caps is None else caps
    counts = np.clip(np.rint((a / unit + offset) ** (1 / power)), 1,
                     top_count).astype(int)
    tooth = (counts ** power - offset) * unit
    spread = np.sqrt(s ** 2 + (eps * tooth) ** 2)
    inlier = np.abs(a - tooth) <= 3 * spread
    if power == 1.0 and offset == 0.0:
        for _ in range(3):
            w = inlier / spread ** 2
            if not np.any(w > 0):
                break
            unit = float(np.sum(w * counts * a) / np.sum(w * counts ** 2))
            counts = np.clip(np.rint(a / unit), 1, top_count).astype(int)
            spread = np.sqrt(s ** 2 + (eps * counts * unit) ** 2)
            inlier = np.abs(a - counts * unit) <= 3 * spread
    else:
        w = inlier / spread ** 2
        unit = float(np.sum(w * counts * a) / np.sum(w * counts ** 2))
        spread = np.sqrt(s ** 2 + (eps * counts * unit) ** 2)
    w = inlier / spread ** 2
    unit_error = float(1.0 / np.sqrt(np.sum(w * counts ** 2))) \
        if np.any(w > 0) else np.inf
    counts = np.where(inlier, counts, 0)
    decided = np.unique(counts[counts > 0]).size >= 2
    return UnitEstimate(unit=unit, unit_error=unit_error, counts=counts,
                        relative_error=eps, decided=bool(decided),
                        evidence=evidence, method='comb', power=power,
                        offset=offset, log_likelihood=float(profile[i]),
                        n_parameters=2 + (power != 1.0) + (offset != 0.0))


def ranked_unit(areas, errors=None, max_components=20):
    """Counts as the ranks of clusters of the areas (StatSTEM's way).

    The logarithms of the areas are clustered by a Gaussian mixture of
    equal widths, its number of components chosen by the ICL criterion
    (De Backer et al. 2013); the components, in increasing order, are
    taken as columns of 1, 2, 3, ... atoms, and the unit is the least-squares
    ``sum(n a) / sum(n^2)``. Unlike `integer_unit`, it does not need the
    areas to grow in proportion to the counts (HAADF columns of a few atoms
    along a zone axis channel the beam: the area per atom grows with the
    column's length), but it needs every count from 1 up to be present.

    Returns
    -------
    estimate : `UnitEstimate`

    Examples
    --------
    Areas that grow faster than the counts (0.7, 1.6, 2.7, 3.9 per 1, 2,
    3, 4 atoms):

    >>> rng = np.random.default_rng(1)
    >>> counts = np.repeat([1, 2, 3, 4], 4)
    >>> areas = np.array([0.7, 1.6, 2.7, 3.9])[counts - 1] * (
    ...     1 + 0.02 * rng.standard_normal(16))
    >>> ranked_unit(areas).counts.tolist() == counts.tolist()
    True
    """
    a = np.asarray(areas, dtype=float).ravel()
    if a.size == 0 or np.any(~np.isfinite(a)) or np.any(a <= 0):
        raise ValidationError('areas must be positive and finite')
    s = (np.zeros_like(a) if errors is None
         else np.broadcast_to(np.asarray(errors, dtype=float), a.shape))
    x = np.log(a)
    best = None
    for k in range(1, int(min(max_components, max(1, a.size // 2))) + 1):
        fit = _log_mixture(x, k)
        if fit is None:
            continue
        loglik, means, var, resp = fit
        entropy = -np.sum(resp * np.log(np.maximum(resp, 1e-300)))
        icl = -2 * loglik + 2 * k * np.log(a.size) + 2 * entropy
        if best is None or icl < best[0]:
            best = (icl, k, loglik, means, var, resp)
    _, k, loglik, means, var, resp = best
    order = np.argsort(means)
    rank = np.empty(k, int)
    rank[order] = np.arange(1, k + 1)
    counts = rank[np.argmax(resp, axis=1)]
    w = 1.0 / np.maximum(s ** 2 + (np.sqrt(var) * a) ** 2, 1e-300)
    unit = float(np.sum(w * counts * a) / np.sum(w * counts ** 2))
    unit_error = float(1.0 / np.sqrt(np.sum(w * counts ** 2)))
    # The likelihood of the areas themselves (not their logarithms).
    loglik_areas = loglik - float(np.sum(x))
    return UnitEstimate(unit=unit, unit_error=unit_error, counts=counts,
                        relative_error=float(np.sqrt(var)),
                        decided=bool(k >= 2), evidence=float('nan'),
                        method='ranked', log_likelihood=loglik_areas,
                        n_parameters=2 * k)


def _log_mixture(x, k, n_iter=300):
    """EM for a 1D Gaussian mixture of ``k`` components of one width."""
    n = x.size
    means = np.quantile(x, (np.arange(k) + 0.5) / k)
    var = max(float(np.var(x)) / k ** 2, 1e-6)
    weights = np.full(k, 1.0 / k)
    loglik = -np.inf
    for _ in range(n_iter):
        dens = weights * np.exp(-0.5 * (x[:, None] - means) ** 2 / var) / \
            np.sqrt(2 * np.pi * var)
        total = np.maximum(dens.sum(axis=1), 1e-300)
        resp = dens / total[:, None]
        new = float(np.sum(np.log(total)))
        nk = resp.sum(axis=0)
        if np.any(nk < 1e-8):
            return None
        weights = nk / n
        means = (resp * x[:, None]).sum(axis=0) / nk
        var = max(float(np.sum(resp * (x[:, None] - means) ** 2)) / n,
                  1e-6)   # at least 0.1 % relative spread
        if abs(new - loglik) < 1e-9 * max(1.0, abs(new)):
            loglik = new
            break
        loglik = new
    return loglik, means, var, resp


def _log_likelihood(a, s, units, eps, power=1.0, caps=None, offset=0.0):
    """Log-likelihood of the comb model for every unit (see module notes).

    The teeth are at ``unit * (n ** power - offset)`` (``power > 1`` or
    ``offset > 0``: the area per atom grows with the column's length); the
    comb of area ``j`` stops at ``caps[j]`` teeth when given.
    """
    a_max = float(a.max())
    out = np.empty(units.size)
    for chunk in np.array_split(np.arange(units.size), 8):
        u = units[chunk][:, None, None]                     # (U, 1, 1)
        m = np.ceil((a_max / u[..., 0] + offset) ** (1 / power) + 0.5)
        if caps is not None:
            m = np.minimum(m, caps[None, :])                # (U, J)
        base = np.floor((a[None, :, None] / u + offset) ** (1 / power)) + \
            np.arange(-1, 3)                                # (U, J, 4)
        n = np.clip(base, 1, m[..., None])
        # Terms clipped onto the same count are counted once.
        first = np.concatenate([np.ones_like(n[..., :1], dtype=bool),
                                np.diff(n, axis=-1) != 0], axis=-1)
        tooth = (n ** power - offset) * u
        var = s[None, :, None] ** 2 + (eps * tooth) ** 2
        dens = np.exp(-0.5 * (a[None, :, None] - tooth) ** 2 / var) / \
            np.sqrt(2 * np.pi * var)
        comb = np.sum(np.where(first, dens, 0.0), axis=-1) / m   # (U, J)
        like = (1 - _OUTLIER_WEIGHT) * comb + _OUTLIER_WEIGHT / (1.25 * a_max)
        out[chunk] = np.sum(np.log(like), axis=1)
    return out


#: Smallest ``|sin|`` of the angle between two projections for the columns
#: one sees to bound the atoms in a column of the other (`column_bounds`):
#: 30 degrees, so that atoms a nearest-neighbour distance apart along one
#: projection's rays (at least some 4 widths in resolved data) land half
#: that apart in the other, distinct peaks there.
MIN_BOUND_SINE = 0.5


def column_bounds(fits, angles, indices=None, min_sine=MIN_BOUND_SINE):
    """The most atoms a column of each 2D projection can hold.

    The atoms of one column (a peak of projection ``a``) lie on one ray of
    ``a``, at least a nearest-neighbour distance apart; seen from another
    angle ``b`` they land at as many distinct places, each within a peak
    of ``b``'s fit. So no column of ``a`` holds more atoms than ``b`` has
    peaks, when ``b`` is at a clearly different angle (`MIN_BOUND_SINE`)
    and its fit resolves its columns. The bound is the least such number
    over the other projections.

    Parameters
    ----------
    fits : sequence of `~odl_atoms.calibration.peaks.PeakFit`
        Fits of 1D profiles (2D data), of every projection or of those in
        ``indices``.
    angles : array-like
        The tilt angles (radians) of all projections.
    indices : sequence of int, optional
        The projection of each fit (default 0, 1, ...).
    min_sine : float, optional
        Pairs of projections closer in angle (``|sin|`` of their difference
        below this) do not bound each other.

    Returns
    -------
    bounds : numpy.ndarray
        One per projection, ``inf`` where no other projection bounds it.

    Examples
    --------
    A square of 3 x 3 columns seen along its rows (3 peaks) and along a
    diagonal (5 peaks): a peak at 0 degrees holds at most 5 atoms, one at
    45 degrees at most 3.

    >>> from odl_atoms.calibration.peaks import PeakFit
    >>> def fit(n):
    ...     return PeakFit(centres=np.arange(n, dtype=float)[:, None],
    ...                    areas=np.ones(n), area_errors=np.zeros(n),
    ...                    sigma=0.1, sigma_error=0.0, background=0.0,
    ...                    misfit=0.0, n_values=50, weighted=False)
    >>> column_bounds([fit(3), fit(5)], np.radians([0, 45])).tolist()
    [5.0, 3.0]
    >>> column_bounds([fit(3), fit(5)], np.radians([0, 10])).tolist()
    [inf, inf]
    """
    fits = list(fits)
    angles = np.asarray(angles, dtype=float).ravel()
    indices = (np.arange(len(fits)) if indices is None
               else np.asarray(indices, dtype=int))
    if indices.size != len(fits) or (indices.size and (
            indices.min() < 0 or indices.max() >= angles.size)):
        raise ValidationError('indices must give the projection of each fit')
    peaks = np.array([np.count_nonzero(f.areas > 0) for f in fits], float)
    bounds = np.full(angles.size, np.inf)
    for a in range(angles.size):
        apart = np.abs(np.sin(angles[indices] - angles[a])) >= min_sine
        usable = apart & (peaks >= 1)
        if usable.any():
            bounds[a] = peaks[usable].min()
    return bounds


def projection_scales(totals):
    """Intensity factors ``k_a`` from the projections' totals (mean 1).

    Examples
    --------
    >>> projection_scales([2.0, 2.2, 1.8]).tolist()
    [1.0, 1.1, 0.9]
    """
    totals = np.asarray(totals, dtype=float)
    if totals.ndim != 1 or totals.size == 0 or np.any(~np.isfinite(totals)):
        raise ValidationError('totals must be one finite number per projection')
    if np.any(totals <= 0):
        raise ValidationError(
            'a projection has no signal above the background (total <= 0); '
            'check the background subtraction')
    return totals / totals.mean()


@dataclass(frozen=True, eq=False)
class IntensityEstimate:

    """The intensity of one atom and the projections' factors.

    Attributes
    ----------
    intensity : float
        Integral of one atom's projection (data units times
        angstrom^(d-1)), the mean over the projections.
    intensity_error : float
    scales : numpy.ndarray
        Intensity factor ``k_a`` of each projection (mean 1).
    totals : numpy.ndarray
        Each projection's total above the background.
    atoms : float
        Atoms the data hold, ``mean(totals / scales) / intensity``.
    unit : `UnitEstimate` or None
        The integer-unit fit (None when the intensity was given).
    peaks_used : int
        Isolated peaks the unit was found from.
    decided : bool
        Whether the data decided the unit (see `integer_unit`).
    method : str
    """

    intensity: float
    intensity_error: float
    scales: np.ndarray
    totals: np.ndarray
    atoms: float
    unit: UnitEstimate = None
    peaks_used: int = 0
    decided: bool = True
    method: str = ''
    per_projection: list = field(default_factory=list)

    def __repr__(self):
        return (f'{type(self).__name__}(intensity={self.intensity:.6g}, '
                f'atoms={self.atoms:.4g}, decided={self.decided})')


def estimate_intensity(fits, totals=None, indices=None, intensity=None,
                       scales=None, isolation=2.5, max_local=4.0,
                       max_count=100, max_counts=None, offsets=(0.0,),
                       atoms_from_counts=False):
    """Estimate the intensity of one atom from peak fits of every projection.

    Parameters
    ----------
    fits : sequence of `~odl_atoms.calibration.peaks.PeakFit`
        Peak fits with the atom width fixed (so that every peak is one
        column; `~odl_atoms.calibration.peaks.fit_projections` with
        ``fix_sigma=True``): of every projection, or of those listed in
        ``indices``.
    totals : array-like, optional
        Each projection's integral above the background (data units times
        angstrom^(d-1)). Default: the sum of each fit's peak areas (then
        ``fits`` must cover every projection).
    indices : sequence of int, optional
        The projection of each fit (default 0, 1, ...).
    intensity : float, optional
        The intensity, if known: only the factors are estimated.
    scales : array-like or 1, optional
        The factors ``k_a``, if known (``1``: all equal).
    isolation : float, optional
        Peaks closer than ``isolation * sigma`` to another peak are not
        used for the unit (their areas may share atoms).
    max_local : float, optional
        Peaks whose neighbourhood misfits more than this (relative to the
        projection's mean) are not used.
    max_count : int, optional
        Largest number of atoms in one column considered.
    max_counts : array-like, optional
        Largest number of atoms a column of each projection can hold (one
        number per projection, ``inf`` for no bound): in 2D, the number of
        columns another projection at a clearly different angle resolves
        (`column_bounds`). See `integer_unit`.
    offsets : sequence of float, optional
        Response offsets for `integer_unit` (`OFFSETS` for HAADF columns).
    atoms_from_counts : bool, optional
        Where all the peaks of a projection are isolated and counted, take
        the number of atoms as their total count (the median over such
        projections) and the intensity as the projections' total per atom,
        rather than the least-squares unit at the counts.

    Returns
    -------
    estimate : `IntensityEstimate`

    Warns
    -----
    UserWarning
        If the data do not decide the unit, or no peak is isolated.
    """
    fits = list(fits)
    if totals is None:
        if not fits:
            raise ValidationError('no projections to estimate the intensity '
                                  'from')
        totals = np.array([f.total for f in fits])
    totals = np.asarray(totals, dtype=float)
    indices = (np.arange(len(fits)) if indices is None
               else np.asarray(indices, dtype=int))
    if indices.size != len(fits) or (indices.size and (
            indices.min() < 0 or indices.max() >= totals.size)):
        raise ValidationError('indices must give the projection of each fit')
    if scales is None:
        k = projection_scales(totals)
        how_k = 'from the projections\' totals'
    else:
        k = np.broadcast_to(np.asarray(scales, dtype=float),
                            totals.shape).copy()
        if np.any(~np.isfinite(k)) or np.any(k <= 0):
            raise ValidationError('scales must be positive, one per projection')
        how_k = 'given'
    per_atom_total = float(np.mean(totals / k))
    if intensity is not None:
        intensity = float(intensity)
        if not (np.isfinite(intensity) and intensity > 0):
            raise ValidationError(f'intensity must be a positive number, got '
                                  f'{intensity!r}')
        return IntensityEstimate(
            intensity=intensity, intensity_error=0.0, scales=k,
            totals=totals, atoms=per_atom_total / intensity,
            method=f'given; factors {how_k}')
    bounds = np.full(totals.size, np.inf)
    if max_counts is not None:
        try:
            bounds = np.broadcast_to(np.asarray(max_counts, dtype=float),
                                     totals.shape).copy()
        except ValueError:
            raise ValidationError(
                f'max_counts must be one number or one per projection '
                f'({totals.size}), got shape {np.shape(max_counts)}') from None
    areas, errors, where = [], [], []
    for a, f in zip(indices, fits):
        mask = f.isolated(isolation, max_local)
        areas.append(f.areas[mask] / k[a])
        errors.append(f.area_errors[mask] / k[a])
        where.append(np.full(mask.sum(), a))
    areas, errors = np.concatenate(areas), np.concatenate(errors)
    where = np.concatenate(where)
    good = (areas > 0) & np.isfinite(errors)
    areas, errors, where = areas[good], errors[good], where[good]
    if areas.size == 0:
        warnings.warn(
            'no projection has an isolated peak (every peak overlaps '
            'another), so the intensity of one atom cannot be found from '
            'the data; give it (intensity=..., --intensity)', UserWarning,
            stacklevel=2)
        return IntensityEstimate(
            intensity=float('nan'), intensity_error=float('nan'), scales=k,
            totals=totals, atoms=float('nan'), decided=False,
            method='undecided: no isolated peak')
    caps = bounds[where]
    unit = integer_unit(areas, errors, max_count=max_count,
                        max_counts=None if np.all(np.isinf(caps)) else caps,
                        offsets=offsets)
    if unit.counts[unit.counts > 0].min(initial=1) >= 2 and areas.size >= 4:
        # The comb found no column of one atom: either there is none, or
        # the areas do not grow in proportion to the counts and a finer
        # unit fitted them by chance. The ranks of the areas' clusters
        # decide where they explain the areas better (BIC).
        ranked = ranked_unit(areas, errors)
        if ranked.decided and ranked.bic < unit.bic:
            unit = ranked
    per_projection = []
    for a in range(totals.size):
        c = unit.counts[where == a]
        per_projection.append(sorted(set(c[c > 0].tolist())))
    # Every projection holds all the atoms: where all of a projection's
    # peaks are isolated and counted, their counts add up to the number of
    # atoms, and the intensity is the projections' total per atom. This
    # does not lean on the areas being proportional to the counts (the
    # least-squares unit is pulled by the columns whose area per atom
    # differs, e.g. HAADF columns of a few atoms, or projections brighter
    # per atom than their factor says).
    peaks = np.zeros(totals.size, int)
    for a, f in zip(indices, fits):
        peaks[a] += f.n_peaks
    sums = [int(unit.counts[where == a].sum()) for a in range(totals.size)
            if peaks[a] > 0 and np.count_nonzero(
                unit.counts[where == a]) == peaks[a]]
    intensity, intensity_error = unit.unit, unit.unit_error
    how_total = ''
    if atoms_from_counts and unit.decided and sums:
        atoms = float(np.median(sums))
        intensity = per_atom_total / atoms
        intensity_error = intensity * unit.unit_error / unit.unit
        how_total = (f'; intensity: the total per atom, {atoms:g} atoms '
                     f'(the median of the counts of the {len(sums)} '
                     f'projection(s) whose peaks are all isolated: '
                     f'{sums})')
    how_unit = ('integer unit' if unit.method == 'comb' else
                'counts by rank of the area clusters (not proportional to '
                'the areas), least-squares unit')
    method = (f'{how_unit} of {areas.size} isolated peak areas '
              f'(counts {sorted(set(unit.counts[unit.counts > 0].tolist()))}, '
              f'model error {100 * unit.relative_error:.1f} % per atom)'
              f'{how_total}; factors {how_k}')
    if not unit.decided:
        warnings.warn(
            f'every isolated peak has the same area ({np.median(areas):.4g}): '
            f'the data cannot tell whether it is one atom or several (columns '
            f'of equal length); the intensity is taken as that area. Give the '
            f'intensity of one atom (intensity=..., --intensity), or add a '
            f'projection with columns of different lengths (e.g. 45 degrees '
            f'for a square crystal)', UserWarning, stacklevel=2)
        method = 'undecided (all isolated peaks equal): ' + method
    return IntensityEstimate(
        intensity=intensity, intensity_error=intensity_error, scales=k,
        totals=totals, atoms=per_atom_total / intensity, unit=unit,
        peaks_used=int(areas.size), decided=unit.decided, method=method,
        per_projection=per_projection)
