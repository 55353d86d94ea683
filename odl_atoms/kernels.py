"""Compiled kernels of the atom projector and the Lennard-Jones energy.

The NumPy code in `odl_atoms.projection` and `odl_atoms.functionals` builds
arrays of every atom's detector windows and then gathers and scatters through
them; for the sizes the solvers meet (tens to thousands of atoms, evaluated
thousands of times) the cost is in the many temporaries and the Python calls,
not in the arithmetic. This module does the same arithmetic in loops compiled
with numba (``@njit(cache=True)``, no ``fastmath``, so results do not depend
on the compiler's reassociation):

- `Projector`: for one detector frame, atom width, window and mode, the 1D
  window profiles of every atom and angle, the forward projection, the
  Jacobian and its adjoint, the correlation and the squared norms, and
  `Projector.data_term`, which fuses profiles, projection, residual and the
  adjoint into one compiled call (value and gradient of
  ``0.5 ||R(x, w) - y||^2`` with respect to positions and weights);
- `lennard_jones`: the pair energy and its gradient of
  `odl_atoms.functionals.LennardJones` (smooth or shifted cut-off, inner
  core), by dense pair sums for few atoms and a cell list for many;
- `Projector.group_residuals`, `stack_grams_2d`, `lattice_problems` and
  `box_qp`: the lattice searches of `odl_atoms.solvers.starts` (the
  residuals of many site sets at once; the Gram matrices of many site
  sets; their occupation QPs gathered and solved);
- `addition_energies`: the pair energies an atom added at each point of the
  oracle's candidate grid would have (`odl_atoms.solvers.adcg.oracle`).

The arithmetic follows the NumPy reference (the same window rule, cell masses
from the normal tails as there) but is not a copy of it: the tails come from
Cody's rational approximations times the normal density, which the
derivatives need anyway, and on a uniform detector the density comes from a
recurrence along the window instead of an exponential per cell edge; sums run
in another order. Values and gradients agree with the reference to about
1e-13 relative to their largest entry (the tests ask for 1e-10), not bit for
bit.

Which path runs is `backend` (``'numba'`` when numba imports, else
``'numpy'``); the environment variable ``ODL_ATOMS_KERNELS=numpy`` or the
context manager `use_backend` select the NumPy reference, e.g. to compare the
two (the tests and ``benchmarks/speed.py`` do).
"""

import contextlib
import math
import os
import threading

import numpy as np

try:  # numba is a hard dependency; the fallback keeps a broken install usable
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

__all__ = ('AVAILABLE', 'backend', 'use_backend', 'Projector',
           'lennard_jones', 'box_qp', 'lattice_problems',
           'lattice_problems_profiles', 'site_linear', 'select_sites',
           'stack_grams_2d',
           'warm_up', 'addition_energies',
           'DENSE_PAIRS_MAX_ATOMS')

#: True if numba imports (the compiled kernels can run).
AVAILABLE = numba is not None

_BACKENDS = ('numba', 'numpy')


def _initial_backend():
    wanted = os.environ.get('ODL_ATOMS_KERNELS', '').strip().lower()
    if wanted == 'numpy' or not AVAILABLE:
        return 'numpy'
    return 'numba'


_backend = _initial_backend()


def backend():
    """Return the active backend: ``'numba'`` (compiled) or ``'numpy'``."""
    return _backend


@contextlib.contextmanager
def use_backend(name):
    """Run a block with the given backend (``'numba'`` or ``'numpy'``).

    Objects built inside the block (e.g. a `~odl_atoms.projection.Stencil`)
    keep the backend they were built with.

    Examples
    --------
    >>> with use_backend('numpy'):
    ...     backend()
    'numpy'
    """
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f'`name` must be one of {_BACKENDS}, got {name!r}')
    if name == 'numba' and not AVAILABLE:
        raise ValueError("the 'numba' backend needs numba: pip install numba")
    previous = _backend
    _backend = name
    try:
        yield
    finally:
        _backend = previous


def _njit(func=None, inline=False):
    """Compile ``func`` with numba (cached on disk), or leave it as Python.

    ``inline=True`` for the small scalar helpers of the inner loops
    (measured 20 % on the window loop). No helper writes into an array it
    is passed: numba made such stores several times slower than the
    arithmetic around them (8x on the Lennard-Jones pair loop).
    """
    if func is None:
        return lambda f: _njit(f, inline)
    if numba is None:  # pragma: no cover
        return func
    # error_model='numpy': division follows IEEE (inf/nan) as in NumPy, with
    # no Python-style ZeroDivisionError checks in the inner loops.
    return numba.njit(cache=True, nogil=True, fastmath=False,
                      error_model='numpy',
                      inline='always' if inline else 'never')(func)


# ---------------------------------------------------------------------------
# One atom's 1D window (the arithmetic of projection._profile_1d)

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT1_2 = math.sqrt(0.5)
_RSQRT_PI = 1.0 / math.sqrt(math.pi)

# W. J. Cody's rational Chebyshev approximations of erf and erfc (Math.
# Comp. 23, 631-637, 1969; the coefficients of his CALERF): erf(y) =
# y A(y^2) / B(y^2) for y <= 0.46875, erfc(y) = exp(-y^2) C(y) / D(y) up to
# 4 and exp(-y^2) / y (1/sqrt(pi) - y^-2 P(y^-2) / Q(y^-2)) above; relative
# error below 1e-16 on each interval. Here exp(-y^2) with y = |z| / sqrt(2)
# is the normal density exp(-z^2 / 2) the derivatives need anyway, so a cell
# edge costs one exponential (or less, see _fill_profiles) instead of an erfc
# and an exp: the profiles are most of the cost of an objective evaluation.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02,
          3.77485237685302021e02, 3.20937758913846947e03,
          1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02,
          1.28261652607737228e03, 2.84423683343917062e03)
_ERFC_C = (5.64188496988670089e-1, 8.88314979438837594e00,
           6.61191906371416295e01, 2.98635138197400131e02,
           8.81952221241769090e02, 1.71204761263407058e03,
           2.05107837782607147e03, 1.23033935479799725e03,
           2.15311535474403846e-8)
_ERFC_D = (1.57449261107098347e01, 1.17693950891312499e02,
           5.37181101862009858e02, 1.62138957456669019e03,
           3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)
_ERFC_P = (3.05326634961232344e-1, 3.60344899949804439e-1,
           1.25781726111229246e-1, 1.60837851487422766e-2,
           6.58749161529837803e-4, 1.63153871373020978e-2)
_ERFC_Q = (2.56852019228982242e00, 1.87295284992346047e00,
           5.27905102951428412e-1, 6.05183413124413191e-2,
           2.33520497626869185e-3)


@_njit(inline=True)
def _lower_tail(z, density):
    """``scipy.special.ndtr(-|z|)``, the normal mass beyond ``|z|``.

    ``density`` is ``exp(-z^2 / 2)``. The tail itself, not one minus the
    bulk, so that far cells keep their relative accuracy.
    """
    y = abs(z) * _SQRT1_2
    if y <= 0.46875:
        a, b = _ERF_A, _ERF_B
        q = y * y
        num = (((a[4] * q + a[0]) * q + a[1]) * q + a[2]) * q + a[3]
        den = (((q + b[0]) * q + b[1]) * q + b[2]) * q + b[3]
        return 0.5 - 0.5 * (y * num / den)
    if y <= 4.0:
        c, d = _ERFC_C, _ERFC_D
        num = ((((((((c[8] * y + c[0]) * y + c[1]) * y + c[2]) * y + c[3])
                  * y + c[4]) * y + c[5]) * y + c[6]) * y + c[7])
        den = (((((((y + d[0]) * y + d[1]) * y + d[2]) * y + d[3]) * y
                 + d[4]) * y + d[5]) * y + d[6]) * y + d[7]
        return 0.5 * density * (num / den)
    p, qq = _ERFC_P, _ERFC_Q
    q = 1.0 / (y * y)
    num = (((((p[5] * q + p[0]) * q + p[1]) * q + p[2]) * q + p[3]) * q
           + p[4])
    den = ((((q + qq[0]) * q + qq[1]) * q + qq[2]) * q + qq[3]) * q + qq[4]
    return 0.5 * density * ((_RSQRT_PI - q * num / den) / y)


