"""Does a new 2D lattice change what ``lattice='auto'`` chooses? (issue 23)

The square and hexagonal fits are bit for bit those of
``benchmarks/lattice_choice.py`` (the same code for those lattices), whose
CSV (``benchmarks/results/lattice_choice.csv``) holds their unexplained
fractions. This script fits only the new lattices (rectangular, centred
rectangular, honeycomb: single and two-domain fits) to the same cases,
amorphous sets first, and says where one of them would change the
decision: a new single fit within `LATTICE_RESIDUAL` (or within
`LATTICE_TIE` of the best old one), or a new two-domain fit within
`SPLIT_RESIDUAL` when the best single fit leaves more than
`SPLIT_TRIGGER`.

Usage::

    python benchmarks/lattice_choice_new.py --workers 1 [--quick]
    python benchmarks/lattice_choice_new.py --workers 1 --zone-amorphous

Writes ``benchmarks/results/lattice_choice_new.md`` and ``.csv``.
"""

import os
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import (markdown_table, read_rows,  # noqa: E402
                     reconstruction_parser, run_parallel, write_result,
                     write_rows)
import lattice_choice  # noqa: E402

NEW = ('rectangular', 'centred_rectangular', 'honeycomb')


def run_case(case):
    import warnings
    warnings.filterwarnings('ignore', category=UserWarning)
    import odl_atoms as oa
    from odl_atoms.defaults import SPLIT_TRIGGER
    from odl_atoms.solvers.starts import fit_lattice, fit_split_lattice

    kind, name, angles, noise, seed = case
    box = lattice_choice.make_phantom('vacancy')
    a = box.lattice_spacing
    if kind == 'crystal':
        truth = lattice_choice.make_phantom(name).measure
    else:
        n, distance = name
        truth = lattice_choice.amorphous(box.measure.space, n, distance, seed)
    measured = oa.simulate(truth, np.radians(
        lattice_choice.ANGLE_SETS[angles][1]), lattice_choice.BLUR * a,
        n_detector=lattice_choice.N_DETECTOR, noise=noise, seed=seed)
    op, data = measured.operator(), measured.element()
    row = dict(kind=kind, case=name if kind == 'crystal'
               else f'{name[0]} atoms >= {name[1]} A', angles=angles,
               noise=noise, seed=seed)
    begin = time.process_time()
    singles = {lattice: fit_lattice(op, data, lattice) for lattice in NEW}
    for lattice, fit in singles.items():
        row[f'{lattice}_single'] = fit.residual_fraction
        row[f'{lattice}_aspect'] = fit.aspect
    row['single_cpu'] = time.process_time() - begin
    begin = time.process_time()
    # Two domains only where fit_lattices would fit them too: the best
    # single fit (old ones from the CSV, in main) above SPLIT_TRIGGER.
    row['new_best_single'] = min(f.residual_fraction for f in singles.values())
    for lattice, fit in singles.items():
        row[f'{lattice}_split'] = (
            fit_split_lattice(op, data, fit).residual_fraction
            if row['new_best_single'] > SPLIT_TRIGGER else None)
    row['split_cpu'] = time.process_time() - begin
    return row


def key(r):
    return (r['kind'], str(r['case']), r['angles'], float(r['noise']),
            int(r['seed']))


def main(argv=None):
    from odl_atoms.defaults import (LATTICE_RESIDUAL, LATTICE_TIE,
                                    SPLIT_RESIDUAL, SPLIT_TRIGGER)
    parser = reconstruction_parser(__doc__)
    parser.add_argument('--zone-amorphous', action='store_true',
                        help='only the amorphous sets at 0/90 and 0/45/90 '
                             '(where the old lattices explained 4 of 12)')
    args = parser.parse_args(argv)
    todo = lattice_choice.cases(args.quick)
    if args.zone_amorphous:
        todo = [c for c in todo if c[0] == 'amorphous'
                and c[2] in ('0/90', '0/45/90')]
    # Amorphous sets first (the risk: a lattice with a free shape explains
    # random atoms), then the crystals at 1 % noise.
    todo = ([c for c in todo if c[0] == 'amorphous']
            + [c for c in todo if c[0] == 'crystal' and c[3] == 0.01])
    load = ', '.join(f'{v:.2f}' for v in os.getloadavg())
    began = time.perf_counter()
    from lattices2d import run_saving
    rows = run_saving(run_case, todo, args.workers, os.path.join(
        args.output, 'lattice_choice_new.partial.csv'))
    wall = time.perf_counter() - began
    old = {key(r): r for r in read_rows(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results',
        'lattice_choice.csv'))}
    table = []
    changed = 0
    for r in sorted(rows, key=key):
        o = old.get(key(r))
        if o is None:
            continue
        best_old = min(o['square_single'], o['hexagonal_single'])
        best_split_old = min(o['square_split'], o['hexagonal_split'])
        new_single = r['new_best_single']
        new_split = min((r[f'{n}_split'] for n in NEW
                         if r[f'{n}_split'] is not None), default=None)
        best_single = min(best_old, new_single)
        # The rule of choose_lattice with the new fits added.
        if (best_single > SPLIT_TRIGGER and min(
                best_split_old, new_split if new_split is not None
                else np.inf) <= SPLIT_RESIDUAL):
            after = ('two domains (new lattice)' if new_split is not None
                     and new_split < best_split_old else o['decision'])
        elif best_single <= LATTICE_RESIDUAL:
            after = (o['decision'] if best_old <= new_single + LATTICE_TIE
                     else 'single new lattice')
        else:
            after = 'none'
        same = (after == o['decision']
                or (after.startswith('two domains') and
                    o['decision'].startswith('two domains')
                    and 'new' not in after))
        changed += not same
        table.append([r['kind'], r['case'], r['angles'],
                      f"{100 * r['noise']:.0f} %", r['seed'],
                      f'{100 * best_old:.2f}', f'{100 * new_single:.2f}',
                      f'{100 * best_split_old:.2f}',
                      '-' if new_split is None else f'{100 * new_split:.2f}',
                      o['decision'], after if not same else 'same',
                      f"{r['single_cpu'] + r['split_cpu']:.0f}"])
    write_rows(os.path.join(args.output, 'lattice_choice_new.csv'), rows)
    text = [f'Command: `python benchmarks/lattice_choice_new.py '
            f'{" ".join(sys.argv[1:])}`; {len(rows)} cases in '
            f'{wall / 60:.1f} min, {args.workers} worker(s), load before '
            f'{load}.', '',
            f'Decisions changed by the new lattices: {changed} of '
            f'{len(table)}.', '',
            'Unexplained fractions (%): the best old (square, hexagonal) '
            'single and two-domain fits from lattice_choice.csv, the best '
            'new (rectangular, centred rectangular, honeycomb) ones; '
            'new two-domain fits only where the best single fit leaves '
            f'more than SPLIT_TRIGGER ({100 * SPLIT_TRIGGER:g} %).', '',
            markdown_table(['kind', 'case', 'angles', 'noise', 'seed',
                            'old single', 'new single', 'old x2', 'new x2',
                            'decision before', 'after', 'CPU s'], table)]
    write_result(os.path.join(args.output, 'lattice_choice_new.md'),
                 'Lattice choice with the new 2D lattices', '\n'.join(text))


if __name__ == '__main__':
    main()
