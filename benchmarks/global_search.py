"""ADCG's global search at generic tilt angles: starts, escapes, ablation.

The 2D defect phantoms of ``defects.py`` (7 x 7 square lattice, spacing a,
blur sigma = 0.15 a, 96 detector cells), and the interstitial with its four
nearest neighbours relaxed under the solvers' Lennard-Jones potential
(``relaxed_interstitial``, `odl_atoms.relax_defect`: what a crystal holds,
and what the prior prefers), from angle sets that are not lattice
directions: 0/60/120 and 0/50 degrees, three sets of 3 angles and two sets of
2 angles drawn uniformly in [0, 180) (seed 2026), and the zone axes 0/90 and
0/45/90 for comparison; noise none, 1 % and 5 % (noise seed 0). Configurations:

- ``plain``: the paper's ADCG (no escape moves, greedy start);
- ``escapes``: ADCG's defaults (Relocate and Regrow escape moves);
- ``every start``: also `LatticeStart('square')`, its 2 x 2 patches and
  `SplitLatticeStart('square')` (`lattice_starts('square')`, what
  ``odl-atoms reconstruct --lattice square`` uses); the lowest objective
  wins, the escapes (Stiffen with 3 angles, RefitLattice, Relocate and
  RegrowColumn: ADCG's default with lattice starts) run from the best
  start only;
- ``user defaults`` (not in this script's own tables; ``zone_axes.py
  --configs 'user defaults'`` runs it): `odl_atoms.reconstruct` called on
  the simulated measurement as a user calls it, nothing else given (no
  potential, no noise level, no lattice, no seed: its defaults, as
  ``odl-atoms reconstruct`` without options), see `reconstruct_user`.

The ablation (3-angle generic and random sets, 1 % noise) switches single
pieces on or off from ``every start``: each start, the occupancy fit of
the lattice starts (``rigid lattice fit``: every supported site occupied),
screening (``escapes from every start``), Stiffen, RefitLattice (and its
chained trials: ``single refits only``), Relocate, RegrowColumn, and the
moves that are off with several starts (Regrow) or always (ShiftColumn,
Perturb). ``global_search_stiffen.md`` is the run of 2026-12-05 with
Stiffen first at 2 angles too (which is why it is not used there). The last
table asks whether the certificate can be trusted: how often an answer
whose starts agree (F1 = 1 between every start's answer and the chosen one)
is exact, and how often one whose starts disagree is.

Failures are told apart as search failures (the truth, relaxed under the
same objective, has the lower objective) or modelling ones (the answer's is
lower).

Usage::

    python benchmarks/global_search.py           # full run, 2 workers
    python benchmarks/global_search.py --quick   # a few cases
    python benchmarks/global_search.py --report-only   # the tables again, from the CSV

Writes ``benchmarks/results/global_search.md`` and ``global_search.csv``.
"""

import itertools
import os
import re
import sys
import time

# One BLAS thread per worker process: the workers are the parallelism.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import (markdown_table, read_rows,  # noqa: E402
                     reconstruction_parser, run_parallel, write_result,
                     write_rows)

DEFECTS = ('vacancy', 'interstitial', 'edge_dislocation', 'grain_boundary',
           'displaced', 'relaxed_interstitial')
N_DETECTOR = 96
BLUR = 0.15


def angle_sets():
    """Named angle sets (degrees) and their class."""
    rng = np.random.default_rng(2026)
    sets = {'0/90': ('zone axes', (0, 90)),
            '0/45/90': ('zone axes', (0, 45, 90)),
            '0/60/120': ('generic 3', (0, 60, 120)),
            '0/50': ('generic 2', (0, 50))}
    for n, count in ((3, 3), (2, 2)):
        for _ in range(count):
            angles = tuple(float(x) for x in sorted(np.round(rng.uniform(0, 180, n), 1)))
            sets['/'.join(f'{a:g}' for a in angles)] = (f'random {n}', angles)
    return sets


