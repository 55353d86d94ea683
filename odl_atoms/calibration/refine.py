"""Calibration at given atoms: least squares for width, intensity, factors and backgrounds.

Once atoms are known (a reconstruction, or the ground truth of a
benchmark), the data determine the atom model much better than peaks
alone: `refine_calibration` fits

    y_a = k_a I R_sigma(x, w)_a + b_a

at fixed positions ``x`` and weights ``w`` (``R_sigma`` the exact
`~odl_atoms.GaussianRayTransform` of width ``sigma``): for a given
``sigma`` the intensity factor ``s_a = k_a I`` and the background ``b_a`` of
each projection are a linear least-squares problem of two unknowns, so the
misfit is minimised over ``sigma`` alone (variable projection, a bounded
Brent search on ``log sigma``) and the rest follows in closed form.
``I`` is the mean of the ``s_a`` (factors of mean 1).

`fit_forward_model` fits other atom models at fixed atoms the same way,
for the forward-model study of benchmarks/calibration.py: one Gaussian
with a single intensity, per-projection factors and backgrounds, a width
per projection, a sum of two Gaussians (core and tail, the same for every
atom: still an exact projection, a linear combination of two operators)
and a free intensity per atom.
"""

import numbers
from dataclasses import dataclass, field

import numpy as np

from odl_atoms.errors import ValidationError

__all__ = ('RefinedCalibration', 'refine_calibration', 'ModelFit',
           'fit_forward_model', 'FORWARD_MODELS', 'SpeciesFit', 'fit_species')

#: The models `fit_forward_model` knows, with a one-line description.
FORWARD_MODELS = {
    'gaussian': 'one Gaussian per atom, one intensity',
    'gaussian+background': 'one Gaussian, one intensity, a background per '
                           'projection',
    'scaled': 'one Gaussian, a factor and a background per projection',
    'width_per_projection': 'a width, a factor and a background per '
                            'projection',
    'two_gaussians': 'core + tail Gaussians (the same for all atoms), a '
                     'factor and a background per projection',
    'two_gaussians_per_projection': 'core + tail widths common, their '
                                    'amounts and a background per projection',
    'free_intensities': 'an intensity per atom, a factor and a background '
                        'per projection',
}


@dataclass(frozen=True, eq=False)
class RefinedCalibration:

    """Atom model fitted at fixed atoms.

    Attributes
    ----------
    sigma, sigma_error : float
        Atom width (angstrom) and its standard error.
    intensity, intensity_error : float
        Integral of one atom of weight 1 (data units times
        angstrom^(d-1)), the mean over projections.
    scales : numpy.ndarray
        Intensity factor ``k_a`` per projection (mean 1; all 1 with
        ``scales=False``).
    backgrounds : numpy.ndarray
        Background ``b_a`` per projection (data units; 0 with
        ``backgrounds=False``).
    misfit : float
        Sum of squared residuals, each divided by its variance when
        variances were given.
    n_values : int
    weighted : bool
    """

    sigma: float
    sigma_error: float
    intensity: float
    intensity_error: float
    scales: np.ndarray
    backgrounds: np.ndarray
    misfit: float
    n_values: int
    weighted: bool

    @property
    def reduced_misfit(self):
        """Misfit per data value (in units of the noise variance if weighted)."""
        return self.misfit / self.n_values

    def __repr__(self):
        return (f'{type(self).__name__}(sigma={self.sigma:.5g}, '
                f'intensity={self.intensity:.6g}, '
                f'scales={np.round(self.scales, 4).tolist()}, '
                f'reduced_misfit={self.reduced_misfit:.4g})')


def _transform(operator):
    from odl_atoms.problem import atom_operator
    return atom_operator(operator)[0]


def _with_sigma(op, sigma):
    from odl_atoms.operators import GaussianRayTransform
    return GaussianRayTransform(
        op.domain, op.geometry, float(sigma), mode=op.mode,
        truncate=op.truncate,
        detector_shifts=getattr(op, 'detector_shifts', None))