@_njit(inline=True)
def _first_cell(x, edges, uniform):
    """``searchsorted(edges, x, side='right') - 1`` (may be -1 or n_cells)."""
    n_edges = edges.size
    if uniform and x == x:
        # Guess from the spacing, then correct against the actual edges: the
        # same answer as the binary search whatever the rounding of edges.
        h = (edges[n_edges - 1] - edges[0]) / (n_edges - 1)
        g = (x - edges[0]) / h
        if g < -1.0:
            k = -1
        elif g > n_edges:
            k = n_edges - 1
        else:
            k = int(math.floor(g))
            if k < -1:
                k = -1
            if k > n_edges - 1:
                k = n_edges - 1
        while k + 1 < n_edges and edges[k + 1] <= x:
            k += 1
        while k >= 0 and edges[k] > x:
            k -= 1
        return k
    lo, hi = 0, n_edges
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@_njit(inline=True)
def _centre(positions, i, axes, offsets, a, k):
    """Detector coordinate ``k`` of atom ``i`` at angle ``a``."""
    c = 0.0
    for j in range(positions.shape[1]):
        c += axes[a, k, j] * positions[i, j]
    return c + offsets[a, k]


@_njit
def _fill_profiles(positions, axes, offsets, k, edges, mids, inv_widths,
                   step, sigma, truncate, integrate, first, value, deriv):
    """Fill every atom's window profile along detector axis ``k``.

    ``value[i, a, t]`` and ``deriv[i, a, t]`` (``d value / d c``) of cell
    ``first[i, a] + t`` for atom ``i`` at angle ``a``, ``t < w``. Same window
    rule and formulas as `odl_atoms.projection._profile_1d` (divisions by
    the width and sigma as products with reciprocals: the same to rounding,
    and a division costs several multiplications). ``step`` is the cell
    width of a uniform detector (0 if not uniform).

    One function with no array-writing helpers: numba makes stores into an
    array passed to a helper several times slower than the arithmetic.
    """
    n_cells = mids.size
    w = value.shape[2]
    inv_sigma = 1.0 / sigma
    dscale = _INV_SQRT_2PI / sigma
    dz = step / sigma
    # The Gaussian exp(-z^2 / 2) at w (+1) equally spaced points z0 + t dz
    # by the recurrence g(t + 1) = g(t) r(t), r(t + 1) = r(t) exp(-dz^2),
    # with a first-order correction for the actual (rounded) point; one
    # exponential per point where the grid is not uniform or z is far out.
    shrink = math.exp(-dz * dz)
    points = edges if integrate else mids
    for i in range(positions.shape[0]):
        for a in range(axes.shape[0]):
            c = _centre(positions, i, axes, offsets, a, k)
            f = _first_cell(c - truncate * sigma, edges, step > 0)
            top = n_cells - w
            if top < 0:
                top = 0
            if f > top:
                f = top
            if f < 0:
                f = 0
            first[i, a] = f
            z = (points[f] - c) * inv_sigma
            recur = step > 0 and abs(z) < 30.0 and dz < 2.0
            gauss = math.exp(-0.5 * z * z)
            ratio = math.exp(-(z * dz + 0.5 * dz * dz)) if recur else 0.0
            nominal = z
            if integrate:
                z_lo = z
                d_lo = gauss
                t_lo = _lower_tail(z_lo, d_lo)
                for t in range(w):
                    raw = f + t
                    top_edge = raw + 1
                    if top_edge > n_cells:
                        top_edge = n_cells
                    z_hi = (edges[top_edge] - c) * inv_sigma
                    if recur:
                        gauss *= ratio
                        ratio *= shrink
                        nominal += dz
                        d_hi = gauss * (1.0 - nominal * (z_hi - nominal))
                    else:
                        d_hi = math.exp(-0.5 * z_hi * z_hi)
                    t_hi = _lower_tail(z_hi, d_hi)
                    if raw < n_cells:
                        inv_h = inv_widths[raw]
                        if z_hi <= 0:
                            mass = t_hi - t_lo
                        elif z_lo >= 0:
                            mass = t_lo - t_hi
                        else:
                            mass = 1.0 - t_lo - t_hi
                        value[i, a, t] = mass * inv_h
                        deriv[i, a, t] = (d_lo - d_hi) * (dscale * inv_h)
                    else:
                        value[i, a, t] = 0.0
                        deriv[i, a, t] = 0.0
                    z_lo = z_hi
                    t_lo = t_hi
                    d_lo = d_hi
            else:
                for t in range(w):
                    raw = f + t
                    if raw < n_cells:
                        zt = (mids[raw] - c) * inv_sigma
                        if t == 0:
                            g = gauss
                        elif recur:
                            gauss *= ratio
                            ratio *= shrink
                            nominal += dz
                            g = gauss * (1.0 - nominal * (zt - nominal))
                        else:
                            g = math.exp(-0.5 * (zt * zt))
                        v = g * dscale
                        value[i, a, t] = v
                        deriv[i, a, t] = v * (zt * inv_sigma)
                    else:
                        value[i, a, t] = 0.0
                        deriv[i, a, t] = 0.0


@_njit
def profiles(positions, axes, offsets, k, edges, mids, inv_widths, step,
             sigma, truncate, integrate, w):
    """First cells ``(n, m)``, values, derivatives ``(n, m, w)`` on axis k."""
    n, m = positions.shape[0], axes.shape[0]
    first = np.empty((n, m), np.int64)
    value = np.empty((n, m, w))
    deriv = np.empty((n, m, w))
    _fill_profiles(positions, axes, offsets, k, edges, mids, inv_widths,
                   step, sigma, truncate, integrate, first, value, deriv)
    return first, value, deriv


# ---------------------------------------------------------------------------
# Gathers and scatters through the profiles. ``fu, pu, du`` are the first
# cells, values and derivatives along u, ``fv, pv, dv`` along v (3D); the data
# are flat, C order (angle, u[, v]).

@_njit
def _project_2d(fu, pu, weights, nu, out):
    n, m, w = pu.shape
    for i in range(n):
        wi = weights[i]
        for a in range(m):
            base = a * nu + fu[i, a]
            for t in range(w):
                out[base + t] += pu[i, a, t] * wi


@_njit
def _project_3d(fu, pu, fv, pv, weights, nu, nv, out):
    n, m, wu = pu.shape
    wv = pv.shape[2]
    for i in range(n):
        wi = weights[i]
        for a in range(m):
            base = a * nu * nv + fv[i, a]
            for t in range(wu):
                row = base + (fu[i, a] + t) * nv
                c = pu[i, a, t] * wi
                for s in range(wv):
                    out[row + s] += c * pv[i, a, s]


@_njit
def project_2d(fu, pu, weights, nu, size):
    out = np.zeros(size)
    _project_2d(fu, pu, weights, nu, out)
    return out


@_njit
def project_3d(fu, pu, fv, pv, weights, nu, nv, size):
    out = np.zeros(size)
    _project_3d(fu, pu, fv, pv, weights, nu, nv, out)
    return out


@_njit
def adjoint_2d(fu, pu, du, weights, data, axes, nu, with_positions):
    """``(grad_x, grad_w)`` of ``<P(x, w), data>`` (no space weighting)."""
    n, m, w = pu.shape
    d = axes.shape[2]
    grad_x = np.zeros((n, d))
    grad_w = np.zeros(n)
    for i in range(n):
        total = 0.0
        for a in range(m):
            base = a * nu + fu[i, a]
            sv = 0.0
            sd = 0.0
            if with_positions:
                for t in range(w):
                    r = data[base + t]
                    sv += pu[i, a, t] * r
                    sd += du[i, a, t] * r
                gc = sd * weights[i]
                for j in range(d):
                    grad_x[i, j] += gc * axes[a, 0, j]
            else:
                for t in range(w):
                    sv += pu[i, a, t] * data[base + t]
            total += sv
        grad_w[i] = total
    return grad_x, grad_w


@_njit
def adjoint_3d(fu, pu, du, fv, pv, dv, weights, data, axes, nu, nv,
               with_positions):
    """``(grad_x, grad_w)`` of ``<P(x, w), data>`` (no space weighting)."""
    n, m, wu = pu.shape
    wv = pv.shape[2]
    d = axes.shape[2]
    grad_x = np.zeros((n, d))
    grad_w = np.zeros(n)
    for i in range(n):
        total = 0.0
        for a in range(m):
            base = a * nu * nv + fv[i, a]
            s_val = 0.0
            s_u = 0.0
            s_v = 0.0
            for t in range(wu):
                row = base + (fu[i, a] + t) * nv
                rv = 0.0
                rdv = 0.0
                if with_positions:
                    for s in range(wv):
                        r = data[row + s]
                        rv += pv[i, a, s] * r
                        rdv += dv[i, a, s] * r
                    s_u += du[i, a, t] * rv
                    s_v += pu[i, a, t] * rdv
                else:
                    for s in range(wv):
                        rv += pv[i, a, s] * data[row + s]
                s_val += pu[i, a, t] * rv
            total += s_val
            if with_positions:
                gu = s_u * weights[i]
                gv = s_v * weights[i]
                for j in range(d):
                    grad_x[i, j] += gu * axes[a, 0, j] + gv * axes[a, 1, j]
        grad_w[i] = total
    return grad_x, grad_w


