"""Exact projections of Gaussian atoms onto a detector.

An isotropic normalised Gaussian ``N(x_i, sigma^2 I_d)`` integrates along
parallel rays to an isotropic normalised Gaussian of the same ``sigma`` on the
detector, centred at the projected position ``c = axes @ x_i + offsets``; in 3D
the detector image is the product of two 1D Gaussians in ``u`` and ``v``. A data
value is either the average of that profile over the detector cell (mode
``'integrate'``, exact for atoms of any size relative to the pixels) or its value
at the cell centre (mode ``'sample'``, what ASTRA's pixel projector
approximates).

Everything here works on a window of ``2 * truncate * sigma`` around each
projected atom, so the cost grows with atoms x angles x window and not with the
detector size. `Stencil` holds, for one set of positions, each atom's 1D
profiles, their derivatives with respect to the centre, and the detector
indices they touch; the forward projection, the Jacobian, its adjoint and the
correlation map are all a gather or a scatter through it.

A `Stencil` runs on one of two backends (`odl_atoms.kernels.backend`): the
compiled kernels of `odl_atoms.kernels` (the default when numba imports) or
the NumPy code of this module, which is their reference (tests compare the
two) and the fallback without numba.
"""

import math

import numpy as np
from scipy.special import ndtr

from odl_atoms import kernels

__all__ = ('Stencil', 'SeparableGrid', 'MODES')

MODES = ('integrate', 'sample')

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

# Work on at most this many window values at once (bounds peak memory for
# 10^5 atoms in 3D to some tens of MB).
_CHUNK_VALUES = 2_000_000

# The NumPy path keeps the flat 3D data indices of a stencil's windows after
# their first use (each gather or scatter rebuilt them, which cost several
# times the scatter itself), up to this many entries per stencil.
_CACHED_INDEX_VALUES = 4_000_000


def _profile_1d(centres, edges, mids, sigma, truncate, mode):
    """Window indices, profile values and d(profile)/d(centre) along one axis.

    Parameters
    ----------
    centres : array, shape ``(n, m)``
        Projected atom centres on this detector axis.
    edges, mids : 1D arrays
        Cell boundaries (``n_cells + 1``) and centres (``n_cells``).

    Returns
    -------
    index : int array ``(n, m, w)``
        Cell indices, clipped to the detector; out-of-detector entries have
        zero values.
    value, deriv : float arrays ``(n, m, w)``
    """
    n_cells = mids.size
    widths = np.diff(edges)
    w = int(min(n_cells, np.ceil(2 * truncate * sigma / widths.min()) + 2))
    first = np.searchsorted(edges, centres - truncate * sigma, side='right') - 1
    first = np.clip(first, 0, max(n_cells - w, 0))
    raw = first[..., None] + np.arange(w)
    valid = raw < n_cells
    index = np.minimum(raw, n_cells - 1)
    c = centres[..., None]
    if mode == 'integrate':
        # Normal CDF and density at the w + 1 edges of the window, once each.
        edge_index = np.minimum(first[..., None] + np.arange(w + 1), n_cells)
        z = (edges[edge_index] - c) / sigma
        tail = ndtr(-np.abs(z))  # the small tail mass beyond each edge
        density = np.exp(-0.5 * z * z)
        lo, hi = z[..., :-1], z[..., 1:]
        t_lo, t_hi = tail[..., :-1], tail[..., 1:]
        h = widths[index]
        # Mass of the cell from the tails, so that far cells keep their
        # relative accuracy (no difference of two numbers close to 1).
        value = np.where(hi <= 0, t_hi - t_lo,
                         np.where(lo >= 0, t_lo - t_hi, 1.0 - t_lo - t_hi)) / h
        deriv = (density[..., :-1] - density[..., 1:]) * (
            _INV_SQRT_2PI / sigma) / h
    else:
        t = (mids[index] - c) / sigma
        value = np.exp(-0.5 * t ** 2) * (_INV_SQRT_2PI / sigma)
        deriv = value * (t / sigma)
    value = np.where(valid, value, 0.0)
    deriv = np.where(valid, deriv, 0.0)
    return index, value, deriv


