"""The noise model of the data, estimated from the data themselves.

Electron counting makes HAADF-STEM noise Poisson-Gaussian: a pixel whose
mean value is ``y`` (as the microscope recorded it, before any background
is subtracted) has the variance

    variance(y) = gain * (y - offset) + read_noise ** 2,

with ``gain`` the detector units per electron (``1 / dose`` for data in
fractions of the beam), ``offset`` the value of no electrons (the dark
level) and ``read_noise`` the standard deviation there. `NoiseModel` holds
the numbers; `estimate_noise` finds them from the images. The
mean-variance relation fixes ``gain`` and the intercept ``read_noise ** 2 -
gain * offset``, not the two apart: a positive intercept is reported as
read noise (offset 0), a negative one as an offset (read noise 0); the
variance of every value is the same either way. Prepared data had a
background subtracted (``ProjectionData.background``): their variances are
those of ``data + background``.

How the estimate works
----------------------
The noise of different pixels is independent, the image of atoms is smooth
on the scale of the pixels: the noise spreads evenly over all spatial
frequencies, the atoms occupy the low ones. `estimate_noise`

1. removes the images' edge discontinuities (the periodic-plus-smooth
   decomposition of Moisan, J. Math. Imaging Vis. 39, 2011), so that the
   Fourier transform sees no jump at the borders;
2. chooses the band of frequencies where the tilt-averaged spectrum,
   averaged over rings of equal frequency, is flat: from the radius on
   beyond which its mean excess over the level at the highest frequencies
   is within `BAND_TOLERANCE` (plus its statistical error), and leaving out
   patches that still hold signal (Bragg spots); there the images hold
   noise only;
3. filters every image to that band, ``r = h * y`` (``h`` the band's filter),
   and regresses ``r_i ** 2`` on the local mean: for independent noise of
   variance ``v_i = gain * y_i + c``, exactly

       E[r_i ** 2] = gain * (h ** 2 * y)_i + c * sum(h ** 2),

   whatever the shape of the band, so a weighted linear fit over all pixels
   (in bins of ``h ** 2 * y``) gives ``gain`` and ``c = read_noise ** 2``
   without any model of the atoms.

It needs images sampled finely enough that the highest frequencies hold no
signal (pixels smaller than about the atom width); where the spectrum is
not flat at the top, the estimate includes signal and a warning says so.

Averaged values
---------------
Data prepared in 2D are images averaged along the tilt axis
(``pixels_averaged`` values each; binning averages too). The variance of
an average of ``n`` independent pixels of mean ``y`` is
``variance(y) / n`` (the model is linear in ``y``), which
`NoiseModel.std_of_mean` returns. The single number ``noise_std`` the
solvers' stopping rules and the discrepancy principle take is the root mean
square of these standard deviations (`NoiseModel.effective_std`): the
expected misfit of the noise, ``0.5 c sum_i v_i``, is then what they
assume.
"""

import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

from odl_atoms.errors import ValidationError

__all__ = ('NoiseModel', 'estimate_noise', 'periodic_component',
           'BAND_TOLERANCE')

#: Mean relative excess of the band's power over the high-frequency level
#: (signal in the band, the bias of the estimate) that `estimate_noise`
#: accepts, beyond the statistical error of that mean.
BAND_TOLERANCE = 0.01

#: Fraction of the frequencies, the highest ones, whose level is the noise
#: floor the band is measured against.
_TOP_FRACTION = 0.1

#: Pixels at the edges of each image left out of the regression.
_BORDER = 2

#: Bins of the local mean in the regression.
_N_BINS = 24


