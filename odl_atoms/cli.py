"""The ``odl-atoms`` command: simulate, reconstruct, evaluate, sweep, demo.

::

    odl-atoms demo                                   # the main job, built in
    odl-atoms simulate --phantom vacancy --angles 0 45 90 --noise 0.01 -o tilts.npz
    odl-atoms reconstruct tilts.npz -o atoms.extxyz --figure atoms.png
    odl-atoms evaluate atoms.extxyz tilts.npz        # truth from the data file
    odl-atoms sweep tilts.npz --alphas 0 1e-4 1e-3 1e-2 --figure sweep.png
    odl-atoms sweep --grid --phantoms vacancy interstitial --noise 0 0.01 \
        --solvers adcg sirt --alphas 0 1e-3 --cache runs/ --table grid.md

Conventions of the command line (the Python API is the same toolkit):

- angles are in **degrees** here (radians in the API and in the files);
- lengths are in angstrom;
- every output is written atomically (a temporary file in the target folder,
  renamed when complete), so an interrupted run never leaves a half-written
  result and never destroys an existing one;
- bad input (a missing or malformed file, an unknown solver or phantom, bad
  angles) stops with a one-line message and exit status 2; ``--debug`` shows
  the traceback. Status 1 means a bug (please report it), 130 an interrupt.

Progress bars (tqdm, on standard error) follow long steps; ``--quiet`` hides
them and the informational messages, but not results and errors.
"""

import argparse
import importlib
import inspect
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ('main', 'build_parser', 'SOLVER_NAMES')

#: ``--solver`` choices and the names they have in the package.
SOLVER_NAMES = {'adcg': 'ADCG', 'sa': 'SimulatedAnnealing', 'sirt': 'SIRT',
                'sirt+learned': 'LearnedSIRT'}
# Solvers with optional dependencies live in subpackages the package does not
# import itself.
_SOLVER_HOMES = {'sirt+learned': 'odl_atoms.learned'}
# Optional dependencies a solver may import when it runs, and how to get them.
_OPTIONAL = {'torch': 'pip install "odl_atoms[learn]" (PyTorch, for '
                      '--solver sirt+learned)',
             'dask': 'pip install "odl_atoms[sweep]" (Dask, for sweep --grid; '
                     'or run it here with --scheduler synchronous)',
             'distributed': 'pip install "odl_atoms[sweep]" (Dask, for sweep '
                            '--grid; or run it here with --scheduler '
                            'synchronous)'}

# The demo problem: the README's and the first example's.
DEMO_ANGLES_DEG = (0.0, 45.0, 90.0)
DEMO_SIGMA = 0.43
DEMO_DETECTOR = 96
DEMO_NOISE = 0.01
DEMO_SEED = 0

#: Default atom width (angstrom) of ``simulate``: 0.15 of gold's
#: nearest-neighbour distance (thermal motion plus the microscope's blur).
DEFAULT_SIGMA = 0.43
#: Default detector cell of ``simulate``, in units of sigma: fine enough that
#: an atom spans several cells.
DEFAULT_CELL_PER_SIGMA = 0.8
#: ADCG's candidate grid spacing in 3D, in units of sigma. ADCG's own
#: default (sigma) scores ~33 000 candidates per addition for a 19-atom
#: octahedron and took 28 s (41 s with the r_min estimate); 2 sigma found
#: the same atoms in 4 s: candidates are refined to the local maximum
#: of the correlation before they are added, so the grid only needs to land
#: near each atom.
DEFAULT_GRID_PER_SIGMA_3D = 2.0
#: Default ``sweep`` energy weights (around ADCG's default 1e-3).
DEFAULT_ALPHAS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)

ATOM_SUFFIX_HELP = ('format from the suffix: .extxyz/.xyz keep weights, '
                    'species and box; .cif and other ASE formats work too')


class UsageError(Exception):
    """A mistake in the command line or its input files (exit status 2)."""


# --- Small helpers


def _info(args, message):
    if not getattr(args, 'quiet', False):
        print(message, file=sys.stderr)


def _progress(args, **kwargs):
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
        self.bar = _progress(args, desc=desc, unit=' it')

    def __call__(self, iterate):
        self.bar.update(1)
        n_atoms = getattr(iterate, 'n_atoms', None)
        if n_atoms is not None:
            self.bar.set_postfix(atoms=n_atoms, refresh=False)

    def close(self):
        self.bar.close()


def _parse_numbers(tokens, what, allow_range=True):
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


def parse_angles(tokens):
    """Tilt angles given in degrees on the command line -> sorted radians."""
    degrees = _parse_numbers(tokens, '--angles')
    rounded = np.round(np.sort(degrees), 9)
    if np.any(np.diff(rounded) == 0):
        raise UsageError(f'--angles: every angle must be different, got '
                         f'{sorted(degrees)} (degrees)')
    if rounded[-1] - rounded[0] >= 360:
        raise UsageError(f'--angles: the angles span {rounded[-1] - rounded[0]}'
                         f' degrees; a tilt series spans less than 360')
    return np.radians(np.sort(degrees))


def parse_weights(text):
    """``'Au=1,Pt=1.3'`` -> dict; ``'1.5'`` -> float; ``None`` -> None."""
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
            raise UsageError(f'--weights: weights must be positive, got {value}')
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
            raise argparse.ArgumentTypeError(f'{name} must be {need}, got {text!r}')
        return value
    return convert


def _positive(name):
    return _number(name, strictly_positive=True)


def _non_negative(name):
    return _number(name, strictly_positive=False)


def _noise_std(text):
    if text.strip().lower() == 'none':
        return 'none'
    return _non_negative('--noise-std')(text)


def _positive_int(name):
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'{name} must be an integer, got {text!r}') from None
        if value < 1:
            raise argparse.ArgumentTypeError(f'{name} must be >= 1, got {value}')
        return value
    return convert


# --- Files


def _input_file(path, what):
    path = Path(path)
    if not path.exists():
        raise UsageError(f'no {what} file at {str(path)!r}')
    if path.is_dir():
        raise UsageError(f'{str(path)!r} is a directory, not a {what} file')
    return path


