"""What the subcommands share: argument types, files, messages, tables.

Everything here is command-line business (argparse types, messages on
standard error, exit-status errors, progress bars); the work itself is done
by the library (`odl_atoms.reconstruction`, `odl_atoms.io`, ...). Heavy
modules are imported inside the functions that need them, so that building
the parser loads neither ODL nor matplotlib.
"""

import argparse
import math
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from odl_atoms.errors import ValidationError

__all__ = ('UsageError', 'parse_angles', 'parse_weights')

ATOM_SUFFIX_HELP = ('format from the suffix: .extxyz/.xyz keep weights, '
                    'species and box; .cif and other ASE formats work too')

# Optional dependencies a command may import when it runs, and how to get
# them.
OPTIONAL_DEPENDENCIES = {
    'torch': 'pip install "odl_atoms[learn]" (PyTorch, for --solver '
             'sirt+learned)',
    'dask': 'pip install "odl_atoms[sweep]" (Dask, for sweep --grid; or run '
            'it here with --scheduler synchronous)',
    'distributed': 'pip install "odl_atoms[sweep]" (Dask, for sweep --grid; '
                   'or run it here with --scheduler synchronous)'}


class UsageError(ValidationError):
    """A mistake in the command line or its input files (exit status 2)."""


# --- The parser


class Formatter(argparse.RawDescriptionHelpFormatter):

    """Keep the epilog's line breaks; show defaults the help does not name."""

    def _get_help_string(self, action):
        text = action.help or ''
        default = action.default
        if ('default' not in text and default is not None
                and default is not False and default != argparse.SUPPRESS
                and action.option_strings and action.nargs != 0):
            if isinstance(default, list):
                default = ' '.join(map(str, default))
            text += f' (default: {default})'
        return text


def add_common_options(parser, top=False):
    """``-q/--quiet`` and ``--debug``, on the main parser and every command."""
    default = False if top else argparse.SUPPRESS
    parser.add_argument('-q', '--quiet', action='store_true', default=default,
                        help='no progress bars or informational messages')
    parser.add_argument('--debug', action='store_true', default=default,
                        help='show the Python traceback of errors')


def _number(name, strictly_positive):
    """argparse type: a finite number, positive or at least 0."""
    need = 'positive' if strictly_positive else 'a number >= 0'

    def convert(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'{name} must be a number, got {text!r}') from None
        ok = value > 0 if strictly_positive else value >= 0
        if not (math.isfinite(value) and ok):
            raise argparse.ArgumentTypeError(f'{name} must be {need}, got '
                                             f'{text!r}')
        return value
    return convert


def positive(name):
    """argparse type: a finite number > 0 (``name`` for the message)."""
    return _number(name, strictly_positive=True)


def non_negative(name):
    """argparse type: a finite number >= 0."""
    return _number(name, strictly_positive=False)


def positive_int(name):
    """argparse type: an integer >= 1."""
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'{name} must be an integer, got {text!r}') from None
        if value < 1:
            raise argparse.ArgumentTypeError(f'{name} must be >= 1, got '
                                             f'{value}')
        return value
    return convert


def noise_std(text):
    """argparse type of ``--noise-std``: a number >= 0 or ``'none'``."""
    if text.strip().lower() == 'none':
        return 'none'
    return non_negative('--noise-std')(text)


# --- Values given as text


def parse_numbers(tokens, what, allow_range=True):
    """Numbers from ``['0', '45,90']`` or ranges ``'-60:60:5'`` (5 values)."""
    values = []
    for token in tokens:
        for part in str(token).replace(',', ' ').split():
            if allow_range and part.count(':') == 2:
                try:
                    start, stop, count = part.split(':')
                    start, stop, count = float(start), float(stop), int(count)
                except ValueError:
                    raise UsageError(
                        f'{what}: cannot read the range {part!r}; write '
                        f'START:STOP:COUNT, e.g. -60:60:5') from None
                if count < 1:
                    raise UsageError(f'{what}: a range needs COUNT >= 1, got '
                                     f'{part!r}')
                values.extend(np.linspace(start, stop, count).tolist())
                continue
            try:
                values.append(float(part))
            except ValueError:
                raise UsageError(f'{what}: {part!r} is not a number') from None
    if not values:
        raise UsageError(f'{what}: give at least one number')
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f'{what}: every value must be finite, got {values}')
    return values


def parse_alphas(tokens):
    """Sorted distinct energy weights from ``--alphas`` (no ranges)."""
    alphas = parse_numbers(tokens, '--alphas', allow_range=False)
    if any(a < 0 for a in alphas):
        raise UsageError(f'--alphas: energy weights must be >= 0, got '
                         f'{alphas}')
    return sorted(set(alphas))