class _AtAtoms:

    """Projections of fixed atoms for any width, and the weighted data."""

    def __init__(self, operator, data, positions, weights, variance):
        self.op = _transform(operator)
        shape = self.op.range.shape
        y = np.asarray(getattr(data, 'data', data), dtype=float)
        if y.shape != shape:
            raise ValidationError(f'data have shape {y.shape}, the operator '
                                  f'needs {shape}')
        if not np.all(np.isfinite(y)):
            raise ValidationError('data contain NaN or inf')
        self.positions = np.asarray(positions, dtype=float)
        d = self.op.domain.ndim
        if self.positions.ndim != 2 or self.positions.shape[1] != d or \
                self.positions.shape[0] == 0:
            raise ValidationError(
                f'positions must have shape (n, {d}) with n >= 1, got '
                f'{self.positions.shape}')
        if weights is None:
            weights = np.ones(self.positions.shape[0])
        self.weights = np.broadcast_to(np.asarray(weights, dtype=float),
                                       self.positions.shape[:1]).copy()
        if np.any(~np.isfinite(self.weights)):
            raise ValidationError('weights must be finite')
        self.m = shape[0]
        self.y = y.reshape(self.m, -1)
        if variance is None:
            self.w = np.ones_like(self.y)
            self.weighted = False
        else:
            var = np.broadcast_to(np.asarray(variance, dtype=float), shape)
            if np.any(~np.isfinite(var)) or np.any(var <= 0):
                raise ValidationError('variance must be positive and finite')
            self.w = 1.0 / var.reshape(self.m, -1)
            self.weighted = True
        self._cache = {}

    def project(self, sigma, weights=None):
        key = (float(sigma), None if weights is not None else 'w')
        if weights is None and key in self._cache:
            return self._cache[key]
        op = _with_sigma(self.op, sigma)
        w = self.weights if weights is None else weights
        p = op.project(self.positions, w).reshape(self.m, -1)
        if weights is None:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = p
        return p

    def stencil(self, sigma):
        return _with_sigma(self.op, sigma).stencil(self.positions)


def _linear_fit(y, w, columns, per_projection, background):
    """Weighted least squares ``y_a = sum_c t_c columns_c,a + b_a``.

    ``columns``: list of arrays ``(m, n)``; ``per_projection``: one
    coefficient per projection for each column (else one common). Returns
    ``(coefficients (n_cols, m), backgrounds (m,), weighted SSR)``.
    """
    m = y.shape[0]
    nc = len(columns)
    if per_projection:
        coef = np.zeros((nc, m))
        bg = np.zeros(m)
        ssr = 0.0
        for a in range(m):
            design = [c[a] for c in columns]
            if background:
                design.append(np.ones_like(y[a]))
            A = np.stack(design, axis=1)
            sw = np.sqrt(w[a])
            sol, *_ = np.linalg.lstsq(A * sw[:, None], y[a] * sw, rcond=None)
            coef[:, a] = sol[:nc]
            if background:
                bg[a] = sol[nc]
            ssr += float(np.sum(w[a] * (y[a] - A @ sol) ** 2))
        return coef, bg, ssr
    # One coefficient per column for all projections, backgrounds per
    # projection: eliminate the backgrounds (weighted means) first.
    if background:
        sw = w.sum(axis=1)
        yc = y - (np.sum(w * y, axis=1) / sw)[:, None]
        cc = [c - (np.sum(w * c, axis=1) / sw)[:, None] for c in columns]
    else:
        yc, cc = y, columns
    A = np.stack([c.ravel() for c in cc], axis=1)
    sqw = np.sqrt(w.ravel())
    sol, *_ = np.linalg.lstsq(A * sqw[:, None], yc.ravel() * sqw, rcond=None)
    model = sum(s * c for s, c in zip(sol, columns))
    bg = (np.sum(w * (y - model), axis=1) / w.sum(axis=1)) if background \
        else np.zeros(m)
    ssr = float(np.sum(w * (y - model - bg[:, None]) ** 2))
    return np.repeat(sol[:, None], m, axis=1), bg, ssr


def _minimise_sigma(fun, sigma0, bounds):
    from scipy.optimize import minimize_scalar

    lo, hi = bounds if bounds is not None else (sigma0 / 4, sigma0 * 4)
    if not (0 < lo < hi):
        raise ValidationError(f'sigma_bounds must be 0 < low < high, got '
                              f'{bounds!r}')
    res = minimize_scalar(lambda t: fun(np.exp(t)),
                          bounds=(np.log(lo), np.log(hi)), method='bounded',
                          options={'xatol': 1e-6})
    sigma = float(np.exp(res.x))
    if sigma <= lo * 1.001 or sigma >= hi * 0.999:
        import warnings
        warnings.warn(f'the fitted width {sigma:.4g} is at the bound of '
                      f'[{lo:.4g}, {hi:.4g}]: widen sigma_bounds',
                      UserWarning, stacklevel=3)
    return sigma


