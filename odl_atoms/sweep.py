"""Parameter sweeps: a grid of simulated reconstructions, run on Dask.

A study of the kind "how does F1 fall with noise, for ADCG with and without
energy, on these defects, at these tilt angles, over a few noise seeds" is a
grid of independent reconstructions. This module describes one grid point as
a `SweepTask` of plain parameters, expands a grid into tasks
(`sweep_tasks`), runs one task (`run_sweep_task`: build the phantom,
simulate, reconstruct, score against the truth) and runs many on a Dask
cluster (`run_sweep`), gathering the rows into one `SweepResult` table.

Design:

- **Only parameters travel.** ODL's ``RayTransform`` (inside SIRT) does not
  pickle, and a tilt series is cheap to simulate compared with a
  reconstruction, so each worker builds phantom, data, operator and solver
  from the task itself and sends back a row of plain numbers.
- **Dask is optional** (``pip install "odl_atoms[sweep]"``): this module
  imports it only when `run_sweep` needs a cluster; ``scheduler='synchronous'``
  runs the same tasks one after another in this process, without Dask.
- **Nothing is dropped.** A task that raises (or whose worker dies) becomes a
  row with its ``error`` text and is listed in `SweepResult.failed`.
- **Re-running skips finished work.** With ``cache_dir``, every successful
  row is written (atomically) to ``<key>.json``, ``key`` being a SHA-256 of
  the task's parameters; a second run reuses these rows and runs only the
  missing ones. Failed rows are not cached, so they are retried. The rows are
  written by the client, not by the workers, so that workers on other
  machines need no shared file system.
- **Cached rows are checked before they are reused.** Each row carries a
  SHA-256 checksum of its content (its parameters and its results); a row
  whose checksum, parameters or values do not fit (edited by hand, damaged,
  written by an older version) is reported by its file name and run again,
  and its file replaced. The checksum detects accidents, not forgery: whoever
  can write the cache can also write a matching checksum.
- **Tasks are sized first.** Before anything runs, each task's memory is
  estimated (`task_memory`) and a sweep that would not fit in the memory of
  this machine (times the local workers running at once) is refused.

Angles are given in **degrees** here (``angles_deg``), unlike the rest of
the API: a sweep's parameters are what its table shows and what its cache
key hashes, and ``45.0`` is readable and hashes exactly, where
``0.7853981633974483`` is neither.
"""

import hashlib
import itertools
import json
import logging
import math
import numbers
import os
import socket
import sys
import time
import traceback
import uuid
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from odl_atoms.defaults import DEFAULT_N_DETECTOR, DEFAULT_SIGMA
from odl_atoms.errors import ValidationError

__all__ = ('SweepTask', 'SweepResult', 'sweep_tasks', 'run_sweep_task',
           'run_sweep')

#: Above this many atoms a phantom is not built to size its task: its atoms
#: alone are counted (`odl_atoms.resources.phantom_atoms`).
_BUILD_ATOMS = 10 ** 6

#: Part of every cache key: bump it when the rows' meaning changes so that old
#: cached rows are not mistaken for new ones.
CACHE_VERSION = 1

# The columns a row holds besides the task's parameters.
_RESULT_FIELDS = ('n_true', 'n_found', 'f1', 'precision', 'recall', 'exact',
                  'rmsd', 'time', 'wall_time', 'worker', 'error')

_INSTALL_HINT = ('running a sweep on Dask needs the optional packages dask '
                 'and distributed: pip install "odl_atoms[sweep]" (or run '
                 'it in this process with scheduler="synchronous")')


