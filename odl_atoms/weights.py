"""Allowed atom weights: how species are told apart.

Several solvers and the atom picker accept ``weights`` as one number (a
single species), a sequence of numbers, or a mapping ``{label: weight}``;
`allowed_weights` turns any of these into parallel arrays of labels and
weights.
"""

import numbers
from collections.abc import Mapping

import numpy as np

__all__ = ('allowed_weights',)


def allowed_weights(weights):
    """Return ``(labels, values)`` arrays of the allowed species.

    Parameters
    ----------
    weights : float, sequence of float or mapping
        One weight (label ``'X'``), several (labels ``'X0'``, ``'X1'``, ...),
        or ``{label: weight}``.

    Examples
    --------
    >>> allowed_weights({'Au': 1.0, 'Pt': 1.3})
    (array(['Au', 'Pt'], dtype='<U2'), array([ 1. ,  1.3]))
    >>> allowed_weights(2.0)
    (array(['X'], dtype='<U1'), array([ 2.]))
    """
    if isinstance(weights, Mapping):
        labels = np.array([str(k) for k in weights], dtype=str)
        values = np.array([float(v) for v in weights.values()])
    elif isinstance(weights, numbers.Real) and not isinstance(weights, bool):
        labels, values = np.array(['X']), np.array([float(weights)])
    else:
        try:
            values = np.array(weights, dtype=float).ravel()
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f'allowed atom weights must be a number, a sequence of numbers '
                f'or a mapping {{label: weight}}, got {weights!r}') from exc
        labels = np.array(['X'] * values.size if values.size == 1 else
                          [f'X{i}' for i in range(values.size)])
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            f'allowed atom weights must be positive numbers, got {weights!r}')
    return labels, values
