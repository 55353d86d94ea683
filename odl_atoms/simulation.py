"""Simulated tilt series: geometry around a box, exact data, noise.

`tilt_geometry` builds the parallel-beam geometry of a tilt series whose
detector sees the whole box at every angle; `simulate` projects a configuration
with the exact Gaussian-atom operator, adds noise and returns a
`ProjectionData` (which the command line writes to a file, and every solver
reads).
"""

import math
import numbers

import numpy as np
import odl
from odl.applications import tomo

from odl_atoms.errors import ValidationError, ValidationTypeError
from odl_atoms.io import ProjectionData
from odl_atoms.noise import add_noise
from odl_atoms.operators import GaussianRayTransform
from odl_atoms.resources import ProblemSize, simulation_memory
from odl_atoms.space import SparseMeasure, SparseMeasureSpace

__all__ = ('tilt_geometry', 'simulate')


def _corners(space):
    lo, hi = space.min_pt, space.max_pt
    grids = np.meshgrid(*[[a, b] for a, b in zip(lo, hi)], indexing='ij')
    return np.stack([g.ravel() for g in grids], axis=1)


def tilt_geometry(space, angles, n_detector=None, cell=None, margin=None,
                  axis=(0, 0, 1)):
    """Return a parallel-beam geometry whose detector covers the box.

    Parameters
    ----------
    space : `SparseMeasureSpace`
        The box (2D: ``Parallel2dGeometry``; 3D: ``Parallel3dAxisGeometry``).
    angles : array-like
        Tilt angles in radians (any order is sorted; must be distinct).
    n_detector : int or pair of int, optional
        Number of detector cells (per axis in 3D; one int means the same
        cell size along both axes).
    cell : float, optional
        Detector cell size in angstrom, instead of ``n_detector``; the
        detector is then the shadow of the box rounded up to whole cells.
    margin : float, optional
        Extra detector length (angstrom) on each side beyond the box's
        shadow; default 0.
    axis : array-like, optional
        Tilt axis of 3D geometries.

    Examples
    --------
    >>> space = SparseMeasureSpace([-5, -5], [5, 5])
    >>> geometry = tilt_geometry(space, np.radians([0, 45, 90]), 64)
    >>> geometry.det_partition.min_pt, geometry.det_partition.max_pt
    (array([-7.0710678...]), array([ 7.0710678...]))
    """
    apart, half, shape = _detector(space, angles, n_detector, cell, margin,
                                   axis)
    if space.ndim == 2:
        return tomo.Parallel2dGeometry(
            apart, odl.uniform_partition(-half[0], half[0], int(shape[0])))
    return tomo.Parallel3dAxisGeometry(
        apart, odl.uniform_partition(-half, half, tuple(shape)), axis=axis)


def _detector(space, angles, n_detector=None, cell=None, margin=None,
              axis=(0, 0, 1)):
    """``(apart, half, shape)``: the angle partition of `tilt_geometry`, and
    its detector's half sizes and cells per axis (arrays), without building
    the detector (whose size is checked first)."""
    if not isinstance(space, SparseMeasureSpace):
        raise TypeError(f'`space` must be a SparseMeasureSpace, got {space!r}')
    angles = np.sort(np.array(angles, dtype=float, ndmin=1))
    if angles.ndim != 1 or angles.size == 0 or not np.all(np.isfinite(angles)):
        raise ValidationError(f'`angles` must be a non-empty list of '
                              f'numbers, got {angles}')
    if np.any(np.diff(angles) <= 0):
        raise ValidationError(f'`angles` must be distinct, got '
                              f'{angles.tolist()}')
    if (n_detector is None) == (cell is None):
        raise ValidationError('give exactly one of `n_detector` and `cell`')
    if cell is not None:
        cell = float(cell)
        if not cell > 0:
            raise ValidationError(f'detector `cell` must be positive, got '
                                  f'{cell}')
    margin = 0.0 if margin is None else float(margin)
    corners = _corners(space)
    if angles.size == 1:
        apart = odl.nonuniform_partition(angles, min_pt=angles[0] - np.pi / 2,
                                         max_pt=angles[0] + np.pi / 2)
    else:
        apart = odl.nonuniform_partition(angles)
    if space.ndim == 2:
        # Shadow of the box: detector coordinates of its corners at all angles.
        probe = tomo.Parallel2dGeometry(apart, odl.uniform_partition(-1, 1, 2))
        u = np.einsum('md,cd->mc', probe.det_axis(angles), corners)
        half = np.abs(u).max() + margin
        if cell is not None:
            n_detector = int(np.ceil(2 * half / cell))
            half = n_detector * cell / 2
        if not isinstance(n_detector, numbers.Integral):
            raise ValidationTypeError(f'2D needs one integer `n_detector`, '
                                      f'got {n_detector!r}')
        return apart, np.array([half]), np.array([int(n_detector)])
    probe = tomo.Parallel3dAxisGeometry(
        apart, odl.uniform_partition([-1, -1], [1, 1], (2, 2)), axis=axis)
    uv = np.einsum('mkd,cd->mck', probe.det_axes(angles), corners)
    half = np.abs(uv).max(axis=(0, 1)) + margin
    if cell is not None or isinstance(n_detector, numbers.Integral):
        if cell is None:
            cell = 2 * half.max() / int(n_detector)
        shape = np.ceil(2 * half / cell).astype(int)
        half = shape * cell / 2
    else:
        shape = np.array(n_detector, dtype=int)
    return apart, half, shape


