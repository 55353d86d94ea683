"""Throughput of the Gaussian-atom ray transform vs ASTRA's pixel transform.

For n = 10^2 ... 10^5 atoms (jittered simple-cubic/square lattice, spacing
3 angstrom, sigma 0.4 angstrom) and 5 projections on a detector with 0.5
angstrom cells, time in one run:

- our forward projection ``op(measure)`` and the adjoint of its Jacobian
  (the gradient of a data term), and their peak extra memory;
- ASTRA's forward and back projection (``odl.applications.tomo.RayTransform``,
  CPU backend) of the equivalent pixel volume (pixel = detector cell) over
  the same box: in 3D slice by slice, the only way ASTRA runs 3D on a CPU.

Usage::

    python benchmarks/forward.py            # full table (a few minutes)
    python benchmarks/forward.py --quick    # n <= 10^3

Writes ``benchmarks/results/forward.md``.
"""

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np
import odl
from odl.applications import tomo

sys.path.insert(0, os.path.dirname(__file__))
from _common import markdown_table, write_result  # noqa: E402

from odl_atoms import GaussianRayTransform, SparseMeasureSpace  # noqa: E402

SPACING = 3.0
SIGMA = 0.4
CELL = 0.5
N_ANGLES = 5


def lattice(n, d, seed=0):
    """About n atoms on a jittered square/cubic lattice, and the box size."""
    side = int(round(n ** (1 / d)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * d, indexing='ij'), -1)
    pos = (grid.reshape(-1, d) - (side - 1) / 2) * SPACING
    pos += np.random.default_rng(seed).normal(scale=0.1, size=pos.shape)
    half = side * SPACING / 2 + 2.0
    return pos, half


def best_time(func, repeat, setup=None):
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_memory(func):
    """Peak memory (MB) allocated while running ``func`` (tracemalloc)."""
    tracemalloc.start()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def problem(n, d):
    """The lattice of about ``n`` atoms, its geometry and its measure.

    Returns ``(n, n_det, geometry, measure)`` (``n`` the actual count).
    """
    pos, half = lattice(n, d)
    n_det = int(np.ceil(2 * half / CELL))
    angles = odl.uniform_partition(0, np.pi, N_ANGLES)
    if d == 2:
        geometry = tomo.Parallel2dGeometry(
            angles, odl.uniform_partition(-half, half, n_det))
    else:
        geometry = tomo.Parallel3dAxisGeometry(
            angles, odl.uniform_partition([-half] * 2, [half] * 2, [n_det] * 2))
    space = SparseMeasureSpace([-half] * d, [half] * d)
    return pos.shape[0], n_det, geometry, space.element(pos)


def run_case(n, d):
    n, n_det, geometry, measure = problem(n, d)
    space = measure.space
    half = float(space.max_pt[0])
    angles = geometry.motion_partition
    op = GaussianRayTransform(space, geometry, SIGMA)
    params = measure.to_parameters()
    atoms_op = op.parametrized(n)
    repeat = 3 if n <= 10 ** 4 else 1

    # The operator caches the window stencil of the last positions (solvers
    # evaluate value and gradient at the same point); evict it before every
    # timed call so that each pays for the full computation.
    def evict():
        op.stencil(np.zeros((1, d)))

    t_fwd = best_time(lambda: op(measure), repeat, evict)
    data = op(measure)
    jac = atoms_op.derivative(params)
    t_adj = best_time(lambda: jac.adjoint(data), repeat, evict)
    evict()
    mem = peak_memory(lambda: jac.adjoint(data))

    # ASTRA: equivalent pixel volume, pixel = detector cell, same box.
    n_pix = int(np.ceil(2 * (half - 2.0) / CELL)) + 8
    vol2 = odl.uniform_discr([-n_pix * CELL / 2] * 2, [n_pix * CELL / 2] * 2,
                             [n_pix] * 2, dtype='float32')
    geom2 = tomo.Parallel2dGeometry(angles,
                                    odl.uniform_partition(-half, half, n_det))
    ray = tomo.RayTransform(vol2, geom2, impl='astra_cpu')
    image = vol2.one()
    sino = ray(image)
    slices = 1 if d == 2 else n_pix
    t_ray = best_time(lambda: [ray(image) for _ in range(slices)], repeat)
    t_back = best_time(lambda: [ray.adjoint(sino) for _ in range(slices)],
                       repeat)
    return dict(d=d, n=n, det='x'.join([str(n_det)] * (d - 1)),
                vol='x'.join([str(n_pix)] * d), fwd=t_fwd, adj=t_adj, mem=mem,
                ray=t_ray, back=t_back)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='n <= 1000 only')
    parser.add_argument('--output', default=os.path.join(
        os.path.dirname(__file__), 'results', 'forward.md'))
    args = parser.parse_args(argv)
    sizes = [10 ** 2, 10 ** 3] if args.quick else [10 ** 2, 10 ** 3, 10 ** 4,
                                                    10 ** 5]
    rows = []
    for d in (2, 3):
        for n in sizes:
            r = run_case(n, d)
            rows.append([
                f'{r["d"]}D', r['n'], r['det'], r['vol'],
                f'{r["fwd"] * 1e3:.1f}', f'{r["n"] / r["fwd"]:.2e}',
                f'{r["adj"] * 1e3:.1f}', f'{r["mem"]:.0f}',
                f'{r["ray"] * 1e3:.1f}', f'{r["back"] * 1e3:.1f}',
                f'{r["ray"] / r["fwd"]:.2g}', f'{r["back"] / r["adj"]:.2g}'])
            print(rows[-1], flush=True)
    header = ['dim', 'atoms', 'detector', 'ASTRA volume', 'ours fwd (ms)',
              'atoms/s', 'ours grad (ms)', 'grad peak MB', 'ASTRA fwd (ms)',
              'ASTRA back (ms)', 'ASTRA/ours fwd', 'ASTRA back/ours grad']
    text = (f'{N_ANGLES} angles, sigma {SIGMA} A, detector cell {CELL} A, '
            f'lattice spacing {SPACING} A. "grad" is the adjoint of the '
            f'Jacobian (positions and weights). ASTRA: CPU backend on the '
            f'equivalent pixel volume (pixel = cell); 3D runs as 2D slices.\n\n'
            + markdown_table(header, rows))
    write_result(args.output, 'Forward operator throughput', text)


if __name__ == '__main__':
    main()
