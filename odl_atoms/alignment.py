"""Where each projection sits on the detector: shifts and the tilt-axis offset.

The projections of a tilt series are shifted on the detector by stage drift
and by a tilt axis that is not at the detector's centre. The atom operator
models a shift of every projection along the detector axes
(``GaussianRayTransform(..., detector_shifts=s)``, ``op.shifted(s)``: an
atom at ``x`` lands at ``u = axes[a] @ x + offsets[a] + s[a]``). This module
estimates the shifts:

- `centre_of_mass_shifts`: from each projection's centre of mass, before any
  atom is known (the classic first alignment);
- `refine_shifts`: at fixed atoms, the shifts that minimise the data misfit
  (Levenberg-Marquardt steps with the exact Jacobian), the alignment block
  of a projection-matching loop that alternates with the atoms, as
  SparseAlign does;
- `shift_misfit`: that misfit and its exact gradient with respect to the
  shifts;
- `decompose_shifts`: shifts = an object translation + a tilt-axis offset +
  residual shifts.

**What the data can tell.** Translating the whole object by ``t`` moves its
projection at angle ``a`` by ``axes[a] @ t``: shifts of that form (the span
of the ``m k x d`` matrix ``T`` of the detector axes) give the same data as
a translated object, and no data tell them apart. Only the ``m k - rank T``
combinations of shifts orthogonal to that span are determined (``m``
projections, ``k`` detector axes, ``d`` dimensions). The estimators here fix
that gauge: their shifts differ from the start (zero for
`centre_of_mass_shifts`) by a vector orthogonal to the translations, and
the atoms carry the translation. Counting:

- 2D, 2 angles: nothing is determined (2 shifts, 2 translations); the
  estimators say so (`Alignment.determined` is 0, a warning is issued) and
  return the start unchanged;
- 2D, 3 angles: one number, the tilt-axis offset: shifts of every
  projection are known only through it;
- 2D, ``m`` angles: ``m - 2``;
- 3D single-axis tilt series of ``m`` tilts: ``2 m - 3`` (across the tilt
  axis ``m - 2``; along it ``m - 1``, a translation along the axis being
  the one common shift no data see).

**The tilt-axis offset** is a shift common to all projections. In a
single-axis series whose angles are not all equal (modulo pi) it is not a
translation across the axis, so it is determined; along the tilt axis it is
a translation (reported as 0). `decompose_shifts` writes shifts as
``T t + offset + residual`` with the residual orthogonal to both.
"""

from dataclasses import dataclass
import warnings

import numpy as np

from odl_atoms.geometry import as_data, check_detector_shifts
from odl_atoms.problem import atom_operator
from odl_atoms.projection import Stencil

__all__ = ('Alignment', 'centre_of_mass_shifts', 'refine_shifts',
           'shift_misfit', 'decompose_shifts', 'DEFAULT_MAX_SHIFT_CELLS')

#: Default bound of `refine_shifts` on how far a shift moves from its start,
#: in detector cells: a few cells, well below half the projected spacing of
#: atom columns for the cell sizes atomic-resolution data use (about 0.1-0.4
#: angstrom), so that the fit cannot slide onto the neighbouring column.
DEFAULT_MAX_SHIFT_CELLS = 3.0

