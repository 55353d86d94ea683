"""From a microscope tilt series to projection data.

`prepare_projections` maps the images of a `TiltSeries` onto the detector of
ODL's parallel-beam geometries and returns a `ProjectionData` without an atom
model (``sigma`` is ``None`` until calibrated or given).

Conventions
-----------
The tilt axis passes through the centre of every image (an offset is a
shift of the projections, for calibration to find; a file whose calibrated
coordinates, HyperSpy axis offsets or ImageJ's origin, put 0 elsewhere across
the axis gets a warning). The images are
resampled so that the detector's last axis runs along the tilt axis:

- with the tilt axis along the image ``y`` (``tilt_axis='y'``, rows), the
  detector coordinate ``u`` is the image ``x`` (column index increasing) and
  ``v`` the image ``y`` (row index increasing);
- in general, for a tilt axis at angle ``phi`` from ``x`` towards ``y``,
  ``v`` runs along ``(cos phi, sin phi)`` and ``u`` along
  ``(sin phi, -cos phi)`` in the image's ``(x, y)``: ``tilt_axis='x'`` gives
  ``v = x`` and ``u = -y``, a rotation of the images, never a mirror.

This is the detector of ODL's ``Parallel3dAxisGeometry`` with its default
axis ``(0, 0, 1)``: at tilt angle ``theta`` a point ``(x, y, z)`` of the
specimen lands at ``u = x cos(theta) + y sin(theta)``, ``v = z``, and in 2D
(``Parallel2dGeometry``, columns along the tilt axis) at
``u = x cos(theta) + y sin(theta)``. So the reconstruction's ``z`` is the
tilt axis, ``x`` the image direction ``u`` at zero tilt, and the beam at zero
tilt runs along ``y``. Microscopes differ in the sense of a positive tilt; the
wrong sense gives the mirror image (``y -> -y``) of the specimen: negate the
angles to change it.

In 2D every image is averaged along the tilt axis into a profile along
``u`` (the atoms form columns along the axis); in 3D the images are kept.
The detector is centred on the image centre, its cells are the pixels. The
box where atoms may be is, by default, the largest centred box that every
projection sees entirely: a square (2D) or a square prism along the tilt
axis (3D) of half-width ``L / max(|cos theta| + |sin theta|)`` for a
detector of half-width ``L``.

Background
----------
A constant background per projection (dark level, vacuum signal) is
estimated and subtracted (``background='auto'``): the images are smoothed
with a Gaussian of `BACKGROUND_SMOOTHING` pixels, which makes photon counts
nearly continuous, and the level of the vacuum is the lowest mode of the
histogram of the values that holds at least `BACKGROUND_MIN_FRACTION` of
the pixels (`estimate_background`). Not the most common value: at generic
tilts of a crystal the overlapping columns form a plateau that covers more
of the image than the vacuum does. It needs vacuum (or the dimmest level
between atoms) in a few percent of each image; otherwise give the
background. The values removed are stored (``background`` key).
"""

import json

import numpy as np

from odl_atoms.errors import ValidationError
from odl_atoms.io.microscope import TiltSeries
from odl_atoms.io.projections import ProjectionData

__all__ = ('prepare_projections', 'estimate_background', 'field_of_view_box',
           'BACKGROUND_SMOOTHING', 'BACKGROUND_MIN_FRACTION')

#: Std (pixels) of the Gaussian smoothing before the background's mode.
BACKGROUND_SMOOTHING = 2.0

#: Smallest fraction of an image's pixels a level of its histogram must
#: hold to be taken for the vacuum (fewer are the flanks of atoms or noise).
BACKGROUND_MIN_FRACTION = 0.05

#: Two neighbouring modes of the histogram are one level when the density
#: between them stays above this fraction of the lower peak (a dip that
#: shallow is noise in the estimated density).
_MODE_DIP = 0.5

#: Tilt-axis directions that need no resampling (radians from x to y).
_AXIS_NAMES = {'x': 0.0, 'y': np.pi / 2, '-x': np.pi, '-y': -np.pi / 2}


