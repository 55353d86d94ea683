"""How ADCG and SIRT + picking scale with the number of atoms in 3D.

Ground truths: fcc octahedra from `odl_atoms.nanoparticle` (``ase.cluster``)
of ``size`` atoms per edge (146, 344, 1156, 3281, 10425 atoms for sizes 6,
8, 12, 17, 25), one vacancy per 300 atoms (at least one) and 0.05 angstrom
rms displacements; sigma = 0.15 nearest-neighbour distances (0.43 A),
detector cells of 0.5 A, 5 projections over +-70 degrees about one tilt axis
(``Parallel3dAxisGeometry``), 1 % Gaussian noise.

For every size, in a fresh process (so that the peak resident memory,
``ru_maxrss``, is that of the case alone):

- ADCG with its defaults (batch additions in 3D), the lattice spacing as
  the potential's ``r_min`` and the known noise level: wall time, peak
  memory, F1 (`match_atoms`);
- ADCG started from `LatticeStart('fcc')` only (the fcc lattice that fits
  the data best, its offset searched; ase.cluster's cubic axes are x, y, z):
  the same;
- SIRT (ASTRA on the CPU, slice by slice) + atom picking: the same;
- the forward operator alone, ``op(measure)``, and the gradient of the data
  term (adjoint Jacobian), up to 10^5 atoms;
- with ``--kinds adcg/decahedron adcg/icosahedron``: ADCG's defaults on
  twinned particles (no single lattice fits them) of about 150-180 and
  900-1100 atoms, the same measurement.

The growth exponent ``b`` of ``time ~ n^b`` is the least-squares slope in
log-log coordinates over the sizes that ran.

Usage::

    python benchmarks/scale.py                  # sizes 6 8 12 17 (25 if
                                                # --sizes says so)
    python benchmarks/scale.py --sizes 6 8 12 --budget 1200

Sizes whose predicted ADCG time (from the fitted exponent) would exceed the
remaining ``--budget`` seconds are skipped and reported as such. Writes
``benchmarks/results/scale.md`` and the raw rows to ``scale.json``;
``--resume`` keeps the stored rows and runs only the missing cases (e.g.
``--sizes 25 --resume`` adds 10^4 atoms to an earlier run; ``--kinds
adcg/decahedron adcg/icosahedron --resume`` adds the twinned particles).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
# Measure the checkout this script lives in, not an installed odl_atoms.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import markdown_table, write_result  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = (6, 8, 12, 17)
FORWARD_SIZES = (6, 12, 25, 53)   # ~10^2 ... 10^5 atoms
ANGLES = np.radians(np.linspace(-70, 70, 5))
NOISE = 0.01
#: Reconstruction methods measured, and their labels in the table.
KINDS = {'adcg': 'ADCG', 'adcg-lattice': 'ADCG + LatticeStart(fcc)',
         'sirt': 'SIRT + picking',
         'adcg/decahedron': 'ADCG, twinned decahedra',
         'adcg/icosahedron': 'ADCG, icosahedra'}
#: Kinds run by default (the twinned particles are added with ``--kinds``).
DEFAULT_KINDS = ('adcg', 'adcg-lattice', 'sirt')
#: Particles other than octahedra, and their sizes (``nanoparticle``'s
#: ``size``: about 180/1100 and 150/920 atoms).
SHAPES = {'adcg/decahedron': 'decahedron', 'adcg/icosahedron': 'icosahedron'}
SHAPE_SIZES = {'decahedron': (6, 11), 'icosahedron': (4, 7)}


def n_atoms(size, shape='octahedron'):
    """Atoms of the perfect particle."""
    if shape == 'octahedron':
        return (2 * size ** 3 + size) // 3
    import odl_atoms as oa
    return oa.nanoparticle(shape, size=size).n_atoms


def phantom(size, shape='octahedron'):
    import odl_atoms as oa

    n = n_atoms(size, shape)
    return oa.nanoparticle(shape, size=size, vacancies=max(1, n // 300),
                           displacement=0.05, seed=1)


def measurement(ph):
    import odl_atoms as oa

    return oa.simulate(ph.measure, ANGLES, 0.15 * ph.lattice_spacing,
                       detector_cell=0.5, noise=NOISE, seed=0)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case(kind, size):
    """Run one case in this process; return a dict."""
    import odl_atoms as oa
    from odl_atoms.problem import Problem

    ph = phantom(size, SHAPES.get(kind, 'octahedron'))
    measured = measurement(ph)
    op = measured.operator()
    out = dict(kind=kind, size=size, n=ph.n_atoms,
               data=list(measured.data.shape))
    base = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    if kind in ('adcg', 'adcg-lattice') or kind in SHAPES:
        # 'adcg-lattice': started from the fcc lattice that fits the data
        # best (offset searched; ase.cluster's cubic axes are x, y, z).
        starts = ([oa.LatticeStart('fcc')] if kind == 'adcg-lattice'
                  else oa.DEFAULT_STARTS)
        problem = Problem(op, measured.element(),
                          potential=ph.lattice_spacing,
                          noise_std=measured.noise_std)
        result = oa.ADCG(starts=starts).solve(problem)
        out['iterations'] = result.n_iterations
    elif kind == 'sirt':
        problem = Problem(op, measured.element(),
                          noise_std=measured.noise_std)
        result = oa.SIRT().solve(problem)
    elif kind == 'forward':
        measure = ph.measure
        times = []
        for _ in range(3):
            t1 = time.perf_counter()
            data = op(measure)
            times.append(time.perf_counter() - t1)
        out['forward'] = min(times)
        stencil = op.stencil(np.asarray(measure.positions))
        flat = np.asarray(data.data, float).ravel()
        t1 = time.perf_counter()
        stencil.adjoint_jacobian(np.asarray(measure.weights, float), flat)
        out['gradient'] = time.perf_counter() - t1
        out['time'] = time.perf_counter() - t0
        out['memory_mb'] = peak_rss_mb()
        out['base_mb'] = base
        return out
    else:
        raise ValueError(kind)
    out['time'] = time.perf_counter() - t0
    # CPU seconds too: on a shared machine wall time depends on the load.
    out['cpu'] = time.process_time() - c0
    out['load'] = os.getloadavg()[0]
    out['memory_mb'] = peak_rss_mb()
    out['base_mb'] = base
    match = oa.match_atoms(ph.measure, result.measure)
    out.update(f1=match.f1, found=result.n_atoms, precision=match.precision,
               recall=match.recall)
    return out


def run_in_subprocess(kind, size, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), '--case', kind,
           str(size)]
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [os.path.dirname(HERE)] + [p for p in [env.get('PYTHONPATH')] if p])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return dict(kind=kind, size=size, skipped=f'timeout {timeout:.0f} s')
    if proc.returncode != 0:
        return dict(kind=kind, size=size, skipped='failed: '
                    + proc.stderr.strip().splitlines()[-1][:200])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exponent(rows, key='time'):
    """Least-squares slope of log(key) against log(n), or None."""
    pts = [(r['n'], r[key]) for r in rows if key in r and r[key] > 0]
    if len(pts) < 2:
        return None
    n, t = np.log(np.array(pts, float)).T
    return float(np.polyfit(n, t, 1)[0])


def predicted(rows, n, key='time'):
    b = exponent(rows, key)
    last = [r for r in rows if key in r][-1]
    if b is None:
        b = 2.0
    return last[key] * (n / last['n']) ** b


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=SIZES)
    parser.add_argument('--forward-sizes', type=int, nargs='+',
                        default=FORWARD_SIZES)
    parser.add_argument('--budget', type=float, default=1200.0,
                        help='total seconds for the ADCG and SIRT cases')
    parser.add_argument('--resume', action='store_true',
                        help='keep the cases stored in results/scale.json '
                             'and run only the missing ones')
    parser.add_argument('--kinds', nargs='+', choices=list(KINDS),
                        default=list(DEFAULT_KINDS))
    parser.add_argument('--case', nargs=2, metavar=('KIND', 'SIZE'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case[0], int(args.case[1]))))
        return

    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    rows = {kind: [] for kind in KINDS}
    rows['forward'] = []
    store = os.path.join(HERE, 'results', 'scale.json')
    if args.resume and os.path.exists(store):
        with open(store) as f:
            rows.update(json.load(f))
    skipped = []

    def have(kind, size):
        return any(r['size'] == size for r in rows[kind])

    for size in args.forward_sizes:
        if have('forward', size):
            continue
        r = run_in_subprocess('forward', size, 900)
        print(r, flush=True)
        (rows['forward'] if 'skipped' not in r else skipped).append(r)
    plan = [(size, kind) for size in args.sizes for kind in args.kinds
            if kind not in SHAPES]
    plan += [(size, kind) for kind in args.kinds if kind in SHAPES
             for size in SHAPE_SIZES[SHAPES[kind]]]
    for size, kind in plan:
        if have(kind, size):
            continue
        n = n_atoms(size, SHAPES.get(kind, 'octahedron'))
        left = args.budget - (time.perf_counter() - start)
        done = rows[kind]
        guess = predicted(done, n) if done else 0.0
        if guess > left:
            skipped.append(dict(kind=kind, size=size, n=n, skipped=(
                f'predicted {guess:.0f} s > {left:.0f} s left')))
            print(skipped[-1], flush=True)
            continue
        r = run_in_subprocess(kind, size, max(left, 60))
        print(r, flush=True)
        (done if 'skipped' not in r else skipped).append(r)

    for kind in rows:
        rows[kind].sort(key=lambda r: r['n'])
    with open(store, 'w') as f:
        json.dump(rows, f, indent=1)
    load_after = os.getloadavg()[0]
    text = [
        f'Load average (1 min) {load_before:.1f} at the start, '
        f'{load_after:.1f} at the end, on {os.cpu_count()} cores: above the '
        'core count, other processes shared the machine and times are '
        'pessimistic.', '',
        'fcc octahedra (`nanoparticle`), sigma 0.43 A, detector cells 0.5 A, '
        '5 projections over +-70 degrees about one axis, 1 % noise; one '
        'vacancy per 300 atoms, 0.05 A rms displacements; "twinned '
        'decahedra" and "icosahedra": the same with those particles (ADCG\'s '
        'defaults; no single lattice fits them). Both methods are given the '
        "true blur (the operator's sigma) and noise level, ADCG also the "
        'true lattice spacing (r_min), which a user may have to estimate. '
        'Each case in its own '
        'process; memory is its peak resident set (ru_maxrss, including '
        'Python, NumPy, ODL and ASTRA: about '
        f'{rows["adcg"][0]["base_mb"]:.0f} MB before the solve).'
        if rows['adcg'] else '', '',
        '## Reconstruction', '']
    table = []
    for kind, label in KINDS.items():
        for r in rows[kind]:
            table.append([label, r['n'], 'x'.join(map(str, r['data'])),
                          f"{r['time']:.1f}", f"{r['memory_mb']:.0f}",
                          f"{r['f1']:.4f}", r['found']])
    text.append(markdown_table(['solver', 'atoms', 'data', 'time (s)',
                                'peak memory (MB)', 'F1', 'atoms found'],
                               table))
    text.append('')
    for kind, label in KINDS.items():
        b = exponent(rows[kind])
        if b is not None:
            ns = [r['n'] for r in rows[kind]]
            text.append(f'- {label}: time ~ n^{b:.2f} (log-log least squares '
                        f'over n = {min(ns)} ... {max(ns)})')
    text += ['', '## Forward operator alone', '']
    table = [[r['n'], 'x'.join(map(str, r['data'])), f"{r['forward']:.3f}",
              f"{r['gradient']:.3f}", f"{r['memory_mb']:.0f}"]
             for r in rows['forward']]
    text.append(markdown_table(['atoms', 'data', 'forward (s)',
                                'gradient (s)', 'peak memory (MB)'], table))
    text.append('')
    for key in ('forward', 'gradient'):
        b = exponent(rows['forward'], key)
        if b is not None:
            text.append(f'- {key}: time ~ n^{b:.2f}')
    if skipped:
        text += ['', '## Not run', '']
        text += [f"- {r['kind']} size {r['size']}"
                 + (f" ({r['n']} atoms)" if 'n' in r else '')
                 + f": {r['skipped']}" for r in skipped]
    write_result(os.path.join(HERE, 'results', 'scale.md'),
                 'Scaling in 3D (ADCG, SIRT + picking, forward operator)',
                 '\n'.join(text))


if __name__ == '__main__':
    main()