# Relative size below which a singular value of T (or an offset pattern's
# part outside the translations) counts as zero.
_RANK_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class Alignment:

    """Estimated detector shifts of a tilt series.

    Attributes
    ----------
    shifts : numpy.ndarray, shape ``(m, k)``
        Shift of every projection along the detector axes (angstrom), in the
        gauge described in the module documentation: give it to
        ``op.shifted(shifts)``.
    tilt_axis_offset : numpy.ndarray, shape ``(k,)``
        The shift common to all projections (`decompose_shifts`); 0 along
        axes where it is a translation.
    residual_shifts : numpy.ndarray, shape ``(m, k)``
        What is left of ``shifts`` after the translation and the offset.
    determined : int
        Number of combinations of shifts that the data determine
        (``m k - rank T``); 0 means the shifts cannot be told from a
        translation of the object at all.
    centre_of_mass : numpy.ndarray, shape ``(d,)``, or None
        `centre_of_mass_shifts` only: where the object's centre of mass is,
        for the returned shifts.
    misfit_start, misfit : float or None
        `refine_shifts` only: ``0.5 ||R_s(x, w) - y||^2`` (weighted inner
        product of the data space) at the starting and the returned shifts.
    at_bound : bool
        `refine_shifts` only: a shift stopped at the bound ``max_shift``
        (the minimum may lie beyond it: check the atoms or raise the bound).
    n_iterations : int
    message : str
        Why the estimate is what it is, when that needs saying (empty
        otherwise).
    """

    shifts: np.ndarray
    tilt_axis_offset: np.ndarray
    residual_shifts: np.ndarray
    determined: int
    centre_of_mass: np.ndarray = None
    misfit_start: float = None
    misfit: float = None
    at_bound: bool = False
    n_iterations: int = 0
    message: str = ''

    @property
    def identifiable(self):
        """True if the data determine any combination of the shifts."""
        return self.determined > 0

    @property
    def misfit_decrease(self):
        """``misfit_start - misfit`` (`refine_shifts` only, else None)."""
        if self.misfit is None:
            return None
        return self.misfit_start - self.misfit

    def __repr__(self):
        parts = [f'shifts={np.array2string(self.shifts, separator=", ", threshold=20)}'
                 .replace('\n', ' '),
                 f'tilt_axis_offset={np.array2string(self.tilt_axis_offset, separator=", ")}',
                 f'determined={self.determined}']
        if self.misfit is not None:
            parts.append(f'misfit_start={self.misfit_start:.6g}')
            parts.append(f'misfit={self.misfit:.6g}')
        if self.at_bound:
            parts.append('at_bound=True')
        if self.message:
            parts.append(f'message={self.message!r}')
        return 'Alignment(' + ', '.join(parts) + ')'


# --- The gauge


def _translation_matrix(frame):
    """``T`` ``(m k, d)``: the shifts ``T @ t`` of a translation ``t``."""
    m, k, d = frame.axes.shape
    return frame.axes.reshape(m * k, d)


def _complement_basis(frame):
    """Orthonormal basis ``(m k, p)`` of the shifts orthogonal to translations."""
    tmat = _translation_matrix(frame)
    u, sv, _ = np.linalg.svd(tmat, full_matrices=True)
    rank = int(np.sum(sv > _RANK_TOL * max(sv.max(initial=0.0), 1.0)))
    return u[:, rank:]


def decompose_shifts(operator, shifts):
    """Split detector shifts into translation, tilt-axis offset and residual.

    ``shifts[a] = axes[a] @ t + offset + residual[a]`` with ``residual``
    orthogonal (as an ``m k`` vector) to the translation patterns and to
    the constant ones. Along a detector axis where a constant shift is a
    translation (along the tilt axis of a single-axis series, or every axis
    with two angles in 2D) the offset is 0 and the translation takes it.

    Parameters
    ----------
    operator : `GaussianRayTransform` (or a positive multiple)
        Gives the geometry.
    shifts : array-like, shape ``(m, k)``
        In angstrom (``(m,)`` for a 1D detector).

    Returns
    -------
    translation : numpy.ndarray, shape ``(d,)``
        The object translation that explains the translation part (least
        norm if the angles do not determine all of it).
    tilt_axis_offset : numpy.ndarray, shape ``(k,)``
    residual : numpy.ndarray, shape ``(m, k)``

    Examples
    --------
    A constant shift of 0.3 on three projections is a tilt-axis offset; a
    translation adds nothing to it:

    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import SparseMeasureSpace, GaussianRayTransform
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = GaussianRayTransform(SparseMeasureSpace([-4, -4], [4, 4]),
    ...                           geometry, sigma=0.4)
    >>> translation = op.frame.axes[:, 0, :] @ np.array([0.5, -1.0])
    >>> t, offset, residual = decompose_shifts(op, 0.3 + translation)
    >>> np.round(t, 6), np.round(offset, 6), np.round(np.abs(residual).max(), 6)
    (array([ 0.5, -1. ]), array([ 0.3]), 0.0)
    """
    op, _ = atom_operator(operator)
    frame = op.frame
    m, k, d = frame.axes.shape
    s = check_detector_shifts(shifts, (m, k)).ravel()
    tmat = _translation_matrix(frame)
    const = np.tile(np.eye(k), (m, 1))  # (m k, k): a common shift per axis
    basis = _complement_basis(frame)
    outside = basis.T @ const  # the constant patterns' non-translation part
    keep = np.linalg.norm(outside, axis=0) > _RANK_TOL * np.sqrt(m)
    design = np.concatenate([tmat, const[:, keep]], axis=1)
    coef = np.linalg.lstsq(design, s, rcond=None)[0]
    offset = np.zeros(k)
    offset[keep] = coef[d:]
    residual = (s - design @ coef).reshape(m, k)
    return coef[:d], offset, residual


