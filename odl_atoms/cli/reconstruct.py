"""``odl-atoms reconstruct``: projection-data file -> atom file."""

import json
from collections.abc import Mapping
from pathlib import Path

from odl_atoms.cli.common import (ATOM_SUFFIX_HELP, UsageError,
                                  add_limit_options, calibrate_measurement,
                                  check_input,
                                  check_outputs, fmt, info, jsonable,
                                  memory_limit, metrics_header, metrics_rows,
                                  noise_std, non_negative, parse_weights,
                                  positive, read_atoms_file, read_projections,
                                  reconstruction_figure, run_reconstruction,
                                  save_figure, write_text)
from odl_atoms.defaults import DEFAULT_ALPHA, DEFAULT_SEED, LATTICE_NAMES
from odl_atoms.reconstruction import SOLVERS

HELP = 'projection-data file -> atom file'
DESCRIPTION = ('Reconstruct the atoms from a projection-data file and write '
               'them to an atom file. If the file holds a ground truth, the '
               'metrics against it are printed too.')
EPILOG = ('The defaults also suit data not simulated with odl-atoms: '
          'without noise_std in the file ADCG stops when an atom no longer '
          'explains half of its own data; without a ground truth no metrics '
          'are printed. The data must be scaled so that an atom of weight w '
          'adds w to the integral of every projection (give --weights in '
          'data units otherwise); a warning says when the scale looks wrong.')

#: ``--lattice`` choices: 'auto', the 2D lattices, the 3D (cubic) ones,
#: and 'none' (the greedy start alone).
LATTICES = ('auto',) + LATTICE_NAMES + ('none',)


def add_arguments(parser):
    parser.add_argument('data', metavar='DATA',
                        help='projection-data file (.npz, .h5, .hdf5)')
    parser.add_argument('-o', '--output', required=True, metavar='ATOMS',
                        help=f'atom file to write ({ATOM_SUFFIX_HELP})')
    parser.add_argument('--figure', metavar='PATH', default=None,
                        help='also save a figure (.png, .pdf, .svg)')
    parser.add_argument('--json', metavar='PATH', default=None,
                        help='also write a JSON summary (and metrics)')
    parser.add_argument('--solver', default='adcg', choices=list(SOLVERS),
                        help='reconstruction method; sa = simulated '
                             'annealing, sirt = SIRT + atom picking')
    parser.add_argument('--alpha', type=non_negative('--alpha'), default=None,
                        help=f'dimensionless energy weight (default '
                             f'{DEFAULT_ALPHA:g}, ADCG\'s DEFAULT_ALPHA); 0: '
                             f'data only')
    parser.add_argument('--r-min', type=positive('--r-min'), default=None,
                        metavar='Å',
                        help='equilibrium distance of the Lennard-Jones '
                             'potential (the nearest-neighbour distance); '
                             'default: the spacing of the fitted lattice '
                             'when one explains the data (--lattice), else '
                             'estimated from an energy-free reconstruction; '
                             'printed with its source')
    parser.add_argument('--weights', default=None, metavar='SPECIES=W,...',
                        help='allowed atom weights: one number, or by species '
                             'like Au=1,Pt=1.3 (default 1)')
    parser.add_argument('--sigma', type=positive('--sigma'), default=None,
                        metavar='Å', help='atom std, overriding the file\'s')
    parser.add_argument('--noise-std', type=noise_std, default=None,
                        help='noise std per data value, overriding the '
                             'file\'s (default: the file\'s, else estimated '
                             'from the data; 0 for noise-free data). With it '
                             'and lattice starts, ADCG lowers alpha when its '
                             'answer fits the data worse than the noise '
                             'explains (discrepancy principle); "none": '
                             'unknown (not estimated)')
    parser.add_argument('--init', metavar='ATOMS', default=None,
                        help='start from the atoms of this file')
    parser.add_argument('--grid-spacing', type=positive('--grid-spacing'),
                        default=None, metavar='Å',
                        help='candidate grid spacing of ADCG (and annealing); '
                             'default: sigma in 2D (ADCG\'s), 2 sigma in 3D, '
                             'which is ~8x faster and found the same atoms')
    parser.add_argument('--lattice', default='auto', choices=LATTICES,
                        help='ADCG also starts from the best-fitting lattice '
                             'of this kind (one, one per half box, and in 2D '
                             'two meeting at a searched cut), its spacing '
                             'fitted to the data; the lowest objective wins. '
                             '2D: square, hexagonal, rectangular, '
                             'centred_rectangular (their aspect b/a fitted), '
                             'honeycomb (two sites per cell; orientation '
                             'searched); '
                             '3D: fcc, bcc, sc with cubic axes along x, y, '
                             'z. auto (default): the square and hexagonal '
                             'lattices in 2D, every 3D one in 3D, are fitted, '
                             'and the best one\'s starts '
                             'join the greedy start when it explains the '
                             'data; none: the greedy start alone')
    parser.add_argument('--seed', type=int, default=None,
                        help=f'seed of randomised steps (default '
                             f'{DEFAULT_SEED}, as odl_atoms.reconstruct)')
    parser.add_argument('--intensity', type=positive('--intensity'),
                        default=None, metavar='I',
                        help='data of one atom of weight 1, in the units of '
                             'the file (the data are divided by it), for '
                             'data not in units of one atom')
    parser.add_argument('--movie', metavar='PATH', default=None,
                        help='also save the search as an animated GIF (atoms '
                             'added and moved, iteration by iteration, over '
                             'the data fit)')
    add_limit_options(parser, time=True, force=True)


