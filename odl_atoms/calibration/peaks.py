"""Fitting projections with a sum of Gaussian peaks of one common width.

A projection of atoms is a sum of Gaussians of the atom width ``sigma``:
one per column of atoms along the rays, each integrating to the number of
atoms in it times the intensity of one atom. `fit_peaks` fits such a sum to
a 1D profile (2D data) or a 2D image (3D data), the way StatSTEM fits a
Gaussian per column (De Backer et al., Ultramicroscopy 171, 2016): peaks
are found as local maxima, their centres, integrals (areas) and the common
width are refined by least squares (Levenberg-Marquardt with the exact, for
images sparse, Jacobian) together with a constant background, and peaks are added
where the residual still holds a significant one. Every model value is the
average of the Gaussian over the detector cell, as
`~odl_atoms.GaussianRayTransform` computes it in its ``'integrate'`` mode.

`fit_projections` fits every projection of a measurement.
"""

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from odl_atoms.errors import ValidationError

__all__ = ('PeakFit', 'fit_peaks', 'fit_projections', 'half_width',
           'SIGNIFICANCE', 'MIN_HEIGHT')

#: A peak is added where the smoothed residual exceeds this many noise
#: standard deviations.
SIGNIFICANCE = 5.0

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
#: Default ``min_height`` of `fit_peaks`: maxima lower than this fraction of
#: the highest peak are not taken as columns. HAADF images of crystals
#: (abTEM multislice) have bumps between the columns, from the probe's
#: rings and channelling, of 2-6 % of a column of five atoms; a column of
#: one atom next to one of ten is 10 %.
MIN_HEIGHT = 0.08

#: Peaks with less than this fraction of the largest area are dropped.
_NEGLIGIBLE = 1e-3

#: Half-width of a peak's window, in sigma.
_TRUNCATE = 6.0


@dataclass(frozen=True, eq=False)
class PeakFit:

    """A projection fitted by Gaussian peaks of one width.

    Attributes
    ----------
    centres : numpy.ndarray, shape ``(n_peaks, k)``
        Detector coordinates (angstrom), ``k = 1`` for profiles, 2 for
        images.
    areas : numpy.ndarray, shape ``(n_peaks,)``
        Integral of each peak (data units times angstrom^k).
    area_errors : numpy.ndarray, shape ``(n_peaks,)``
        Their standard errors.
    sigma, sigma_error : float
        The common width (angstrom) and its standard error (0 if fixed).
    background : float
        Constant added to every value (data units).
    misfit : float
        Sum of squared residuals, each divided by the value's variance
        (unweighted if no variance was given).
    n_values : int
        Number of data values fitted.
    weighted : bool
        Whether ``misfit`` is in units of the noise variance.
    local_misfit : numpy.ndarray, shape ``(n_peaks,)``
        Mean squared residual of the values within ``2 sigma`` of each
        peak, relative to the mean over all values (about 1 where a peak
        is as well fitted as the rest).
    """

    centres: np.ndarray
    areas: np.ndarray
    area_errors: np.ndarray
    sigma: float
    sigma_error: float
    background: float
    misfit: float
    n_values: int
    weighted: bool
    local_misfit: np.ndarray = None

    @property
    def n_peaks(self):
        """Number of peaks."""
        return self.areas.size

    @property
    def total(self):
        """Sum of the peak areas: the projection's integral above the background."""
        return float(self.areas.sum())

    @property
    def dof(self):
        """Degrees of freedom of the misfit."""
        k = self.centres.shape[1] if self.centres.ndim == 2 else 1
        return max(self.n_values - self.n_peaks * (k + 1) - 2, 1)

    @property
    def reduced_misfit(self):
        """``misfit / dof``: about 1 for a model that fits to the noise."""
        return self.misfit / self.dof

    def separations(self):
        """Distance from each peak to its nearest other peak (inf if alone)."""
        if self.n_peaks < 2:
            return np.full(self.n_peaks, np.inf)
        d = np.linalg.norm(self.centres[:, None] - self.centres[None], axis=2)
        np.fill_diagonal(d, np.inf)
        return d.min(axis=1)

    def resolved(self, factor=2.5):
        """Whether every peak lies at least ``factor * sigma`` from the others."""
        return bool(self.n_peaks > 0
                    and np.all(self.separations() >= factor * self.sigma))

    def isolated(self, factor=2.5, max_local=4.0):
        """Mask of the peaks at least ``factor * sigma`` from all others whose
        neighbourhood is fitted about as well as the rest
        (``local_misfit <= max_local``): their areas are those of one column."""
        ok = self.separations() >= factor * self.sigma
        if self.local_misfit is not None:
            ok &= self.local_misfit <= max_local
        return ok

    def __repr__(self):
        return (f'{type(self).__name__}(n_peaks={self.n_peaks}, '
                f'sigma={self.sigma:.4g}, total={self.total:.4g}, '
                f'background={self.background:.3g})')


