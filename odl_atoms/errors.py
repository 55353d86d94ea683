"""The toolkit's own error for input that the user can fix.

`ValidationError` is raised for a bad value, name or file given to the
library (an unknown solver, a reconstruction too small to estimate the
nearest-neighbour distance, a problem too large for the memory, ...). It is
a `ValueError`, so ``except ValueError`` catches it too. The command line
reports it in one line with exit status 2; any other exception there means
that the run failed (exit status 1): a bug, or a resource (memory, disk)
that ran out after the checks.

`ValidationTypeError` is the same for an argument of the wrong type: it is
also a `TypeError`, so that code catching ``TypeError`` keeps working.

This module imports nothing, so that every layer can use it.
"""

__all__ = ('ValidationError',)


class ValidationError(ValueError):

    """Input the user can fix: a bad value, name or file.

    The message says what is wrong and what to do.

    Examples
    --------
    >>> try:
    ...     raise ValidationError("unknown solver 'magic'; choose one of adcg")
    ... except ValueError as exc:
    ...     print(exc)
    unknown solver 'magic'; choose one of adcg
    """


class ValidationTypeError(ValidationError, TypeError):

    """Input the user can fix: an argument of the wrong type.

    Both a `ValidationError` (the command line's exit status 2) and a
    `TypeError`.

    Examples
    --------
    >>> isinstance(ValidationTypeError('x'), (ValidationError, TypeError))
    True
    """