def prepare_projections(series, ndim=2, tilt_axis=None, box=None,
                        background='auto', binning=1):
    """Return the projection data of a tilt series (see the module notes).

    Parameters
    ----------
    series : `TiltSeries`
    ndim : {2, 3}, optional
        2: columns of atoms along the tilt axis, each image averaged along it
        into a profile; 3: the images as they are.
    tilt_axis : {'x', 'y', '-x', '-y'} or float, optional
        Direction of the tilt axis in the images: an image axis, or an angle
        in radians from ``x`` (columns) towards ``y`` (rows); other angles
        resample the images (linear interpolation) into the largest centred
        rectangle they cover. Default: ``series.tilt_axis`` if the file gave
        it, else ``'y'``.
    box : float or pair of array-like, optional
        Where atoms may be: an edge length in angstrom (a centred square or
        cube) or ``(box_min, box_max)``. Default: the region every projection
        sees.
    background : 'auto', None, float or array-like, optional
        Background subtracted from each projection: ``'auto'`` estimates it
        (`estimate_background`); ``None`` subtracts nothing; a number or one
        number per image (in the order of ``series``) is subtracted as given.
    binning : positive int, optional
        Average blocks of ``binning`` pixels along each image axis first.

    Returns
    -------
    projection_data : `ProjectionData`
        Sorted by angle; ``sigma`` and ``noise_std`` are ``None``;
        ``background``, ``pixel_size``, ``pixels_averaged``,
        ``intensity_unit`` and ``source`` are set.

    Raises
    ------
    ValueError
        For invalid arguments, or a box larger than what the detector sees.

    Examples
    --------
    A column of atoms along the tilt axis (the image ``y``) at
    ``(x, y) = (2.25, -1.25)`` angstrom lands at ``u = 2.25`` at 0 degrees
    and at ``u = -1.25`` at 90 degrees; the images have a background of 5:

    >>> y, x = np.mgrid[0:40, 0:40] * 0.5 - 9.75      # pixel centres
    >>> images = [5 + np.exp(-(x - 2.25) ** 2 / 0.5),
    ...           5 + np.exp(-(x + 1.25) ** 2 / 0.5)]
    >>> series = TiltSeries(images, np.radians([0, 90]), pixel_size=0.5)
    >>> measured = prepare_projections(series, ndim=2)
    >>> measured.data.shape, measured.detector_min.tolist(), measured.detector_max.tolist()
    ((2, 40), [-10.0], [10.0])
    >>> u = measured.geometry.det_partition.coord_vectors[0]
    >>> u[np.argmax(measured.data, axis=1)].tolist()
    [2.25, -1.25]
    >>> measured.background.round(6).tolist()
    [5.0, 5.0]
    """
    if not isinstance(series, TiltSeries):
        raise TypeError(f'`series` must be a TiltSeries (read_tilt_series), '
                        f'got {type(series).__name__}')
    if ndim not in (2, 3):
        raise ValidationError(f'ndim must be 2 (columns along the tilt axis) or 3, '
                              f'got {ndim!r}')
    if not (isinstance(binning, (int, np.integer)) and binning >= 1):
        raise ValidationError(f'binning must be a positive integer, got '
                              f'{binning!r}')
    phi, axis_name = _tilt_axis_angle(
        series.tilt_axis if tilt_axis is None else tilt_axis,
        default=tilt_axis is None and series.tilt_axis is None)

    _check_origin(series, axis_name)
    # Images on the detector grid: (n, n_u, n_v), cell sizes (du, dv) and
    # the cell edges relative to the image centre.
    det, pixel, edges = _to_detector(series.images, series.pixel_size, phi)
    det, cell, edges = _bin(det, pixel, edges, int(binning))

    values = _background_values(background, series.n_tilts, det)
    det = det - values[:, None, None]

    order = np.argsort(series.angles)
    angles = series.angles[order]
    det, values = det[order], values[order]

    pixels_averaged = int(binning) ** 2
    if ndim == 2:
        _check_columns(det, axis_name)
        pixels_averaged *= det.shape[2]
        data = det.mean(axis=2)
        detector_min, detector_max = [edges[0][0]], [edges[0][1]]
    else:
        data = det
        detector_min = [edges[0][0], edges[1][0]]
        detector_max = [edges[0][1], edges[1][1]]

    box_min, box_max = _box(box, ndim, angles, edges)
    source = {
        'files': list(series.source),
        'reader': series.metadata.get('reader'),
        'angles_from': series.metadata.get('angle_source'),
        'pixel_size_from': series.metadata.get('pixel_size_source'),
        'tilt_axis_in_image_deg': float(np.degrees(phi)),
        'binning': int(binning),
        'background': background if isinstance(background, str) or
        background is None else 'given',
        'prepared_as': f'{ndim}D',
    }
    return ProjectionData(
        data=data, angles=angles, detector_min=detector_min,
        detector_max=detector_max, box_min=box_min, box_max=box_max,
        intensity_unit=series.intensity_unit or None,
        background=(values if background is not None else None),
        pixel_size=pixel, pixels_averaged=pixels_averaged,
        source=json.dumps(source, ensure_ascii=False))


