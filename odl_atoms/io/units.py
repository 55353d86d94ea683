"""Units of lengths and angles, as microscope files write them.

Microscope software writes units as free text: ``'nm'``, ``'Å'``, ``'A'``
(meaning ångström), ImageJ's ``'\\u00C5'`` and ``'micron'``, HyperSpy's
``'<undefined>'``. The tables here list what is understood; anything else is
unknown (``None``) and the caller asks the user for the value. (A general
unit library does not fit: Pint reads ``'A'`` as ampere and ``'px'`` as a
96th of an inch.)
"""

import re
import unicodedata

import numpy as np

__all__ = ('angstrom_per_unit', 'radians_per_unit', 'LENGTH_UNITS',
           'ANGLE_UNITS')

#: Length units understood (lower case, NFC) and their size in angstrom.
LENGTH_UNITS = {
    'm': 1e10, 'meter': 1e10, 'metre': 1e10,
    'cm': 1e8, 'mm': 1e7,
    'um': 1e4, '\u00b5m': 1e4, '\u03bcm': 1e4, 'micron': 1e4, 'microns': 1e4,
    'micrometer': 1e4, 'micrometre': 1e4,
    'nm': 10.0, 'nanometer': 10.0, 'nanometre': 10.0, 'nanometers': 10.0,
    'pm': 0.01, 'picometer': 0.01, 'picometre': 0.01,
    '\u00e5': 1.0, 'a': 1.0, 'ang': 1.0, 'angstrom': 1.0, 'angstroms': 1.0,
    'angstroem': 1.0, '\u00e5ngstr\u00f6m': 1.0, '\u00e5ngstrom': 1.0,
}

#: Angle units understood (lower case, NFC) and their size in radians.
ANGLE_UNITS = {
    'rad': 1.0, 'radian': 1.0, 'radians': 1.0, 'mrad': 1e-3,
    'deg': np.pi / 180, 'degree': np.pi / 180, 'degrees': np.pi / 180,
    '\u00b0': np.pi / 180,
}


def _normalise(unit):
    if unit is None:
        return None
    if isinstance(unit, bytes):
        unit = unit.decode('utf-8', 'replace')
    if not isinstance(unit, str):
        return None
    # ImageJ writes non-ASCII characters as \uXXXX escapes.
    unit = re.sub(r'\\u([0-9a-fA-F]{4})', lambda m: chr(int(m[1], 16)), unit)
    # NFC turns the angstrom sign (U+212B) and A + ring into U+00C5.
    return unicodedata.normalize('NFC', unit).strip().lower()


def angstrom_per_unit(unit):
    """Return the size of the length ``unit`` in angstrom, or ``None``.

    Examples
    --------
    >>> angstrom_per_unit('nm'), angstrom_per_unit('\\u00C5'), angstrom_per_unit('A')
    (10.0, 1.0, 1.0)
    >>> angstrom_per_unit('micron'), angstrom_per_unit('pm')
    (10000.0, 0.01)
    >>> angstrom_per_unit('px') is None, angstrom_per_unit('<undefined>') is None
    (True, True)
    """
    return LENGTH_UNITS.get(_normalise(unit))


def radians_per_unit(unit):
    """Return the size of the angle ``unit`` in radians, or ``None``.

    Examples
    --------
    >>> radians_per_unit('deg') == np.pi / 180, radians_per_unit('rad')
    (True, 1.0)
    >>> radians_per_unit('') is None
    True
    """
    return ANGLE_UNITS.get(_normalise(unit))