@dataclass(frozen=True)
class NoiseModel:

    """Poisson-Gaussian noise: ``variance(y) = gain * (y - offset) + read_noise ** 2``.

    ``y`` is a pixel's mean as recorded (before a background is
    subtracted), in the data's units.

    Parameters
    ----------
    gain : float >= 0
        Data units per detected electron (``1 / dose`` for fractions of
        the beam, the detector's conversion factor for counts).
    read_noise : float >= 0
        Standard deviation of a pixel at the dark level, in data units.
    offset : float, optional
        The dark level: the value of a pixel that detected no electron.
    details : dict, optional
        How the values were obtained (for reports; not compared).

    Examples
    --------
    >>> model = NoiseModel(gain=0.5, read_noise=2.0)
    >>> model.variance([10.0, 0.0]).tolist()   # 0 counts as one electron
    [9.0, 4.25]
    >>> model.std_of_mean(10.0, 4)   # mean of 4 pixels: variance 9 / 4
    1.5
    >>> model
    NoiseModel(gain=0.5, read_noise=2)
    """

    gain: float
    read_noise: float
    offset: float = 0.0
    details: dict = field(default_factory=dict, compare=False, repr=False)

    def __repr__(self):
        text = (f'{type(self).__name__}(gain={self.gain:.6g}, '
                f'read_noise={self.read_noise:.6g}')
        if self.offset:
            text += f', offset={self.offset:.6g}'
        return text + ')'

    def __post_init__(self):
        for name in ('gain', 'read_noise'):
            value = getattr(self, name)
            if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                    or not np.isfinite(value) or value < 0):
                raise ValidationError(
                    f'{name} must be a number >= 0 (data units), got '
                    f'{value!r}')
            object.__setattr__(self, name, float(value))
        if not (isinstance(self.offset, numbers.Real)
                and np.isfinite(self.offset)):
            raise ValidationError(f'offset must be a finite number, got '
                                  f'{self.offset!r}')
        object.__setattr__(self, 'offset', float(self.offset))
        if self.gain == 0 and self.read_noise == 0:
            raise ValidationError(
                'a noise model needs gain > 0 or read_noise > 0 (both 0 is '
                'noise-free data: give noise_std=0 to the problem instead)')
        object.__setattr__(self, 'details', dict(self.details))

    @classmethod
    def from_dose(cls, dose, read_noise=0.0):
        """Counting noise of data in fractions of the beam: ``gain = 1 / dose``.

        Examples
        --------
        >>> NoiseModel.from_dose(1e4).gain
        0.0001
        """
        if not (isinstance(dose, numbers.Real) and np.isfinite(dose)
                and dose > 0):
            raise ValidationError(f'dose (electrons per pixel) must be a '
                                  f'positive number, got {dose!r}')
        return cls(1.0 / float(dose), read_noise)

    def variance(self, values):
        """Variance of pixels of mean ``values`` (as recorded).

        Means below one electron above the offset count as one electron:
        data values are noisy estimates of the means, and a pixel of vacuum
        that happened to count nothing still has a variance.
        """
        values = np.asarray(values, dtype=float)
        return self.gain * np.maximum(values - self.offset, self.gain) + \
            self.read_noise ** 2

    def std_of_mean(self, values, n=1):
        """Standard deviation of the mean of ``n`` pixels of mean ``values``.

        ``n`` may be an array broadcasting with ``values`` (e.g. the
        ``pixels_averaged`` of prepared data).
        """
        n = np.asarray(n, dtype=float)
        if np.any(n < 1):
            raise ValidationError(f'n (pixels averaged) must be >= 1, got '
                                  f'{n.tolist()}')
        return np.sqrt(self.variance(values) / n)

    def effective_std(self, values, n=1, scale=1.0):
        """The root-mean-square noise of data ``values`` (a ``noise_std``).

        Parameters
        ----------
        values : array-like
            Data (means of ``n`` pixels each), shape ``(n_angles, ...)``.
        n : int or array-like, optional
            Pixels averaged into each value.
        scale : float or array-like, optional
            The data are divided by it afterwards (an atom intensity, or one
            factor per projection broadcasting along the first axis): the
            noise is divided too.

        Returns
        -------
        noise_std : float
            ``sqrt(mean(variance / (n scale ** 2)))``: with it,
            ``N c noise_std ** 2`` is the expected squared noise norm.

        Examples
        --------
        >>> model = NoiseModel(gain=1.0, read_noise=0.0)
        >>> model.effective_std([[1.0, 3.0]])   # sqrt((1 + 3) / 2)
        1.414213...
        """
        values = np.asarray(values, dtype=float)
        scale = np.asarray(scale, dtype=float)
        if scale.ndim == 1 and values.ndim > 1:
            scale = scale.reshape((-1,) + (1,) * (values.ndim - 1))
        var = self.variance(values) / np.asarray(n, dtype=float) / scale ** 2
        return float(np.sqrt(np.mean(var)))

    def to_dict(self):
        """The values (and how they were found) as a JSON-able dict."""
        return {'gain': self.gain, 'read_noise': self.read_noise,
                'offset': self.offset,
                **{k: v for k, v in self.details.items()}}


