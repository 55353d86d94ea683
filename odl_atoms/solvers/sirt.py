"""SIRT on a pixel/voxel grid followed by atom picking: the classical baseline.

`SIRT` reconstructs a density image of the box on a regular grid with the
Simultaneous Iterative Reconstruction Technique,

    x_{k+1} = max(0, x_k + C R^T W (y - R x_k)),   W = 1 / R 1,  C = 1 / R^T 1,

(``R`` the pixel-based ray transform, ``1 / 0`` taken as 0), then picks atoms
in it (`odl_atoms.picking.AtomPicker`). It is built from the same
`GaussianRayTransform` as `ADCG` and reads the same data, so swapping one
method for the other is a one-line change.

Backends (``impl``):

``'astra_cpu'``
    ASTRA's own ``SIRT`` algorithm with ODL's geometry converters
    (`odl.applications.tomo.backends.astra_setup`) and ODL's default
    projector (``'linear'``), ``MinConstraint=0`` for non-negativity. 2D; a
    3D single-tilt-axis problem runs slice by slice (ASTRA has no 3D CPU
    projector).
``'astra_cuda'``
    ASTRA's ``SIRT3D_CUDA`` with ODL's CUDA converters, which describe 2D
    problems as one-slice 3D problems too (ODL 1.0's ``astra_cuda``
    ``RayTransform`` does the same, with the ``'2d_weighting'`` kernel):
    one code path for 2D and every parallel 3D geometry.
``'odl'``
    The update above written with ODL operators around ODL's ASTRA
    ``RayTransform`` (CUDA when available): slower, but any ODL machinery
    can be inserted.
``'skimage'``
    The same update around ODL's scikit-image ``RayTransform`` (2D, square
    box centred at the origin; slice by slice in 3D).

``impl=None`` takes ``'astra_cuda'`` when ASTRA reports a GPU, else
``'astra_cpu'``. ASTRA's SIRT and the ODL update around the same ASTRA
``RayTransform`` compute the same iterates (to float32 rounding; 1.5e-7
relative in the tests): ASTRA's SIRT uses the same matrix ``R`` as ODL's
``RayTransform``, and its weights cancel ODL's scaling of the adjoint.
Without CUDA, ``'odl'`` and ``'skimage'`` run 3D problems slice by slice
too. Only the CPU paths are tested here (no GPU on the test machines); the
CUDA path is ODL's own CUDA setup plus ``SIRT3D_CUDA``.

What to expect (2D vacancy phantom, 48 atoms 2.885 A apart, sigma 0.43 A,
96 detector cells, 0.5 % noise, defaults): F1 = 0.50 from 3 angles, 0.72
from 5, 1.00 from 15 (RMSD 0.07 A). SIRT needs many angles; from 2-5 it
smears atoms along the rays and the picker finds ghosts at ray crossings.

Units: ODL's ``RayTransform`` integrates along rays in angstrom, as the atom
operator does, so the image is a density in atoms per unit area (2D) or
volume (3D): an atom of weight ``w`` integrates to ``w`` over the image, and
SIRT, which fits the data, conserves the total weight.
"""

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import odl
from odl.applications import tomo

from odl_atoms.defaults import DISCREPANCY_TAU
from odl_atoms.geometry import DetectorFrame
from odl_atoms.picking import AtomPicker, render_atoms
from odl_atoms.parameter_choice import discrepancy_bound
from odl_atoms.solvers.base import Reconstruction, Solver
from odl_atoms.solvers.options import count, positive, set_option

__all__ = ('SIRT', 'DEFAULT_N_ITER', 'DEFAULT_TAU', 'SIRT_IMPLS',
           'nothing_picked_message')

#: Default number of iterations. SIRT's error falls fast for the first tens
#: of iterations and then slowly (its regularisation is early stopping). On
#: the 2D vacancy phantom from 15 angles (1 % noise) the picked atoms' RMSD
#: was 0.100 / 0.077 / 0.063 / 0.056 A after 50 / 150 / 300 / 500
#: iterations, with all atoms found from 50 on; 200 iterations of a 68 x 68
#: image from 15 projections take about half a second on one CPU core.
DEFAULT_N_ITER = 200

#: Default safety factor of the discrepancy principle: stop once
#: ``||R x - y|| <= tau * ||noise||`` (the toolkit's one `DISCREPANCY_TAU`;
#: above 1 also because the pixel model cannot fit Gaussian data exactly).
DEFAULT_TAU = DISCREPANCY_TAU

#: Accepted values of ``impl`` (``None`` chooses automatically).
SIRT_IMPLS = ('astra_cpu', 'astra_cuda', 'odl', 'skimage')