ANGLE_SETS = angle_sets()
CLASSES = ('zone axes', 'generic 3', 'random 3', 'generic 2', 'random 2')
FULL = 'every start'
CONFIGS = ('plain', 'escapes', FULL)
#: `odl_atoms.reconstruct` with its defaults (`reconstruct_user`).
USER = 'user defaults'
ABLATION = (FULL, 'no split start', 'no patch start',
            'no single-lattice start', 'no greedy start', 'rigid lattice fit',
            'escapes from every start', 'no RefitLattice',
            'single refits only', 'no Relocate', 'no RegrowColumn',
            '+ Regrow', '+ ShiftColumn', '+ Perturb', 'no Stiffen')


#: What the benchmark tells ADCG that a user may not know (said next to
#: every table of this script and of those built on its `reconstruct`).
KNOWN = ('ADCG is given the true blur (the operator\'s sigma), the true '
         'lattice spacing (`potential=a`, Lennard-Jones r_min = a) and the '
         'true noise level (`noise_std`, 0 for noise-free data), which a '
         'user may have to estimate.')

#: The same for the ``user defaults`` configuration.
KNOWN_USER = ('``user defaults``: `odl_atoms.reconstruct(measured)` with '
              'nothing else given - the blur recorded in the simulated file '
              '(the true one), the noise level the file records (the true '
              'one for noisy data; none for noise-free data, so it is '
              'estimated from the data), no '
              'potential (r_min from the fitted lattice, lattice=\'auto\'), '
              'the default seed; CPU time of the whole call (lattice fits '
              'and noise estimate included).')


def make_solver(config, n_angles, seed=0, lattice='square'):
    """The ADCG of one configuration (see the module documentation) at
    ``n_angles`` tilt angles: its method options only (the problem -
    potential, alpha, noise level - is `reconstruct`'s). ``lattice``: the
    lattice of the starts (the crystal's)."""
    import odl_atoms as oa
    from odl_atoms.solvers.moves import (Perturb, RefitLattice, Regrow,
                                         ShiftColumn, auto_moves)

    greedy, single, patches, split = oa.lattice_starts(lattice)
    starts = [greedy, single, patches, split]
    # ADCG's own moves with the lattice starts ('auto': Stiffen with 3+
    # angles, RefitLattice, Relocate, RegrowColumn), by name, for the
    # ablation to switch off one at a time.
    moves = 'auto'
    default = {move.name: move for move in
               auto_moves(starts, 2, n_angles)}

    def without(*names, **replaced):
        return [replaced.get(k, m) for k, m in default.items()
                if k not in names]

    extra = {}
    if config == 'plain':
        # The paper's ADCG: no moves, one start, alpha fixed.
        moves, starts = [], [greedy]
        extra['discrepancy'] = None
    elif config == 'escapes':
        starts = [greedy]
    elif config == 'no split start':
        starts = [greedy, single, patches]
    elif config == 'no patch start':
        starts = [greedy, single, split]
    elif config == 'no single-lattice start':
        starts = [greedy, patches, split]
    elif config == 'no greedy start':
        starts = [single, patches, split]
    elif config == 'rigid lattice fit':
        starts = [greedy, oa.LatticeStart(lattice, occupancy=False),
                  oa.LatticeStart(lattice, patches=2, occupancy=False),
                  oa.SplitLatticeStart(lattice, occupancy=False)]
    elif config == 'escapes from every start':
        extra['escape_starts'] = None
    elif config == 'no Stiffen':
        moves = without('stiffen')
    elif config == 'no RefitLattice':
        moves = without('refit_lattice')
    elif config == 'single refits only':
        moves = without(refit_lattice=RefitLattice(chain=False))
    elif config == 'no Relocate':
        moves = without('relocate')
    elif config == 'no RegrowColumn':
        moves = without('regrow_column')
    elif config.startswith('+ '):
        more = {'+ Regrow': Regrow, '+ ShiftColumn': ShiftColumn,
                '+ Perturb': Perturb}
        moves = without() + [more[config]()]
    elif config != FULL:
        raise ValueError(f'unknown configuration {config!r}')
    return oa.ADCG(moves=moves, starts=starts, seed=seed, **extra)


def run_case(case):
    """One reconstruction of the main table or the ablation (a worker)."""
    part, config, defect, angles_key, noise = case
    row = reconstruct(config, defect, ANGLE_SETS[angles_key][1], noise)
    row.update(part=part, angles=angles_key,
               angle_class=ANGLE_SETS[angles_key][0])
    return row


