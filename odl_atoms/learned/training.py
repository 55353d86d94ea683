"""Training the learned picker on phantoms simulated on the fly.

`train` builds the network's input distribution from the target problem
(angles, atom width, detector, box): random crystals (`random_crystal`) are
projected with `odl_atoms.simulate` and reconstructed with `odl_atoms.SIRT`
exactly as `LearnedSIRT` will reconstruct the user's data; the network then
learns to map those SIRT images to atom probabilities and sub-pixel offsets.

Loss per image: binary cross-entropy of the probability map (mean over
pixels, atom pixels weighted by ``pos_weight``; focal loss on request) plus
``offset_weight`` times the L1 error of the offsets, averaged over the
pixels around atoms where offsets are taught (`encode_targets`). After
training, the decision threshold that maximises the F1 score on the
held-out images is stored with the model. Batches are augmented by
rotating images by 180 degrees, which maps every parallel projection onto
itself (flipped), so it is valid for any angle set; mirror images are not
(they mirror the angles).

Cost: a sample is one simulation plus one SIRT (about 0.1 s for the
default 68 x 68 images from 3 angles, 200 iterations; 0.3 s from 15
angles); a training step of 8 images about 0.05 s on one CPU core. The
defaults (1000 samples, 3000 steps) take about 5 minutes on one core;
``workers`` generates samples in parallel. What the defaults rest on
(validation images of the default problem, 1200 training samples): width
12 instead of 8 gave the same validation F1 (0.68) at 2.4 times the cost;
5000 steps instead of 2500 raised it from 0.69 to 0.70, most of it by
step 3000; an unweighted BCE reached only 0.42 after 2500 steps (see
``pos_weight``). On the same images `AtomPicker` scores 0.66: half of the
training crystals are rotated away from the zone axes, where three
projections leave atoms ambiguous for any picker.
"""

import math
import numbers
import time

import numpy as np

from odl_atoms.learned.data import (encode_targets, normalise_image,
                                    random_crystal, to_index)
from odl_atoms.learned.model import (NORMALISATION, LearnedModel,
                                     require_torch)
from odl_atoms.phantoms import DEFAULT_SPACING

__all__ = ('train', 'default_training_config', 'make_sample',
           'generate_samples', 'DEFAULT_ANGLES')

#: Tilt angles (radians) of the built-in example: 0, 45 and 90 degrees.
DEFAULT_ANGLES = (0.0, math.pi / 4, math.pi / 2)

# Atom width of the built-in example in lattice spacings (0.43 A for gold).
_SIGMA_PER_SPACING = 0.15


def default_training_config(**overrides):
    """Return the training configuration of the shipped default model.

    Parameters
    ----------
    **overrides
        Any of `train`'s parameters.

    Returns
    -------
    config : dict
        `train`'s parameters as plain types; ``box`` as
        ``[min_pt, max_pt]``.

    Examples
    --------
    >>> config = default_training_config()
    >>> [round(math.degrees(a)) for a in config['angles']]
    [0, 45, 90]
    >>> config['sigma'], config['n_detector'], config['box']
    (0.43275, 96, [[-11.54, -11.54], [11.54, 11.54]])
    """
    from odl_atoms.solvers.sirt import DEFAULT_N_ITER
    config = dict(angles=list(DEFAULT_ANGLES), sigma=None,
                  spacing=DEFAULT_SPACING, n_detector=96, box=None,
                  noise=[0.0, 0.05], sirt_iter=DEFAULT_N_ITER,
                  n_samples=1000, n_steps=3000, batch_size=8,
                  learning_rate=2e-3, width=8, offset_weight=1.0, loss='bce',
                  pos_weight=10.0, validation=0.1, seed=0)
    unknown = set(overrides) - set(config)
    if unknown:
        raise TypeError(f'unknown training parameter(s) {sorted(unknown)}; '
                        f'valid: {sorted(config)}')
    config.update(overrides)
    return _checked(config)


