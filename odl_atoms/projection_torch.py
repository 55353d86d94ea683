"""Exact projections of Gaussian atoms with PyTorch, on any torch device.

This is the PyTorch twin of `odl_atoms.projection` (same model, same window,
same tail-safe cell integrals; see there for the formulas). It serves
`GaussianRayTransform` when its range is a projection space on ODL's
``'pytorch'`` array backend: the detector frame lives on the device once, a
`TorchStencil` evaluates each atom's separable 1D profiles vectorised over
atoms x angles x window cells, and the forward projection is one
``index_add_`` scatter per chunk of atoms. Only the (small) positions and
weights cross from the host to the device; the data never go through NumPy.

Precision: detector coordinates and the standardised offsets ``(edge - c) /
sigma`` are always formed in float64 (they subtract numbers of the size of the
box, where float32 would lose about 1e-5 of ``sigma``), then the profiles, the
scatter and the result use the dtype of the range. A float32 range is
therefore fast on a GPU and accurate to float32 rounding.

torch is imported inside the functions (as everywhere in the package), so
this module imports without it and only ``impl='pytorch'`` needs it.

Threads: on the CPU every projection here runs with `cpu_threads` (one
torch thread unless ``ODL_ATOMS_TORCH_THREADS`` says otherwise). The
tensors are small (a few atoms' windows), and with torch's default of one
thread per core the threads wait on one another: measured on 2 shared
cores under load, a 1000-atom 2D projection took 2.5 s of wall time and
0.23 s of CPU with 2 threads, 0.15 s and 0.008 s with one (see
``benchmarks/speed.py``). A GPU is where this path pays; on the CPU the
NumPy and compiled paths are faster.
"""

import contextlib
import functools
import math
import os

import numpy as np

from odl_atoms.projection import WindowedProfiles

__all__ = ('TorchFrame', 'TorchStencil', 'check_torch_device',
           'cpu_threads', 'require_torch', 'TORCH_CPU_THREADS')

#: Torch threads on the CPU while this package computes (`cpu_threads`);
#: the environment variable ``ODL_ATOMS_TORCH_THREADS`` overrides it.
TORCH_CPU_THREADS = 1

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# Window values per chunk of atoms in the outer products (3D) and scatters:
# bounds peak device memory (about 50 MB of float64 temporaries per chunk)
# while keeping each kernel launch large enough for a GPU.
_CHUNK_VALUES = 4_000_000


