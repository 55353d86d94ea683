"""Calibration: the atom model and the noise, estimated from the data.

A user's tilt series is in the microscope's units (fractions of the beam,
detector counts), with an unknown atom width, an unknown intensity of one
atom, a background and an intensity factor per projection, and
Poisson-Gaussian noise. The data are modelled as

    y_a = k_a I R_sigma(x, w)_a + b_a + noise,

``R_sigma`` the exact projection of Gaussian atoms of width ``sigma``
(`~odl_atoms.GaussianRayTransform`, an atom of weight 1 integrating to 1),
``I`` the intensity of one atom (the data's scale), ``k_a`` the factor of
projection ``a`` (beam current, channelling; mean 1) and ``b_a`` its
background. One idea per module:

- `~odl_atoms.calibration.noise`: the noise model (gain and read noise) from
  the images' spectra (`estimate_noise`, `NoiseModel`);
- `~odl_atoms.calibration.peaks`: fits of each projection by Gaussian peaks
  of one width (`fit_peaks`, `fit_projections`);
- `~odl_atoms.calibration.width`: the atom width from the projections whose
  columns are resolved (`estimate_width`);
- `~odl_atoms.calibration.intensity`: the factors from the projections'
  totals and the intensity of one atom as the unit that makes the isolated
  peaks whole numbers of atoms (`estimate_intensity`, `integer_unit`);
- `~odl_atoms.calibration.refine`: all of it by least squares at given atoms
  (`refine_calibration`), other atom models for comparison
  (`fit_forward_model`), and species told apart by the intensity each atom
  needs (`fit_species`);
- `~odl_atoms.calibration.scale`: whether one atom fits the data at all
  (`atom_fraction`, `scale_message`: data in microscope units given as
  atom units).

`calibrate` runs the estimators in that order and returns a `Calibration`,
which turns the measurement into projection data in atom units
(`Calibration.apply`). After a reconstruction, `Calibration.refined` fits
the model again at the atoms found; reconstructing with the refined
calibration closes the loop.

Why the data are divided by the intensity
-----------------------------------------
`Calibration.apply` returns data in units of one atom, ``(y_a - b_a) /
(k_a I)``, rather than keeping the microscope's units and passing ``I`` to
the problem (``Problem(I * op, data)``): per-projection factors and
backgrounds are not a multiple of the operator, and data in atom units are
what every reader of a projection-data file expects (the command line's
atom counts, SIRT and its picking, the learned picker, the default atom
weights of 1). The noise is divided with the data.
"""

import dataclasses
import json
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

from odl_atoms.calibration.intensity import (OFFSETS, IntensityEstimate,
                                             UnitEstimate,
                                             column_bounds,
                                             estimate_intensity,
                                             integer_unit,
                                             projection_scales)
from odl_atoms.calibration.noise import NoiseModel, estimate_noise
from odl_atoms.calibration.peaks import (PeakFit, fit_peaks, fit_projections,
                                         half_width)
from odl_atoms.calibration.refine import (FORWARD_MODELS, ModelFit,
                                          RefinedCalibration, SpeciesFit,
                                          fit_forward_model, fit_species,
                                          refine_calibration)
from odl_atoms.calibration.scale import (MIN_ATOM_FRACTION, atom_fraction,
                                         scale_message)
from odl_atoms.calibration.width import WidthEstimate, estimate_width
from odl_atoms.errors import ValidationError
from odl_atoms.io.prepare import estimate_background

__all__ = ('Calibration', 'calibrate', 'NoiseModel', 'estimate_noise',
           'PeakFit', 'fit_peaks', 'fit_projections', 'WidthEstimate',
           'estimate_width', 'IntensityEstimate', 'UnitEstimate',
           'estimate_intensity', 'integer_unit', 'projection_scales',
           'column_bounds',
           'RefinedCalibration', 'refine_calibration', 'ModelFit',
           'fit_forward_model', 'FORWARD_MODELS', 'CALIBRATED_UNIT',
           'atom_fraction', 'scale_message', 'MIN_ATOM_FRACTION',
           'SpeciesFit', 'fit_species')