# --- Cell-averaged Gaussian profiles along one axis


def _profiles(edges, centres, sigma, derivatives=True):
    """``G, dG/dc, dG/dsigma``, each ``(n_peaks, n_cells)``."""
    h = np.diff(edges)
    z = (edges[None, :] - centres[:, None]) / sigma
    cdf = ndtr(z)
    g = np.diff(cdf, axis=1) / h
    if not derivatives:
        return g, None, None
    pdf = np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    dc = -np.diff(pdf, axis=1) / (sigma * h)
    ds = -np.diff(z * pdf, axis=1) / (sigma * h)
    return g, dc, ds


class _GaussianSum:

    """Model and Jacobian of ``b + sum_j A_j G_j`` on a 1D or 2D cell grid.

    Parameters are packed as ``[centres (n x k, row-major), areas (n),
    sigma (unless fixed), background]``.
    """

    def __init__(self, edges, n_peaks, sigma=None):
        self.edges = edges
        self.k = len(edges)
        self.n = n_peaks
        self.fixed_sigma = sigma
        self.shape = tuple(e.size - 1 for e in edges)

    def unpack(self, p):
        n, k = self.n, self.k
        centres = p[:n * k].reshape(n, k)
        areas = p[n * k:n * k + n]
        if self.fixed_sigma is None:
            sigma, background = p[n * k + n], p[n * k + n + 1]
        else:
            sigma, background = self.fixed_sigma, p[n * k + n]
        return centres, areas, sigma, background

    def pack(self, centres, areas, sigma, background):
        parts = [np.ravel(centres), np.ravel(areas)]
        if self.fixed_sigma is None:
            parts.append([sigma])
        parts.append([background])
        return np.concatenate(parts).astype(float)

    def model(self, p):
        centres, areas, sigma, background = self.unpack(p)
        gs = [_profiles(e, centres[:, i], sigma, False)[0]
              for i, e in enumerate(self.edges)]
        if self.k == 1:
            return background + areas @ gs[0]
        return background + (gs[0].T * areas) @ gs[1]

    def jacobian(self, p):
        from scipy import sparse

        centres, areas, sigma, background = self.unpack(p)
        n, k = self.n, self.k
        prof = [_profiles(e, centres[:, i], sigma)
                for i, e in enumerate(self.edges)]
        free_sigma = self.fixed_sigma is None
        if k == 1:
            g, dc, ds = prof[0]
            cols = [(dc * areas[:, None]).T, g.T]
            if free_sigma:
                cols.append((areas @ ds)[:, None])
            cols.append(np.ones((g.shape[1], 1)))
            return np.hstack(cols)
        # 2D: each peak touches a window of cells; a sparse Jacobian.
        (gu, dcu, dsu), (gv, dcv, dsv) = prof
        nu, nv = self.shape
        wins = []
        for i, e in enumerate(self.edges):
            h = float(np.min(np.diff(e)))
            w = int(min(e.size - 1, np.ceil(2 * _TRUNCATE * sigma / h) + 2))
            first = np.searchsorted(e, centres[:, i] - _TRUNCATE * sigma,
                                    side='right') - 1
            first = np.clip(first, 0, e.size - 1 - w)
            wins.append(first[:, None] + np.arange(w))
        iu, iv = wins
        rows = (iu[:, :, None] * nv + iv[:, None, :]).reshape(n, -1)
        take = np.arange(n)[:, None]
        gu_w, gv_w = gu[take, iu], gv[take, iv]
        dcu_w, dcv_w = dcu[take, iu], dcv[take, iv]
        blocks = [
            (areas[:, None, None] * dcu_w[:, :, None] * gv_w[:, None, :]),
            (areas[:, None, None] * gu_w[:, :, None] * dcv_w[:, None, :]),
            (gu_w[:, :, None] * gv_w[:, None, :]),
        ]
        data, r_idx, c_idx = [], [], []
        # centre columns: peak j's (u, v) at 2j, 2j + 1; areas at 2n + j
        col_of = [2 * np.arange(n), 2 * np.arange(n) + 1,
                  2 * n + np.arange(n)]
        for block, cols in zip(blocks, col_of):
            data.append(block.reshape(n, -1).ravel())
            r_idx.append(rows.ravel())
            c_idx.append(np.repeat(cols, rows.shape[1]))
        n_par = 3 * n + (2 if free_sigma else 1)
        n_val = nu * nv
        if free_sigma:
            dsig = (dsu.T * areas) @ gv + (gu.T * areas) @ dsv
            data.append(dsig.ravel())
            r_idx.append(np.arange(n_val))
            c_idx.append(np.full(n_val, 3 * n))
        data.append(np.ones(n_val))
        r_idx.append(np.arange(n_val))
        c_idx.append(np.full(n_val, n_par - 1))
        return sparse.csr_matrix(
            (np.concatenate(data), (np.concatenate(r_idx),
                                    np.concatenate(c_idx))),
            shape=(n_val, n_par))


