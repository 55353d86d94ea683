"""Local descent: ODL's own smooth solver, and SciPy's L-BFGS-B called lean.

Two small functions around ``odl.solvers.bfgs_method`` (limited-memory BFGS)
with ``odl.solvers.BacktrackingLineSearch``:

- `bfgs_descent` minimises an ODL `~odl.functionals.Functional` with a
  gradient in place, e.g. `odl_atoms.objective_functional` on positions and
  weights. ``bfgs_method``'s default step, a constant 1, is not scaled to
  the functional and can diverge (it does on the vacancy of the gallery
  example "Compose the atom operator with ODL"); the line search makes
  every step decrease the function.
- `odl_local_descent` minimises a smooth function of flat positions inside
  a box, given as ``value_and_gradient(x) -> (value, gradient)`` (the
  ``jac=True`` convention of `scipy.optimize.minimize`), and returns a
  `scipy.optimize.OptimizeResult` as SciPy's L-BFGS-B does, so that either
  can make ADCG's local move.

How they stop. ``bfgs_method`` tests its ``tol`` against the curvature
``<y, s>`` of each step and, when that is small but the gradient is not,
drops its memory and goes on with a gradient step; used as the stopping
rule that slows the end of a descent. Here its ``tol`` is tiny (it only
guards against degenerate steps) and the stopping test runs where
``bfgs_method`` takes the gradient of each new iterate: the gradient norm
for `bfgs_descent`, L-BFGS-B's projected gradient for `odl_local_descent`.
When the line search finds no decrease it raises (a ``ValueError``, or an
``AssertionError`` from its own check when the decrease underflows): at a
minimum up to rounding that means "converged", and it is caught.

The box. ``bfgs_method`` has no bounds; `odl_local_descent` hands it the
extension

    F(z) = f(P z) + (mu / 2) ||z - P z||^2,

``P`` the projection onto the box: ``F`` is ``f`` inside the box (the
iterates see the objective unchanged while no bound is active), and outside
it is ``f`` at the nearest box point plus a penalty that grows with the
distance, so every minimiser of ``F`` lies in the box and minimises ``f``
there. On a bound, of ``F``'s one-sided slopes the one of least size is
used (L-BFGS-B's projected gradient), so that a coordinate held by a bound
neither drives the quasi-Newton step nor keeps the others from converging.
The answer returned is ``P z``, inside the box.

`lbfgsb` is SciPy's bound-constrained L-BFGS-B, the default local move of
the solvers, driven directly (see its documentation for why).
"""

import numbers

import numpy as np
import odl
from scipy.optimize import OptimizeResult, minimize

try:  # SciPy's L-BFGS-B routine (its C version, SciPy >= 1.15)
    from scipy.optimize._lbfgsb import setulb as _setulb
except ImportError:  # pragma: no cover - then `lbfgsb` calls `minimize`
    _setulb = None

__all__ = ('bfgs_descent', 'odl_local_descent', 'lbfgsb')