def parse_angles(tokens):
    """Tilt angles given in degrees on the command line -> sorted radians.

    Examples
    --------
    >>> np.degrees(parse_angles(['90', '0,45', '-60:-30:2'])).tolist()
    [-60.0, -30.0, 0.0, 45.0, 90.0]
    """
    degrees = parse_numbers(tokens, '--angles')
    rounded = np.round(np.sort(degrees), 9)
    if np.any(np.diff(rounded) == 0):
        raise UsageError(f'--angles: every angle must be different, got '
                         f'{sorted(degrees)} (degrees)')
    if rounded[-1] - rounded[0] >= 360:
        raise UsageError(f'--angles: the angles span {rounded[-1] - rounded[0]}'
                         f' degrees; a tilt series spans less than 360')
    return np.radians(np.sort(degrees))


def parse_weights(text):
    """``'Au=1,Pt=1.3'`` -> dict; ``'1.5'`` -> float; ``None`` -> None.

    Examples
    --------
    >>> parse_weights('Au=1, Pt=1.3'), parse_weights('2')
    ({'Au': 1.0, 'Pt': 1.3}, 2.0)
    """
    if text is None:
        return None
    text = text.strip()
    if '=' not in text:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(
                f'--weights: expected SPECIES=WEIGHT pairs like Au=1,Pt=1.3 or '
                f'one number, got {text!r}') from None
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f'--weights: weights must be positive, got '
                             f'{value}')
        return value
    weights = {}
    for item in text.split(','):
        if not item.strip():
            continue
        label, _, value = item.partition('=')
        label = label.strip()
        try:
            number = float(value)
        except ValueError:
            number = float('nan')
        if not label or not (math.isfinite(number) and number > 0):
            raise UsageError(
                f'--weights: cannot read {item.strip()!r}; write '
                f'SPECIES=WEIGHT with a positive weight, e.g. Au=1,Pt=1.3')
        if label in weights:
            raise UsageError(f'--weights: species {label!r} is given twice')
        weights[label] = number
    if not weights:
        raise UsageError('--weights: no SPECIES=WEIGHT pair given')
    return weights


# --- Messages and progress


def info(args, message):
    """An informational line on standard error (not with ``--quiet``)."""
    if not getattr(args, 'quiet', False):
        print(message, file=sys.stderr)


def warn(message):
    """A warning line on standard error (also with ``--quiet``)."""
    print(f'odl-atoms: warning: {message}', file=sys.stderr)


def progress(args, **kwargs):
    """A tqdm bar on standard error, disabled by ``--quiet``."""
    from tqdm import tqdm

    kwargs.setdefault('file', sys.stderr)
    kwargs.setdefault('dynamic_ncols', True)
    return tqdm(disable=bool(getattr(args, 'quiet', False)), **kwargs)


class IterationBar:

    """Solver callback (ODL style) that advances a progress bar.

    ODL's ``CallbackProgressBar`` needs the number of iterations in advance;
    ADCG's is not known (it stops when no atom pays off), so this bar counts
    iterations and shows the current number of atoms instead.
    """

    def __init__(self, args, desc):
        self.bar = progress(args, desc=desc, unit=' it')

    def __call__(self, iterate):
        self.bar.update(1)
        n_atoms = getattr(iterate, 'n_atoms', None)
        if n_atoms is not None:
            self.bar.set_postfix(atoms=n_atoms, refresh=False)

    def close(self):
        self.bar.close()


# --- Files


def input_file(path, what):
    """``Path(path)``, or a UsageError if it is missing or a folder."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f'no {what} file at {str(path)!r}')
    if path.is_dir():
        raise UsageError(f'{str(path)!r} is a directory, not a {what} file')
    return path


def check_output(path, kind):
    """Check an output path before the work starts (not after an hour)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f'output {str(path)!r} is a directory; give a file '
                         f'name')
    if not path.parent.is_dir():
        raise UsageError(f'cannot write {str(path)!r}: the folder '
                         f'{str(path.parent)!r} does not exist')
    suffix = path.suffix.lower()
    if kind == 'atoms':
        from ase.io.formats import UnknownFileTypeError, filetype, ioformats
        try:
            fmt = filetype(path, read=False)
        except UnknownFileTypeError:
            raise UsageError(
                f'cannot tell the atom-file format of {str(path)!r}; use a '
                f'suffix such as .extxyz, .xyz or .cif') from None
        if fmt not in ioformats or not ioformats[fmt].can_write:
            raise UsageError(f'ASE cannot write the format {fmt!r} of '
                             f'{str(path)!r}; use .extxyz, .xyz or .cif')
    elif kind == 'projections':
        from odl_atoms.io import PROJECTION_SUFFIXES
        if suffix not in PROJECTION_SUFFIXES:
            raise UsageError(
                f'projection-data files end in '
                f'{", ".join(PROJECTION_SUFFIXES)}, got {str(path)!r}')
    elif kind == 'figure':
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        supported = FigureCanvasAgg.get_supported_filetypes()
        if suffix.lstrip('.') not in supported:
            raise UsageError(
                f'cannot save a figure as {str(path)!r}; use one of '
                f'{", ".join("." + s for s in sorted(supported))}')
    elif kind == 'table':
        if suffix not in ('.md', '.csv', '.txt'):
            raise UsageError(f'tables are written as .md (Markdown) or .csv, '
                             f'got {str(path)!r}')
    elif kind == 'json':
        if suffix != '.json':
            raise UsageError(f'JSON output ends in .json, got {str(path)!r}')
    return path


