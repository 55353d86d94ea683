"""Speed of the reconstruction: kernels, whole runs phase by phase, torch.

Sections (each a function returning a markdown block; `main` runs them):

- `objective_section`: one objective evaluation, value and gradient
  (``AtomObjective.value_and_gradient``: data term and Lennard-Jones), for
  the demo's 48 atoms and for jittered lattices of 10^3 and 10^4 atoms in 2D
  and 3D, the NumPy path (``ODL_ATOMS_KERNELS=numpy``, what main ran before
  the compiled kernels) and the compiled one side by side; every evaluation
  at new positions (the caches of the last point do not help), median of
  repeats;
- `forward_section`: the forward operator ``op(measure)`` and the adjoint of
  its Jacobian, both paths, against ASTRA's CPU projector on the equivalent
  pixel volume, in 2D at 10^3 and 10^4 atoms (the problems of
  ``forward.py``);
- `cold_start_section`: the first-call cost of the compiled kernels, in a
  fresh process with an empty numba cache (compilation) and again with the
  cache filled (loading);
- `phases_section`: whole ADCG reconstructions, the demo's and a
  lattice-start case, timed phase by phase (starts, additions, local
  moves, each escape move, polish, certificate) with the code of
  `BASELINE` (the commit before the escape memo and the vectorised lattice
  fits, from a ``git archive`` on ``PYTHONPATH``) and with this tree, side
  by side, each in a fresh process; the answers are compared too, and the
  demo's SIRT + picking is timed on the same data;
- `lattice_fit_section`: the lattice fits of ``lattice='auto'``
  (`odl_atoms.reconstruction.fit_lattices`: every named lattice fitted with
  its spacing) and the whole default `odl_atoms.reconstruct` around them,
  with the code of `LATTICE_BASELINE` (before the compiled occupation QP
  and the batched lattice misfits) and with this tree, side by side in
  fresh processes, on a 7 x 7 square vacancy and a grain boundary at
  0/45/90 degrees; the fitted lattices and the answers are compared too;
- `escapes_section`: the default `odl_atoms.reconstruct` with one start
  continuing with the escape moves (``escape_starts=1``, the default until
  7f88c51) and with the default (``'auto'``: two in 2D), alternating in
  fresh processes, on square and hexagonal crystals; the answers too;
- `torch_section`: the torch CPU path with one thread (the package's
  setting) against torch's default;
- `demo_inner_section`: the inner calls of ``odl-atoms demo``'s ADCG,
  recorded in one solve and replayed both ways, alternating: its L-BFGS-B
  runs through ``scipy.optimize.minimize`` and through
  `odl_atoms.descent.lbfgsb`, its oracle's addition energies with the NumPy
  path (KD-trees) and the compiled kernel; the answers compared.

Times are CPU seconds of the process (``time.process_time``: the machine
is shared, and CPU time is what another job's load disturbs least), medians
(the fastest of the repeats for whole reconstructions); the load average
(``os.getloadavg``, 1 minute) when each row was measured stands next to
it. Compare ratios more than absolute times.

Usage::

    python benchmarks/speed.py            # all sections (10-20 minutes)
    python benchmarks/speed.py --quick    # fewer sizes and repeats
    python benchmarks/speed.py --sections phases torch   # the others kept
    python benchmarks/speed.py --sections lattice        # the lattice fits
    python benchmarks/speed.py --sections escapes        # escape_starts
    python benchmarks/speed.py --sections demo           # demo's inner calls

Writes ``benchmarks/results/speed.md`` (sections not run are kept from the
file as it was).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import odl
from odl.applications import tomo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import markdown_table, write_result  # noqa: E402
from forward import SIGMA, problem  # noqa: E402

from odl_atoms import GaussianRayTransform, kernels  # noqa: E402
from odl_atoms.functionals import LennardJones  # noqa: E402
from odl_atoms.objective import AtomObjective  # noqa: E402

#: Lattice spacing of forward.py's problems, the potential's r_min.
R_MIN = 3.0


def load():
    """One-minute load average."""
    return os.getloadavg()[0]


def median_time(func, repeat, setup=None):
    """Median CPU seconds of ``func()`` over ``repeat`` calls."""
    times = []
    for k in range(repeat):
        if setup is not None:
            setup(k)
        t0 = time.process_time()
        func()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def default_potential(d):
    """The solvers' default potential (`default_lennard_jones`) for r_min 3 A.

    Built here from its definition (smooth cut-off, core at half sigma) so
    that this script does not depend on where the solvers keep it.
    """
    return LennardJones.from_r_min(odl.rn((2, d)), R_MIN, smooth=True,
                                   core_radius=0.5 * R_MIN / 2 ** (1 / 6))


# --- Problems


def demo_problem():
    """The demo's objective (48 gold columns, 0/45/90 degrees, 1 % noise)."""
    from odl_atoms.cli import (DEMO_ANGLES_DEG, DEMO_DETECTOR, DEMO_NOISE,
                               DEMO_SEED, DEMO_SIGMA)
    from odl_atoms.defaults import DEFAULT_ALPHA
    from odl_atoms.phantoms import defect_phantom
    from odl_atoms.simulation import simulate

    phantom = defect_phantom('vacancy')
    measured = simulate(phantom.measure, np.radians(DEMO_ANGLES_DEG),
                        DEMO_SIGMA, n_detector=DEMO_DETECTOR,
                        noise=DEMO_NOISE, seed=DEMO_SEED)
    op = measured.operator()
    potential = LennardJones.from_r_min(
        odl.rn((2, 2)), phantom.lattice_spacing, smooth=True,
        core_radius=0.5 * phantom.lattice_spacing / 2 ** (1 / 6))
    objective = AtomObjective(op, measured.data, DEFAULT_ALPHA, potential)
    return objective, phantom.measure.positions, phantom.measure.weights