def _lattice(args, measured):
    """``(lattice, starts)``: `odl_atoms.reconstruct`'s ``lattice`` for
    ``--lattice`` ('auto', a name or None), and the starts the memory check
    counts (the largest set the reconstruction may run)."""
    lattice = None if args.lattice == 'none' else args.lattice
    if args.solver != 'adcg':
        if lattice not in (None, 'auto'):
            raise UsageError('--lattice applies to --solver adcg only')
        return None, None
    if lattice is None:
        return None, None
    from odl_atoms.solvers.starts import LATTICES_BY_NDIM, lattice_starts
    names = LATTICES_BY_NDIM[measured.ndim]
    if lattice != 'auto' and lattice not in names:
        lattice_ndim = 3 if measured.ndim == 2 else 2
        raise UsageError(
            f'--lattice {lattice} is a {lattice_ndim}D lattice but the '
            f'data are {measured.ndim}D; use ' + ', '.join(names)
            + ' or auto')
    return lattice, lattice_starts(names[0] if lattice == 'auto' else lattice,
                                   ndim=measured.ndim)


def _defaults_lines(info):
    """What `odl_atoms.reconstruct` chose where the command line left it
    open: the lattice, r_min, the noise level and the starts' outcome."""
    lines = []
    lattice = info.get('lattice')
    if lattice and lattice.get('fits'):
        fits = ', '.join(
            f'{fit["lattice"]}'
            + (' (two domains)' if fit.get('domains', 1) > 1 else '')
            + f' {100 * fit["residual_fraction"]:.2g} %'
            for fit in lattice['fits'])
        chosen = lattice.get('chosen')
        if chosen and lattice.get('domains', 1) > 1:
            verdict = (f'two {chosen} domains explain the data (<= '
                       f'{100 * lattice["split_threshold"]:g} %)')
        elif chosen:
            verdict = (f'{chosen} explains the data (<= '
                       f'{100 * lattice["threshold"]:g} %)')
        else:
            verdict = (f'none explains the data (> '
                       f'{100 * lattice["threshold"]:g} %)')
        lines.append(
            f'lattice fit (data left unexplained): {fits}; ' + verdict
            + f'; starts: {", ".join(lattice["starts"])} '
            f'({lattice["seconds"]:.1f} s)')
    twinned = info.get('twinned')
    if twinned and twinned.get('fits'):
        fits = ', '.join(f'{fit["lattice"]} {100 * fit["residual_fraction"]:.2g} %'
                         for fit in twinned['fits'])
        verdict = (f'{twinned["chosen"]} explains the data (<= '
                   f'{100 * twinned["threshold"]:g} %)' if twinned['chosen']
                   else f'none explains the data (> '
                        f'{100 * twinned["threshold"]:g} %)')
        lines.append(f'twinned fit (data left unexplained): {fits}; '
                     f'{verdict} ({twinned["seconds"]:.1f} s)')
    r_min = info.get('r_min')
    if r_min and r_min.get('source') != 'given':
        error = (f' +- {r_min["error"]:.2g}' if r_min.get('error')
                 is not None else '')
        lines.append(f'r_min {r_min["value"]:.3f}{error} Å '
                     f'({r_min["source"]})')
    noise = info.get('noise')
    if noise and noise.get('source') == 'estimated':
        lines.append(f'noise_std {noise["value"]:.4g} estimated from the '
                     f'data ({noise.get("method")})')
    gap = info.get('start_gap')
    if gap:
        text = f'best start: {gap["best"]}'
        if gap['agreeing']:
            text += f' (same atoms: {", ".join(gap["agreeing"])})'
        if gap['runner_up'] is not None:
            text += (f'; next best with other atoms: {gap["runner_up"]}, '
                     f'{gap["gap"]:.3g} atom energies higher')
        else:
            text += '; every start ended at these atoms'
        lines.append(text)
    return lines