def make_phantom(defect, lattice='square'):
    """The phantom called ``defect``: a `defect_phantom` name, or
    ``'relaxed_interstitial'`` (the interstitial with its nearest neighbours
    relaxed under the solvers' potential, `odl_atoms.relax_defect`), of a
    7 x 7 crystal of ``lattice``."""
    import odl_atoms as oa
    if defect == 'relaxed_interstitial':
        return oa.relax_defect(oa.defect_phantom('interstitial',
                                                 lattice=lattice))
    return oa.defect_phantom(defect, lattice=lattice)


def reconstruct(config, defect, angles, noise, seed=0, alpha=None,
                lattice='square'):
    """Reconstruct one phantom with one configuration; return a row.

    Runs in a worker (builds its own operator). ``angles`` in degrees;
    ``seed`` is the noise seed, ``alpha`` the energy weight (default:
    ADCG's). The row holds the answer's F1, time and
    objective, and the objective of the truth (relaxed from its exact
    positions), so that a failure can be told apart as a search failure
    (truth lower) or a modelling one (answer lower). ``config`` ``'user
    defaults'`` runs `reconstruct_user` (``alpha`` must then be None).
    ``lattice``: the crystal's (and the lattice starts').
    """
    import warnings
    warnings.filterwarnings('ignore', category=UserWarning)
    import odl_atoms as oa
    from odl_atoms.defaults import DEFAULT_ALPHA
    from odl_atoms.problem import Problem

    phantom = make_phantom(defect, lattice)
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians(angles), BLUR * a,
                           n_detector=N_DETECTOR, noise=noise, seed=seed)
    if config == USER:
        if alpha is not None:
            raise ValueError(f'{USER!r} takes no alpha (the default is '
                             f'what a user gets)')
        row = reconstruct_user(phantom, measured)
        row.update(config=config, defect=defect, noise=noise, seed=seed,
                   crystal=lattice)
        return row
    op = measured.operator()
    # The noise level is known, also when there is none (simulate records
    # None, 'unknown', for noise-free data): ADCG's discrepancy principle
    # needs it.
    noise_std = 0.0 if measured.noise_std is None else measured.noise_std
    problem = Problem(op, measured.element(),
                      alpha=DEFAULT_ALPHA if alpha is None else alpha,
                      potential=a, noise_std=noise_std)
    solver = make_solver(config, len(op.geometry.angles), seed, lattice)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = solver.solve(problem)
    elapsed = time.perf_counter() - start
    # CPU seconds of the solve: the machine is shared, wall time is not
    # comparable between runs at different loads.
    cpu = time.process_time() - cpu_start
    match = oa.match_atoms(phantom.measure, result.measure)
    cert = result.info['certificate']
    truth, truth_exact = relaxed_truth(solver, problem, phantom.measure,
                                       result.info['alpha'])
    return dict(config=config, defect=defect, noise=noise, seed=seed,
                crystal=lattice, n_true=phantom.n_atoms,
                n_found=result.n_atoms, f1=match.f1,
                exact=match.exact, rmsd_a=match.rmsd / a, time=elapsed,
                cpu_time=cpu,
                objective=cert.objective, truth_objective=truth,
                truth_relaxed_exact=truth_exact,
                local_minimum=cert.local_minimum, agreement=cert.agreement,
                n_starts=len(cert.starts), best_start=result.info['best_start'],
                alpha=result.info['alpha'],
                lowerings=len(result.info['lowered_alpha']),
                misfit_ratio=(cert.data_misfit / result.info['discrepancy_bound']
                              if result.info['discrepancy_bound'] else None))


