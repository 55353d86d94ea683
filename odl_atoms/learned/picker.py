"""Learned atom picking on SIRT images, and SIRT + learned picking.

`LearnedPicker` has `odl_atoms.AtomPicker`'s interface, ``pick(image,
space)`` (and calling it), so ``SIRT(picker=LearnedPicker())`` is SIRT
followed by learned picking; `LearnedSIRT` is that pipeline as a `Solver`
(the command line's ``--solver sirt+learned``), with the SIRT settings the
network was trained with.
"""

import numbers
import os
import warnings
from dataclasses import dataclass

import numpy as np

from odl_atoms.learned.data import decode_maps, from_index
from odl_atoms.learned.model import LearnedModel, load_model
from odl_atoms.solvers.base import Solver
from odl_atoms.solvers.sirt import DEFAULT_N_ITER, SIRT

__all__ = ('LearnedPicker', 'LearnedSIRT', 'learned_sirt',
           'DEFAULT_THRESHOLD')

#: Decision threshold on the summed probability around a peak (see
#: `decode_maps`) of models without a calibrated one: an atom when one is
#: more likely than none. `train` stores the threshold that maximised the
#: F1 score on its validation images, and that is the default.
DEFAULT_THRESHOLD = 0.5

# Relative mismatch of sigma or pixel size beyond which a warning says the
# network sees images unlike its training images.
_MISMATCH = 0.1