def _determined(frame):
    return _complement_basis(frame).shape[1]


def _not_determined_message(frame):
    m, k, d = frame.axes.shape
    return (f'the detector shifts of these {m} projection(s) are not '
            f'determined by any data: each pattern of shifts is that of a '
            f'translation of the object ({d}D, {m} angle(s)); the shifts '
            f'are left unchanged. Use more tilt angles to align')


def _result(op, shifts, determined, **fields):
    _, offset, residual = decompose_shifts(op, shifts)
    return Alignment(shifts=shifts, tilt_axis_offset=offset,
                     residual_shifts=residual, determined=determined,
                     **fields)


# --- Data and atoms


def _data_array(op, data):
    """The data as a float64 NumPy array of the frame's shape."""
    element = as_data(op.range, data)
    arr = element.data
    if hasattr(arr, 'detach'):
        arr = arr.detach().cpu().numpy()
    return np.asarray(arr, dtype=float).reshape(op.frame.shape)


def _atoms(op, scale, positions, weights):
    d = op.domain.ndim
    positions = np.array(positions, dtype=float, ndmin=2)
    if positions.ndim != 2 or positions.shape[1] != d:
        raise ValueError(f'`positions` must have shape (n, {d}), got '
                         f'{positions.shape}')
    weights = np.array(weights, dtype=float, ndmin=1)
    if weights.shape != (positions.shape[0],):
        raise ValueError(f'`weights` must have shape ({positions.shape[0]},) '
                         f'(one per atom), got {weights.shape}')
    if positions.shape[0] == 0:
        raise ValueError('no atoms: shifts are refined against the projection '
                         'of atoms; reconstruct some first (or use '
                         'centre_of_mass_shifts)')
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(weights))):
        raise ValueError('`positions` and `weights` must be finite')
    return positions, scale * weights


# --- Centre of mass


