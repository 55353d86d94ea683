"""Measurement noise for simulated projection data.

Two noise models, alone or together:

- `gaussian_noise`: additive white Gaussian noise whose size is given
  *relative to the data*. With ``level = 0.01`` ("1 % noise") the standard
  deviation is ``noise_std(data, level) = level * ||data||_2 / sqrt(N)``, ``N``
  the number of data values, i.e. ``level`` times the root mean square of the
  data. Then ``E ||noise||_2^2 = level^2 ||data||_2^2``: the noise is about
  ``level`` of the data in the relative L2 sense, the usual convention in
  inverse problems. (The projection space's inner product has a constant
  weight, so the ratio is the same in its norm.)
- `poisson_noise`: dose-limited counting noise of electron detection. A
  detector cell of size ``cell`` (its length in 2D, its area in 3D, in
  angstrom^(d-1)) with data value ``y`` counts ``Poisson(dose * cell * y)``
  electrons; the result is ``counts / (dose * cell)``, so its mean is ``y``
  and its variance ``y / (dose * cell)``.

`add_noise` applies Poisson noise (if a dose is given) and then Gaussian noise
(if ``level > 0``) and also returns the standard deviation of the Gaussian part,
which projection-data files store (``noise_std``) for the discrepancy principle.

Units of the dose
-----------------
Data are line integrals of the atom density: an atom of weight ``w``
contributes ``w`` in total to each projection, spread over the detector as
``w`` per angstrom^(d-1) times a normalised Gaussian. The ``dose`` is in
counts per unit data per angstrom^(d-1) of detector, which is the same as the
expected number of counts that an atom of weight 1 produces in each
projection. A larger dose means less noise: the relative noise of a cell falls
as ``1 / sqrt(dose * cell * y)``.

Data may be elements of an ODL projection space (the result keeps the space
and dtype) or NumPy arrays (the result is an array). Every function takes a
``seed``: an int, ``None`` (fresh entropy) or a `numpy.random.Generator` (drawn
from, advancing its state).
"""

import numbers

import numpy as np
import odl

__all__ = ('noise_std', 'gaussian_noise', 'poisson_noise', 'add_noise')


def noise_std(data, level):
    """Return the standard deviation of ``level`` relative Gaussian noise.

    ``level * ||data||_2 / sqrt(N)``, ``N`` the number of values: ``level``
    times the root mean square of the data.

    Parameters
    ----------
    data : projection-space element or array-like
    level : float >= 0
        Relative noise level, e.g. ``0.01`` for 1 %.

    Returns
    -------
    std : float

    Examples
    --------
    >>> noise_std(np.array([3.0, 4.0]), 0.1)  # 0.1 * 5 / sqrt(2)
    0.35355...
    """
    arr, _ = _unpack(data)
    level = _check_level(level)
    return level * float(np.sqrt(np.mean(np.square(arr, dtype=float))))


def gaussian_noise(data, level, seed=None):
    """Return ``data`` plus white Gaussian noise of relative size ``level``.

    The noise has mean 0 and standard deviation ``noise_std(data, level)``,
    so that ``||noise|| / ||data||`` is about ``level``.

    Parameters
    ----------
    data : projection-space element or array-like
        Noise-free data.
    level : float >= 0
        Relative noise level, e.g. ``0.01`` for 1 %. ``0`` returns a copy.
    seed : int, None or `numpy.random.Generator`, optional
        Random source; equal seeds give equal noise.

    Returns
    -------
    noisy : same type as ``data``
        A new element of ``data.space`` (same dtype), or a new array.

    Examples
    --------
    >>> y = np.ones((20, 50))
    >>> noisy = gaussian_noise(y, 0.05, seed=1)
    >>> bool(abs(np.std(noisy - y) - 0.05) < 0.005)
    True
    >>> np.array_equal(gaussian_noise(y, 0.05, seed=1), noisy)
    True
    """
    arr, rebuild = _unpack(data)
    std = noise_std(arr, level)
    if std == 0:
        return rebuild(arr.copy())
    return rebuild(_add_gaussian(arr, std, np.random.default_rng(seed)))


def poisson_noise(data, dose, seed=None, cell=None):
    """Return dose-limited counting (Poisson) noise on ``data``.

    Each value ``y`` of a detector cell of size ``cell`` becomes
    ``Poisson(dose * cell * y) / (dose * cell)``: its mean stays ``y``, its
    variance is ``y / (dose * cell)``.

    Parameters
    ----------
    data : projection-space element or array-like
        Noise-free data, ``>= 0``.
    dose : positive float
        Counts per unit data per angstrom^(d-1) of detector, i.e. the expected
        number of counts an atom of weight 1 produces in each projection.
    seed : int, None or `numpy.random.Generator`, optional
        Random source; equal seeds give equal noise.
    cell : positive float, optional
        Size of a detector cell in angstrom^(d-1) (length in 2D, area in 3D).
        Default for projection-space elements: the product of the detector
        cell sides of ``data.space.partition`` (its last axis for 2D data, its
        last two axes otherwise, so that 3D-axis and Euler geometries both
        work). Required for plain arrays.

    Returns
    -------
    noisy : same type as ``data``
        A new element of ``data.space`` (same dtype), or a new array.

    Raises
    ------
    ValueError
        If ``data`` has negative values (counts cannot be negative), or
        ``dose`` or ``cell`` is not positive.

    Examples
    --------
    >>> y = np.full((100, 100), 2.0)
    >>> noisy = poisson_noise(y, dose=50.0, cell=0.5, seed=0)
    >>> bool(abs(noisy.mean() - 2.0) < 0.01)  # mean preserved
    True
    >>> bool(abs(noisy.var() - 2.0 / 25.0) < 0.005)  # variance y / (dose * cell)
    True
    """
    arr, rebuild = _unpack(data)
    scale = _check_positive(dose, 'dose') * _detector_cell(data, cell)
    if np.any(arr < 0):
        bad = int(np.sum(arr < 0))
        raise ValueError(
            f'Poisson noise needs data >= 0 (expected counts cannot be '
            f'negative), but {bad} value(s) are negative (minimum '
            f'{float(arr.min()):.3g}); clip the data first, e.g. '
            f'np.maximum(data, 0), if these are round-off')
    rng = np.random.default_rng(seed)
    counts = rng.poisson(scale * np.asarray(arr, dtype=float))
    return rebuild(counts / scale)