#: ``intensity_unit`` of calibrated projection data: one atom of weight 1
#: integrates to 1 in every projection.
CALIBRATED_UNIT = 'atoms'


@dataclass(frozen=True, eq=False, repr=False)
class Calibration:

    """The atom model and noise of a measurement, and how they were found.

    Parameters
    ----------
    sigma : positive float
        Atom width (angstrom).
    intensity : positive float
        Integral of one atom's projection in the measurement's units (data
        units times angstrom^(d-1)): the mean over the projections.
    scales : array-like, shape ``(n_angles,)``
        Intensity factor ``k_a`` of each projection.
    backgrounds : array-like, shape ``(n_angles,)``
        Background ``b_a`` still in each projection of the measurement
        (data units), subtracted by `apply`.
    noise : `NoiseModel`, optional
        Noise of one pixel; None if unknown.
    intensity_unit : str, optional
        The measurement's data unit.
    atoms : float, optional
        Atoms the data hold at this intensity.
    sources : dict, optional
        How each value was obtained (``'sigma'``, ``'intensity'``,
        ``'scales'``, ``'backgrounds'``, ``'noise'``).
    errors : dict, optional
        Standard errors (``'sigma'``, ``'intensity'``).
    notes : tuple of str, optional
        Warnings raised while estimating.

    Examples
    --------
    >>> cal = Calibration(sigma=0.4, intensity=0.05, scales=[1.0, 1.1],
    ...                   backgrounds=[0.0, 0.002],
    ...                   noise=NoiseModel(gain=1e-4, read_noise=0.0))
    >>> cal.to_dict()['intensity']['value']
    0.05
    """

    sigma: float
    intensity: float
    scales: np.ndarray
    backgrounds: np.ndarray
    noise: NoiseModel = None
    intensity_unit: str = None
    atoms: float = None
    sources: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    notes: tuple = ()

    def __post_init__(self):
        for name in ('sigma', 'intensity'):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and np.isfinite(value)
                    and value > 0):
                raise ValidationError(f'{name} must be a positive number, got '
                                      f'{value!r}')
            object.__setattr__(self, name, float(value))
        scales = np.array(self.scales, dtype=float, ndmin=1)
        backgrounds = np.broadcast_to(np.array(self.backgrounds, dtype=float),
                                      scales.shape).copy()
        if scales.ndim != 1 or np.any(~np.isfinite(scales)) or \
                np.any(scales <= 0):
            raise ValidationError('scales must be positive numbers, one per '
                                  'projection')
        if np.any(~np.isfinite(backgrounds)):
            raise ValidationError('backgrounds must be finite')
        if self.noise is not None and not isinstance(self.noise, NoiseModel):
            raise TypeError(f'noise must be a NoiseModel, got '
                            f'{type(self.noise).__name__}')
        for value in (scales, backgrounds):
            value.flags.writeable = False
        object.__setattr__(self, 'scales', scales)
        object.__setattr__(self, 'backgrounds', backgrounds)
        object.__setattr__(self, 'sources', dict(self.sources))
        object.__setattr__(self, 'errors', dict(self.errors))
        object.__setattr__(self, 'notes', tuple(self.notes))

    @property
    def n_angles(self):
        """Number of projections."""
        return self.scales.size

    # --- Using it

    def _check(self, measured):
        from odl_atoms.io import ProjectionData

        if not isinstance(measured, ProjectionData):
            raise TypeError(f'measured must be a ProjectionData, got '
                            f'{type(measured).__name__}')
        if measured.n_angles != self.n_angles:
            raise ValidationError(
                f'this calibration has {self.n_angles} projections, the data '
                f'{measured.n_angles}: calibrate these data')
        if measured.intensity_unit == CALIBRATED_UNIT:
            raise ValidationError(
                'these data are calibrated already (in atom units); give the '
                'measurement as prepared (microscope units)')

    def _scale(self):
        return self.intensity * self.scales

    def variances(self, measured):
        """Variance of every value of ``apply(measured).data`` (None without a
        noise model): for a weighted data term."""
        self._check(measured)
        if self.noise is None:
            return None
        y = np.asarray(measured.data, dtype=float)
        shape = (-1,) + (1,) * (y.ndim - 1)
        return _raw_variance(self.noise, measured) / self._scale().reshape(
            shape) ** 2

    def noise_std(self, measured):
        """The root-mean-square noise of ``apply(measured).data`` (a
        ``noise_std`` for `~odl_atoms.Problem`), or None.

        Its square is the mean of `variances`: ``N noise_std^2`` is the
        expected squared norm of the noise, what the discrepancy principle
        of the solvers' (unweighted) data term needs
        (`~odl_atoms.parameter_choice.discrepancy_bound`)."""
        var = self.variances(measured)
        if var is None:
            if measured.noise_std is None:
                return None
            return float(measured.noise_std / self.intensity)
        return float(np.sqrt(np.mean(var)))

    def apply(self, measured):
        """Return the measurement in atom units, ready to reconstruct.

        ``data = (measured.data - b_a) / (k_a I)``; ``sigma`` and
        ``noise_std`` are set, ``background`` is everything subtracted from
        the microscope's values (in the new units), ``intensity_unit`` is
        `CALIBRATED_UNIT` and ``source`` records this calibration.

        Parameters
        ----------
        measured : `~odl_atoms.io.ProjectionData`
            The measurement as prepared (`~odl_atoms.io.prepare_projections`),
            in microscope units.

        Returns
        -------
        calibrated : `~odl_atoms.io.ProjectionData`
        """
        self._check(measured)
        y = np.asarray(measured.data, dtype=float)
        shape = (-1,) + (1,) * (y.ndim - 1)
        scale = self._scale().reshape(shape)
        data = (y - self.backgrounds.reshape(shape)) / scale
        removed = self.backgrounds + (0.0 if measured.background is None
                                      else measured.background)
        try:
            source = json.loads(measured.source) if measured.source else {}
        except json.JSONDecodeError:
            source = {'text': measured.source}
        if not isinstance(source, dict):
            source = {'source': source}
        source['calibration'] = self.to_dict()
        return dataclasses.replace(
            measured, data=data.astype(measured.data.dtype, copy=False),
            sigma=self.sigma, noise_std=self.noise_std(measured),
            background=removed / self._scale(),
            intensity_unit=CALIBRATED_UNIT,
            source=json.dumps(source, ensure_ascii=False, default=_json))

    def refined(self, measured, atoms, weights=None, scales=True,
                backgrounds=True, weighted=False, shifts=None, sigma=True):
        """Return this calibration fitted again at given atoms.

        The width, intensity, factors and backgrounds are fitted by least
        squares at the atoms (`refine_calibration`); the noise model stays,
        and so do a width and an intensity that were given (their source
        ``'given'``): with a given intensity and the factors fitted, the
        factors take up what the fit's intensity differs by (the same
        model of the data).

        Parameters
        ----------
        measured : `~odl_atoms.io.ProjectionData`
            The measurement as prepared (microscope units).
        atoms : `~odl_atoms.SparseMeasure` or array-like ``(n, d)``
            The atoms (e.g. ``reconstruction.measure``), in atom units:
            their weights are relative intensities (1 for one species).
        weights : array-like, optional
            Weights for positions given as an array.
        scales, backgrounds : bool, optional
            Fit the factors and backgrounds (else keep this calibration's).
        weighted : bool, optional
            Weight the fit by the noise model's variances.
        shifts : array-like, optional
            Detector shifts of the projections
            (`~odl_atoms.GaussianRayTransform.shifted`), when the atoms
            were found with aligned projections.
        sigma : bool, optional
            Fit the width (else keep this calibration's, as a given one
            always is).

        Returns
        -------
        calibration : `Calibration`
        """
        from odl_atoms.space import SparseMeasure

        self._check(measured)
        if isinstance(atoms, SparseMeasure):
            positions, weights = atoms.positions, atoms.weights
        else:
            positions = atoms
        positions = np.asarray(positions, dtype=float)
        if positions.ndim != 2 or positions.shape[0] == 0:
            raise ValidationError('refining needs atoms: positions of shape '
                                  '(n, d) with n >= 1')
        op = dataclasses.replace(measured, sigma=self.sigma).operator()
        if shifts is not None:
            op = op.shifted(shifts)
        variance = None
        if weighted and self.noise is not None:
            variance = _raw_variance(self.noise, measured)
        y = np.asarray(measured.data, dtype=float)
        if not backgrounds:
            y = y - self.backgrounds.reshape((-1,) + (1,) * (y.ndim - 1))
        if not scales:
            y = y / self.scales.reshape((-1,) + (1,) * (y.ndim - 1))
        keep_sigma = not sigma or self.sources.get('sigma') == 'given'
        keep_intensity = scales and self.sources.get('intensity') == 'given'
        fit = refine_calibration(op, y, positions, weights, variance=variance,
                                 scales=scales, backgrounds=backgrounds,
                                 fit_sigma=not keep_sigma)
        how = f'refined by least squares at {positions.shape[0]} atoms'
        sources = dict(self.sources)
        # What is kept keeps its error.
        errors = dict(self.errors, reduced_misfit=fit.reduced_misfit)
        if not keep_sigma:
            sources['sigma'], errors['sigma'] = how, fit.sigma_error
        intensity, factors = fit.intensity, fit.scales
        if keep_intensity:
            intensity = self.intensity
            factors = fit.scales * (fit.intensity / self.intensity)
        else:
            sources['intensity'] = how
            errors['intensity'] = fit.intensity_error
        if scales:
            sources['scales'] = how
        if backgrounds:
            sources['backgrounds'] = how
        totals = self.atoms * self.intensity if self.atoms else None
        return dataclasses.replace(
            self, sigma=fit.sigma, intensity=intensity,
            scales=factors if scales else self.scales,
            backgrounds=fit.backgrounds if backgrounds else self.backgrounds,
            atoms=(totals / intensity if totals else None),
            sources=sources, errors=errors)

    # --- Reporting

    def to_dict(self):
        """The values, their errors and sources as a JSON-able dict."""
        out = {
            'sigma': {'value': self.sigma, 'unit': 'angstrom'},
            'intensity': {'value': self.intensity,
                          'unit': (f'{self.intensity_unit} x angstrom^(d-1)'
                                   if self.intensity_unit else
                                   'data units x angstrom^(d-1)')},
            'scales': {'value': self.scales.tolist()},
            'backgrounds': {'value': self.backgrounds.tolist()},
            'noise': (None if self.noise is None else
                      {'value': {'gain': self.noise.gain,
                                 'read_noise': self.noise.read_noise,
                                 'offset': self.noise.offset}}),
        }
        for key in ('sigma', 'intensity'):
            if self.errors.get(key) is not None:
                out[key]['error'] = float(self.errors[key])
        for key, text in self.sources.items():
            if key in out and out[key] is not None:
                out[key]['source'] = text
        if self.atoms is not None:
            out['atoms'] = float(self.atoms)
        if self.errors.get('reduced_misfit') is not None:
            out['reduced_misfit'] = float(self.errors['reduced_misfit'])
        if self.notes:
            out['warnings'] = list(self.notes)
        return out

    def __repr__(self):
        def line(name, value, key=None):
            note = self.sources.get(key or name)
            err = self.errors.get(key or name)
            text = f'    {name}={value},'
            comment = []
            if err is not None and np.isfinite(err):
                comment.append(f'+- {err:.2g}')
            if note:
                comment.append(note)
            if comment:
                text = f'{text:<40s}  # {"; ".join(comment)}'
            return text
        lines = [
            f'{type(self).__name__}(',
            line('sigma', f'{self.sigma:.6g}'),
            line('intensity', f'{self.intensity:.6g}'),
            line('scales', np.round(self.scales, 4).tolist()),
            line('backgrounds',
                 [float(f'{b:.4g}') for b in self.backgrounds]),
            line('noise', repr(self.noise)),
        ]
        if self.intensity_unit:
            lines.append(f'    intensity_unit={self.intensity_unit!r},')
        if self.atoms is not None:
            lines.append(f'    atoms={self.atoms:.5g},')
        lines.append(')')
        return '\n'.join(lines)

    __str__ = __repr__