def _check_count(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
            or value < 1:
        raise ValueError(f'`{name}` must be an integer >= 1, got {value!r}')
    return int(value)


def _check_tol(tol):
    if not isinstance(tol, numbers.Real) or not np.isfinite(tol) or tol < 0:
        raise ValueError(f'`tol` must be a number >= 0, got {tol!r}')
    return float(tol)


#: ``bfgs_method``'s own tolerance, relative to ours: small enough that it
#: only resets the memory after a degenerate step.
_ODL_TOL_FACTOR = 1e-6


class _Converged(Exception):
    """Raised where the gradient is taken, to stop ``bfgs_method``."""


class _Watched(odl.functionals.Functional):

    """``functional`` whose gradient runs a stopping test first."""

    def __init__(self, functional, converged):
        self.functional = functional
        self.converged = converged
        self.grad = functional.gradient  # some functionals build it anew
        super().__init__(space=functional.domain, linear=False)

    def _call(self, x):
        return self.functional(x)

    @property
    def gradient(self):
        watched = self

        class WatchedGradient(odl.Operator):
            def __init__(self):
                super().__init__(watched.domain, watched.domain, linear=False)

            def _call(self, x):
                grad = watched.grad(x)
                if watched.converged(x, grad):
                    raise _Converged
                return grad

        return WatchedGradient()


def _run_bfgs(functional, x, converged, tol, maxiter, num_store,
              hessinv_estimate=None, callback=None):
    """``bfgs_method`` + line search from ``x`` (in place); return the reason."""
    watched = _Watched(functional, converged)
    line_search = odl.solvers.BacktrackingLineSearch(watched)
    try:
        odl.solvers.bfgs_method(watched, x, line_search=line_search,
                                maxiter=maxiter, tol=_ODL_TOL_FACTOR * tol,
                                num_store=num_store,
                                hessinv_estimate=hessinv_estimate,
                                callback=callback)
    except _Converged:
        return 'gradient'
    except (ValueError, AssertionError) as exc:
        # The line search raises when no step decreases the function (see
        # the module documentation); x holds the last accepted iterate.
        if 'NaN' in str(exc) or 'invalid value' in str(exc):
            raise ValueError(
                f'the function is not finite at a trial point of the line '
                f'search ({exc}); make it finite everywhere it can be '
                f'evaluated') from exc
        return 'no decrease'
    # bfgs_method returns early only at a zero gradient.
    return 'gradient' if converged(x, watched.grad(x)) else 'maxiter'


def bfgs_descent(functional, x, maxiter=200, tol=1e-8, num_store=10,
                 hessinv_estimate=None, callback=None):
    """Minimise ``functional`` from ``x`` (in place) by BFGS with a line search.

    ``odl.solvers.bfgs_method`` with ``odl.solvers.BacktrackingLineSearch``,
    limited memory (``num_store`` corrections). It stops at an iterate where
    the gradient norm is at most ``tol``, after ``maxiter`` iterations, or
    when the line search finds no decrease.

    Parameters
    ----------
    functional : `odl.functionals.Functional`
        With a ``gradient``.
    x : ``functional.domain`` element
        The start, overwritten with the result.
    maxiter : int, optional
        Iteration limit of ``bfgs_method``.
    tol : float, optional
        Stop when the norm of the gradient is at most this.
    num_store : int, optional
        Corrections kept by the limited-memory update; ``None`` for full
        BFGS.
    hessinv_estimate : `odl.Operator`, optional
        Initial inverse Hessian (``bfgs_method``'s; the identity by default).
    callback : callable, optional
        Called with the iterate after each step with a curvature update
        (``bfgs_method``'s callback; ODL's callbacks work).

    Returns
    -------
    reason : str
        ``'gradient'`` (the gradient norm met ``tol``), ``'no decrease'``
        (the line search found none: a minimum up to rounding, or the last
        iterate is the best one found) or ``'maxiter'``.

    Examples
    --------
    The Rosenbrock function, whose minimum is at (1, 1), from (-1.2, 1):

    >>> func = odl.functionals.RosenbrockFunctional(odl.rn(2))
    >>> x = func.domain.element([-1.2, 1.0])
    >>> bfgs_descent(func, x)
    'gradient'
    >>> np.round(x.data, 6)
    array([ 1.,  1.])
    """
    if not isinstance(functional, odl.functionals.Functional):
        raise TypeError(
            f'`functional` must be an ODL Functional, got '
            f'{type(functional).__name__}')
    if x not in functional.domain:
        raise TypeError(
            f'`x` must be an element of the functional\'s domain '
            f'{functional.domain!r}; make one with functional.domain.element')
    maxiter = _check_count(maxiter, 'maxiter')
    tol = _check_tol(tol)
    if num_store is not None:
        num_store = _check_count(num_store, 'num_store')
    return _run_bfgs(functional, x, lambda _, grad: grad.norm() <= tol, tol,
                     maxiter, num_store, hessinv_estimate, callback)


def _projected_gradient(x, grad, lower, upper):
    """``grad`` with the entries that push out of an active bound set to 0.

    L-BFGS-B's measure of stationarity on a box.
    """
    return np.where(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)),
                    0.0, grad)