def _checked(config):
    """Validate a training configuration and fill in derived defaults."""
    c = dict(config)
    angles = np.array(c['angles'], dtype=float, ndmin=1)
    if angles.ndim != 1 or angles.size == 0 or not np.all(np.isfinite(angles)):
        raise ValueError(f'`angles` must be a list of angles in radians, got '
                         f'{c["angles"]!r}')
    c['angles'] = [float(a) for a in np.sort(angles)]
    spacing = c['spacing']
    if not (isinstance(spacing, numbers.Real) and spacing > 0):
        raise ValueError(f'`spacing` must be a positive length, got '
                         f'{spacing!r}')
    c['spacing'] = float(spacing)
    if c['sigma'] is None:
        c['sigma'] = _SIGMA_PER_SPACING * c['spacing']
    if not (isinstance(c['sigma'], numbers.Real) and c['sigma'] > 0):
        raise ValueError(f'`sigma` must be a positive length, got '
                         f'{c["sigma"]!r}')
    c['sigma'] = float(c['sigma'])
    if c['box'] is None:
        # The box of the 7 x 7 defect phantoms: 3 spacings to the outer
        # atoms plus a margin of one spacing.
        half = 4 * c['spacing']
        c['box'] = [[-half, -half], [half, half]]
    box = np.array(c['box'], dtype=float)
    if box.shape == (2,):
        box = np.array([-box / 2, box / 2])
    if box.shape != (2, 2) or not np.all(box[1] > box[0]):
        raise ValueError(f'`box` must be [[xmin, ymin], [xmax, ymax]] or '
                         f'[width, height], got {c["box"]!r}')
    c['box'] = box.round(10).tolist()
    noise = np.array(c['noise'], dtype=float, ndmin=1)
    if noise.size == 1:
        noise = np.array([noise[0], noise[0]])
    if noise.shape != (2,) or noise[0] < 0 or noise[1] < noise[0]:
        raise ValueError(f'`noise` must be a level or a range (low, high) of '
                         f'relative noise levels >= 0, got {c["noise"]!r}')
    c['noise'] = noise.tolist()
    for key in ('n_detector', 'sirt_iter', 'n_samples', 'n_steps',
                'batch_size', 'width'):
        value = c[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or value < 1:
            raise ValueError(f'`{key}` must be a positive integer, got '
                             f'{value!r}')
        c[key] = int(value)
    for key in ('learning_rate', 'offset_weight', 'pos_weight'):
        if not (isinstance(c[key], numbers.Real) and c[key] > 0):
            raise ValueError(f'`{key}` must be a positive number, got '
                             f'{c[key]!r}')
        c[key] = float(c[key])
    if c['loss'] not in ('bce', 'focal'):
        raise ValueError(f"`loss` must be 'bce' or 'focal', got {c['loss']!r}")
    if not 0 <= c['validation'] < 1:
        raise ValueError(f'`validation` must be a fraction in [0, 1), got '
                         f'{c["validation"]!r}')
    c['validation'] = float(c['validation'])
    c['seed'] = int(c['seed'])
    return c


def _no_atoms(image, space):
    """A SIRT picker that picks nothing: training needs only the image."""
    return space.element()


def make_sample(config, seed):
    """Return one training sample: a SIRT image and its true atoms.

    Parameters
    ----------
    config : dict
        A training configuration (`default_training_config`).
    seed : int, sequence of int or `numpy.random.Generator`

    Returns
    -------
    inputs : numpy.ndarray of float32, shape ``(n0, n1)``
        The normalised SIRT image (`normalise_image`).
    index_positions : numpy.ndarray of shape ``(n, 2)``
        The true atoms in index coordinates of the image.
    pixel_size : float
        Pixel side (angstrom).
    """
    from odl_atoms.problem import Problem
    from odl_atoms.simulation import simulate
    from odl_atoms.solvers.sirt import SIRT
    from odl_atoms.space import SparseMeasureSpace

    c = config
    rng = np.random.default_rng(seed)
    space = SparseMeasureSpace(*c['box'])
    atoms = random_crystal(space, c['spacing'], seed=rng)
    level = float(rng.uniform(*c['noise']))
    measured = simulate(atoms, c['angles'], c['sigma'],
                        n_detector=c['n_detector'], noise=level, seed=rng)
    sirt = SIRT(n_iter=c['sirt_iter'], picker=_no_atoms)
    image = sirt.solve(Problem(measured.operator(), measured.element())).image
    cells = image.space.cell_sides
    inputs = normalise_image(image.data, c['sigma'], cells)
    return inputs, to_index(atoms.positions, image.space), float(cells[0])


def _sample_task(args):
    config, seed = args
    return make_sample(config, seed)


def generate_samples(config, n, seed=0, start=0, workers=1, progress=True):
    """Return ``n`` training samples (`make_sample`), reproducibly.

    Sample ``k`` uses the seed ``[seed, start + k]``, so the result does not
    depend on ``workers``.

    Parameters
    ----------
    config : dict
    n : int
    seed : int, optional
    start : int, optional
        Index of the first sample (to draw disjoint sets).
    workers : int, optional
        Processes (spawn context; 1: in this process). A script that uses
        several must guard its entry point with
        ``if __name__ == '__main__':``, as for any spawned pool.
    progress : bool, optional
        Show a tqdm progress bar.
    """
    from tqdm import tqdm

    tasks = [(config, [seed, start + k]) for k in range(n)]
    bar = dict(total=n, desc='SIRT samples', disable=not progress,
               leave=False)
    if workers > 1:
        import multiprocessing
        # 'spawn': forked workers can deadlock in thread pools (BLAS, torch)
        # the parent already started.
        context = multiprocessing.get_context('spawn')
        with context.Pool(workers) as pool:
            return list(tqdm(pool.imap(_sample_task, tasks, chunksize=4),
                             **bar))
    return [_sample_task(t) for t in tqdm(tasks, **bar)]


def _stack(samples):
    """Arrays ``x, prob, offsets, mask`` of a list of samples (one shape)."""
    shapes = {s[0].shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(f'samples of different shapes {shapes}')
    x = np.stack([s[0] for s in samples])
    targets = [encode_targets(s[1], s[0].shape) for s in samples]
    prob = np.stack([t[0] for t in targets])
    offsets = np.stack([t[1] for t in targets])
    mask = np.stack([t[2] for t in targets])
    return x, prob, offsets, mask


def _loss(torch, out, prob, offsets, mask, config):
    """Per-batch loss; returns (total, probability part, offset part)."""
    from torch.nn import functional as F
    logits = out[:, 0]
    if config['loss'] == 'focal':
        # Focal loss (Lin et al. 2017), gamma = 2: down-weights the many
        # easy background pixels.
        bce = F.binary_cross_entropy_with_logits(logits, prob,
                                                 reduction='none')
        p = torch.sigmoid(logits)
        pt = prob * p + (1 - prob) * (1 - p)
        lp = ((1 - pt) ** 2 * bce).mean()
    else:
        lp = F.binary_cross_entropy_with_logits(
            logits, prob, pos_weight=torch.tensor(config['pos_weight'],
                                                  device=logits.device))
    m = mask[:, None]
    lo = (torch.abs(out[:, 1:] - offsets) * m).sum() / (2 * m.sum()
                                                        ).clamp(min=1)
    return lp + config['offset_weight'] * lo, lp, lo


#: Thresholds tried by the calibration on the validation samples. They go
#: above 1 because the score is a sum over 3 x 3 pixels.
_THRESHOLDS = np.round(np.arange(0.1, 1.51, 0.05), 2)


def _calibrate(model, samples, config):
    """Choose the decision threshold that maximises the validation F1.

    Returns the configuration entries ``threshold``, ``val_f1`` (mean F1 of
    the validation images at that threshold, matching tolerance 0.3
    spacings) and ``val_rmsd`` (median RMSD, angstrom). Without validation
    samples the threshold is 0.5.
    """
    from odl_atoms.learned.data import decode_maps
    from odl_atoms.metrics import DEFAULT_RELATIVE_TOLERANCE, match_atoms
    if not samples:
        return {'threshold': 0.5}
    pixel = samples[0][2]
    tolerance = DEFAULT_RELATIVE_TOLERANCE * config['spacing'] / pixel
    maps = [(model.predict(x), idx) for x, idx, _ in samples]
    scores = []
    for threshold in _THRESHOLDS:
        f1, rmsd = [], []
        for (prob, offsets), idx in maps:
            found, _ = decode_maps(prob, offsets, threshold=threshold)
            match = match_atoms(idx, found, tolerance=tolerance)
            f1.append(match.f1)
            rmsd.append(match.rmsd * pixel)
        # Ties go to the threshold nearest 0.5 (a calibrated probability).
        scores.append((np.mean(f1), -abs(threshold - 0.5), threshold,
                       float(np.nanmedian(rmsd)) if np.any(np.isfinite(rmsd))
                       else math.nan))
    f1, _, threshold, rmsd = max(scores)
    return {'threshold': float(threshold), 'val_f1': float(f1),
            'val_rmsd': rmsd}


def train(angles=DEFAULT_ANGLES, sigma=None, spacing=DEFAULT_SPACING,
          n_detector=96, box=None, noise=(0.0, 0.05), sirt_iter=None,
          n_samples=1000, n_steps=3000, batch_size=8, learning_rate=2e-3,
          width=8, offset_weight=1.0, loss='bce', pos_weight=10.0,
          validation=0.1, seed=0,
          device=None, workers=1, progress=True, output=None, samples=None):
    """Train a learned picker for one tomography problem.

    Parameters
    ----------
    angles : sequence of float, optional
        Tilt angles (radians) of the target problem. Default 0, 45, 90
        degrees.
    sigma : positive float, optional
        Atom width (angstrom). Default ``0.15 * spacing``.
    spacing : positive float, optional
        Typical nearest-neighbour distance (angstrom); training crystals
        have spacings within 15 % of it.
    n_detector : int, optional
        Detector cells across the box's shadow (`odl_atoms.simulate`);
        with the box it fixes the pixel size (SIRT's default pixel is one
        detector cell).
    box : array-like, optional
        ``[[xmin, ymin], [xmax, ymax]]`` or ``[width, height]`` (centred),
        angstrom. Default: the box of the 7 x 7 defect phantoms,
        ``8 * spacing`` wide.
    noise : float or pair of float, optional
        Relative noise level, or a range drawn uniformly per sample.
    sirt_iter : int, optional
        SIRT iterations (default `odl_atoms.solvers.sirt.DEFAULT_N_ITER`,
        what ``SIRT()`` does, so that ``SIRT(picker=LearnedPicker(...))``
        sees the training distribution).
    n_samples : int, optional
        Simulated SIRT images (a fraction ``validation`` held out).
    n_steps : int, optional
        Optimiser steps (Adam, cosine-decayed learning rate).
    batch_size, learning_rate : optional
    width : int, optional
        Network width (`build_network`).
    offset_weight : float, optional
        Weight of the offset loss relative to the probability loss.
    loss : {'bce', 'focal'}, optional
        Loss of the probability map: binary cross-entropy with positive
        pixels weighted by ``pos_weight`` (default), or focal loss
        (gamma 2).
    pos_weight : positive float, optional
        Weight of atom pixels in the BCE. About 1 % of the pixels hold an
        atom; unweighted, the offsets' loss dominated and the network
        learned to find atoms slowly (validation F1 0.42 against 0.69 with
        10 after 2500 steps). The weighting adds ``log(pos_weight)`` to the
        optimal logits, which `LearnedModel.predict` subtracts.
    validation : float in [0, 1), optional
        Fraction of the samples held out for the validation loss.
    seed : int, optional
        Seeds the samples, the initialisation and the batches.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    workers : int, optional
        Processes that simulate samples.
    progress : bool, optional
        tqdm progress bars.
    output : str or path-like, optional
        Also save the model there.
    samples : list, optional
        Samples from `generate_samples` with this configuration, instead of
        simulating new ones (to train variants on the same data); the first
        ``n_samples`` are used.

    Returns
    -------
    model : `LearnedModel`
        ``model.history`` holds ``loss`` (every step), ``val_loss`` and
        ``val_step`` (10 evaluations); ``model.config`` the configuration,
        ``training_time`` and the decision ``threshold`` that maximised the
        F1 score on the validation images (``val_f1``, ``val_rmsd``), which
        `LearnedPicker` uses by default.
    """
    torch = require_torch()
    from tqdm import tqdm

    from odl_atoms.solvers.sirt import DEFAULT_N_ITER

    config = _checked(dict(
        angles=angles, sigma=sigma, spacing=spacing, n_detector=n_detector,
        box=box, noise=noise,
        sirt_iter=DEFAULT_N_ITER if sirt_iter is None else sirt_iter,
        n_samples=n_samples, n_steps=n_steps, batch_size=batch_size,
        learning_rate=learning_rate, width=width, offset_weight=offset_weight,
        loss=loss, pos_weight=pos_weight, validation=validation, seed=seed))
    start = time.perf_counter()
    if samples is None:
        samples = generate_samples(config, config['n_samples'],
                                   seed=config['seed'], workers=workers,
                                   progress=progress)
    else:
        samples = list(samples)[:config['n_samples']]
    config['pixel_size'] = samples[0][2]
    config['image_shape'] = list(samples[0][0].shape)
    x, prob, offsets, mask = _stack(samples)
    n_val = int(round(config['validation'] * len(x)))
    if len(x) - n_val < 1:
        raise ValueError(f'{len(x)} samples leave none for training with '
                         f'validation={config["validation"]}')
    split = len(x) - n_val

    torch.manual_seed(config['seed'])
    model = LearnedModel(dict(config), device=device)
    net, dev = model.network, model.device
    net.train()
    tensors = [torch.from_numpy(a) for a in (x, prob, offsets, mask)]
    opt = torch.optim.Adam(net.parameters(), lr=config['learning_rate'])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, config['n_steps'], eta_min=config['learning_rate'] / 20)
    rng = np.random.default_rng([config['seed'], 1])

    def batch(index, flip=None):
        xb, pb, ob, mb = (t[index] for t in tensors)
        if flip is not None and flip.any():
            # 180-degree rotation: flip both axes; offsets change sign.
            f = torch.from_numpy(flip)
            xb, pb, mb = (torch.where(f[:, None, None], t.flip(-1, -2), t)
                          for t in (xb, pb, mb))
            ob = torch.where(f[:, None, None, None], -ob.flip(-1, -2), ob)
        return (xb[:, None].to(dev), pb.to(dev), ob.to(dev), mb.to(dev))

    def validate():
        if n_val == 0:
            return math.nan
        net.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(split, len(x), 32):
                idx = np.arange(i, min(i + 32, len(x)))
                xb, pb, ob, mb = batch(idx)
                total += float(_loss(torch, net(xb), pb, ob, mb,
                                     config)[0]) * len(idx)
        net.train()
        return total / n_val

    history = {'loss': [], 'val_loss': [], 'val_step': []}
    checks = set(np.linspace(0, config['n_steps'], 11).astype(int)[1:] - 1)
    bar = tqdm(range(config['n_steps']), desc='training', disable=not progress,
               leave=False)
    for step in bar:
        idx = rng.integers(0, split, config['batch_size'])
        xb, pb, ob, mb = batch(idx, rng.random(len(idx)) < 0.5)
        total, _, _ = _loss(torch, net(xb), pb, ob, mb, config)
        opt.zero_grad()
        total.backward()
        opt.step()
        sched.step()
        history['loss'].append(float(total.detach()))
        if step in checks:
            history['val_loss'].append(validate())
            history['val_step'].append(step + 1)
            bar.set_postfix(loss=f'{np.mean(history["loss"][-50:]):.4f}',
                            val=f'{history["val_loss"][-1]:.4f}')
    net.eval()
    config.update(_calibrate(model, samples[split:], config))
    config['training_time'] = time.perf_counter() - start
    config['n_parameters'] = model.n_parameters
    config['normalisation'] = NORMALISATION
    config['torch_version'] = str(torch.__version__)
    model.config = config
    model.history = history
    if output is not None:
        model.save(output)
    return model