def write_text(path, text):
    """Write a text file atomically."""
    from odl_atoms.io import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig, path):
    """Save a figure atomically, in the format of the suffix."""
    from odl_atoms.io import atomic_path
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip('.').lower(), dpi=110,
                    bbox_inches='tight')


def read_projections(path, sigma=None, noise_std=None, need_sigma=False):
    """Read a projection-data file; apply ``--sigma``/``--noise-std``.

    With ``need_sigma``, a file without an atom width (data prepared from
    microscope images) and no ``--sigma`` is a UsageError.
    """
    import dataclasses

    from odl_atoms.io import PROJECTION_SUFFIXES
    from odl_atoms.io import read_projections as read

    path = input_file(path, 'projection-data')
    if path.suffix.lower() not in PROJECTION_SUFFIXES:
        raise UsageError(
            f'{str(path)!r} is not a projection-data file (those end in '
            f'{", ".join(PROJECTION_SUFFIXES)}); see "odl-atoms simulate" and '
            f'the file-format documentation')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', UserWarning)
        measured = read(path)
    for w in caught:
        warn(w.message)
    changes = {}
    if sigma is not None:
        changes['sigma'] = sigma
    if noise_std == 'none':
        changes['noise_std'] = None
    elif noise_std is not None:
        changes['noise_std'] = noise_std
    if changes:
        measured = dataclasses.replace(measured, **changes)
    if need_sigma and measured.sigma is None:
        raise UsageError(
            f"{str(path)!r} holds no atom width ('sigma', the Gaussian std "
            f"of an atom; data prepared from microscope images leave it "
            f"open); give it with --sigma (in Å)")
    return measured


def read_atoms_file(path, **kwargs):
    """`odl_atoms.io.read_atoms` of a file that must exist."""
    from odl_atoms.io import read_atoms
    path = input_file(path, 'atom')
    return read_atoms(path, **kwargs)


def read_reference(path):
    """Ground truth from an atom file or a projection-data file."""
    from odl_atoms.io import PROJECTION_SUFFIXES
    if Path(path).suffix.lower() in PROJECTION_SUFFIXES:
        truth = read_projections(path).ground_truth()
        if truth is None:
            raise UsageError(f'{str(path)!r} holds no ground truth (no '
                             f"'positions' key); give an atom file instead")
        return truth
    return read_atoms_file(path)


def jsonable(value):
    """``value`` with NumPy numbers as Python's and non-finite ones as None."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- Metrics tables

METRIC_COLUMNS = (('atoms', 'n_reconstruction', '{:d}'),
                  ('truth', 'n_reference', '{:d}'),
                  ('matched', 'n_matched', '{:d}'),
                  ('precision', 'precision', '{:.3f}'),
                  ('recall', 'recall', '{:.3f}'),
                  ('F1', 'f1', '{:.3f}'),
                  ('RMSD (Å)', 'rmsd', '{:.3f}'),
                  ('max dist (Å)', 'max_distance', '{:.3f}'))


def fmt(template, value):
    """``template.format(value)``, or ``'-'`` for None and non-finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    return template.format(value)


def metrics_rows(named_scores):
    """Rows ``[method, atoms, ...]`` from ``{method: (as_dict, seconds)}``."""
    rows = []
    for name, (scores, seconds) in named_scores.items():
        row = [name] + [fmt(t, scores.get(key)) for _, key, t in METRIC_COLUMNS]
        if seconds is not None:
            row.append(f'{seconds:.1f}')
        rows.append(row)
    return rows


def metrics_header(with_time=True):
    """Header of `metrics_rows`."""
    header = ['method'] + [label for label, _, _ in METRIC_COLUMNS]
    return header + ['time (s)'] if with_time else header


# --- Reconstructions