class _BoxExtension(odl.functionals.Functional):

    """``F(z) = f(P z) + mu/2 ||z - P z||^2`` on ``rn(n)``, with its gradient.

    The last value and gradient are kept: the line search evaluates ``F``
    where ``bfgs_method`` then asks for the gradient.
    """

    def __init__(self, value_and_gradient, lower, upper, penalty):
        self.value_and_gradient = value_and_gradient
        self.lower, self.upper = lower, upper
        self.penalty = penalty
        self.nfev = 0
        self._last = (None, None, None)
        self.at_box_point = (None, None, None)
        super().__init__(space=odl.rn(lower.size), linear=False)

    def evaluate(self, z):
        """Return ``F(z)`` and its gradient (arrays) for an array ``z``."""
        z = np.asarray(z, dtype=float)
        last_z, value, grad = self._last
        if last_z is not None and np.array_equal(last_z, z):
            return value, grad
        x = np.clip(z, self.lower, self.upper)
        value, grad = self.value_and_gradient(x)
        self.nfev += 1
        value = float(value)
        grad = np.asarray(grad, dtype=float).reshape(z.shape)
        self.at_box_point = (x, value, grad)  # f itself at P z
        outside = z - x
        # On a bound, the one-sided slope of least size (module docs).
        step = _projected_gradient(x, grad, self.lower, self.upper)
        if np.any(outside):
            # f(P z) does not change with the outside coordinates; the
            # penalty pulls them back to the box.
            value += 0.5 * self.penalty * float(outside @ outside)
            step = np.where(outside != 0, self.penalty * outside, step)
        grad = step
        self._last = (z.copy(), value, grad)
        return value, grad

    def _call(self, z):
        return self.evaluate(z.data)[0]

    @property
    def gradient(self):
        func = self

        class BoxExtensionGradient(odl.Operator):
            def __init__(self):
                super().__init__(func.domain, func.domain, linear=False)

            def _call(self, z):
                return self.range.element(func.evaluate(z.data)[1])

        return BoxExtensionGradient()


