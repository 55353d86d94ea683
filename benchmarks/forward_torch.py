"""Forward projection on ODL's NumPy vs PyTorch array backends.

For 10^3 and 10^4 atoms in 2D and 3D (same lattice, geometry and sigma as
``forward.py``), time ``op(measure)`` of `GaussianRayTransform` with
``impl='numpy'`` and with ``impl='pytorch'`` on the CPU (and on CUDA when torch
sees a GPU), float64, best of 3, the window stencil rebuilt every call. Also
checks that the two results agree.

torch runs with one intra-op thread by default (``--threads``): the NumPy
path's kernels (``ndtr``, ``bincount``) are single-threaded too, and on a
machine whose cores are busy, torch's OpenMP threads wait on each other (on a
loaded 2-core machine, 2 threads made every small kernel 10-100x slower).

Usage::

    python benchmarks/forward_torch.py

Writes ``benchmarks/results/forward_torch.md``.
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import markdown_table, write_result  # noqa: E402
from forward import CELL, N_ANGLES, SIGMA, best_time, problem  # noqa: E402

from odl_atoms import GaussianRayTransform  # noqa: E402


def run_case(n, d, devices):
    n, n_det, geometry, measure = problem(n, d)
    space = measure.space
    ref = GaussianRayTransform(space, geometry, SIGMA)
    # Evict the cached stencil so every timed call builds it (as forward.py).
    t_np = best_time(lambda: ref(measure), 3,
                     lambda: ref.stencil(np.zeros((1, d))))
    expected = ref(measure).data
    times, errors = [], []
    for device in devices:
        op = GaussianRayTransform(space, geometry, SIGMA, impl='pytorch',
                                  device=device)

        def call():
            op(measure)
            if device != 'cpu':
                torch.cuda.synchronize()

        times.append(best_time(call, 3,
                               lambda: op.device_stencil(np.zeros((1, d)))))
        got = op(measure).data.cpu().numpy()
        errors.append(np.abs(got - expected).max() / np.abs(expected).max())
    return n, n_det, t_np, times, errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--output', default=os.path.join(
        os.path.dirname(__file__), 'results', 'forward_torch.md'))
    parser.add_argument('--threads', type=int, default=1,
                        help='torch intra-op threads (default 1)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    rows = []
    for d in (2, 3):
        for n in (10 ** 3, 10 ** 4):
            n, n_det, t_np, times, errors = run_case(n, d, devices)
            row = [f'{d}D', n, 'x'.join([str(n_det)] * (d - 1)),
                   f'{t_np * 1e3:.1f}']
            for t in times:
                row += [f'{t * 1e3:.1f}', f'{t / t_np:.2f}']
            row.append(f'{max(errors):.1e}')
            rows.append(row)
            print(row, flush=True)
    header = ['dim', 'atoms', 'detector', 'numpy (ms)']
    for device in devices:
        header += [f'torch {device} (ms)', f'torch {device} / numpy']
    header.append('max rel. difference')
    text = (f'`op(measure)` of GaussianRayTransform, float64, {N_ANGLES} '
            f'angles, sigma {SIGMA} A, detector cell {CELL} A; best of 3, '
            f'stencil rebuilt every call. torch {torch.__version__}, '
            f'{torch.get_num_threads()} torch thread(s), load average '
            f'{os.getloadavg()[0]:.1f} at the end (other jobs on the machine '
            f'make single runs noisy). A ratio above 1 means torch is '
            f'slower.\n\n' + markdown_table(header, rows))
    write_result(args.output, 'Forward operator: NumPy vs PyTorch backend',
                 text)


if __name__ == '__main__':
    main()