def _check_output(path, kind):
    """Check an output path before the work starts (not after an hour)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f'output {str(path)!r} is a directory; give a file name')
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


def _write_text(path, text):
    from odl_atoms.io import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _save_figure(fig, path):
    from odl_atoms.io import atomic_path
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip('.').lower(), dpi=110,
                    bbox_inches='tight')


def _read_projections(path, sigma=None, noise_std=None):
    """Read a projection-data file; apply ``--sigma``/``--noise-std``."""
    import dataclasses

    from odl_atoms.io import PROJECTION_SUFFIXES, read_projections

    path = _input_file(path, 'projection-data')
    if path.suffix.lower() not in PROJECTION_SUFFIXES:
        raise UsageError(
            f'{str(path)!r} is not a projection-data file (those end in '
            f'{", ".join(PROJECTION_SUFFIXES)}); see "odl-atoms simulate" and '
            f'the file-format documentation')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', UserWarning)
        measured = read_projections(path)
    for w in caught:
        print(f'odl-atoms: warning: {w.message}', file=sys.stderr)
    changes = {}
    if sigma is not None:
        changes['sigma'] = sigma
    if noise_std == 'none':
        changes['noise_std'] = None
    elif noise_std is not None:
        changes['noise_std'] = noise_std
    if changes:
        measured = dataclasses.replace(measured, **changes)
    return measured


def _read_atoms_file(path, **kwargs):
    from odl_atoms.io import read_atoms
    path = _input_file(path, 'atom')
    return read_atoms(path, **kwargs)


def _read_reference(path):
    """Ground truth from an atom file or a projection-data file."""
    from odl_atoms.io import PROJECTION_SUFFIXES
    if Path(path).suffix.lower() in PROJECTION_SUFFIXES:
        truth = _read_projections(path).ground_truth()
        if truth is None:
            raise UsageError(f'{str(path)!r} holds no ground truth (no '
                             f"'positions' key); give an atom file instead")
        return truth
    return _read_atoms_file(path)


# --- Metrics and tables

METRIC_COLUMNS = (('atoms', 'n_reconstruction', '{:d}'),
                  ('truth', 'n_reference', '{:d}'),
                  ('matched', 'n_matched', '{:d}'),
                  ('precision', 'precision', '{:.3f}'),
                  ('recall', 'recall', '{:.3f}'),
                  ('F1', 'f1', '{:.3f}'),
                  ('RMSD (Å)', 'rmsd', '{:.3f}'),
                  ('max dist (Å)', 'max_distance', '{:.3f}'))


def _fmt(template, value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    return template.format(value)


def markdown_table(header, rows):
    """Return a Markdown table with right-aligned, padded columns."""
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ['| ' + ' | '.join(c.rjust(w) for c, w in zip(row, widths)) + ' |'
             for row in cells]
    lines.insert(1, '|' + '|'.join('-' * (w + 1) + ':' for w in widths) + '|')
    return '\n'.join(lines)


def csv_table(header, rows):
    import csv
    import io
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def metrics_rows(named_scores):
    """Rows ``[method, atoms, ...]`` from ``{method: (as_dict, seconds)}``."""
    rows = []
    for name, (scores, seconds) in named_scores.items():
        row = [name] + [_fmt(t, scores.get(key)) for _, key, t in METRIC_COLUMNS]
        if seconds is not None:
            row.append(f'{seconds:.1f}')
        rows.append(row)
    return rows


def metrics_header(with_time=True):
    header = ['method'] + [label for label, _, _ in METRIC_COLUMNS]
    return header + ['time (s)'] if with_time else header


# --- Solvers


def _find_solver(name):
    """The class of a ``--solver`` name, or None if this version lacks it."""
    import odl_atoms

    cls = getattr(odl_atoms, SOLVER_NAMES[name], None)
    if cls is None and name in _SOLVER_HOMES:
        try:
            module = importlib.import_module(_SOLVER_HOMES[name])
        except ModuleNotFoundError as exc:
            if exc.name != _SOLVER_HOMES[name]:
                raise
            module = None
        cls = getattr(module, SOLVER_NAMES[name], None)
    return cls


def solver_class(name):
    """Return the `Solver` class of a ``--solver`` name, or raise UsageError."""
    if name not in SOLVER_NAMES:
        raise UsageError(f'unknown solver {name!r}; choose one of '
                         f'{", ".join(SOLVER_NAMES)}')
    cls = _find_solver(name)
    if cls is None:
        if name == 'sirt+learned':
            raise UsageError(
                "solver 'sirt+learned' (SIRT + learned post-processing) is not "
                "available in this version of odl_atoms; use --solver sirt or "
                "adcg")
        raise UsageError(
            f'solver {name!r} (odl_atoms.{SOLVER_NAMES[name]}) is not '
            f'available in this version of odl_atoms; available: '
            f'{", ".join(available_solvers())}')
    return cls


def available_solvers():
    """The ``--solver`` names this version of odl_atoms has."""
    return [name for name in SOLVER_NAMES if _find_solver(name) is not None]


def build_solver(cls, op, options, args):
    """Build ``cls(op, **options)``, keeping the options ``cls`` accepts.

    Options the user set explicitly (``args._explicit``) that the solver does
    not take are reported, not silently dropped.
    """
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD
                    for p in params.values())
    kwargs, ignored = {}, []
    for key, value in options.items():
        if takes_any or key in params:
            kwargs[key] = value
        elif key in getattr(args, '_explicit', ()):
            ignored.append(key)
    if ignored:
        flags = ', '.join('--' + k.replace('_', '-') for k in ignored)
        print(f'odl-atoms: warning: {cls.__name__} does not use {flags}; '
              f'ignored', file=sys.stderr)
    try:
        return cls(op, **kwargs)
    except ImportError as exc:  # an optional dependency (torch) is missing
        raise UsageError(f'{cls.__name__} needs an optional dependency: '
                         f'{exc}') from exc


def _check_data_scale(measured, weights, args):
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
        print(f'odl-atoms: warning: the data integrate to {integral:.4g} per '
              f'projection, i.e. {count:.3g} atoms of weight {w:g}; the model '
              f'expects an atom of weight w to add w to the integral of every '
              f'projection. Scale the data, or give the atom weights in data '
              f'units with --weights', file=sys.stderr)
    return count


def estimate_r_min(op, data, args, noise_std=None, weights=None,
                   grid_spacing=None):
    """Estimate the potential's equilibrium distance from the data alone.

    What ADCG's ``potential='auto'`` does, run here so that a progress bar
    shows the energy-free pass and a sweep estimates once for all alphas:
    reconstruct without energy (ADCG, ``alpha = 0``), then take the
    solvers' own estimate from its atoms
    (``odl_atoms.solvers.common.estimate_r_min``: distances to the nearest
    neighbour farther than ``2 sigma``, upper quartile).

    Returns
    -------
    r_min : float
    first : `Reconstruction`
        The energy-free reconstruction.
    """
    from odl_atoms.solvers import common
    from odl_atoms.solvers.adcg import ADCG

    extra = {} if weights is None else {'weights': weights}
    if grid_spacing is not None:
        extra['grid_spacing'] = grid_spacing
    bar = IterationBar(args, 'r_min (alpha = 0)')
    try:
        first = ADCG(op, alpha=0, noise_std=noise_std, **extra).solve(
            data, callback=bar)
    finally:
        bar.close()
    r_min = common.estimate_r_min(first.measure.positions, op.sigma)
    if r_min is None:
        raise UsageError(
            f'the energy-free reconstruction has {first.n_atoms} atom(s), too '
            f'few to estimate the nearest-neighbour distance; give --r-min')
    return r_min, first


def reconstruct_measurement(measured, args, solver='adcg', alpha=None,
                            r_min=None, weights=None, init=None, desc=None,
                            **solver_options):
    """Run one solver on a `ProjectionData`; return (result, operator).

    ``r_min=None`` with a solver that takes a potential and ``alpha > 0``
    estimates it first (`estimate_r_min`); ``result.info['estimated_r_min']``
    then holds it.
    """
    from odl_atoms.solvers.adcg import DEFAULT_ALPHA

    cls = solver_class(solver)
    op = measured.operator()
    data = measured.element()
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    if solver_options.get('grid_spacing') is None and op.domain.ndim == 3:
        solver_options['grid_spacing'] = DEFAULT_GRID_PER_SIGMA_3D * op.sigma
    estimated = None
    if r_min is None and alpha > 0 and _accepts(cls, 'potential'):
        estimated, _ = estimate_r_min(
            op, data, args, measured.noise_std, weights,
            grid_spacing=solver_options.get('grid_spacing'))
        _info(args, f'estimated r_min {estimated:.3f} Å (nearest-neighbour '
                    f'distance of an energy-free reconstruction)')
        r_min = estimated
    options = {
        'alpha': alpha,
        'potential': 'auto' if r_min is None else r_min,
        'noise_std': measured.noise_std,
        'seed': getattr(args, 'seed', None),
    }
    if weights is not None:
        options['weights'] = weights
    options.update({k: v for k, v in solver_options.items() if v is not None})
    instance = build_solver(cls, op, options, args)
    bar = IterationBar(args, desc or cls.__name__)
    try:
        result = instance.solve(data, initial=init, callback=bar)
    finally:
        bar.close()
    if estimated is not None:
        result.info['estimated_r_min'] = estimated
    return result, op


def _accepts(cls, name):
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                 for p in params.values())


# --- Figures


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def comparison_figure(results, truth, data, op, fit_label=None):
    """`odl_atoms.plot.plot_comparison` with the non-interactive backend."""
    from odl_atoms.plot import plot_comparison

    _pyplot()
    return plot_comparison(results, truth, data, op, fit_label=fit_label)


def reconstruction_figure(result, truth, data, op, name):
    """Figure of one reconstruction (2D: atoms + fit; 3D: atoms + images)."""
    from odl_atoms.plot import plot_projection_images

    fig = comparison_figure({name: result}, truth, data, op)
    if op.domain.ndim == 3:
        return [fig, plot_projection_images(data, op(result.measure))]
    return [fig]


# --- Subcommands


def _phantom_from_args(args):
    """Build the phantom ``--phantom`` names (with its parameters)."""
    from odl_atoms import phantoms

    name = args.phantom
    if name in phantoms.PHANTOM_NAMES_2D:
        if args.size is not None or args.symbol is not None:
            raise UsageError(f'--size and --symbol are for the 3D phantoms; '
                             f'{name!r} is 2D (use --shape NX NY)')
        kwargs = {'lattice': args.lattice}
        if args.shape is not None:
            kwargs['shape'] = tuple(args.shape)
        if args.spacing is not None:
            kwargs['spacing'] = args.spacing
        return phantoms.defect_phantom(name, seed=args.seed, **kwargs)
    if args.shape is not None:
        raise UsageError(f'--shape is for the 2D phantoms; {name!r} is 3D '
                         f'(use --size)')
    kwargs = {}
    if args.symbol is not None:
        kwargs['symbol'] = args.symbol
    if args.spacing is not None:
        kwargs['lattice_constant'] = args.spacing * math.sqrt(2)
    if name in phantoms.NANOPARTICLE_SHAPES:
        return phantoms.nanoparticle(name, size=args.size, seed=args.seed,
                                     **kwargs)
    if name == 'slab':
        if args.size is not None:
            kwargs['size'] = (args.size, args.size)
        return phantoms.fcc_slab(seed=args.seed, **kwargs)
    valid = ', '.join(PHANTOM_CHOICES)
    raise UsageError(f'unknown phantom {name!r}; choose one of {valid}')


def _phantom_choices():
    from odl_atoms import phantoms
    return (tuple(phantoms.PHANTOM_NAMES_2D)
            + tuple(phantoms.NANOPARTICLE_SHAPES) + ('slab',))


PHANTOM_CHOICES = None  # filled by build_parser (needs the package)


def cmd_simulate(args):
    from odl_atoms.io import write_projections
    from odl_atoms.simulation import simulate

    out = _check_output(args.output, 'projections')
    angles = parse_angles(args.angles)
    weights = parse_weights(args.weights)
    if args.atoms is not None:
        if args.phantom is not None:
            raise UsageError('give either --phantom or --atoms, not both')
        if args.relax:
            raise UsageError('--relax applies to the built-in --phantom '
                             'phantoms (an --atoms file marks no defect)')
        truth = _read_atoms_file(args.atoms, weights=weights, ndim=args.ndim)
        source = str(args.atoms)
    else:
        if weights is not None or args.ndim is not None:
            raise UsageError('--weights and --ndim apply to --atoms files')
        args.phantom = args.phantom or 'vacancy'
        phantom = _phantom_from_args(args)
        if args.relax:
            from odl_atoms.relax import relax_defect
            try:
                phantom = relax_defect(phantom)
            except ValueError as exc:
                raise UsageError(f'--relax: {exc}') from exc
        truth = phantom.measure
        source = repr(phantom)
    if truth.n_atoms == 0:
        raise UsageError(f'{source} has no atoms')
    sigma = args.sigma or DEFAULT_SIGMA
    kwargs = ({'n_detector': args.detector} if args.detector else
              {'detector_cell': args.detector_cell
               or DEFAULT_CELL_PER_SIGMA * sigma})
    _info(args, f'simulating {source}: {truth.n_atoms} atoms in '
                f'{truth.ndim}D, {angles.size} angles '
                f'({", ".join(f"{a:g}" for a in np.degrees(angles))} degrees), '
                f'sigma {sigma:g} Å, noise {args.noise:g}'
                + (f', dose {args.dose:g}' if args.dose else ''))
    measured = simulate(truth, angles, sigma, noise=args.noise, dose=args.dose,
                        seed=args.seed, **kwargs)
    write_projections(out, measured)
    shape = 'x'.join(map(str, measured.data.shape))
    print(f'wrote {out} (data {shape}, noise_std '
          f'{_fmt("{:.4g}", measured.noise_std)}, ground truth '
          f'{truth.n_atoms} atoms)')
    return 0


def cmd_reconstruct(args):
    from odl_atoms.io import write_atoms
    from odl_atoms.metrics import match_atoms

    measured = _read_projections(args.data, args.sigma, args.noise_std)
    out = _check_output(args.output, 'atoms')
    if args.figure:
        _check_output(args.figure, 'figure')
    if args.json:
        _check_output(args.json, 'json')
    weights = parse_weights(args.weights)
    cls = solver_class(args.solver)
    _check_data_scale(measured, weights, args)
    init = None
    if args.init is not None:
        space = measured.measure_space()
        init = _read_atoms_file(args.init, space=space,
                                weights=weights if isinstance(weights, Mapping)
                                else None)
    _info(args, f'reconstructing from {args.data}: {measured.n_angles} '
                f'angles, {measured.ndim}D, sigma {measured.sigma:g} Å, '
                f'noise_std {_fmt("{:.4g}", measured.noise_std)}; '
                f'{cls.__name__}')
    starts = None
    if args.lattice is not None:
        if args.solver != 'adcg':
            raise UsageError('--lattice applies to --solver adcg only')
        from odl_atoms.solvers.starts import CUBIC, lattice_starts
        lattice_ndim = 3 if args.lattice in CUBIC else 2
        if lattice_ndim != measured.ndim:
            raise UsageError(
                f'--lattice {args.lattice} is a {lattice_ndim}D lattice but '
                f'the data are {measured.ndim}D; use '
                + ('fcc, bcc or sc' if measured.ndim == 3
                   else 'square or hexagonal'))
        starts = lattice_starts(args.lattice)
    result, op = reconstruct_measurement(
        measured, args, solver=args.solver, alpha=args.alpha,
        r_min=args.r_min, weights=weights, init=init,
        grid_spacing=args.grid_spacing, starts=starts)
    write_atoms(out, result.measure)
    r_est = result.info.get('estimated_r_min')
    print(f'{cls.__name__}: {result.n_atoms} atoms in {result.time:.1f} s, '
          f'{result.n_iterations} iterations, data misfit '
          f'{result.data_misfit:.4g}'
          + (f', estimated r_min {r_est:.3f} Å' if r_est else ''))
    lowered = result.info.get('lowered_alpha')
    if lowered:
        print(f'alpha lowered from {lowered[0]["alpha"]:.3g} to '
              f'{result.info["alpha"]:.3g} by the discrepancy principle '
              f'(the answer at {lowered[0]["alpha"]:.3g} fit the data worse '
              f'than the noise explains: misfit '
              f'{lowered[0]["data_misfit"]:.3g} > {lowered[0]["bound"]:.3g} '
              f'E_atom)')
    certificate = result.info.get('certificate')
    if certificate is not None:
        print('certificate:\n  ' + str(certificate).replace('\n', '\n  '))
    print(f'wrote {out}')
    truth = measured.ground_truth()
    report = {'solver': cls.__name__, 'data': str(args.data),
              'alpha': args.alpha, 'alpha_used': result.info.get('alpha'),
              'r_min': args.r_min or r_est,
              'n_atoms': result.n_atoms,
              'time': result.time, 'n_iterations': result.n_iterations,
              'data_misfit': result.data_misfit, 'energy': result.energy}
    if truth is not None:
        match = match_atoms(truth, result.measure)
        scores = match.as_dict()
        report['metrics'] = scores
        print('\nagainst the ground truth stored in the data file:')
        print(markdown_table(metrics_header(),
                             metrics_rows({args.solver: (scores,
                                                         result.time)})))
    if args.json:
        _write_text(args.json, json.dumps(_jsonable(report), indent=2) + '\n')
        print(f'wrote {args.json}')
    if args.figure:
        figs = reconstruction_figure(result, truth, measured.element(), op,
                                     args.solver)
        _save_figure(figs[0], args.figure)
        print(f'wrote {args.figure}')
        if len(figs) > 1:
            path = Path(args.figure)
            extra = path.with_name(path.stem + '-projections' + path.suffix)
            _save_figure(figs[1], extra)
            print(f'wrote {extra}')
    return 0


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def cmd_evaluate(args):
    from odl_atoms.metrics import match_atoms

    truth = _read_reference(args.truth)
    try:
        recon = _read_atoms_file(args.reconstruction, ndim=truth.ndim)
    except ValueError as exc:
        raise UsageError(f'{args.reconstruction}: {exc} (the ground truth is '
                         f'{truth.ndim}D)') from exc
    if args.json:
        if args.json != '-':
            _check_output(args.json, 'json')
    match = match_atoms(truth, recon, tolerance=args.tolerance)
    scores = match.as_dict()
    if args.json == '-':
        print(json.dumps(scores, indent=2))
        return 0
    print(markdown_table(metrics_header(with_time=False),
                         metrics_rows({Path(args.reconstruction).name:
                                       (scores, None)})))
    extra = [f'matching tolerance {scores["tolerance"]:.3f} Å',
             f'count error {scores["count_error"]:+d}']
    if scores['species_accuracy'] is not None:
        extra.append(f'species accuracy {scores["species_accuracy"]:.3f}')
    print(', '.join(extra))
    if args.json:
        _write_text(args.json, json.dumps(scores, indent=2) + '\n')
        print(f'wrote {args.json}')
    return 0


# Options of ``sweep`` that only one of its two modes uses.
_GRID_ONLY = ('phantoms', 'angles', 'noise', 'seeds', 'solvers', 'detector',
              'shape', 'size', 'scheduler', 'workers', 'cache')
_ALPHA_ONLY = ('figure', 'weights', 'noise_std')


def cmd_sweep(args):
    explicit = getattr(args, '_explicit', set())
    if args.grid:
        misplaced = [n for n in _ALPHA_ONLY if n in explicit]
        if misplaced:
            raise UsageError(
                f'{", ".join("--" + n.replace("_", "-") for n in misplaced)}: '
                f'not used by sweep --grid (which simulates its own data); '
                f'the table goes to --table or -o')
        if args.data is not None:
            raise UsageError(f'sweep --grid simulates its data from '
                             f'--phantoms; it reads no data file (got '
                             f'{args.data!r})')
        return sweep_grid(args)
    misplaced = [n for n in _GRID_ONLY if n in explicit]
    if misplaced:
        raise UsageError(
            f'{", ".join("--" + n for n in misplaced)}: these options '
            f'describe a grid; add --grid')
    if args.data is None:
        raise UsageError('sweep needs a projection-data file (the alpha '
                         'sweep), or --grid (a grid of simulated '
                         'reconstructions)')
    from odl_atoms.io import write_atoms
    from odl_atoms.metrics import match_atoms
    from odl_atoms.parameter_choice import alpha_sweep
    from odl_atoms.plot import plot_alpha_sweep

    measured = _read_projections(args.data, args.sigma, args.noise_std)
    alphas = _parse_numbers(args.alphas or [str(a) for a in DEFAULT_ALPHAS],
                            '--alphas', allow_range=False)
    if any(a < 0 for a in alphas):
        raise UsageError(f'--alphas: energy weights must be >= 0, got {alphas}')
    alphas = sorted(set(alphas))
    for path, kind in ((args.figure, 'figure'), (args.table, 'table'),
                       (args.output, 'atoms')):
        if path:
            _check_output(path, kind)
    weights = parse_weights(args.weights)
    _check_data_scale(measured, weights, args)
    op = measured.operator()
    data = measured.element()
    extra = {} if weights is None else {'weights': weights}
    r_min = args.r_min
    if r_min is None and any(a > 0 for a in alphas):
        r_min, _ = estimate_r_min(op, data, args, measured.noise_std, weights)
        _info(args, f'estimated r_min {r_min:.3f} Å (nearest-neighbour '
                    f'distance of the energy-free reconstruction)')
    bar = _progress(args, total=len(alphas), desc='alpha sweep', unit=' alpha')
    try:
        def step(alpha, result):
            bar.set_postfix(alpha=f'{alpha:g}', atoms=result.n_atoms,
                            refresh=False)
            bar.update(1)
        sweep = alpha_sweep(op, data, alphas, noise_std=measured.noise_std,
                            callback=step,
                            potential=r_min if r_min is not None else 'auto',
                            **extra)
    finally:
        bar.close()
    chosen = sweep.discrepancy_choice()
    truth = measured.ground_truth()
    header = ['alpha', 'chosen', 'discrepancy', 'energy V/eps', 'atoms']
    if truth is not None:
        header += ['F1', 'RMSD (Å)']
    rows = []
    for (alpha, disc, energy, n), result in zip(sweep.as_table(),
                                                sweep.results):
        row = [f'{alpha:g}', '*' if np.isclose(alpha, chosen) else '',
               f'{disc:.4g}', _fmt('{:.4g}', energy), n]
        if truth is not None:
            m = match_atoms(truth, result.measure)
            row += [f'{m.f1:.3f}', _fmt('{:.3f}', m.rmsd)]
        rows.append(row)
    print(markdown_table(header, rows))
    if sweep.noise_norm:
        print(f'\nnoise norm delta = {sweep.noise_norm:.4g}; chosen alpha = '
              f'{chosen:g} (*): the largest alpha whose discrepancy is at most '
              f'1.1 delta (discrepancy principle)')
    else:
        print(f'\nnoise level unknown (no noise_std in the file; give '
              f'--noise-std): the discrepancy principle cannot be applied; '
              f'alpha = {chosen:g} (*) is the default')
    if args.table:
        text = (csv_table(header, rows) if Path(args.table).suffix.lower()
                == '.csv' else markdown_table(header, rows) + '\n')
        _write_text(args.table, text)
        print(f'wrote {args.table}')
    if args.figure:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        plot_alpha_sweep(sweep, ax=ax, chosen=chosen)
        ax.set_title(f'energy weight sweep ({Path(args.data).name})')
        fig.tight_layout()
        _save_figure(fig, args.figure)
        print(f'wrote {args.figure}')
    if args.output:
        write_atoms(args.output, sweep.result(chosen).measure)
        print(f'wrote {args.output} (alpha = {chosen:g})')
    return 0


def sweep_grid(args):
    """``odl-atoms sweep --grid``: `odl_atoms.sweep.run_sweep` on a grid."""
    from odl_atoms.sweep import run_sweep, sweep_tasks

    output = args.output or args.table
    if args.output and args.table and args.output != args.table:
        raise UsageError('give the grid\'s table once: --table or -o')
    if output:
        _check_output(output, 'table')
    choices = _phantom_choices()
    for name in args.phantoms:
        if Path(name).suffix:
            _input_file(name, 'atom')
        elif name not in choices:
            raise UsageError(f'--phantoms: unknown phantom {name!r}; choose '
                             f'from {", ".join(choices)}, or give atom files')
    angle_sets = [tuple(float(a) for a in np.round(np.degrees(
        parse_angles(tokens)), 9)) for tokens in args.angles or [['0', '45',
                                                                 '90']]]
    alphas = [None]
    if args.alphas:
        alphas = sorted(set(_parse_numbers(args.alphas, '--alphas',
                                           allow_range=False)))
        if any(a < 0 for a in alphas):
            raise UsageError(f'--alphas: energy weights must be >= 0, got '
                             f'{alphas}')
    for name in args.solvers:
        solver_class(name)
    if args.cache:
        cache = Path(args.cache)
        if cache.exists() and not cache.is_dir():
            raise UsageError(f'--cache: {args.cache!r} is a file; give a '
                             f'folder')
        if not cache.parent.is_dir():
            raise UsageError(f'--cache: the folder {str(cache.parent)!r} '
                             f'does not exist')
    options = {} if args.r_min is None else {'potential': args.r_min}
    tasks = sweep_tasks(
        phantom=args.phantoms, angles_deg=angle_sets,
        sigma=args.sigma or DEFAULT_SIGMA, n_detector=args.detector or
        DEMO_DETECTOR, noise=args.noise, seed=args.seeds,
        solver=args.solvers, alpha=alphas,
        shape=None if args.shape is None else tuple(args.shape),
        size=args.size, solver_options=options)
    where = {None: f'a local Dask cluster ({args.workers} workers)',
             'synchronous': 'this process'}.get(args.scheduler,
                                                args.scheduler)
    _info(args, f'sweep: {len(tasks)} reconstructions on {where}'
                + (f', cache {args.cache}' if args.cache else ''))
    result = run_sweep(tasks, scheduler=args.scheduler, n_workers=args.workers,
                       cache_dir=args.cache,
                       progress=not getattr(args, 'quiet', False))
    print(result.as_markdown())
    print(f'\n{result.summary()}')
    if output:
        if Path(output).suffix.lower() == '.csv':
            result.to_csv(output)
        else:
            _write_text(output, result.as_markdown() + '\n')
        print(f'wrote {output}')
    if result.failed:
        print(f'odl-atoms: {len(result.failed)} of {len(result.rows)} '
              f'reconstructions failed; their errors are in the table\'s '
              f'status column', file=sys.stderr)
        return 1
    return 0


def cmd_demo(args):
    import odl_atoms
    from odl_atoms.io import write_atoms, write_projections
    from odl_atoms.metrics import match_atoms
    from odl_atoms.phantoms import defect_phantom
    from odl_atoms.simulation import simulate

    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f'{str(outdir)!r} exists and is not a folder')
    if not outdir.parent.is_dir():
        raise UsageError(f'cannot create {str(outdir)!r}: the folder '
                         f'{str(outdir.parent)!r} does not exist')
    outdir.mkdir(exist_ok=True)
    start = time.perf_counter()
    kwargs = {} if args.shape is None else {'shape': tuple(args.shape)}
    phantom = defect_phantom('vacancy', **kwargs)
    angles = np.radians(DEMO_ANGLES_DEG)
    measured = simulate(phantom.measure, angles, DEMO_SIGMA,
                        n_detector=args.detector or DEMO_DETECTOR,
                        noise=DEMO_NOISE, seed=DEMO_SEED)
    _info(args, f'odl-atoms demo: {phantom.n_atoms} gold columns (square '
                f'lattice, spacing {phantom.lattice_spacing} Å, one vacancy) '
                f'projected at {", ".join(f"{a:g}" for a in DEMO_ANGLES_DEG)} '
                f'degrees with {DEMO_NOISE:.0%} noise')
    files = []
    path = outdir / 'projections.npz'
    write_projections(path, measured)
    files.append(path)
    path = outdir / 'truth.extxyz'
    write_atoms(path, phantom.measure)
    files.append(path)

    results, scores, notes = {}, {}, []
    runs = [('ADCG + energy', 'adcg', {'r_min': phantom.lattice_spacing})]
    if hasattr(odl_atoms, 'SIRT'):
        runs.append(('SIRT + picking', 'sirt', {}))
    else:
        notes.append('SIRT + picking skipped: odl_atoms.SIRT is not available '
                     'in this version')
    for label, solver, options in runs:
        result, op = reconstruct_measurement(measured, args, solver=solver,
                                             desc=label, **options)
        results[label] = result
        scores[label] = (match_atoms(phantom.measure, result.measure).as_dict(),
                         result.time)
        path = outdir / f'{solver}.extxyz'
        write_atoms(path, result.measure)
        files.append(path)
    for note in notes:
        _info(args, note)

    table = markdown_table(metrics_header(), metrics_rows(scores))
    print()
    print(table)
    path = outdir / 'metrics.md'
    _write_text(path, table + '\n')
    files.append(path)
    path = outdir / 'metrics.json'
    _write_text(path, json.dumps({k: dict(v[0], time=v[1])
                                  for k, v in scores.items()}, indent=2) + '\n')
    files.append(path)
    fig = comparison_figure(results, phantom.measure, measured.element(), op,
                            fit_label='ADCG + energy')
    path = outdir / 'comparison.png'
    _save_figure(fig, path)
    files.append(path)
    print(f'\nwrote {", ".join(str(f) for f in files)} '
          f'({time.perf_counter() - start:.0f} s)')
    return 0


# --- Parser


class _Formatter(argparse.RawDescriptionHelpFormatter):

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


class _Parser(argparse.ArgumentParser):
    """Argparse with the toolkit's exit status for usage errors (2)."""