# --- Estimation


def periodic_component(images):
    """Return the periodic part of each image (Moisan's decomposition).

    An image ``u`` is ``p + s`` with ``s`` smooth (harmonic inside) and
    ``p`` free of the jumps that the periodic extension of ``u`` has at the
    borders, so that the Fourier transform of ``p`` has no edge artefacts.

    Parameters
    ----------
    images : array-like, shape ``(n, ...)``
        ``n`` images of one or two dimensions.

    Returns
    -------
    periodic : numpy.ndarray
        Same shape; ``images - periodic`` is smooth.

    Examples
    --------
    A ramp's periodic extension jumps at the border; its periodic part
    does not (its values at both ends agree):

    >>> ramp = np.arange(8.0)[None]
    >>> p = periodic_component(ramp)
    >>> bool(abs(p[0, 0] - p[0, -1]) < abs(ramp[0, 0] - ramp[0, -1]))
    True
    """
    u = np.asarray(images, dtype=float)
    axes = tuple(range(1, u.ndim))
    v = np.zeros_like(u)
    for ax in axes:
        first = np.take(u, [0], axis=ax)
        last = np.take(u, [-1], axis=ax)
        jump = last - first
        idx0 = [slice(None)] * u.ndim
        idx1 = [slice(None)] * u.ndim
        idx0[ax], idx1[ax] = slice(0, 1), slice(-1, None)
        v[tuple(idx0)] += jump
        v[tuple(idx1)] -= jump
    denom = 0.0
    for ax in axes:
        n = u.shape[ax]
        q = 2.0 * np.cos(2.0 * np.pi * np.arange(n) / n) - 2.0
        shape = [1] * (u.ndim - 1)
        shape[ax - 1] = n
        denom = denom + q.reshape(shape)
    denom = np.broadcast_to(denom, u.shape[1:]).copy()
    denom.flat[0] = 1.0  # the mean: s has none
    s_hat = np.fft.fftn(v, axes=axes) / denom
    s_hat[(slice(None),) + (0,) * len(axes)] = 0.0
    return u - np.real(np.fft.ifftn(s_hat, axes=axes))