def _tilt_axis_angle(tilt_axis, default=False):
    """``(phi in radians, name or None)``."""
    if tilt_axis is None:
        return _AXIS_NAMES['y'], 'y'
    if isinstance(tilt_axis, str):
        key = tilt_axis.strip().lower()
        if key not in _AXIS_NAMES:
            raise ValidationError(
                f"tilt_axis must be 'x', 'y', '-x', '-y' or an angle in "
                f"radians from x towards y, got {tilt_axis!r}")
        return _AXIS_NAMES[key], key
    try:
        phi = float(tilt_axis)
    except (TypeError, ValueError):
        raise ValidationError(f'tilt_axis must be an image axis or an angle in '
                              f'radians, got {tilt_axis!r}') from None
    if not np.isfinite(phi):
        raise ValidationError(f'tilt_axis must be finite, got {phi}')
    for name, value in _AXIS_NAMES.items():
        if abs(np.angle(np.exp(1j * (phi - value)))) < 1e-9:
            return value, name
    return phi, None


def _check_origin(series, axis_name):
    """Warn if the file's coordinates put the tilt axis off the centre."""
    import warnings

    offsets = series.metadata.get('offsets')
    if offsets is None or axis_name is None:
        return
    # Coordinate of the first pixel centre across the tilt axis, and where
    # the image centre would put it.
    k = 1 if axis_name in ('y', '-y') else 0
    first = float(offsets[k])
    centred = -(series.shape[k] - 1) / 2 * series.pixel_size[k]
    if first == 0.0 or abs(first - centred) <= 0.01 * series.pixel_size[k]:
        return  # no calibrated origin (the usual 0), or the centre
    at = -first / series.pixel_size[k]
    warnings.warn(
        f'the file puts coordinate 0 across the tilt axis at pixel {at:.4g}, '
        f'not at the image centre ({(series.shape[k] - 1) / 2:g}); the '
        f'projections are prepared with the tilt axis through the image '
        f'centre: crop the images around the axis, or let calibration find '
        f'the shift', UserWarning, stacklevel=3)


