"""Does a crystal explain the data? The numbers behind ``lattice='auto'``.

`odl_atoms.reconstruction.fit_lattices` decides from the data alone
whether a crystal lattice explains them: the best single lattice
(`fit_lattice`) if it leaves at most `LATTICE_RESIDUAL` of the data's
energy unexplained, else, in 2D, two domains of a lattice meeting at a
line (`fit_split_lattice`: a grain boundary, an edge dislocation) if they
leave at most `SPLIT_RESIDUAL`. This script measures the unexplained
fractions those thresholds separate: the benchmarks' 7 x 7 square crystals
with a defect (blur 0.15 a, 96 detector cells, ``global_search.py``) at the
zone-axis, 0/60/120 and generic 3-angle sets, noise none and 1 %, against
amorphous sets of 30-40 atoms with a minimum distance of 2.5-2.9 A (no
lattice at all) in the same box, at zone-axis and generic sets, 1 % noise.
Every lattice's single and two-domain fit is computed (``fit_lattices``
computes the two-domain fits only above `SPLIT_TRIGGER`), with the CPU
seconds of each.

Usage::

    python benchmarks/lattice_choice.py            # 90 cases, 2 workers
    python benchmarks/lattice_choice.py --quick    # 6 cases

Writes ``benchmarks/results/lattice_choice.md`` and ``lattice_choice.csv``.
"""

import os
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import (markdown_table, reconstruction_parser,  # noqa: E402
                     run_parallel, write_result, write_rows)
from global_search import (ANGLE_SETS, BLUR, N_DETECTOR,  # noqa: E402
                           make_phantom)

CRYSTALS = ('vacancy', 'interstitial', 'displaced', 'edge_dislocation',
            'grain_boundary')
#: Amorphous sets: (atoms, minimum distance in angstrom), two seeds each.
AMORPHOUS = ((40, 2.5), (36, 2.6), (30, 2.9))
AMORPHOUS_ANGLES = ('0/90', '0/45/90', '0/60/120', '31.9/117.5/162.9',
                    '63.9/66.7/142.3')


def amorphous(space, n, min_distance, seed, margin=2.5):
    """``n`` random positions at least ``min_distance`` apart (no lattice),
    ``margin`` inside the box of ``space``."""
    rng = np.random.default_rng(seed)
    lo = np.asarray(space.min_pt) + margin
    hi = np.asarray(space.max_pt) - margin
    points = []
    for _ in range(200000):
        if len(points) == n:
            break
        p = rng.uniform(lo, hi)
        if all(np.hypot(*(p - q)) >= min_distance for q in points):
            points.append(p)
    return space.element(np.array(points))


def run_case(case):
    """Single and two-domain fits of every 2D lattice to one case; a row."""
    import warnings
    warnings.filterwarnings('ignore', category=UserWarning)
    import odl_atoms as oa
    from odl_atoms.reconstruction import choose_lattice
    from odl_atoms.solvers.starts import (LATTICES_BY_NDIM, fit_lattice,
                                          fit_split_lattice)

    kind, name, angles, noise, seed = case
    box = make_phantom('vacancy')
    a = box.lattice_spacing
    if kind == 'crystal':
        truth = make_phantom(name).measure
    else:
        n, distance = name
        truth = amorphous(box.measure.space, n, distance, seed)
    measured = oa.simulate(truth, np.radians(ANGLE_SETS[angles][1]),
                           BLUR * a, n_detector=N_DETECTOR, noise=noise,
                           seed=seed)
    op, data = measured.operator(), measured.element()
    row = dict(kind=kind, case=name if kind == 'crystal'
               else f'{name[0]} atoms >= {name[1]} A', angles=angles,
               noise=noise, seed=seed, n_atoms=len(truth.positions))
    fits, splits = [], []
    for lattice in LATTICES_BY_NDIM[2]:
        begin = time.process_time()
        single = fit_lattice(op, data, lattice)
        middle = time.process_time()
        split = fit_split_lattice(op, data, single)
        fits.append(single)
        splits.append(split)
        row.update({f'{lattice}_single': single.residual_fraction,
                    f'{lattice}_split': split.residual_fraction,
                    f'{lattice}_spacing': single.spacing,
                    f'{lattice}_split_spacing': split.spacing,
                    f'{lattice}_single_cpu': middle - begin,
                    f'{lattice}_split_cpu': time.process_time() - middle})
    row['best_single'] = min(row['square_single'], row['hexagonal_single'])
    row['best_split'] = min(row['square_split'], row['hexagonal_split'])
    # What `fit_lattices` would choose (it fits two domains only when the
    # single fits leave more than SPLIT_TRIGGER; the rule says the same).
    chosen = choose_lattice(fits, splits)
    row['decision'] = ('none' if chosen is None else
                       f'two domains {chosen.lattice}' if chosen.domains > 1
                       else f'single {chosen.lattice}')
    return row