# Backends whose ray transform is 2D only: 3D problems run slice by slice.
_PLANAR = ('astra_cpu', 'skimage')

# ASTRA's SIRT treats weights with |x| <= eps as zero (rays or pixels
# outside the other's support); the ODL update does the same.
_EPS = 1e-6


def cuda_available():
    """Return whether ASTRA reports a usable CUDA GPU."""
    try:
        from odl.applications.tomo.backends import ASTRA_CUDA_AVAILABLE
    except ImportError:  # pragma: no cover - ODL without the CUDA backend
        return False
    return bool(ASTRA_CUDA_AVAILABLE)


@dataclass(frozen=True)
class _Options:

    """SIRT's options (see `SIRT`)."""

    n_iter: int = DEFAULT_N_ITER
    pixel_size: float = None
    impl: str = None
    nonnegative: bool = True
    picker: object = None
    tau: float = DEFAULT_TAU
    seed: object = None

    def __post_init__(self):
        set_option(self, 'n_iter', count('n_iter', self.n_iter))
        if self.pixel_size is not None:
            if isinstance(self.pixel_size, bool) or not isinstance(
                    self.pixel_size, numbers.Real) or not np.isfinite(
                        self.pixel_size) or self.pixel_size <= 0:
                raise ValueError(f'`pixel_size` must be a positive length in '
                                 f'angstrom, got {self.pixel_size!r}')
            set_option(self, 'pixel_size', float(self.pixel_size))
        if self.impl is not None and self.impl not in SIRT_IMPLS:
            raise ValueError(f'`impl` must be None or one of {SIRT_IMPLS}, '
                             f'got {self.impl!r}')
        set_option(self, 'nonnegative', bool(self.nonnegative))
        if self.picker is not None and not callable(self.picker):
            raise TypeError(f'`picker` must be an AtomPicker or a callable '
                            f'(image, space) -> SparseMeasure, got '
                            f'{self.picker!r}')
        set_option(self, 'tau', positive('tau', self.tau))


def _picker_weights(problem):
    """The problem's allowed weights as `AtomPicker` takes them (operator
    units), or None when the problem gives none (keep the estimates)."""
    if problem.weights is None:
        return None
    if len(problem.labels) == 1 and problem.labels[0] == 'X':
        return float(problem.allowed[0])
    return dict(zip(problem.labels.tolist(), problem.allowed.tolist()))