def _to_detector(images, pixel_size, phi):
    """Resample images onto the detector grid (see the module notes)."""
    dy, dx = pixel_size
    n, ny, nx = images.shape
    for name, value in _AXIS_NAMES.items():
        if phi != value:
            continue
        # Exact index operations: det[i, ju, jv].
        if name == 'y':
            det, (du, dv), (nu, nv) = images.transpose(0, 2, 1), (dx, dy), \
                (nx, ny)
        elif name == '-y':
            det, (du, dv), (nu, nv) = images[:, ::-1, ::-1].transpose(0, 2, 1),\
                (dx, dy), (nx, ny)
        elif name == 'x':
            det, (du, dv), (nu, nv) = images[:, ::-1, :], (dy, dx), (ny, nx)
        else:  # '-x'
            det, (du, dv), (nu, nv) = images[:, :, ::-1], (dy, dx), (ny, nx)
        edges = ((-nu * du / 2, nu * du / 2), (-nv * dv / 2, nv * dv / 2))
        return np.ascontiguousarray(det), (du, dv), edges
    from scipy.ndimage import map_coordinates

    if not np.isclose(dx, dy, rtol=1e-6):
        raise ValidationError(
            f'a tilt axis at {np.degrees(phi):.4g} degrees needs square pixels '
            f'to resample the images, got {dy:g} x {dx:g} Å; give an image '
            f'axis (x or y) as tilt_axis')
    h = float(dx)
    t = np.array([np.cos(phi), np.sin(phi)])
    nrm = np.array([np.sin(phi), -np.cos(phi)])
    half_x, half_y = nx * h / 2, ny * h / 2
    # The largest centred rectangle (half-sizes a across, b along the axis)
    # inside the image, with the aspect of the image's extents across and
    # along the image axis nearest to the tilt axis.
    s, c = abs(np.sin(phi)), abs(np.cos(phi))
    ratio = half_y / half_x if c >= s else half_x / half_y
    b = min(half_x / (ratio * s + c), half_y / (ratio * c + s))
    a = ratio * b
    nu, nv = int(np.floor(2 * a / h)), int(np.floor(2 * b / h))
    if nu < 1 or nv < 1:
        raise ValidationError('the images are too small to resample')
    u = (np.arange(nu) - (nu - 1) / 2) * h
    v = (np.arange(nv) - (nv - 1) / 2) * h
    uu, vv = np.meshgrid(u, v, indexing='ij')
    xs = uu * nrm[0] + vv * t[0]
    ys = uu * nrm[1] + vv * t[1]
    cols = xs / h + (nx - 1) / 2
    rows = ys / h + (ny - 1) / 2
    det = np.stack([map_coordinates(image, [rows, cols], order=1,
                                    mode='nearest') for image in images])
    edges = ((-nu * h / 2, nu * h / 2), (-nv * h / 2, nv * h / 2))
    return det, (h, h), edges


def _bin(det, cell, edges, binning):
    if binning == 1:
        return det, cell, edges
    n, nu, nv = det.shape
    ku, kv = nu // binning, nv // binning
    if ku < 1 or kv < 1:
        raise ValidationError(f'binning {binning} is larger than the images '
                              f'({nu} x {nv} detector cells)')
    # Drop the remainder evenly from both ends (keeps the centre).
    ou, ov = (nu - ku * binning) // 2, (nv - kv * binning) // 2
    det = det[:, ou:ou + ku * binning, ov:ov + kv * binning]
    det = det.reshape(n, ku, binning, kv, binning).mean(axis=(2, 4))
    du, dv = cell
    edges = ((edges[0][0] + ou * du, edges[0][0] + (ou + ku * binning) * du),
             (edges[1][0] + ov * dv, edges[1][0] + (ov + kv * binning) * dv))
    return det, (du * binning, dv * binning), edges


def _background_values(background, n, det):
    if background is None:
        return np.zeros(n)
    if isinstance(background, str):
        if background != 'auto':
            raise ValidationError(f"background must be 'auto', None, a number or "
                                  f"one number per image, got {background!r}")
        return np.array([estimate_background(image) for image in det])
    values = np.array(background, dtype=float)
    if values.ndim == 0:
        values = np.full(n, float(values))
    if values.shape != (n,) or not np.all(np.isfinite(values)):
        raise ValidationError(f'background must be a number or {n} numbers (one '
                              f'per image), got {background!r}')
    return values


