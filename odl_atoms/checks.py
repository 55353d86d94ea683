"""Plausibility checks: a measurement against the settings it comes with.

A projection-data file can be valid (right shapes, finite numbers) and still
describe something no reconstruction can use: angles in degrees where
radians are stored, data in microscope counts where units of one atom are
expected, an atom width in pixels where angstrom are meant. The solvers then
run for hours or return nonsense (no atoms, an infinite misfit) without a
word. The checks here look for such input before any work and say what the
likely cause is and what to do; `check_measurement` runs them all.

Each check either raises `~odl_atoms.errors.ValidationError` (the input
cannot be right) or returns warnings (it is unusual). The thresholds are
deliberately loose: a real measurement is off by orders of magnitude before
a check refuses it.

=================================  ===========================================
check                              refused when
=================================  ===========================================
`check_angles`                     an angle beyond ``2 pi`` (degrees stored as
                                   radians)
data scale (`expected_atoms`)      the data hold more atoms than the box can
                                   (more than one per ``sigma ** d``), or their
                                   squared norm overflows
atom width vs detector             ``sigma`` below a tenth of a detector cell
atom width vs box                  ``sigma`` larger than the box
detector cells                     fewer data values than the unknowns of the
                                   atoms the data hold (``d + 1`` per atom)
=================================  ===========================================

Warned about: a span of angles beyond ``1.1 pi`` without stored angle
edges, data that hold less than half an atom or more than a tenth of the
box's capacity, ``sigma`` below half a cell or above a quarter of the box.

The messages name the settings as the library does (``sigma``,
``weights``, ...); the command line passes its own names (``--sigma``, ...).
"""

import math

import numpy as np

from odl_atoms.errors import ValidationError

__all__ = ('check_angles', 'check_measurement', 'expected_atoms',
           'box_capacity', 'API_NAMES')

#: How the messages name the settings a user can change (the command line
#: passes its flags instead).
API_NAMES = {'sigma': 'sigma', 'weights': 'weights',
             'intensity': 'intensity', 'force': 'checks=False',
             'calibration': 'odl_atoms.calibration.calibrate'}

#: An angle beyond this (radians) is refused as degrees.
MAX_ANGLE = 2 * math.pi

#: Atoms (or projected atom columns) are never closer than this, in
#: angstrom: the side of the cell of one atom in `box_capacity`.
MIN_DISTANCE = 1.0

#: Without stored angle edges, a span beyond this (radians) is warned about.
MAX_SPAN = 1.1 * math.pi


def _names(names):
    merged = dict(API_NAMES)
    merged.update(names or {})
    return merged


def _degrees_text(angles):
    return ', '.join(f'{a:g}' for a in np.round(angles, 4)[:8]) + (
        ', ...' if len(angles) > 8 else '')


def check_angles(angles, angle_min=None, angle_max=None):
    """Raise `ValidationError` if tilt angles in radians look like degrees.

    Parameters
    ----------
    angles : array-like
        Tilt angles as stored (radians).
    angle_min, angle_max : float, optional
        The stored outer edges of the angle partition, if any.

    Returns
    -------
    warnings : list of str
        A span of more than ``1.1 pi`` without stored edges (a half turn
        is all parallel projections need: the angles may be degrees).

    Raises
    ------
    ValidationError
        If an angle (or edge) lies beyond ``2 pi``: no tilt series needs
        that, while tilts in degrees (0, 45, 90) get there at once.

    Examples
    --------
    >>> check_angles(np.radians([0, 45, 90]))
    []
    >>> check_angles([0, 45, 90])
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: the tilt angles (0, 45, 90) go beyond 2 pi: these look like degrees; the file stores radians (np.radians(angles))
    """
    angles = np.asarray(angles, dtype=float).ravel()
    edges = [e for e in (angle_min, angle_max) if e is not None]
    values = np.concatenate([angles, np.asarray(edges, dtype=float)])
    if values.size and np.max(np.abs(values)) > MAX_ANGLE:
        where = 'the tilt angles' if np.max(np.abs(angles)) > MAX_ANGLE \
            else "'angle_min'/'angle_max'"
        text = _degrees_text(angles if where == 'the tilt angles'
                             else np.asarray(edges))
        also = (" (and 'angle_min'/'angle_max' with them)" if edges
                and where == 'the tilt angles' else '')
        raise ValidationError(
            f'{where} ({text}) go beyond 2 pi: these look like degrees; the '
            f'file stores radians (np.radians(angles)){also}')
    if not edges and angles.size > 1 and np.ptp(angles) > MAX_SPAN:
        return [f'the tilt angles span {np.ptp(angles):.3g} radians '
                f'({np.degrees(np.ptp(angles)):.0f} degrees), more than the '
                f'half turn parallel projections need: if they are degrees, '
                f'the file must store radians (np.radians(angles))']
    return []