def _plain(value, name):
    """``value`` as plain Python for JSON (tuples for lists), or raise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):  # NumPy integers too
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValidationError(f'{name} must be finite, got {value}')
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v, name) for v in value)
    raise TypeError(f'{name} must be plain numbers, strings, booleans or '
                    f'lists of them (they travel to the workers and into the '
                    f'cache key), got {value!r}')


@dataclass(frozen=True)
class SweepTask:

    """One reconstruction of a sweep: plain parameters only.

    Parameters
    ----------
    phantom : str, optional
        A built-in phantom: a 2D defect (`PHANTOM_NAMES_2D`), a nanoparticle
        shape (`NANOPARTICLE_SHAPES`) or ``'slab'``; or the path of an atom
        file (anything with a suffix, read by `read_atoms`; a remote worker
        must see the same path, and the cache key depends on the path, not
        on the file's content).
    angles_deg : sequence of float, optional
        Tilt angles in degrees.
    sigma : float, optional
        Gaussian std of an atom in angstrom (default 0.43, the command line's
        default: 0.15 of gold's nearest-neighbour distance).
    n_detector : int, optional
        Detector cells (per axis).
    noise : float, optional
        Relative Gaussian noise (0.01 = 1 %).
    seed : int, optional
        Seed of the noise, of random phantoms and of randomised solvers.
    solver : str, optional
        ``'adcg'``, ``'sa'`` (simulated annealing), ``'sirt'`` or
        ``'sirt+learned'``, as on the command line.
    alpha : float, optional
        Energy weight; ``None`` is the solver's default.
    shape : pair of int, optional
        Lattice size of the 2D phantoms (default 7 x 7).
    size : int, optional
        Size of the 3D phantoms.
    solver_options : dict or sequence of pairs, optional
        Further keyword arguments of the solver (plain values), e.g.
        ``{'n_iter': 50}``. With a built-in phantom, solvers that take a
        ``potential`` get the phantom's lattice spacing as its equilibrium
        distance unless ``potential`` is given here (``'auto'`` estimates
        it from the data, as it must for measured data).

    Examples
    --------
    >>> task = SweepTask('vacancy', angles_deg=[0, 90], noise=0.01)
    >>> task.angles_deg, task.noise, task.solver
    ((0.0, 90.0), 0.01, 'adcg')
    >>> task.key == SweepTask('vacancy', angles_deg=(0.0, 90.0),
    ...                       noise=0.01).key
    True
    >>> len(task.key)
    64
    """

    phantom: str = 'vacancy'
    angles_deg: tuple = (0.0, 45.0, 90.0)
    sigma: float = DEFAULT_SIGMA
    n_detector: int = DEFAULT_N_DETECTOR
    noise: float = 0.0
    seed: int = 0
    solver: str = 'adcg'
    alpha: float = None
    shape: tuple = None
    size: int = None
    solver_options: tuple = ()

    def __post_init__(self):
        # Normalise so that equal parameters give equal tasks and keys
        # (0 and 0.0, lists and tuples, dicts in any order).
        def put(name, value):
            object.__setattr__(self, name, value)

        if not isinstance(self.phantom, str) or not self.phantom:
            raise TypeError(f'`phantom` must be a name or a file path, got '
                            f'{self.phantom!r}')
        if not isinstance(self.solver, str):
            raise TypeError(f'`solver` must be a name, got {self.solver!r}')
        angles = _plain(tuple(self.angles_deg) if not isinstance(
            self.angles_deg, (int, float)) else (self.angles_deg,),
            '`angles_deg`')
        if not angles or not all(isinstance(a, (int, float)) for a in angles):
            raise ValidationError(f'`angles_deg` must be a non-empty list of '
                                  f'numbers, got {self.angles_deg!r}')
        put('angles_deg', tuple(float(a) for a in angles))
        for name in ('sigma', 'noise'):
            put(name, float(_plain(getattr(self, name), f'`{name}`')))
        if not self.sigma > 0:
            raise ValidationError(f'`sigma` must be positive, got '
                                  f'{self.sigma}')
        if not self.noise >= 0:
            raise ValidationError(f'`noise` must be >= 0, got {self.noise}')
        if self.alpha is not None:
            put('alpha', float(_plain(self.alpha, '`alpha`')))
            if self.alpha < 0:
                raise ValidationError(f'`alpha` must be >= 0, got '
                                      f'{self.alpha}')
        for name in ('n_detector', 'seed', 'size'):
            value = getattr(self, name)
            if value is not None:
                if int(value) != value:
                    raise ValidationError(f'`{name}` must be an integer, '
                                          f'got {value!r}')
                put(name, int(value))
        if self.shape is not None:
            put('shape', tuple(int(s) for s in self.shape))
        options = self.solver_options
        if isinstance(options, dict):
            options = options.items()
        options = tuple(sorted((str(k), _plain(v, f'solver option {k!r}'))
                               for k, v in options))
        put('solver_options', options)

    def params(self):
        """The parameters as a JSON-able dict (options as a dict)."""
        params = asdict(self)
        params['solver_options'] = dict(self.solver_options)
        return params

    @property
    def key(self):
        """SHA-256 (hex) of the canonical JSON of the parameters.

        The same parameters give the same key in every process and on every
        machine (Python's ``hash`` would not); it names the task's cache file.
        """
        text = json.dumps({'version': CACHE_VERSION, **self.params()},
                          sort_keys=True, separators=(',', ':'))
        return hashlib.sha256(text.encode()).hexdigest()

    def label(self):
        """A short description for messages."""
        alpha = '' if self.alpha is None else f', alpha {self.alpha:g}'
        return (f'{self.phantom}, {_angle_text(self.angles_deg)} deg, noise '
                f'{self.noise:g}, seed {self.seed}, {self.solver}{alpha}')


def _angle_text(angles):
    return '/'.join(f'{a:g}' for a in angles)


# --- Grids

# Parameters whose single value is itself a sequence (or mapping).
_SEQUENCE_PARAMS = ('angles_deg', 'shape', 'solver_options')


def _axis(name, value):
    """The values of one grid axis (a single value becomes a 1-list)."""
    if name in _SEQUENCE_PARAMS:
        if isinstance(value, dict) or value is None:
            return [value]
        value = list(value)
        # A flat sequence of numbers (or of pairs, for options) is one value.
        if not value or not isinstance(value[0], (list, tuple, dict)) or (
                name == 'solver_options' and isinstance(value[0], tuple)
                and len(value[0]) == 2 and isinstance(value[0][0], str)):
            return [value]
        return value
    if isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
        return [value]
    return list(value)


def _takes(solver_name, parameter):
    """Whether a solver takes ``parameter`` (True if the solver is unknown:
    the task then fails in the worker and is reported there)."""
    from odl_atoms.reconstruction import takes_option
    try:
        return takes_option(solver_name, parameter)
    except ValidationError:
        return True


def sweep_tasks(**grid):
    """Return the tasks of a grid: the Cartesian product of the values.

    Parameters
    ----------
    **grid
        `SweepTask` parameters, each a list of values (an axis of the grid)
        or a single value. For ``angles_deg``, ``shape`` and
        ``solver_options`` a flat list is one value, a list of lists an
        axis.

    Returns
    -------
    tasks : list of `SweepTask`
        In the order of the product (parameters in the order of
        `SweepTask`'s, the last varying fastest), without duplicates: solvers without an energy term (SIRT) take no
        ``alpha``, so the alphas of the grid collapse to one SIRT task.

    Examples
    --------
    >>> tasks = sweep_tasks(phantom=['vacancy', 'interstitial'],
    ...                     angles_deg=[0, 60, 120], noise=[0, 0.01],
    ...                     solver=['adcg', 'sirt'], alpha=[0, 1e-3])
    >>> len(tasks)  # 2 phantoms x 2 noise x (2 ADCG alphas + 1 SIRT)
    12
    >>> print(tasks[0].label())
    vacancy, 0/60/120 deg, noise 0, seed 0, adcg, alpha 0
    >>> print(tasks[2].label())
    vacancy, 0/60/120 deg, noise 0, seed 0, sirt
    """
    names = [f.name for f in fields(SweepTask)]
    unknown = sorted(set(grid) - set(names))
    if unknown:
        raise TypeError(f'unknown sweep parameter(s) {", ".join(unknown)}; '
                        f'choose from {", ".join(names)}')
    axes = [(name, _axis(name, grid[name])) for name in names if name in grid]
    for name, values in axes:
        if not values:
            raise ValidationError(f'the grid axis {name!r} has no values')
    takes_alpha = {}
    tasks, seen = [], set()
    for combination in itertools.product(*[values for _, values in axes]):
        params = dict(zip([name for name, _ in axes], combination))
        solver = params.get('solver', SweepTask.solver)
        if params.get('alpha') is not None:
            if solver not in takes_alpha:
                takes_alpha[solver] = _takes(solver, 'alpha')
            if not takes_alpha[solver]:
                params['alpha'] = None
        task = SweepTask(**params)
        if task.key not in seen:
            seen.add(task.key)
            tasks.append(task)
    return tasks


# --- One task (runs in a worker)


def _build_truth(task):
    """The ground truth of a task and its nearest-neighbour distance."""
    from odl_atoms import phantoms
    from odl_atoms.io import read_atoms
    from odl_atoms.metrics import nearest_neighbour_distance

    name = task.phantom
    if Path(name).suffix:
        measure = read_atoms(name)
        spacing = (nearest_neighbour_distance(measure)
                   if measure.n_atoms > 1 else None)
        return measure, spacing, False
    if name in phantoms.PHANTOM_NAMES_2D:
        kwargs = {} if task.shape is None else {'shape': task.shape}
        phantom = phantoms.defect_phantom(name, seed=task.seed, **kwargs)
    elif name in phantoms.NANOPARTICLE_SHAPES:
        phantom = phantoms.nanoparticle(name, size=task.size, seed=task.seed)
    elif name == 'slab':
        kwargs = {} if task.size is None else {'size': (task.size, task.size)}
        phantom = phantoms.fcc_slab(seed=task.seed, **kwargs)
    else:
        valid = ', '.join(tuple(phantoms.PHANTOM_NAMES_2D)
                          + tuple(phantoms.NANOPARTICLE_SHAPES) + ('slab',))
        raise ValidationError(f'unknown phantom {name!r}; choose one of '
                              f'{valid}, or give an atom file')
    return phantom.measure, phantom.lattice_spacing, True


def task_memory(task):
    """Estimate the memory of a task (`odl_atoms.resources`) without
    running it.

    Its simulation and its reconstruction, whichever needs more (they run
    one after the other). A built-in phantom of more than a million atoms is
    not built: its atoms alone are counted.

    Parameters
    ----------
    task : `SweepTask`

    Returns
    -------
    estimate : `~odl_atoms.resources.MemoryEstimate`

    Examples
    --------
    >>> from odl_atoms.resources import size_text
    >>> estimate = task_memory(SweepTask('vacancy', shape=(10 ** 5, 10 ** 5)))
    >>> estimate.largest[0], size_text(estimate.total)
    ('1e+10 atoms', '9.09 TiB')
    """
    import numpy as np

    from odl_atoms.reconstruction import solver_class
    from odl_atoms.resources import (ATOM_BYTES, MemoryEstimate,
                                     phantom_atoms, reconstruction_memory,
                                     simulation_memory)
    from odl_atoms.simulation import detector_size

    what = f'the sweep task ({task.label()})'
    if not Path(task.phantom).suffix:
        n = phantom_atoms(task.phantom, shape=task.shape, size=task.size)
        if n > _BUILD_ATOMS:
            return MemoryEstimate(what, ((f'{n:.3g} atoms', n * ATOM_BYTES,
                                          'atoms'),))
    truth, spacing, _ = _build_truth(task)
    size = detector_size(truth.space, np.radians(task.angles_deg), task.sigma,
                         n_detector=task.n_detector)
    options = dict(task.solver_options)
    try:
        name = solver_class(task.solver).__name__
    except ValidationError:
        name = task.solver
    grid_spacing = options.get('grid_spacing')
    if grid_spacing is None and name == 'ADCG' and truth.ndim == 3:
        from odl_atoms.defaults import DEFAULT_GRID_PER_SIGMA_3D
        grid_spacing = DEFAULT_GRID_PER_SIGMA_3D * task.sigma
    potential = options.get('potential')
    r_min = potential if isinstance(potential, (int, float)) else spacing
    estimates = [simulation_memory(truth.n_atoms, size),
                 reconstruction_memory(
                     size, name, grid_spacing=grid_spacing,
                     pixel_size=options.get('pixel_size'),
                     proposal_spacing=options.get('proposal_spacing'),
                     r_min=r_min, atoms=truth.n_atoms)]
    largest = max(estimates, key=lambda e: e.total)
    return MemoryEstimate(what, largest.parts)


def _check_memory(tasks, parallel, max_memory, names=None):
    """Refuse tasks that do not fit ``parallel`` at a time in the memory."""
    from odl_atoms.resources import MemoryEstimate

    sizes = {}
    for task in tasks:
        # Tasks that differ in noise, seed or alpha only have the same size.
        key = (task.phantom, task.angles_deg, task.sigma, task.n_detector,
               task.solver, task.shape, task.size, task.solver_options)
        if key not in sizes:
            sizes[key] = task_memory(task)
    if not sizes:
        return
    largest = max(sizes.values(), key=lambda e: e.total)
    if parallel > 1:
        largest = MemoryEstimate(
            f'{largest.what[:1].upper() + largest.what[1:]}, {parallel} at '
            f'once (one per worker),',
            tuple((label, nbytes * parallel, setting)
                  for label, nbytes, setting in largest.parts))
    largest.check(max_memory, names=names)


def run_sweep_task(task):
    """Run one task in this process and return its row.

    Builds the phantom, simulates its tilt series, builds the operator and
    the solver, reconstructs and matches the atoms to the truth (`match_atoms`
    with its default tolerance). This is what each Dask worker runs; it
    raises on failure (`run_sweep` turns that into a failed row).

    Parameters
    ----------
    task : `SweepTask`

    Returns
    -------
    row : dict
        The task's parameters (``angles`` as ``'0/45/90'``, options as
        JSON), ``key``, and the scores as plain Python numbers: ``n_true``,
        ``n_found``, ``f1``, ``precision``, ``recall``, ``exact`` (F1 = 1),
        ``rmsd`` (angstrom, ``None`` if nothing matched), ``time`` (the
        solver's), ``wall_time`` (the whole task), ``worker`` (host:pid) and
        ``error`` (``None``).

    Examples
    --------
    >>> row = run_sweep_task(SweepTask('vacancy', shape=(2, 2),
    ...                                n_detector=24, solver='sirt'))
    >>> row['n_true'], row['n_found'], row['f1'], row['error']
    (3, 3, 1.0, None)
    """
    import numpy as np

    from odl_atoms.metrics import match_atoms
    from odl_atoms.reconstruction import (reconstruct, solver_class,
                                          takes_option)
    from odl_atoms.simulation import simulate

    start = time.perf_counter()
    truth, spacing, built_in = _build_truth(task)
    solver_class(task.solver)  # an unknown solver fails before the work
    measured = simulate(truth, np.radians(task.angles_deg), task.sigma,
                        n_detector=task.n_detector, noise=task.noise,
                        seed=task.seed)
    # The solver is built here, in the worker, by `reconstruct`: operators
    # do not pickle (see the module's documentation).
    options = dict(task.solver_options)
    settings = {'alpha': options.pop('alpha', task.alpha),
                'seed': options.pop('seed', task.seed),
                'weights': options.pop('weights', None)}
    if takes_option(task.solver, 'potential'):
        # A built-in phantom's own lattice spacing, as the benchmarks use
        # it (a sweep studies the solvers, not the r_min estimate); else
        # the solver's own estimate.
        options.setdefault('potential', spacing if built_in else 'auto')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        result = reconstruct(measured, task.solver, **settings, **options)
    match = match_atoms(truth, result.measure)
    rmsd = float(match.rmsd)
    row = _param_columns(task)
    row.update(n_true=int(truth.n_atoms), n_found=int(result.n_atoms),
               f1=float(match.f1), precision=float(match.precision),
               recall=float(match.recall), exact=bool(match.exact),
               rmsd=rmsd if math.isfinite(rmsd) else None,
               time=float(result.time),
               wall_time=time.perf_counter() - start,
               worker=f'{socket.gethostname()}:{os.getpid()}', error=None)
    return row


def _param_columns(task):
    params = task.params()
    row = {'key': task.key}
    for name, value in params.items():
        if name == 'angles_deg':
            row['angles'] = _angle_text(value)
        elif name == 'solver_options':
            row[name] = json.dumps(value, sort_keys=True) if value else ''
        elif name == 'shape':
            row[name] = 'x'.join(map(str, value)) if value else None
        else:
            row[name] = value
    return row


def _failed_row(task, exc, started=None):
    row = _param_columns(task)
    row.update({name: None for name in _RESULT_FIELDS})
    row['error'] = f'{type(exc).__name__}: {exc}'
    row['traceback'] = ''.join(traceback.format_exception(
        type(exc), exc, exc.__traceback__))[-4000:]
    if started is not None:
        row['wall_time'] = time.perf_counter() - started
    return row


# --- Results


# Columns of the Markdown table: (header, row key, format).
_TABLE = (('phantom', 'phantom', '{}'), ('angles', 'angles', '{}'),
          ('noise', 'noise', '{:g}'), ('seed', 'seed', '{}'),
          ('solver', 'solver', '{}'), ('alpha', 'alpha', '{:g}'),
          ('atoms', 'n_found', '{}'), ('truth', 'n_true', '{}'),
          ('F1', 'f1', '{:.3f}'), ('exact', 'exact', '{}'),
          ('RMSD (Å)', 'rmsd', '{:.3f}'), ('time (s)', 'time', '{:.2f}'))


@dataclass
class SweepResult:

    """The rows of a sweep, in the order of its tasks.

    Attributes
    ----------
    rows : list of dict
        One row per task (see `run_sweep_task`); a failed task's row has its
        ``error`` text (``'ValueError: ...'``) and ``traceback``, and
        ``None`` scores. ``cached`` says whether the row was read from the
        cache instead of run.
    wall_time : float
        Seconds for the whole sweep (including starting a cluster).
    rejected : list of str
        The cache files that were not reused (edited, damaged, malformed)
        and why; their tasks ran again.
    """

    rows: list = field(default_factory=list)
    wall_time: float = 0.0
    rejected: list = field(default_factory=list)

    @property
    def failed(self):
        """The rows of the tasks that failed."""
        return [row for row in self.rows if row.get('error')]

    @property
    def n_reused(self):
        """Number of rows read from the cache."""
        return sum(bool(row.get('cached')) for row in self.rows)

    @property
    def n_run(self):
        """Number of tasks run (successfully or not) by this sweep."""
        return len(self.rows) - self.n_reused

    def summary(self):
        """One line: tasks run, reused, failed, wall time."""
        rejected = (f', {len(self.rejected)} cache file(s) rejected and run '
                    f'again' if self.rejected else '')
        return (f'{len(self.rows)} tasks: {self.n_run} run, {self.n_reused} '
                f'reused from the cache, {len(self.failed)} failed'
                f'{rejected}; {self.wall_time:.1f} s')

    def as_markdown(self):
        """The main columns as a Markdown table (errors in a last column).

        Returns
        -------
        table : str
        """
        from odl_atoms.tables import markdown_table

        with_options = any(row.get('solver_options') for row in self.rows)
        header = [h for h, _, _ in _TABLE] + (['options'] if with_options
                                               else []) + ['status']
        lines = []
        for row in self.rows:
            line = [_cell(fmt, row.get(key)) for _, key, fmt in _TABLE]
            if with_options:
                line.append(row.get('solver_options') or '')
            error = row.get('error')
            line.append(('failed: ' + error.replace('|', '/').splitlines()[0]
                         [:80]) if error else
                        'cached' if row.get('cached') else 'ok')
            lines.append(line)
        return markdown_table(header, lines)

    def to_csv(self, path=None):
        """All columns (but tracebacks) as CSV; written atomically to ``path``.

        Parameters
        ----------
        path : str or os.PathLike, optional

        Returns
        -------
        text : str
        """
        from odl_atoms.tables import csv_table

        columns = []
        for row in self.rows:
            columns += [k for k in row
                        if k not in columns and k != 'traceback']
        text = csv_table(columns, [['' if row.get(k) is None else row.get(k)
                                    for k in columns] for row in self.rows])
        if path is not None:
            _write_atomically(path, text)
        return text


def _cell(fmt, value):
    if value is None or (isinstance(value, float)
                         and not math.isfinite(value)):
        return '-'
    try:
        return fmt.format(value)
    except (TypeError, ValueError):  # a value of another type: show it
        return str(value)


def _write_atomically(path, text):
    from odl_atoms.io import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# --- The cache


def _cache_path(cache_dir, task):
    return Path(cache_dir) / f'{task.key}.json'


def _checksum(row):
    """SHA-256 (hex) of a row's canonical JSON, without its checksum."""
    content = {k: v for k, v in row.items() if k not in ('checksum',
                                                           'cached')}
    text = json.dumps(content, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(text.encode()).hexdigest()


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) \
        and value >= 0


def _is_number(value, low=0.0, high=math.inf):
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and low <= value <= high


# What a cached row's results must be: (column, test, what it must be).
_RESULT_CHECKS = (
    ('n_true', _is_count, 'a count'), ('n_found', _is_count, 'a count'),
    ('f1', lambda v: _is_number(v, 0, 1), 'a number in [0, 1]'),
    ('precision', lambda v: _is_number(v, 0, 1), 'a number in [0, 1]'),
    ('recall', lambda v: _is_number(v, 0, 1), 'a number in [0, 1]'),
    ('exact', lambda v: isinstance(v, bool), 'true or false'),
    ('rmsd', lambda v: v is None or _is_number(v), 'null or a number >= 0'),
    ('time', _is_number, 'a number >= 0'),
    ('wall_time', _is_number, 'a number >= 0'),
    ('worker', lambda v: v is None or isinstance(v, str), 'a text'))


def _cache_problem(row, task):
    """Why a cached row of ``task`` cannot be reused, or None."""
    if not isinstance(row, dict):
        return f'it holds a JSON {type(row).__name__}, not a row'
    if 'checksum' not in row:
        return ('it has no checksum (written by an older version of '
                'odl_atoms, or by hand)')
    if row['checksum'] != _checksum(row):
        return 'its checksum does not match its content (edited or damaged)'
    expected = _param_columns(task)
    changed = sorted(k for k, v in expected.items() if row.get(k) != v)
    if changed:
        return (f'its parameters ({", ".join(changed)}) are not those of '
                f'the task')
    for name, test, what in _RESULT_CHECKS:
        if not test(row.get(name)):
            return f'{name!r} is {row.get(name)!r}, not {what}'
    return None


def _read_cached(cache_dir, task):
    """``(row, problem)``: the cached row of ``task`` (or None: missing,
    failed or rejected) and why a file there was rejected (or None)."""
    path = _cache_path(cache_dir, task)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f'it cannot be read ({exc})'
    try:
        row = json.loads(text)
    except ValueError as exc:
        return None, f'it is not valid JSON ({exc})'
    if isinstance(row, dict) and row.get('error'):
        return None, None  # failed rows are retried (none are written)
    problem = _cache_problem(row, task)
    if problem is not None:
        return None, problem
    del row['checksum']
    row['cached'] = True
    return row, None


def _write_cached(cache_dir, row):
    row = {k: v for k, v in row.items() if k != 'cached'}
    row['checksum'] = _checksum(row)
    _write_atomically(Path(cache_dir) / f'{row["key"]}.json',
                      json.dumps(row, indent=1, sort_keys=True) + '\n')


# --- Many tasks


def _distributed():
    """Import ``dask.distributed``, or say how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT, name=exc.name) from exc
    return distributed


def _in_process(tasks):
    """Run tasks one after another here; yield ``(task, row)``."""
    for task in tasks:
        started = time.perf_counter()
        try:
            row = run_sweep_task(task)
        except Exception as exc:
            row = _failed_row(task, exc, started)
        yield task, row


def _on_dask(tasks, client):
    """Submit tasks to a Dask client; yield ``(task, row)`` as they finish."""
    distributed = _distributed()
    futures = {}
    for task in tasks:
        # pure=False and a unique key: a rerun on the same client really
        # runs (Dask would otherwise hand back a remembered result or error).
        future = client.submit(run_sweep_task, task, pure=False,
                               key=f'odl-atoms-sweep-{task.key[:16]}-'
                                   f'{uuid.uuid4().hex[:8]}')
        futures[future] = task
    try:
        for future in distributed.as_completed(list(futures)):
            task = futures[future]
            try:
                row = future.result()
            except Exception as exc:  # raised in the task, or worker lost
                row = _failed_row(task, exc)
            future.release()
            yield task, row
    finally:
        for future in futures:
            future.cancel()


def _client(scheduler, n_workers):
    """``(client, close)`` for ``scheduler`` (see `run_sweep`)."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler, lambda: None
    if scheduler is None:
        cluster = distributed.LocalCluster(
            n_workers=int(n_workers), threads_per_worker=1, processes=True,
            # The dashboard on any free port (two sweeps may run at once);
            # no worker log of failed tasks: run_sweep reports each failure
            # itself, in one line.
            dashboard_address=':0', silence_logs=logging.CRITICAL)
        client = distributed.Client(cluster)

        def close():
            client.close()
            cluster.close()
        return client, close
    try:
        client = distributed.Client(scheduler, timeout='10s')
    except (OSError, TimeoutError) as exc:
        raise ValidationError(f'cannot connect to the Dask scheduler at '
                              f'{scheduler!r}: {exc}') from exc
    return client, client.close


def run_sweep(tasks, scheduler=None, n_workers=2, cache_dir=None,
              progress=True, max_memory=None, memory_names=None):
    """Run tasks on Dask (or in this process); return the table of rows.

    Parameters
    ----------
    tasks : sequence of `SweepTask`
        E.g. from `sweep_tasks`. Tasks with equal keys run once.
    scheduler : None, str or ``distributed.Client``, optional
        ``None``: start a ``distributed.LocalCluster`` with ``n_workers``
        single-threaded worker processes for this sweep (and stop it
        after). A string: the address of a running scheduler
        (``'tcp://host:8786'``), whose workers must have odl_atoms
        installed; or ``'synchronous'``: run the tasks one after another in
        this process, without Dask. A ``Client``: use it (it stays open).
    n_workers : int, optional
        Workers of the local cluster.
    cache_dir : str or os.PathLike, optional
        Folder of finished rows (``<key>.json``, created if missing). Tasks
        whose row is there are not run again; failed tasks are not cached.
    progress : bool, optional
        Show a progress bar (tqdm, on standard error) and report failures
        as they happen.
    max_memory : float, optional
        Memory limit in bytes of the tasks run here (``'synchronous'``) or
        on the local cluster (times its workers): the largest task's
        estimate (`task_memory`) is checked before anything runs. Default
        the memory available; ``inf``: no check. Tasks on a remote
        scheduler are checked by their workers (`odl_atoms.reconstruct`).
    memory_names : dict, optional
        How the memory message names the settings
        (`~odl_atoms.resources.MemoryEstimate.check`).

    Returns
    -------
    result : `SweepResult`

    Raises
    ------
    ImportError
        If a Dask scheduler is asked for and Dask is not installed.
    ValidationError
        If the scheduler cannot be reached, or the tasks need more memory
        than the limit.

    Warns
    -----
    UserWarning
        For every cache file that is not reused (see `SweepResult.rejected`).

    Examples
    --------
    >>> tasks = sweep_tasks(phantom='vacancy', shape=(2, 2), n_detector=24,
    ...                     noise=[0, 0.01], solver='sirt')
    >>> result = run_sweep(tasks, scheduler='synchronous', progress=False)
    >>> [row['f1'] for row in result.rows], result.failed
    ([1.0, 1.0], [])
    """
    from tqdm import tqdm

    start = time.perf_counter()
    tasks = list(tasks)
    for task in tasks:
        if not isinstance(task, SweepTask):
            raise TypeError(f'tasks must be SweepTask objects, got {task!r}')
    rows, rejected = {}, []
    if cache_dir is not None and os.path.isdir(cache_dir):
        for task in tasks:
            row, problem = _read_cached(cache_dir, task)
            if row is not None:
                rows[task.key] = row
            elif problem is not None:
                path = str(_cache_path(cache_dir, task))
                rejected.append(f'{path}: {problem}')
                warnings.warn(f'not reusing the cache file {path!r}: '
                              f'{problem}; the task ({task.label()}) runs '
                              f'again', UserWarning, stacklevel=2)
    todo = list({task.key: task for task in tasks
                 if task.key not in rows}.values())
    if todo and (scheduler is None or scheduler == 'synchronous'):
        _check_memory(todo, 1 if scheduler == 'synchronous' else
                      min(int(n_workers), len(todo)), max_memory,
                      memory_names)
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
    if progress and rows:
        print(f'odl_atoms.sweep: {len(rows)} of {len(tasks)} rows reused from '
              f'{str(cache_dir)!r}', file=sys.stderr)
    if todo:
        close = None
        if scheduler == 'synchronous':
            finished = _in_process(todo)
        else:
            client, close = _client(scheduler, n_workers)
            finished = _on_dask(todo, client)
        bar = tqdm(total=len(todo), desc='sweep', unit=' task',
                   file=sys.stderr, dynamic_ncols=True, disable=not progress)
        n_failed = 0
        try:
            for task, row in finished:
                rows[task.key] = row
                if row['error']:
                    n_failed += 1
                    bar.set_postfix(failed=n_failed, refresh=False)
                    if progress:
                        bar.write(f'odl_atoms.sweep: task failed '
                                  f'({task.label()}): {row["error"]}',
                                  file=sys.stderr)
                elif cache_dir is not None:
                    _write_cached(cache_dir, row)
                bar.update(1)
        finally:
            bar.close()
            if hasattr(finished, 'close'):
                finished.close()
            if close is not None:
                close()
    for row in rows.values():
        row.setdefault('cached', False)
    return SweepResult(rows=[dict(rows[task.key]) for task in tasks],
                       wall_time=time.perf_counter() - start,
                       rejected=rejected)