def reconstruct_user(phantom, measured):
    """`odl_atoms.reconstruct` of ``measured`` as a user calls it; a row.

    Nothing but the measurement is given: the noise level is the one
    `simulate` records (its standard deviation for noisy data; None for
    noise-free data, which `reconstruct` then estimates); no ``r_min`` or
    potential (the fitted lattice's spacing
    when ``lattice='auto'`` finds one, else an energy-free estimate); the
    default seed. The row has the fields of `reconstruct`'s rows (F1,
    exactness, wall and CPU seconds of the whole call) and what the
    defaults chose: ``lattice`` (the lattice fitted and used, empty if
    none), ``r_min`` and its source, ``noise_std`` used and its source.
    The verdict `odl-atoms reconstruct` prints (``verdict_line``, its kind
    ``verdict``), the kind it had before variants of one fitted lattice
    counted as one opinion (``verdict_before``) and the starts that found
    the answer's atoms (``starts_agreeing``, space-separated:
    `AtomConfidence.agreeing`).

    The truth's objective (relaxed from its exact positions,
    `relaxed_truth`) is taken under the problem the answer solved, rebuilt
    from ``result.info``: its final energy weight ``alpha`` (the
    discrepancy principle may have lowered it), its ``potential`` (the
    estimated r_min) and its noise level, so that the comparison with the
    answer's objective (``objective``, the certificate's, as in every
    configuration) is under the same objective. ``answer_objective`` is the
    answer's atoms evaluated under that rebuilt problem (the certificate
    reports the search's value, before the last polish of the positions;
    the two can differ, by much when the polish leaves the energy's
    minimum).
    """
    import odl_atoms as oa
    from odl_atoms.confidence import atom_confidence, verdict
    from odl_atoms.problem import Problem

    a = phantom.lattice_spacing
    start, cpu_start = time.perf_counter(), time.process_time()
    result = oa.reconstruct(measured)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    info = result.info
    match = oa.match_atoms(phantom.measure, result.measure)
    cert = info['certificate']
    noise = info['noise']
    problem = Problem(measured.operator(), measured.element(),
                      alpha=info['alpha'], potential=info['potential'],
                      noise_std=noise['value'])
    solver = oa.ADCG(seed=info['seed'])
    truth, truth_exact = relaxed_truth(solver, problem, phantom.measure,
                                       info['alpha'])
    objective = problem.objective(info['alpha'])
    check = objective(result.measure.positions,
                      result.measure.weights * problem.intensity
                      ) / objective.atom_energy
    lattice = info.get('lattice') or {}
    # The verdict `odl-atoms reconstruct` prints (its problem: the noise
    # level the measurement records, no potential).
    told = Problem(measured.operator(), measured.element(),
                   noise_std=measured.noise_std)
    confidence = atom_confidence(result, told)
    line = verdict(result, told, confidence=confidence)
    return dict(n_true=phantom.n_atoms, n_found=result.n_atoms, f1=match.f1,
                exact=match.exact, rmsd_a=match.rmsd / a, time=elapsed,
                cpu_time=cpu,
                objective=cert.objective, truth_objective=truth,
                truth_relaxed_exact=truth_exact,
                local_minimum=cert.local_minimum, agreement=cert.agreement,
                n_starts=len(cert.starts), best_start=info['best_start'],
                alpha=info['alpha'],
                lowerings=len(info['lowered_alpha']),
                misfit_ratio=(cert.data_misfit / info['discrepancy_bound']
                              if info['discrepancy_bound'] else None),
                lattice=lattice.get('chosen') or '',
                r_min=info['r_min']['value'], r_min_source=info['r_min'][
                    'source'],
                noise_std=noise['value'], noise_source=noise['source'],
                answer_objective=check,
                domains=lattice.get('domains') or 0,
                verdict=verdict_kind(line), verdict_line=line,
                verdict_before=verdict_kind_before(line, confidence),
                starts_agreeing=' '.join(confidence.agreeing))


#: What a verdict line says first (`odl_atoms.confidence.verdict`), as the
#: benchmarks count it.
VERDICT_KINDS = ('all starts agree', 'the best starts agree',
                 'only one fitted lattice', 'only the best start',
                 'starts disagree', 'one start')


def verdict_kind(line):
    """The kind of a `verdict` line: one of `VERDICT_KINDS`."""
    head = line.split(';')[0]
    if head.startswith('all '):
        return VERDICT_KINDS[0]
    if head.startswith('the ') and ' best of ' in head:
        return VERDICT_KINDS[1]
    if head.startswith('only one fitted lattice'):
        return VERDICT_KINDS[2]
    if head.startswith('only the best'):
        return VERDICT_KINDS[3]
    if head.startswith('starts disagree'):
        return VERDICT_KINDS[4]
    return VERDICT_KINDS[5]