def _cell_sides(measured):
    lo = np.asarray(measured.detector_min, dtype=float)
    hi = np.asarray(measured.detector_max, dtype=float)
    return (hi - lo) / np.asarray(measured.data.shape[1:])


def expected_atoms(measured, weights=None, intensity=None):
    """Atoms the data hold: the median integral of a projection per atom.

    In the toolkit's model an atom of weight ``w`` adds ``w`` (times the
    data's ``intensity`` of one atom) to the integral of every projection,
    so the median over the projections of their integrals, divided by the
    smallest weight, counts the atoms (as `odl_atoms.Problem` does).

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`
    weights : float or mapping, optional
        Allowed atom weights (default 1); the smallest counts.
    intensity : positive float, optional
        Data of one atom of weight 1, in data units (default 1: data in
        units of one atom).

    Returns
    -------
    count : float
        ``inf`` when the integral overflows.
    """
    data = np.asarray(measured.data, dtype=float)
    cell = float(np.prod(_cell_sides(measured)))
    # Scaled first so that huge data (1e300) give a finite count if any.
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if peak == 0 or not math.isfinite(peak):
        return 0.0 if peak == 0 else math.inf
    per_angle = (data / peak).reshape(data.shape[0], -1).sum(axis=1)
    integral = max(float(np.median(per_angle)), 0.0) * peak * cell
    return integral / (_smallest_weight(weights) * _intensity(intensity))


def _smallest_weight(weights):
    if weights is None:
        return 1.0
    if hasattr(weights, 'values'):
        weights = list(weights.values())
    values = np.asarray(weights, dtype=float).ravel()
    return float(values.min()) if values.size else 1.0


def _intensity(intensity):
    return 1.0 if intensity is None else float(intensity)


def box_capacity(measured):
    """Most atoms the box can hold: one per cube (square) of side
    ``min(sigma, 1 Å)``.

    Atoms closer than about ``sigma`` cannot be told apart in the data, and
    atoms (or atom columns, in a projection along a zone axis) are never
    closer than about an angstrom; real ones are farther apart still (2-3 Å
    against a ``sigma`` of 0.3-0.5 in a HAADF image). Data that hold more
    atoms than this are in other units than one atom.
    """
    extent = (np.asarray(measured.box_max, dtype=float)
              - np.asarray(measured.box_min, dtype=float))
    side = min(float(measured.sigma), MIN_DISTANCE)
    return float(np.prod(extent / side))


def _box_text(measured):
    extent = (np.asarray(measured.box_max, dtype=float)
              - np.asarray(measured.box_min, dtype=float))
    return ' x '.join(f'{e:.3g}' for e in extent) + ' Å'