def centre_of_mass_shifts(operator, data, background=None):
    """Return detector shifts from each projection's centre of mass.

    In a parallel beam the centre of mass of projection ``a`` is that of the
    object projected, plus the shift: ``c[a] = axes[a] @ x_cm + offsets[a] +
    s[a]``. The shifts returned are the least-norm solution, orthogonal to
    the translations (the module documentation says what that leaves
    undetermined); ``x_cm`` comes with them (`Alignment.centre_of_mass`).

    This needs the whole object inside every projection and the background
    removed: mass outside the detector, or a background, pulls the centre
    of mass (towards the detector centre for a background).

    Parameters
    ----------
    operator : `GaussianRayTransform` (or a positive multiple)
        Gives the geometry; its own detector shifts are ignored (the shifts
        returned are relative to its geometry).
    data : projection-space element or array-like
    background : float or array-like, optional
        Subtracted before the centres are taken: one value, one per
        projection (``(m,)``) or one per data value. Default: none.

    Returns
    -------
    alignment : `Alignment`

    Examples
    --------
    Two atoms seen at three angles, the second projection shifted by half
    a cell (0.125): only one combination of the three shifts is not a
    translation, and that one is recovered.

    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import SparseMeasureSpace, GaussianRayTransform
    >>> space = SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-8, 8, 64))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.4)
    >>> true = np.array([[0.0], [0.125], [0.0]])
    >>> data = op.shifted(true)(space.element([[0, 0], [1.5, 1]]))
    >>> alignment = centre_of_mass_shifts(op, data)
    >>> alignment.determined
    1
    >>> basis = _complement_basis(op.frame)
    >>> bool(np.allclose(basis.T @ alignment.shifts.ravel(), basis.T @ true.ravel()))
    True
    """
    op, _ = atom_operator(operator)
    frame = op.shifted(None).frame
    m, k, d = frame.axes.shape
    y = _data_array(op, data)
    if background is not None:
        try:
            bg = np.asarray(background, dtype=float)
        except (TypeError, ValueError) as exc:
            raise TypeError('`background` must be a number or an array of '
                            'numbers') from exc
        if bg.shape == (m,):
            bg = bg.reshape((m,) + (1,) * k)
        try:
            y = y - bg
        except ValueError as exc:
            raise ValueError(
                f'`background` must be one value, one per projection ({m},) '
                f'or one per data value {frame.shape}; got shape '
                f'{bg.shape}') from exc
        if not np.all(np.isfinite(y)):
            raise ValueError('`background` contains NaN or inf')
    # Cell lengths/areas: the data are cell averages (or samples) of a
    # density, so each cell's mass is its value times its size.
    sizes = [np.diff(e) for e in frame.edges]
    area = sizes[0] if k == 1 else np.outer(sizes[0], sizes[1])
    mass = (y * area).reshape(m, -1).sum(axis=1)
    bad = np.flatnonzero(~(mass > 0))
    if bad.size:
        raise ValueError(
            f'projection(s) {bad.tolist()} have no positive mass after the '
            f'background (total {mass[bad].tolist()}); a centre of mass needs '
            f'the object brighter than the background: give `background=` '
            f'or check the data')
    centres = np.empty((m, k))
    for j in range(k):
        coord = frame.centres[j] if k == 1 else (
            frame.centres[0][:, None] if j == 0 else frame.centres[1][None, :])
        centres[:, j] = (y * area * coord).reshape(m, -1).sum(axis=1) / mass
    b = (centres - frame.offsets).ravel()
    tmat = _translation_matrix(frame)
    x_cm = np.linalg.lstsq(tmat, b, rcond=None)[0]
    determined = _determined(frame)
    if determined == 0:
        message = _not_determined_message(frame)
        warnings.warn(message, stacklevel=2)
        return _result(op, np.zeros((m, k)), 0, centre_of_mass=x_cm,
                       message=message)
    shifts = (b - tmat @ x_cm).reshape(m, k)
    return _result(op, shifts, determined, centre_of_mass=x_cm)


# --- The misfit as a function of the shifts


def _shift_terms(op, base_frame, y, positions, weights, shifts, jacobian):
    """Misfit, gradient ``(m, k)`` and Gauss-Newton blocks ``(m, k, k)``."""
    m, k = shifts.shape
    stencil = Stencil(base_frame.shifted(shifts), positions, op.sigma,
                      op.truncate, op.mode)
    r = stencil.project(weights) - y.ravel()
    c = op.inner_weight
    value = 0.5 * c * float(r @ r)
    if not jacobian:
        return value, None, None
    jac = stencil.shift_jacobian(weights).reshape(k, m, -1)
    grad = c * np.einsum('kmp,mp->mk', jac, r.reshape(m, -1))
    blocks = c * np.einsum('kmp,lmp->mkl', jac, jac)
    return value, grad, blocks


