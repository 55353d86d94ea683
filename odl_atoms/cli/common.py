"""What the subcommands share: argument types, files, messages, tables.

Everything here is command-line business (argparse types, messages on
standard error, exit-status errors, progress bars); the work itself is done
by the library (`odl_atoms.reconstruction`, `odl_atoms.io`, ...). Heavy
modules are imported inside the functions that need them, so that building
the parser loads neither ODL nor matplotlib.
"""

import argparse
import math
import os
import sys
import tempfile
import warnings
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


def time_limit(text):
    """argparse type of ``--time-limit``: seconds > 0, or ``'none'``."""
    if text.strip().lower() == 'none':
        return math.inf
    return positive('--time-limit')(text)


def add_limit_options(parser, time=False, force=False):
    """``--max-memory`` (and ``--time-limit``, ``--force``): the limits of a
    run and their overrides."""
    group = parser.add_argument_group(
        'limits (checked before any work; see "Exit status and limits" in '
        'the documentation)')
    group.add_argument('--max-memory', type=positive('--max-memory'),
                       default=None, metavar='GiB',
                       help='memory the run may take, in GiB (2^30 bytes); '
                            'a run whose estimate exceeds it is refused '
                            'before it starts (default: the memory '
                            'available)')
    if time:
        from odl_atoms.reconstruction import DEFAULT_TIME_LIMIT
        group.add_argument(
            '--time-limit', type=time_limit, default=DEFAULT_TIME_LIMIT,
            metavar='SECONDS',
            help=f'wall-clock limit of the reconstruction: it stops at its '
                 f'next iteration with its best answer so far and says so '
                 f'("none": no limit; default {DEFAULT_TIME_LIMIT:g}, three '
                 f'times the longest benchmark run)')
    if force:
        group.add_argument(
            '--force', action='store_true',
            help='run even when the input looks implausible (angles in '
                 'degrees, data not in units of one atom, an atom width that '
                 'does not fit the detector or the box): the problems are '
                 'printed as warnings')


def memory_limit(args):
    """``--max-memory`` in bytes, or None (the memory available)."""
    value = getattr(args, 'max_memory', None)
    return None if value is None else value * 2 ** 30


#: How the command line names the settings that lower a run's memory
#: (`odl_atoms.resources.MemoryEstimate.check`) and the plausibility
#: checks' settings (`odl_atoms.checks`).
CLI_NAMES = {
    'grid_spacing': 'a larger --grid-spacing (or a smaller box in the data '
                    'file)',
    'proposal_spacing': 'a larger candidate spacing',
    'pixel_size': 'a smaller box (box_min, box_max of the data file; '
                  'the SIRT pixel is the detector cell)',
    'n_detector': 'fewer detector cells (--detector N, or a larger '
                  '--detector-cell)',
    'atoms': 'fewer atoms (a smaller --shape or --size)',
    'starts': 'leaving out --lattice (or a larger --r-min)',
    'data_scale': 'data in units of one atom (--intensity, --weights)',
    'data': 'less data (binning, fewer projections)',
    'max_memory': '--max-memory GiB',
    'sigma': '--sigma, in Å',
    'weights': '--weights W',
    'intensity': '--intensity I',
    'force': '--force',
    'calibration': 'odl_atoms.calibration.calibrate in Python',
}


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
    """``Path(path)``, or a UsageError if it is missing, a folder or
    unreadable."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f'no {what} file at {str(path)!r}')
    if path.is_dir():
        raise UsageError(f'{str(path)!r} is a directory, not a {what} file')
    if not os.access(path, os.R_OK):
        raise UsageError(f'cannot read the {what} file {str(path)!r}: '
                         f'permission denied')
    return path


def _check_writable(path):
    """Raise a UsageError unless a file can be created next to ``path``.

    Tried, not asked (`os.access` says yes to root on a read-only file
    system): a temporary file is made and removed, as `atomic_path` will.
    """
    folder = path.parent
    try:
        fd, probe = tempfile.mkstemp(prefix='.odl-atoms-write-test-',
                                     dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f'cannot write {str(path)!r}: the folder '
                         f'{str(folder)!r} is not writable ({reason}); '
                         f'choose another folder') from None
    os.close(fd)
    os.unlink(probe)


def check_output(path, kind, flag=None):
    """Check an output path before the work starts (not after an hour): a
    file name (not a folder) in a writable folder, with a suffix of its
    kind (``'atoms'``, ``'projections'``, ``'figure'``, ``'table'``,
    ``'json'``, ``'movie'``)."""
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
        if not ioformats[fmt].can_read:
            # ASE writes pictures (.png, .eps, .pov, .html) of atoms that
            # no reader can turn back into atoms.
            raise UsageError(
                f'{flag or "the atom file"} {str(path)!r}: ASE writes '
                f'{fmt!r} as a picture of the atoms and cannot read it back; '
                f'an atom file ends in .extxyz, .xyz or .cif (a figure goes '
                f'to --figure)')
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
    elif kind == 'movie':
        if suffix != '.gif':
            raise UsageError(f'the film is written as an animated GIF: '
                             f'--movie ends in .gif, got {str(path)!r}')
    _check_writable(path)
    return path


def _same_file(a, b):
    """Whether two paths name the same file (also through links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs, inputs=()):
    """Check every output before the work: each with `check_output`, none
    the same file as another output or as an input.

    Parameters
    ----------
    outputs : sequence of (flag, path, kind)
        ``path`` None is skipped.
    inputs : sequence of (flag, path)

    Returns
    -------
    paths : list of pathlib.Path or None
        The outputs' paths, in order.
    """
    checked, seen = [], []
    for flag, path, kind in outputs:
        if path is None:
            checked.append(None)
            continue
        path = check_output(path, kind, flag)
        for other_flag, other in seen:
            if _same_file(path, other):
                raise UsageError(
                    f'{flag} and {other_flag} are the same file '
                    f'{str(path)!r}; the second would overwrite the first: '
                    f'give different names')
        for in_flag, source in inputs:
            if source is not None and _same_file(path, Path(source)):
                raise UsageError(
                    f'{flag} {str(path)!r} is the input {in_flag}; writing '
                    f'it would replace the data: give another name')
        seen.append((flag, path))
        checked.append(path)
    return checked


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


