"""Speed of the reconstruction's inner loop: NumPy path vs compiled kernels.

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
  cache filled (loading).

Times are CPU seconds of this process (``time.process_time``: the machine
is shared, and CPU time is what another job's load disturbs least), medians;
the load average (``os.getloadavg``, 1 minute) when each row was measured
stands next to it. Compare ratios more than absolute times.

Usage::

    python benchmarks/speed.py            # all sections (a few minutes)
    python benchmarks/speed.py --quick    # fewer sizes and repeats

Writes ``benchmarks/results/speed.md``.
"""

import argparse
import json
import os
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


SECTIONS = {'objective': objective_section, 'forward': forward_section,
            'cold': cold_start_section}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='10^3 atoms only, fewer repeats')
    parser.add_argument('--sections', nargs='+', choices=list(SECTIONS),
                        default=list(SECTIONS), help='sections to run')
    parser.add_argument('--output', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results', 'speed.md'))
    args = parser.parse_args(argv)
    if not kernels.AVAILABLE:
        parser.error('numba is not installed: nothing to compare')
    sizes = (10 ** 3,) if args.quick else (10 ** 3, 10 ** 4)
    blocks = []
    for name in args.sections:
        print(f'--- {name}', flush=True)
        if name == 'objective':
            blocks.append(objective_section(
                sizes, (15, 5, 2) if args.quick else (50, 11, 5)))
        elif name == 'forward':
            blocks.append(forward_section(sizes, 3 if args.quick else 7))
        else:
            blocks.append(cold_start_section())
    write_result(args.output, 'Speed: NumPy path vs compiled kernels',
                 '\n\n'.join(blocks))


if __name__ == '__main__':
    main()
