"""ADCG on 2D crystals beyond the square one: every Bravais lattice, honeycomb.

Issue 23 ("2D starts for every Bravais lattice and for honeycomb-like
lattices with a basis"): the defects ``vacancy``, ``interstitial``,
``edge_dislocation``, ``grain_boundary`` and ``displaced`` of crystals of
one lattice (`odl_atoms.defect_phantom`, blur 0.15 a, 96 detector cells as
in ``global_search.py``) at 2 and 3 angles along the crystal's own zone
axes and at generic 3-angle sets, noise none and 1 % (noise seed 0), in two
configurations side by side:

- ``user defaults``: `odl_atoms.reconstruct(measured)` with nothing else
  given (``lattice='auto'``; ``global_search.reconstruct_user``);
- ``every start``: ADCG with every start of ``lattice_starts(NAME)``
  told the crystal's lattice (``--lattice NAME`` on the command line), the
  true spacing as r_min and the true noise level
  (``global_search.reconstruct``). A lattice the code does not know is
  told as the nearest one it knows (`TOLD`: what a user could do before
  these lattices had starts); the ``told`` column says which.

Crystals (``--crystal``):

- ``rectangular``: 7 x 7, rows sqrt(2) a apart (fcc [110]-like); zone axes
  0/90 and 0/35.3/90 (rays along the rows: the detector angle is the
  rays' direction plus 90 degrees);
- ``centred_rectangular``: 7 x 7, a cell a' x sqrt(2) a' with a centre
  atom (bcc [110]); zone axes 35.3/144.7 (the nearest-neighbour rows) and
  35.3/90/144.7;
- ``honeycomb``: 5 x 10 atoms (25 cells, graphene); zone axes 0/60,
  0/60/120 (rays along the bonds: the data do not determine the crystal,
  ``tests/test_lattices2d.py``), 30/90 and 30/90/150 (armchair rows);
- ``two_species``: the rectangular crystal with rows alternately of weight
  1 and 1.5 (`odl_atoms.phantoms.two_species`); both configurations are
  given the two weights (``weights={'A': 1.0, 'B': 1.5}``: a user knows
  the species), and ``species`` counts the atoms whose weight is right;
- ``hexagonal``: 7 x 7, zone axes 0/60 and 0/60/120 (``zone_axes.py
  --hexagonal`` has the full table; here a check of no change).

Generic sets: ``32.2/84.1/115.2`` (``--full``: also ``63.9/66.7/142.3``
and ``31.9/117.5/162.9``), the random 3-angle sets of
``global_search.py``.

Usage::

    python benchmarks/lattices2d.py --crystal honeycomb --workers 1
    python benchmarks/lattices2d.py --crystal rectangular --configs 'user defaults'
    python benchmarks/lattices2d.py --crystal honeycomb --baseline OLD.csv
    python benchmarks/lattices2d.py --from-csv A.csv B.csv --tag all

Writes ``benchmarks/results/lattices2d_<crystal><suffix>.md`` and ``.csv``
(``--suffix``, e.g. ``_baseline``) with the command, the date, the load
and the wall time.
"""

import itertools
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
import global_search  # noqa: E402
from global_search import (BLUR, KNOWN, KNOWN_USER, N_DETECTOR,  # noqa: E402
                           USER)

DEFECTS = ('vacancy', 'interstitial', 'edge_dislocation', 'grain_boundary',
           'displaced')
CONFIGS = (USER, 'every start')
GENERIC = {'32.2/84.1/115.2': (32.2, 84.1, 115.2)}
GENERIC_FULL = {**GENERIC, '63.9/66.7/142.3': (63.9, 66.7, 142.3),
                '31.9/117.5/162.9': (31.9, 117.5, 162.9)}
DIAGONAL = float(np.degrees(np.arctan(1 / np.sqrt(2))))  # 35.26 degrees