def check_data_scale(measured, weights):
    """Warn when the data's scale does not fit atoms of the given weights.

    An atom of weight ``w`` adds ``w`` to the integral of every projection
    (the toolkit's model), so the median integral over the detector divided
    by the smallest weight estimates the number of atoms. Data in other units
    (raw counts, normalised images) then give absurd counts.
    """
    data = np.asarray(measured.data, dtype=float)
    cell = np.prod((np.asarray(measured.detector_max)
                    - np.asarray(measured.detector_min))
                   / np.asarray(data.shape[1:]))
    integral = float(np.median(data.reshape(data.shape[0], -1).sum(1) * cell))
    if isinstance(weights, Mapping):
        w = min(weights.values())
    else:
        w = 1.0 if weights is None else float(weights)
    count = integral / w
    if not 0.5 <= count <= 1e6:
        warn(f'the data integrate to {integral:.4g} per projection, i.e. '
             f'{count:.3g} atoms of weight {w:g}; the model expects an atom '
             f'of weight w to add w to the integral of every projection. '
             f'Scale the data, or give the atom weights in data units with '
             f'--weights')
    return count


def equilibrium_distance(args, measured, weights=None, grid_spacing=None):
    """The potential's equilibrium distance estimated from the data
    (`odl_atoms.reconstruction.estimate_equilibrium_distance`), with a
    progress bar."""
    from odl_atoms.reconstruction import estimate_equilibrium_distance

    bar = IterationBar(args, 'r_min (alpha = 0)')
    try:
        r_min, _ = estimate_equilibrium_distance(
            measured, weights=weights, grid_spacing=grid_spacing,
            callback=bar)
    except ValidationError as exc:
        message = str(exc)
        if not message.endswith('; give r_min'):
            raise
        raise UsageError(message.removesuffix('r_min') + '--r-min') from exc
    finally:
        bar.close()
    return r_min


# Command-line flags of the settings of `odl_atoms.reconstruct`.
_FLAGS = {'alpha': '--alpha', 'r_min': '--r-min', 'weights': '--weights',
          'seed': '--seed', 'noise_std': '--noise-std',
          'grid_spacing': '--grid-spacing'}
_OPTION_OF = {'r_min': 'potential'}


def run_reconstruction(args, measured, solver='adcg', alpha=None, r_min=None,
                       weights=None, initial=None, desc=None, **options):
    """`odl_atoms.reconstruct` with progress bars and messages.

    Settings that the solver does not use and that were written on the
    command line (``args._explicit``) are reported and dropped; ``r_min``
    is estimated here first (with its own progress bar and message) when
    `odl_atoms.reconstruct` would estimate it. ``None`` means "not given".

    Returns
    -------
    result : `Reconstruction`
        ``result.info['estimated_r_min']`` holds an estimated ``r_min``.
    """
    from odl_atoms import reconstruction

    cls = reconstruction.solver_class(solver)
    settings = {'alpha': alpha, 'r_min': r_min, 'weights': weights,
                'seed': getattr(args, 'seed', None),
                'noise_std': measured.noise_std, **options}
    explicit = getattr(args, '_explicit', ())
    ignored = [name for name in settings
               if not reconstruction.takes_option(cls,
                                                  _OPTION_OF.get(name, name))]
    reported = [name for name in ignored if name in explicit]
    if reported:
        flags = ', '.join(_FLAGS.get(n, '--' + n.replace('_', '-'))
                          for n in reported)
        warn(f'{cls.__name__} does not use {flags}; ignored')
    settings = {name: value for name, value in settings.items()
                if name not in ignored and name != 'noise_std'
                and value is not None}
    estimated = None
    if reconstruction.needs_r_min_estimate(cls, alpha, r_min):
        grid_spacing = settings.get(
            'grid_spacing', reconstruction.default_grid_spacing(measured))
        estimated = equilibrium_distance(args, measured, weights,
                                         grid_spacing)
        info(args, f'estimated r_min {estimated:.3f} Å (nearest-neighbour '
                   f'distance of an energy-free reconstruction)')
        settings['r_min'] = estimated
    bar = IterationBar(args, desc or cls.__name__)
    try:
        result = reconstruction.reconstruct(measured, cls, initial=initial,
                                            callback=bar, **settings)
    finally:
        bar.close()
    if estimated is not None:
        result.info['estimated_r_min'] = estimated
    return result


# --- Figures


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive backend."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def comparison_figure(results, truth, data, op, fit_label=None):
    """`odl_atoms.plot.plot_comparison` with the non-interactive backend."""
    from odl_atoms.plot import plot_comparison

    pyplot()
    return plot_comparison(results, truth, data, op, fit_label=fit_label)


def reconstruction_figure(result, truth, data, op, name):
    """Figure of one reconstruction (2D: atoms + fit; 3D: atoms + images)."""
    from odl_atoms.plot import plot_projection_images

    fig = comparison_figure({name: result}, truth, data, op)
    if op.domain.ndim == 3:
        return [fig, plot_projection_images(data, op(result.measure))]
    return [fig]