@_njit
def jacobian_2d(fu, pu, du, weights, d_positions, d_weights, axes, nu, size):
    """``sum_i dw_i P_i + w_i <grad P_i, dx_i>`` as flat data."""
    n, m, w = pu.shape
    d = axes.shape[2]
    out = np.zeros(size)
    for i in range(n):
        for a in range(m):
            dc = 0.0
            for j in range(d):
                dc += axes[a, 0, j] * d_positions[i, j]
            cu = weights[i] * dc
            base = a * nu + fu[i, a]
            for t in range(w):
                out[base + t] += pu[i, a, t] * d_weights[i] + cu * du[i, a, t]
    return out


@_njit
def jacobian_3d(fu, pu, du, fv, pv, dv, weights, d_positions, d_weights, axes,
                nu, nv, size):
    """``sum_i dw_i P_i + w_i <grad P_i, dx_i>`` as flat data."""
    n, m, wu = pu.shape
    wv = pv.shape[2]
    d = axes.shape[2]
    out = np.zeros(size)
    for i in range(n):
        for a in range(m):
            dcu = 0.0
            dcv = 0.0
            for j in range(d):
                dcu += axes[a, 0, j] * d_positions[i, j]
                dcv += axes[a, 1, j] * d_positions[i, j]
            cu = weights[i] * dcu
            cv = weights[i] * dcv
            base = a * nu * nv + fv[i, a]
            for t in range(wu):
                row = base + (fu[i, a] + t) * nv
                for s in range(wv):
                    out[row + s] += (pu[i, a, t] * pv[i, a, s] * d_weights[i]
                                     + cu * du[i, a, t] * pv[i, a, s]
                                     + cv * pu[i, a, t] * dv[i, a, s])
    return out


@_njit
def self_inner_2d(pu):
    n, m, w = pu.shape
    out = np.zeros(n)
    for i in range(n):
        total = 0.0
        for a in range(m):
            for t in range(w):
                total += pu[i, a, t] * pu[i, a, t]
        out[i] = total
    return out


@_njit
def self_inner_3d(pu, pv):
    n, m, wu = pu.shape
    wv = pv.shape[2]
    out = np.zeros(n)
    for i in range(n):
        total = 0.0
        for a in range(m):
            su = 0.0
            sv = 0.0
            for t in range(wu):
                su += pu[i, a, t] * pu[i, a, t]
            for s in range(wv):
                sv += pv[i, a, s] * pv[i, a, s]
            total += su * sv
        out[i] = total
    return out


@_njit
def group_residuals_2d(fu, pu, starts, background, nu):
    """``background + sum of the unit atoms starts[g]:starts[g + 1]`` per
    group ``g``, ``(groups, size)``: each row summed as `project_2d` does
    (atoms in order, then the background added)."""
    n_groups = starts.size - 1
    size = background.size
    out = np.zeros((n_groups, size))
    ones = np.ones(pu.shape[0])
    for g in range(n_groups):
        lo, hi = starts[g], starts[g + 1]
        row = out[g]
        _project_2d(fu[lo:hi], pu[lo:hi], ones[lo:hi], nu, row)
        for q in range(size):
            row[q] = background[q] + row[q]
    return out


@_njit
def group_residuals_3d(fu, pu, fv, pv, starts, background, nu, nv):
    """As `group_residuals_2d` for 2D detectors."""
    n_groups = starts.size - 1
    size = background.size
    out = np.zeros((n_groups, size))
    ones = np.ones(pu.shape[0])
    for g in range(n_groups):
        lo, hi = starts[g], starts[g + 1]
        row = out[g]
        _project_3d(fu[lo:hi], pu[lo:hi], fv[lo:hi], pv[lo:hi], ones[lo:hi],
                    nu, nv, row)
        for q in range(size):
            row[q] = background[q] + row[q]
    return out


# ---------------------------------------------------------------------------
# Box-constrained quadratic programmes (the lattice occupations)

@_njit
def stack_grams_2d(fu, pu, rows, starts, n):
    """Gram matrices ``G^T G`` of unit atoms on 1D detectors, per group.

    Group ``g`` holds the atoms ``rows[starts[g]:starts[g + 1]]`` (rows of
    the profiles ``fu, pu``); its Gram matrix fills the top left of
    ``out[g]`` ``(groups, n, n)``, zero elsewhere. Two atoms' windows at
    one angle overlap on at most ``w`` cells: only those are summed (cell
    by cell, angle by angle), not the whole detector.
    """
    n_groups = starts.size - 1
    m, w = pu.shape[1], pu.shape[2]
    out = np.zeros((n_groups, n, n))
    for g in range(n_groups):
        lo = starts[g]
        count = starts[g + 1] - lo
        for a in range(count):
            i = rows[lo + a]
            for b in range(a, count):
                j = rows[lo + b]
                total = 0.0
                for angle in range(m):
                    delta = fu[j, angle] - fu[i, angle]
                    if delta >= w or delta <= -w:
                        continue
                    if delta >= 0:
                        for t in range(w - delta):
                            total += pu[i, angle, t + delta] * pu[j, angle, t]
                    else:
                        for t in range(w + delta):
                            total += pu[i, angle, t] * pu[j, angle, t - delta]
                out[g, a, b] = total
                out[g, b, a] = total
    return out


@_njit
def _gather_gram(gram, lattice, order, filled, l, hessian):
    """Row ``l`` of `lattice_problems`' Hessians: the Gram matrix of the
    filled sites ``order[l]`` of stacked lattice ``lattice``."""
    s = order.shape[1]
    for a in range(s):
        if not filled[l, a]:
            continue
        row = order[l, a]
        for b in range(s):
            if filled[l, b]:
                hessian[l, a, b] = gram[lattice, row, order[l, b]]


@_njit
def lattice_problems(gram, index, values, lattices, order, filled,
                     background):
    """The occupation QPs of selected sites of stacked lattices.

    For lattice ``lattices[l]`` of a stack (``gram (m, n, n)``, windows
    ``index`` and ``values (m, n, K)``) and its sites ``order[l]`` (real
    where ``filled[l]``, padding after): the Gram matrix of those sites
    ``(s, s)`` and ``linear = -G^T background`` ``(s,)``, zero at padding.
    Returns ``(hessian (l, s, s), linear (l, s))``.
    """
    count, s = order.shape
    k_size = index.shape[2]
    hessian = np.zeros((count, s, s))
    linear = np.zeros((count, s))
    for l in range(count):
        lattice = lattices[l]
        for a in range(s):
            if not filled[l, a]:
                continue
            row = order[l, a]
            total = 0.0
            for k in range(k_size):
                total += values[lattice, row, k] * background[
                    index[lattice, row, k]]
            linear[l, a] = -total
        _gather_gram(gram, lattice, order, filled, l, hessian)
    return hessian, linear


@_njit(inline=True)
def _profile_correlation(first, profile, g, nu, background):
    """``sum_t profile[g] * background`` over row ``g``'s window cells,
    angle by angle (the order of `lattice_problems`' flat windows)."""
    angles, width = profile.shape[1], profile.shape[2]
    total = 0.0
    for angle in range(angles):
        base = angle * nu + first[g, angle]
        for t in range(width):
            total += profile[g, angle, t] * background[base + t]
    return total


@_njit
def site_linear(site, valid, first, profile, nu, background):
    """``-G^T background`` of every valid site of a stack ``(m, n)`` (zero
    elsewhere), with the windows as in `lattice_problems_profiles`: the
    linear terms of every selection of the stack's sites at once."""
    m, n = site.shape
    out = np.zeros((m, n))
    for k in range(m):
        for i in range(n):
            if valid[k, i]:
                out[k, i] = -_profile_correlation(first, profile, site[k, i],
                                                  nu, background)
    return out