def refine_calibration(operator, data, positions, weights=None,
                       variance=None, scales=True, backgrounds=True,
                       sigma_bounds=None, fit_sigma=True):
    """Fit width, intensity, factors and backgrounds at fixed atoms.

    Parameters
    ----------
    operator : `~odl_atoms.GaussianRayTransform`
        The measurement's geometry and box; its ``sigma`` is where the
        search starts (a positive multiple of it is accepted).
    data : array-like or projection-space element
        The data in the microscope's units (not divided by an intensity).
    positions : array-like, shape ``(n, d)``
        The atoms (a reconstruction's, or the truth's).
    weights : array-like, shape ``(n,)``, optional
        Their relative intensities (1 for one species; default).
    variance : array-like, optional
        Variance of every data value (the noise model's): a weighted fit,
        and the misfit in units of the noise.
    scales : bool, optional
        Fit an intensity factor per projection (else one intensity).
    backgrounds : bool, optional
        Fit a background per projection (else none).
    sigma_bounds : (float, float), optional
        Where to search the width (default ``sigma / 4`` to ``4 sigma``).
    fit_sigma : bool, optional
        Fit the width (default); False: keep the operator's (its error is
        then reported as 0).

    Returns
    -------
    refined : `RefinedCalibration`

    Examples
    --------
    Data of three atoms with intensity 0.05, width 0.45, factors 1.1 and
    0.9 and backgrounds 0.01 and 0.02, fitted from a width of 0.3:

    >>> import odl
    >>> from odl.applications import tomo
    >>> import odl_atoms as oa
    >>> space = oa.SparseMeasureSpace([-5, -5], [5, 5])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.nonuniform_partition([0.0, 1.2]), odl.uniform_partition(-8, 8, 80))
    >>> x = [[-2.0, 1.0], [0.5, -1.5], [2.0, 2.0]]
    >>> clean = oa.GaussianRayTransform(space, geometry, 0.45).project(x, [1, 1, 1])
    >>> data = 0.05 * np.array([1.1, 0.9])[:, None] * clean + [[0.01], [0.02]]
    >>> op = oa.GaussianRayTransform(space, geometry, 0.3)
    >>> refined = refine_calibration(op, data, x)
    >>> round(refined.sigma, 4), round(refined.intensity, 4)
    (0.45, 0.05)
    >>> refined.scales.round(4).tolist(), refined.backgrounds.round(4).tolist()
    ([1.1, 0.9], [0.01, 0.02])
    """
    fixed = _AtAtoms(operator, data, positions, weights, variance)
    y, w = fixed.y, fixed.w

    def solve(sigma):
        return _linear_fit(y, w, [fixed.project(sigma)], bool(scales),
                           bool(backgrounds))

    if fit_sigma:
        sigma = _minimise_sigma(lambda s: solve(s)[2], fixed.op.sigma,
                                sigma_bounds)
    else:
        sigma = float(fixed.op.sigma)
    coef, bg, ssr = solve(sigma)
    s = coef[0]
    if np.mean(s) <= 0:
        raise ValidationError(
            'the fitted intensity is not positive: the atoms do not match the '
            'data (check positions, units and the background)')
    intensity = float(np.mean(s))
    # Standard errors from the Gauss-Newton matrix (derivative in sigma by
    # central differences).
    h = 1e-4 * sigma
    d_sigma = (solve_model(fixed, sigma + h, s, bg)
               - solve_model(fixed, sigma - h, s, bg)) / (2 * h)
    p = fixed.project(sigma)
    sigma_err, intensity_err = _errors(p, d_sigma, w, bool(scales),
                                       bool(backgrounds), ssr, fixed.weighted)
    return RefinedCalibration(
        sigma=sigma, sigma_error=sigma_err if fit_sigma else 0.0,
        intensity=intensity, intensity_error=intensity_err, scales=s / intensity, backgrounds=bg,
        misfit=ssr, n_values=int(y.size), weighted=fixed.weighted)


def solve_model(fixed, sigma, s, bg):
    return s[:, None] * fixed.project(sigma) + bg[:, None]