#: Per crystal: the lattice, the phantom's shape, the zone-axis sets.
CRYSTALS = {
    'rectangular': ('rectangular', (7, 7), {
        '0/90': (0, 90), '0/35.3/90': (0, DIAGONAL, 90)}),
    'centred_rectangular': ('centred_rectangular', (7, 7), {
        '35.3/144.7': (DIAGONAL, 180 - DIAGONAL),
        '35.3/90/144.7': (DIAGONAL, 90, 180 - DIAGONAL)}),
    # 0/60/120 (rays along the bonds) first: the case, where the
    # data cannot tell the crystal from switched ones (see the tests);
    # 30/90/150 along the armchair rows.
    'honeycomb': ('honeycomb', (5, 10), {
        '0/60': (0, 60), '0/60/120': (0, 60, 120), '30/90': (30, 90),
        '30/90/150': (30, 90, 150)}),
    'two_species': ('rectangular', (7, 7), {
        '0/90': (0, 90), '0/35.3/90': (0, DIAGONAL, 90)}),
    'hexagonal': ('hexagonal', (7, 7), {
        '0/60': (0, 60), '0/60/120': (0, 60, 120)}),
}

#: The lattice the ``every start`` configuration is told when the code
#: does not know the crystal's own (before issue 23's starts).
TOLD = {'rectangular': 'square', 'centred_rectangular': 'hexagonal',
        'honeycomb': 'hexagonal'}

#: The two species' weights of ``two_species``.
SPECIES_WEIGHTS = {'A': 1.0, 'B': 1.5}


def known_lattice(name):
    """``name`` if `lattice_starts` knows it, else the nearest it does."""
    from odl_atoms.solvers.starts import LATTICES_BY_NDIM
    return name if name in LATTICES_BY_NDIM[2] else TOLD[name]


def make_phantom(crystal, defect):
    import odl_atoms as oa
    from odl_atoms.phantoms import two_species

    lattice, shape, _ = CRYSTALS[crystal]
    phantom = oa.defect_phantom(defect, lattice=lattice, shape=shape)
    if crystal == 'two_species':
        phantom = two_species(phantom, lattice, species=tuple(
            SPECIES_WEIGHTS), weights=tuple(SPECIES_WEIGHTS.values()))
    return phantom


def run_case(case):
    """One reconstruction; a row (the fields of ``global_search``'s)."""
    import warnings
    warnings.filterwarnings('ignore', category=UserWarning)
    import odl_atoms as oa

    crystal, config, defect, angles_key, angles, noise = case
    lattice = CRYSTALS[crystal][0]
    phantom = make_phantom(crystal, defect)
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians(angles), BLUR * a,
                           n_detector=N_DETECTOR, noise=noise, seed=0)
    told = known_lattice(lattice)
    if crystal == 'two_species':
        row = _two_species(phantom, measured, config, told)
    elif config == USER:
        row = global_search.reconstruct_user(phantom, measured)
    else:
        # `global_search.reconstruct` builds its phantom by name: this one.
        global_search.make_phantom = lambda *_: phantom
        row = global_search.reconstruct(config, defect, angles, noise,
                                        lattice=told)
    row.update(crystal=crystal, config=config, defect=defect,
               angles=angles_key, noise=noise, seed=0,
               told=told if config != USER else '',
               zone=angles_key in CRYSTALS[crystal][2])
    return row


def _two_species(phantom, measured, config, told):
    """Both configurations with the species' weights given; ``species``:
    the fraction of matched atoms of the right weight."""
    import odl_atoms as oa
    from odl_atoms.defaults import DEFAULT_ALPHA
    from odl_atoms.problem import Problem

    a = phantom.lattice_spacing
    start, cpu = time.perf_counter(), time.process_time()
    if config == USER:
        result = oa.reconstruct(measured, weights=SPECIES_WEIGHTS)
    else:
        problem = Problem(measured.operator(), measured.element(),
                          alpha=DEFAULT_ALPHA, potential=a,
                          weights=SPECIES_WEIGHTS,
                          noise_std=measured.noise_std or 0.0)
        solver = global_search.make_solver('every start', len(
            measured.operator().geometry.angles), 0, told)
        result = solver.solve(problem)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    match = oa.match_atoms(phantom.measure, result.measure)
    right = match.species_accuracy
    info = result.info
    lattice = info.get('lattice') or {}
    return dict(n_true=phantom.n_atoms, n_found=result.n_atoms, f1=match.f1,
                exact=match.exact, rmsd_a=match.rmsd / a, time=elapsed,
                cpu_time=cpu, objective=info['certificate'].objective,
                truth_objective=float('nan'), best_start=info['best_start'],
                lattice=lattice.get('chosen') or '',
                domains=lattice.get('domains') or 0, species=right,
                weights_found=sorted(set(np.round(
                    result.measure.weights, 3).tolist())))