class SIRT(Solver):

    """SIRT image reconstruction followed by atom picking.

    The geometry, the box and the atom width come from the problem's
    operator; its allowed weights (if given) are the default picker's; with
    its noise level SIRT stops at the first iteration with
    ``||R x - y|| <= tau * ||noise||`` (the discrepancy principle,
    `~odl_atoms.parameter_choice.discrepancy_bound`; ``||noise||`` is the
    projection-space norm of white noise of that std), or after ``n_iter``
    iterations. SIRT ignores the problem's energy.

    Parameters
    ----------
    n_iter : int, optional
        Number of SIRT iterations (default `DEFAULT_N_ITER`, 200); fewer if
        the discrepancy principle stops earlier.
    pixel_size : positive float, optional
        Pixel (voxel) side in angstrom. Default: the detector cell size
        (along the first detector axis, across the tilt axis): the finest
        scale the data resolve; with ODL's ray-driven ``'linear'`` projector
        pixels smaller than the ray spacing alias (measured on the
        benchmarks page). Pixels are square: the grid covers the box,
        centred on it, with the box's extent rounded up to whole pixels.
    impl : {None, 'astra_cpu', 'astra_cuda', 'odl', 'skimage'}, optional
        Backend (see the module documentation). ``None``: ``'astra_cuda'``
        if ASTRA reports a GPU, else ``'astra_cpu'``.
    nonnegative : bool, optional
        Clip negative densities after each iteration (ASTRA's
        ``MinConstraint=0``). Default True: a density of atoms is never
        negative, and clipping removes the negative half of streaks.
    picker : `AtomPicker` or callable, optional
        Turns the image into atoms: ``picker(image, space) -> SparseMeasure``.
        Default ``AtomPicker(sigma, weights=problem.weights)`` (without
        weights in the problem, the estimated weights are kept). A given
        picker has its own weights: the problem must then have none.
    tau : float, optional
        Safety factor of the discrepancy principle (default `DEFAULT_TAU`).
    seed : int or Generator, optional
        Unused (SIRT and the picker are deterministic); kept for the
        interface.

    Notes
    -----
    ``solve`` returns a `Reconstruction` whose ``image`` is the SIRT image
    (an element of the plan's ``image_space``, `plan`), ``measure`` the
    picked atoms, ``objective`` the squared data residual ``||R x_k - y||^2``
    after every iteration (projection-space norm) and ``info`` the stop
    reason (``'n_iter'`` or ``'discrepancy'``), the backend, whether it ran
    slice by slice, the pixel size and the discrepancy threshold. The
    ``callback`` gets the atoms in the image after every iteration (found
    by peak finding and centres of mass, cheap enough for every iteration;
    the result's atoms come from the full picker), the
    ``image_callback`` the image itself.

    Geometries: 2D parallel beam on every backend (on the CPU backends with
    the detector centred on the rotation centre, as ODL's ``astra_cpu``
    and ``skimage`` transforms assume). 3D: with CUDA any
    parallel geometry; on the CPU (``'astra_cpu'``, ``'skimage'`` and
    ``'odl'`` without GPU) single-tilt-axis geometries
    (``Parallel3dAxisGeometry``) whose axis lies along a coordinate axis
    and whose second detector axis is that axis: every detector row then
    sees one slice of the volume, and the volume's slices along the axis are
    the detector rows that overlap the box (so the voxel height along the
    axis is the detector row height).

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import Problem, SparseMeasureSpace, GaussianRayTransform
    >>> space = SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 20),
    ...     odl.uniform_partition(-6, 6, 60))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.4)
    >>> truth = space.element([[-1.0, 0.5], [1.2, -0.7], [0.3, 1.9]])
    >>> result = SIRT().solve(Problem(op, op(truth)))
    >>> result.n_atoms
    3
    >>> np.abs(np.sort(result.measure.positions, 0)
    ...        - np.sort(truth.positions, 0)).max() < 0.05
    True

    The image is a density: it integrates to the number of atoms.

    >>> image = result.image
    >>> round(float(image.data.sum()) * image.space.cell_volume, 1)
    3.0
    """

    Options = _Options

    # --- Resolved parameters

    @property
    def resolved_impl(self):
        """The backend used: ``impl``, or the automatic choice."""
        if self.options.impl is not None:
            return self.options.impl
        return 'astra_cuda' if cuda_available() else 'astra_cpu'

    def resolved_pixel_size(self, problem):
        """Pixel side (angstrom): ``pixel_size`` or the default rule."""
        if self.options.pixel_size is not None:
            return self.options.pixel_size
        return float(problem.operator.geometry.det_partition.cell_sides[0])

    def plan(self, problem):
        """The image grid and backend for ``problem``.

        Raises an error for a geometry the backend cannot serve, before any
        work. The plan's ``image_space`` is the ``uniform_discr`` (float32)
        of the image, ``slices`` is not None when a 3D problem is solved as
        a stack of 2D slices.
        """
        return _Plan(problem.operator, self.resolved_impl,
                     self.resolved_pixel_size(problem))

    def picker_for(self, problem):
        """The picker: ``picker``, or `AtomPicker` with the problem's
        atom width and allowed weights (operator units)."""
        if self.options.picker is not None:
            return self.options.picker
        return AtomPicker(problem.sigma, weights=_picker_weights(problem))

    # --- Solving

    def solve(self, problem, initial=None, callback=None,
              image_callback=None, *, time_limit=None):
        """Reconstruct an image and pick atoms from it (see `Solver.solve`).

        ``image_callback``, if given, is called with the image after every
        iteration.
        """
        if image_callback is not None and not callable(image_callback):
            raise TypeError(f'`image_callback` must be callable, got '
                            f'{image_callback!r}')
        # A given picker would silently ignore the problem's weights.
        if (self.options.picker is not None
                and getattr(problem, 'weights', None) is not None):
            raise ValueError('give the allowed weights to the picker '
                             '(AtomPicker(sigma, weights=...)), not to the '
                             'Problem, when you pass a picker')
        self._image_callback = image_callback
        try:
            return super().solve(problem, initial, callback,
                                 time_limit=time_limit)
        finally:
            self._image_callback = None

    def _solve(self, problem, initial, callback, rng):
        plan = self.plan(problem)
        picker = self.picker_for(problem)
        operator = problem.operator
        image_callback = getattr(self, '_image_callback', None)
        y = np.asarray(problem.data.data, dtype=np.float32)
        start = None
        if initial is not None and initial.n_atoms:
            positions, weights, labels = problem.arrays(initial)
            start = render_atoms(operator.domain.element(
                positions, weights=weights, species=labels),
                plan.image_space, operator.sigma).data
        engine = plan.engine(y, start, self.options.nonnegative)
        weight = operator.inner_weight
        threshold = None
        bound = (discrepancy_bound(problem, self.options.tau)
                 if problem.noise_std else None)
        if bound is not None:
            threshold = np.sqrt(2 * bound)
        history = []
        stop = 'n_iter'

        # The iterates shown to ``callback`` are picked by peak finding and
        # centres of mass only: the Gaussian fits (or a network) at every
        # iteration would cost tens of times the SIRT iterations themselves
        # (measured: 200 iterations of a 3 x 3 lattice 0.5 s, 20 s with fits).
        quick = AtomPicker(problem.sigma, weights=_picker_weights(problem),
                           refine='com')

        def picked(image, with_picker=picker):
            found = with_picker(image, operator.domain)
            return problem.measure(found.positions, found.weights,
                                   found.species)

        try:
            for _ in range(self.options.n_iter):
                engine.step()
                residual = weight * engine.residual_sq()
                history.append(residual)
                if callback is not None or image_callback is not None:
                    image = plan.image(engine.images)
                    if image_callback is not None:
                        image_callback(image)
                    if callback is not None:
                        callback(picked(image, quick))
                if threshold is not None and np.sqrt(residual) <= threshold:
                    stop = 'discrepancy'
                    break
                if self.out_of_time():
                    stop = 'time_limit'
                    break
            image = plan.image(engine.images)
        finally:
            engine.close()
        measure = picked(image)
        info = {'stop_reason': stop, 'impl': plan.impl,
                'slice_by_slice': plan.slices is not None,
                'pixel_size': self.resolved_pixel_size(problem)}
        if threshold is not None:
            info['discrepancy_threshold'] = float(threshold)
        if measure.n_atoms == 0:
            # Say so, and why: a silent empty answer sent users looking for
            # the fault in the wrong place (issue 19).
            info['message'] = nothing_picked_message(problem, image, picker)
            warnings.warn(info['message'], UserWarning, stacklevel=3)
        return Reconstruction(measure=measure, objective=history,
                              n_iterations=len(history), image=image,
                              info=info)