def estimate_noise(images, pixels_averaged=1, tolerance=BAND_TOLERANCE):
    """Estimate the Poisson-Gaussian noise of images (see the module notes).

    Parameters
    ----------
    images : `~odl_atoms.io.TiltSeries`, `~odl_atoms.io.ProjectionData` or array-like
        The images: a tilt series as read, prepared projection data (their
        values as recorded, ``data + background``; 3D images, or 2D
        profiles whose values average ``pixels_averaged`` pixels), or an
        array ``(n_images, ny, nx)`` or ``(n_profiles, n)``.
    pixels_averaged : int, optional
        Pixels averaged into each value of an array (taken from prepared
        data otherwise). The model returned is that of one pixel.
    tolerance : float, optional
        Relative excess over the high-frequency level up to which the
        smoothed spectrum is taken as noise only.

    Returns
    -------
    model : `NoiseModel`
        Per pixel; ``model.details`` holds the standard errors, the
        fraction of frequencies used and the method.

    Raises
    ------
    ValueError
        If the images are too small or constant.

    Warns
    -----
    UserWarning
        If the spectrum is not flat at the highest frequencies (signal up to
        the pixel scale: the noise is overestimated), or the images hold too
        little range of intensity to tell the gain from the read noise.

    Examples
    --------
    Images of smooth blobs with Poisson noise of 400 electrons per unit
    and Gaussian read noise of 0.02:

    >>> rng = np.random.default_rng(0)
    >>> y, x = np.mgrid[0:64, 0:64]
    >>> clean = np.stack([sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 12)
    ...                       for cx, cy in rng.uniform(8, 56, (30, 2)))
    ...                   for _ in range(3)])
    >>> noisy = rng.poisson(400 * clean) / 400 + rng.normal(0, 0.02, clean.shape)
    >>> model = estimate_noise(noisy)
    >>> round(model.gain * 400, 1), round(model.read_noise, 3)
    (1.0, 0.02)
    """
    values, n_avg, source = _images_of(images, pixels_averaged)
    if values.ndim not in (2, 3):
        raise ValidationError(
            f'the images must have shape (n_images, ny, nx) or (n_profiles, '
            f'n), got {values.shape}')
    if min(values.shape[1:]) < 8 or values[0].size < 64:
        raise ValidationError(
            f'images of {values.shape[1:]} pixels are too small to estimate '
            f'the noise from; give the noise model (gain and read noise)')
    if not np.all(np.isfinite(values)):
        raise ValidationError('the images contain NaN or inf values')
    if np.ptp(values) == 0:
        raise ValidationError('the images are constant: no noise to estimate')

    axes = tuple(range(1, values.ndim))
    shape = values.shape[1:]
    periodic = periodic_component(values)
    spectra = np.abs(np.fft.fftn(periodic, axes=axes)) ** 2 / values[0].size
    mask, band_info = _noise_band(spectra, tolerance)

    h = np.real(np.fft.ifftn(mask))
    kernel_hat = np.fft.fftn(h * h)
    rho = float(np.sum(h * h))
    residual = np.real(np.fft.ifftn(np.fft.fftn(periodic, axes=axes) * mask,
                                    axes=axes))
    local = np.real(np.fft.ifftn(np.fft.fftn(values, axes=axes) * kernel_hat,
                                 axes=axes))
    inner = (slice(None),) + tuple(
        slice(_BORDER, n - _BORDER) if n > 4 * _BORDER else slice(None)
        for n in shape)
    r2 = residual[inner].ravel() ** 2
    z = local[inner].ravel()
    gain, c, errors, spread = _fit_line(z, r2, rho)

    if gain > 0 and c > 0 and errors[0] > 0.3 * gain:
        warnings.warn(
            f'the images hold too little range of intensity to tell the gain '
            f'from the read noise (gain {gain * n_avg:.3g} +- '
            f'{errors[0] * n_avg:.2g}); give them if known', UserWarning,
            stacklevel=2)
    details = {
        'method': f'spectral band ({100 * band_info["fraction"]:.0f} % of '
                  f'the frequencies, {source}), regression of the band\'s '
                  f'power on the local mean',
        'gain_error': errors[0] * n_avg,
        'read_noise_error': (0.5 * errors[1] / np.sqrt(c) * n_avg ** 0.5
                             if c > 0 else None),
        'band_fraction': band_info['fraction'],
        'top_excess': band_info['top_excess'],
        'pixels_averaged': int(n_avg),
    }
    if band_info['top_excess'] > 2 * tolerance + 2 * band_info['excess_noise']:
        warnings.warn(
            f'the image spectrum still falls at the highest frequencies '
            f'({100 * band_info["top_excess"]:.0f} % more power in the lower '
            f'half of the noise band than in the upper): the '
            f'atoms have detail down to the pixel size, so the noise estimate '
            f'includes signal (too high); give the detector gain and read '
            f'noise if known', UserWarning, stacklevel=2)
    # A value of one pixel: the data averaged n_avg pixels.
    gain *= n_avg
    c *= n_avg
    if gain <= 0 and c <= 0:
        raise ValidationError('no noise found in the images (the band holds '
                              'no power); give the noise model')
    if c >= 0 or gain <= 0:
        return NoiseModel(max(gain, 0.0), float(np.sqrt(max(c, 0.0))),
                          details=details)
    # A negative intercept: a dark level above zero (detector offset).
    return NoiseModel(gain, 0.0, offset=-c / gain, details=details)


