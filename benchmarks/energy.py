"""Benchmark: Lennard-Jones energy + gradient vs ASE's calculator.

Times one energy and one gradient evaluation of `odl_atoms.LennardJones` on a
thermally perturbed fcc copper crystal (3D, open boundaries) of 10^2 .. 10^5
atoms, next to ASE's `ase.calculators.lj.LennardJones` (energy + forces) on
the same configuration, and reports how far the two results are apart. The
table is printed and written to ``benchmarks/results/energy.md``.

Usage::

    python benchmarks/energy.py [--sizes 100 1000 10000 100000]
                                [--ase-max 100000] [--repeat 3]
"""

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import ase
import numpy as np
import odl
import scipy
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ

from odl_atoms.functionals import LennardJones

RESULTS = Path(__file__).parent / 'results' / 'energy.md'
LATTICE_CONSTANT = 3.61   # Cu, angstrom
EPSILON = 0.4             # eV; any positive value does for timing


def crystal(n_target, rng):
    """Perturbed fcc Cu crystal with about ``n_target`` atoms (4 m^3)."""
    m = max(1, round((n_target / 4) ** (1 / 3)))
    atoms = bulk('Cu', 'fcc', a=LATTICE_CONSTANT, cubic=True).repeat((m,) * 3)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    atoms.pbc = False   # odl_atoms has no periodic images
    return atoms


def best_time(func, repeat):
    """Smallest wall time of ``repeat`` calls of ``func(k)``, and its result."""
    times, result = [], None
    for k in range(repeat):
        start = time.perf_counter()
        result = func(k)
        times.append(time.perf_counter() - start)
    return min(times), result


def run(sizes, ase_max, repeat):
    rng = np.random.default_rng(0)
    rows = []
    for n_target in sizes:
        atoms = crystal(n_target, rng)
        positions = atoms.positions.copy()
        n = len(atoms)
        lj = LennardJones.from_element(odl.rn((n, 3)), 'Cu', epsilon=EPSILON)

        def ours(k):
            # A new point each time: no cache hit across repetitions.
            x = lj.domain.element(positions + 1e-9 * k)
            return lj(x), lj.gradient(x).data

        t_ours, (energy, grad) = best_time(ours, repeat)
        n_pairs = lj._evaluate(lj.domain.element(positions
                                                 + 1e-9 * (repeat - 1)))[1].size

        t_ase = err_e = err_f = None
        if n <= ase_max:
            def reference(k):
                # A fresh calculator builds its neighbour list, as
                # odl_atoms builds its k-d tree, on every call.
                atoms.calc = AseLJ(sigma=lj.sigma, epsilon=lj.epsilon,
                                   rc=lj.cutoff)
                atoms.positions = positions + 1e-9 * k
                return atoms.get_potential_energy(), atoms.get_forces()

            t_ase, (e_ase, f_ase) = best_time(
                reference, repeat if n <= 20000 else 1)
            k = (repeat if n <= 20000 else 1) - 1
            x = lj.domain.element(positions + 1e-9 * k)
            err_e = abs(lj(x) - e_ase) / abs(e_ase)
            err_f = (np.abs(lj.gradient(x).data + f_ase).max()
                     / np.abs(f_ase).max())
        rows.append(dict(n=n, pairs=n_pairs, ours=t_ours, ase=t_ase,
                         err_e=err_e, err_f=err_f))
        print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row):
    def fmt(value, spec):
        return '-' if value is None else format(value, spec)
    speedup = None if row['ase'] is None else row['ase'] / row['ours']
    per_atom = 1e6 * row['ours'] / row['n']
    return (f"| {row['n']:>7d} | {row['pairs']:>9d} | {row['ours']:9.4f} | "
            f"{per_atom:8.2f} | {fmt(row['ase'], '9.3f')} | "
            f"{fmt(speedup, '7.0f')} | {fmt(row['err_e'], '.1e')} | "
            f"{fmt(row['err_f'], '.1e')} |")


HEADER = ('| atoms | pairs | odl_atoms E+grad [s] | [us/atom] | ASE E+F [s] '
          '| speed-up | rel. diff. E | rel. diff. F |\n'
          '|---:|---:|---:|---:|---:|---:|---:|---:|')


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return (f'{cpu}, {os.cpu_count()} cores, {platform.system()} '
            f'{platform.release()}; Python {platform.python_version()}, '
            f'NumPy {np.__version__}, SciPy {scipy.__version__}, '
            f'ASE {ase.__version__}, ODL {odl.__version__}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[100, 1000, 10000, 100000])
    parser.add_argument('--ase-max', type=int, default=100000,
                        help='largest crystal for the (slow) ASE reference')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--output', type=Path, default=RESULTS)
    args = parser.parse_args()

    print(HEADER)
    rows = run(args.sizes, args.ase_max, args.repeat)

    text = '\n'.join([
        '# Lennard-Jones energy + gradient',
        '',
        f'Date: {datetime.datetime.now().isoformat(timespec="seconds")}  ',
        f'Machine: {machine()}',
        '',
        'Perturbed fcc Cu crystal (a = 3.61 angstrom, 0.05 angstrom '
        'Gaussian displacements, open boundaries), '
        '`LennardJones.from_element(space, "Cu")`: r_min = a / sqrt(2), '
        'cut-off 3 sigma (shifted). Times are the best of '
        f'{args.repeat} runs (1 for ASE above 20 000 atoms) of one energy plus '
        'one gradient evaluation (odl_atoms, cKDTree neighbour search) and '
        'of one `get_potential_energy` + `get_forces` (ASE, same '
        'parameters, a fresh calculator each time so that it builds its '
        'neighbour list as odl_atoms builds its k-d tree; ASE reuses the '
        'list while atoms move less than its skin, which makes its later '
        'calls several times cheaper). Relative differences: energy, and '
        'max force error over max force.',
        '',
        HEADER,
        *[format_row(row) for row in rows],
        '',
        'Produced by `python benchmarks/energy.py`.',
        '',
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix('.md.tmp')
    tmp.write_text(text)
    tmp.replace(args.output)
    print(f'\nwritten to {args.output}')


if __name__ == '__main__':
    main()