def estimate_background(image, smoothing=BACKGROUND_SMOOTHING,
                        min_fraction=BACKGROUND_MIN_FRACTION):
    """Estimate the constant background (vacuum level) of an image.

    The image is smoothed with a Gaussian of ``smoothing`` pixels, and the
    density of its values is estimated (a Gaussian kernel density, Silverman's
    bandwidth of their robust spread). Its modes are the flat levels of the
    image: the vacuum, and brighter ones such as the plateau that overlapping
    columns of a crystal form at a generic tilt. Modes separated by a shallow
    dip (the density between them above half the lower peak) count as one.
    The lowest mode holding at least ``min_fraction`` of the values is the
    vacuum; its level is the half-sample mode (Bickel and Frühwirth 2006) of
    the values in its basin, which the atoms (brighter) do not pull up as
    they pull up a mean or a median.

    Parameters
    ----------
    image : array-like
    smoothing : float, optional
        Std of the smoothing in pixels; 0 for none.
    min_fraction : float in (0, 1], optional
        Smallest fraction of the pixels the vacuum must cover.

    Returns
    -------
    level : float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y, x = np.mgrid[0:64, 0:64]
    >>> atoms = sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 8)
    ...             for cx, cy in [(20, 20), (30, 40), (44, 28)])
    >>> image = 3.0 + 10 * atoms + rng.normal(0, 0.5, (64, 64))
    >>> round(estimate_background(image), 1)
    3.0

    A plateau (overlapping columns) at 5 over most of the image, vacuum at
    2 along its edges only:

    >>> plateau = np.where(np.abs(x - 31.5) < 24, 5.0, 2.0)
    >>> round(estimate_background(plateau + rng.normal(0, 0.3, (64, 64))), 1)
    2.0
    """
    from scipy.ndimage import gaussian_filter

    min_fraction = float(min_fraction)
    if not 0 < min_fraction <= 1:
        raise ValidationError(f'min_fraction must lie in (0, 1], got '
                              f'{min_fraction!r}')
    values = np.asarray(image, dtype=float)
    if smoothing > 0:
        values = gaussian_filter(values, smoothing, mode='nearest')
    values = np.sort(values[np.isfinite(values)].ravel())
    if values.size == 0:
        raise ValidationError('the image has no finite values to estimate its '
                              'background from')
    # A regular subsample keeps it fast on large images (and deterministic).
    if values.size > 200_000:
        values = values[::values.size // 200_000]
    basin = _vacuum_basin(values, min_fraction)
    return _half_sample_mode(values[basin[0]:basin[1]])


def _vacuum_basin(values, min_fraction, n_bins=1024):
    """Index range ``(i, j)`` of the sorted ``values`` in the basin of the
    lowest mode of their density that holds ``min_fraction`` of them."""
    from scipy.ndimage import gaussian_filter1d

    lo, hi = values[0], values[-1]
    q1, q3 = np.percentile(values, [25, 75])
    spread = min(values.std(), (q3 - q1) / 1.349) or values.std()
    if not hi > lo or not spread > 0:
        return 0, values.size
    bandwidth = 0.9 * spread * values.size ** -0.2
    pad = 3 * bandwidth
    counts, edges = np.histogram(values, bins=n_bins,
                                 range=(lo - pad, hi + pad))
    cell = edges[1] - edges[0]
    density = gaussian_filter1d(counts.astype(float), bandwidth / cell,
                                mode='constant')
    # Peaks and the lowest points between neighbouring peaks.
    peaks = [i for i in range(1, n_bins - 1)
             if density[i] >= density[i - 1] and density[i] > density[i + 1]]
    if not peaks:
        return 0, values.size
    # Merge neighbours separated by a shallow dip, lowest first.
    groups = [[peaks[0], peaks[0]]]     # [first peak, highest peak] of a level
    bounds = []                         # dip bin between levels
    for peak in peaks[1:]:
        last = groups[-1]
        dip = last[0] + int(np.argmin(density[last[0]:peak + 1]))
        if density[dip] > _MODE_DIP * min(density[last[1]], density[peak]):
            if density[peak] > density[last[1]]:
                last[1] = peak
            last[0] = peak
            continue
        bounds.append(dip)
        groups.append([peak, peak])
    cuts = np.searchsorted(values, edges[np.array(bounds, dtype=int) + 1]) \
        if bounds else np.array([], dtype=int)
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [values.size]])
    for start, stop in zip(starts, stops):
        if stop - start >= min_fraction * values.size:
            return int(start), int(stop)
    return 0, values.size


def _half_sample_mode(values):
    """The half-sample mode of sorted ``values`` (Bickel and Frühwirth): the
    centre of their densest half, then of its densest half, and so on."""
    while values.size > 3:
        half = (values.size + 1) // 2
        widths = values[half - 1:] - values[:values.size - half + 1]
        start = int(np.argmin(widths))
        values = values[start:start + half]
    if values.size == 3:
        # Of three values the mode lies with the closer pair.
        values = values[:2] if values[1] - values[0] < values[2] - values[1] \
            else values[1:] if values[1] - values[0] > values[2] - values[1] \
            else values[1:2]
    return float(np.mean(values))