def _images_of(images, pixels_averaged):
    """``(values as recorded, pixels averaged, description)``."""
    from odl_atoms.io import ProjectionData, TiltSeries

    if isinstance(images, TiltSeries):
        values = np.array(images.images, dtype=float)
        n_avg, source = 1, 'tilt-series images'
    elif isinstance(images, ProjectionData):
        values = np.array(images.data, dtype=float)
        if images.background is not None:
            values = values + np.asarray(images.background, float).reshape(
                (-1,) + (1,) * (values.ndim - 1))
        n_avg = images.pixels_averaged or 1
        source = ('prepared profiles' if images.ndim == 2
                  else 'prepared images')
    else:
        try:
            values = np.array(images, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f'images must be a TiltSeries, a ProjectionData or '
                            f'an array, got {type(images).__name__}') from None
        n_avg, source = pixels_averaged, 'images'
    if not (isinstance(n_avg, numbers.Integral) and n_avg >= 1):
        raise ValidationError(f'pixels_averaged must be an integer >= 1, got '
                              f'{n_avg!r}')
    return values, int(n_avg), source


def _frequency_radius(shape):
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing='ij')
    return np.sqrt(sum(g ** 2 for g in grids))


def _noise_band(spectra, tolerance):
    """Mask of the frequencies where the spectrum is flat (noise only).

    The spectra, each divided by its level at the highest frequencies and
    averaged over the images, are averaged over rings of equal frequency
    radius (many frequencies each, so the decision is not swayed by the
    noise of single frequencies); the band is every frequency beyond the
    smallest radius from which every ring stays within ``tolerance`` of the
    top level.
    """
    from scipy.ndimage import uniform_filter

    shape = spectra.shape[1:]
    radius = _frequency_radius(shape)
    top = radius >= np.quantile(radius, 1.0 - _TOP_FRACTION)
    floors = np.array([s[top].mean() for s in spectra])
    if np.any(floors <= 0):
        raise ValidationError('an image holds no power at high frequencies '
                              '(constant or smoothed images?); give the '
                              'noise model')
    ratio = np.mean(spectra / floors.reshape((-1,) + (1,) * len(shape)),
                    axis=0)
    # Rings of equal width, each holding at least 32 frequencies.
    n_rings = int(np.clip(radius.size // 32, 4, 40))
    edges = np.linspace(0.0, radius.max() * (1 + 1e-12), n_rings + 1)
    ring = np.clip(np.searchsorted(edges, radius, side='right') - 1, 0,
                   n_rings - 1)
    counts = np.bincount(ring.ravel(), minlength=n_rings)
    level = np.bincount(ring.ravel(), weights=ratio.ravel(),
                        minlength=n_rings) / np.maximum(counts, 1)
    # The band starts at the smallest radius beyond which the mean excess
    # over the top level (the bias it would give the estimate) is within
    # the tolerance, allowing for the noise of that mean (a mean of
    # exponential values over the images).
    first = n_rings - 1
    for c in range(n_rings - 1, -1, -1):
        n_in = counts[c:].sum()
        excess = float(np.sum(counts[c:] * (level[c:] - 1.0))) / max(n_in, 1)
        se = 1.0 / np.sqrt(max(n_in, 1) * spectra.shape[0] / 2.0)
        if excess <= tolerance + se:
            first = c
    # ... and where no ring (averaged with its neighbours) stands out: a
    # leak of signal in a few rings biases the slope of the regression more
    # than the mean.
    n_img = spectra.shape[0]
    smooth_level = np.convolve(level * counts, np.ones(3), 'same') / \
        np.maximum(np.convolve(counts, np.ones(3), 'same'), 1)
    smooth_counts = np.convolve(counts, np.ones(3), 'same')
    ring_se = 1.0 / np.sqrt(np.maximum(smooth_counts, 1) * n_img / 2.0)
    loud = np.flatnonzero(smooth_level > 1.0 + tolerance + 3.0 * ring_se)
    if loud.size:
        first = max(first, int(loud.max()) + 1)
    first = min(first, n_rings - 1)
    mask = (ring >= first) & (radius > 0)
    # Inside the rings, leave out patches that still hold signal (Bragg
    # spots of a crystal): the neighbourhood of each frequency, itself
    # left out so that its own noise does not decide.
    size = 5
    box = uniform_filter(ratio, size=size, mode='wrap')
    smooth = (box * size ** len(shape) - ratio) / (size ** len(shape) - 1)
    patch_slack = 0.1 + 4.0 / np.sqrt((size ** len(shape) - 1)
                                      * spectra.shape[0] / 2.0)
    mask &= smooth <= 1.0 + patch_slack
    if mask.mean() < 0.01:
        mask = (ring >= first) & (radius > 0)
    # Signal that leaks into the band's lower edge sits where the images
    # change fastest and biases the regression's slope far more than the
    # band's mean: the regression uses the band's outer half (measured on
    # abTEM images and smooth blobs).
    outer = radius >= np.median(radius[mask]) if mask.any() else mask
    if (mask & outer).mean() >= 0.005:
        mask &= outer
    fraction = float(mask.mean())
    # Flatness inside the band: its lower frequencies against its higher
    # ones (signal would raise the lower).
    inside = radius[mask]
    split = np.median(inside)
    low, high = mask & (radius <= split), mask & (radius > split)
    top_excess = (float(ratio[low].mean() / ratio[high].mean() - 1.0)
                  if low.any() and high.any() else 0.0)
    return mask.astype(float), {'fraction': fraction,
                                'top_excess': top_excess,
                                'excess_noise': float(
                                    2.0 / np.sqrt(max(low.sum(), 1)
                                                  * spectra.shape[0] / 2.0))}


def _fit_line(z, r2, rho):
    """Weighted fit ``E[r2] = gain * z + c * rho`` in bins of ``z``."""
    order = np.argsort(z)
    n_bins = int(min(_N_BINS, max(2, z.size // 50)))
    groups = np.array_split(order, n_bins)
    zb = np.array([z[g].mean() for g in groups])
    rb = np.array([r2[g].mean() for g in groups])
    nb = np.array([g.size for g in groups], dtype=float)
    design = np.stack([zb, np.full_like(zb, rho)], axis=1)
    weights = nb / np.maximum(rb, 1e-300) ** 2
    for _ in range(4):
        wd = design * weights[:, None]
        coef, *_ = np.linalg.lstsq(wd.T @ design, wd.T @ rb, rcond=None)
        pred = design @ coef
        if np.all(pred > 0):
            weights = nb / pred ** 2
    gain, c = coef
    if gain < 0:
        # No signal-dependent noise: a constant variance.
        gain = 0.0
        c = float(np.sum(weights * rb) / np.sum(weights * rho))
        coef = np.array([gain, c])
    pred = design @ coef
    chi2 = float(np.sum(weights * (rb - pred) ** 2)) / max(n_bins - 2, 1)
    try:
        cov = np.linalg.inv((design * weights[:, None]).T @ design) * max(
            chi2, 1.0)
        errors = np.sqrt(np.diag(cov))
    except np.linalg.LinAlgError:
        errors = np.array([np.nan, np.nan])
    spread = float(np.ptp(zb))
    return float(gain), float(c), errors, spread