# --- Fitting


def fit_peaks(values, edges, sigma=None, fix_sigma=False, variance=None,
              weighted=True, max_peaks=None, significance=SIGNIFICANCE,
              max_rounds=None, min_height=MIN_HEIGHT):
    """Fit a profile or an image with Gaussian peaks of one common width.

    Parameters
    ----------
    values : array-like, shape ``(n,)`` or ``(n_u, n_v)``
        Cell averages (background-subtracted data, or not: a constant
        background is fitted).
    edges : array-like or sequence of two array-likes
        Cell boundaries (angstrom) along each axis (``n + 1`` values).
    sigma : positive float, optional
        Width to start from (or to keep, with ``fix_sigma``). Default: from
        the half-maximum widths of the highest peaks (`half_width`).
    fix_sigma : bool, optional
        Keep ``sigma`` fixed.
    variance : array-like, optional
        Variance of each value (the noise model's): it sets which peaks are
        significant, and with ``weighted`` the fit is weighted by its
        inverse and the misfit is in units of the noise. Default: an
        unweighted fit, the noise guessed from the values.
    weighted : bool, optional
        Weight the fit by the inverse variances (if given). Unweighted,
        the width is the one the solvers' unweighted data term prefers:
        where the atoms' profile is not exactly Gaussian (a probe's tails)
        the best width depends on the weights.
    max_peaks : int, optional
        Most peaks (default: a quarter of the values).
    significance : float, optional
        A peak is added where the smoothed residual exceeds this many
        noise standard deviations.
    min_height : float, optional
        Maxima (of the data, or of the residual) lower than this fraction
        of the highest peak are not fitted.
    max_rounds : int, optional
        Rounds of adding peaks where the residual holds one (default: 60
        for profiles, one peak per round; 0 for images, whose peaks are the
        local maxima as StatSTEM takes them: in an image of hundreds of
        columns, a residual's maxima are mostly the model's error around
        each column, and fitting them steals area from the columns).

    Returns
    -------
    fit : `PeakFit`

    Examples
    --------
    Three atoms' worth of Gaussians of width 0.4 in two peaks (areas 1 and
    2) on a background of 0.1, averaged over cells of 0.125:

    >>> from scipy.stats import norm
    >>> edges = np.linspace(-6, 6, 97)
    >>> g = lambda c: np.diff(norm.cdf(edges, c, 0.4)) / 0.125
    >>> fit = fit_peaks(0.1 + g(-1.5) + 2 * g(1.0), edges)
    >>> fit.n_peaks, round(fit.sigma, 3), fit.areas.round(3).tolist()
    (2, 0.4, [1.0, 2.0])
    """
    y = np.asarray(values, dtype=float)
    if y.ndim not in (1, 2):
        raise ValidationError(f'values must be a profile or an image, got '
                              f'shape {y.shape}')
    edges = _edge_list(y, edges)
    if len(edges) != y.ndim or any(e.size != n + 1
                                   for e, n in zip(edges, y.shape)):
        raise ValidationError(
            f'edges must give n + 1 cell boundaries along each axis of the '
            f'values (shape {y.shape})')
    if any(np.any(np.diff(e) <= 0) for e in edges):
        raise ValidationError('edges must be increasing')
    if not np.all(np.isfinite(y)):
        raise ValidationError('values contain NaN or inf')
    cell = float(min(np.min(np.diff(e)) for e in edges))
    if variance is None:
        sd = np.ones_like(y)
        weighted = False
        noise_sd = _noise_level(y, None)
    else:
        var = np.broadcast_to(np.asarray(variance, dtype=float), y.shape)
        if np.any(~np.isfinite(var)) or np.any(var <= 0):
            raise ValidationError('variance must be positive and finite')
        noise_sd = _noise_level(y, np.sqrt(var))
        weighted = bool(weighted)
        sd = np.sqrt(var) if weighted else np.ones_like(y)
    if max_peaks is None:
        max_peaks = max(1, y.size // 4)
    if max_rounds is None:
        max_rounds = 60 if y.ndim == 1 else 0
    if sigma is not None:
        if not (isinstance(sigma, numbers.Real) and sigma > 0):
            raise ValidationError(f'sigma must be a positive number, got '
                                  f'{sigma!r}')
        sigma = float(sigma)
    elif fix_sigma:
        raise ValidationError('fix_sigma needs a sigma')
    if sigma is None:
        sigma = half_width(y, edges)
    mids = [0.5 * (e[1:] + e[:-1]) for e in edges]
    centres, heights = _local_maxima(y, mids, sigma, cell, noise_sd,
                                     significance)
    # Peaks far below the highest are noise or tails, not columns.
    if heights.size:
        floor = min_height * heights.max()
        keep = heights >= floor
        centres, heights = centres[keep], heights[keep]
    if centres.shape[0] == 0:
        raise ValidationError(
            'no peak stands out of the noise in this projection; check the '
            'data (and the background)')
    centres, heights = centres[:max_peaks], heights[:max_peaks]
    areas = heights * (np.sqrt(2 * np.pi) * sigma) ** y.ndim
    background = 0.0
    lo_c = np.array([e[0] for e in edges])
    hi_c = np.array([e[-1] for e in edges])
    for round_ in range(max_rounds + 1):
        model = _GaussianSum(edges, centres.shape[0],
                             sigma if fix_sigma else None)
        lo, hi = _bounds(model, lo_c, hi_c, cell)
        p = np.clip(model.pack(centres, np.maximum(areas, 0.0), sigma,
                               background), lo, hi)
        p, fun, jac = _levenberg_marquardt(model, y, sd, p, lo, hi)
        centres, areas, sigma, background = model.unpack(p)
        centres, areas = centres.copy(), areas.copy()
        # Drop peaks that vanished, merge peaks that met.
        keep = areas > _NEGLIGIBLE * max(float(areas.max()), 1e-300)
        merged_c, merged_a = _merge(centres[keep], areas[keep], 0.5 * sigma)
        if merged_a.size != areas.size:
            centres, areas = merged_c, merged_a
            continue
        if round_ == max_rounds:
            break
        # Add peaks where the residual still holds one.
        res = y - model.model(p)
        new_c, new_h = _local_maxima(res, mids, sigma, cell, noise_sd,
                                     significance, far_from=centres,
                                     min_distance=1.0 * sigma)
        tall = new_h >= floor
        new_c, new_h = new_c[tall], new_h[tall]
        room = max_peaks - centres.shape[0]
        if new_c.shape[0] == 0 or room <= 0:
            break
        # One peak at a time (as ADCG adds atoms): a residual left by a
        # fit still settling has maxima next to every peak. In images with
        # many peaks, also every maximum far from all peaks.
        take = np.zeros(new_c.shape[0], bool)
        take[0] = True
        if y.ndim == 2:
            far = np.linalg.norm(new_c[:, None] - centres[None],
                                 axis=2).min(axis=1) >= 1.5 * sigma
            take |= far
        new_c, new_h = new_c[take][:room], new_h[take][:room]
        centres = np.vstack([centres, new_c])
        areas = np.concatenate([
            areas, new_h * (np.sqrt(2 * np.pi) * sigma) ** y.ndim])
    misfit = float(np.sum(fun ** 2))
    area_err, sigma_err = _errors(model, jac, misfit, y.size, weighted)
    order = np.lexsort(centres.T[::-1])
    local = _local_misfit(fun.reshape(y.shape), mids, centres, sigma)
    return PeakFit(local_misfit=local[order],
                   centres=np.array(centres[order]),
                   areas=np.array(areas[order]),
                   area_errors=area_err[order], sigma=float(sigma),
                   sigma_error=sigma_err, background=float(background),
                   misfit=misfit, n_values=int(y.size), weighted=weighted)


def _edge_list(y, edges):
    """The cell boundaries as a list of 1D arrays, one per axis of ``y``."""
    if y.ndim == 1 and np.ndim(edges) == 1 and not isinstance(
            edges[0], (list, tuple, np.ndarray)):
        return [np.asarray(edges, dtype=float)]
    return [np.asarray(e, dtype=float).ravel() for e in edges]


def _levenberg_marquardt(model, y, sd, p, lo, hi, max_iter=50, rtol=1e-7):
    """Weighted least squares for the peaks (Marquardt's scaled damping).

    The normal equations are sparse for images (each peak touches its
    window of cells), so each step is one sparse solve; steps are clipped to
    the bounds. Returns ``(p, weighted residual, weighted Jacobian)``.
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    w = 1.0 / sd.ravel()

    def residual(q):
        return (model.model(q).ravel() - y.ravel()) * w

    def jacobian(q):
        jac = model.jacobian(q)
        if sparse.issparse(jac):
            return sparse.diags(w) @ jac
        return jac * w[:, None]

    r = residual(p)
    cost = float(r @ r)
    jac = jacobian(p)
    lam = 1e-3
    for _ in range(max_iter):
        if sparse.issparse(jac):
            normal = (jac.T @ jac).tocsc()
            diag = normal.diagonal()
        else:
            normal = jac.T @ jac
            diag = np.diag(normal).copy()
        grad = jac.T @ r
        diag = np.maximum(diag, 1e-12 * max(float(diag.max()), 1e-300))
        improved = False
        while lam < 1e12:
            if sparse.issparse(normal):
                step = spsolve(normal + sparse.diags(lam * diag), -grad)
            else:
                step = np.linalg.solve(normal + np.diag(lam * diag), -grad)
            q = np.clip(p + step, lo, hi)
            rq = residual(q)
            cq = float(rq @ rq)
            if np.isfinite(cq) and cq < cost:
                improved = True
                break
            lam *= 4.0
        if not improved:
            break
        gain = cost - cq
        p, r, cost = q, rq, cq
        jac = jacobian(p)
        lam = max(lam / 3.0, 1e-9)
        if gain <= rtol * cost:
            break
    return p, r, jac


def _bounds(model, lo_c, hi_c, cell):
    n = model.n
    lo = [np.tile(lo_c, n), np.zeros(n)]
    hi = [np.tile(hi_c, n), np.full(n, np.inf)]
    if model.fixed_sigma is None:
        lo.append([0.1 * cell])
        hi.append([np.inf])
    lo.append([-np.inf])
    hi.append([np.inf])
    return np.concatenate(lo).astype(float), np.concatenate(hi).astype(float)


def _errors(model, jac, misfit, n_values, weighted):
    """Standard errors of the areas and sigma (inverse Gauss-Newton matrix)."""
    from scipy import sparse

    n, k = model.n, model.k
    n_par = jac.shape[1]
    scale = 1.0 if weighted else misfit / max(n_values - n_par, 1)
    if sparse.issparse(jac) and n_par > 600:
        # Large images: the diagonal of J^T J (errors as if the other
        # parameters were known).
        diag = np.asarray(jac.multiply(jac).sum(axis=0)).ravel()
        err = np.sqrt(scale / np.maximum(diag, 1e-300))
    else:
        dense = jac.toarray() if sparse.issparse(jac) else jac
        try:
            cov = np.linalg.pinv(dense.T @ dense) * scale
            err = np.sqrt(np.maximum(np.diag(cov), 0.0))
        except np.linalg.LinAlgError:
            err = np.full(n_par, np.nan)
    area_err = err[n * k:n * k + n]
    sigma_err = 0.0 if model.fixed_sigma is not None else float(err[n * k + n])
    return area_err, sigma_err


def _noise_level(y, sd):
    """A rough noise standard deviation of the values (for detection)."""
    if sd is not None:
        return float(np.median(sd))
    d = np.diff(y, axis=-1).ravel()
    mad = float(np.median(np.abs(d - np.median(d)))) / 0.6745 / np.sqrt(2)
    # Noise-free values: a floor far below any peak.
    return max(mad, 1e-4 * float(np.ptp(y)), 1e-300)


def half_width(values, edges, n_peaks=5):
    """Width from the half-maximum widths of the highest peaks.

    The median, over the ``n_peaks`` highest local maxima, of the
    full width at half maximum along the first axis (over 2.355, less the
    cell's own width): a start for `fit_peaks`, and a measure of how sharp a
    projection is (overlapping columns make wider peaks).

    Parameters
    ----------
    values : array-like, shape ``(n,)`` or ``(n_u, n_v)``
    edges : array-like or sequence of array-likes
        Cell boundaries along each axis.
    n_peaks : int, optional

    Returns
    -------
    sigma : float
    """
    from scipy.ndimage import maximum_filter

    y = np.asarray(values, dtype=float)
    edges = _edge_list(y, edges)
    e = edges[0]
    h = float(np.min(np.diff(e)))
    mids = 0.5 * (e[1:] + e[:-1])
    base = float(np.percentile(y, 10))
    peaks = np.argwhere((y == maximum_filter(y, size=3, mode='nearest'))
                        & (y > base + 0.2 * (y.max() - base)))
    order = np.argsort(-y[tuple(peaks.T)])[:n_peaks]
    widths = []
    for index in peaks[order]:
        line = y[(slice(None),) + tuple(index[1:])]
        i = index[0]
        half = base + 0.5 * (line[i] - base)
        left, right = i, i
        while left > 0 and line[left] > half:
            left -= 1
        while right < line.size - 1 and line[right] > half:
            right += 1
        if line[left] > half or line[right] > half:
            continue  # runs into the edge
        # Interpolate the half-maximum crossings between cells.
        xl = mids[left] + (half - line[left]) / (line[left + 1] - line[left]) * h
        xr = mids[right] - (half - line[right]) / (line[right - 1]
                                                   - line[right]) * h
        widths.append(xr - xl)
    if not widths:
        return 2.0 * h
    sigma = float(np.median(widths)) / 2.3548
    return float(np.sqrt(max(sigma ** 2 - h ** 2 / 12, (0.5 * h) ** 2)))


def _local_misfit(residual, mids, centres, sigma):
    """Mean squared residual near each peak over the mean of all."""
    overall = max(float(np.mean(residual ** 2)), 1e-300)
    out = np.empty(centres.shape[0])
    for j, c in enumerate(centres):
        near = np.ones(residual.shape, bool)
        for i, m in enumerate(mids):
            shape = [1] * residual.ndim
            shape[i] = m.size
            near = near & (np.abs(m - c[i]) <= 2 * sigma).reshape(shape)
        out[j] = float(np.mean(residual[near] ** 2)) / overall if near.any() \
            else np.inf
    return out


def _local_maxima(y, mids, sigma, cell, noise_sd, significance, far_from=None,
                  min_distance=None):
    """Centres and heights of significant maxima of the smoothed values."""
    from scipy.ndimage import gaussian_filter, maximum_filter

    s_px = max(0.5 * sigma / cell, 0.5)
    smooth = gaussian_filter(y, s_px, mode='nearest')
    # The noise of the smoothed values, for white noise of noise_sd.
    noise = noise_sd / np.sqrt((2 * np.sqrt(np.pi) * s_px) ** y.ndim)
    size = max(3, 2 * int(round(0.8 * sigma / cell)) + 1)
    peaks = (smooth == maximum_filter(smooth, size=size, mode='nearest')) & (
        smooth > significance * noise)
    index = np.argwhere(peaks)
    if index.size == 0:
        return np.zeros((0, y.ndim)), np.zeros(0)
    heights = smooth[tuple(index.T)]
    centres = np.stack([mids[i][index[:, i]] for i in range(y.ndim)], axis=1)
    order = np.argsort(-heights)
    centres, heights = centres[order], heights[order]
    if far_from is not None and far_from.shape[0] and min_distance:
        d = np.linalg.norm(centres[:, None] - far_from[None], axis=2).min(1)
        ok = d >= min_distance
        centres, heights = centres[ok], heights[ok]
    # Smoothing lowered the peaks (by the ratio of the widths).
    factor = (np.sqrt(sigma ** 2 + (s_px * cell) ** 2) / sigma) ** y.ndim
    return centres, heights * factor


def _merge(centres, areas, distance):
    """Merge peaks closer than ``distance`` (area-weighted centre)."""
    if centres.shape[0] < 2:
        return centres, areas
    order = np.argsort(-areas)
    centres, areas = centres[order], areas[order]
    used = np.zeros(areas.size, bool)
    out_c, out_a = [], []
    for j in range(areas.size):
        if used[j]:
            continue
        near = (~used) & (np.linalg.norm(centres - centres[j], axis=1)
                          < distance)
        used |= near
        a = areas[near].sum()
        out_c.append((centres[near] * areas[near, None]).sum(0) / max(a, 1e-300))
        out_a.append(a)
    return np.array(out_c), np.array(out_a)


def fit_projections(measured, sigma=None, fix_sigma=False, variance=None,
                    **options):
    """Fit every projection of a measurement (`fit_peaks`).

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`
    sigma, fix_sigma : optional
        As in `fit_peaks`; ``sigma`` defaults to ``measured.sigma``.
    variance : array-like, optional
        Variance of every data value (shape of ``measured.data``).
    **options
        Further arguments of `fit_peaks`.

    Returns
    -------
    fits : list of `PeakFit`
        One per projection, in the order of the angles.
    """
    from odl_atoms.io import ProjectionData

    if not isinstance(measured, ProjectionData):
        raise TypeError(f'measured must be a ProjectionData, got '
                        f'{type(measured).__name__}')
    if sigma is None:
        sigma = measured.sigma
    edges = measured.geometry.det_partition.cell_boundary_vecs
    data = np.asarray(measured.data, dtype=float)
    if variance is not None:
        variance = np.broadcast_to(np.asarray(variance, float), data.shape)
    fits = []
    for a in range(measured.n_angles):
        fits.append(fit_peaks(
            data[a], edges[0] if measured.ndim == 2 else edges, sigma=sigma,
            fix_sigma=fix_sigma,
            variance=None if variance is None else variance[a], **options))
    return fits