def verdict_kind_before(line, confidence):
    """The kind the verdict had before variants of one fitted lattice
    counted as one opinion (code before the ``verdict`` branch): the same
    as `verdict_kind` except that their agreeing was agreement, of all
    starts when no start found other atoms, else of the best."""
    kind = verdict_kind(line)
    if kind != VERDICT_KINDS[2]:
        return kind
    differ = any(f1 < 1 for _, _, f1 in confidence.lost)
    return VERDICT_KINDS[1] if differ else VERDICT_KINDS[0]


def relaxed_truth(solver, problem, truth, alpha=None):
    """The objective (``E_atom``) of the truth relaxed under ``problem``'s.

    The true atoms, moved by ADCG's local move (L-BFGS-B on the objective
    from their exact positions, ``solver``'s local descent): the lowest
    objective in the truth's own basin, to compare with an answer's (an
    interstitial at its exact site, say, is not at the energy's minimum;
    its relaxed neighbours are). Also returns whether the relaxed atoms
    still match the truth (F1 = 1). ``alpha``: the energy weight the answer
    was found with (default the problem's; the discrepancy principle may
    have lowered it).
    """
    import odl_atoms as oa
    from odl_atoms.solvers.configuration import Configuration

    objective = problem.objective(alpha)
    n = truth.positions.shape[0]
    config = Configuration(np.array(truth.positions),
                           np.full(n, problem.allowed[0]),
                           np.full(n, problem.labels[0]))
    config.value = objective(config.positions, config.weights)
    relaxed = solver.context(problem, objective).local_move(config)
    exact = oa.match_atoms(truth, relaxed.positions).exact
    return relaxed.value / objective.atom_energy, exact


def cases(quick):
    noises = (0.01,) if quick else (0.0, 0.01, 0.05)
    defects = DEFECTS[:2] if quick else DEFECTS
    for config, defect, angles, noise in itertools.product(
            CONFIGS, defects, ANGLE_SETS, noises):
        if ANGLE_SETS[angles][0] == 'zone axes' and noise != 0.01:
            continue  # zone axes: one noise level, as a check
        if quick and ANGLE_SETS[angles][0] not in ('generic 3', 'random 3'):
            continue
        yield 'main', config, defect, angles, noise
    if quick:
        return
    three = [k for k, (c, _) in ANGLE_SETS.items()
             if c in ('generic 3', 'random 3')]
    for config, defect, angles in itertools.product(ABLATION[1:], DEFECTS, three):
        yield 'ablation', config, defect, angles, 0.01


def stats(group):
    exact = np.array([g['exact'] for g in group])
    f1 = np.array([g['f1'] for g in group])
    times = np.array([g['time'] for g in group])
    return [f'{exact.sum()}/{exact.size} ({100 * exact.mean():.0f} %)',
            f'{f1.mean():.3f}', f'{np.median(times):.1f}']


def grouped(rows, keys, order):
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key in sorted(groups, key=lambda k: [order[i].index(v) if i in order
                                             else v for i, v in
                                             zip(keys, k)]):
        label = [f'{100 * v:.0f} %' if k == 'noise' else str(v)
                 for k, v in zip(keys, key)]
        out.append(label + stats(groups[key]))
    return out


def discrepancy_summary(rows):
    """What ADCG's discrepancy principle did (runs where it was on)."""
    on = [r for r in rows if r.get('misfit_ratio') is not None]
    if not on:
        return []
    table = []
    for label, group in (
            (f'{FULL} (main table)', [r for r in on if r['part'] == 'main']),
            ('ablation configurations', [r for r in on
                                         if r['part'] == 'ablation'])):
        lowered = [r for r in group if r['lowerings']]
        failed = [r for r in group if not r['exact']]
        table.append([label, len(group), len(lowered),
                      sum(r['exact'] for r in lowered), len(failed),
                      sum(r['misfit_ratio'] <= 1 for r in failed)])
    return ['', '## The discrepancy principle', '',
            'On with lattice starts (`discrepancy=\'auto\'`): alpha is '
            'lowered (x 0.3, at most twice) while the data residual is above '
            'the bound (tau^2 times the misfit the noise alone gives). '
            '"failed, within the bound": failed runs whose answer fits the '
            'data as well as the noise allows.', '',
            markdown_table(['runs', 'principle on', 'alpha lowered',
                            'exact after lowering', 'failed',
                            'failed, within the bound'], table)]