def _json(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f'not JSON-serialisable: {type(obj).__name__}')


def _raw_variance(noise, measured):
    """Variance of every value of prepared data: that of the values as
    recorded (``data + background``), over the pixels averaged.

    The means are the values smoothed over a cell: weights from the noisy
    values themselves favour values that happen to be low and bias a
    weighted fit down (by 3 % in areas at a hundred electrons per peak).
    """
    from scipy.ndimage import gaussian_filter

    y = np.asarray(measured.data, dtype=float)
    if measured.background is not None:
        y = y + np.asarray(measured.background, float).reshape(
            (-1,) + (1,) * (y.ndim - 1))
    y = gaussian_filter(y, [0.0] + [1.0] * (y.ndim - 1), mode='nearest')
    return noise.variance(y) / (measured.pixels_averaged or 1)


def recorded_noise(measured):
    """The noise model recorded in a measurement's ``source`` (written by
    ``odl-atoms prepare`` from the images), or None."""
    try:
        source = json.loads(measured.source) if measured.source else {}
    except (json.JSONDecodeError, TypeError):
        return None
    entry = source.get('noise_model') if isinstance(source, dict) else None
    if not isinstance(entry, dict):
        return None
    try:
        model = NoiseModel(float(entry['gain']), float(entry['read_noise']),
                           offset=float(entry.get('offset', 0.0)))
    except (KeyError, TypeError, ValueError, ValidationError):
        return None
    model.details['method'] = entry.get('method', 'recorded')
    return model


