"""The atom width, from the data alone.

The projection of an atom is a Gaussian of the atom's width ``sigma``
(thermal motion, probe and source size): where a projection's columns of
atoms are resolved, each peak has that width, and a fit of the projection
by peaks of one common width (`~odl_atoms.calibration.peaks.fit_peaks`)
measures it. Where columns overlap, a peak of the fit may hold two columns
at slightly different positions and looks wider: such projections are not
used. `estimate_width` combines the widths of the projections whose peaks
are resolved (every peak at least ``resolution * sigma`` from the others,
in the fits of most of their peaks) and fitted about as well as the best
projection.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from odl_atoms.errors import ValidationError

__all__ = ('WidthEstimate', 'estimate_width')


@dataclass(frozen=True, eq=False)
class WidthEstimate:

    """The atom width and where it came from.

    Attributes
    ----------
    sigma : float
        Atom width (angstrom).
    sigma_error : float
        Standard error (statistical, and the spread between projections).
    per_projection : numpy.ndarray
        The width fitted to each projection.
    used : numpy.ndarray of bool
        The projections the estimate combines.
    method : str
    """

    sigma: float
    sigma_error: float
    per_projection: np.ndarray
    used: np.ndarray
    method: str

    def __repr__(self):
        return (f'{type(self).__name__}(sigma={self.sigma:.4g}, '
                f'sigma_error={self.sigma_error:.2g}, '
                f'used={np.flatnonzero(self.used).tolist()})')


def estimate_width(fits, resolution=2.5, resolved_fraction=0.9,
                   misfit_ratio=4.0, indices=None):
    """Estimate the atom width from free-width peak fits of the projections.

    Parameters
    ----------
    fits : sequence of `~odl_atoms.calibration.peaks.PeakFit`
        One per projection, the width fitted (``fix_sigma=False``).
    resolution : float, optional
        Peaks closer than ``resolution * sigma`` count as overlapping.
    resolved_fraction : float, optional
        A projection is used if it has at least three peaks and at least
        this fraction of them is resolved.
    misfit_ratio : float, optional
        ... and if its reduced misfit is at most this many times the
        smallest among the resolved projections.
    indices : sequence of int, optional
        The projections' numbers, for the report (default 0, 1, ...).

    Returns
    -------
    estimate : `WidthEstimate`

    Warns
    -----
    UserWarning
        If no projection has resolved peaks: the narrowest projection's
        width is returned, an upper bound.

    Examples
    --------
    >>> from scipy.stats import norm
    >>> from odl_atoms.calibration.peaks import fit_peaks
    >>> edges = np.linspace(-8, 8, 129)
    >>> profile = sum(n * np.diff(norm.cdf(edges, c, 0.35)) / 0.125
    ...               for n, c in [(1, -4.0), (3, -1.5), (2, 1.0), (1, 3.5)])
    >>> estimate_width([fit_peaks(profile, edges)])
    WidthEstimate(sigma=0.35, sigma_error=..., used=[0])
    """
    fits = list(fits)
    if not fits:
        raise ValidationError('no projections to estimate the width from')
    indices = np.arange(len(fits)) if indices is None else np.asarray(indices)
    sig = np.array([f.sigma for f in fits])
    err = np.array([max(f.sigma_error, 1e-12) for f in fits])
    frac = np.array([
        float(np.mean(f.separations() >= resolution * f.sigma))
        if f.n_peaks else 0.0 for f in fits])
    chi = np.array([f.reduced_misfit for f in fits])
    # One or two peaks resolve nothing: a projection of overlapping columns
    # is fitted by a few wide peaks.
    many = np.array([f.n_peaks >= 3 for f in fits])
    resolved = (frac >= resolved_fraction) & many
    if not resolved.any():
        i = int(np.argmin(sig))
        warnings.warn(
            f'no projection has resolved peaks (columns closer than '
            f'{resolution:g} sigma overlap in every projection): the atom '
            f'width is taken from the narrowest projection ({sig[i]:.4g} A), '
            f'an upper bound; give the width (sigma=..., --sigma) if known',
            UserWarning, stacklevel=2)
        used = np.zeros(sig.size, bool)
        used[i] = True
        return WidthEstimate(
            sigma=float(sig[i]), sigma_error=float(err[i]),
            per_projection=sig, used=used,
            method=f'upper bound: the narrowest projection ({indices[i]}; '
                   f'none resolved)')
    used = resolved & (chi <= misfit_ratio * chi[resolved].min())
    w = 1.0 / err[used] ** 2
    sigma = float(np.sum(w * sig[used]) / np.sum(w))
    stat = float(1.0 / np.sqrt(np.sum(w)))
    spread = float(np.std(sig[used]) / np.sqrt(used.sum())) if used.sum() > 1 \
        else 0.0
    return WidthEstimate(
        sigma=sigma, sigma_error=max(stat, spread), per_projection=sig,
        used=used,
        method=f'peak fits of the {used.sum()} projection(s) with resolved '
               f'columns ({", ".join(str(i) for i in indices[used])})')