def main(argv=None):
    parser = reconstruction_parser(__doc__)
    parser.add_argument('--report-only', action='store_true', help=(
        'write the tables again from global_search.csv, without running '
        '(keeps the date, machine and wall time the run wrote into '
        'global_search.md)'))
    args = parser.parse_args(argv)
    table = os.path.join(args.output, 'global_search.md')
    if args.report_only:
        rows = read_rows(os.path.join(args.output, 'global_search.csv'))
        # The run's date, machine and wall time, from the table it wrote.
        with open(table) as f:
            before = f.read()
        measured = before.split('\n')[2]
        ran = re.search(r'\d+ reconstructions in [\d.]+ min with \d+ '
                        r'worker processes', before).group(0)
    else:
        measured = None
        begin = time.perf_counter()
        rows = run_parallel(run_case, list(cases(args.quick)), args.workers)
        wall = time.perf_counter() - begin
        ran = (f'{len(rows)} reconstructions in {wall / 60:.1f} min with '
               f'{args.workers} worker processes')
        write_rows(os.path.join(args.output, 'global_search.csv'), rows)
    write_result(table, 'ADCG global search at generic angles',
                 '\n'.join(tables(rows, ran)), measured)


def tables(rows, ran):
    """The result's text: ``ran`` says how many runs took how long."""
    order = {'config': list(CONFIGS) + list(ABLATION),
             'angle_class': list(CLASSES), 'defect': list(DEFECTS),
             'angles': list(ANGLE_SETS)}
    main_rows = [r for r in rows if r['part'] == 'main']
    header = ['exact', 'mean F1', 'median time (s)']
    sets = '; '.join(f'{k} ({c})' for k, (c, _) in ANGLE_SETS.items())
    text = [
        f'{ran}. 7 x 7 square lattice, a = 2.885 A, '
        f'sigma = {BLUR} a, {N_DETECTOR} detector cells, ADCG with '
        f'Lennard-Jones r_min = a and the default alpha; "exact" = F1 = 1 '
        f'(matching tolerance 0.3 a). Angle sets: {sets}. Zone axes at 1 % '
        f'noise only.',
        '', KNOWN,
        '', '## By angle class, noise and configuration', '',
        markdown_table(['angles', 'noise', 'configuration'] + header,
                       grouped(main_rows, ('angle_class', 'noise', 'config'),
                               order)),
        '', '## 3 generic or random angles, noise <= 1 %, by defect', '',
        markdown_table(['defect', 'configuration'] + header, grouped(
            [r for r in main_rows if r['angle_class'] in
             ('generic 3', 'random 3') and r['noise'] <= 0.01],
            ('defect', 'config'), order)),
        '', '## 2 generic or random angles, noise <= 1 %, by defect', '',
        markdown_table(['defect', 'configuration'] + header, grouped(
            [r for r in main_rows if r['angle_class'] in
             ('generic 2', 'random 2') and r['noise'] <= 0.01],
            ('defect', 'config'), order)),
    ]
    ablation = [r for r in rows if r['part'] == 'ablation' or (
        r['config'] == FULL and r['noise'] == 0.01
        and r['angle_class'] in ('generic 3', 'random 3'))]
    if any(r['part'] == 'ablation' for r in rows):
        text += ['', '## Ablation: 3 generic or random angles, 1 % noise', '',
                 markdown_table(['configuration'] + header,
                                grouped(ablation, ('config',), order))]
    both = [r for r in main_rows if r['config'] == FULL]
    if both:
        agree = [r for r in both if r['agreement'] >= 1.0]
        differ = [r for r in both if r['agreement'] < 1.0]
        truth_lower = [r for r in main_rows if not r['exact']
                       and r['truth_objective'] < r['objective'] - 1e-6]
        failed = [r for r in main_rows if not r['exact']]
        text += [
            '', '## Can the certificate be trusted?', '',
            markdown_table([f'starts ({FULL})', 'runs', 'exact'], [
                ['agree (F1 = 1)', len(agree),
                 stats(agree)[0] if agree else '-'],
                ['disagree', len(differ), stats(differ)[0] if differ else '-']]),
            '', f'Failed runs (all configurations) where the truth has a '
            f'lower objective than the answer (a search failure, not a '
            f'modelling one): {len(truth_lower)} of {len(failed)}.']
    return text + discrepancy_summary(rows)


if __name__ == '__main__':
    main()