def _check_columns(det, axis_name):
    """Warn if the images do not look tilted about the axis given.

    A tilt about the axis leaves the coordinates along it unchanged, so the
    profile along the axis (each image averaged across it) is the same in
    every projection, while the profiles across the axis change with the
    angle. The warning needs either that evidence reversed (profiles across
    the axis agreeing better, with structure along the axis to compare) or
    images nearly flat across the axis (columns running across it). The
    variances alone do not decide: a column seen side-on is a row of
    resolved atoms, as modulated along the axis as across it.
    """
    import warnings

    def profiles(axis):
        values = det.mean(axis=axis)
        return values - values.mean(axis=1, keepdims=True)

    def agreement(centred):
        # the lowest correlation between two projections' profiles
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        if len(centred) < 2 or np.any(norms == 0):
            return 1.0
        unit = centred / norms
        return float(np.min(unit @ unit.T))

    along, across = profiles(1), profiles(2)    # (n, n_v), (n, n_u)
    v_along, v_across = np.mean(along ** 2), np.mean(across ** 2)
    reversed_ = (agreement(across) > agreement(along) + 0.02
                 and v_along > 0.1 * v_across)
    if reversed_ or v_along > 10 * v_across:
        warnings.warn(
            f'the images look tilted about the other axis than the tilt '
            f'axis given ({axis_name or "as given"}): their profiles along '
            f'it are not the same in every projection, or they vary '
            f'mostly along it; check tilt_axis (--tilt-axis)', UserWarning,
            stacklevel=3)


def field_of_view_box(angles, detector_min, detector_max, ndim):
    """Return ``(box_min, box_max)``: the centred box every projection sees.

    For a detector from ``-L`` to ``L`` across the tilt axis, a centred square
    of half-width ``b`` projects inside it at angle ``theta`` if
    ``b (|cos theta| + |sin theta|) <= L``; the box is the largest such
    square (3D: times the detector's extent along the tilt axis).

    Examples
    --------
    >>> lo, hi = field_of_view_box(np.radians([0, 45, 90]), [-10], [10], 2)
    >>> hi.round(4).tolist()
    [7.0711, 7.0711]
    >>> [a.tolist() for a in field_of_view_box([0.0], [-10, -4], [10, 6], 3)]
    [[-10.0, -10.0, -4.0], [10.0, 10.0, 6.0]]
    """
    angles = np.asarray(angles, dtype=float)
    half = min(-float(detector_min[0]), float(detector_max[0]))
    if half <= 0:
        raise ValidationError('the detector does not cover the tilt axis')
    reach = np.max(np.abs(np.cos(angles)) + np.abs(np.sin(angles)))
    b = half / reach
    lo, hi = [-b, -b], [b, b]
    if ndim == 3:
        lo.append(float(detector_min[1]))
        hi.append(float(detector_max[1]))
    return np.array(lo), np.array(hi)


def _box(box, ndim, angles, edges):
    detector_min = [edges[0][0], edges[1][0]]
    detector_max = [edges[0][1], edges[1][1]]
    seen_min, seen_max = field_of_view_box(angles, detector_min, detector_max,
                                           ndim)
    if box is None:
        return seen_min, seen_max
    if np.ndim(box) == 0:
        edge = float(box)
        if not edge > 0:
            raise ValidationError(f'box must be a positive edge length in angstrom '
                                  f'or (box_min, box_max), got {box!r}')
        lo, hi = np.full(ndim, -edge / 2), np.full(ndim, edge / 2)
    else:
        try:
            lo, hi = (np.array(b, dtype=float) for b in box)
        except (TypeError, ValueError):
            raise ValidationError(f'box must be an edge length or (box_min, '
                                  f'box_max), got {box!r}') from None
        if lo.shape != (ndim,) or hi.shape != (ndim,) or np.any(hi <= lo):
            raise ValidationError(
                f'box must be (box_min, box_max) with {ndim} coordinates each '
                f'and box_max > box_min, got {box!r}')
    if np.any(lo < seen_min - 1e-9) or np.any(hi > seen_max + 1e-9):
        import warnings
        warnings.warn(
            f'the box [{lo.tolist()}, {hi.tolist()}] reaches beyond the region '
            f'every projection sees [{np.round(seen_min, 4).tolist()}, '
            f'{np.round(seen_max, 4).tolist()}]: atoms there leave the '
            f'detector at some angles', UserWarning, stacklevel=3)
    return lo, hi