def cases(quick):
    crystals = [k for k, (c, _) in ANGLE_SETS.items()
                if c in ('zone axes', 'generic 3', 'random 3')]
    out = [('crystal', d, k, noise, 0) for d in CRYSTALS for k in crystals
           for noise in (0.0, 0.01)]
    out += [('amorphous', spec, k, 0.01, seed) for spec in AMORPHOUS
            for seed in (0, 1) for k in AMORPHOUS_ANGLES]
    if quick:
        out = out[::15]
    return out


def percent(x):
    return f'{100 * x:.2f}'


def main(argv=None):
    from odl_atoms.defaults import (LATTICE_RESIDUAL, SPLIT_RESIDUAL,
                                    SPLIT_TRIGGER)

    parser = reconstruction_parser(__doc__)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    begin = time.perf_counter()
    rows = run_parallel(run_case, cases(args.quick), args.workers,
                        desc='lattice fits')
    wall = time.perf_counter() - begin
    rows.sort(key=lambda r: (r['kind'], r['case'], r['angles'], r['noise'],
                             r['seed']))
    write_rows(os.path.join(args.output, 'lattice_choice.csv'), rows)

    groups = {}
    for r in rows:
        key = (r['kind'], r['case'])
        groups.setdefault(key, []).append(r)
    summary = []
    for (kind, case), group in sorted(groups.items()):
        single = [r['best_single'] for r in group]
        split = [r['best_split'] for r in group]
        decisions = [r['decision'] for r in group]
        summary.append([kind, case, len(group),
                        f'{percent(min(single))}-{percent(max(single))}',
                        f'{percent(min(split))}-{percent(max(split))}',
                        ', '.join(f'{d} {decisions.count(d)}'
                                  for d in sorted(set(decisions)))])
    detail = [[r['kind'], r['case'], r['angles'], f"{100 * r['noise']:.0f} %",
               r['seed'], percent(r['square_single']),
               percent(r['hexagonal_single']), percent(r['square_split']),
               percent(r['hexagonal_split']),
               f"{r['square_split_spacing']:.3f}", r['decision'],
               f"{r['square_single_cpu'] + r['hexagonal_single_cpu']:.1f}",
               f"{r['square_split_cpu'] + r['hexagonal_split_cpu']:.1f}"]
              for r in rows]
    text = [
        f'{len(rows)} cases in {wall / 60:.1f} min with {args.workers} '
        f'worker processes (load average {load:.1f} at the start on '
        f'{os.cpu_count()} cores). Unexplained fraction of the data\'s '
        f'energy (%) left by the best single lattice and by the best two '
        f'domains, square or hexagonal; nothing is told but the data and the '
        f'blur. The rule of `fit_lattices` (thresholds in '
        f'`odl_atoms.defaults`): the single lattice if it leaves <= '
        f'{percent(LATTICE_RESIDUAL)} % (LATTICE_RESIDUAL); above '
        f'{percent(SPLIT_TRIGGER)} % (SPLIT_TRIGGER) two domains if they '
        f'leave <= {percent(SPLIT_RESIDUAL)} % (SPLIT_RESIDUAL); else no '
        f'lattice (greedy start alone). "decision": what '
        f'`odl_atoms.reconstruction.choose_lattice`, the rule of '
        f'`fit_lattices`, chooses among these fits.',
        '', '## By case', '',
        markdown_table(['kind', 'case', 'runs', 'best single (%)',
                        'best two domains (%)', 'decision'], summary),
        '', '## Every case', '',
        'CPU seconds of the two single fits and of the two two-domain fits.',
        '',
        markdown_table(['kind', 'case', 'angles', 'noise', 'seed',
                        'square', 'hexagonal', 'square x2', 'hexagonal x2',
                        'square x2 spacing (A)', 'decision', 'single CPU (s)',
                        'two-domain CPU (s)'], detail)]
    write_result(os.path.join(args.output, 'lattice_choice.md'),
                 'Lattice choice: single lattices, two domains, amorphous '
                 'sets', '\n'.join(text))


if __name__ == '__main__':
    main()