def lattice_problem(n, d):
    """forward.py's lattice of about ``n`` atoms, its data with 1 % noise."""
    from odl_atoms.defaults import DEFAULT_ALPHA

    n, _, geometry, measure = problem(n, d)
    op = GaussianRayTransform(measure.space, geometry, SIGMA)
    with kernels.use_backend('numpy'):
        data = op.project(measure.positions, measure.weights)
    rng = np.random.default_rng(0)
    data = data + 0.01 * np.abs(data).max() * rng.standard_normal(data.shape)
    objective = AtomObjective(op, data, DEFAULT_ALPHA, default_potential(d))
    return objective, measure.positions, measure.weights


def evaluation_points(positions, count=3, seed=1):
    """A few jittered copies of ``positions`` (0.05 A), to cycle through."""
    rng = np.random.default_rng(seed)
    return [positions + rng.normal(0, 0.05, positions.shape)
            for _ in range(count)]


# --- Sections


def objective_section(sizes=(10 ** 3, 10 ** 4), repeat=(50, 11, 5),
                      dims=(2, 3)):
    """One objective evaluation (value + gradient), NumPy vs compiled."""
    cases = [('demo (2D)', 2, None)] + [
        (f'lattice {d}D', d, n) for d in dims for n in sizes]
    rows = []
    for label, d, n in cases:
        if n is None:
            objective, positions, weights = demo_problem()
        else:
            objective, positions, weights = lattice_problem(n, d)
        n_atoms = positions.shape[0]
        reps = repeat[0] if n_atoms < 500 else (
            repeat[1] if n_atoms < 5000 else repeat[2])
        points = evaluation_points(positions)
        current = [points[0]]

        def evaluate():
            objective.value_and_gradient(current[0], weights)

        def next_point(k):
            current[0] = points[k % len(points)]

        result = {}
        for backend in ('numpy', 'numba'):
            with kernels.use_backend(backend):
                evaluate()  # warm up (and compile)
                before = load()
                t = median_time(evaluate, reps, next_point)
                result[backend] = (t, 0.5 * (before + load()))
        with kernels.use_backend('numpy'):
            ref = objective.value_and_gradient(points[1], weights)
        got = objective.value_and_gradient(points[1], weights)
        err = max(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)
                  for a, b in zip(got, ref))
        (t_np, l_np), (t_nb, l_nb) = result['numpy'], result['numba']
        rows.append([label, n_atoms, 'x'.join(map(str, objective.operator
                                                 .range.shape)),
                     reps, f'{t_np * 1e3:.3g}', f'{l_np:.1f}',
                     f'{t_nb * 1e3:.3g}', f'{l_nb:.1f}',
                     f'{t_np / t_nb:.1f}', f'{err:.1e}'])
        print(rows[-1], flush=True)
    header = ['problem', 'atoms', 'data', 'repeats', 'NumPy (ms)',
              'load (NumPy)', 'compiled (ms)', 'load (compiled)',
              'NumPy / compiled', 'max rel. difference']
    return ('## One objective evaluation (value and gradient)\n\n'
            '`AtomObjective.value_and_gradient`: data term and Lennard-Jones '
            '(alpha 1e-3, smooth cut-off), each call at new positions, median '
            'CPU time. The demo is `odl-atoms demo`\'s problem (3 angles, 96 '
            'cells); the lattices are those of `forward.py` (5 angles, sigma '
            '0.4, cells 0.5, spacing 3). Last column: largest difference of '
            'value and gradients between the two paths, relative to the '
            'largest entry.\n\n' + markdown_table(header, rows))


def forward_section(sizes=(10 ** 3, 10 ** 4), repeat=7):
    """The forward operator and the Jacobian's adjoint vs ASTRA, in 2D."""
    rows = []
    for n in sizes:
        n, n_det, geometry, measure = problem(n, 2)
        space = measure.space
        op = GaussianRayTransform(space, geometry, SIGMA)
        params = measure.to_parameters()
        half = float(space.max_pt[0])

        def evict(k):
            # The operator keeps the stencil of the last positions; every
            # timed call builds its own, as a new configuration would.
            op.stencil(np.zeros((1, 2)))

        times = {}
        for backend in ('numpy', 'numba'):
            with kernels.use_backend(backend):
                op(measure)
                before = load()
                t_fwd = median_time(lambda: op(measure), repeat, evict)
                data = op(measure)
                jac = op.parametrized(n).derivative(params)
                t_adj = median_time(lambda: jac.adjoint(data), repeat, evict)
                times[backend] = (t_fwd, t_adj, 0.5 * (before + load()))
        # ASTRA (as forward.py): the pixel volume of the box, pixel = cell.
        n_pix = int(np.ceil(2 * (half - 2.0) / 0.5)) + 8
        vol = odl.uniform_discr([-n_pix * 0.25] * 2, [n_pix * 0.25] * 2,
                                [n_pix] * 2, dtype='float32')
        ray = tomo.RayTransform(vol, tomo.Parallel2dGeometry(
            geometry.motion_partition,
            odl.uniform_partition(-half, half, n_det)), impl='astra_cpu')
        image = vol.one()
        sino = ray(image)
        before = load()
        t_ray = median_time(lambda: ray(image), repeat)
        t_back = median_time(lambda: ray.adjoint(sino), repeat)
        l_astra = 0.5 * (before + load())
        (f_np, a_np, l_np), (f_nb, a_nb, l_nb) = times['numpy'], times['numba']
        rows.append([n, n_det, f'{n_pix}x{n_pix}',
                     f'{f_np * 1e3:.3g}', f'{f_nb * 1e3:.3g}',
                     f'{t_ray * 1e3:.3g}', f'{t_ray / f_np:.2f}',
                     f'{t_ray / f_nb:.2f}',
                     f'{a_np * 1e3:.3g}', f'{a_nb * 1e3:.3g}',
                     f'{t_back * 1e3:.3g}', f'{t_back / a_nb:.2f}',
                     f'{l_np:.1f} / {l_nb:.1f} / {l_astra:.1f}'])
        print(rows[-1], flush=True)
    header = ['atoms', 'detector', 'ASTRA volume', 'NumPy fwd (ms)',
              'compiled fwd (ms)', 'ASTRA fwd (ms)', 'ASTRA / NumPy fwd',
              'ASTRA / compiled fwd', 'NumPy grad (ms)', 'compiled grad (ms)',
              'ASTRA back (ms)', 'ASTRA back / compiled grad',
              'load (NumPy / compiled / ASTRA)']
    return ('## Forward operator against ASTRA (2D)\n\n'
            '`op(measure)` (window stencil rebuilt every call) and the adjoint '
            'of its Jacobian (positions and weights, "grad"), 5 angles, sigma '
            '0.4, cells 0.5; ASTRA\'s CPU projector (float32) on the '
            'equivalent pixel volume (pixel = cell), forward and back '
            'projection (single-threaded, as ours). Ratios above 1: ours is '
            'faster. Median CPU time.\n\n'
            + markdown_table(header, rows))