def nothing_picked_message(problem, image, picker):
    """Why picking found no atom in a SIRT image, and what to do.

    The data's integral says how many atoms they hold
    (`~odl_atoms.problem.expected_atoms`). Under half an atom of the
    smallest allowed weight, or when no single atom fits the data anywhere
    (`~odl_atoms.calibration.scale_message`), the data are not in units of
    one atom (a microscope's fractions of the beam or counts): no peak of
    the image reaches an atom. Otherwise the atoms are there but the
    image's peaks stay below the picker's threshold (too few iterations, or
    too few angles smearing them).

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> import odl_atoms as oa
    >>> space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = oa.GaussianRayTransform(space, geometry, sigma=0.3)
    >>> atoms = space.element([[-1.0, 0.5], [1.2, -0.7]])
    >>> problem = oa.Problem(op, 0.01 * op(atoms).data)    # 1 % of an atom
    >>> print(nothing_picked_message(problem, None, oa.AtomPicker(0.3)))
    SIRT + picking found no atoms: the data hold 0.02 atoms of weight 1 (the integral of a projection per atom), so no peak reaches half an atom: the data are not in units of one atom (fractions of the beam or detector counts?). Calibrate them (odl_atoms.reconstruct calibrates data whose intensity_unit is not 'atoms'; odl_atoms.calibration.calibrate), or give the intensity of one atom in data units (reconstruct(..., intensity=...), --intensity) or the atom weights in data units
    """
    count = problem.expected_atoms()
    weight = float(problem.allowed.min() / problem.intensity)
    if count < 0.5:
        return (f'SIRT + picking found no atoms: the data hold {count:.2g} '
                f'atoms of weight {weight:g} (the integral of a projection '
                f'per atom), so no peak reaches half an atom: the data are '
                f'not in units of one atom (fractions of the beam or detector '
                f'counts?). Calibrate them (odl_atoms.reconstruct calibrates '
                f"data whose intensity_unit is not 'atoms'; "
                f'odl_atoms.calibration.calibrate), or give the intensity of '
                f'one atom in data units (reconstruct(..., intensity=...), '
                f'--intensity) or the atom weights in data units')
    from odl_atoms.calibration.scale import scale_message

    # The integral misses data in microscope units of a large particle
    # (hundreds of atoms at 0.4 % of the beam integrate to ~2 "atoms"); a
    # single atom that fits nowhere does not.
    scale = scale_message(problem.operator, problem.data,
                          float(problem.allowed.min()))
    if scale is not None:
        return f'SIRT + picking found no atoms: {scale}'
    peak = (float(np.max(image.data)) if image is not None
            and image.size else float('nan'))
    if image is not None and hasattr(picker, 'peak_threshold'):
        rule = (f'the picker takes peaks above '
                f'{picker.peak_threshold(image.space):.3g} and atoms of '
                f'weight >= half the smallest allowed')
        lower = "lower the picker's threshold (AtomPicker(threshold=..., " \
                "min_weight=...))"
    else:
        # A picker without a peak height (the learned one) decides by a
        # probability: no image value to quote.
        rule = f'{type(picker).__name__} found no peak'
        lower = "lower the picker's threshold"
    return (f'SIRT + picking found no atoms although the data hold '
            f'{count:.3g} atoms of weight {weight:g}: the image\'s highest '
            f'value is {peak:.3g}, {rule}. Run more iterations (n_iter) or '
            f'give more angles, {lower}, or use ADCG')


