"""Checked, immutable method options: what every solver's ``Options`` uses.

A solver's options are a frozen dataclass (``ADCG.Options``,
``SIRT.Options``, ...): built once when the solver is, checked field by field
with the converters here (a bad value fails at once with a message naming
the option and what it takes), and unchangeable afterwards, so a solver is
the same method for every problem it solves.
"""

import math
import numbers
from dataclasses import fields

from odl_atoms.errors import ValidationError

__all__ = ('positive', 'non_negative', 'count', 'fraction', 'one_of',
           'optional', 'set_option', 'option_defaults')


def _real(name, value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValidationError(f'`{name}` must be {what}, got {value!r}')
    value = float(value)
    if not math.isfinite(value):
        raise ValidationError(f'`{name}` must be {what}, got {value!r}')
    return value


def positive(name, value):
    """``value`` as a float > 0, or ValueError naming ``name``.

    Examples
    --------
    >>> positive('tol', 0.5)
    0.5
    >>> positive('tol', -1)
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: `tol` must be a number > 0, got -1
    """
    checked = _real(name, value, 'a number > 0')
    if not checked > 0:
        raise ValidationError(f'`{name}` must be a number > 0, got {value!r}')
    return checked


def non_negative(name, value):
    """``value`` as a float >= 0, or ValueError naming ``name``."""
    checked = _real(name, value, 'a number >= 0')
    if checked < 0:
        raise ValidationError(f'`{name}` must be a number >= 0, got {value!r}')
    return checked


def fraction(name, value):
    """``value`` as a float in (0, 1), or ValueError naming ``name``."""
    checked = _real(name, value, 'a number in (0, 1)')
    if not 0 < checked < 1:
        raise ValidationError(f'`{name}` must be a number in (0, 1), got '
                              f'{value!r}')
    return checked


def count(name, value, minimum=1):
    """``value`` as an int >= ``minimum``, or ValueError naming ``name``.

    Examples
    --------
    >>> count('local_maxiter', 100)
    100
    >>> count('local_maxiter', 'x')
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: `local_maxiter` must be an integer >= 1, got 'x'
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        raise ValidationError(f'`{name}` must be an integer >= {minimum}, '
                              f'got {value!r}')
    return int(value)


def one_of(name, value, choices):
    """``value`` if it is one of ``choices``, else ValueError."""
    if not (isinstance(value, str) and value in choices):
        raise ValidationError(f'`{name}` must be one of '
                              f'{", ".join(map(repr, choices))}, got {value!r}')
    return value


def optional(check, name, value, *args):
    """``None``, or ``check(name, value, *args)``."""
    return None if value is None else check(name, value, *args)


def set_option(options, name, value):
    """Set a field of a frozen options object while it is being checked."""
    object.__setattr__(options, name, value)


def option_defaults(options_class):
    """``{name: default}`` of an options dataclass (for reprs and the CLI)."""
    return {f.name: f.default for f in fields(options_class)}
