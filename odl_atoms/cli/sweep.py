"""``odl-atoms sweep``: an alpha sweep on a data file, or a grid on Dask."""

import sys
import time
from pathlib import Path

from odl_atoms.cli.common import (CLI_NAMES, UsageError, add_limit_options,
                                  check_input, check_outputs,
                                  equilibrium_distance, fmt, info, input_file,
                                  memory_limit, noise_std, non_negative,
                                  parse_alphas, parse_angles, parse_weights,
                                  positive, positive_int, progress, pyplot,
                                  read_projections, save_figure, warn,
                                  write_text)
from odl_atoms.defaults import (DEFAULT_N_DETECTOR, DEFAULT_SIGMA,
                                PHANTOM_NAMES)
from odl_atoms.reconstruction import SOLVERS

HELP = 'reconstruct for several alphas, or a grid of simulations'
DESCRIPTION = ('Reconstruct the data of DATA with ADCG for each alpha; print '
               'the data discrepancy and the energy of each (and F1/RMSD if '
               'the file holds a ground truth), and choose alpha by the '
               'discrepancy principle when the noise level is known.\n\n'
               'With --grid (and no DATA): simulate and reconstruct every '
               'combination of phantoms, angle sets, noise levels, seeds, '
               'solvers and alphas on Dask (a local cluster, or --scheduler), '
               'and print one table of F1, RMSD and times. Failed '
               'reconstructions are listed in the table (exit status 1); '
               'with --cache, finished ones are kept and a re-run does only '
               'the rest.')
EPILOG = ('examples:\n'
          '  odl-atoms sweep tilts.npz --alphas 0 1e-4 1e-3 1e-2 '
          '--figure sweep.png\n'
          '  odl-atoms sweep --grid --phantoms vacancy interstitial '
          '--angles 0 60 120 \\\n'
          '      --noise 0 0.01 --seeds 0 1 --solvers adcg sirt '
          '--alphas 0 1e-3 \\\n'
          '      --cache runs/ --table grid.md\n'
          '  odl-atoms sweep --grid --angles 0 90 --angles 0 45 90 '
          '--scheduler tcp://host:8786')

#: Default energy weights of the alpha sweep (around ADCG's default 1e-3).
DEFAULT_ALPHAS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)

# Options that only one of the two modes uses.
_GRID_ONLY = ('phantoms', 'angles', 'noise', 'seeds', 'solvers', 'detector',
              'shape', 'size', 'scheduler', 'workers', 'cache')
_ALPHA_ONLY = ('figure', 'weights', 'noise_std', 'intensity', 'force',
               'time_limit')


def add_arguments(parser):
    parser.add_argument('data', metavar='DATA', nargs='?', default=None,
                        help='projection-data file (alpha sweep; not with '
                             '--grid)')
    parser.add_argument('--alphas', nargs='+', default=None, metavar='A',
                        help=f'energy weights (default '
                             f'{" ".join(f"{a:g}" for a in DEFAULT_ALPHAS)}; '
                             f'with --grid: the solver\'s default)')
    parser.add_argument('--figure', metavar='PATH', default=None,
                        help='save the energy/discrepancy plot')
    parser.add_argument('--table', metavar='PATH', default=None,
                        help='save the table (.md Markdown or .csv)')
    parser.add_argument('-o', '--output', metavar='PATH', default=None,
                        help='write the atoms of the chosen alpha (with '
                             '--grid: the table, as --table)')
    parser.add_argument('--r-min', type=positive('--r-min'), default=None,
                        metavar='Å',
                        help='Lennard-Jones equilibrium distance (default: '
                             'estimated once from an energy-free '
                             'reconstruction; with --grid: the phantom\'s '
                             'lattice spacing)')
    parser.add_argument('--weights', default=None, metavar='SPECIES=W,...',
                        help='allowed atom weights (as for reconstruct)')
    parser.add_argument('--sigma', type=positive('--sigma'), default=None,
                        metavar='Å',
                        help='atom std, overriding the file\'s (with --grid: '
                             f'default {DEFAULT_SIGMA})')
    parser.add_argument('--noise-std', type=noise_std, default=None,
                        help='noise std per data value, overriding the '
                             'file\'s')
    parser.add_argument('--intensity', type=positive('--intensity'),
                        default=None, metavar='I',
                        help='data of one atom of weight 1 in the units of '
                             'the file (the data are divided by it)')
    add_limit_options(parser, time=True, force=True)
    grid = parser.add_argument_group(
        'grid of simulated reconstructions (--grid; each option takes one or '
        'more values, the grid is every combination)')
    grid.add_argument('--grid', action='store_true',
                      help='run a grid of simulated reconstructions on Dask '
                           'instead of sweeping alpha on DATA')
    grid.add_argument('--phantoms', nargs='+', default=['vacancy'],
                      metavar='NAME',
                      help='built-in phantoms (as for simulate --phantom) or '
                           'atom files')
    grid.add_argument('--angles', nargs='+', action='append', default=None,
                      metavar='DEG',
                      help='one angle set in DEGREES (as for simulate); '
                           'repeat --angles for several sets (default 0 45 '
                           '90)')
    grid.add_argument('--noise', nargs='+', type=non_negative('--noise'),
                      default=[0.01], help='relative noise levels')
    grid.add_argument('--seeds', nargs='+', type=int, default=[0],
                      help='noise (and random phantom) seeds')
    grid.add_argument('--solvers', nargs='+', choices=list(SOLVERS),
                      default=['adcg'], metavar='SOLVER',
                      help=f'reconstruction methods: {", ".join(SOLVERS)}')
    grid.add_argument('--detector', type=positive_int('--detector'),
                      default=None, metavar='N',
                      help=f'detector cells (default {DEFAULT_N_DETECTOR})')
    grid.add_argument('--shape', type=positive_int('--shape'), nargs=2,
                      metavar=('NX', 'NY'), default=None,
                      help='2D lattice size in atoms (default 7 7)')
    grid.add_argument('--size', type=positive_int('--size'), default=None,
                      help='3D particle size')
    grid.add_argument('--scheduler', metavar='ADDRESS', default=None,
                      help='Dask scheduler to use, e.g. tcp://host:8786 (its '
                           'workers need odl_atoms); "synchronous" runs here '
                           'without Dask (default: a local cluster)')
    grid.add_argument('--workers', type=positive_int('--workers'), default=2,
                      help='worker processes of the local cluster')
    grid.add_argument('--cache', metavar='DIR', default=None,
                      help='folder of finished reconstructions (one JSON '
                           'file each); a re-run reuses them')