def _common(parser, top=False):
    default = False if top else argparse.SUPPRESS
    parser.add_argument('-q', '--quiet', action='store_true', default=default,
                        help='no progress bars or informational messages')
    parser.add_argument('--debug', action='store_true', default=default,
                        help='show the Python traceback of errors')


def build_parser():
    """Return the `argparse.ArgumentParser` of ``odl-atoms``."""
    global PHANTOM_CHOICES
    from odl_atoms import __version__
    from odl_atoms.solvers.adcg import DEFAULT_ALPHA

    PHANTOM_CHOICES = _phantom_choices()
    parser = _Parser(
        prog='odl-atoms', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Grid-free atomic electron tomography: atom positions '
                    'from a few projections.',
        epilog='Angles are in degrees on the command line, lengths in '
               'angstrom.\nStart with "odl-atoms demo"; "odl-atoms COMMAND -h" '
               'explains a command.')
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    _common(parser, top=True)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')

    # demo
    p = sub.add_parser(
        'demo', formatter_class=_Formatter,
        help='the main job on the built-in example (no input needed)',
        description='Simulate a 7 x 7 gold lattice with one vacancy, project '
                    'it at 0, 45 and 90 degrees with 1 %% noise, reconstruct '
                    'it with ADCG + Lennard-Jones energy (and SIRT + atom '
                    'picking when available), print the metrics and save the '
                    'comparison figure, the atoms and the data.')
    p.add_argument('-o', '--output', default='odl_atoms_demo', metavar='DIR',
                   help='output folder (created if missing)')
    p.add_argument('--shape', type=_positive_int('--shape'), nargs=2,
                   default=None, help=argparse.SUPPRESS)
    p.add_argument('--detector', type=_positive_int('--detector'),
                   default=None, help=argparse.SUPPRESS)
    _common(p)
    p.set_defaults(func=cmd_demo)

    # simulate
    p = sub.add_parser(
        'simulate', formatter_class=_Formatter,
        help='phantom or atom file -> simulated projection-data file',
        description='Project a phantom (or the atoms of a file) at the given '
                    'tilt angles with the exact Gaussian-atom model, add '
                    'noise, and write a projection-data file (.npz or .h5) '
                    'that also holds the ground truth.',
        epilog='examples:\n'
               '  odl-atoms simulate -o tilts.npz\n'
               '  odl-atoms simulate --phantom grain_boundary --lattice '
               'hexagonal --angles 0 60 120 -o gb.h5\n'
               '  odl-atoms simulate --phantom octahedron --size 3 '
               '--angles=-60:60:5 -o octa.npz\n'
               '  odl-atoms simulate --atoms cluster.xyz --weights Au=1,Pt=1.3 '
               '-o cluster.npz')
    p.add_argument('-o', '--output', required=True, metavar='DATA',
                   help='projection-data file to write (.npz, .h5 or .hdf5)')
    src = p.add_argument_group('what to project')
    src.add_argument('--phantom', metavar='NAME', default=None,
                     help=f'built-in phantom: 2D {", ".join(PHANTOM_CHOICES[:7])};'
                          f' 3D {", ".join(PHANTOM_CHOICES[7:])} '
                          f'(default: vacancy)')
    src.add_argument('--atoms', metavar='FILE', default=None,
                     help='project the atoms of this file instead (any format '
                          'ASE reads)')
    src.add_argument('--lattice', choices=('square', 'hexagonal'),
                     default='square', help='2D lattice')
    src.add_argument('--shape', type=_positive_int('--shape'), nargs=2,
                     metavar=('NX', 'NY'), default=None,
                     help='2D lattice size in atoms (default 7 7)')
    src.add_argument('--size', type=_positive_int('--size'), default=None,
                     help='3D particle size (atoms along an edge; shells of an '
                          'icosahedron; slab width)')
    src.add_argument('--spacing', type=_positive('--spacing'), default=None,
                     help='nearest-neighbour distance in Å (default 2.885, '
                          'gold)')
    src.add_argument('--symbol', default=None,
                     help='chemical element of the 3D phantoms (default Au)')
    src.add_argument('--relax', action='store_true',
                     help='relax the atoms within 1.2 lattice spacings of the '
                          'defect under a Lennard-Jones potential whose '
                          'minimum is the lattice spacing (what a crystal '
                          'does; see odl_atoms.relax_defect)')
    src.add_argument('--weights', default=None, metavar='SPECIES=W,...',
                     help='atom weights of an --atoms file by species, e.g. '
                          'Au=1,Pt=1.3 (default: the file\'s, else 1)')
    src.add_argument('--ndim', type=int, choices=(2, 3), default=None,
                     help='read an --atoms file as 2D (flat, z constant) or 3D')
    meas = p.add_argument_group('the measurement')
    meas.add_argument('--angles', nargs='+', default=['0', '45', '90'],
                      metavar='DEG',
                      help='tilt angles in DEGREES: numbers (0 45 90 or '
                           '0,45,90) or START:STOP:COUNT (write '
                           '--angles=-60:60:5 for a negative start)')
    meas.add_argument('--noise', type=_non_negative('--noise'), default=0.01,
                      help='relative Gaussian noise (0.01 = 1 %%)')
    meas.add_argument('--dose', type=_positive('--dose'), default=None,
                      help='Poisson noise: electrons per atom per projection')
    meas.add_argument('--sigma', type=_positive('--sigma'), default=None,
                      help=f'Gaussian std of an atom in Å (default '
                           f'{DEFAULT_SIGMA})')
    det = meas.add_mutually_exclusive_group()
    det.add_argument('--detector', type=_positive_int('--detector'),
                     default=None, metavar='N',
                     help='number of detector cells (per axis)')
    det.add_argument('--detector-cell', type=_positive('--detector-cell'),
                     default=None, metavar='Å',
                     help=f'detector cell size in Å (default '
                          f'{DEFAULT_CELL_PER_SIGMA} sigma)')
    meas.add_argument('--seed', type=int, default=0,
                      help='seed of the noise (and of random phantoms)')
    _common(p)
    p.set_defaults(func=cmd_simulate)

    # reconstruct
    p = sub.add_parser(
        'reconstruct', formatter_class=_Formatter,
        help='projection-data file -> atom file',
        description='Reconstruct the atoms from a projection-data file and '
                    'write them to an atom file. If the file holds a ground '
                    'truth, the metrics against it are printed too.',
        epilog='The defaults also suit data not simulated with odl-atoms: '
               'without noise_std in the file ADCG stops when an atom no '
               'longer explains half of its own data; without a ground '
               'truth no metrics are printed. The data must be scaled so '
               'that an atom of weight w adds w to the integral of every '
               'projection (give --weights in data units otherwise); a '
               'warning says when the scale looks wrong.')
    p.add_argument('data', metavar='DATA',
                   help='projection-data file (.npz, .h5, .hdf5)')
    p.add_argument('-o', '--output', required=True, metavar='ATOMS',
                   help=f'atom file to write ({ATOM_SUFFIX_HELP})')
    p.add_argument('--figure', metavar='PATH', default=None,
                   help='also save a figure (.png, .pdf, .svg)')
    p.add_argument('--json', metavar='PATH', default=None,
                   help='also write a JSON summary (and metrics)')
    p.add_argument('--solver', default='adcg', choices=list(SOLVER_NAMES),
                   help='reconstruction method; sa = simulated annealing, '
                        'sirt = SIRT + atom picking')
    p.add_argument('--alpha', type=_non_negative('--alpha'), default=None,
                   help=f'dimensionless energy weight (default '
                        f'{DEFAULT_ALPHA:g}, ADCG\'s DEFAULT_ALPHA); 0: data '
                        f'only')
    p.add_argument('--r-min', type=_positive('--r-min'), default=None,
                   metavar='Å',
                   help='equilibrium distance of the Lennard-Jones potential '
                        '(the nearest-neighbour distance); default: estimated '
                        'from an energy-free reconstruction, as ADCG\'s '
                        '"auto" does')
    p.add_argument('--weights', default=None, metavar='SPECIES=W,...',
                   help='allowed atom weights: one number, or by species like '
                        'Au=1,Pt=1.3 (default 1)')
    p.add_argument('--sigma', type=_positive('--sigma'), default=None,
                   metavar='Å', help='atom std, overriding the file\'s')
    p.add_argument('--noise-std', type=_noise_std, default=None,
                   help='noise std per data value, overriding the file\'s '
                        '(default: the file\'s; 0 for noise-free data). '
                        'With it and --lattice, ADCG lowers alpha when its '
                        'answer fits the data worse than the noise explains '
                        '(discrepancy principle); "none" ignores it')
    p.add_argument('--init', metavar='ATOMS', default=None,
                   help='start from the atoms of this file')
    p.add_argument('--grid-spacing', type=_positive('--grid-spacing'),
                   default=None, metavar='Å',
                   help='candidate grid spacing of ADCG (and annealing); '
                        'default: sigma in 2D (ADCG\'s), 2 sigma in 3D, '
                        'which is ~8x faster and found the same atoms')
    p.add_argument('--lattice', default=None,
                   choices=('square', 'hexagonal', 'fcc', 'bcc', 'sc'),
                   help='ADCG also starts from the best-fitting lattice of '
                        'this kind (one, one per half box, and in 2D two '
                        'meeting at a searched cut), spacing r_min; the '
                        'lowest objective wins. 2D: square, '
                        'hexagonal (orientation searched); 3D: fcc, bcc, sc '
                        'with cubic axes along x, y, z. Use it for crystals, '
                        'above all when the angles are not zone axes')
    p.add_argument('--seed', type=int, default=None,
                   help='seed of randomised solvers (annealing)')
    _common(p)
    p.set_defaults(func=cmd_reconstruct)

    # evaluate
    p = sub.add_parser(
        'evaluate', formatter_class=_Formatter,
        help='compare reconstructed atoms with the ground truth',
        description='Match reconstructed atoms to the ground truth (optimal '
                    'assignment within a tolerance) and print precision, '
                    'recall, F1 and RMSD.')
    p.add_argument('reconstruction', metavar='RECON', help='atom file')
    p.add_argument('truth', metavar='TRUTH',
                   help='atom file, or projection-data file with a ground '
                        'truth')
    p.add_argument('--tolerance', type=_non_negative('--tolerance'),
                   default=None, metavar='Å',
                   help='largest distance of a matched pair (default 0.3 '
                        'nearest-neighbour distances of the truth)')
    p.add_argument('--json', nargs='?', const='-', default=None,
                   metavar='PATH',
                   help='print the metrics as JSON (or write them to PATH)')
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    # sweep
    p = sub.add_parser(
        'sweep', formatter_class=_Formatter,
        help='reconstruct for several alphas, or a grid of simulations',
        description='Reconstruct the data of DATA with ADCG for each alpha; '
                    'print the data discrepancy and the energy of each (and '
                    'F1/RMSD if the file holds a ground truth), and choose '
                    'alpha by the discrepancy principle when the noise level '
                    'is known.\n\n'
                    'With --grid (and no DATA): simulate and reconstruct '
                    'every combination of phantoms, angle sets, noise '
                    'levels, seeds, solvers and alphas on Dask (a local '
                    'cluster, or --scheduler), and print one table of F1, '
                    'RMSD and times. Failed reconstructions are listed in '
                    'the table (exit status 1); with --cache, finished ones '
                    'are kept and a re-run does only the rest.',
        epilog='examples:\n'
               '  odl-atoms sweep tilts.npz --alphas 0 1e-4 1e-3 1e-2 '
               '--figure sweep.png\n'
               '  odl-atoms sweep --grid --phantoms vacancy interstitial '
               '--angles 0 60 120 \\\n'
               '      --noise 0 0.01 --seeds 0 1 --solvers adcg sirt '
               '--alphas 0 1e-3 \\\n'
               '      --cache runs/ --table grid.md\n'
               '  odl-atoms sweep --grid --angles 0 90 --angles 0 45 90 '
               '--scheduler tcp://host:8786')
    p.add_argument('data', metavar='DATA', nargs='?', default=None,
                   help='projection-data file (alpha sweep; not with --grid)')
    p.add_argument('--alphas', nargs='+', default=None, metavar='A',
                   help=f'energy weights (default '
                        f'{" ".join(f"{a:g}" for a in DEFAULT_ALPHAS)}; with '
                        f'--grid: the solver\'s default)')
    p.add_argument('--figure', metavar='PATH', default=None,
                   help='save the energy/discrepancy plot')
    p.add_argument('--table', metavar='PATH', default=None,
                   help='save the table (.md Markdown or .csv)')
    p.add_argument('-o', '--output', metavar='PATH', default=None,
                   help='write the atoms of the chosen alpha (with --grid: '
                        'the table, as --table)')
    p.add_argument('--r-min', type=_positive('--r-min'), default=None,
                   metavar='Å',
                   help='Lennard-Jones equilibrium distance (default: '
                        'estimated once from an energy-free reconstruction; '
                        'with --grid: the phantom\'s lattice spacing)')
    p.add_argument('--weights', default=None, metavar='SPECIES=W,...',
                   help='allowed atom weights (as for reconstruct)')
    p.add_argument('--sigma', type=_positive('--sigma'), default=None,
                   metavar='Å', help='atom std, overriding the file\'s '
                                     f'(with --grid: default {DEFAULT_SIGMA})')
    p.add_argument('--noise-std', type=_noise_std, default=None,
                   help='noise std per data value, overriding the file\'s')
    grid = p.add_argument_group(
        'grid of simulated reconstructions (--grid; each option takes one or '
        'more values, the grid is every combination)')
    grid.add_argument('--grid', action='store_true',
                      help='run a grid of simulated reconstructions on Dask '
                           'instead of sweeping alpha on DATA')
    grid.add_argument('--phantoms', nargs='+', default=['vacancy'],
                      metavar='NAME',
                      help='built-in phantoms (as for simulate --phantom) or '
                           'atom files')
    grid.add_argument('--angles', nargs='+', action='append', default=None,
                      metavar='DEG',
                      help='one angle set in DEGREES (as for simulate); '
                           'repeat --angles for several sets (default 0 45 '
                           '90)')
    grid.add_argument('--noise', nargs='+', type=_non_negative('--noise'),
                      default=[0.01], help='relative noise levels')
    grid.add_argument('--seeds', nargs='+', type=int, default=[0],
                      help='noise (and random phantom) seeds')
    grid.add_argument('--solvers', nargs='+', choices=list(SOLVER_NAMES),
                      default=['adcg'], metavar='SOLVER',
                      help=f'reconstruction methods: '
                           f'{", ".join(SOLVER_NAMES)}')
    grid.add_argument('--detector', type=_positive_int('--detector'),
                      default=None, metavar='N',
                      help=f'detector cells (default {DEMO_DETECTOR})')
    grid.add_argument('--shape', type=_positive_int('--shape'), nargs=2,
                      metavar=('NX', 'NY'), default=None,
                      help='2D lattice size in atoms (default 7 7)')
    grid.add_argument('--size', type=_positive_int('--size'), default=None,
                      help='3D particle size')
    grid.add_argument('--scheduler', metavar='ADDRESS', default=None,
                      help='Dask scheduler to use, e.g. tcp://host:8786 (its '
                           'workers need odl_atoms); "synchronous" runs here '
                           'without Dask (default: a local cluster)')
    grid.add_argument('--workers', type=_positive_int('--workers'), default=2,
                      help='worker processes of the local cluster')
    grid.add_argument('--cache', metavar='DIR', default=None,
                      help='folder of finished reconstructions (one JSON '
                           'file each); a re-run reuses them')
    _common(p)
    p.set_defaults(func=cmd_sweep)
    return parser