def detector_size(space, angles, sigma, n_detector=None, cell=None,
                  margin=None, axis=(0, 0, 1)):
    """The sizes of the measurement `tilt_geometry` would build, as a
    `~odl_atoms.resources.ProblemSize`, without building it.

    Examples
    --------
    >>> space = SparseMeasureSpace([-5, -5], [5, 5])
    >>> size = detector_size(space, np.radians([0, 45, 90]), 0.4, 64)
    >>> size.detector_shape, size.n_angles
    ((64,), 3)
    """
    _, half, shape = _detector(space, angles, n_detector, cell, margin, axis)
    separable = space.ndim == 2 or int(np.count_nonzero(
        np.abs(np.asarray(axis, dtype=float)) > 1e-12)) == 1
    return ProblemSize(tuple(space.min_pt), tuple(space.max_pt),
                       int(np.size(angles)), tuple(int(n) for n in shape),
                       tuple(2 * half / shape), float(sigma), separable)


def simulate(measure, angles, sigma, n_detector=None, detector_cell=None,
             noise=0.0, dose=None, seed=None, mode='integrate', axis=(0, 0, 1),
             max_memory=None):
    """Return a simulated tilt series of ``measure`` as `ProjectionData`.

    Parameters
    ----------
    measure : `SparseMeasure`
        Ground truth; its space gives the box.
    angles : array-like
        Tilt angles in radians.
    sigma : float
        Gaussian std of an atom (angstrom).
    n_detector : int, optional
        Number of detector cells (per axis). Give this or ``detector_cell``.
    detector_cell : float, optional
        Detector cell size in angstrom (the cell count then follows from the
        box).
    noise : float, optional
        Relative Gaussian noise level (0.01 = 1 %; see `odl_atoms.noise`).
    dose : float, optional
        Dose for Poisson noise (see `odl_atoms.noise.poisson_noise`).
    seed : int or Generator, optional
        Seed of the noise.
    mode : {'integrate', 'sample'}, optional
        Detector model of the simulation.
    axis : array-like, optional
        Tilt axis in 3D.
    max_memory : float, optional
        Memory limit in bytes for the estimate checked before anything is
        allocated (`odl_atoms.resources.simulation_memory`); default the
        memory available, ``inf`` for no check.

    Raises
    ------
    ValidationError
        For bad angles or detector settings, and when the simulation would
        need more memory than the limit (the message says which setting
        lowers it).

    Examples
    --------
    >>> space = SparseMeasureSpace([-5, -5], [5, 5])
    >>> truth = space.element([[0, 0], [1.5, 1.0]])
    >>> measured = simulate(truth, np.radians([0, 60, 120]), 0.4,
    ...                     n_detector=64, noise=0.01, seed=1)
    >>> measured.data.shape, measured.noise_std > 0
    ((3, 64), True)
    """
    if not isinstance(measure, SparseMeasure):
        raise TypeError(f'`measure` must be a SparseMeasure, got {measure!r}')
    space = measure.space
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) \
            or not (math.isfinite(sigma) and sigma > 0):
        raise ValidationError(f'`sigma` (the atom width, in angstrom) must be '
                              f'a positive number, got {sigma!r}')
    size = detector_size(space, angles, sigma, n_detector, detector_cell,
                         axis=axis)
    simulation_memory(measure.n_atoms, size).check(
        max_memory, names={'max_memory': 'max_memory='})
    geometry = tilt_geometry(space, angles, n_detector, cell=detector_cell,
                             axis=axis)
    op = GaussianRayTransform(space, geometry, sigma, mode=mode)
    clean = op(measure)
    noisy, std = add_noise(clean, level=noise, dose=dose, seed=seed)
    return ProjectionData.from_element(noisy, geometry, space, sigma,
                                       ground_truth=measure, noise_std=std)