def _check_backend(backend):
    """Return the backend to use: ``backend`` or, if None, the active one."""
    if backend is None:
        return kernels.backend()
    if backend not in ('numba', 'numpy'):
        raise ValueError(
            f"`backend` must be 'numba', 'numpy' or None, got {backend!r}")
    if backend == 'numba' and not kernels.AVAILABLE:
        raise ValueError("backend='numba' needs numba: pip install numba")
    return backend


class WindowedProfiles:

    """Window bookkeeping shared by `Stencil` and its torch twin.

    Subclasses set ``profiles`` (per detector axis: first-cell indices,
    values and derivatives, each ``(n, m, w)``), ``_flat`` (flat data
    indices of the window entries), ``frame`` and ``n_atoms``; the methods
    below only index and broadcast, so they serve NumPy arrays and torch
    tensors alike.
    """

    #: Window values handled per chunk of atoms (caps the temporaries).
    chunk_values = _CHUNK_VALUES

    def _chunks(self):
        per_atom = self.frame.n_angles * math.prod(
            p[1].shape[2] for p in self.profiles)
        step = max(1, self.chunk_values // max(per_atom, 1))
        for start in range(0, self.n_atoms, step):
            yield slice(start, min(start + step, self.n_atoms))

    def _index(self, sl):
        if len(self._flat) == 1:
            return self._flat[0][sl]
        return self._flat[0][sl][..., :, None] + self._flat[1][sl][..., None, :]

    def _outer(self, sl, du=False, dv=False):
        """Window values (n, m, wu[, wv]) of the profile or its derivatives."""
        pu = self.profiles[0][2 if du else 1][sl]
        if len(self.profiles) == 1:
            return pu
        pv = self.profiles[1][2 if dv else 1][sl]
        return pu[..., :, None] * pv[..., None, :]


class Stencil(WindowedProfiles):

    """Projected profiles of a set of atoms, for gathers and scatters.

    Parameters
    ----------
    frame : `odl_atoms.geometry.DetectorFrame`
    positions : numpy.ndarray, shape ``(n, d)``
    sigma : float
        Gaussian standard deviation of an atom (angstrom).
    truncate : float
        Half-width of the window in units of ``sigma``.
    mode : {'integrate', 'sample'}
    backend : {'numba', 'numpy'}, optional
        The compiled kernels of `odl_atoms.kernels` or the NumPy code of this
        module (results agree to rounding). Default: the active backend,
        `odl_atoms.kernels.backend`.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms.geometry import DetectorFrame
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 2), odl.uniform_partition(-8, 8, 64))
    >>> frame = DetectorFrame.from_geometry(geometry)
    >>> positions = np.array([[0.0, 1.0], [2.0, -1.0]])
    >>> data = Stencil(frame, positions, sigma=0.5).project(np.array([1.0, 3.0]))
    >>> reference = Stencil(frame, positions, sigma=0.5, backend='numpy')
    >>> bool(np.allclose(data, reference.project(np.array([1.0, 3.0])),
    ...                  rtol=1e-12, atol=0))
    True
    """

    def __init__(self, frame, positions, sigma, truncate=6.0, mode='integrate',
                 backend=None):
        self.frame = frame
        positions = np.asarray(positions, dtype=float)
        self.n_atoms = positions.shape[0]
        self.ndim = positions.shape[1]
        self.axes = frame.axes
        self.backend = _check_backend(backend)
        self._profiles = None
        self._flat_index = None
        self._index_cache = {}
        self._cached_values = 0
        if self.backend == 'numba':
            self._projector = kernels.Projector.of(frame, sigma, truncate, mode)
            # (first cell, values, derivatives) per detector axis; the
            # window index arrays of `profiles` are made only if asked for.
            self._compiled = self._projector.profiles(positions)
            return
        self._projector = None
        centres = frame.coordinates(positions)  # (n, m, k)
        # Built in chunks of atoms: the many (atoms, angles, window)
        # temporaries of one pass over 10^5 atoms do not fit in the caches
        # (measured: 80x the time of 10^4 atoms unchunked, about 10x chunked).
        step = max(1, _CHUNK_VALUES // (8 * centres.shape[1] * 32))
        profiles = []
        for i in range(centres.shape[-1]):
            arrays = None
            for start in range(0, max(self.n_atoms, 1), step):
                part = _profile_1d(centres[start:start + step, :, i],
                                   frame.edges[i], frame.centres[i], sigma,
                                   truncate, mode)
                if arrays is None:  # the window size is known now
                    shape = (self.n_atoms,) + part[0].shape[1:]
                    arrays = tuple(np.empty(shape, a.dtype) for a in part)
                for out, a in zip(arrays, part):
                    out[start:start + step] = a
            profiles.append(arrays)
        self._profiles = profiles

    @property
    def profiles(self):
        """Per detector axis: cell indices, values, derivatives ``(n, m, w)``."""
        if self._profiles is None:
            self._profiles = [
                (first[..., None] + np.arange(value.shape[-1]), value, deriv)
                for first, value, deriv in self._compiled]
        return self._profiles

    @property
    def _flat(self):
        """Flat index into the data array of every window entry."""
        if self._flat_index is None:
            m = self.frame.n_angles
            det = self.frame.shape[1:]
            angle_offset = (np.arange(m) * int(np.prod(det)))[None, :, None]
            prof = self.profiles
            if len(det) == 1:
                self._flat_index = [angle_offset + prof[0][0]]
            else:
                self._flat_index = [angle_offset + prof[0][0] * det[1],
                                    prof[1][0]]
        return self._flat_index

    # --- Helpers over atom chunks (see also WindowedProfiles)

    def _index(self, sl):
        if len(self._flat) == 1:
            return self._flat[0][sl]
        key = (sl.start, sl.stop)
        index = self._index_cache.get(key)
        if index is None:
            index = super()._index(sl)
            if self._cached_values + index.size <= _CACHED_INDEX_VALUES:
                self._index_cache[key] = index
                self._cached_values += index.size
        return index

    def _scatter(self, out, sl, values):
        out += np.bincount(self._index(sl).ravel(), weights=values.ravel(),
                           minlength=out.size)

    def _gather(self, data, sl):
        return data[self._index(sl)]

    def _weights(self, weights, name='weights'):
        """``weights`` as a float array of one value per atom."""
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (self.n_atoms,):
            raise ValueError(f'`{name}` must have shape ({self.n_atoms},), '
                             f'got {weights.shape}')
        return weights

    def _data(self, data):
        """``data`` as a flat float array of the data size."""
        data = np.asarray(data, dtype=float).ravel()
        if data.size != int(np.prod(self.frame.shape)):
            raise ValueError(
                f'`data` must have {int(np.prod(self.frame.shape))} values '
                f'(shape {self.frame.shape}), got {data.size}')
        return data

    @staticmethod
    def _sum_window(arr):
        """Sum over window axes, keep (n, m)."""
        return arr.reshape(arr.shape[0], arr.shape[1], -1).sum(axis=-1)

    # --- Linear maps

    def project(self, weights):
        """Return ``sum_i w_i P_i`` as a flat array of the data size."""
        if self._projector is not None:
            return self._projector.project_profiles(
                self._compiled, self._weights(weights))
        out = np.zeros(int(np.prod(self.frame.shape)))
        for sl in self._chunks():
            vals = self._outer(sl) * weights[sl, None].reshape(
                (-1, 1) + (1,) * (len(self.profiles)))
            self._scatter(out, sl, vals)
        return out

    def apply_jacobian(self, weights, d_positions, d_weights):
        """Directional derivative along ``(d_positions, d_weights)``."""
        if self._projector is not None:
            d_positions = np.asarray(d_positions, dtype=float)
            if d_positions.shape != (self.n_atoms, self.ndim):
                raise ValueError(
                    f'`d_positions` must have shape '
                    f'{(self.n_atoms, self.ndim)}, got {d_positions.shape}')
            return self._projector.jacobian_profiles(
                self._compiled, self._weights(weights), d_positions,
                self._weights(d_weights, 'd_weights'))
        out = np.zeros(int(np.prod(self.frame.shape)))
        k = len(self.profiles)
        bshape = (-1, self.frame.n_angles) + (1,) * k
        # d(centre_k) for every atom and angle: (n, m, k)
        dc = np.einsum('mkd,nd->nmk', self.axes, d_positions)
        for sl in self._chunks():
            vals = self._outer(sl) * d_weights[sl, None].reshape(
                (-1, 1) + (1,) * k)
            for i in range(k):
                deriv = self._outer(sl, du=(i == 0), dv=(i == 1))
                coef = (weights[sl, None] * dc[sl, :, i]).reshape(bshape)
                vals = vals + coef * deriv
            self._scatter(out, sl, vals)
        return out

    def adjoint_jacobian(self, weights, data):
        """Return ``(grad_positions (n, d), grad_weights (n,))`` of <P(x,w), data>.

        ``data`` is the flat data array; no space weighting is applied.
        """
        if self._projector is not None:
            return self._projector.adjoint_profiles(
                self._compiled, self._weights(weights), self._data(data))
        k = len(self.profiles)
        grad_w = np.zeros(self.n_atoms)
        grad_c = np.zeros((self.n_atoms, self.frame.n_angles, k))
        for sl in self._chunks():
            local = self._gather(data, sl)
            grad_w[sl] = self._sum_window(self._outer(sl) * local).sum(axis=1)
            for i in range(k):
                deriv = self._outer(sl, du=(i == 0), dv=(i == 1))
                grad_c[sl, :, i] = self._sum_window(deriv * local)
        grad_c *= weights[:, None, None]
        grad_x = np.einsum('nmk,mkd->nd', grad_c, self.axes)
        return grad_x, grad_w

    def windows(self):
        """Return flat data indices and unit-weight values ``(n, K)`` per atom.

        Row ``i`` lists the data cells atom ``i`` touches (all angles) and the
        values of its projection there; entries outside the detector have
        value 0.
        """
        everything = slice(0, self.n_atoms)
        idx = self._index(everything).reshape(self.n_atoms, -1)
        val = self._outer(everything).reshape(self.n_atoms, -1)
        return idx, val

    def position_derivatives(self, weights):
        """Return flat data indices ``(n, K)`` and ``d data / d x`` ``(n, d, K)``.

        The columns of the Jacobian with respect to positions, atom by atom,
        on the atom's windows (the same ``K`` cells as `windows`): entry
        ``[i, j, k]`` is the derivative of data cell ``index[i, k]`` with
        respect to coordinate ``j`` of atom ``i``. Entries outside the
        detector are 0; an index may repeat within a row with value 0 there.
        """
        everything = slice(0, self.n_atoms)
        idx = self._index(everything).reshape(self.n_atoms, -1)
        k = len(self.profiles)
        # d(centre_i)/dx = axes[m, i, :] (chain rule as in apply_jacobian).
        deriv = [self._outer(everything, du=(i == 0), dv=(i == 1))
                 for i in range(k)]
        out = np.zeros((self.n_atoms, self.ndim) + deriv[0].shape[1:])
        extra = (None,) * (deriv[0].ndim - 2)
        for i in range(k):
            for j in range(self.ndim):
                out[:, j] += self.axes[:, i, j][(None, slice(None)) + extra] \
                    * deriv[i]
        out *= np.asarray(weights, dtype=float)[:, None, None] \
            .reshape((-1, 1) + (1,) * (out.ndim - 2))
        return idx, out.reshape(self.n_atoms, self.ndim, -1)

    def shift_jacobian(self, weights):
        """Return ``d P(x, w) / d s`` for detector shifts ``s``, shape ``(k, size)``.

        A shift ``s[a, j]`` of projection ``a`` along detector axis ``j``
        moves every atom's centre there; each data value depends on the
        shift of its own projection only, so row ``j`` holds, at every data
        value of angle ``a``, its derivative with respect to ``s[a, j]``
        (``sum_i w_i dP_i / dc_{i,a,j}``). The misfit gradient with respect
        to the shifts follows by summing ``row * residual`` per angle.
        Built from the same window profiles as `adjoint_jacobian` (either
        backend).
        """
        weights = self._weights(weights)
        k = len(self.profiles)
        out = np.zeros((k, int(np.prod(self.frame.shape))))
        for sl in self._chunks():
            scale = weights[sl].reshape((-1, 1) + (1,) * k)
            for j in range(k):
                self._scatter(out[j], sl, scale * self._outer(
                    sl, du=(j == 0), dv=(j == 1)))
        return out

    def correlate(self, data):
        """Return ``<P_i, data>`` for every unit atom ``i``, shape ``(n,)``.

        The weight part of `adjoint_jacobian` without the position part
        (a quarter of the work in 3D); same values, same order of sums.
        """
        if self._projector is not None:
            return self._projector.adjoint_profiles(
                self._compiled, np.ones(self.n_atoms), self._data(data),
                with_positions=False)[1]
        out = np.zeros(self.n_atoms)
        for sl in self._chunks():
            local = self._gather(data, sl)
            out[sl] = self._sum_window(self._outer(sl) * local).sum(axis=1)
        return out

    def self_inner(self):
        """Return ``sum over data of P_i^2`` for every atom, shape ``(n,)``.

        An atom's windows at one angle cover distinct cells, so this is the
        unweighted squared norm of the data of one unit atom.
        """
        if self._projector is not None:
            return self._projector.self_inner_profiles(self._compiled)
        out = np.zeros(self.n_atoms)
        for sl in self._chunks():
            out[sl] = self._sum_window(self._outer(sl) ** 2).sum(axis=1)
        return out


class SeparableGrid:

    """Correlations of unit atoms on a regular 3D grid with a tilt series.

    With a single tilt axis along a grid axis ``c`` (and the second detector
    axis along it), the detector coordinate ``v`` of a grid point depends on
    its index along ``c`` only and ``u`` on the two other indices only, so
    the profile of the atom at grid point ``(a, b, c)`` is ``P_u[ab] (x)
    P_v[c]`` and its correlation with an image ``r`` is the matrix product
    ``P_u r P_v^T``: per angle one small dense and one sparse matrix
    product (BLAS), instead of a gather of ``window^2`` values per point and
    angle. Memory is ``O(n_a n_b + n_c)`` profiles plus the output.

    Measured on a 62 x 45 detector, 5 angles, 13,800 grid points: the same
    correlations as `Stencil.correlate` (to rounding) about 40x faster.

    Use `SeparableGrid.build`, which returns None for geometries that do not
    separate. Other attributes (e.g. ``adjoint_jacobian``) are those of the
    full `Stencil` of the grid points, built on first use.

    Parameters
    ----------
    frame : `odl_atoms.geometry.DetectorFrame`
    vectors : three 1D arrays
        Grid coordinates along x, y, z; points in C order.
    axis : int
        The grid axis ``c`` along the tilt axis.
    sigma, truncate, mode :
        As for `Stencil`.
    """

    def __init__(self, frame, vectors, axis, sigma, truncate=6.0,
                 mode='integrate'):
        self.frame = frame
        self.vectors = [np.asarray(v, float) for v in vectors]
        self.axis = int(axis)
        self.sigma, self.truncate, self.mode = sigma, truncate, mode
        self.shape = tuple(v.size for v in self.vectors)
        self.n_atoms = int(np.prod(self.shape))
        c = self.axis
        a, b = [i for i in range(3) if i != c]
        self._ab = (a, b)
        m = frame.n_angles
        n_u, n_v = frame.shape[1:]
        # u-centres of the (a, b) columns and v-centres of the c layers.
        ga, gb = np.meshgrid(self.vectors[a], self.vectors[b], indexing='ij')
        u = (ga.ravel()[:, None] * frame.axes[None, :, 0, a]
             + gb.ravel()[:, None] * frame.axes[None, :, 0, b]
             + frame.offsets[None, :, 0])                        # (n_ab, m)
        v = (self.vectors[c][:, None] * frame.axes[None, :, 1, c]
             + frame.offsets[None, :, 1])                        # (n_c, m)
        from scipy.sparse import csr_matrix
        iu, pu, _ = _profile_1d(u, frame.edges[0], frame.centres[0], sigma,
                                truncate, mode)
        iv, pv, _ = _profile_1d(v, frame.edges[1], frame.centres[1], sigma,
                                truncate, mode)
        n_ab, n_c = u.shape[0], v.shape[0]
        rows_u = np.broadcast_to(np.arange(n_ab)[:, None], iu.shape[::2])
        rows_v = np.broadcast_to(np.arange(n_c)[:, None], iv.shape[::2])
        self._pu, self._pv = [], []
        for k in range(m):
            # Duplicate indices (windows clipped at the detector edge carry
            # zero values) are summed by the sparse constructor.
            self._pu.append(csr_matrix(
                (pu[:, k].ravel(), (rows_u.ravel(), iu[:, k].ravel())),
                shape=(n_ab, n_u)))
            self._pv.append(csr_matrix(
                (pv[:, k].ravel(), (rows_v.ravel(), iv[:, k].ravel())),
                shape=(n_c, n_v)).toarray())
        self._pu_columns = None  # the _pu by columns, for correlate_local
        self._stencil = None

    @classmethod
    def build(cls, frame, vectors, sigma, truncate=6.0, mode='integrate'):
        """Return a `SeparableGrid`, or None if the geometry does not separate."""
        if len(vectors) != 3 or len(frame.shape) != 3:
            return None
        axes = frame.axes  # (m, 2, 3)
        for c in range(3):
            others = [i for i in range(3) if i != c]
            if (np.allclose(axes[:, 0, c], 0, atol=1e-12)
                    and np.allclose(axes[:, 1, others], 0, atol=1e-12)):
                return cls(frame, vectors, c, sigma, truncate, mode)
        return None

    def _to_points(self, per_ab_c):
        """(n_a * n_b, n_c) array -> flat array in the grid's C order."""
        a, b = self._ab
        arr = per_ab_c.reshape(self.shape[a], self.shape[b], self.shape[self.axis])
        order = np.argsort([a, b, self.axis])
        return np.ascontiguousarray(np.transpose(arr, order)).ravel()

    def correlate(self, data):
        """Return ``<P_i, data>`` for every grid point (C order), ``(p,)``."""
        data = np.asarray(data, float).reshape(self.frame.shape)
        out = 0.0
        for k in range(self.frame.n_angles):
            out = out + self._pu[k] @ (data[k] @ self._pv[k].T)
        return self._to_points(np.asarray(out))

    def correlate_local(self, data):
        """Return ``(index, <P_i, data>)`` for data that vanish but in a patch.

        Only the grid points whose correlation with ``data`` is not zero
        are returned (flat C-order indices, each once): those in the layers
        whose ``v`` profiles reach the rows of ``data`` that are not zero
        and in the columns whose ``u`` profiles reach, at some angle, that
        angle's cells that are not zero. The work is that of the patch (the
        bounding box of the non-zero data), not of the grid: the update of
        `correlate` after a few atoms change.
        """
        data = np.asarray(data, float).reshape(self.frame.shape)
        nonzero = data != 0
        rows_v = np.flatnonzero(nonzero.any(axis=(0, 1)))
        if rows_v.size == 0:
            return np.zeros(0, int), np.zeros(0)
        v0, v1 = rows_v[0], rows_v[-1] + 1
        layers = np.flatnonzero(np.any(
            [pv[:, v0:v1].any(axis=1) for pv in self._pv], axis=0))
        if self._pu_columns is None:
            self._pu_columns = [pu.tocsc() for pu in self._pu]
        block = 0.0
        for k, cells in enumerate(nonzero.any(axis=2)):
            cells = np.flatnonzero(cells)
            if cells.size == 0:
                continue
            u0, u1 = cells[0], cells[-1] + 1
            small = data[k, u0:u1, v0:v1] @ self._pv[k][layers, v0:v1].T
            block = block + self._pu_columns[k][:, u0:u1] @ small
        block = np.asarray(block)
        ab = np.flatnonzero(block.any(axis=1))
        a, b = self._ab
        coords = [None] * 3
        coords[a], coords[b] = np.divmod(ab, self.shape[b])
        coords[a], coords[b] = coords[a][:, None], coords[b][:, None]
        coords[self.axis] = layers[None, :]
        index = np.ravel_multi_index(np.broadcast_arrays(*coords), self.shape)
        return index.ravel(), block[ab].ravel()

    def self_inner(self):
        """Return ``||P_i||^2`` for every grid point (C order)."""
        out = 0.0
        for k in range(self.frame.n_angles):
            su = np.asarray(self._pu[k].multiply(self._pu[k]).sum(axis=1)).ravel()
            sv = (self._pv[k] ** 2).sum(axis=1)
            out = out + su[:, None] * sv[None, :]
        return self._to_points(out)

    def points(self):
        """The grid points, ``(p, 3)``, C order."""
        mesh = np.meshgrid(*self.vectors, indexing='ij')
        return np.stack([g.ravel() for g in mesh], axis=1)

    def __getattr__(self, name):
        if name.startswith('_'):
            raise AttributeError(name)
        if self._stencil is None:
            self._stencil = Stencil(self.frame, self.points(), self.sigma,
                                    self.truncate, self.mode)
        return getattr(self._stencil, name)