def _errors(p, d_sigma, w, scales, backgrounds, ssr, weighted):
    m = p.shape[0]
    cols = [d_sigma.ravel()]
    if scales:
        for a in range(m):
            c = np.zeros_like(p)
            c[a] = p[a]
            cols.append(c.ravel())
    else:
        cols.append(p.ravel())
    if backgrounds:
        for a in range(m):
            c = np.zeros_like(p)
            c[a] = 1.0
            cols.append(c.ravel())
    J = np.stack(cols, axis=1)
    ww = w.ravel()
    try:
        cov = np.linalg.inv(J.T @ (J * ww[:, None]))
    except np.linalg.LinAlgError:
        return float('nan'), float('nan')
    if not weighted:
        cov *= ssr / max(p.size - J.shape[1], 1)
    sigma_err = float(np.sqrt(max(cov[0, 0], 0.0)))
    if scales:
        g = np.zeros(J.shape[1])
        g[1:1 + m] = 1.0 / m
        intensity_err = float(np.sqrt(max(g @ cov @ g, 0.0)))
    else:
        intensity_err = float(np.sqrt(max(cov[1, 1], 0.0)))
    return sigma_err, intensity_err


# --- The forward-model study


@dataclass(frozen=True, eq=False)
class ModelFit:

    """One atom model fitted at fixed atoms.

    Attributes
    ----------
    model : str
        A key of `FORWARD_MODELS`.
    misfit : float
        Weighted sum of squared residuals.
    n_values, n_parameters : int
    weighted : bool
    parameters : dict
        The fitted values (widths, intensity, factors, backgrounds, ...).
    """

    model: str
    misfit: float
    n_values: int
    n_parameters: int
    weighted: bool
    parameters: dict = field(default_factory=dict)

    @property
    def reduced_misfit(self):
        """Misfit per data value (in units of the noise variance if weighted)."""
        return self.misfit / self.n_values

    def __repr__(self):
        return (f'{type(self).__name__}(model={self.model!r}, '
                f'reduced_misfit={self.reduced_misfit:.4g}, '
                f'n_parameters={self.n_parameters})')


def fit_forward_model(operator, data, positions, weights=None, variance=None,
                      model='scaled', sigma_bounds=None):
    """Fit one of the atom models of `FORWARD_MODELS` at fixed atoms.

    Parameters
    ----------
    operator, data, positions, weights, variance, sigma_bounds
        As in `refine_calibration`.
    model : str, optional
        A key of `FORWARD_MODELS`.

    Returns
    -------
    fit : `ModelFit`
    """
    if model not in FORWARD_MODELS:
        raise ValidationError(f'unknown model {model!r}; choose one of '
                              f'{sorted(FORWARD_MODELS)}')
    fixed = _AtAtoms(operator, data, positions, weights, variance)
    y, w = fixed.y, fixed.w
    m = fixed.m
    sigma0 = fixed.op.sigma
    if model in ('gaussian', 'gaussian+background', 'scaled'):
        per, bgs = model == 'scaled', model != 'gaussian'
        sigma = _minimise_sigma(
            lambda s: _linear_fit(y, w, [fixed.project(s)], per, bgs)[2],
            sigma0, sigma_bounds)
        coef, bg, ssr = _linear_fit(y, w, [fixed.project(sigma)], per, bgs)
        n_par = 1 + (m if per else 1) + (m if bgs else 0)
        params = {'sigma': sigma, 'intensity': float(np.mean(coef[0])),
                  'scales': (coef[0] / np.mean(coef[0])).tolist(),
                  'backgrounds': bg.tolist()}
    elif model == 'width_per_projection':
        sigmas, coefs, bgs, ssr = [], [], [], 0.0
        for a in range(m):
            ya, wa = y[a:a + 1], w[a:a + 1]
            sa = _minimise_sigma(lambda s: _linear_fit(
                ya, wa, [fixed.project(s)[a:a + 1]], True, True)[2],
                sigma0, sigma_bounds)
            c, b, r = _linear_fit(ya, wa, [fixed.project(sa)[a:a + 1]], True,
                                  True)
            sigmas.append(sa)
            coefs.append(float(c[0, 0]))
            bgs.append(float(b[0]))
            ssr += r
        n_par = 3 * m
        coefs = np.array(coefs)
        params = {'sigmas': sigmas, 'intensity': float(coefs.mean()),
                  'scales': (coefs / coefs.mean()).tolist(),
                  'backgrounds': bgs}
    elif model in ('two_gaussians', 'two_gaussians_per_projection'):
        ssr, n_par, params = _two_gaussians(
            fixed, model == 'two_gaussians', sigma_bounds)
    else:
        ssr, n_par, params = _free_intensities(fixed, sigma_bounds)
    return ModelFit(model=model, misfit=float(ssr), n_values=int(y.size),
                    n_parameters=int(n_par), weighted=fixed.weighted,
                    parameters=params)