@_njit
def lattice_problems_profiles(gram, site, first, profile, nu, lattices,
                              order, filled, background, linear_all):
    """`lattice_problems` with the windows as 1D detector profiles.

    Site ``order[l, a]`` of stacked lattice ``lattices[l]`` is row
    ``site[lattices[l], order[l, a]]`` of the profiles ``first (N,
    angles)`` (first cells) and ``profile (N, angles, w)`` (values) of a
    sinogram of ``nu`` cells per angle, shared by every lattice of the
    stack: the window entries `lattice_problems` reads through ``index``
    and ``values``, read where they lie (contiguous cells), summed in the
    same order. ``linear_all``: the stack's `site_linear` for this
    ``background``, if computed (else an empty array). Returns ``(hessian
    (l, s, s), linear (l, s))``.
    """
    count, s = order.shape
    hessian = np.zeros((count, s, s))
    linear = np.zeros((count, s))
    known = linear_all.shape[0] > 0
    for l in range(count):
        lattice = lattices[l]
        for a in range(s):
            if not filled[l, a]:
                continue
            if known:
                linear[l, a] = linear_all[lattice, order[l, a]]
            else:
                linear[l, a] = -_profile_correlation(
                    first, profile, site[lattice, order[l, a]], nu,
                    background)
        _gather_gram(gram, lattice, order, filled, l, hessian)
    return hessian, linear


@_njit
def select_sites(points, valid, lo, hi, extra):
    """The sites of stacked lattices in a region, packed to the front.

    Site ``(k, i)`` is kept if ``valid[k, i]``, inside ``[lo, hi)`` (half
    open, axis by axis) and ``extra[k, i]``. Returns ``(lattices, order,
    filled)`` as `odl_atoms.solvers.starts._LatticeStack.select`: the
    lattices with a kept site, per lattice the kept sites' positions in
    their order and then the others in theirs (what a stable argsort of
    ``~keep`` gives), cut to the most kept sites of any lattice, and which
    entries are kept.
    """
    m, n, d = points.shape
    keep = np.zeros((m, n), np.bool_)
    counts = np.zeros(m, np.int64)
    for k in range(m):
        for i in range(n):
            if not (valid[k, i] and extra[k, i]):
                continue
            inside = True
            for c in range(d):
                x = points[k, i, c]
                if not (x >= lo[c] and x < hi[c]):
                    inside = False
                    break
            if inside:
                keep[k, i] = True
                counts[k] += 1
    size = 0
    lattices_count = 0
    for k in range(m):
        if counts[k] > 0:
            lattices_count += 1
            size = max(size, counts[k])
    lattices = np.empty(lattices_count, np.int64)
    order = np.empty((lattices_count, size), np.int64)
    filled = np.zeros((lattices_count, size), np.bool_)
    row = 0
    for k in range(m):
        if counts[k] == 0:
            continue
        lattices[row] = k
        col = 0
        for i in range(n):
            if keep[k, i]:
                order[row, col] = i
                filled[row, col] = True
                col += 1
        for i in range(n):
            if col >= size:
                break
            if not keep[k, i]:
                order[row, col] = i
                col += 1
        row += 1
    return lattices, order, filled


@_njit
def _box_qp_group(columns, linear, lipschitz, sizes, w, members, n_iter,
                  tol, bound, margin):
    """FISTA on the problems ``members`` together, in place on ``w``, until
    none of their entries moves by ``tol`` or more (see `box_qp`).

    ``columns[j, q]`` is column ``q`` of problem ``j``'s Hessian: the
    gradient is a sum of columns over the nonzero entries of the iterate
    (the empty sites of a lattice stay at 0: most of them), a contiguous
    loop the compiler vectorises without reordering any sum. Entries from
    ``sizes[j]`` on are padding (zero rows and columns, zero ``linear``):
    they stay 0 and are skipped.

    Returns False, leaving ``w`` half-solved, as soon as every problem of
    the group has shown a lower bound on its minimum over the box above
    ``bound + margin`` (``bound`` infinite: never), else True. The bound
    at the extrapolated point ``z`` with gradient ``g = H z - b``: the
    objective is convex, so its minimum is at least ``f(z) + min_v g^T (v -
    z)`` over the box, which is ``-z^T (g + b) / 2 + sum_i min(g_i, 0)``.
    """
    n = columns.shape[1]
    p = members.size
    z = np.empty((p, n))
    new = np.empty((p, n))
    grad = np.empty(n)
    above = np.zeros(p, np.bool_)
    count = 0  # problems shown to be above the bound
    judge = bound < np.inf
    for k in range(p):
        for i in range(n):
            z[k, i] = w[members[k], i]
    t = 1.0
    for _ in range(n_iter):
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        momentum = (t - 1.0) / t_new
        largest = 0.0
        for k in range(p):
            j = members[k]
            size = sizes[j]
            for i in range(size):
                grad[i] = -linear[j, i]
            for q in range(size):
                zq = z[k, q]
                if zq != 0.0:
                    for i in range(size):
                        grad[i] += columns[j, q, i] * zq
            for i in range(size, n):
                grad[i] = 0.0
            if judge and not above[k]:
                lower = 0.0
                for i in range(size):
                    lower += (min(grad[i], 0.0)
                              - 0.5 * z[k, i] * (grad[i] + linear[j, i]))
                if lower > bound + margin:
                    above[k] = True
                    count += 1
            lip = lipschitz[j]
            for i in range(n):
                v = z[k, i] - grad[i] / lip
                if v < 0.0:
                    v = 0.0
                elif v > 1.0:
                    v = 1.0
                new[k, i] = v
        if count == p:
            return False
        for k in range(p):
            j = members[k]
            for i in range(n):
                step = new[k, i] - w[j, i]
                if abs(step) > largest:
                    largest = abs(step)
                z[k, i] = new[k, i] + momentum * step
                w[j, i] = new[k, i]
        t = t_new
        if largest < tol:
            break
    return True


@_njit
def _rounded_value(columns, linear, w, j, size):
    """``0.5 o^T H o - b^T o`` of problem ``j`` at ``o = (w_j > 1/2)``."""
    total = 0.0
    for q in range(size):
        if w[j, q] > 0.5:
            total -= linear[j, q]
            for i in range(size):
                if w[j, i] > 0.5:
                    total += 0.5 * columns[j, q, i]
    return total


@_njit
def _box_qp_groups(columns, linear, lipschitz, sizes, w, order, starts,
                   n_iter, tol, prune, bound, margin, solved):
    """The groups of `box_qp` one after another; with ``prune``, a group
    all of whose problems are shown to lie above ``bound`` (lowered to
    each solved group's lowest rounded value as they come) is left
    unsolved (``solved`` False)."""
    groups = starts.size - 1
    sequence = np.arange(groups)
    if not prune:
        bound = np.inf
    elif groups > 1:
        # Most promising groups first (lowest rounded first iterate): the
        # bound their answers set lets the others stop early.
        first = np.full(groups, np.inf)
        for g in range(groups):
            for m in range(starts[g], starts[g + 1]):
                j = order[m]
                first[g] = min(first[g], _rounded_value(columns, linear, w,
                                                        j, sizes[j]))
        sequence = np.argsort(first, kind='mergesort')
    for g in sequence:
        members = order[starts[g]:starts[g + 1]]
        if not _box_qp_group(columns, linear, lipschitz, sizes, w, members,
                             n_iter, tol, bound, margin):
            for j in members:
                solved[j] = False
        elif prune:
            for j in members:
                bound = min(bound, _rounded_value(columns, linear, w, j,
                                                  sizes[j]))


#: Relative slack of `box_qp`'s ``bound``: a problem is dropped only if
#: its lower bound exceeds the bound by this times the magnitude of the
#: numbers compared (``|scale| + |bound|`` and the largest ``sum |b| +
#: sum |H| / 2`` of the problems), far above the rounding of the lower
#: bounds, of the rounded values and of the misfits the caller compares
#: (1e-13 of that magnitude for a few hundred terms).
BOUND_SLACK = 1e-9