def run(args):
    import odl

    from odl_atoms.confidence import atom_confidence, verdict
    from odl_atoms.io import write_atoms
    from odl_atoms.metrics import match_atoms
    from odl_atoms.plot import save_movie
    from odl_atoms.problem import Problem
    from odl_atoms.reconstruction import default_grid_spacing, solver_class
    from odl_atoms.solvers import ADCG
    from odl_atoms.tables import markdown_table

    raw = read_projections(args.data, args.sigma, args.noise_std,
                           intensity=args.intensity, calibrate=True,
                           max_bytes=memory_limit(args))
    figure = extra = None
    if args.figure:
        figure = Path(args.figure)
        if raw.ndim == 3:  # a second figure: the projection images
            extra = figure.with_name(figure.stem + '-projections'
                                     + figure.suffix)
    out, _, _, _, movie = check_outputs(
        [('-o', args.output, 'atoms'), ('--figure', figure, 'figure'),
         ('--figure (its projection images)', extra, 'figure'),
         ('--json', args.json, 'json'), ('--movie', args.movie, 'movie')],
        inputs=[('DATA', args.data), ('--init', args.init)])
    # Data in a microscope's units (odl-atoms prepare): the atom width, the
    # intensity of one atom, backgrounds and the noise from the data; the
    # reconstruction refines them at the atoms it finds.
    measured, calibration = calibrate_measurement(args, raw)
    weights = parse_weights(args.weights)
    cls = solver_class(args.solver)
    lattice, starts = _lattice(args, measured)
    check_input(args, measured, args.solver, weights=weights,
                r_min=args.r_min, grid_spacing=args.grid_spacing,
                starts=starts)
    init = None
    if args.init is not None:
        space = measured.measure_space()
        init = read_atoms_file(args.init, space=space,
                               weights=weights if isinstance(weights, Mapping)
                               else None)
    info(args, f'reconstructing from {args.data}: {measured.n_angles} '
               f'angles, {measured.ndim}D, sigma {measured.sigma:g} Å, '
               f'noise_std {fmt("{:.4g}", measured.noise_std)}; '
               f'{cls.__name__}')
    store = odl.solvers.CallbackStore() if movie is not None else None
    result = run_reconstruction(
        args, measured, solver=args.solver, alpha=args.alpha,
        r_min=args.r_min, weights=weights, initial=init,
        grid_spacing=args.grid_spacing, lattice=lattice, callback=store,
        raw=raw, calibration=calibration)
    if calibration is not None:
        measured = result.info.get('calibrated', measured)
        print('calibration (refined at the atoms): sigma '
              f'{measured.sigma:.4g} Å, intensity of one atom '
              f"{result.info['calibration'].intensity:.4g} "
              f'{raw.intensity_unit or "data units"}'
              + (f"; {len(result.info['calibration_rounds'])} round(s)"
                 if result.info.get('calibration_rounds') else ''))
    # How far to trust each atom, without a truth: written with the atoms
    # and drawn in the figure; the verdict sums it up in one line.
    operator = measured.operator()
    if result.info.get('alignment'):
        operator = operator.shifted(result.info['alignment']['shifts'])
    problem = Problem(operator, measured.element(),
                      weights=weights, noise_std=measured.noise_std)
    judge = (ADCG(grid_spacing=args.grid_spacing
                  or default_grid_spacing(measured))
             if measured.ndim == 3 else None)
    confidence = atom_confidence(result, problem, solver=judge)
    write_atoms(out, result.measure, extra=confidence.arrays())
    r_est = result.info.get('estimated_r_min')
    print(f'{cls.__name__}: {result.n_atoms} atoms in {result.time:.1f} s, '
          f'{result.n_iterations} iterations, data misfit '
          f'{result.data_misfit:.4g}'
          + (f', estimated r_min {r_est:.3f} Å' if r_est else ''))
    for line in _defaults_lines(result.info):
        print(line)
    lowered = result.info.get('lowered_alpha')
    if lowered:
        print(f'alpha lowered from {lowered[0]["alpha"]:.3g} to '
              f'{result.info["alpha"]:.3g} by the discrepancy principle '
              f'(the answer at {lowered[0]["alpha"]:.3g} fit the data worse '
              f'than the noise explains: misfit '
              f'{lowered[0]["data_misfit"]:.3g} > {lowered[0]["bound"]:.3g} '
              f'E_atom)')
    certificate = result.info.get('certificate')
    if certificate is not None:
        print('certificate:\n  ' + str(certificate).replace('\n', '\n  '))
    print('verdict: ' + verdict(result, problem, confidence=confidence))
    print(f'wrote {out}')
    truth = measured.ground_truth()
    report = {'solver': cls.__name__, 'data': str(args.data),
              'alpha': args.alpha, 'alpha_used': result.info.get('alpha'),
              'r_min': args.r_min or r_est,
              'n_atoms': result.n_atoms,
              'time': result.time, 'n_iterations': result.n_iterations,
              'data_misfit': result.data_misfit, 'energy': result.energy,
              'defaults': {key: result.info[key] for key in (
                  'lattice', 'r_min', 'noise', 'seed', 'start_gap')
                  if key in result.info}}
    if truth is not None:
        match = match_atoms(truth, result.measure)
        scores = match.as_dict()
        report['metrics'] = scores
        print('\nagainst the ground truth stored in the data file:')
        print(markdown_table(metrics_header(),
                             metrics_rows({args.solver: (scores,
                                                         result.time)})))
    if args.json:
        write_text(args.json, json.dumps(jsonable(report), indent=2) + '\n')
        print(f'wrote {args.json}')
    if args.figure:
        figs = reconstruction_figure(result, truth, measured.element(),
                                     operator, args.solver,
                                     confidence=confidence)
        save_figure(figs[0], figure)
        print(f'wrote {figure}')
        if len(figs) > 1:
            save_figure(figs[1], extra)
            print(f'wrote {extra}')
    if movie is not None:
        save_movie(movie, store.results, problem, truth=truth)
        print(f'wrote {movie}')
    return 0