def _two_gaussians(fixed, common_fraction, sigma_bounds):
    """Core + tail: ``s_a ((1 - f) R_sigma1 + f R_sigma2) + b_a``."""
    from scipy.optimize import minimize

    y, w, m = fixed.y, fixed.w, fixed.m
    sigma0 = fixed.op.sigma

    def unpack(t):
        s1 = np.exp(t[0])
        s2 = s1 * (1.0 + np.exp(t[1]))        # the tail is the wider one
        f = 1.0 / (1.0 + np.exp(-t[2])) if common_fraction else None
        return s1, s2, f

    def fit(t):
        s1, s2, f = unpack(t)
        p1, p2 = fixed.project(s1), fixed.project(s2)
        if common_fraction:
            return _linear_fit(y, w, [(1 - f) * p1 + f * p2], True, True)
        return _linear_fit(y, w, [p1, p2], True, True)

    best = None
    for tail, frac in ((1.0, 0.2), (2.0, 0.1), (0.3, 0.3)):
        t0 = [np.log(sigma0 * 0.9), np.log(tail), np.log(frac / (1 - frac))]
        if not common_fraction:
            t0 = t0[:2] + [0.0]
        res = minimize(lambda t: fit(t)[2], t0, method='Nelder-Mead',
                       options={'xatol': 1e-4, 'fatol': 1e-10 * max(
                           1.0, fit(t0)[2]), 'maxiter': 600})
        if best is None or res.fun < best.fun:
            best = res
    s1, s2, f = unpack(best.x)
    coef, bg, ssr = fit(best.x)
    if common_fraction:
        n_par = 3 + 2 * m
        params = {'sigma_core': float(s1), 'sigma_tail': float(s2),
                  'tail_fraction': float(f),
                  'intensity': float(np.mean(coef[0])),
                  'scales': (coef[0] / np.mean(coef[0])).tolist(),
                  'backgrounds': bg.tolist()}
    else:
        n_par = 2 + 3 * m
        total = coef[0] + coef[1]
        params = {'sigma_core': float(s1), 'sigma_tail': float(s2),
                  'tail_fractions': (coef[1] / total).tolist(),
                  'intensity': float(np.mean(total)),
                  'scales': (total / np.mean(total)).tolist(),
                  'backgrounds': bg.tolist()}
    return ssr, n_par, params


def _free_intensities(fixed, sigma_bounds, rounds=3, inner=4):
    """An intensity per atom with factors and backgrounds per projection.

    Alternates: the width (Brent, the intensities fixed), the intensities
    (weighted linear least squares through the exact projection and its
    adjoint, LSQR) and the factors and backgrounds (closed form).
    """
    from scipy.sparse.linalg import LinearOperator, lsqr

    y, w, m = fixed.y, fixed.w, fixed.m
    n = fixed.positions.shape[0]
    weights = fixed.weights * 1.0
    sigma = fixed.op.sigma
    for _ in range(rounds):
        sigma = _minimise_sigma(
            lambda t: _linear_fit(y, w, [fixed.project(t, weights)], True,
                                  True)[2], sigma, sigma_bounds)
        stencil = fixed.stencil(sigma)
        coef, bg, ssr = _linear_fit(y, w, [fixed.project(sigma, weights)],
                                    True, True)
        s = coef[0]
        for _ in range(inner):
            scale = s[:, None] * np.sqrt(w)
            target = ((y - bg[:, None]) * np.sqrt(w)).ravel()

            def matvec(v, scale=scale, stencil=stencil):
                return (scale * stencil.project(np.ravel(v)).reshape(
                    m, -1)).ravel()

            def rmatvec(r, scale=scale, stencil=stencil):
                return stencil.correlate((scale * r.reshape(m, -1)).ravel())

            A = LinearOperator((y.size, n), matvec=matvec, rmatvec=rmatvec,
                               dtype=float)
            weights = lsqr(A, target, x0=weights, atol=1e-12, btol=1e-12,
                           iter_lim=1000)[0]
            p = stencil.project(weights).reshape(m, -1)
            coef, bg, ssr = _linear_fit(y, w, [p], True, True)
            weights = weights * np.mean(coef[0])
            s = coef[0] / np.mean(coef[0])
    mean_w = float(np.mean(weights))
    params = {'sigma': sigma, 'intensity': mean_w,
              'atom_intensity_spread': float(np.std(weights) / mean_w),
              'atom_intensities': (weights / mean_w).tolist(),
              'scales': s.tolist(), 'backgrounds': bg.tolist()}
    return ssr, 1 + n + 2 * m, params