_COLD_SCRIPT = r'''
import json
import time
t0, c0 = time.perf_counter(), time.process_time()
from odl_atoms import kernels
wall = {'import': time.perf_counter() - t0}
cpu = time.process_time() - c0
c0 = time.process_time()
wall.update(kernels.warm_up())
print(json.dumps([wall, cpu, time.process_time() - c0]))
'''


def cold_start_section():
    """First-call cost of the kernels: empty numba cache, then filled."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ('empty (compile)', 'filled (load)'):
            before = load()
            out = subprocess.run([sys.executable, '-c', _COLD_SCRIPT],
                                 env=env, capture_output=True, text=True,
                                 check=True).stdout
            wall, cpu_import, cpu_kernels = json.loads(
                out.strip().splitlines()[-1])
            total = sum(v for k, v in wall.items() if k != 'import')
            rows.append([label] + [f'{v:.2f}' for v in wall.values()]
                        + [f'{total:.2f}', f'{cpu_import:.2f}',
                           f'{cpu_kernels:.2f}',
                           f'{0.5 * (before + load()):.1f}'])
            keys = list(wall)
    header = (['numba cache'] + [f'{k} (s)' for k in keys]
              + ['kernels total (s)', 'CPU import (s)', 'CPU kernels (s)',
                 'load'])
    return ('## Cold start of the compiled kernels\n\n'
            'A fresh process imports `odl_atoms.kernels` and calls '
            '`kernels.warm_up()` (every projector kernel in 2D and 3D, the '
            'Lennard-Jones kernels, on tiny inputs): first with an empty '
            'numba cache (everything compiled, as in a fresh clone), then '
            'with the cache that run wrote (`cache=True`). Wall seconds per '
            'group, then CPU seconds of the import and of all kernels.\n\n'
            + markdown_table(header, rows))


# --- Per-phase time of whole reconstructions, old code against new

#: The commit before the escape screening and the vectorised lattice fits
#: (issue 21's solver side): the "old" code of `phases_section`.
BASELINE = 'ec33293'

#: The reconstructions timed phase by phase: the demo's ADCG (`odl-atoms
#: demo`: 7 x 7 vacancy, 0/45/90 degrees, 1 % noise, default ADCG) and a
#: lattice-start case (the 7 x 7 vacancy of ``zone_axes.py`` at 0/60/120
#: degrees, 1 % noise, `lattice_starts('square')`).
PHASE_CASES = ('demo', 'lattice')

_PHASE_WORKER = r"""
import json, os, sys, time, warnings
warnings.filterwarnings('ignore')
sys.path.insert(0, sys.argv[2])
import numpy as np
import odl_atoms as oa
from odl_atoms import kernels
from odl_atoms.problem import Problem
from odl_atoms.solvers import moves as moves_module, starts as starts_module
from odl_atoms.solvers.adcg import context as context_module
from odl_atoms.solvers.adcg import descent as descent_module
from odl_atoms.solvers.adcg import oracle as oracle_module
from odl_atoms.solvers.adcg import solver as solver_module

kernels.warm_up()
clock = time.process_time
totals, active = {}, [None]


def timed(phase, func):
    # Time goes to the outermost phase (an escape's additions are the
    # escape's).
    def wrapper(*args, **kwargs):
        if active[0] is not None:
            return func(*args, **kwargs)
        active[0], t0 = phase, clock()
        try:
            return func(*args, **kwargs)
        finally:
            totals[phase] = totals.get(phase, 0.0) + clock() - t0
            active[0] = None
    return wrapper


def timed_trials(phase, func):
    # A move's trials are a generator: time each step of it.
    def wrapper(*args, **kwargs):
        steps = iter(func(*args, **kwargs))
        while True:
            outer = active[0] is None
            if outer:
                active[0], t0 = phase, clock()
            try:
                trial = next(steps)
            except StopIteration:
                return
            finally:
                if outer:
                    totals[phase] = totals.get(phase, 0.0) + clock() - t0
                    active[0] = None
            totals['trials: ' + phase] = totals.get('trials: ' + phase, 0) + 1
            yield trial
    return wrapper


for cls in (starts_module.GreedyStart, starts_module.LatticeStart,
            starts_module.SplitLatticeStart):
    if 'configuration' in vars(cls):
        cls.configuration = timed('starts', cls.configuration)
for name in moves_module.__all__:
    cls = getattr(moves_module, name)
    if isinstance(cls, type) and 'trials' in vars(cls):
        cls.trials = timed_trials('escape: ' + cls.name, cls.trials)
Context = context_module.SearchContext
Context.add_atom = timed('additions', Context.add_atom)
oracle_module.Oracle.add_atoms = timed('additions',
                                       oracle_module.Oracle.add_atoms)
for name in ('local_move', 'choose_weights', 'prune'):
    setattr(Context, name, timed('local moves', getattr(Context, name)))
descent_module.LocalDescent.block_move = timed(
    'local moves', descent_module.LocalDescent.block_move)