def run(args):
    explicit = getattr(args, '_explicit', set())
    if args.grid:
        misplaced = [n for n in _ALPHA_ONLY if n in explicit]
        if misplaced:
            raise UsageError(
                f'{", ".join("--" + n.replace("_", "-") for n in misplaced)}: '
                f'not used by sweep --grid (which simulates its own data); '
                f'the table goes to --table or -o')
        if args.data is not None:
            raise UsageError(f'sweep --grid simulates its data from '
                             f'--phantoms; it reads no data file (got '
                             f'{args.data!r})')
        return run_grid(args)
    misplaced = [n for n in _GRID_ONLY if n in explicit]
    if misplaced:
        raise UsageError(
            f'{", ".join("--" + n for n in misplaced)}: these options '
            f'describe a grid; add --grid')
    if args.data is None:
        raise UsageError('sweep needs a projection-data file (the alpha '
                         'sweep), or --grid (a grid of simulated '
                         'reconstructions)')
    return run_alpha_sweep(args)


def run_alpha_sweep(args):
    """``odl-atoms sweep DATA``: `odl_atoms.alpha_sweep` on a data file."""
    import numpy as np

    from odl_atoms.io import write_atoms
    from odl_atoms.metrics import match_atoms
    from odl_atoms.plot import plot_alpha_sweep
    from odl_atoms.reconstruction import reconstruct_alphas
    from odl_atoms.tables import csv_table, markdown_table

    measured = read_projections(args.data, args.sigma, args.noise_std,
                                need_sigma=True, intensity=args.intensity,
                                max_bytes=memory_limit(args))
    alphas = parse_alphas(args.alphas or [str(a) for a in DEFAULT_ALPHAS])
    check_outputs([('--figure', args.figure, 'figure'),
                   ('--table', args.table, 'table'),
                   ('-o', args.output, 'atoms')],
                  inputs=[('DATA', args.data)])
    weights = parse_weights(args.weights)
    # ADCG's own candidate grid (sigma) also in 3D, as below.
    check_input(args, measured, 'adcg', weights=weights, r_min=args.r_min,
                grid_spacing=measured.sigma)
    r_min = args.r_min
    limit = None if args.time_limit == float('inf') else args.time_limit
    started = time.monotonic()
    if r_min is None and any(a > 0 for a in alphas):
        r_min = equilibrium_distance(args, measured, weights,
                                     time_limit=limit)
        info(args, f'estimated r_min {r_min:.3f} Å (nearest-neighbour '
                   f'distance of the energy-free reconstruction)')
    bar = progress(args, total=len(alphas), desc='alpha sweep', unit=' alpha')
    try:
        def step(alpha, result):
            bar.set_postfix(alpha=f'{alpha:g}', atoms=result.n_atoms,
                            refresh=False)
            bar.update(1)
        # ADCG's own candidate grid also in 3D (reconstruct's is coarser).
        sweep = reconstruct_alphas(
            measured, alphas, 'adcg', weights=weights, callback=step,
            grid_spacing=None, checks=False,
            time_limit=None if limit is None
            else max(limit - (time.monotonic() - started), 1e-3),
            **({'potential': 'auto'} if r_min is None else {'r_min': r_min}))
    finally:
        bar.close()
    chosen = sweep.discrepancy_choice()
    truth = measured.ground_truth()
    header = ['alpha', 'chosen', 'discrepancy', 'energy V/eps', 'atoms']
    if truth is not None:
        header += ['F1', 'RMSD (Å)']
    rows = []
    for (alpha, disc, energy, n), result in zip(sweep.as_table(),
                                                sweep.results):
        row = [f'{alpha:g}', '*' if np.isclose(alpha, chosen) else '',
               f'{disc:.4g}', fmt('{:.4g}', energy), n]
        if truth is not None:
            m = match_atoms(truth, result.measure)
            row += [f'{m.f1:.3f}', fmt('{:.3f}', m.rmsd)]
        rows.append(row)
    print(markdown_table(header, rows))
    if sweep.noise_norm:
        print(f'\nnoise norm delta = {sweep.noise_norm:.4g}; chosen alpha = '
              f'{chosen:g} (*): the largest alpha whose discrepancy is at most '
              f'1.1 delta (discrepancy principle)')
    else:
        print(f'\nnoise level unknown (no noise_std in the file; give '
              f'--noise-std): the discrepancy principle cannot be applied; '
              f'alpha = {chosen:g} (*) is the default')
    if args.table:
        text = (csv_table(header, rows) if Path(args.table).suffix.lower()
                == '.csv' else markdown_table(header, rows) + '\n')
        write_text(args.table, text)
        print(f'wrote {args.table}')
    if args.figure:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        plot_alpha_sweep(sweep, ax=ax, chosen=chosen)
        ax.set_title(f'energy weight sweep ({Path(args.data).name})')
        fig.tight_layout()
        save_figure(fig, args.figure)
        print(f'wrote {args.figure}')
    if args.output:
        write_atoms(args.output, sweep.result(chosen).measure)
        print(f'wrote {args.output} (alpha = {chosen:g})')
    return 0