def box_qp(hessian, linear, n_iter=200, tol=1e-4, groups=None, bound=None,
           scale=0.0, symmetric=False):
    """Minimise ``0.5 w^T H w - b^T w`` over ``0 <= w <= 1``, compiled.

    The iteration of the NumPy reference
    `odl_atoms.solvers.starts._box_qp` (accelerated projected gradient
    from the clipped diagonal solution, step ``1 / L`` with ``L`` the
    largest absolute row sum of ``H``; the problems of a group stop
    together once none of their occupations moves by ``tol`` or more,
    after at most ``n_iter`` iterations), one loop over the entries
    instead of batched array operations: the same iterates to rounding.

    With ``bound``, only the lowest rounded answer matters (a lattice
    search's): a group is dropped, unsolved, as soon as every one of its
    problems is shown to have its minimum over the box (so also the
    objective at any rounding of its answer) above ``bound`` or above the
    lowest objective at a rounded answer (``w > 1/2``) of a group solved
    before it, by `BOUND_SLACK` of the magnitude of the numbers compared.
    The groups are solved most promising first (lowest objective at their
    rounded first iterate). Every group that is solved is solved as without
    ``bound``: the same iterates.

    Parameters
    ----------
    hessian : (p, n, n) array
        Positive semi-definite matrices (the lower bounds assume it).
    linear : (p, n) array
    n_iter : int, optional
    tol : float, optional
    groups : (p,) array, optional
        A label per problem; default one group of all.
    bound : float, optional
        The objective (``inf`` for none yet) a problem must be able to
        reach to be solved; default: solve every problem.
    scale : float, optional
        The magnitude of what the caller adds to the objective before
        comparing (a constant), for the slack.
    symmetric : bool, optional
        The Hessians are exactly symmetric (as `stack_grams_2d` makes
        them): each is its own matrix of columns, no transposed copy is
        made (the same iterates). Default False: Gram matrices from a
        matrix product are symmetric only to rounding.

    Returns
    -------
    w : (p, n) array
    solved : (p,) bool array
        Only with ``bound``: which problems were solved (the others' rows
        of ``w`` are unfinished).

    Examples
    --------
    >>> h = np.array([[[2.0, 1.0], [1.0, 2.0]]])
    >>> box_qp(h, np.array([[3.0, -1.0]])).round(6).tolist()
    [[1.0, 0.0]]
    """
    hessian = np.ascontiguousarray(hessian, dtype=float)
    linear = np.ascontiguousarray(linear, dtype=float)
    if hessian.ndim != 3 or linear.shape != hessian.shape[:2] or \
            hessian.shape[1] != hessian.shape[2]:
        raise ValueError(f'`hessian` must be (p, n, n) and `linear` (p, n), '
                         f'got {hessian.shape} and {linear.shape}')
    columns, lipschitz, sizes, w, magnitude = _box_qp_prepare(
        hessian, linear, not symmetric)
    if groups is None:
        order = np.arange(len(w))
        starts = np.array([0, len(w)])
    else:
        labels = np.unique(groups, return_inverse=True)[1].ravel()
        order = np.argsort(labels, kind='stable')
        starts = np.searchsorted(labels[order],
                                 np.arange(labels.max(initial=-1) + 2))
    solved = np.ones(len(w), bool)
    if len(w):
        margin = BOUND_SLACK * (abs(float(scale)) + magnitude.max())
        if bound is not None and np.isfinite(bound):
            margin += BOUND_SLACK * abs(float(bound))
        _box_qp_groups(columns, linear, lipschitz, sizes, w,
                       order.astype(np.int64), starts.astype(np.int64),
                       int(n_iter), float(tol), bound is not None,
                       np.inf if bound is None else float(bound),
                       margin, solved)
    return w if bound is None else (w, solved)


@_njit
def _box_qp_prepare(hessian, linear, transpose):
    """What the iteration of `box_qp` needs, in one pass: the columns of
    each Hessian as rows (with ``transpose``: a Gram matrix may be
    symmetric only to rounding; else the Hessians themselves), the step
    bound ``L`` (largest absolute row sum, 1 if 0), each problem's size
    (up to its last nonzero row or linear term), the first iterate (the
    clipped diagonal solution) and the magnitude of each problem's terms,
    ``sum |b| + sum |H| / 2``."""
    p, n = linear.shape
    columns = np.empty((p, n, n)) if transpose else hessian
    lipschitz = np.empty(p)
    sizes = np.zeros(p, np.int64)
    w = np.empty((p, n))
    magnitude = np.zeros(p)
    for j in range(p):
        largest = 0.0
        for i in range(n):
            total = 0.0
            for q in range(n):
                h = hessian[j, i, q]
                if transpose:
                    columns[j, q, i] = h
                total += abs(h)
            if total > largest:
                largest = total
            if total > 0 or linear[j, i] != 0:
                sizes[j] = i + 1
            magnitude[j] += abs(linear[j, i]) + 0.5 * total
            diagonal = hessian[j, i, i]
            v = linear[j, i] / (diagonal if diagonal > 0 else 1.0)
            w[j, i] = min(max(v, 0.0), 1.0)
        lipschitz[j] = largest if largest > 0 else 1.0
    return columns, lipschitz, sizes, w, magnitude


# ---------------------------------------------------------------------------
# Fused data term: profiles, projection, residual, adjoint in one call.

# The fused data term fills scratch arrays the caller keeps between calls:
# fresh arrays of a few MB (10^4 atoms) come from the operating system page by
# page, and those page faults cost as much as filling them (measured: 40 % of
# the profiles of 10^4 atoms in 2D).

@_njit
def data_term_2d(positions, weights, target, axes, offsets, edges, mids,
                 inv_widths, step, sigma, truncate, integrate, fu, pu, du, r):
    """``0.5 ||r||^2`` and its gradients ``(n, d)``, ``(n,)``.

    Fills ``r = P(x, w) - target`` and the profiles ``fu, pu, du`` (scratch
    of ``n`` rows).
    """
    nu = mids.size
    _fill_profiles(positions, axes, offsets, 0, edges, mids, inv_widths,
                   step, sigma, truncate, integrate, fu, pu, du)
    for q in range(target.size):
        r[q] = -target[q]
    _project_2d(fu, pu, weights, nu, r)
    half = 0.0
    for q in range(r.size):
        half += r[q] * r[q]
    half *= 0.5
    grad_x, grad_w = adjoint_2d(fu, pu, du, weights, r, axes, nu, True)
    return half, grad_x, grad_w


@_njit
def data_term_3d(positions, weights, target, axes, offsets, edges_u, mids_u,
                 inv_widths_u, step_u, edges_v, mids_v, inv_widths_v, step_v,
                 sigma, truncate, integrate, fu, pu, du, fv, pv, dv, r):
    """``0.5 ||r||^2`` and its gradients ``(n, d)``, ``(n,)``.

    Fills ``r = P(x, w) - target`` and the profiles ``fu, pu, du`` and
    ``fv, pv, dv`` (scratch of ``n`` rows).
    """
    nu, nv = mids_u.size, mids_v.size
    _fill_profiles(positions, axes, offsets, 0, edges_u, mids_u,
                   inv_widths_u, step_u, sigma, truncate, integrate, fu, pu,
                   du)
    _fill_profiles(positions, axes, offsets, 1, edges_v, mids_v,
                   inv_widths_v, step_v, sigma, truncate, integrate, fv, pv,
                   dv)
    for q in range(target.size):
        r[q] = -target[q]
    _project_3d(fu, pu, fv, pv, weights, nu, nv, r)
    half = 0.0
    for q in range(r.size):
        half += r[q] * r[q]
    half *= 0.5
    grad_x, grad_w = adjoint_3d(fu, pu, du, fv, pv, dv, weights, r, axes, nu,
                                nv, True)
    return half, grad_x, grad_w


# ---------------------------------------------------------------------------
# The projector of one detector frame


def _uniform_step(edges):
    """The cell width if all cells are equal (to 1e-9), else 0."""
    steps = np.diff(edges)
    if np.allclose(steps, steps[0], rtol=1e-9, atol=0):
        return float((edges[-1] - edges[0]) / (edges.size - 1))
    return 0.0


class _Axis:

    """One detector axis as the kernels read it."""

    def __init__(self, edges, mids, sigma, truncate):
        self.edges = np.ascontiguousarray(edges, dtype=float)
        self.mids = np.ascontiguousarray(mids, dtype=float)
        self.widths = np.diff(self.edges)
        self.inv_widths = 1.0 / self.widths
        self.step = _uniform_step(self.edges)
        n_cells = self.mids.size
        # The window rule of projection._profile_1d.
        self.w = int(min(n_cells, np.ceil(2 * truncate * sigma
                                          / self.widths.min()) + 2))

    def args(self):
        return self.edges, self.mids, self.inv_widths, self.step