def shift_misfit(operator, data, positions, weights, shifts=None,
                 gradient=True):
    """Return ``F(s) = 0.5 ||R_s(x, w) - y||^2`` and ``dF/ds``.

    ``R_s`` is the operator with detector shifts ``s``; the norm is that of
    the data space (cell-weighted). The gradient is exact:
    ``dF/ds[a, j] = sum_i dF/dc[i, a, j]``, the derivative with respect to
    every atom's projected centre at angle ``a`` along axis ``j``, summed
    over atoms.

    Parameters
    ----------
    operator : `GaussianRayTransform` (or a positive multiple)
    data : projection-space element or array-like
    positions : array-like, shape ``(n, d)``
    weights : array-like, shape ``(n,)``
    shifts : array-like, shape ``(m, k)``, optional
        Default: the operator's own `~GaussianRayTransform.detector_shifts`.
    gradient : bool, optional

    Returns
    -------
    value : float
    grad : numpy.ndarray, shape ``(m, k)``
        Only if ``gradient`` is True.
    """
    op, scale = atom_operator(operator)
    frame = op.shifted(None).frame
    shifts = (op.detector_shifts if shifts is None else
              check_detector_shifts(shifts, frame.offsets.shape))
    positions, weights = _atoms(op, scale, positions, weights)
    value, grad, _ = _shift_terms(op, frame, _data_array(op, data), positions,
                                  weights, np.asarray(shifts, float), gradient)
    return (value, grad) if gradient else value


# --- Refinement at fixed atoms