class LearnedPicker:

    """Find atoms in a 2D SIRT image with a trained network.

    The network (`odl_atoms.learned.build_network`) maps the image,
    normalised to units of one atom's peak (`normalise_image`), to a
    probability map and sub-pixel offsets; `decode_maps` turns them into
    atoms.

    Parameters
    ----------
    weights : None, str, path-like or `LearnedModel`, optional
        The network: ``None`` for the shipped default model (trained for the
        built-in example, see `default_model_path`), a file written by
        `train` / ``LearnedModel.save``, or a loaded model.
    device : str or torch.device, optional
        Where the network runs: default CUDA when available, else CPU.
    threshold : float, optional
        Decision threshold on the probability summed over a peak's 3 x 3
        pixels. Default: the model's calibrated threshold
        (``model.config['threshold']``, chosen by `train` on validation
        images), else `DEFAULT_THRESHOLD`.
    min_distance : positive float, optional
        Of two atoms closer than this (angstrom), the less probable one is
        dropped. Default ``2 * sigma`` of the model, as for `AtomPicker`.
    atom_weights : float, sequence or mapping, optional
        Allowed atom weights (species), as `AtomPicker`'s ``weights``. The
        network detects atoms of the smallest weight's contrast; with
        several weights, each atom's weight is its integrated intensity
        snapped to the nearest allowed one. Default: one species of
        weight 1 (what the network was trained on).

    Notes
    -----
    The network was trained for one problem: angles, atom width, pixel size
    and lattice spacing (``model.config``). The picker checks the pixel size
    of the image and warns when it differs by more than 10 %; `LearnedSIRT`
    also checks the angles and ``sigma`` of the operator.

    Examples
    --------
    SIRT + learned picking on the built-in example (needs torch):

    >>> import numpy as np, odl_atoms as oa
    >>> phantom = oa.defect_phantom('vacancy')
    >>> measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]),
    ...                        0.43, n_detector=96, noise=0.01, seed=0)
    >>> picker = LearnedPicker(device='cpu')
    >>> problem = oa.Problem(measured.operator(), measured.element())
    >>> result = oa.SIRT(picker=picker).solve(problem)
    >>> oa.match_atoms(phantom.measure, result.measure).f1 > 0.95
    True
    """

    def __init__(self, weights=None, device=None, threshold=None,
                 min_distance=None, atom_weights=None):
        if isinstance(weights, LearnedModel):
            model = weights
            if device is not None:
                model = LearnedModel(model.config,
                                     model.network.state_dict(),
                                     device=device, history=model.history)
        elif weights is None or isinstance(weights, (str, os.PathLike)):
            model = load_model(weights, device=device)
        else:
            raise TypeError(f'`weights` must be None, a model file or a '
                            f'LearnedModel, got {type(weights).__name__}')
        self.weights = weights
        self.device = device
        self.model = model
        self.threshold = threshold
        if threshold is not None:
            threshold = float(threshold)
            if not np.isfinite(threshold) or threshold <= 0:
                raise ValueError(f'`threshold` must be a positive number, '
                                 f'got {threshold}')
            self.threshold = threshold

        if min_distance is not None:
            if isinstance(min_distance, bool) or not isinstance(
                    min_distance, numbers.Real) or not min_distance > 0:
                raise ValueError(f'`min_distance` must be a positive length '
                                 f'in angstrom, got {min_distance!r}')
            min_distance = float(min_distance)
        self.min_distance = min_distance
        self.atom_weights = atom_weights
        if atom_weights is None:
            self._labels, self._allowed = None, None
        else:
            from odl_atoms.weights import allowed_weights
            self._labels, self._allowed = allowed_weights(atom_weights)

    @property
    def resolved_threshold(self):
        """The decision threshold used: ``threshold`` or the model's."""
        if self.threshold is not None:
            return self.threshold
        return float(self.model.config.get('threshold', DEFAULT_THRESHOLD))

    @property
    def sigma(self):
        """Atom width (angstrom) the network was trained for."""
        return self.model.sigma

    def separation(self):
        """Minimum distance between atoms (angstrom)."""
        from odl_atoms.picking import DEFAULT_SEPARATION
        return (self.min_distance if self.min_distance is not None
                else DEFAULT_SEPARATION * self.sigma)

    @property
    def reference_weight(self):
        """Smallest allowed weight (1 without ``atom_weights``)."""
        return 1.0 if self._allowed is None else float(self._allowed.min())

    def maps(self, image):
        """Return the network's probability and offset maps of an image.

        Parameters
        ----------
        image : `odl.DiscretizedSpaceElement`
            A 2D image on a uniform grid (e.g. a SIRT ``result.image``).

        Returns
        -------
        prob : numpy.ndarray of shape ``image.shape``
        offsets : numpy.ndarray of shape ``(2,) + image.shape``
            Pixels along the image axes, from each pixel's centre.
        """
        from odl_atoms.picking import _image_array
        arr, grid = _image_array(image)
        if grid.ndim != 2:
            raise ValueError(f'the learned picker works on 2D images, got a '
                             f'{grid.ndim}D image; pick 3D volumes with '
                             f'AtomPicker')
        cells = np.asarray(grid.cell_sides, dtype=float)
        if abs(cells[0] - cells[1]) > 1e-6 * cells.max():
            raise ValueError(f'the learned picker needs square pixels, got '
                             f'{cells.tolist()}')
        trained = self.model.pixel_size
        if abs(cells[0] / trained - 1) > _MISMATCH:
            warnings.warn(
                f'the image has pixels of {cells[0]:.4g} A but the network '
                f'was trained on {trained:.4g} A pixels (sigma = '
                f'{self.sigma:.4g} A); its output may be poor. Train a model '
                f'for this problem (odl_atoms.learned.train)', stacklevel=3)
        inputs = self.model.normalise(arr, cells, self.reference_weight)
        return self.model.predict(inputs)

    def pick(self, image, space):
        """Return the atoms in a 2D image.

        Parameters
        ----------
        image : `odl.DiscretizedSpaceElement`
            2D image on a uniform grid of square pixels.
        space : `SparseMeasureSpace`
            The atoms' space; positions are clipped into its box.

        Returns
        -------
        atoms : `SparseMeasure`
            Sorted by decreasing probability.
        """
        from odl_atoms.space import SparseMeasureSpace
        if not isinstance(space, SparseMeasureSpace):
            raise TypeError(f'`space` must be a SparseMeasureSpace, got '
                            f'{space!r}')
        if space.ndim != 2:
            raise ValueError(f'the learned picker finds 2D atoms, but the '
                             f'atom space is {space.ndim}D')
        prob, offsets = self.maps(image)
        grid = image.space
        cell = float(grid.cell_sides[0])
        index, _ = decode_maps(prob, offsets,
                               threshold=self.resolved_threshold,
                               min_distance=self.separation() / cell)
        positions = np.clip(from_index(index, grid), space.min_pt,
                            space.max_pt)
        if self._allowed is None:
            return space.element(positions)
        if self._allowed.size == 1:
            return space.element(positions, weights=self._allowed[0],
                                 species=self._labels[0])
        from odl_atoms.picking import (DEFAULT_INTEGRATION_RADIUS,
                                       _image_array, _integrate)
        arr, _ = _image_array(image)
        mass = _integrate(arr, grid, positions,
                          DEFAULT_INTEGRATION_RADIUS * self.sigma, self.sigma)
        nearest = np.argmin(np.abs(mass[:, None] - self._allowed[None, :]),
                            axis=1)
        return space.element(positions, weights=self._allowed[nearest],
                             species=self._labels[nearest])

    __call__ = pick

    def __repr__(self):
        args = [repr(self.weights if not isinstance(self.weights, LearnedModel)
                     else self.model)] if self.weights is not None else []
        for name, default in (('device', None),
                              ('threshold', None),
                              ('min_distance', None), ('atom_weights', None)):
            value = getattr(self, name)
            if value != default:
                args.append(f'{name}={value!r}')
        return f'{type(self).__name__}({", ".join(args)})'