class Projector:

    """Compiled projection of Gaussian atoms for one detector frame.

    Parameters
    ----------
    frame : `odl_atoms.geometry.DetectorFrame`
    sigma : float
        Gaussian standard deviation of an atom.
    truncate : float
        Window half-width in units of ``sigma``.
    mode : {'integrate', 'sample'}

    Notes
    -----
    Build it with `Projector.of`, which keeps the projectors of the last few
    frames (packing a frame's arrays costs more than a small evaluation).

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms.geometry import DetectorFrame
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3),
    ...     odl.uniform_partition(-8, 8, 64))
    >>> proj = Projector.of(DetectorFrame.from_geometry(geometry), sigma=0.4)
    >>> data = proj.project(np.array([[0.0, 0.0]]), np.array([2.0]))
    >>> round(float(data.sum()) * 16 / 64 / 3, 6)  # mass per angle
    2.0
    """

    _recent = []
    _keep = 8

    def __init__(self, frame, sigma, truncate=6.0, mode='integrate'):
        if mode not in ('integrate', 'sample'):
            raise ValueError(
                f"`mode` must be 'integrate' or 'sample', got {mode!r}")
        self.frame = frame
        self.sigma = float(sigma)
        self.truncate = float(truncate)
        self.mode = mode
        self.integrate = mode == 'integrate'
        self.axes = np.ascontiguousarray(frame.axes, dtype=float)
        self.offsets = np.ascontiguousarray(frame.offsets, dtype=float)
        self.shape = tuple(int(s) for s in frame.shape)
        self.size = int(np.prod(self.shape))
        self.k = len(self.shape) - 1
        self.detector = [_Axis(frame.edges[i], frame.centres[i], self.sigma,
                               self.truncate) for i in range(self.k)]
        self._local = threading.local()  # scratch of data_term

    @classmethod
    def of(cls, frame, sigma, truncate=6.0, mode='integrate'):
        """Return the (recently used) projector of these parameters."""
        sigma, truncate = float(sigma), float(truncate)
        for proj in cls._recent:
            if (proj.frame is frame and proj.sigma == sigma
                    and proj.truncate == truncate and proj.mode == mode):
                return proj
        proj = cls(frame, sigma, truncate, mode)
        cls._recent.insert(0, proj)
        del cls._recent[cls._keep:]
        return proj

    def __repr__(self):
        args = ['frame', f'sigma={self.sigma!r}']
        if self.truncate != 6.0:
            args.append(f'truncate={self.truncate!r}')
        if self.mode != 'integrate':
            args.append(f'mode={self.mode!r}')
        return f'{type(self).__name__}({", ".join(args)})'

    @property
    def windows(self):
        """Window length (cells) along each detector axis."""
        return tuple(ax.w for ax in self.detector)

    def _positions(self, positions):
        positions = np.ascontiguousarray(positions, dtype=float)
        d = self.axes.shape[2]
        if positions.ndim != 2 or positions.shape[1] != d:
            raise ValueError(f'positions must have shape (n, {d}), got '
                             f'{positions.shape}')
        return positions

    @staticmethod
    def _per_atom(values, n, name):
        values = np.ascontiguousarray(values, dtype=float)
        if values.shape != (n,):
            raise ValueError(f'`{name}` must have shape ({n},), got '
                             f'{values.shape}')
        return values

    def profiles(self, positions):
        """Per detector axis: first cells ``(n, m)``, values, derivatives."""
        positions = self._positions(positions)
        return [profiles(positions, self.axes, self.offsets, k,
                         *ax.args(), self.sigma, self.truncate,
                         self.integrate, ax.w)
                for k, ax in enumerate(self.detector)]

    # --- Linear maps on given profiles

    def project_profiles(self, prof, weights):
        """Return ``sum_i w_i P_i`` (flat) from `profiles`."""
        weights = np.ascontiguousarray(weights, dtype=float)
        if self.k == 1:
            (fu, pu, _), = prof
            return project_2d(fu, pu, weights, self.shape[1], self.size)
        (fu, pu, _), (fv, pv, _) = prof
        return project_3d(fu, pu, fv, pv, weights, self.shape[1],
                          self.shape[2], self.size)

    def adjoint_profiles(self, prof, weights, data, with_positions=True):
        """``(grad_x, grad_w)`` of ``<P(x, w), data>`` from `profiles`."""
        weights = np.ascontiguousarray(weights, dtype=float)
        data = np.ascontiguousarray(data, dtype=float).ravel()
        if self.k == 1:
            (fu, pu, du), = prof
            return adjoint_2d(fu, pu, du, weights, data, self.axes,
                              self.shape[1], with_positions)
        (fu, pu, du), (fv, pv, dv) = prof
        return adjoint_3d(fu, pu, du, fv, pv, dv, weights, data, self.axes,
                          self.shape[1], self.shape[2], with_positions)

    def jacobian_profiles(self, prof, weights, d_positions, d_weights):
        """Directional derivative along ``(d_positions, d_weights)``, flat."""
        weights = np.ascontiguousarray(weights, dtype=float)
        d_positions = np.ascontiguousarray(d_positions, dtype=float)
        d_weights = np.ascontiguousarray(d_weights, dtype=float)
        if self.k == 1:
            (fu, pu, du), = prof
            return jacobian_2d(fu, pu, du, weights, d_positions, d_weights,
                               self.axes, self.shape[1], self.size)
        (fu, pu, du), (fv, pv, dv) = prof
        return jacobian_3d(fu, pu, du, fv, pv, dv, weights, d_positions,
                           d_weights, self.axes, self.shape[1], self.shape[2],
                           self.size)

    def self_inner_profiles(self, prof):
        """``||P_i||^2`` (unweighted) of every unit atom."""
        if self.k == 1:
            return self_inner_2d(prof[0][1])
        return self_inner_3d(prof[0][1], prof[1][1])

    def group_residuals(self, prof, starts, background):
        """``background + P(sites of group g)`` for every group, ``(g,
        size)``: unit weights, the atoms of group ``g`` the rows
        ``starts[g]:starts[g + 1]`` of `profiles`; each row equals
        ``background + project_profiles`` of its atoms alone."""
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        background = np.ascontiguousarray(background, dtype=float).ravel()
        if background.size != self.size:
            raise ValueError(f'`background` must have {self.size} values, '
                             f'got {background.size}')
        if self.k == 1:
            (fu, pu, _), = prof
            return group_residuals_2d(fu, pu, starts, background,
                                      self.shape[1])
        (fu, pu, _), (fv, pv, _) = prof
        return group_residuals_3d(fu, pu, fv, pv, starts, background,
                                  self.shape[1], self.shape[2])

    # --- Whole evaluations from positions

    def project(self, positions, weights):
        """Return ``sum_i w_i P_i`` as a flat array of the data size."""
        positions = self._positions(positions)
        weights = self._per_atom(weights, positions.shape[0], 'weights')
        return self.project_profiles(self.profiles(positions), weights)

    def _scratch(self, n):
        """Profile arrays for ``n`` atoms and a residual, reused per thread.

        Grown (doubling) when more atoms come; views of ``n`` rows.
        """
        local = self._local
        views = getattr(local, 'views', None)
        if views is not None and views[0] == n:
            # Local moves evaluate one atom count many times in a row.
            return views[1], local.residual
        buffers = getattr(local, 'buffers', None)
        if buffers is None or buffers[0][1].shape[0] < n:
            rows = max(n, 2 * buffers[0][1].shape[0] if buffers else 0, 16)
            m = self.shape[0]
            buffers = [(np.empty((rows, m), np.int64), np.empty((rows, m, w)),
                        np.empty((rows, m, w))) for w in self.windows]
            local.buffers = buffers
            local.residual = np.empty(self.size)
        local.views = (n, [tuple(a[:n] for a in axis) for axis in buffers])
        return local.views[1], local.residual

    def data_term(self, positions, weights, target, residual=False):
        """Return ``0.5 ||P(x, w) - target||^2`` and its gradients.

        Parameters
        ----------
        positions : (n, d) array
        weights : (n,) array
        target : data array (flat or not)
        residual : bool, optional
            If True, also return ``r = P(x, w) - target`` (flat).

        Returns
        -------
        half_sq : float
            ``0.5 ||r||^2``, unweighted.
        grad_x : (n, d) array
        grad_w : (n,) array
        residual : flat array ``r``, only with ``residual=True``
        """
        positions = self._positions(positions)
        weights = self._per_atom(weights, positions.shape[0], 'weights')
        target = np.ascontiguousarray(target, dtype=float).ravel()
        if target.size != self.size:
            raise ValueError(f'`target` must have {self.size} values, got '
                             f'{target.size}')
        prof, r = self._scratch(positions.shape[0])
        if self.k == 1:
            ax, = self.detector
            out = data_term_2d(positions, weights, target, self.axes,
                               self.offsets, *ax.args(), self.sigma,
                               self.truncate, self.integrate, *prof[0], r)
        else:
            au, av = self.detector
            out = data_term_3d(positions, weights, target, self.axes,
                               self.offsets, *au.args(), *av.args(),
                               self.sigma, self.truncate, self.integrate,
                               *prof[0], *prof[1], r)
        return out + (r.copy(),) if residual else out


# ---------------------------------------------------------------------------
# Lennard-Jones

#: Up to this many atoms the pair sums run over all pairs; above it over a
#: cell list (on jittered lattices the two cost the same at about 80 atoms
#: in 2D and 250 in 3D).
DENSE_PAIRS_MAX_ATOMS = 100


