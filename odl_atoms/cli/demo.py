"""``odl-atoms demo``: the main job on the built-in example."""

import argparse
import json
import time
from pathlib import Path

from odl_atoms.cli.common import (UsageError, check_outputs,
                                  comparison_figure, info, metrics_header,
                                  metrics_rows, positive_int,
                                  run_reconstruction, save_figure, write_text)
from odl_atoms.defaults import DEFAULT_N_DETECTOR, DEFAULT_SIGMA

HELP = 'the main job on the built-in example (no input needed)'
DESCRIPTION = ('Simulate a 7 x 7 gold lattice with one vacancy, project it '
               'at 0, 45 and 90 degrees with 1 % noise, reconstruct it with '
               'ADCG + Lennard-Jones energy (and SIRT + atom picking when '
               'available), print the metrics and save the comparison '
               'figure, the atoms and the data.')

# The demo problem: the README's and the first example's.
DEMO_ANGLES_DEG = (0.0, 45.0, 90.0)
DEMO_SIGMA = DEFAULT_SIGMA
DEMO_DETECTOR = DEFAULT_N_DETECTOR
DEMO_NOISE = 0.01
DEMO_SEED = 0


def add_arguments(parser):
    parser.add_argument('-o', '--output', default='odl_atoms_demo',
                        metavar='DIR', help='output folder (created if missing)')
    # Smaller problems for the tests.
    parser.add_argument('--shape', type=positive_int('--shape'), nargs=2,
                        default=None, help=argparse.SUPPRESS)
    parser.add_argument('--detector', type=positive_int('--detector'),
                        default=None, help=argparse.SUPPRESS)


def run(args):
    import numpy as np

    from odl_atoms.io import write_atoms, write_projections
    from odl_atoms.metrics import match_atoms
    from odl_atoms.phantoms import defect_phantom
    from odl_atoms.reconstruction import available_solvers
    from odl_atoms.simulation import simulate
    from odl_atoms.tables import markdown_table

    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f'{str(outdir)!r} exists and is not a folder')
    if not outdir.parent.is_dir():
        raise UsageError(f'cannot create {str(outdir)!r}: the folder '
                         f'{str(outdir.parent)!r} does not exist')
    if not outdir.exists():
        check_outputs([('--output', outdir, None)])  # its parent writable
    outdir.mkdir(exist_ok=True)
    check_outputs([('--output', outdir / 'projections.npz', None)])
    start = time.perf_counter()
    kwargs = {} if args.shape is None else {'shape': tuple(args.shape)}
    phantom = defect_phantom('vacancy', **kwargs)
    angles = np.radians(DEMO_ANGLES_DEG)
    measured = simulate(phantom.measure, angles, DEMO_SIGMA,
                        n_detector=args.detector or DEMO_DETECTOR,
                        noise=DEMO_NOISE, seed=DEMO_SEED)
    info(args, f'odl-atoms demo: {phantom.n_atoms} gold columns (square '
               f'lattice, spacing {phantom.lattice_spacing} Å, one vacancy) '
               f'projected at {", ".join(f"{a:g}" for a in DEMO_ANGLES_DEG)} '
               f'degrees with {DEMO_NOISE:.0%} noise')
    files = []
    path = outdir / 'projections.npz'
    write_projections(path, measured)
    files.append(path)
    path = outdir / 'truth.extxyz'
    write_atoms(path, phantom.measure)
    files.append(path)

    results, scores, notes = {}, {}, []
    runs = [('ADCG + energy', 'adcg', {'r_min': phantom.lattice_spacing})]
    if 'sirt' in available_solvers():
        runs.append(('SIRT + picking', 'sirt', {}))
    else:
        notes.append('SIRT + picking skipped: odl_atoms.SIRT is not available '
                     'in this version')
    for label, solver, options in runs:
        result = run_reconstruction(args, measured, solver=solver, desc=label,
                                    **options)
        results[label] = result
        scores[label] = (match_atoms(phantom.measure, result.measure).as_dict(),
                         result.time)
        path = outdir / f'{solver}.extxyz'
        write_atoms(path, result.measure)
        files.append(path)
    for note in notes:
        info(args, note)

    table = markdown_table(metrics_header(), metrics_rows(scores))
    print()
    print(table)
    path = outdir / 'metrics.md'
    write_text(path, table + '\n')
    files.append(path)
    path = outdir / 'metrics.json'
    write_text(path, json.dumps({k: dict(v[0], time=v[1])
                                 for k, v in scores.items()}, indent=2) + '\n')
    files.append(path)
    fig = comparison_figure(results, phantom.measure, measured.element(),
                            measured.operator(), fit_label='ADCG + energy')
    path = outdir / 'comparison.png'
    save_figure(fig, path)
    files.append(path)
    print(f'\nwrote {", ".join(str(f) for f in files)} '
          f'({time.perf_counter() - start:.0f} s)')
    return 0