def run_grid(args):
    """``odl-atoms sweep --grid``: `odl_atoms.sweep.run_sweep` on a grid."""
    import numpy as np

    from odl_atoms.reconstruction import solver_class
    from odl_atoms.sweep import run_sweep, sweep_tasks

    output = args.output or args.table
    if args.output and args.table and args.output != args.table:
        raise UsageError('give the grid\'s table once: --table or -o')
    check_outputs([('--table', output, 'table')])
    for name in args.phantoms:
        if Path(name).suffix:
            input_file(name, 'atom')
        elif name not in PHANTOM_NAMES:
            raise UsageError(f'--phantoms: unknown phantom {name!r}; choose '
                             f'from {", ".join(PHANTOM_NAMES)}, or give atom '
                             f'files')
    angle_sets = [tuple(float(a) for a in np.round(np.degrees(
        parse_angles(tokens)), 9)) for tokens in args.angles or [['0', '45',
                                                                 '90']]]
    alphas = [None]
    if args.alphas:
        alphas = parse_alphas(args.alphas)
    for name in args.solvers:
        solver_class(name)
    if args.cache:
        cache = Path(args.cache)
        if cache.exists() and not cache.is_dir():
            raise UsageError(f'--cache: {args.cache!r} is a file; give a '
                             f'folder')
        if not cache.parent.is_dir():
            raise UsageError(f'--cache: the folder {str(cache.parent)!r} '
                             f'does not exist')
        # Rows are written into it (or it is made in its parent).
        probe = cache / 'row.json' if cache.is_dir() else cache
        check_outputs([('--cache', probe, None)])
    options = {} if args.r_min is None else {'potential': args.r_min}
    tasks = sweep_tasks(
        phantom=args.phantoms, angles_deg=angle_sets,
        sigma=args.sigma or DEFAULT_SIGMA,
        n_detector=args.detector or DEFAULT_N_DETECTOR, noise=args.noise,
        seed=args.seeds, solver=args.solvers, alpha=alphas,
        shape=None if args.shape is None else tuple(args.shape),
        size=args.size, solver_options=options)
    where = {None: f'a local Dask cluster ({args.workers} workers)',
             'synchronous': 'this process'}.get(args.scheduler,
                                                args.scheduler)
    info(args, f'sweep: {len(tasks)} reconstructions on {where}'
               + (f', cache {args.cache}' if args.cache else ''))
    import warnings
    with warnings.catch_warnings():
        # The sweep's warnings (cache files not reused) as they happen, in
        # the command line's form.
        warnings.simplefilter('always', UserWarning)
        warnings.showwarning = lambda message, *_, **__: warn(message)
        result = run_sweep(tasks, scheduler=args.scheduler,
                           n_workers=args.workers, cache_dir=args.cache,
                           progress=not getattr(args, 'quiet', False),
                           max_memory=memory_limit(args),
                           memory_names=CLI_NAMES)
    print(result.as_markdown())
    print(f'\n{result.summary()}')
    if output:
        if Path(output).suffix.lower() == '.csv':
            result.to_csv(output)
        else:
            write_text(output, result.as_markdown() + '\n')
        print(f'wrote {output}')
    if result.failed:
        print(f'odl-atoms: {len(result.failed)} of {len(result.rows)} '
              f'reconstructions failed; their errors are in the table\'s '
              f'status column', file=sys.stderr)
        return 1
    return 0