def require_torch():
    """Return the ``torch`` module, or raise an error that says what to install.

    Returns
    -------
    module
        ``torch``.
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "impl='pytorch' needs PyTorch: install it with "
            "`pip install odl_atoms[learn]` (or `pip install torch`), or use "
            "the default impl='numpy'") from exc
    return torch


def check_torch_device(device):
    """Return ODL's name of a torch device, or raise a clear error.

    ODL 1.0 lists its pytorch devices as ``'cpu'`` and ``'cuda:<i>'`` and
    rejects a bare ``'cuda'``; this maps ``'cuda'`` to the current CUDA device
    so that users may write either.

    Parameters
    ----------
    device : str or `torch.device`
        ``'cpu'``, ``'cuda'`` or ``'cuda:<i>'``.

    Returns
    -------
    str
        ``'cpu'`` or ``'cuda:<i>'``.

    Examples
    --------
    >>> check_torch_device('cpu')
    'cpu'
    """
    torch = require_torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"`device` must be a torch device such as 'cpu' or 'cuda', got "
            f"{device!r}") from exc
    if dev.type == 'cpu':
        return 'cpu'
    if dev.type != 'cuda':
        raise ValueError(
            f"only 'cpu' and 'cuda' devices are supported (those are the ones "
            f"ODL's pytorch backend knows), got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"`device={device!r}` was requested, but this torch build "
            f"({torch.__version__}) sees no CUDA device; use device='cpu', or "
            f"install a CUDA build of torch on a machine with an NVIDIA GPU")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise ValueError(
            f'`device={device!r}`: there are only {torch.cuda.device_count()} '
            f'CUDA device(s)')
    return f'cuda:{index}'


def _thread_count(threads=None):
    """``threads``, else ``ODL_ATOMS_TORCH_THREADS``, else the default."""
    if threads is None:
        text = os.environ.get('ODL_ATOMS_TORCH_THREADS', '').strip()
        try:
            threads = int(text) if text else TORCH_CPU_THREADS
        except ValueError:
            raise ValueError(f'ODL_ATOMS_TORCH_THREADS must be a whole '
                             f'number of threads, got {text!r}') from None
    if threads < 1:
        raise ValueError(f'torch needs at least one thread, got {threads!r}')
    return int(threads)


@contextlib.contextmanager
def cpu_threads(device, threads=None):
    """Run the block with ``threads`` torch threads if ``device`` is the CPU.

    Default: `TORCH_CPU_THREADS` (one), or the environment variable
    ``ODL_ATOMS_TORCH_THREADS``. Torch's own setting is restored afterwards;
    on a GPU nothing changes.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with cpu_threads('cpu', 1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    torch = require_torch()
    if torch.device(device).type != 'cpu':
        yield
        return
    threads = _thread_count(threads)
    before = torch.get_num_threads()
    if before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _on_cpu_threads(method):
    """Run a method of an object with a ``device`` under `cpu_threads`."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with cpu_threads(self.device):
            return method(self, *args, **kwargs)
    return wrapper


def torch_dtype(dtype):
    """Return the torch dtype named like a NumPy/ODL dtype (``'float32'``)."""
    torch = require_torch()
    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, np.dtype(dtype).name)


class TorchFrame:

    """A `DetectorFrame` copied to a torch device (float64).

    Parameters
    ----------
    frame : `odl_atoms.geometry.DetectorFrame`
        The frame to copy.
    device : str
        Torch device name, e.g. ``'cpu'`` or ``'cuda:0'``.
    """

    def __init__(self, frame, device):
        torch = require_torch()
        self.frame = frame
        self.device = torch.device(device)

        def put(a):
            return torch.tensor(np.asarray(a, dtype=float), device=self.device)

        self.axes = put(frame.axes)            # (m, k, d)
        self.offsets = put(frame.offsets)      # (m, k)
        self.edges = tuple(put(e) for e in frame.edges)
        self.centres = tuple(put(c) for c in frame.centres)
        self.widths = tuple(torch.diff(e) for e in self.edges)
        # The window length is a Python int: from the host copy, no sync.
        self.min_widths = tuple(float(np.diff(e).min()) for e in frame.edges)
        self.shape = tuple(frame.shape)
        self.n_angles = frame.n_angles

    def coordinates(self, positions):
        """Detector coordinates ``(n, m, k)`` of points ``(n, d)`` (float64)."""
        torch = require_torch()
        return torch.einsum('mkd,nd->nmk', self.axes, positions) + self.offsets


def _profile_1d(centres, edges, mids, widths, min_width, sigma, truncate,
                mode, dtype):
    """Torch version of `odl_atoms.projection._profile_1d`.

    ``centres`` is ``(n, m)`` float64; returns ``index`` (int64) and
    ``value``, ``deriv`` in ``dtype``, all ``(n, m, w)``.
    """
    torch = require_torch()
    n_cells = mids.numel()
    w = int(min(n_cells, math.ceil(2 * truncate * sigma / min_width) + 2))
    first = torch.searchsorted(edges, (centres - truncate * sigma).contiguous(),
                               right=True) - 1
    first = first.clamp(0, max(n_cells - w, 0))
    raw = first[..., None] + torch.arange(w, device=edges.device)
    valid = raw < n_cells
    index = raw.clamp(max=n_cells - 1)
    c = centres[..., None]
    if mode == 'integrate':
        edge_index = (first[..., None] + torch.arange(
            w + 1, device=edges.device)).clamp(max=n_cells)
        z = ((edges[edge_index] - c) / sigma).to(dtype)
        tail = torch.special.ndtr(-z.abs())
        density = torch.exp(-0.5 * z * z)
        lo, hi = z[..., :-1], z[..., 1:]
        t_lo, t_hi = tail[..., :-1], tail[..., 1:]
        h = widths[index].to(dtype)
        value = torch.where(hi <= 0, t_hi - t_lo,
                            torch.where(lo >= 0, t_lo - t_hi,
                                        1.0 - t_lo - t_hi)) / h
        deriv = (density[..., :-1] - density[..., 1:]) * (
            _INV_SQRT_2PI / sigma) / h
    else:
        t = ((mids[index] - c) / sigma).to(dtype)
        value = torch.exp(-0.5 * t * t) * (_INV_SQRT_2PI / sigma)
        deriv = value * (t / sigma)
    zero = torch.zeros((), dtype=dtype, device=edges.device)
    value = torch.where(valid, value, zero)
    deriv = torch.where(valid, deriv, zero)
    return index, value, deriv


class TorchStencil(WindowedProfiles):

    """Projected profiles of a set of atoms on a torch device.

    Mirrors `odl_atoms.projection.Stencil`: ``project``, ``apply_jacobian``
    and ``adjoint_jacobian`` are scatters (``index_add_``) and gathers through
    each atom's window. Inputs may be NumPy arrays or tensors; outputs are
    tensors on the frame's device in ``dtype``.

    Parameters
    ----------
    frame : `TorchFrame`
        Detector frame on the device.
    positions : array-like, shape ``(n, d)``
        Atom positions (angstrom).
    sigma : float
        Gaussian standard deviation of an atom (angstrom).
    truncate : float, optional
        Half-width of the window in units of ``sigma``.
    mode : {'integrate', 'sample'}, optional
        Cell averages or cell-centre samples.
    dtype : str or `torch.dtype`, optional
        Dtype of the profiles and of the results.
    """

    chunk_values = _CHUNK_VALUES

    def __init__(self, frame, positions, sigma, truncate=6.0,
                 mode='integrate', dtype='float64'):
        with cpu_threads(frame.device):
            self._setup(frame, positions, sigma, truncate, mode, dtype)

    def _setup(self, frame, positions, sigma, truncate, mode, dtype):
        torch = require_torch()
        self.frame = frame
        self.dtype = torch_dtype(dtype)
        self.device = frame.device
        positions = self._tensor(positions, torch.float64)
        self.n_atoms, self.ndim = positions.shape
        centres = frame.coordinates(positions)  # (n, m, k), float64
        self.profiles = [
            _profile_1d(centres[..., i], frame.edges[i], frame.centres[i],
                        frame.widths[i], frame.min_widths[i], sigma, truncate,
                        mode, self.dtype)
            for i in range(centres.shape[-1])]
        det = frame.shape[1:]
        angle_offset = (torch.arange(frame.n_angles, device=self.device)
                        * math.prod(det))[None, :, None]
        if len(det) == 1:
            self._flat = [angle_offset + self.profiles[0][0]]
        else:
            self._flat = [angle_offset + self.profiles[0][0] * det[1],
                          self.profiles[1][0]]
        self.size = math.prod(frame.shape)

    def _tensor(self, a, dtype=None):
        torch = require_torch()
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            a = a.copy()  # torch warns on read-only arrays (ODL's may be)
        return torch.as_tensor(a, dtype=dtype or self.dtype, device=self.device)

    # --- Helpers over atom chunks (as in Stencil)

    def _bcast(self, per_atom_angle):
        """Reshape ``(n,)`` or ``(n, m)`` to broadcast over the window axes."""
        extra = (1,) * len(self.profiles)
        if per_atom_angle.ndim == 1:
            return per_atom_angle.reshape((-1, 1) + extra)
        return per_atom_angle.reshape(per_atom_angle.shape + extra)

    def _scatter(self, out, sl, values):
        # index_add_ is a single kernel on a GPU (atomic adds: the summation
        # order, hence the last bits, may differ between runs there).
        out.index_add_(0, self._index(sl).reshape(-1), values.reshape(-1))

    @staticmethod
    def _sum_window(arr):
        return arr.reshape(arr.shape[0], arr.shape[1], -1).sum(dim=-1)

    # --- Linear maps

    @_on_cpu_threads
    def project(self, weights):
        """Return ``sum_i w_i P_i`` as a flat tensor of the data size."""
        torch = require_torch()
        weights = self._tensor(weights)
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for sl in self._chunks():
            self._scatter(out, sl, self._outer(sl) * self._bcast(weights[sl]))
        return out

    @_on_cpu_threads
    def apply_jacobian(self, weights, d_positions, d_weights):
        """Directional derivative along ``(d_positions, d_weights)``."""
        torch = require_torch()
        weights = self._tensor(weights)
        d_weights = self._tensor(d_weights)
        dc = torch.einsum('mkd,nd->nmk', self.frame.axes,
                          self._tensor(d_positions, torch.float64)).to(self.dtype)
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for sl in self._chunks():
            vals = self._outer(sl) * self._bcast(d_weights[sl])
            for i in range(len(self.profiles)):
                deriv = self._outer(sl, du=(i == 0), dv=(i == 1))
                vals = vals + self._bcast(weights[sl, None] * dc[sl, :, i]) * deriv
            self._scatter(out, sl, vals)
        return out

    @_on_cpu_threads
    def adjoint_jacobian(self, weights, data):
        """Return ``(grad_positions (n, d), grad_weights (n,))`` of <P(x,w), data>.

        ``data`` is the flat data tensor (or array); no space weighting is
        applied. The position gradient is float64, the weight gradient has
        the stencil's dtype.
        """
        torch = require_torch()
        weights = self._tensor(weights)
        data = self._tensor(data).reshape(-1)
        k = len(self.profiles)
        grad_w = torch.zeros(self.n_atoms, dtype=self.dtype, device=self.device)
        grad_c = torch.zeros((self.n_atoms, self.frame.n_angles, k),
                             dtype=self.dtype, device=self.device)
        for sl in self._chunks():
            local = data[self._index(sl)]
            grad_w[sl] = self._sum_window(self._outer(sl) * local).sum(dim=1)
            for i in range(k):
                deriv = self._outer(sl, du=(i == 0), dv=(i == 1))
                grad_c[sl, :, i] = self._sum_window(deriv * local)
        grad_c = grad_c.to(torch.float64) * weights.to(torch.float64)[:, None, None]
        grad_x = torch.einsum('nmk,mkd->nd', grad_c, self.frame.axes)
        return grad_x, grad_w
