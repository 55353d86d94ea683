"""A trained picker network with the configuration it was trained for.

`LearnedModel` holds the torch module and a plain-dict configuration (what
problem the network was trained on, how its input is normalised, how it was
trained); `save` / `load_model` write and read both in one ``.pt`` file
(``torch.save`` of plain types only, so loading uses
``torch.load(weights_only=True)``, which cannot run code from the file).
"""

import copy
import json
import os
from importlib import resources

import numpy as np

from odl_atoms.learned.data import normalise_image
from odl_atoms.learned.network import build_network, count_parameters
from odl_atoms.projection_torch import cpu_threads

__all__ = ('LearnedModel', 'load_model', 'default_model_path',
           'DEFAULT_MODEL', 'NORMALISATION', 'resolve_device', 'require_torch')

#: How network inputs are normalised (stored with every trained model):
#: the SIRT density divided by the peak height of one atom of the model's
#: sigma on the image's grid, `normalise_image`.
NORMALISATION = 'density / atom_peak_height(sigma, pixel)'

#: File name of the shipped default model (in ``odl_atoms/data``).
DEFAULT_MODEL = 'learned_picker_0-45-90.pt'

# Version of the file layout written by `LearnedModel.save`.
_FORMAT = 1


def require_torch():
    """Import and return torch, or raise an ImportError saying what to do."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            'the learned picker needs PyTorch, which is not installed; '
            'install the optional extra: pip install "odl_atoms[learn]" (or '
            'a CPU build of torch first, e.g. pip install torch==2.13.0)'
        ) from exc
    return torch


def resolve_device(device=None):
    """Return a ``torch.device``: ``device``, or CUDA when available, else CPU.

    Only the CPU path is tested here (no GPU on the test machines).
    """
    torch = require_torch()
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"`device` must be a torch device such as 'cpu' or "
                         f"'cuda', got {device!r}") from exc


def default_model_path():
    """Return the path of the shipped default model.

    It was trained for the built-in example (``odl-atoms demo``): gold
    columns 2.885 A apart, sigma 0.43 A (0.15 of the spacing), 0/45/90
    degrees, 96 detector cells across the box of the 7 x 7 lattice phantoms
    (`odl_atoms.learned.default_training_config` reproduces it).
    """
    return str(resources.files('odl_atoms').joinpath('data', DEFAULT_MODEL))


class LearnedModel:

    """A picker network and the configuration it was trained for.

    Parameters
    ----------
    config : dict
        Plain types only. Keys used here: ``width`` (network width),
        ``sigma`` (atom width, angstrom), ``pixel_size`` (angstrom),
        ``angles`` (radians), ``sirt_iter``, ``spacing``; `train` stores the
        whole training configuration.
    state_dict : dict of tensors, optional
        Network weights; default: random initialisation.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    history : dict, optional
        Training history (loss per step, validation loss).
    """

    def __init__(self, config, state_dict=None, device=None, history=None):
        torch = require_torch()
        self.config = copy.deepcopy(dict(config))
        for key in ('sigma', 'pixel_size', 'angles', 'width'):
            if key not in self.config:
                raise ValueError(f'model configuration lacks {key!r}')
        norm = self.config.get('normalisation', NORMALISATION)
        if norm != NORMALISATION:
            raise ValueError(f'the model expects inputs normalised as '
                             f'{norm!r}; this version normalises as '
                             f'{NORMALISATION!r}')
        self.device = resolve_device(device)
        self.network = build_network(self.config['width'])
        if state_dict is not None:
            state = {k: v.float() for k, v in state_dict.items()}
            self.network.load_state_dict(state)
        self.network.to(self.device)
        self.network.eval()
        self.history = {} if history is None else dict(history)
        self._torch = torch

    # --- Properties of the training problem

    @property
    def sigma(self):
        """Atom width (angstrom) of the training data."""
        return float(self.config['sigma'])

    @property
    def pixel_size(self):
        """Pixel side (angstrom) of the training images."""
        return float(self.config['pixel_size'])

    @property
    def sigma_pixels(self):
        """Atom width in pixels of the training images."""
        return self.sigma / self.pixel_size

    @property
    def angles(self):
        """Tilt angles (radians) of the training data."""
        return np.asarray(self.config['angles'], dtype=float)

    @property
    def logit_shift(self):
        """What the training loss added to the network's logits.

        A BCE loss that weights atom pixels by ``pos_weight`` is minimised
        by the logit of the true probability plus ``log(pos_weight)``;
        `predict` subtracts it, so that its probabilities are calibrated.
        """
        if self.config.get('loss', 'bce') != 'bce':
            return 0.0
        return float(np.log(self.config.get('pos_weight', 1.0)))

    @property
    def n_parameters(self):
        """Number of network parameters."""
        return count_parameters(self.network)

    # --- Prediction

    def normalise(self, image, cell_sides, weight=1.0):
        """Return the network input (`normalise_image` with this sigma)."""
        return normalise_image(image, self.sigma, cell_sides, weight)

    def predict(self, inputs, symmetrise=True):
        """Return probability and offset maps of normalised images.

        Parameters
        ----------
        inputs : array-like of shape ``(n0, n1)`` or ``(batch, n0, n1)``
            Normalised images (`normalise`).
        symmetrise : bool, optional
            Also run the network on the images rotated by 180 degrees and
            average the two answers (rotated back, offsets negated). The
            rotation maps every parallel projection onto itself, so it is a
            symmetry of the problem the network was trained with
            (`train`'s augmentation); averaging removes what of the answer
            breaks it, at twice the (small) cost.

        Returns
        -------
        prob : numpy.ndarray of shape ``(..., n0, n1)``
            Probability that an atom lies in the pixel (corrected for the
            loss's weighting, see `logit_shift`).
        offsets : numpy.ndarray of shape ``(..., 2, n0, n1)``
            Pixels, along the two image axes.
        """
        torch = self._torch
        arr = np.asarray(inputs, dtype=np.float32)
        single = arr.ndim == 2
        if single:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f'expected 2D images, got shape {arr.shape}')
        # One torch thread on the CPU (`cpu_threads`): measured 0.05 s per
        # image with one, 1.3 s with torch's default under load.
        with torch.no_grad(), cpu_threads(self.device):
            x = torch.from_numpy(np.ascontiguousarray(arr))[:, None]
            x = x.to(self.device)
            out = self.network(x)
            if symmetrise:
                back = self.network(x.flip(-1, -2)).flip(-1, -2)
                out = 0.5 * (out + torch.cat([back[:, :1], -back[:, 1:]], 1))
            out = out.float().cpu().numpy()
        prob = 1.0 / (1.0 + np.exp(-(out[:, 0] - self.logit_shift)))
        offsets = out[:, 1:]
        return (prob[0], offsets[0]) if single else (prob, offsets)

    # --- Files

    def save(self, path):
        """Write weights (float16, half the size) and configuration to a file.

        The file is written next to its destination and renamed into place,
        so an interrupted save never leaves a half-written model.
        """
        torch = self._torch
        state = {k: v.detach().cpu().half()
                 for k, v in self.network.state_dict().items()}
        # A JSON round trip keeps the configuration to plain types, which
        # is what torch.load(weights_only=True) accepts.
        config = json.loads(json.dumps(self.config, default=str))
        payload = {'format': _FORMAT, 'config': config,
                   'state_dict': state,
                   'history': {k: [float(x) for x in v]
                               for k, v in self.history.items()}}
        path = os.fspath(path)
        tmp = f'{path}.tmp{os.getpid()}'
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    def __repr__(self):
        deg = ', '.join(f'{a:g}' for a in np.round(np.degrees(self.angles), 2))
        return (f'LearnedModel(angles=[{deg}] deg, sigma={self.sigma:.4g}, '
                f'pixel_size={self.pixel_size:.4g}, '
                f'n_parameters={self.n_parameters})')


def load_model(path=None, device=None):
    """Read a `LearnedModel` written by `LearnedModel.save` (or `train`).

    Parameters
    ----------
    path : str or path-like, optional
        Default: the shipped model (`default_model_path`).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    """
    torch = require_torch()
    path = default_model_path() if path is None else os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'no model file {path!r}; train one with odl_atoms.learned.train '
            f'or "python -m odl_atoms.learned train ... -o {path}"')
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # unpickling errors have many types
        raise ValueError(f'{path!r} is not a model file written by '
                         f'odl_atoms.learned ({exc})') from exc
    if not isinstance(payload, dict) or payload.get('format') != _FORMAT:
        raise ValueError(f'{path!r} is not a model file written by this '
                         f'version of odl_atoms.learned (format '
                         f'{_FORMAT})')
    return LearnedModel(payload['config'], payload['state_dict'],
                        device=device, history=payload.get('history'))
