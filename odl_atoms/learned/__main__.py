"""Command line of the learned picker: ``python -m odl_atoms.learned``.

::

    python -m odl_atoms.learned train --angles 0,45,90 -o weights.pt
    python -m odl_atoms.learned train --angles 0,60,120 --sigma 0.43 \\
        --detector 96 --samples 1200 --steps 2500 --workers 2 -o m.pt
    python -m odl_atoms.learned info weights.pt

Angles are in degrees here (radians in the Python API), lengths in
angstrom. Use the trained file with ``LearnedPicker('weights.pt')`` or
``LearnedSIRT(model='weights.pt')``.
"""

import argparse
import math
import sys

__all__ = ('main', 'build_parser')


def _floats(text):
    try:
        return [float(x) for x in text.replace(' ', '').split(',') if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected comma-separated numbers, got {text!r}') from None


def build_parser():
    """Return the argument parser."""
    from odl_atoms.learned.training import default_training_config
    d = default_training_config()
    parser = argparse.ArgumentParser(
        prog='python -m odl_atoms.learned',
        description='Train or inspect the learned atom picker (SIRT + CNN).')
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser(
        'train', help='train a model for one problem',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description='Train a picker network on random crystals simulated '
                    'and reconstructed with SIRT for the given problem.')
    p.add_argument('-o', '--output', required=True, metavar='FILE.pt',
                   help='where to write the model')
    p.add_argument('--angles', type=_floats, default='0,45,90',
                   help='tilt angles in degrees, comma-separated')
    p.add_argument('--sigma', type=float, default=None,
                   help='atom width in angstrom (default 0.15 * spacing)')
    p.add_argument('--spacing', type=float, default=d['spacing'],
                   help='typical nearest-neighbour distance (angstrom)')
    p.add_argument('--detector', type=int, default=d['n_detector'],
                   help='detector cells across the box shadow')
    p.add_argument('--box', type=_floats, default=None,
                   help='box width[,height] in angstrom, centred (default '
                        '8 * spacing)')
    p.add_argument('--noise', type=_floats, default='0,0.05',
                   help='relative noise level, or a range low,high')
    p.add_argument('--samples', type=int, default=d['n_samples'],
                   help='number of simulated SIRT images')
    p.add_argument('--steps', type=int, default=d['n_steps'],
                   help='optimiser steps')
    p.add_argument('--batch-size', type=int, default=d['batch_size'])
    p.add_argument('--learning-rate', type=float, default=d['learning_rate'])
    p.add_argument('--width', type=int, default=d['width'],
                   help='network width (channels of the first level)')
    p.add_argument('--loss', choices=('bce', 'focal'), default=d['loss'])
    p.add_argument('--pos-weight', type=float, default=d['pos_weight'],
                   help='weight of atom pixels in the BCE loss')
    p.add_argument('--seed', type=int, default=d['seed'])
    p.add_argument('--workers', type=int, default=1,
                   help='processes that simulate samples')
    p.add_argument('--device', default=None,
                   help="torch device (default: 'cuda' if available, else "
                        "'cpu')")
    p.add_argument('-q', '--quiet', action='store_true',
                   help='no progress bars')
    p = sub.add_parser('info', help='print the configuration of a model')
    p.add_argument('model', nargs='?', default=None,
                   help='model file (default: the shipped model)')
    return parser


def main(argv=None):
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == 'train':
            return _train(args)
        return _info(args)
    except (ImportError, ValueError, FileNotFoundError) as exc:
        print(f'python -m odl_atoms.learned: error: {exc}', file=sys.stderr)
        return 2


def _train(args):
    from odl_atoms.learned.training import train
    box = args.box
    if box is not None:
        if len(box) not in (1, 2):
            raise ValueError(f'--box takes a width or width,height, got {box}')
        box = box * 2 if len(box) == 1 else box
    noise = args.noise[0] if len(args.noise) == 1 else args.noise
    model = train(angles=[math.radians(a) for a in args.angles],
                  sigma=args.sigma, spacing=args.spacing,
                  n_detector=args.detector, box=box, noise=noise,
                  n_samples=args.samples, n_steps=args.steps,
                  batch_size=args.batch_size,
                  learning_rate=args.learning_rate, width=args.width,
                  loss=args.loss, pos_weight=args.pos_weight,
                  seed=args.seed, device=args.device,
                  workers=args.workers, progress=not args.quiet,
                  output=args.output)
    val = model.history.get('val_loss') or [float('nan')]
    f1 = model.config.get('val_f1', float('nan'))
    print(f'wrote {args.output}: {model.n_parameters} parameters, '
          f'validation loss {val[-1]:.4f}, validation F1 {f1:.3f} at '
          f'threshold {model.config["threshold"]:.2f}, trained in '
          f'{model.config["training_time"]:.0f} s')
    return 0


def _info(args):
    from odl_atoms.learned.model import default_model_path, load_model
    model = load_model(args.model, device='cpu')
    print(args.model or default_model_path())
    print(repr(model))
    for key, value in sorted(model.config.items()):
        if key == 'angles':
            value = [round(math.degrees(a), 4) for a in value]
            key = 'angles (degrees)'
        print(f'  {key}: {value}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