@dataclass(frozen=True)
class SpeciesFit:

    """Atoms told apart by their fitted intensities (`fit_species`).

    Attributes
    ----------
    labels : numpy.ndarray of int, shape ``(n,)``
        Species of each atom: 0 the dimmest, ``n_species - 1`` the
        brightest.
    intensities : numpy.ndarray, shape ``(n_species,)``
        Intensity of one atom of each species (data units times
        angstrom^(d-1)), dimmest first.
    atom_intensities : numpy.ndarray, shape ``(n,)``
        Each atom's fitted intensity (same units).
    separation : float
        Smallest gap between neighbouring species' intensities over the
        largest spread (standard deviation) within a species: a few or more
        when the species are told apart, near 1 or below when not.
    fit : `ModelFit`
        The ``'free_intensities'`` fit.
    """

    labels: np.ndarray
    intensities: np.ndarray
    atom_intensities: np.ndarray
    separation: float
    fit: ModelFit


def fit_species(operator, data, positions, n_species=2, variance=None,
                seed=0, sigma_bounds=None):
    """Tell species apart by the intensity each atom needs to fit the data.

    Fits an intensity per atom with a factor and a background per projection
    at the given atoms (`fit_forward_model`, ``'free_intensities'``) and
    groups the intensities into ``n_species`` clusters (k-means,
    `scipy.cluster.vq.kmeans2`). In HAADF-STEM an atom's intensity grows
    about as ``Z^1.7``: Au and Ag columns differ by a factor 2.4, Au and Pt
    by 2 % (less than the spread of fitted intensities of one species on
    multislice data, benchmarks/results/calibration.md: those cannot be
    told apart this way).

    The atoms' intensities are determined only where the projections see
    them apart: in 2D at zone axes the projections see sums along lattice
    rows; give generic angles (or more of them).

    Parameters
    ----------
    operator, data, positions, variance, sigma_bounds :
        As in `refine_calibration` (``data`` in the microscope's units).
    n_species : int >= 2, optional
    seed : int, optional
        Seed of the k-means start.

    Returns
    -------
    species : `SpeciesFit`

    Examples
    --------
    Atoms of intensities 0.05 and 0.02 (Au- and Ag-like), seen from six
    angles:

    >>> import odl
    >>> from odl.applications import tomo
    >>> import odl_atoms as oa
    >>> space = oa.SparseMeasureSpace([-5, -5], [5, 5])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 6), odl.uniform_partition(-8, 8, 80))
    >>> op = oa.GaussianRayTransform(space, geometry, sigma=0.4)
    >>> positions = np.array([[-2.0, 0.0], [0.0, 1.5], [2.0, -1.0],
    ...                       [0.5, -2.5]])
    >>> data = op.project(positions, [0.05, 0.02, 0.05, 0.02])
    >>> species = fit_species(op, data, positions)
    >>> species.labels.tolist()
    [1, 0, 1, 0]
    >>> species.intensities.round(4).tolist()
    [0.02, 0.05]
    """
    from scipy.cluster.vq import kmeans2

    if not (isinstance(n_species, numbers.Integral) and n_species >= 2):
        raise ValidationError(f'n_species must be an integer >= 2, got '
                              f'{n_species!r}')
    positions = np.asarray(positions, dtype=float)
    if positions.ndim != 2 or positions.shape[0] < n_species:
        raise ValidationError(f'telling {n_species} species apart needs at '
                              f'least {n_species} atoms, positions of shape '
                              f'(n, d); got shape {positions.shape}')
    fit = fit_forward_model(operator, data, positions, variance=variance,
                            model='free_intensities',
                            sigma_bounds=sigma_bounds)
    values = fit.parameters['intensity'] * np.asarray(
        fit.parameters['atom_intensities'], dtype=float)
    centres, labels = kmeans2(values[:, None], n_species, seed=seed,
                              minit='++')
    order = np.argsort(centres.ravel())
    rank = np.empty(n_species, dtype=int)
    rank[order] = np.arange(n_species)
    labels = rank[labels]
    means = np.array([values[labels == k].mean() if np.any(labels == k)
                      else np.nan for k in range(n_species)])
    spread = max(float(values[labels == k].std()) for k in range(n_species)
                 if np.any(labels == k))
    gap = float(np.nanmin(np.diff(means)))
    separation = gap / spread if spread > 0 else float('inf')
    return SpeciesFit(labels=labels, intensities=means,
                      atom_intensities=values, separation=separation,
                      fit=fit)