def cases(crystals, configs, full=False, quick=False, small=False):
    """The runs: ``small``: the 3-angle zone-axis set and one generic
    set at 1 % noise only (a tenth of the machine's time)."""
    out = []
    for crystal in crystals:
        zone = CRYSTALS[crystal][2]
        if small:
            # The 3-angle zone-axis sets.
            zone = {k: v for k, v in zone.items() if len(v) == 3}
        sets = {**zone, **(GENERIC_FULL if full else GENERIC)}
        defects = DEFECTS[:2] if quick else DEFECTS
        noises = (0.01,) if quick or small else (0.0, 0.01)
        for config, defect, key, noise in itertools.product(
                configs, defects, sets, noises):
            out.append((crystal, config, defect, key, sets[key], noise))
    return out


def summary(group):
    exact = sum(bool(r['exact']) for r in group)
    cpu = [r['cpu_time'] for r in group]
    failed = [r for r in group if not r['exact']]
    model = [r for r in failed if r.get('truth_objective') is not None
             and np.isfinite(r['truth_objective'])
             and r['objective'] <= r['truth_objective'] + 1e-6]
    return [f'{exact}/{len(group)}', f'{100 * exact / len(group):.0f} %',
            f'{np.mean([r["f1"] for r in group]):.3f}',
            f'{len(model)}/{len(failed)}' if failed else '-',
            f'{np.median(cpu):.1f}', f'{max(cpu):.1f}']


HEAD = ['exact', 'rate', 'mean F1', 'failures the model prefers', 'median CPU s',
        'max CPU s']


def tables(rows):
    text = []
    configs = [c for c in CONFIGS if any(r['config'] == c for r in rows)]
    crystals = [c for c in CRYSTALS if any(r['crystal'] == c for r in rows)]
    lines = []
    for crystal in crystals:
        for config in configs:
            for zone, label in ((True, 'zone axes'), (False, 'generic 3')):
                group = [r for r in rows if r['crystal'] == crystal
                         and r['config'] == config and r['zone'] == zone]
                if group:
                    told = sorted({r.get('told') or '' for r in group})
                    lines.append([crystal, config, ', '.join(told) or '-',
                                  label] + summary(group))
    text += ['## Exact runs by crystal, configuration and angle class', '',
             'Targets (issue 23, user defaults): zone-axis sets exact in >= '
             '95 % of runs, generic 3-angle sets >= 80 %, median < 10 s. '
             '"failures the model prefers": failed runs whose answer has an '
             'objective at most the truth\'s (relaxed from its exact '
             'positions): no search fixes those.', '',
             markdown_table(['crystal', 'configuration', 'told', 'angles']
                            + HEAD, lines)]
    lines = []
    for crystal in crystals:
        for config in configs:
            for defect in DEFECTS:
                group = [r for r in rows if r['crystal'] == crystal
                         and r['config'] == config and r['defect'] == defect]
                if group:
                    lines.append([crystal, config, defect] + summary(group))
    text += ['', '## By defect', '',
             markdown_table(['crystal', 'configuration', 'defect'] + HEAD,
                            lines)]
    user = [r for r in rows if r['config'] == USER]
    if user:
        chosen = {}
        for r in user:
            label = (r.get('lattice') or 'none (greedy only)') + (
                ' (two domains)' if (r.get('domains') or 0) > 1 else '')
            chosen.setdefault((r['crystal'], label), []).append(r)
        text += ['', '## User defaults: the lattice chosen', '',
                 markdown_table(['crystal', 'lattice chosen', 'runs', 'exact'],
                                [[c, k, len(v), sum(bool(r['exact'])
                                                    for r in v)]
                                 for (c, k), v in sorted(chosen.items())])]
    failed = [r for r in rows if not r['exact']]
    if failed:
        text += ['', '## Failed runs', '',
                 'Objectives in atom energies; "truth" relaxed from its exact '
                 'positions under the problem the answer solved (nan: not '
                 'computed, two species).', '',
                 markdown_table(
                     ['crystal', 'configuration', 'defect', 'angles',
                      'noise', 'F1', 'atoms', 'lattice', 'best start',
                      'objective', 'truth', 'lower'],
                     [[r['crystal'], r['config'], r['defect'], r['angles'],
                       f"{100 * r['noise']:.0f} %", f"{r['f1']:.3f}",
                       f"{r['n_found']}/{r['n_true']}",
                       r.get('lattice') or r.get('told') or '-',
                       r['best_start'], f"{r['objective']:.4f}",
                       f"{r['truth_objective']:.4f}"
                       if r.get('truth_objective') is not None else '-',
                       '-' if r.get('truth_objective') is None
                       or not np.isfinite(r['truth_objective'])
                       else 'truth (search failure)'
                       if r['truth_objective'] < r['objective'] - 1e-6
                       else 'answer (model)'] for r in failed])]
    return text