@_njit(inline=True)
def _lj_pair(r2, par):
    """Pair energy ``phi`` and ``phi'(r) / r`` (as LennardJones._pair_terms).

    ``par``: epsilon, sigma^2, cutoff^2, smooth (0/1), onset^2, shift,
    core radius^2, core A, core B.
    """
    if r2 >= par[2]:
        return 0.0, 0.0
    if r2 < par[6]:
        return par[7] - par[8] * r2, -2.0 * par[8]
    eps = par[0]
    q = par[1] / r2
    c6 = q * q * q
    c12 = c6 * c6
    energy = 4 * eps * (c12 - c6)
    deriv = -24 * eps * (2 * c12 - c6) / r2
    if par[3] != 0.0:
        rc2 = par[2]
        ro2 = par[4]
        if r2 > ro2:
            denom = (rc2 - ro2) * (rc2 - ro2) * (rc2 - ro2)
            fc = (rc2 - r2) * (rc2 - r2) * (rc2 + 2 * r2 - 3 * ro2) / denom
            dfc = 6 * (rc2 - r2) * (ro2 - r2) / denom
            deriv = fc * deriv + 2 * dfc * energy
            energy = fc * energy
    else:
        energy = energy - par[5]
    return energy, deriv


@_njit
def lj_pair_terms(r2, par):
    """Pair energies ``phi`` and ``phi'(r) / r`` for squared distances."""
    energy = np.empty(r2.size)
    deriv = np.empty(r2.size)
    for q in range(r2.size):
        energy[q], deriv[q] = _lj_pair(r2[q], par)
    return energy, deriv


@_njit
def lj_dense(pos, par, with_gradient):
    """Energy and gradient by a sum over all pairs."""
    n, d = pos.shape
    grad = np.zeros(pos.shape)
    energy = 0.0
    rc2 = par[2]
    for i in range(n):
        for j in range(i + 1, n):
            r2 = 0.0
            for k in range(d):
                diff = pos[i, k] - pos[j, k]
                r2 += diff * diff
            if r2 >= rc2:
                continue
            e, de = _lj_pair(r2, par)
            energy += e
            if with_gradient:
                for k in range(d):
                    g = de * (pos[i, k] - pos[j, k])
                    grad[i, k] += g
                    grad[j, k] -= g
    return energy, grad


@_njit(inline=True)
def _block_cell(coord, b, dims):
    """Linear index of cell ``b`` (0 .. 3^d - 1) of the ``3^d`` block
    around cell ``coord`` of a `_cell_list` grid of shape ``dims``, or -1
    if it lies outside the grid."""
    rest = b
    lin = 0
    for k in range(coord.size):
        ck = coord[k] + rest % 3 - 1
        rest //= 3
        if ck < 0 or ck >= dims[k]:
            return -1
        lin = lin * dims[k] + ck
    return lin


@_njit
def _cell_list(pos, rc2):
    """Bin atoms in cells at least a cut-off (``sqrt(rc2)``) wide.

    Returns ``(lo, cell, dims, start, order, sorted_pos)``: the cells'
    corner and side, the grid's shape, the first atom of each (linearly
    numbered) cell in ``sorted_pos`` (``start[c]:start[c + 1]``), the atoms'
    indices in that order and their positions copied in it, so that each
    cell's atoms are contiguous in memory. Neighbours within the cut-off
    are then in the ``3^d`` block of cells around an atom.
    """
    n, d = pos.shape
    lo = np.empty(d)
    hi = np.empty(d)
    for k in range(d):
        lo[k] = pos[0, k]
        hi[k] = pos[0, k]
    for i in range(n):
        for k in range(d):
            lo[k] = min(lo[k], pos[i, k])
            hi[k] = max(hi[k], pos[i, k])
    # Widened (doubling) until there are at most ~8 cells per atom, so that
    # far-flung atoms cannot make the grid huge.
    cell = math.sqrt(rc2)
    cap = max(8.0 * n, 64.0)
    while True:
        total = 1.0
        for k in range(d):
            total *= math.floor((hi[k] - lo[k]) / cell) + 1.0
        if total <= cap:
            break
        cell *= 2.0
    dims = np.empty(d, np.int64)
    for k in range(d):
        dims[k] = int(math.floor((hi[k] - lo[k]) / cell)) + 1
    n_cells = 1
    for k in range(d):
        n_cells *= dims[k]
    key = np.empty(n, np.int64)
    for i in range(n):
        lin = 0
        for k in range(d):
            ck = int(math.floor((pos[i, k] - lo[k]) / cell))
            if ck >= dims[k]:
                ck = dims[k] - 1
            lin = lin * dims[k] + ck
        key[i] = lin
    # Counting sort of the atoms by cell.
    start = np.zeros(n_cells + 1, np.int64)
    for i in range(n):
        start[key[i] + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[key[i]]] = i
        fill[key[i]] += 1
    sorted_pos = np.empty((n, d))
    for p in range(n):
        for k in range(d):
            sorted_pos[p, k] = pos[order[p], k]
    return lo, cell, dims, start, order, sorted_pos


@_njit
def lj_cells(pos, par, with_gradient):
    """Energy and gradient by a cell list (cells at least a cut-off wide)."""
    n, d = pos.shape
    grad = np.zeros(pos.shape)
    if n < 2:
        return 0.0, grad
    _, _, dims, start, order, sorted_pos = _cell_list(pos, par[2])
    n_cells = start.size - 1
    sorted_grad = np.zeros((n, d))
    coord = np.empty(d, np.int64)
    energy = 0.0
    rc2 = par[2]
    n_blocks = 3 ** d
    for c in range(n_cells):
        a0, a1 = start[c], start[c + 1]
        if a0 == a1:
            continue
        rest = c
        for k in range(d - 1, -1, -1):
            coord[k] = rest % dims[k]
            rest //= dims[k]
        for b in range(n_blocks):
            lin = _block_cell(coord, b, dims)
            # Each pair of neighbouring cells once (the later one from the
            # earlier), pairs within a cell once.
            if lin < c:
                continue
            b1 = start[lin + 1]
            for p in range(a0, a1):
                q0 = p + 1 if lin == c else start[lin]
                for q in range(q0, b1):
                    r2 = 0.0
                    for k in range(d):
                        diff = sorted_pos[p, k] - sorted_pos[q, k]
                        r2 += diff * diff
                    if r2 >= rc2:
                        continue
                    e, de = _lj_pair(r2, par)
                    energy += e
                    if with_gradient:
                        for k in range(d):
                            g = de * (sorted_pos[p, k] - sorted_pos[q, k])
                            sorted_grad[p, k] += g
                            sorted_grad[q, k] -= g
    if with_gradient:
        for p in range(n):
            for k in range(d):
                grad[order[p], k] = sorted_grad[p, k]
    return energy, grad


def lennard_jones(positions, parameters, gradient=True):
    """Return the Lennard-Jones energy and its gradient ``(n, d)``.

    Parameters
    ----------
    positions : (n, d) array
    parameters : array of 9 floats
        As `odl_atoms.functionals.LennardJones` packs them (epsilon, sigma^2,
        cutoff^2, smooth, onset^2, shift, core radius^2, core A, core B).
    gradient : bool, optional
        If False, the gradient returned is zeros.

    Dense pair sums up to `DENSE_PAIRS_MAX_ATOMS` atoms, a cell list above.
    """
    pos = np.ascontiguousarray(positions, dtype=float)
    par = np.ascontiguousarray(parameters, dtype=float)
    if pos.shape[0] <= DENSE_PAIRS_MAX_ATOMS:
        return lj_dense(pos, par, gradient)
    return lj_cells(pos, par, gradient)