solver_module.ADCG._polish = timed('polish', solver_module.ADCG._polish)
solver_module.certify = timed('certificate', solver_module.certify)

case = sys.argv[1]
from global_search import BLUR, N_DETECTOR, make_phantom

# Warm up: a tiny solve first, so that first-call costs (imports, caches)
# land in no phase.
tiny = oa.defect_phantom('vacancy', shape=(3, 3))
tiny_data = oa.simulate(tiny.measure, np.radians([0, 45, 90]), 0.43,
                        n_detector=48, noise=0.01, seed=0)
oa.ADCG(starts=oa.lattice_starts('square') if case == 'lattice'
        else starts_module.DEFAULT_STARTS).solve(Problem(
            tiny_data.operator(), tiny_data.element(),
            potential=tiny.lattice_spacing, noise_std=tiny_data.noise_std))
totals.clear()
if case == 'demo':
    from odl_atoms.cli import (DEMO_ANGLES_DEG, DEMO_DETECTOR, DEMO_NOISE,
                               DEMO_SEED, DEMO_SIGMA)
    phantom = oa.defect_phantom('vacancy')
    measured = oa.simulate(phantom.measure, np.radians(DEMO_ANGLES_DEG),
                           DEMO_SIGMA, n_detector=DEMO_DETECTOR,
                           noise=DEMO_NOISE, seed=DEMO_SEED)
    starts = starts_module.DEFAULT_STARTS
else:
    phantom = make_phantom('vacancy')
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians([0, 60, 120]),
                           BLUR * a, n_detector=N_DETECTOR, noise=0.01,
                           seed=0)
    starts = oa.lattice_starts('square')
# As `odl-atoms demo` and the benchmarks build it: the true spacing as the
# potential's r_min, the noise level known.
problem = Problem(measured.operator(), measured.element(),
                  potential=phantom.lattice_spacing,
                  noise_std=measured.noise_std or 0.0)
solver = oa.ADCG(starts=starts)
t0 = clock()
result = solver.solve(problem)
total = clock() - t0
match = oa.match_atoms(phantom.measure, result.measure)
out = dict(total=total, phases=totals, n_atoms=result.n_atoms,
           f1=match.f1, exact=bool(match.exact),
           objective=result.info['certificate'].objective,
           moves_taken=result.info['moves_taken'],
           module=oa.__file__)
if case == 'demo':
    sirt = oa.SIRT()
    sirt_problem = Problem(measured.operator(), measured.element())
    sirt.solve(sirt_problem)  # warm up ASTRA
    t0 = clock()
    picked = sirt.solve(sirt_problem)
    out['sirt'] = clock() - t0
    out['sirt_f1'] = oa.match_atoms(phantom.measure, picked.measure).f1
print(json.dumps(out))
"""


def old_checkout(commit, repo=None):
    """A temporary directory holding ``commit`` of this repository
    (``git archive``), to import the old code from."""
    repo = repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = tempfile.mkdtemp(prefix=f'odl_atoms_{commit}_')
    archive = subprocess.run(['git', '-C', repo, 'archive', commit],
                             capture_output=True, check=True).stdout
    subprocess.run(['tar', '-x', '-C', target], input=archive, check=True)
    return target


def run_phases(case, root):
    """One reconstruction of ``case`` with the code under ``root``, timed
    phase by phase in a fresh process; the worker's JSON answer."""
    env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS='1',
               OPENBLAS_NUM_THREADS='1')
    out = subprocess.run(
        [sys.executable, '-c', _PHASE_WORKER, case,
         os.path.join(root, 'benchmarks')],
        env=env, capture_output=True, text=True,
        cwd=root)  # not this tree's: `-c` puts the cwd first on sys.path
    if out.returncode:
        raise RuntimeError(f'{case} with {root} failed:\n{out.stderr}')
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    if not answer['module'].startswith(root):
        raise RuntimeError(f'{case}: imported {answer["module"]}, not the '
                           f'code under {root}')
    return answer