def run_saving(func, tasks, workers, path):
    """`run_parallel`, each row also appended to the CSV ``path`` as it
    comes (a run cut short keeps its rows; ``--from-csv`` reads them)."""
    import csv
    import json
    import multiprocessing

    rows = []
    context = multiprocessing.get_context('spawn')
    with context.Pool(workers) as pool:
        for row in pool.imap_unordered(func, tasks):
            rows.append(row)
            fields = list(dict.fromkeys(k for r in rows for k in r))
            with open(path, 'w', newline='') as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows([{k: r.get(k) for k in fields}
                                  for r in rows])
            print(f'{len(rows)}/{len(tasks)} done', json.dumps(
                {k: row.get(k) for k in ('crystal', 'defect', 'angles',
                                         'case', 'exact', 'f1', 'cpu_time',
                                         'lattice')}, default=str),
                flush=True)
    return rows


def name_of(args):
    return f'lattices2d_{"_".join(args.crystal)}{args.suffix}'


def load():
    return ', '.join(f'{v:.2f}' for v in os.getloadavg())


def main(argv=None):
    parser = reconstruction_parser(__doc__)
    parser.add_argument('--crystal', nargs='+', choices=tuple(CRYSTALS),
                        default=['honeycomb'])
    parser.add_argument('--configs', nargs='+', choices=CONFIGS,
                        default=list(CONFIGS))
    parser.add_argument('--full', action='store_true',
                        help='all three generic 3-angle sets')
    parser.add_argument('--small', action='store_true',
                        help='the 3-angle zone-axis set and one generic '
                             'set, 1 % noise')
    parser.add_argument('--suffix', default='',
                        help='appended to the results files\' names')
    parser.add_argument('--from-csv', nargs='+', metavar='CSV')
    parser.add_argument('--tag', default=None,
                        help='results name with --from-csv')
    args = parser.parse_args(argv)
    command = 'python benchmarks/lattices2d.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    if args.from_csv:
        rows = [r for path in args.from_csv for r in read_rows(path)]
        name = f'lattices2d_{args.tag or "combined"}{args.suffix}'
        stamp_lines = [f'Command: `{command}` (tables from {", ".join(args.from_csv)})']
    else:
        todo = cases(args.crystal, args.configs, args.full, args.quick,
                     args.small)
        load_before = load()
        began = time.perf_counter()
        rows = run_saving(run_case, todo, args.workers, os.path.join(
            args.output, name_of(args) + '.partial.csv'))
        wall = time.perf_counter() - began
        name = name_of(args)
        stamp_lines = [f'Command: `{command}`',
                       f'{len(rows)} reconstructions, {args.workers} '
                       f'worker(s), wall time {wall / 60:.1f} min; load '
                       f'average (1, 5, 15 min) before {load_before}, after '
                       f'{load()}.']
        fields = list(dict.fromkeys(k for r in rows for k in r))
        write_rows(os.path.join(args.output, name + '.csv'),
                   [{k: r.get(k) for k in fields} for r in rows])
    text = stamp_lines + ['', KNOWN, '', KNOWN_USER, ''] + tables(rows)
    write_result(os.path.join(args.output, name + '.md'),
                 'ADCG on 2D crystals of every lattice (issue 23)',
                 '\n'.join(text))


if __name__ == '__main__':
    main()
