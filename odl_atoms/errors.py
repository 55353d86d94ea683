"""The toolkit's own error for input that the user can fix.

`ValidationError` is raised for a bad value, name or file given to the
library (an unknown solver, a reconstruction too small to estimate the
nearest-neighbour distance, ...). It is a `ValueError`, so ``except
ValueError`` catches it too. The command line reports it in one line with
exit status 2; any other exception there is a bug (exit status 1).

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