def phases_section(commit=BASELINE, cases=PHASE_CASES, repeat=1,
                   current=None):
    """Per-phase CPU time of whole reconstructions, old and new code.

    ``current``: a commit to time as the new code (default this tree).
    """
    old_root = old_checkout(commit)
    new_root = (old_checkout(current) if current else
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    blocks, summary = [], []
    try:
        for case in cases:
            runs = {}
            for label, root in (('old', old_root), ('new', new_root)):
                best = None
                for _ in range(repeat):
                    before = load()
                    answer = run_phases(case, root)
                    answer['load'] = 0.5 * (before + load())
                    if best is None or answer['total'] < best['total']:
                        best = answer
                runs[label] = best
                print(case, label, round(best['total'], 2), flush=True)
            old, new = runs['old'], runs['new']
            names = [p for p in ('starts', 'additions', 'local moves')
                     if p in old['phases'] or p in new['phases']]
            names += sorted({p for r in (old, new) for p in r['phases']
                             if p.startswith('escape: ')})
            names += [p for p in ('polish', 'certificate')
                      if p in old['phases'] or p in new['phases']]
            rows = []
            for name in names + ['other', 'total']:
                times = []
                for run in (old, new):
                    phases = run['phases']
                    if name == 'total':
                        times.append(run['total'])
                    elif name == 'other':
                        times.append(run['total'] - sum(
                            v for k, v in phases.items()
                            if not k.startswith('trials: ')))
                    else:
                        times.append(phases.get(name, 0.0))
                trials = [run['phases'].get('trials: ' + name, '')
                          if name.startswith('escape: ') else ''
                          for run in (old, new)]
                rows.append([name, f'{times[0]:.2f}', f'{times[1]:.2f}',
                             f'{times[0] / times[1]:.1f}' if times[1] > 0.005
                             else '-', trials[0], trials[1]])
            rows.append(['answer (atoms, F1, objective)',
                         *(f'{r["n_atoms"]}, {r["f1"]:.3f}, '
                           f'{r["objective"]:.6f}' for r in (old, new)),
                         '', '', ''])
            rows.append(['load', f'{old["load"]:.1f}', f'{new["load"]:.1f}',
                         '', '', ''])
            header = ['phase', f'old {commit} (s)', 'new (s)', 'old / new',
                      'trials (old)', 'trials (new)']
            title = {'demo': "`odl-atoms demo`'s ADCG (48 atoms, 0/45/90, "
                             "1 % noise, default options)",
                     'lattice': 'Lattice-start case (7 x 7 vacancy, '
                                '0/60/120, 1 % noise, '
                                "`lattice_starts('square')`)"}[case]
            blocks.append(f'### {title}\n\n' + markdown_table(header, rows))
            summary.append([case, f'{old["total"]:.2f}', f'{new["total"]:.2f}',
                            f'{old["total"] / new["total"]:.1f}',
                            'yes' if old['exact'] == new['exact']
                            and old['n_atoms'] == new['n_atoms'] else 'NO'])
            if case == 'demo':
                summary[-1].append(f'{new["sirt"]:.2f} (ADCG / SIRT '
                                   f'{new["total"] / new["sirt"]:.1f}x)')
            else:
                summary[-1].append('')
    finally:
        shutil.rmtree(old_root, ignore_errors=True)
        if current:
            shutil.rmtree(new_root, ignore_errors=True)
    header = ['case', 'old total (s)', 'new total (s)', 'old / new',
              'same answer', 'SIRT + picking (s)']
    return ('## Whole reconstructions, phase by phase: old code against new\n\n'
            f'Each reconstruction runs in a fresh process, once with the code '
            f'of commit {commit} (a `git archive` of it on `PYTHONPATH`) and '
            f'once with {"commit " + current if current else "this tree"}, '
            f'CPU seconds of the process '
            f'(`time.process_time`, one BLAS thread; the numba kernels '
            f'compiled before timing). Phases: the starts, the additions '
            f'(oracle and its refinement), the local moves (relaxation, '
            f'weights, pruning), each escape move (with the additions and '
            f'relaxations its trials make), the polish and the certificate; '
            f'time spent inside another phase counts for the outermost one. '
            f'"Trials": escape trials each move yielded.\n\n'
            + markdown_table(header, summary) + '\n\n' + '\n\n'.join(blocks))


#: The code before the lattice fits were compiled and batched (the commit
#: before them): "old" of `lattice_fit_section`.
LATTICE_BASELINE = 'c5a3a53'

#: The lattice-fit cases: the defects of ``zone_axes.py`` (7 x 7 square
#: lattice, blur 0.15 a, 96 cells) at 0/45/90 degrees, 1 % noise, seed 0.
LATTICE_CASES = ('vacancy', 'grain_boundary')

_LATTICE_WORKER = r"""
import json, os, sys, time, warnings
warnings.filterwarnings('ignore')
sys.path.insert(0, sys.argv[3])
import numpy as np
import odl_atoms as oa
from odl_atoms import kernels
from odl_atoms.reconstruction import fit_lattices
from odl_atoms.solvers import starts as starts_module

kernels.warm_up()
clock = time.process_time
spent = [0.0, 0]
fit_class = starts_module._LatticeFit
original = fit_class.best


def best(self, *args, **kwargs):
    # Outermost calls only: `best_single` calls `best`.
    if spent[1]:
        return original(self, *args, **kwargs)
    spent[1], t0 = 1, clock()
    try:
        return original(self, *args, **kwargs)
    finally:
        spent[0] += clock() - t0
        spent[1] = 0


fit_class.best = best
from global_search import BLUR, N_DETECTOR, make_phantom

# Warm up: first-call costs (imports, caches) before any timing.
tiny = oa.defect_phantom('vacancy', shape=(3, 3))
fit_lattices(oa.simulate(tiny.measure, np.radians([0, 45, 90]), 0.43,
                         n_detector=48, noise=0.01, seed=0))
case, mode = sys.argv[1], sys.argv[2]
phantom = make_phantom(case)
a = phantom.lattice_spacing
measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]), BLUR * a,
                       n_detector=N_DETECTOR, noise=0.01, seed=0)
spent[0] = 0.0
t0 = clock()
if mode == 'fit':
    fits, chosen = fit_lattices(measured)
    total = clock() - t0
    out = dict(fits=[[f.lattice, f.spacing, f.misfit, len(f.positions)]
                     for f in fits],
               chosen=None if chosen is None else chosen.lattice)
else:
    result = oa.reconstruct(measured, seed=0)
    total = clock() - t0
    match = oa.match_atoms(phantom.measure, result.measure)
    out = dict(n_atoms=result.n_atoms, f1=match.f1, exact=bool(match.exact),
               objective=result.info['certificate'].objective,
               best_start=result.info.get('best_start'))
out.update(total=total, lattice=spent[0], module=oa.__file__)
print(json.dumps(out))
"""


def run_lattice(case, mode, root):
    """``fit_lattices`` (``mode='fit'``) or the default `reconstruct`
    (``'reconstruct'``) of ``case`` with the code under ``root``, in a
    fresh process; the worker's JSON answer."""
    env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS='1',
               OPENBLAS_NUM_THREADS='1')
    out = subprocess.run(
        [sys.executable, '-c', _LATTICE_WORKER, case, mode,
         os.path.join(root, 'benchmarks')],
        env=env, capture_output=True, text=True, cwd=root)
    if out.returncode:
        raise RuntimeError(f'{case} {mode} with {root} failed:\n{out.stderr}')
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    if not answer['module'].startswith(root):
        raise RuntimeError(f'{case}: imported {answer["module"]}, not the '
                           f'code under {root}')
    return answer