def _noise_model(noise):
    if noise is None or isinstance(noise, NoiseModel):
        return noise
    try:
        gain, read_noise = noise
    except (TypeError, ValueError):
        raise TypeError(f'noise must be a NoiseModel or (gain, read_noise), '
                        f'got {noise!r}') from None
    return NoiseModel(gain, read_noise)


#: Projections whose highest peaks are at most this much wider than the
#: sharpest projection's are fitted for the width (the others overlap).
SHARPNESS_RATIO = 1.3


def _sharpest(measured):
    """Projections whose highest peaks are nearly as narrow as the narrowest
    projection's (the others overlap columns), and that width."""
    edges = _edges(measured)
    sharp = np.array([half_width(d, edges) for d in measured.data])
    return np.flatnonzero(sharp <= SHARPNESS_RATIO * sharp.min()), \
        float(sharp.min())


def _edges(measured):
    edges = measured.geometry.det_partition.cell_boundary_vecs
    return edges[0] if measured.ndim == 2 else edges


def _estimate_width(measured, variance, chosen, start):
    """Width from free-width fits of the chosen projections."""
    edges = _edges(measured)
    data = np.asarray(measured.data, dtype=float)
    fits = [fit_peaks(data[a], edges, sigma=start,
                      variance=None if variance is None else variance[a])
            for a in chosen]
    width = estimate_width(fits, indices=chosen)
    used = np.zeros(measured.n_angles, bool)
    used[chosen[width.used]] = True
    per = np.full(measured.n_angles, np.nan)
    per[chosen] = width.per_projection
    return dataclasses.replace(width, per_projection=per, used=used)