def _explicit_options(argv):
    """Destinations of the options written on the command line."""
    names = set()
    for token in argv:
        if token.startswith('--'):
            names.add(token[2:].split('=', 1)[0].replace('-', '_'))
    if 'r_min' in names:
        names.add('potential')
    return names


def main(argv=None):
    """Run ``odl-atoms`` with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 for bad input, 1 for an unexpected error, 130 when
        interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = '--debug' in argv
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse: usage errors, --help, --version
            return int(exc.code or 0)
        if args.command is None:
            parser.print_help()
            return 2
        args._explicit = _explicit_options(argv)
        return args.func(args) or 0
    except KeyboardInterrupt:
        print('\nodl-atoms: interrupted; no partial output was written',
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``odl-atoms ... | head``):
        # not an error; silence the final flush of the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except ImportError as exc:
        root = (exc.name or '').split('.')[0]
        if debug or root not in _OPTIONAL:
            if debug:
                raise
            print(f'odl-atoms: internal error: ImportError: {exc}\n(run again '
                  f'with --debug for the traceback, and please report it)',
                  file=sys.stderr)
            return 1
        print(f'odl-atoms: error: this needs the optional package {root!r}, '
              f'which is not installed: {_OPTIONAL[root]}', file=sys.stderr)
        return 2
    except (UsageError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, PermissionError, ValueError) as exc:
        if debug:
            raise
        message = str(exc) or type(exc).__name__
        print(f'odl-atoms: error: {message}', file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so, keep the message short
        if debug:
            raise
        print(f'odl-atoms: internal error: {type(exc).__name__}: {exc}\n'
              f'(run again with --debug for the traceback, and please report '
              f'it)', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