def read_projections(path, sigma=None, noise_std=None, need_sigma=False,
                     intensity=None, max_bytes=None, calibrate=False):
    """Read a projection-data file; apply ``--sigma``/``--noise-std`` and
    ``--intensity`` (the data and their noise divided by it). ``max_bytes``
    (``--max-memory``) replaces the limit of the sizes the file may declare.

    With ``need_sigma``, a file without an atom width (data prepared from
    microscope images) and no ``--sigma`` is a UsageError. With
    ``calibrate``, a file that needs its atom model estimated
    (`odl_atoms.reconstruction.needs_calibration`) is returned as read:
    ``--sigma`` and ``--intensity`` are then the calibration's to keep.
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
        try:
            measured = read(path, max_bytes=max_bytes)
        except ValidationError as exc:
            message = str(exc)
            if 'max_bytes' in message:  # the library's override, named
                raise UsageError(message.replace(
                    'pass max_bytes=', 'give --max-memory GiB').replace(
                    '(max_bytes)', '(--max-memory)')) from exc
            hint = _degrees_hint(path, message)
            if hint is None:
                raise
            raise UsageError(f'{exc}; {hint}') from exc
    for w in caught:
        warn(w.message)
    if calibrate:
        from odl_atoms.reconstruction import needs_calibration
        if needs_calibration(measured):
            if noise_std == 'none':
                measured = dataclasses.replace(measured, noise_std=None)
            return measured
    changes = {}
    if intensity is not None:
        changes['data'] = measured.data / intensity
        if measured.noise_std is not None:
            changes['noise_std'] = measured.noise_std / intensity
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


def _degrees_hint(path, message):
    """For a file refused over its angle edges: whether its angles look
    like degrees, as a hint (None if they do not, or cannot be read)."""
    if 'angle_min' not in message and 'angle_max' not in message:
        return None
    from odl_atoms.checks import check_angles
    from odl_atoms.io.safety import read_hdf5, read_npz

    reader = read_npz if path.suffix.lower() == '.npz' else read_hdf5
    try:
        arrays, _ = reader(path, keys=('angles',))
        check_angles(arrays['angles'])
    except ValidationError as exc:
        if 'degrees' in str(exc):
            text = ', '.join(f'{a:g}' for a in arrays['angles'][:8])
            return (f'the angles ({text}) look like degrees, while '
                    f'angle_min and angle_max are radians: the file stores '
                    f'radians (np.radians(angles))')
        return None
    except (KeyError, OSError, ValueError):
        return None
    return None


def read_atoms_file(path, hint='', **kwargs):
    """`odl_atoms.io.read_atoms` of a file that must exist; atoms that do
    not fit the options (``ndim``, ``space``) are a UsageError (with
    ``hint`` appended)."""
    from odl_atoms.io import read_atoms
    path = input_file(path, 'atom')
    try:
        return read_atoms(path, **kwargs)
    except ValidationError:
        raise
    except ValueError as exc:  # the file's atoms against the options
        raise UsageError(f'{str(path)!r}: {exc}{hint}') from exc


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


def check_input(args, measured, solver='adcg', weights=None, r_min=None,
                intensity=None, **options):
    """`odl_atoms.reconstruction.check_reconstruction` with the command
    line's names: refuse implausible input (warn with ``--force``) and a
    problem larger than ``--max-memory``; print the warnings."""
    from odl_atoms.reconstruction import check_reconstruction

    found = check_reconstruction(
        measured, solver, weights=weights, r_min=r_min,
        max_memory=memory_limit(args), names=CLI_NAMES,
        strict=not getattr(args, 'force', False), intensity=intensity,
        **{k: v for k, v in options.items() if v is not None})
    for message in found:
        warn(message)
    return found


def equilibrium_distance(args, measured, weights=None, grid_spacing=None,
                         time_limit=None):
    """The potential's equilibrium distance estimated from the data
    (`odl_atoms.reconstruction.estimate_equilibrium_distance`), with a
    progress bar."""
    from odl_atoms.reconstruction import estimate_equilibrium_distance

    bar = IterationBar(args, 'r_min (alpha = 0)')
    try:
        r_min, _ = estimate_equilibrium_distance(
            measured, weights=weights, grid_spacing=grid_spacing,
            callback=bar, time_limit=time_limit)
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


def calibrate_measurement(args, measured):
    """``(measured, calibration)``: data in microscope units calibrated
    (`odl_atoms.calibration.calibrate`, keeping ``--sigma`` and
    ``--intensity``), its estimates printed; other data as they are, with
    calibration None."""
    from odl_atoms.reconstruction import needs_calibration

    if not needs_calibration(measured):
        return measured, None
    from odl_atoms.calibration import calibrate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', UserWarning)
        calibration = calibrate(measured, sigma=getattr(args, 'sigma', None),
                                intensity=getattr(args, 'intensity', None))
    for w in caught:
        warn(w.message)
    info(args, 'calibrated from the data (refined at the atoms after the '
               'reconstruction):\n  ' + '\n  '.join(
                   repr(calibration).splitlines()[1:-1]))
    return calibration.apply(measured), calibration


def run_reconstruction(args, measured, solver='adcg', alpha=None, r_min=None,
                       weights=None, initial=None, desc=None, callback=None,
                       raw=None, calibration=None, lattice=None, **options):
    """`odl_atoms.reconstruct` with progress bars and messages.

    With a ``calibration`` (`calibrate_measurement`), ``measured`` is the
    calibrated measurement and ``raw`` the one read: `odl_atoms.reconstruct`
    refines the calibration at the atoms it finds.

    Settings that the solver does not use and that were written on the
    command line (``args._explicit``) are reported and dropped. Everything
    left open (``r_min``, the seed, the noise level, the lattice) is chosen
    by `odl_atoms.reconstruct` itself, as in Python: one path. ``None``
    means "not given"; ``--noise-std none`` means "unknown, do not
    estimate".

    Returns
    -------
    result : `Reconstruction`
        ``result.info['estimated_r_min']`` holds an estimated ``r_min``.
    """
    import time

    from odl_atoms import reconstruction

    limit = getattr(args, 'time_limit', reconstruction.DEFAULT_TIME_LIMIT)
    deadline = None if limit is None or math.isinf(limit) else (
        time.monotonic() + limit)

    def remaining():
        return None if deadline is None else max(
            deadline - time.monotonic(), 1e-3)

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
    if getattr(args, 'noise_std', None) == 'none' and \
            reconstruction.takes_option(cls, 'noise_std'):
        settings['noise_std'] = None  # unknown: not estimated either
    bar = IterationBar(args, desc or cls.__name__)
    if callback is not None:
        both = bar

        def bar(iterate):
            both(iterate)
            callback(iterate)
    try:
        # Checked already (check_input), with the command line's names.
        extra = ({} if calibration is None else
                 {'calibration': calibration})
        result = reconstruction.reconstruct(raw if calibration is not None
                                            else measured, cls,
                                            initial=initial, **extra,
                                            callback=bar, checks=False,
                                            time_limit=remaining(),
                                            lattice=lattice, **settings)
    except ValidationError as exc:
        message = str(exc)
        if not message.endswith('; give r_min'):
            raise
        raise UsageError(message.removesuffix('r_min') + '--r-min') from exc
    finally:
        (both if callback is not None else bar).close()
    source = result.info.get('r_min', {}).get('source')
    if source == 'energy-free reconstruction':
        info(args, f'estimated r_min {result.info["estimated_r_min"]:.3f} Å '
                   f'(nearest-neighbour distance of an energy-free '
                   f'reconstruction)')
    if result.info.get('stop_reason') == 'time_limit':
        warn(f'{cls.__name__} stopped at the time limit of {limit:g} s '
             f'(--time-limit) with its best answer so far, which may miss '
             f'atoms; give a larger --time-limit (or "none") to let it '
             f'finish')
    return result


# --- Figures


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive backend."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def comparison_figure(results, truth, data, op, fit_label=None,
                      confidences=None):
    """`odl_atoms.plot.plot_comparison` with the non-interactive backend."""
    from odl_atoms.plot import plot_comparison

    pyplot()
    return plot_comparison(results, truth, data, op, fit_label=fit_label,
                           confidences=confidences)


def reconstruction_figure(result, truth, data, op, name, confidence=None):
    """Figure of one reconstruction (2D: atoms + fit; 3D: atoms + images);
    without a truth, the atoms are coloured by ``confidence``."""
    from odl_atoms.plot import plot_projection_images

    fig = comparison_figure({name: result}, truth, data, op,
                            confidences=None if confidence is None
                            else {name: confidence})
    if op.domain.ndim == 3:
        return [fig, plot_projection_images(data, op(result.measure))]
    return [fig]