# --- Planning: grid, slicing, backend


class _Plan:

    """The grid and the backend of one SIRT problem."""

    def __init__(self, operator, impl, pixel_size):
        geometry = operator.geometry
        box = operator.domain
        self.impl = impl
        self.geometry = geometry
        if impl == 'astra_cuda' and not cuda_available():
            raise RuntimeError(
                "impl='astra_cuda' needs an NVIDIA GPU, but ASTRA reports "
                "none; use impl='astra_cpu' (or impl=None to choose "
                "automatically)")
        # The ray transform behind the ODL update and the residual.
        if impl == 'odl':
            self.ray_impl = 'astra_cuda' if cuda_available() else 'astra_cpu'
        else:
            self.ray_impl = impl
        self.slices = None
        if geometry.ndim == 3 and self.ray_impl in _PLANAR:
            self.slices = _SliceLayout(geometry, box, pixel_size, impl)
            self.image_space = self.slices.image_space
            self.solve_space = self.slices.plane_space
            self.solve_geometry = self.slices.plane_geometry
        else:
            if geometry.ndim == 2 and self.ray_impl in _PLANAR:
                _check_angle_only(geometry, impl)
            self.image_space = _box_grid(box.min_pt, box.max_pt, pixel_size)
            self.solve_space = self.image_space
            self.solve_geometry = geometry
        if impl == 'skimage':
            grid = self.solve_space
            mid = (np.asarray(grid.min_pt) + np.asarray(grid.max_pt)) / 2
            if grid.shape[0] != grid.shape[1] or not np.allclose(
                    mid, 0, atol=1e-9 * float(np.max(grid.max_pt - grid.min_pt))):
                raise ValueError(
                    f"impl='skimage' (scikit-image's radon transform) needs a "
                    f"square image centred at the origin, but the box gives "
                    f"a {grid.shape} grid centred at {mid.tolist()}; "
                    f"use a square box centred at 0, or impl='astra_cpu'")

    def engine(self, y, start, nonnegative):
        """Return a running SIRT for data ``y`` (float32, ODL layout)."""
        if self.slices is not None:
            sinograms = self.slices.split_data(y)
            starts = (None if start is None
                      else self.slices.split_image(start))
            outside = self.slices.outside_data(y)
        else:
            sinograms, starts, outside = [y], (None if start is None
                                               else [start]), 0.0
        ray = tomo.RayTransform(self.solve_space, self.solve_geometry,
                                impl=self.ray_impl)
        if starts is None:
            starts = [np.zeros(self.solve_space.shape, np.float32)
                      for _ in sinograms]
        if self.impl == 'astra_cpu':
            cls = _AstraCpuEngine
        elif self.impl == 'astra_cuda':
            cls = _AstraCudaEngine
        else:
            cls = _OdlEngine
        return cls(ray, sinograms, starts, nonnegative, outside)

    def image(self, images):
        """Return the iterate(s) as an element of `image_space` (a copy)."""
        if self.slices is not None:
            return self.slices.join(images)
        return self.image_space.element(np.array(images[0], copy=True))


def _box_grid(min_pt, max_pt, pixel_size):
    """Square-pixel float32 grid covering a box, centred on it.

    ASTRA's 2D projectors need square pixels, so the extent is rounded up to
    whole pixels instead of stretching the pixels to fit.
    """
    min_pt = np.asarray(min_pt, dtype=float)
    max_pt = np.asarray(max_pt, dtype=float)
    extent = max_pt - min_pt
    shape = np.maximum(np.ceil(extent / pixel_size - 1e-9).astype(int), 1)
    centre = (min_pt + max_pt) / 2
    half = shape * pixel_size / 2
    return odl.uniform_discr(centre - half, centre + half, tuple(shape),
                             dtype='float32')