def warm_up():
    """Compile (or load from numba's cache) every kernel, on tiny inputs.

    The first call of a kernel in a process compiles it (seconds) unless a
    previous process left it in the on-disk cache (``__pycache__``, tenths
    of a second). Calling this once before starting parallel workers (test
    runners, a process pool) makes them load instead of each compiling.

    Returns
    -------
    seconds : dict
        Wall seconds spent on the projector kernels in 2D and 3D, on the
        Lennard-Jones kernels and on the lattice QP (`box_qp`).

    Examples
    --------
    >>> sorted(warm_up())
    ['Lennard-Jones', 'lattice QP', 'projector 2D', 'projector 3D']
    """
    import time
    from types import SimpleNamespace

    seconds = {}
    for d in (2, 3):
        start = time.perf_counter()
        if AVAILABLE:
            # The attributes of a DetectorFrame (one angle, 8 (x 8) cells of
            # width 1) by hand: no geometry, no ODL needed.
            axes = np.zeros((1, d - 1, d))
            for k in range(d - 1):
                axes[0, k, k] = 1.0
            edges = np.arange(9.0) - 4.0
            frame = SimpleNamespace(
                axes=axes, offsets=np.zeros((1, d - 1)),
                edges=(edges,) * (d - 1),
                centres=(edges[:-1] + 0.5,) * (d - 1),
                shape=(1,) + (8,) * (d - 1))
            proj = Projector(frame, sigma=0.5, truncate=2.0)
            x, w = np.zeros((2, d)), np.ones(2)
            prof = proj.profiles(x)
            y = proj.project_profiles(prof, w)
            proj.adjoint_profiles(prof, w, y)
            proj.jacobian_profiles(prof, w, x, w)
            proj.self_inner_profiles(prof)
            proj.data_term(x, w, y)
            proj.group_residuals(prof, np.array([0, 1, 2]), y)
        seconds[f'projector {d}D'] = time.perf_counter() - start
    start = time.perf_counter()
    if AVAILABLE:
        par = np.array([1.0, 1.0, 9.0, 1.0, 4.0, 0.0, 0.25, 10.0, 1.0])
        lj_dense(np.zeros((2, 2)), par, True)
        lj_cells(np.zeros((2, 2)), par, True)
        lj_pair_terms(np.ones(2), par)
        addition_energies_cells(np.zeros((2, 2)), np.ones((3, 2)), par, True)
        grid_ball([np.arange(2.0)] * 3, np.zeros((1, 3)), 1.0)
    seconds['Lennard-Jones'] = time.perf_counter() - start
    start = time.perf_counter()
    if AVAILABLE:
        box_qp(np.eye(2)[None], np.ones((1, 2)), groups=np.zeros(1))
        stack_grams_2d(np.zeros((2, 1), np.int64), np.ones((2, 1, 3)),
                       np.arange(2), np.array([0, 2]), 2)
        lattice_problems(np.eye(2)[None], np.zeros((1, 2, 1), np.int64),
                         np.ones((1, 2, 1)), np.zeros(1, np.int64),
                         np.zeros((1, 2), np.int64), np.ones((1, 2), bool),
                         np.ones(1))
        select_sites(np.zeros((1, 2, 2)), np.ones((1, 2), bool),
                     np.zeros(2), np.ones(2), np.ones((1, 2), bool))
        for known in (np.zeros((0, 0)), np.ones((1, 2))):
            lattice_problems_profiles(
                np.eye(2)[None], np.zeros((1, 2), np.int64),
                np.zeros((2, 1), np.int64), np.ones((2, 1, 1)), 1,
                np.zeros(1, np.int64), np.zeros((1, 2), np.int64),
                np.ones((1, 2), bool), np.ones(1), known)
        site_linear(np.zeros((1, 2), np.int64), np.ones((1, 2), bool),
                    np.zeros((2, 1), np.int64), np.ones((2, 1, 1)), 1,
                    np.ones(1))
    seconds['lattice QP'] = time.perf_counter() - start
    return seconds


# ---------------------------------------------------------------------------
# The oracle's addition energies

@_njit
def addition_energies_cells(positions, points, par, attractive_only):
    """Pair-energy sums and nearest distances of grid points to atoms.

    For every point: the sum over the atoms of the pair energy ``phi`` at
    their distance (each term's negative part only, with
    ``attractive_only``), and the distance to the nearest atom. The atoms
    are binned in cells at least a cut-off wide, so each point sums over the
    ``3^d`` cells around its own; a point whose nearest atom is not found
    there (none closer than a cell width) is compared with every atom.
    """
    p, d = points.shape
    n = positions.shape[0]
    energies = np.zeros(p)
    nearest = np.full(p, np.inf)
    if n == 0:
        return energies, nearest
    lo, cell, dims, start, _, sorted_pos = _cell_list(positions, par[2])
    rc2 = par[2]
    n_blocks = 3 ** d
    own = np.empty(d, np.int64)
    for q in range(p):
        for k in range(d):
            # The point's cell, possibly outside the atoms' cells.
            own[k] = int(math.floor((points[q, k] - lo[k]) / cell))
        total_energy = 0.0
        best = np.inf
        for b in range(n_blocks):
            lin = _block_cell(own, b, dims)
            if lin < 0:
                continue
            for a in range(start[lin], start[lin + 1]):
                r2 = 0.0
                for k in range(d):
                    diff = points[q, k] - sorted_pos[a, k]
                    r2 += diff * diff
                if r2 < best:
                    best = r2
                if r2 >= rc2:
                    continue
                # Through the distance, as the pair energy of distances.
                r = math.sqrt(r2)
                e, _ = _lj_pair(r * r, par)
                if attractive_only and e > 0.0:
                    e = 0.0
                total_energy += e
        # Every atom outside the block is at least a cell width away.
        if not best < cell * cell:
            for a in range(n):
                r2 = 0.0
                for k in range(d):
                    diff = points[q, k] - sorted_pos[a, k]
                    r2 += diff * diff
                if r2 < best:
                    best = r2
        energies[q] = total_energy
        nearest[q] = math.sqrt(best)
    return energies, nearest


def addition_energies(positions, points, parameters, attractive_only=False):
    """Return the energy change of adding an atom at each of ``points``.

    With the distance from each point to the nearest atom, as the oracle's
    `odl_atoms.solvers.adcg.oracle.addition_energies` returns them (cut-off
    and core as `lennard_jones`).

    Parameters
    ----------
    positions : (n, d) array
        The atoms.
    points : (p, d) array
    parameters : array of 9 floats
        The Lennard-Jones parameters, as for `lennard_jones`.
    attractive_only : bool, optional
        Sum only the negative (attractive) part of each pair energy.

    Returns
    -------
    energies, nearest : (p,) arrays
        ``nearest`` is ``inf`` without atoms.
    """
    return addition_energies_cells(
        np.ascontiguousarray(positions, dtype=float),
        np.ascontiguousarray(points, dtype=float),
        np.ascontiguousarray(parameters, dtype=float), bool(attractive_only))


# ---------------------------------------------------------------------------
# Grid points near atoms (the oracle's attraction field in 3D)

@_njit
def _grid_ball_pass(x, y, z, positions, radius, index, atom, dist):
    """Count (``index`` empty) or list the grid points within ``radius``."""
    r2max = radius * radius
    count = 0
    ny, nz = y.size, z.size
    for a in range(positions.shape[0]):
        px, py, pz = positions[a, 0], positions[a, 1], positions[a, 2]
        i0, i1 = np.searchsorted(x, px - radius), np.searchsorted(
            x, px + radius, side='right')
        j0, j1 = np.searchsorted(y, py - radius), np.searchsorted(
            y, py + radius, side='right')
        k0, k1 = np.searchsorted(z, pz - radius), np.searchsorted(
            z, pz + radius, side='right')
        for i in range(i0, i1):
            dx = x[i] - px
            for j in range(j0, j1):
                dy = y[j] - py
                for k in range(k0, k1):
                    dz = z[k] - pz
                    r2 = dx * dx + dy * dy + dz * dz
                    if r2 <= r2max:
                        if index.size:
                            index[count] = (i * ny + j) * nz + k
                            atom[count] = a
                            dist[count] = math.sqrt(r2)
                        count += 1
    return count


def grid_ball(vectors, positions, radius):
    """Points of a 3D grid within ``radius`` of each atom.

    The pairs that ``cKDTree(points).query_ball_point(positions, radius)``
    finds for the grid points ``points`` (C order of the coordinate
    ``vectors``), atom by atom and each atom's points in C order, with
    their distances as ``np.linalg.norm(points[index] - positions[atom],
    axis=1)`` computes them; no tree and no Python lists (10^6 pairs per
    call for 10^3 atoms).

    Parameters
    ----------
    vectors : three increasing 1D arrays
    positions : (n, 3) array
    radius : float

    Returns
    -------
    index, atom : (q,) int arrays
        Flat grid index and atom of every pair.
    dist : (q,) array

    Examples
    --------
    >>> v = np.arange(4.0)
    >>> index, atom, dist = grid_ball([v, v, v], np.array([[0.0, 0.0, 0.2]]),
    ...                               1.1)
    >>> index.tolist(), dist.round(2).tolist()
    ([0, 1, 4, 16], [0.2, 0.8, 1.02, 1.02])
    """
    x, y, z = (np.ascontiguousarray(v, dtype=float) for v in vectors)
    positions = np.ascontiguousarray(positions, dtype=float)
    radius = float(radius)
    none = np.zeros(0, np.int64)
    count = _grid_ball_pass(x, y, z, positions, radius, none, none,
                            np.zeros(0))
    index, atom = np.empty(count, np.int64), np.empty(count, np.int64)
    dist = np.empty(count)
    if count:
        _grid_ball_pass(x, y, z, positions, radius, index, atom, dist)
    return index, atom, dist