def add_noise(data, level=0.0, dose=None, seed=None, cell=None):
    """Return noisy data: Poisson noise (if ``dose``), then Gaussian noise.

    Parameters
    ----------
    data : projection-space element or array-like
        Noise-free data.
    level : float >= 0, optional
        Relative level of the Gaussian part (see `gaussian_noise`); its
        standard deviation is ``noise_std(data, level)``, relative to the
        noise-free ``data``. ``0`` (default): no Gaussian noise.
    dose : positive float, optional
        Dose of the Poisson part (see `poisson_noise`). ``None`` (default): no
        Poisson noise.
    seed : int, None or `numpy.random.Generator`, optional
        One random source for both parts.
    cell : positive float, optional
        Detector cell size for the Poisson part (see `poisson_noise`).

    Returns
    -------
    noisy : same type as ``data``
        A new element or array, never ``data`` itself.
    std : float or None
        Standard deviation of the Gaussian part, ``None`` if ``level`` is 0.
        It is what a data file stores as ``noise_std``.

    Examples
    --------
    >>> y = np.ones((10, 10))
    >>> noisy, std = add_noise(y, level=0.02, seed=3)
    >>> std
    0.02
    >>> np.array_equal(noisy, gaussian_noise(y, 0.02, seed=3))
    True
    >>> add_noise(y)[1] is None
    True
    """
    arr, rebuild = _unpack(data)
    level = _check_level(level)
    rng = np.random.default_rng(seed)
    noisy = arr.copy()
    if dose is not None:
        noisy = _unpack(poisson_noise(arr, dose, seed=rng,
                                      cell=_detector_cell(data, cell)))[0]
    std = None
    if level > 0:
        std = noise_std(arr, level)
        noisy = _add_gaussian(noisy, std, rng)
    return rebuild(noisy), std


# --- Helpers


def _unpack(data):
    """Return ``(array, rebuild)``; ``rebuild(array)`` gives data's type back."""
    if isinstance(data, odl.core.set.space.LinearSpaceElement):
        if not hasattr(data, 'data'):
            raise TypeError(
                f'expected projection data (a tensor-space element or an '
                f'array), got an element of {data.space!r}')
        space = data.space
        arr = np.asarray(data.data)

        def rebuild(values):
            return space.element(np.asarray(values).astype(space.dtype,
                                                            copy=False))
    else:
        try:
            arr = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f'expected projection data (an ODL element or an array), got '
                f'{type(data).__name__}') from exc
        if arr.dtype.kind not in 'fiu' or arr.dtype == bool:
            raise TypeError(
                f'projection data must be real numbers, got dtype {arr.dtype}')
        dtype = arr.dtype if arr.dtype.kind == 'f' else np.dtype(float)

        def rebuild(values):
            return np.asarray(values).astype(dtype, copy=False)
    if arr.size == 0:
        raise ValueError('the data are empty (no values to add noise to)')
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f'the data contain {int(np.sum(~np.isfinite(arr)))} NaN or inf '
            f'value(s); noise is only defined for finite data')
    return arr, rebuild


def _add_gaussian(arr, std, rng):
    return np.asarray(arr, dtype=float) + rng.normal(0.0, std, size=arr.shape)


def _check_level(level):
    if (not isinstance(level, numbers.Real) or isinstance(level, bool)
            or not np.isfinite(level) or level < 0):
        raise ValueError(
            f'`level` (relative noise level, e.g. 0.01 for 1 %) must be a '
            f'number >= 0, got {level!r}')
    return float(level)


def _check_positive(value, name):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not np.isfinite(value) or value <= 0):
        raise ValueError(f'`{name}` must be a positive number, got {value!r}')
    return float(value)


def _detector_cell(data, cell):
    """Detector cell size: ``cell`` if given, else from data's partition."""
    if cell is not None:
        return _check_positive(cell, 'cell')
    partition = getattr(getattr(data, 'space', None), 'partition', None)
    if partition is None:
        raise ValueError(
            'plain arrays carry no detector geometry; pass `cell`, the size of '
            'a detector cell in angstrom^(d-1) (length in 2D, area in 3D), or '
            'pass an element of the projection space')
    n_det_axes = 1 if partition.ndim <= 2 else 2
    sides = np.asarray(partition.cell_sides, dtype=float)[-n_det_axes:]
    size = float(np.prod(sides))
    if not (np.isfinite(size) and size > 0):
        raise ValueError(
            f'cannot read the detector cell size from the partition (cell '
            f'sides {sides.tolist()}); the detector must be uniformly '
            f'partitioned, or pass `cell`')
    return size