class _SliceLayout:

    """A single-axis 3D problem as independent 2D slices.

    With the tilt axis along coordinate axis ``k`` and the detector's second
    axis along it, the detector row at ``v`` sees exactly the plane
    ``x_k = s (v - v0)``; its data are the 2D projections of that slice, in
    a 2D geometry with the same angles and the detector's first axis.
    """

    def __init__(self, geometry, box, pixel_size, impl):
        unsupported = (
            f'3D SIRT without CUDA (impl={impl!r}) works slice by slice, which '
            f'needs a Parallel3dAxisGeometry whose tilt axis is a coordinate '
            f'axis (e.g. axis=(0, 0, 1)) and whose second detector axis '
            f'is along it; got {type(geometry).__name__}')
        if not isinstance(geometry, tomo.Parallel3dAxisGeometry):
            raise ValueError(unsupported + '. Use a single-axis tilt series '
                             'or a machine with an NVIDIA GPU '
                             "(impl='astra_cuda')")
        frame = DetectorFrame.from_geometry(geometry)
        axes, offsets = frame.axes, frame.offsets  # (m, 2, 3), (m, 2)
        axis = np.asarray(geometry.axis, dtype=float)
        k = int(np.argmax(np.abs(axis)))
        unit = np.zeros(3)
        unit[k] = np.sign(axis[k])
        if not np.allclose(axis / np.linalg.norm(axis), unit, atol=1e-9):
            raise ValueError(unsupported + f' with axis {axis.tolist()}. '
                             'Rotate the box so that the tilt axis is a '
                             "coordinate axis, or use impl='astra_cuda'")
        # The detector row axis must be +-e_k at every angle, with a fixed
        # offset: then rows are slices.
        sign = np.sign(axes[0, 1, k])
        if not (np.allclose(axes[:, 1, :], sign * np.eye(3)[k], atol=1e-9)
                and np.allclose(offsets[:, 1], offsets[0, 1], atol=1e-9)):
            raise ValueError(unsupported + ' with detector axes '
                             f'{np.round(axes[0], 6).tolist()}; build it with '
                             'the default det_axes_init')
        self.k, self.sign = k, float(sign)
        self.v0 = float(offsets[0, 1])

        # Rows that overlap the box, in increasing x_k.
        dpart = geometry.det_partition
        edges = np.asarray(dpart.cell_boundary_vecs[1], dtype=float)
        xk_edges = (edges - self.v0) / self.sign
        lo = np.minimum(xk_edges[:-1], xk_edges[1:])
        hi = np.maximum(xk_edges[:-1], xk_edges[1:])
        rows = np.flatnonzero((hi > box.min_pt[k]) & (lo < box.max_pt[k]))
        if rows.size == 0:
            raise ValueError('no detector row sees the box; the geometry '
                             'does not match the atom space')
        rows = rows[np.argsort(lo[rows])]
        self.rows = rows
        self.n_rows = edges.size - 1

        # In-plane coordinates (p, q), oriented so that the tilt is a
        # positive rotation of the plane, as in ODL's 2D geometry.
        plane = {0: (1, 2), 1: (2, 0), 2: (0, 1)}[k]
        if sign < 0:
            plane = plane[::-1]
        self.plane = plane
        self.plane_geometry = _plane_geometry(geometry, frame, plane)
        self.plane_space = _box_grid(box.min_pt[list(plane)],
                                     box.max_pt[list(plane)], pixel_size)

        min_pt = np.empty(3)
        max_pt = np.empty(3)
        shape = [0, 0, 0]
        min_pt[list(plane)] = self.plane_space.min_pt
        max_pt[list(plane)] = self.plane_space.max_pt
        shape[plane[0]], shape[plane[1]] = self.plane_space.shape
        min_pt[k], max_pt[k] = lo[rows].min(), hi[rows].max()
        shape[k] = rows.size
        self.image_space = odl.uniform_discr(min_pt, max_pt, shape,
                                             dtype='float32')
        # Axis order of an array stacked as (k, p, q), to be put in (0, 1, 2).
        self._order = tuple((k,) + plane)

    def split_data(self, y):
        """2D sinograms ``(m, n_u)`` of the slices, C-contiguous float32."""
        return [np.ascontiguousarray(y[:, :, row], dtype=np.float32)
                for row in self.rows]

    def outside_data(self, y):
        """Sum of squares of the rows that see no slice (left unexplained)."""
        mask = np.ones(self.n_rows, dtype=bool)
        mask[self.rows] = False
        return float(np.sum(np.asarray(y[:, :, mask], float) ** 2))

    def split_image(self, image):
        """Slices ``(n_p, n_q)`` of a volume array."""
        stacked = np.transpose(image, self._order)
        return [np.ascontiguousarray(s, dtype=np.float32) for s in stacked]

    def join(self, images):
        """Volume element from slices."""
        stacked = np.stack(images)  # (k, p, q)
        return self.image_space.element(
            np.transpose(stacked, np.argsort(self._order)))


