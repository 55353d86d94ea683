"""``odl-atoms evaluate``: reconstructed atoms vs. ground truth -> scores."""

import json
from pathlib import Path

from odl_atoms.cli.common import (UsageError, check_outputs, metrics_header,
                                  metrics_rows, non_negative, read_atoms_file,
                                  read_reference, write_text)

HELP = 'compare reconstructed atoms with the ground truth'
DESCRIPTION = ('Match reconstructed atoms to the ground truth (optimal '
               'assignment within a tolerance) and print precision, recall, '
               'F1 and RMSD.')


def add_arguments(parser):
    parser.add_argument('reconstruction', metavar='RECON', help='atom file')
    parser.add_argument('truth', metavar='TRUTH',
                        help='atom file, or projection-data file with a '
                             'ground truth')
    parser.add_argument('--tolerance', type=non_negative('--tolerance'),
                        default=None, metavar='Å',
                        help='largest distance of a matched pair (default 0.3 '
                             'nearest-neighbour distances of the truth)')
    parser.add_argument('--json', nargs='?', const='-', default=None,
                        metavar='PATH',
                        help='print the metrics as JSON (or write them to '
                             'PATH)')


def run(args):
    from odl_atoms.metrics import match_atoms
    from odl_atoms.tables import markdown_table

    truth = read_reference(args.truth)
    recon = read_atoms_file(args.reconstruction, ndim=truth.ndim,
                            hint=f' (the ground truth is {truth.ndim}D)')
    if args.json and args.json != '-':
        check_outputs([('--json', args.json, 'json')],
                      inputs=[('RECON', args.reconstruction),
                              ('TRUTH', args.truth)])
    match = match_atoms(truth, recon, tolerance=args.tolerance)
    scores = match.as_dict()
    if args.json == '-':
        print(json.dumps(scores, indent=2))
        return 0
    print(markdown_table(metrics_header(with_time=False),
                         metrics_rows({Path(args.reconstruction).name:
                                       (scores, None)})))
    extra = [f'matching tolerance {scores["tolerance"]:.3f} Å',
             f'count error {scores["count_error"]:+d}']
    if scores['species_accuracy'] is not None:
        extra.append(f'species accuracy {scores["species_accuracy"]:.3f}')
    print(', '.join(extra))
    if args.json:
        write_text(args.json, json.dumps(scores, indent=2) + '\n')
        print(f'wrote {args.json}')
    return 0