def refine_shifts(operator, data, positions, weights, shifts=None,
                  max_shift=None, fix_translation=True, max_iter=50,
                  tol=1e-4):
    """Return the detector shifts that best fit the data at fixed atoms.

    Minimises ``F(s) = 0.5 ||R_s(x, w) - y||^2`` over the shifts ``s``
    (`shift_misfit`) by Levenberg-Marquardt steps with the exact Jacobian.
    At fixed atoms ``F`` is a sum over projections, each depending on its
    own shift, so the Gauss-Newton matrix is block diagonal and cheap.

    With ``fix_translation`` (the default) the shifts move from their start
    only orthogonally to the translations of the object (the gauge of the
    module documentation): a translation is left to the atoms. This is
    what an alternation with the atoms needs (each block then has a unique
    minimum and the pair cannot drift together); without it every
    projection is fitted on its own.

    Every shift stays within ``max_shift`` of its start (per detector axis),
    so that the fit cannot jump to where a neighbouring atom column would
    match; `Alignment.at_bound` says if it stopped there.

    Parameters
    ----------
    operator : `GaussianRayTransform` (or a positive multiple: the weights
        are scaled by it, as `~odl_atoms.problem.Problem` does)
    data : projection-space element or array-like
    positions : array-like, shape ``(n, d)``
    weights : array-like, shape ``(n,)``
    shifts : array-like, shape ``(m, k)``, optional
        Start (angstrom). Default: the operator's own detector shifts.
    max_shift : positive float, optional
        Largest change of a shift from its start, in angstrom. Default
        `DEFAULT_MAX_SHIFT_CELLS` (3) detector cells.
    fix_translation : bool, optional
        Keep the change orthogonal to the translations (default True).
    max_iter : int, optional
        Most Levenberg-Marquardt steps.
    tol : positive float, optional
        Stop when no shift changes by more than ``tol`` detector cells in a
        step.

    Returns
    -------
    alignment : `Alignment`
        With ``misfit_start``, ``misfit`` and ``at_bound``. If the data
        determine no shift (``determined == 0``: two angles in 2D, with
        ``fix_translation``) the start is returned with a message and a
        warning.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import SparseMeasureSpace, GaussianRayTransform
    >>> space = SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 4), odl.uniform_partition(-8, 8, 64))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.4)
    >>> atoms = np.array([[0.0, 0.0], [1.5, 1.0], [-1.0, 2.0]])
    >>> true = np.array([[0.2], [-0.1], [0.0], [0.1]])
    >>> basis = _complement_basis(op.frame)  # shifts that are no translation
    >>> true = (basis @ basis.T @ true.ravel()).reshape(4, 1)
    >>> data = op.shifted(true).project(atoms, np.ones(3))
    >>> result = refine_shifts(op, data, atoms, np.ones(3))
    >>> bool(np.allclose(result.shifts, true, atol=1e-6))
    True
    >>> result.misfit < 1e-9 < result.misfit_start
    True
    """
    op, scale = atom_operator(operator)
    frame = op.shifted(None).frame
    m, k, d = frame.axes.shape
    start = (np.array(op.detector_shifts) if shifts is None else
             check_detector_shifts(shifts, (m, k)))
    positions, weights = _atoms(op, scale, positions, weights)
    y = _data_array(op, data)
    cells = np.array([np.diff(e).min() for e in frame.edges])
    if max_shift is None:
        bound = DEFAULT_MAX_SHIFT_CELLS * cells
    else:
        try:
            max_shift = float(max_shift)
        except (TypeError, ValueError) as exc:
            raise TypeError('`max_shift` must be a number (angstrom)') from exc
        if not (np.isfinite(max_shift) and max_shift > 0):
            raise ValueError(f'`max_shift` must be a positive number of '
                             f'angstrom, got {max_shift}')
        bound = np.full(k, max_shift)
    max_iter = int(max_iter)
    if max_iter < 0:
        raise ValueError(f'`max_iter` must be >= 0, got {max_iter}')
    if not tol > 0:
        raise ValueError(f'`tol` must be positive, got {tol}')
    bound = np.tile(bound, m)  # per entry of the flat (m k) shifts
    xtol = tol * np.tile(cells, m)

    basis = _complement_basis(frame) if fix_translation else np.eye(m * k)
    determined = _determined(frame)
    value, grad, blocks = _shift_terms(op, frame, y, positions, weights,
                                       start, True)
    misfit_start = value
    if basis.shape[1] == 0:
        message = _not_determined_message(frame)
        warnings.warn(message, stacklevel=2)
        return _result(op, start, determined, misfit_start=value,
                       misfit=value, message=message)

    s = start.ravel().copy()
    lam = 1e-6
    at_bound = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        hess = np.zeros((m * k, m * k))
        for a in range(m):
            hess[a * k:(a + 1) * k, a * k:(a + 1) * k] = blocks[a]
        hz = basis.T @ hess @ basis
        gz = basis.T @ grad.ravel()
        scale_h = max(float(np.trace(hz)) / hz.shape[0], np.finfo(float).tiny)
        improved = False
        while lam < 1e12:
            try:
                dz = -np.linalg.solve(hz + lam * scale_h * np.eye(hz.shape[0]),
                                      gz)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            step = basis @ dz
            # The largest part of the step that keeps |s - start| <= bound.
            room = np.where(step > 0, start.ravel() + bound - s,
                            s - (start.ravel() - bound))
            moving = np.abs(step) > 0
            alpha = min(1.0, float(np.min(room[moving] / np.abs(step[moving]),
                                          initial=1.0)))
            alpha = max(alpha, 0.0)
            step = alpha * step
            if np.all(np.abs(step) <= xtol):
                at_bound = alpha < 1.0
                break
            trial = s + step
            new_value, new_grad, new_blocks = _shift_terms(
                op, frame, y, positions, weights, trial.reshape(m, k), True)
            if new_value < value:
                s, value, grad, blocks = trial, new_value, new_grad, new_blocks
                at_bound = alpha < 1.0
                lam = max(lam / 10, 1e-12)
                improved = True
                break
            lam *= 10
        if not improved or np.all(np.abs(step) <= xtol):
            break
    shifts = s.reshape(m, k)
    message = ''
    if at_bound:
        message = (f'a shift stopped at max_shift ({bound.max():.4g} angstrom '
                   f'from its start); the best fit may lie beyond: check the '
                   f'atoms, or give a larger max_shift')
    return _result(op, shifts, determined, misfit_start=misfit_start,
                   misfit=value, at_bound=at_bound, n_iterations=n_iter,
                   message=message)