def _plane_geometry(geometry, frame, plane):
    """The 2D geometry of one slice of a single-axis 3D geometry.

    ODL's ``astra_cpu`` backend describes a 2D parallel geometry by its angles
    alone, so the slice geometry is a default ``Parallel2dGeometry`` whose
    angles are shifted to turn its detector like the 3D one's.
    """
    p = list(plane)
    axes = frame.axes[:, 0, p]  # (m, 2): detector axis in the plane
    angles = np.asarray(geometry.motion_partition.grid.coord_vectors[0])
    shift = float(np.arctan2(axes[0, 1], axes[0, 0]) - angles[0])
    apart = geometry.motion_partition
    apart = odl.nonuniform_partition(angles + shift,
                                     min_pt=apart.min_pt[0] + shift,
                                     max_pt=apart.max_pt[0] + shift)
    upart = geometry.det_partition.byaxis[0]
    g2 = tomo.Parallel2dGeometry(apart, upart)
    # The slice geometry must put every in-plane point where the 3D one
    # does; check it rather than trust the conventions (ASTRA's 'parallel'
    # geometry also centres the detector on the rotation axis).
    f2 = DetectorFrame.from_geometry(g2)
    centred = abs(float(upart.mid_pt[0])) <= 1e-9 * float(upart.extent[0])
    if not (centred and np.allclose(f2.axes[:, 0, :], axes, atol=1e-9)
            and np.allclose(f2.offsets[:, 0], frame.offsets[:, 0],
                            atol=1e-9)):
        raise ValueError(
            'cannot describe the slices of this 3D geometry as standard 2D '
            'parallel geometries (is it translated, or its detector shifted '
            'within the tilt plane?); build it without translation and '
            "det_pos_init, or use impl='astra_cuda' on a machine with a GPU")
    return g2


def _check_angle_only(geometry, impl):
    """Raise unless a 2D geometry is described by its angles alone.

    ODL's ``astra_cpu`` backend hands ASTRA a ``'parallel'`` geometry made of
    the angles and the detector cell size only: a translation, a rotated or
    shifted ``det_pos_init``, or a detector not centred on the rotation
    centre are silently dropped, and SIRT would reconstruct from data it
    misreads.
    """
    standard = tomo.Parallel2dGeometry(geometry.motion_partition,
                                       geometry.det_partition)
    mine, ref = (DetectorFrame.from_geometry(g) for g in (geometry, standard))
    centred = abs(float(geometry.det_partition.mid_pt[0])) <= 1e-9 * float(
        geometry.det_partition.extent[0])
    if not (centred and np.allclose(mine.axes, ref.axes, atol=1e-9)
            and np.allclose(mine.offsets, ref.offsets, atol=1e-9)):
        raise ValueError(
            f'impl={impl!r} (ODL\'s astra_cpu/skimage ray transforms) only '
            f'knows 2D parallel geometries by their angles: the detector '
            f'must be centred on the rotation centre, with the default '
            f'det_pos_init and no translation. Build the geometry with '
            f'tomo.Parallel2dGeometry(angle_partition, detector_partition) '
            f'and a detector partition symmetric about 0, or use '
            f"impl='astra_cuda'")


# --- Engines: one SIRT iteration on one or several (slice) problems


class _Engine:

    """Common part: images, data, residuals through ODL's RayTransform."""

    def __init__(self, ray, sinograms, starts, nonnegative, outside):
        self.ray = ray
        self.sinograms = sinograms
        self.images = [np.ascontiguousarray(s, dtype=np.float32)
                       for s in starts]
        self.nonnegative = nonnegative
        self.outside = outside

    def forward(self, i):
        return self.ray(self.ray.domain.element(self.images[i])).data

    def residual_sq(self):
        """``sum_i ||R x_i - y_i||^2`` (unweighted, float64)."""
        total = self.outside
        for i, y in enumerate(self.sinograms):
            diff = np.asarray(self.forward(i), float) - y
            total += float(np.sum(diff ** 2))
        return total

    def close(self):
        pass


class _OdlEngine(_Engine):

    """``x += C R^*(W (y - R x))`` with ODL's operators."""

    def __init__(self, ray, sinograms, starts, nonnegative, outside):
        super().__init__(ray, sinograms, starts, nonnegative, outside)
        row = ray(ray.domain.one()).data
        col = ray.adjoint(ray.range.one()).data
        self.w = _safe_inverse(row)
        self.c = _safe_inverse(col)
        self._forward = {}

    def forward(self, i):
        # Cached: the residual of x_k is the start of the step to x_{k+1}.
        if i not in self._forward:
            self._forward[i] = super().forward(i)
        return self._forward[i]

    def step(self):
        ray = self.ray
        for i, y in enumerate(self.sinograms):
            r = ray.range.element(self.w * (y - self.forward(i)))
            update = self.c * ray.adjoint(r).data
            x = self.images[i] + update
            if self.nonnegative:
                np.maximum(x, 0, out=x)
            self.images[i] = x.astype(np.float32, copy=False)
        self._forward = {}