def odl_local_descent(value_and_gradient, x0, lower, upper, maxiter=100,
                      tol=1e-5, num_store=10, penalty=None):
    """Minimise a smooth function of flat positions in a box with ODL's BFGS.

    `bfgs_descent` (``odl.solvers.bfgs_method`` with a backtracking line
    search) on ``odl.rn(n)``, the box handled by the extension of the module
    documentation. A drop-in for SciPy's bound-constrained L-BFGS-B in a
    local move: same function convention, same result type, and ``tol``
    means what L-BFGS-B's ``gtol`` means.

    Parameters
    ----------
    value_and_gradient : callable
        ``value_and_gradient(x) -> (value, gradient)`` for a flat float
        array ``x`` of size ``n``; the gradient has ``n`` entries.
    x0 : array-like
        Start, ``n`` values; points outside the box are moved to the nearest
        box point (as L-BFGS-B does). Not modified.
    lower, upper : float or array-like
        Bounds, scalars or ``n`` values each (e.g. ``np.tile(min_pt, k)``
        for ``k`` atoms in a box).
    maxiter : int, optional
        Iteration limit of ``bfgs_method``.
    tol : float, optional
        Stop when the largest entry of the projected gradient (the gradient
        with the entries that push against an active bound set to 0) is at
        most ``tol``; the default is L-BFGS-B's.
    num_store : int, optional
        Corrections kept by the limited-memory BFGS update.
    penalty : positive float, optional
        Curvature ``mu`` of the extension outside the box. Any positive
        value gives the same minimisers; the default, the largest entry of
        the start's gradient divided by 0.1 (1 if that is 0), pulls a
        coordinate 0.1 length units outside back as hard as the start's
        strongest force.

    Returns
    -------
    result : `scipy.optimize.OptimizeResult`
        ``x`` (inside the box), ``fun`` and ``jac`` (of the function at
        ``x``), ``nit`` (BFGS iterations), ``nfev`` (function evaluations),
        ``success`` (False only if ``maxiter`` stopped it) and ``message``.

    Examples
    --------
    A quadratic whose minimum (2, -3) lies outside the box [-1, 1]^2: the
    answer is the nearest box point.

    >>> def f(x):
    ...     d = x - [2.0, -3.0]
    ...     return float(d @ d), 2 * d
    >>> res = odl_local_descent(f, [0.0, 0.0], -1.0, 1.0)
    >>> np.round(res.x, 8)
    array([ 1., -1.])
    >>> res.success
    True
    """
    x0 = np.array(x0, dtype=float).ravel()
    if x0.size == 0:
        raise ValueError('`x0` is empty: give at least one coordinate')
    if not np.all(np.isfinite(x0)):
        raise ValueError('`x0` must be finite, got NaN or inf')
    try:
        lower = np.broadcast_to(np.asarray(lower, dtype=float), x0.shape).copy()
        upper = np.broadcast_to(np.asarray(upper, dtype=float), x0.shape).copy()
    except ValueError as exc:
        raise ValueError(
            f'`lower` and `upper` must be scalars or have {x0.size} values '
            f'(one per entry of x0)') from exc
    if np.any(np.isnan(lower)) or np.any(np.isnan(upper)) or np.any(
            lower > upper):
        raise ValueError('`lower` must be <= `upper` everywhere (and not NaN)')
    maxiter = _check_count(maxiter, 'maxiter')
    tol = _check_tol(tol)
    x0 = np.clip(x0, lower, upper)

    value0, grad0 = value_and_gradient(x0.copy())
    grad0 = np.asarray(grad0, dtype=float).ravel()
    if grad0.shape != x0.shape:
        raise ValueError(
            f'`value_and_gradient` returned a gradient of shape {grad0.shape} '
            f'for x of shape {x0.shape}')
    if not (np.isfinite(value0) and np.all(np.isfinite(grad0))):
        raise ValueError(
            f'the function or its gradient is not finite at the start '
            f'(value {value0}); start elsewhere')
    if penalty is None:
        scale = float(np.max(np.abs(grad0)))
        penalty = scale / 0.1 if scale > 0 else 1.0
    elif not (isinstance(penalty, numbers.Real) and penalty > 0
              and np.isfinite(penalty)):
        raise ValueError(f'`penalty` must be a positive number, got {penalty!r}')

    func = _BoxExtension(value_and_gradient, lower, upper, float(penalty))
    func._last = (x0.copy(), float(value0), grad0)
    func.at_box_point = (x0.copy(), float(value0), grad0)
    iterates = [x0]  # distinct points where the stopping test ran

    def converged(z, _):
        func.evaluate(z.data)  # cached: the gradient was just taken there
        x, _, grad = func.at_box_point  # f itself at P z
        if not np.array_equal(x, iterates[-1]):
            iterates.append(x)
        return np.max(np.abs(_projected_gradient(x, grad, lower, upper))) <= tol

    z = func.domain.element(x0.copy())
    if converged(z, None):
        reason = 'gradient'
    else:
        reason = _run_bfgs(func, z, converged, tol, maxiter, num_store)

    x = np.clip(z.data, lower, upper)
    func.evaluate(x)
    _, value, grad = func.at_box_point  # f itself, not the extension
    messages = {
        'gradient': 'converged: projected gradient below tol',
        'no decrease': 'converged: the line search finds no further decrease',
        'maxiter': 'stopped: maxiter iterations',
    }
    return OptimizeResult(x=x, fun=value, jac=grad,
                          nit=len(iterates) - 1,
                          nfev=func.nfev + 1, success=reason != 'maxiter',
                          status=int(reason == 'maxiter'),
                          message=messages[reason])