def calibrate(measured, images=None, sigma=None, intensity=None, noise=None,
              scales=None, backgrounds=None):
    """Estimate the atom model and the noise of a measurement.

    Each value is estimated unless given; what was given and how the rest
    was found is recorded in the result (`Calibration.sources`).

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`
        The measurement as prepared (`~odl_atoms.io.prepare_projections`):
        microscope units, background removed, no ``sigma``.
    images : `~odl_atoms.io.TiltSeries`, optional
        The images it was prepared from: the noise is estimated from them
        (in 2D the prepared profiles are averages, whose spectra hold less
        of the noise). Default: from ``measured``.
    sigma : float, optional
        Atom width (angstrom), if known.
    intensity : float, optional
        Intensity of one atom (data units times angstrom^(d-1)), if known.
    noise : `NoiseModel` or (gain, read_noise), optional
        The noise of one pixel (of the values as recorded), if known.
    scales : array-like or 1, optional
        Intensity factors of the projections, if known (``1``: all equal).
    backgrounds : array-like or 0, optional
        Backgrounds still in the projections, if known (``0``: none).

    Returns
    -------
    calibration : `Calibration`

    Raises
    ------
    ValueError
        If the width or the intensity cannot be found from the data (no
        resolved columns, no isolated peak): the message says what to give.

    Warns
    -----
    UserWarning
        Where the data do not decide a value (equal columns for the
        intensity, no flat spectrum for the noise), with what to give
        instead.

    Examples
    --------
    A 7 x 7 crystal with a vacancy at 0/45/90 degrees, in fractions of the
    beam: one atom integrates to 0.05, the projections carry factors 0.97,
    1.07 and 0.96 (mean 1) and backgrounds of 0.001, 0.002 and 0.0005, counted with
    2.8e5 electrons per unit:

    >>> import odl_atoms as oa
    >>> phantom = oa.lattice_with_vacancy(spacing=2.04)
    >>> clean = oa.simulate(phantom.measure, np.radians([0, 45, 90]),
    ...                     sigma=0.4, detector_cell=0.29)
    >>> y = 0.05 * np.array([0.97, 1.07, 0.96])[:, None] * clean.data + \\
    ...     np.array([0.001, 0.002, 0.0005])[:, None]
    >>> noisy = np.random.default_rng(0).poisson(2.8e5 * y) / 2.8e5
    >>> measured = dataclasses.replace(clean, data=noisy, sigma=None,
    ...                                noise_std=None)
    >>> cal = calibrate(measured, noise=(1 / 2.8e5, 0.0))
    >>> round(cal.sigma, 2), round(cal.intensity, 3), round(cal.atoms)
    (0.4, 0.05, 48)
    >>> cal.scales.round(2).tolist()
    [0.97, 1.07, 0.96]
    >>> calibrated = cal.apply(measured)
    >>> calibrated.sigma, calibrated.intensity_unit
    (0.4..., 'atoms')
    """
    from odl_atoms.io import ProjectionData, TiltSeries

    if not isinstance(measured, ProjectionData):
        raise TypeError(f'measured must be a ProjectionData (e.g. from '
                        f'prepare_projections), got '
                        f'{type(measured).__name__}')
    if measured.intensity_unit == CALIBRATED_UNIT:
        raise ValidationError('these data are calibrated already (in atom '
                              'units); calibrate the prepared measurement')
    if images is not None and not isinstance(images, TiltSeries):
        raise TypeError(f'images must be a TiltSeries, got '
                        f'{type(images).__name__}')
    if images is not None and images.n_tilts != measured.n_angles:
        raise ValidationError(
            f'{images.n_tilts} images for {measured.n_angles} projections: '
            f'give the tilt series the measurement was prepared from')
    m = measured.n_angles
    sources, errors = {}, {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        noise = _noise_model(noise)
        recorded = None if noise is not None or images is not None \
            else recorded_noise(measured)
        if noise is not None:
            sources['noise'] = 'given'
        elif recorded is not None:
            # Estimated from the images when the file was prepared
            # (``odl-atoms prepare``): better than from the profiles.
            noise = recorded
            sources['noise'] = recorded.details.get(
                'method', 'recorded when the data were prepared')
        else:
            try:
                noise = estimate_noise(images if images is not None
                                       else measured)
                sources['noise'] = noise.details.get('method', 'estimated')
            except ValidationError as exc:
                warnings.warn(f'the noise could not be estimated ({exc}); '
                              f'fits are unweighted and no noise_std is set',
                              UserWarning)
                sources['noise'] = 'unknown'
        data = np.asarray(measured.data, dtype=float)
        variance = None
        if noise is not None:
            variance = _raw_variance(noise, measured)

        # Profiles are cheap to fit, images with hundreds of overlapping
        # columns are not: in 3D only the sharpest projections are fitted.
        chosen, start = _sharpest(measured)
        if measured.ndim == 2:
            fitted = np.arange(m)
        else:
            fitted = chosen
        if sigma is None:
            width = _estimate_width(measured, variance, chosen, start)
            if not width.used.any() or 'upper bound' in width.method:
                raise ValidationError(
                    'the atom width cannot be estimated from these data: no '
                    'projection has resolved columns (all columns overlap, '
                    'as at generic tilts of a crystal); give it '
                    '(calibrate(..., sigma=...) or --sigma), e.g. from a '
                    'zone-axis image of the same specimen')
            sigma = width.sigma
            sources['sigma'] = width.method
            errors['sigma'] = width.sigma_error
        else:
            sources['sigma'] = 'given'
        edges = _edges(measured)
        # Fits weighted by the noise model (variances from smoothed values,
        # `_raw_variance`): the vacuum pins each fit's background, so the
        # areas keep the columns' tails (unweighted, a background taken up
        # the tails and the areas of a decahedron's columns came out 30 %
        # low, benchmarks/calibration.py).
        fits = [fit_peaks(data[a], edges, sigma=float(sigma), fix_sigma=True,
                          variance=None if variance is None else variance[a])
                for a in fitted]
        if backgrounds is None and measured.ndim == 2:
            bg = np.array([f.background for f in fits])
            sources['backgrounds'] = 'peak fits (constant per projection)'
        elif backgrounds is None:
            # Images: the level of their vacuum (the lowest mode of the
            # smoothed image, as prepare_projections finds it). The peak
            # fits' own constant takes up the signal of columns they leave
            # out.
            bg = np.array([estimate_background(d) for d in data])
            sources['backgrounds'] = ('the lowest mode of each smoothed image '
                                      '(vacuum)')
        else:
            bg = np.broadcast_to(np.asarray(backgrounds, dtype=float),
                                 (m,)).copy()
            sources['backgrounds'] = 'given'
        # Totals straight from the data (all the signal, tails included).
        cell = float(np.prod(measured.geometry.det_partition.cell_sides))
        totals = cell * (data - bg.reshape((-1,) + (1,) * (data.ndim - 1))
                         ).reshape(m, -1).sum(axis=1)
        given_scales = None
        if scales is not None:
            given_scales = np.broadcast_to(
                np.asarray(scales, dtype=float), (m,))
        # 2D (profiles of HAADF columns, whose area per atom grows with
        # their length): a comb finer than the atoms explained the areas
        # about as well (unit 0.77 of the one at the true columns on an
        # abTEM 7 x 7 gold crystal). Three things pin it: a column holds
        # no more atoms than another projection at a clearly different
        # angle has columns; responses with an offset; and the number of
        # atoms from the counts of projections whose peaks are all
        # isolated (every projection holds them all). Not measured in 3D,
        # where the estimate stays the least-squares unit.
        profiles = measured.ndim == 2
        bounds = (column_bounds(fits, measured.angles, indices=fitted)
                  if profiles else None)
        est = estimate_intensity(fits, totals=totals, indices=fitted,
                                 intensity=intensity, scales=given_scales,
                                 max_counts=bounds,
                                 offsets=OFFSETS if profiles else (0.0,),
                                 atoms_from_counts=profiles)
        if not np.isfinite(est.intensity):
            raise ValidationError(
                'the intensity of one atom cannot be estimated from these '
                'data (no isolated peak in any projection); give it: '
                'calibrate(..., intensity=...) or --intensity')
        sources['intensity'] = 'given' if intensity is not None \
            else est.method
        if intensity is None:
            errors['intensity'] = est.intensity_error
        sources['scales'] = ('given' if scales is not None
                             else "from the projections' totals")
    notes = []
    for w in caught:
        notes.append(str(w.message))
        warnings.warn(w.message, w.category, stacklevel=2)
    return Calibration(
        sigma=float(sigma), intensity=float(est.intensity), scales=est.scales,
        backgrounds=bg, noise=noise, intensity_unit=measured.intensity_unit,
        atoms=float(est.atoms), sources=sources, errors=errors,
        notes=tuple(notes))