def _safe_inverse(arr):
    arr = np.asarray(arr, dtype=np.float32)
    out = np.zeros_like(arr)
    big = np.abs(arr) > _EPS
    out[big] = 1 / arr[big]
    return out


class _AstraEngine(_Engine):

    """What ASTRA's 2D (CPU) and 3D (CUDA) SIRT engines share."""

    def step(self):
        for alg in self.algorithms:
            self._astra.algorithm.run(alg, 1)

    def close(self):
        for alg in self.algorithms:
            self._astra.algorithm.delete(alg)
        if self.data_ids:
            self._data_module().delete(self.data_ids)
        if self.projector is not None:
            self._projector_module().delete(self.projector)
        self.algorithms, self.data_ids, self.projector = [], [], None


class _AstraCpuEngine(_AstraEngine):

    """ASTRA's ``SIRT`` (2D, CPU), one algorithm object per slice."""

    def __init__(self, ray, sinograms, starts, nonnegative, outside):
        import astra
        from odl.applications.tomo.backends import astra_setup
        super().__init__(ray, sinograms, starts, nonnegative, outside)
        self._astra = astra
        vol_geom = astra_setup.astra_volume_geometry(ray.domain, 'cpu')
        proj_geom = astra_setup.astra_projection_geometry(ray.geometry, 'cpu')
        # ODL's astra_cpu RayTransform uses this projector for parallel 2D.
        self.projector = astra_setup.astra_projector('linear', vol_geom,
                                                     proj_geom, 2)
        self.data_ids, self.algorithms = [], []
        try:
            for sino, image in zip(self.sinograms, self.images):
                # Linked, not copied: ASTRA iterates in our arrays.
                sino_id = astra_setup.astra_data(proj_geom, 'projection', sino)
                vol_id = astra_setup.astra_data(vol_geom, 'volume', image)
                self.data_ids += [sino_id, vol_id]
                self.algorithms.append(astra.algorithm.create(
                    _sirt_config('SIRT', sino_id, vol_id, self.projector,
                                 nonnegative)))
        except Exception:
            self.close()
            raise

    def _data_module(self):
        return self._astra.data2d

    def _projector_module(self):
        return self._astra.projector


class _AstraCudaEngine(_AstraEngine):

    """ASTRA's ``SIRT3D_CUDA`` for 2D (one slice) and 3D problems."""

    def __init__(self, ray, sinograms, starts, nonnegative, outside):
        import astra
        from odl.applications.tomo.backends import astra_setup
        super().__init__(ray, sinograms, starts, nonnegative, outside)
        self._astra = astra
        geometry = ray.geometry
        vol_geom = astra_setup.astra_volume_geometry(ray.domain, 'cuda')
        proj_geom = astra_setup.astra_projection_geometry(geometry, 'cuda')
        flat = geometry.ndim == 2
        self.projector = astra_setup.astra_projector(
            'cuda3d', vol_geom, proj_geom, 3, override_2D=flat)
        # ASTRA's layouts (as ODL's astra_cuda backend uses them): volumes
        # (1, nx, ny) in 2D and (nx, ny, nz) in 3D; projections
        # (1, angles, n) in 2D and (n_u, angles, n_v) in 3D.
        if flat:
            self._vol = [im[None] for im in self.images]
            sinos = [s[None] for s in self.sinograms]
        else:
            self._vol = self.images
            sinos = [np.ascontiguousarray(s.transpose(1, 0, 2))
                     for s in self.sinograms]
        self._sinos = sinos
        self.data_ids, self.algorithms = [], []
        try:
            for sino, vol in zip(sinos, self._vol):
                sino_id = astra.data3d.link('-sino', proj_geom, sino)
                vol_id = astra.data3d.link('-vol', vol_geom, vol)
                self.data_ids += [sino_id, vol_id]
                self.algorithms.append(astra.algorithm.create(
                    _sirt_config('SIRT3D_CUDA', sino_id, vol_id,
                                 self.projector, nonnegative)))
        except Exception:
            self.close()
            raise

    def _data_module(self):
        return self._astra.data3d

    def _projector_module(self):
        return self._astra.projector3d


def _sirt_config(kind, sino_id, vol_id, projector_id, nonnegative):
    cfg = {'type': kind, 'ProjectorId': projector_id,
           'ProjectionDataId': sino_id, 'ReconstructionDataId': vol_id,
           'option': {}}
    if nonnegative:
        cfg['option']['MinConstraint'] = 0.0
    return cfg