def check_measurement(measured, weights=None, intensity=None, names=None,
                      strict=True):
    """Check a measurement and its settings before a reconstruction.

    Runs `check_angles` and the checks of the data scale, of the atom width
    against the detector cells and the box, and of the number of data
    values against the unknowns (see the module documentation).

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`
        With its atom width ``sigma``.
    weights : float or mapping, optional
        Allowed atom weights, as given to `odl_atoms.reconstruct`.
    intensity : positive float, optional
        Data of one atom of weight 1 in data units, if the data are not in
        units of one atom.
    names : dict, optional
        How the messages name the settings (``'sigma'``, ``'weights'``,
        ``'intensity'``, ``'force'``, ``'calibration'``); default
        `API_NAMES`.
    strict : bool, optional
        If False, what would be refused is returned as a warning instead.

    Returns
    -------
    warnings : list of str
        One line each.

    Raises
    ------
    ValidationError
        For the first check that refuses the input (with ``strict``).

    Examples
    --------
    >>> import dataclasses, odl_atoms as oa
    >>> phantom = oa.defect_phantom('vacancy', shape=(3, 3))
    >>> measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]),
    ...                        0.43, n_detector=48)
    >>> check_measurement(measured)
    []
    >>> check_measurement(dataclasses.replace(measured,
    ...                                       data=measured.data * 1e6))
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: the data hold 8e+06 atoms of weight 1 (the integral of a projection, 8e+06, per atom), more than the 7.2e+02 atoms a box of 11.5 x 11.5 Å can hold: the data are not in units of one atom. To fix it, give the intensity of one atom in data units (intensity) or the atom weights in data units (weights), or let calibration estimate it (odl_atoms.calibration.calibrate)
    """
    names = _names(names)
    found = []

    def refuse(message):
        if strict:
            raise ValidationError(message)
        found.append(message)

    try:
        found += check_angles(measured.angles, measured.angle_min,
                              measured.angle_max)
    except ValidationError as exc:
        refuse(str(exc))
    if intensity is not None and not (math.isfinite(float(intensity))
                                      and float(intensity) > 0):
        raise ValidationError(f'the intensity of one atom must be a positive '
                              f'number, got {intensity!r} ({names["intensity"]})')
    sigma = measured.sigma
    if sigma is None:
        return found
    sigma = float(sigma)
    cells = _cell_sides(measured)
    cell = float(cells.min())
    extent = (np.asarray(measured.box_max, dtype=float)
              - np.asarray(measured.box_min, dtype=float))
    d = measured.ndim

    # The atom width against the box and the detector cells.
    width = names['sigma']
    if sigma > float(extent.max()):
        refuse(f'the atom width sigma = {sigma:g} Å is larger than the box '
               f'({_box_text(measured)}): one atom covers the whole field of '
               f'view, and atoms cannot be told apart. Give the width in Å '
               f'({width})')
    elif sigma > 0.25 * float(extent.min()):
        found.append(f'the atom width sigma = {sigma:g} Å is more than a '
                     f'quarter of the box ({_box_text(measured)}): few atoms '
                     f'can be told apart. Check {width}')
    if sigma < 0.1 * cell:
        refuse(f'the atom width sigma = {sigma:g} Å is below a tenth of a '
               f'detector cell ({cell:.3g} Å): an atom lies within one cell '
               f'and its position cannot be found. Either the width is not '
               f'in Å (give it with {width}; pixels or nm are a common '
               f'mix-up), or the detector is too coarse for atoms this '
               f'narrow (measure with finer cells: less binning)')
    elif sigma < 0.5 * cell:
        found.append(f'the atom width sigma = {sigma:g} Å is below half a '
                     f'detector cell ({cell:.3g} Å): positions are poorly '
                     f'determined. Check that {width} is in Å')

    # The data scale: how many atoms the data hold against how many fit.
    w = _smallest_weight(weights)
    count = expected_atoms(measured, weights, intensity)
    capacity = box_capacity(measured)
    unit = (f'{names["intensity"]}' if intensity is None
            else f'not {names["intensity"]} = {float(intensity):g}')
    fix = (f'give the intensity of one atom in data units ({unit}) or the '
           f'atom weights in data units ({names["weights"]}), or let '
           f'calibration estimate it ({names["calibration"]})')
    integral = count * w * _intensity(intensity)
    held = (f'the data hold {count:.2g} atoms of weight {w:g} (the integral '
            f'of a projection, {integral:.2g}, per atom)')
    scaled = np.asarray(measured.data, dtype=float) / (
        _intensity(intensity) * w)
    with np.errstate(over='ignore'):
        square = float(np.sum(np.square(scaled)))
    if count > capacity:
        refuse(f'{held}, more than the {capacity:.2g} atoms a box of '
               f'{_box_text(measured)} can hold: the data are not in units '
               f'of one atom. To fix it, {fix}')
    elif not math.isfinite(square):
        refuse(f'the data are too large for a misfit (their squared norm '
               f'overflows): they are not in units of one atom. To fix it, '
               f'{fix}')
    elif count < 0.5:
        found.append(f'{held}: expect no atoms. If an atom of weight w adds '
                     f'more or less than w to the integral of a projection, '
                     f'the data are in other units: {fix}')
    elif count > 0.25 * capacity:
        found.append(f'{held}, more than a quarter of the {capacity:.2g} '
                     f'atoms a box of {_box_text(measured)} can hold: check '
                     f'the data scale; if they are not in units of one atom, '
                     f'{fix}')

    # Enough data values for the atoms the data hold?
    n_values = int(measured.data.size)
    if math.isfinite(count) and count <= capacity and n_values < d * count:
        refuse(f'the data have {n_values} values ({measured.n_angles} '
               f'projections of {int(np.prod(measured.data.shape[1:]))} '
               f'detector cells) for about {count:.3g} atoms of {d} '
               f'coordinates each: too few detector cells or projections '
               f'(cells of {cell:.3g} Å for atoms of width {sigma:g} Å), or '
               f'data not in units of one atom. Measure with finer cells '
               f'(less binning) or more projections; if the data scale is '
               f'wrong, {fix}')
    return found