@dataclass(frozen=True)
class _Options:

    """LearnedSIRT's options (see `LearnedSIRT`)."""

    model: object = None
    device: object = None
    threshold: float = None
    pixel_size: float = None
    impl: str = None
    seed: object = None

    def __post_init__(self):
        # The SIRT settings are checked as SIRT checks them.
        SIRT.Options(pixel_size=self.pixel_size, impl=self.impl)


class LearnedSIRT(Solver):

    """SIRT followed by learned atom picking (DeepLoco-style), a `Solver`.

    The SIRT settings (number of iterations, no discrepancy stop) are those
    the network was trained with, so that it sees images like its training
    images; everything else is `SIRT`'s. The problem must be 2D; its allowed
    weights (if given) are the picker's.

    Parameters
    ----------
    model : None, str, path-like or `LearnedModel`, optional
        The network (`LearnedPicker`'s ``weights``): default the shipped
        model for the built-in example.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    threshold : float, optional
        Decision threshold (`LearnedPicker`); default the model's.
    pixel_size, impl : optional
        As for `SIRT`. The default pixel (one detector cell) is what `train`
        uses.
    seed : int or Generator, optional
        Unused (everything is deterministic); kept for the interface.

    Warns
    -----
    UserWarning
        When the problem's angles, ``sigma`` or pixel size differ from the
        model's training problem: the network then sees images unlike its
        training data.

    Examples
    --------
    >>> import numpy as np, odl_atoms as oa
    >>> phantom = oa.defect_phantom('vacancy')
    >>> measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]),
    ...                        0.43, n_detector=96, noise=0.01, seed=0)
    >>> problem = oa.Problem(measured.operator(), measured.element())
    >>> result = LearnedSIRT(device='cpu').solve(problem)
    >>> result.n_atoms
    48
    """

    Options = _Options

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        # The network is loaded once, here (a bad model file fails now).
        self._picker = LearnedPicker(self.options.model,
                                     device=self.options.device,
                                     threshold=self.options.threshold)

    @property
    def resolved_threshold(self):
        """The decision threshold: given, or the model's."""
        return self._picker.resolved_threshold

    def sirt(self):
        """The SIRT the network was trained with (iterations, pixels)."""
        n_iter = int(self._picker.model.config.get('sirt_iter',
                                                   DEFAULT_N_ITER))
        return SIRT(n_iter=n_iter, pixel_size=self.options.pixel_size,
                    impl=self.options.impl)

    def solve(self, problem, initial=None, callback=None,
              image_callback=None, *, time_limit=None):
        """SIRT, then the network (see `Solver.solve`); ``image_callback``
        gets the SIRT image after every iteration, as in `SIRT.solve`."""
        if image_callback is not None and not callable(image_callback):
            raise TypeError(f'`image_callback` must be callable, got '
                            f'{image_callback!r}')
        self._image_callback = image_callback
        try:
            return super().solve(problem, initial, callback,
                                 time_limit=time_limit)
        finally:
            self._image_callback = None

    def _solve(self, problem, initial, callback, rng):
        if problem.ndim != 2:
            raise ValueError('LearnedSIRT works on 2D problems; use SIRT with '
                             'AtomPicker in 3D')
        sirt = self.sirt()
        self._check_problem(problem, self._picker.model,
                            sirt.resolved_pixel_size(problem))
        weights = None
        if problem.weights is not None:
            weights = dict(zip(problem.labels.tolist(),
                               problem.allowed.tolist()))
        picker = LearnedPicker(self._picker.model,
                               threshold=self.options.threshold,
                               atom_weights=weights)
        sirt = sirt.with_options(picker=picker)
        # No discrepancy stop: the network was trained on images after a
        # fixed number of iterations.
        sirt._image_callback = getattr(self, '_image_callback', None)
        sirt._deadline = self.__dict__.get('_deadline')
        return sirt._solve(problem.with_noise_std(None), initial, callback,
                           rng)

    @staticmethod
    def _check_problem(problem, model, pixel):
        op = problem.operator
        angles = np.asarray(op.geometry.angles, dtype=float)
        trained = model.angles

        def canonical(a):
            return np.sort(np.round(np.degrees(np.mod(a, np.pi)), 1) % 180)

        ours, theirs = canonical(angles), canonical(trained)
        if ours.size != theirs.size or not np.allclose(ours, theirs,
                                                       atol=0.5):
            warnings.warn(
                f'the data have angles {ours.tolist()} degrees but the '
                f'network was trained for {theirs.tolist()}; '
                f'its output may be poor. Train a model for these angles: '
                f'odl_atoms.learned.train(angles=...)', stacklevel=4)
        if abs(op.sigma / model.sigma - 1) > _MISMATCH:
            warnings.warn(
                f'the operator has sigma = {op.sigma:.4g} A but the network '
                f'was trained for {model.sigma:.4g} A; its output may be '
                f'poor. Train a model for this sigma '
                f'(odl_atoms.learned.train)', stacklevel=4)
        if abs(pixel / model.pixel_size - 1) > _MISMATCH:
            warnings.warn(
                f'SIRT pixels of {pixel:.4g} A, but the network was trained '
                f'on {model.pixel_size:.4g} A pixels; pass '
                f'pixel_size={model.pixel_size:.4g} or train a model for this '
                f'detector', stacklevel=4)

    def __repr__(self):
        args = []
        for name, default in (('model', None), ('device', None),
                              ('threshold', None), ('pixel_size', None),
                              ('impl', None), ('seed', None)):
            value = getattr(self.options, name)
            if isinstance(value, LearnedModel):
                value = _Raw('<LearnedModel>')
            if value != default:
                args.append(f'{name}={value!r}')
        return f'{type(self).__name__}(' + ', '.join(args) + ')'


class _Raw(str):
    def __repr__(self):
        return str(self)


def learned_sirt(problem, model=None, device=None, callback=None,
                 **options):
    """Reconstruct with SIRT + learned picking in one call.

    ``LearnedSIRT(model=model, device=device, **options).solve(problem,
    callback=callback)``.

    Returns
    -------
    result : `Reconstruction`
    """
    return LearnedSIRT(model=model, device=device, **options).solve(
        problem, callback=callback)