def lbfgsb(value_and_gradient, x0, lower, upper, maxiter=15000):
    """SciPy's L-BFGS-B in a box, without SciPy's per-evaluation wrapper.

    The same iterates and answer as ``scipy.optimize.minimize(fun, x0,
    jac=True, method='L-BFGS-B', bounds=list(zip(lower, upper)),
    options={'maxiter': maxiter})`` with its other options at their
    defaults, bit for bit: the same routine (the ``setulb`` of
    ``scipy.optimize._lbfgsb`` that ``minimize`` calls) is given the same
    points, values and gradients. What is left out is ``minimize``'s
    bookkeeping around it: the bounds converted twice, a Python loop over
    the variables, and per evaluation ``ScalarFunction``'s and
    ``MemoizeJac``'s copies and checks and an ``OptimizeResult`` per
    iteration. At the sizes of ADCG's local moves (tens to hundreds of
    coordinates, an objective of about 40 us) that bookkeeping cost about
    as much as the objective (measured on ``odl-atoms demo``: 0.49 s of
    L-BFGS-B through ``minimize``, 0.33 s here, for the same 6,126
    evaluations). Without SciPy's routine, or with every variable fixed by
    its bounds (``minimize`` then evaluates once and does not iterate),
    ``minimize`` itself runs.

    Parameters
    ----------
    value_and_gradient : callable
        ``value_and_gradient(x) -> (value, gradient)`` for a flat float
        array ``x``; it gets a copy, which it may keep.
    x0 : array-like
        Start; clipped to the box.
    lower, upper : float or array-like
        Bounds, scalars or one per entry of ``x0`` (``-inf`` / ``inf`` for
        none).
    maxiter : int, optional
        Iteration limit (``minimize``'s option of that name).

    Returns
    -------
    result : `scipy.optimize.OptimizeResult`
        ``x``, ``fun`` (the value of the last evaluation, as ``minimize``
        reports it), ``nfev``, ``nit``, ``status`` (0 converged, 1 an
        evaluation or iteration limit, 2 otherwise), ``success``.

    Examples
    --------
    A quadratic whose minimum (2, -3) lies outside the box [-1, 1]^2:

    >>> def f(x):
    ...     d = x - [2.0, -3.0]
    ...     return float(d @ d), 2 * d
    >>> res = lbfgsb(f, [0.0, 0.0], -1.0, 1.0)
    >>> res.x
    array([ 1., -1.])
    """
    x0 = np.asarray(x0, dtype=float).ravel()
    lower = np.broadcast_to(np.asarray(lower, dtype=float), x0.shape)
    upper = np.broadcast_to(np.asarray(upper, dtype=float), x0.shape)
    if np.any(lower > upper):
        raise ValueError('`lower` must be <= `upper` everywhere')
    maxiter = _check_count(maxiter, 'maxiter')

    def scipy_minimize():
        return minimize(value_and_gradient, x0, jac=True, method='L-BFGS-B',
                        bounds=list(zip(lower, upper)),
                        options={'maxiter': maxiter})

    if _setulb is None or np.all(lower == upper):
        return scipy_minimize()
    # minimize's defaults: 10 corrections, ftol 2.2e-9 (as factr), gtol
    # 1e-5, 20 line-search steps, 15000 evaluations.
    m, factr, pgtol, maxls, maxfun = (
        10, 2.2204460492503131e-09 / np.finfo(float).eps, 1e-5, 20, 15000)
    n = x0.size
    has_lower, has_upper = np.isfinite(lower), np.isfinite(upper)
    # L-BFGS-B's bound codes: 0 none, 1 lower, 2 both, 3 upper.
    nbd = np.where(has_lower, np.where(has_upper, 2, 1),
                   np.where(has_upper, 3, 0)).astype(np.int32)
    low_bnd = np.where(has_lower, lower, 0.0)
    upper_bnd = np.where(has_upper, upper, 0.0)
    x = np.clip(x0, lower, upper)
    f = np.array(0.0)
    g = np.zeros(n)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa = np.zeros(3 * n, np.int32)
    task = np.zeros(2, np.int32)
    ln_task = np.zeros(2, np.int32)
    lsave = np.zeros(4, np.int32)
    isave = np.zeros(44, np.int32)
    dsave = np.zeros(29)
    last_x = None  # minimize evaluates a point once, however often asked
    nfev = nit = 0
    while True:
        g = g.astype(np.float64)  # setulb may write to it: never the caller's
        try:
            _setulb(m, x, low_bnd, upper_bnd, nbd, f, g, factr, pgtol, wa,
                    iwa, task, lsave, isave, dsave, maxls, ln_task)
        except TypeError:
            # A SciPy whose private routine takes other arguments: its
            # public path (the same answer, with the wrapper's cost).
            if nfev or nit:
                raise
            return scipy_minimize()
        if task[0] == 3:  # the routine asks for f and g at x
            # ``(x == last_x).all()``: np.array_equal's test for arrays of
            # one shape, without its per-call checks.
            if last_x is None or not (x == last_x).all():
                last_x = x.copy()
                value, grad = value_and_gradient(x.copy())
                last = (float(value), np.asarray(grad, dtype=float).ravel())
                nfev += 1
            f, g = last
        elif task[0] == 1:  # a new iterate
            nit += 1
            if nit >= maxiter:
                task[:] = 5, 504  # stop: iteration limit
            elif nfev > maxfun:
                task[:] = 5, 502  # stop: evaluation limit
        else:
            break
    status = 0 if task[0] == 4 else 1 if nfev > maxfun or nit >= maxiter else 2
    return OptimizeResult(x=x, fun=f, nfev=nfev, nit=nit, status=status,
                          success=status == 0)