def lattice_fit_section(commit=LATTICE_BASELINE, cases=LATTICE_CASES,
                        repeat=2, current=None):
    """CPU time of the lattice fits and of the default reconstruction
    around them, old code against new, alternating in fresh processes."""
    old_root = old_checkout(commit)
    new_root = (old_checkout(current) if current else
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rows = []
    try:
        for case in cases:
            for mode in ('fit', 'reconstruct'):
                runs = {'old': None, 'new': None}
                loads = {'old': [], 'new': []}
                # Old and new alternate: the load drifts, both see it.
                for _ in range(repeat):
                    for label, root in (('old', old_root), ('new', new_root)):
                        before = load()
                        answer = run_lattice(case, mode, root)
                        loads[label].append(0.5 * (before + load()))
                        if (runs[label] is None
                                or answer['total'] < runs[label]['total']):
                            runs[label] = answer
                        print(case, mode, label, round(answer['total'], 2),
                              flush=True)
                old, new = runs['old'], runs['new']
                if mode == 'fit':
                    def answer(r):
                        return '; '.join(f'{name} {spacing:.4f} A, misfit '
                                         f'{misfit:.4g}, {n} sites'
                                         for name, spacing, misfit, n
                                         in r['fits'])
                    same = all(
                        o[0] == n[0] and o[3] == n[3]
                        and abs(o[1] / n[1] - 1) < 1e-6
                        and abs(o[2] - n[2]) <= 1e-6 * max(abs(o[2]), 1)
                        for o, n in zip(old['fits'], new['fits'])) and \
                        len(old['fits']) == len(new['fits'])
                else:
                    def answer(r):
                        return (f'{r["n_atoms"]} atoms, F1 {r["f1"]:.3f}, '
                                f'objective {r["objective"]:.6f}, '
                                f'{r["best_start"]}')
                    same = (old['n_atoms'] == new['n_atoms']
                            and old['f1'] == new['f1']
                            and abs(old['objective'] - new['objective'])
                            <= 1e-6 * abs(old['objective']))
                label = ('`fit_lattices`' if mode == 'fit'
                         else '`reconstruct` (defaults)')
                rows.append([
                    case.replace('_', ' '), label,
                    f'{old["total"]:.2f}', f'{new["total"]:.2f}',
                    f'{old["total"] / new["total"]:.2f}',
                    f'{old["lattice"]:.2f} ({100 * old["lattice"] / old["total"]:.0f} %)',
                    f'{new["lattice"]:.2f} ({100 * new["lattice"] / new["total"]:.0f} %)',
                    f'{old["lattice"] / max(new["lattice"], 1e-9):.2f}',
                    'yes' if same else 'NO',
                    answer(new) if same else
                    f'old: {answer(old)}; new: {answer(new)}',
                    ' / '.join(f'{min(loads[k]):.1f}-{max(loads[k]):.1f}'
                               for k in ('old', 'new'))])
    finally:
        shutil.rmtree(old_root, ignore_errors=True)
        if current:
            shutil.rmtree(new_root, ignore_errors=True)
    header = ['case', 'run', 'old (s)', 'new (s)', 'old / new',
              'lattice searches old (s)', 'lattice searches new (s)',
              'old / new (searches)', 'same answer', 'answer',
              'load (old / new)']
    return ('## Lattice fits: old code against new\n\n'
            f'What `lattice=\'auto\'` costs: `fit_lattices` (every named '
            f'lattice fitted with its spacing: the spacing scan, then '
            f'occupation and affine rounds) and the default '
            f'`odl_atoms.reconstruct(measured, seed=0)` that runs it and then '
            f'the lattice starts, on the 7 x 7 square lattice of '
            f'`zone_axes.py` (blur 0.15 a, 96 cells) at 0/45/90 degrees, 1 % '
            f'noise, seed 0. Code of commit {commit} (a `git archive`) and of '
            f'{"commit " + current if current else "this tree"}, alternating '
            f'in fresh processes, {repeat} runs each, the fastest shown: CPU '
            f'seconds (`time.process_time`, one BLAS thread, numba kernels '
            f'compiled before timing). "Lattice searches": the time inside '
            f'`_LatticeFit.best` (site sets, their misfits and occupation '
            f'QPs: the part this work changed), in the scan, the rounds and '
            f'the starts. Same answer: the same lattices, site counts, '
            f'spacings to 1e-6 and misfits (fits), the same atoms, F1 and '
            f'objective to 1e-6 (reconstructions). Loads: 1-minute load '
            f'average, least and most over the runs.\n\n'
            + markdown_table(header, rows))


_TORCH_SCRIPT = r'''
import json, os, sys, time
import numpy as np
import odl
from odl.applications import tomo
from odl_atoms.geometry import DetectorFrame
from odl_atoms.projection_torch import TorchFrame, TorchStencil
geometry = tomo.Parallel2dGeometry(odl.uniform_partition(0, np.pi, 5),
                                   odl.uniform_partition(-30, 30, 200))
frame = TorchFrame(DetectorFrame.from_geometry(geometry), 'cpu')
x = np.random.default_rng(0).uniform(-20, 20, (1000, 2))
w = np.ones(1000)
TorchStencil(frame, x, 0.4).project(w)
repeat = int(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(repeat):
    TorchStencil(frame, x, 0.4).project(w)
print(json.dumps([(time.perf_counter() - t0) / repeat,
                  (time.process_time() - c0) / repeat]))
'''


def torch_section(repeat=5):
    """The torch CPU path with one thread (the package's setting) and with
    torch's default, in fresh processes."""
    import torch

    default = torch.get_num_threads()
    rows = []
    for label, threads in ((f'torch default ({default})', default),
                           ('one (`cpu_threads`)', 1)):
        env = dict(os.environ, ODL_ATOMS_TORCH_THREADS=str(threads))
        before = load()
        out = subprocess.run([sys.executable, '-c', _TORCH_SCRIPT,
                              str(repeat)], env=env, capture_output=True,
                             text=True, check=True).stdout
        wall, cpu = json.loads(out.strip().splitlines()[-1])
        rows.append([label, f'{wall * 1e3:.1f}', f'{cpu * 1e3:.1f}',
                     f'{0.5 * (before + load()):.1f}'])
        print(rows[-1], flush=True)
    return ('## Torch on the CPU: threads\n\n'
            'A `TorchStencil` (`impl=\'pytorch\'` on the CPU) of 1000 atoms '
            'built and projected (5 angles, 200 cells), mean of '
            f'{repeat} calls, with the torch threads '
            '`odl_atoms.projection_torch.cpu_threads` sets (one, or '
            '`ODL_ATOMS_TORCH_THREADS`) and with torch\'s default of one per '
            'core. The package uses one; the torch path is for GPUs, the '
            'NumPy and compiled paths are faster on the CPU.\n\n'
            + markdown_table(['threads', 'wall (ms)', 'CPU (ms)', 'load'],
                             rows))


#: Cases of `escapes_section`: (crystal, defect, angles in degrees, noise).
ESCAPE_CASES = (('square', 'vacancy', (0, 45, 90), 0.01),
                ('square', 'grain_boundary', (31.9, 117.5, 162.9), 0.01),
                ('hexagonal', 'vacancy', (0, 60), 0.01),
                ('hexagonal', 'displaced', (0, 30), 0.01))

_ESCAPES_WORKER = """
import json, sys, time, warnings
warnings.filterwarnings('ignore')
import numpy as np
sys.path.insert(0, sys.argv[6])
import odl_atoms as oa
from global_search import BLUR, N_DETECTOR, make_phantom
crystal, defect, angles, noise, escapes = sys.argv[1:6]
phantom = make_phantom(defect, crystal)
a = phantom.lattice_spacing
measured = oa.simulate(phantom.measure,
                       np.radians([float(t) for t in angles.split('/')]),
                       BLUR * a, n_detector=N_DETECTOR, noise=float(noise),
                       seed=0)
escapes = escapes if escapes == 'auto' else int(escapes)
t0 = time.process_time()
result = oa.reconstruct(measured, escape_starts=escapes)
total = time.process_time() - t0
match = oa.match_atoms(phantom.measure, result.measure)
print(json.dumps(dict(total=total, f1=match.f1, exact=bool(match.exact))))
"""


def escapes_section(cases=ESCAPE_CASES, repeat=2):
    """CPU time of the default reconstruction with ``escape_starts=1`` and
    ``'auto'``, alternating in fresh processes (the fastest of
    ``repeat``)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1')
    rows = []
    for crystal, defect, angles, noise in cases:
        key = '/'.join(f'{t:g}' for t in angles)
        runs, loads = {}, {}
        for _ in range(repeat):
            for escapes in ('1', 'auto'):
                before = load()
                out = subprocess.run(
                    [sys.executable, '-c', _ESCAPES_WORKER, crystal, defect,
                     key, str(noise), escapes,
                     os.path.join(root, 'benchmarks')],
                    env=env, capture_output=True, text=True, cwd=root)
                if out.returncode:
                    raise RuntimeError(out.stderr)
                answer = json.loads(out.stdout.strip().splitlines()[-1])
                loads.setdefault(escapes, []).append(0.5 * (before + load()))
                if (escapes not in runs
                        or answer['total'] < runs[escapes]['total']):
                    runs[escapes] = answer
                print(crystal, defect, key, escapes,
                      round(answer['total'], 2), flush=True)
        one, auto = runs['1'], runs['auto']
        rows.append([crystal, defect, key, f'{100 * noise:g} %',
                     f'{one["total"]:.1f}', f'{auto["total"]:.1f}',
                     f'{auto["total"] / one["total"]:.2f}',
                     f'{one["f1"]:.3f} / {auto["f1"]:.3f}',
                     f'{np.mean(loads["1"] + loads["auto"]):.1f}'])
    table = markdown_table(
        ['crystal', 'defect', 'angles', 'noise', 'escape_starts=1 CPU (s)',
         "'auto' CPU (s)", 'ratio', 'F1 (1 / auto)', 'load'], rows)
    return ('## Two starts continuing with the escapes\n\n'
            '`odl_atoms.reconstruct(measured, escape_starts=E)` with '
            "E = 1 (the default until 7f88c51) and 'auto' (the default: 2 "
            'in 2D), the fastest of '
            f'{repeat} fresh processes each, alternating; CPU seconds of the '
            'whole call (lattice fits included).\n\n' + table)


def demo_inner_section(repeat=5):
    """The demo's L-BFGS-B runs and addition energies, replayed both ways."""
    from scipy.optimize import minimize

    import odl_atoms as oa
    from odl_atoms.descent import lbfgsb
    from odl_atoms.problem import Problem
    from odl_atoms.solvers.adcg import descent as descent_module
    from odl_atoms.solvers.adcg import oracle as oracle_module

    from odl_atoms.cli import (DEMO_ANGLES_DEG, DEMO_DETECTOR, DEMO_NOISE,
                               DEMO_SEED, DEMO_SIGMA)
    phantom = oa.defect_phantom('vacancy')
    measured = oa.simulate(phantom.measure, np.radians(DEMO_ANGLES_DEG),
                           DEMO_SIGMA, n_detector=DEMO_DETECTOR,
                           noise=DEMO_NOISE, seed=DEMO_SEED)
    problem = Problem(measured.operator(), measured.element(),
                      potential=phantom.lattice_spacing,
                      noise_std=measured.noise_std or 0.0)
    runs, oracle_calls = [], []
    local_minimize = descent_module.LocalDescent._minimize
    addition_energies = oracle_module.addition_energies

    def record_run(self, fun, x0, lo, hi):
        runs.append((fun, x0.copy(), np.array(lo), np.array(hi),
                     self.maxiter))
        return local_minimize(self, fun, x0, lo, hi)

    def record_oracle(potential, positions, points, **kwargs):
        oracle_calls.append((potential, np.array(positions), points,
                             kwargs))
        return addition_energies(potential, positions, points, **kwargs)

    descent_module.LocalDescent._minimize = record_run
    oracle_module.addition_energies = record_oracle
    try:
        oa.ADCG().solve(problem)
    finally:
        descent_module.LocalDescent._minimize = local_minimize
        oracle_module.addition_energies = addition_energies

    def through_minimize(fun, x0, lo, hi, maxiter):
        return minimize(fun, x0, jac=True, method='L-BFGS-B',
                        bounds=list(zip(lo, hi)),
                        options={'maxiter': maxiter}).x

    def through_lbfgsb(fun, x0, lo, hi, maxiter):
        return lbfgsb(fun, x0, lo, hi, maxiter=maxiter).x

    def energies(backend):
        with kernels.use_backend(backend):
            return [addition_energies(p, x, g, **kwargs)
                    for p, x, g, kwargs in oracle_calls]

    evaluations = [0]

    def replay(driver):
        def counted(fun):
            def wrapped(x):
                evaluations[0] += 1
                return fun(x)
            return wrapped
        return [driver(counted(fun), *rest) for fun, *rest in runs]

    pairs = [('L-BFGS-B runs', f'{len(runs)} runs',
              lambda: replay(through_minimize),
              lambda: replay(through_lbfgsb),
              '`minimize`', '`lbfgsb`'),
             ('addition energies', f'{len(oracle_calls)} calls',
              lambda: energies('numpy'), lambda: energies('numba'),
              'NumPy (KD-trees, the grid\'s cached)', 'compiled')]
    rows = []
    for name, calls, old, new, old_label, new_label in pairs:
        times, answers, counts = {'old': [], 'new': []}, {}, {}
        before = load()
        for _ in range(repeat):
            for key, func in (('old', old), ('new', new)):
                evaluations[0] = 0
                t0 = time.process_time()
                answers[key] = func()
                times[key].append(time.process_time() - t0)
                counts[key] = evaluations[0]
        if name == 'L-BFGS-B runs':
            same = all(np.array_equal(a, b) for a, b in
                       zip(answers['old'], answers['new']))
            agreement = (f'{"bit-identical" if same else "DIFFERENT"}; '
                         f'{counts["old"]} and {counts["new"]} evaluations')
        else:
            err = max(float(np.abs(a[0] - b[0]).max()) for a, b in
                      zip(answers['old'], answers['new']))
            scale = max(float(np.abs(b[0]).max()) for b in answers['old'])
            same = all(np.array_equal(a[1], b[1]) for a, b in
                       zip(answers['old'], answers['new']))
            agreement = (f'energies within {err / scale:.1e} of the largest; '
                         f'nearest distances '
                         f'{"equal" if same else "DIFFERENT"}')
        old_t, new_t = np.median(times['old']), np.median(times['new'])
        rows.append([name, calls, f'{old_label} {old_t:.3f}',
                     f'{new_label} {new_t:.3f}', f'{old_t / new_t:.1f}',
                     agreement, f'{0.5 * (before + load()):.1f}'])
    return ('## The demo\'s inner calls, replayed\n\n'
            'The L-BFGS-B runs of the local moves (`LocalDescent._minimize`) '
            'and the oracle\'s addition energies of one ADCG solve of '
            '`odl-atoms demo`, recorded and replayed with the old and the '
            f'new call, alternating, {repeat} times each; median CPU '
            'seconds of all calls (the objective evaluations included in the '
            'L-BFGS-B runs).\n\n'
            + markdown_table(['calls', 'count', 'old (s)', 'new (s)',
                              'old / new', 'answers', 'load'], rows))


SECTIONS = {'objective': objective_section, 'forward': forward_section,
            'cold': cold_start_section, 'phases': phases_section,
            'lattice': lattice_fit_section, 'escapes': escapes_section,
            'torch': torch_section, 'demo': demo_inner_section}


def previous_sections(path):
    """``{heading: text}`` of the ``## `` sections of an earlier results
    file (kept when this run does not redo them)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        text = f.read()
    blocks = {}
    for part in text.split('\n## ')[1:]:
        blocks[part.split('\n', 1)[0]] = '## ' + part.rstrip('\n')
    return blocks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='10^3 atoms only, fewer repeats')
    parser.add_argument('--sections', nargs='+', choices=list(SECTIONS),
                        default=list(SECTIONS),
                        help='sections to run (the others are kept from the '
                             'existing results file)')
    parser.add_argument('--current', default=None,
                        help='commit timed as the new code in the phases '
                             'and lattice sections (default: this tree)')
    parser.add_argument('--baseline', default=BASELINE,
                        help='commit whose code is "old" in the phases '
                             f'section (default {BASELINE})')
    parser.add_argument('--output', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results', 'speed.md'))
    args = parser.parse_args(argv)
    if not kernels.AVAILABLE:
        parser.error('numba is not installed: nothing to compare')
    sizes = (10 ** 3,) if args.quick else (10 ** 3, 10 ** 4)
    kept = previous_sections(args.output)
    blocks = {}
    for name in args.sections:
        print(f'--- {name}', flush=True)
        if name == 'objective':
            block = objective_section(
                sizes, (15, 5, 2) if args.quick else (50, 11, 5))
        elif name == 'forward':
            block = forward_section(sizes, 3 if args.quick else 7)
        elif name == 'phases':
            block = phases_section(args.baseline,
                                   repeat=1 if args.quick else 3,
                                   current=args.current)
        elif name == 'lattice':
            block = lattice_fit_section(repeat=1 if args.quick else 2,
                                        current=args.current)
        elif name == 'escapes':
            block = escapes_section(repeat=1 if args.quick else 2)
        elif name == 'torch':
            block = torch_section(2 if args.quick else 5)
        elif name == 'demo':
            block = demo_inner_section(2 if args.quick else 5)
        else:
            block = cold_start_section()
        blocks[block.split('\n', 1)[0][3:]] = block
    # Sections not run this time are kept as they were (each says its
    # own loads).
    order = list(kept) + [k for k in blocks if k not in kept]
    write_result(args.output, 'Speed of the reconstruction',
                 '\n\n'.join(blocks.get(k, kept.get(k)) for k in order))


if __name__ == '__main__':
    main()
