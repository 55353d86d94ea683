"""``odl-atoms simulate``: phantom or atom file -> projection-data file."""

import math

from odl_atoms.cli.common import (CLI_NAMES, UsageError, add_limit_options,
                                  check_outputs, fmt, info, memory_limit,
                                  non_negative, parse_angles, parse_weights,
                                  positive, positive_int, read_atoms_file)
from odl_atoms.defaults import (DEFAULT_SIGMA, NANOPARTICLE_SHAPES,
                                PHANTOM_NAMES, PHANTOM_NAMES_2D)
from odl_atoms.errors import ValidationError

HELP = 'phantom or atom file -> simulated projection-data file'
DESCRIPTION = ('Project a phantom (or the atoms of a file) at the given tilt '
               'angles with the exact Gaussian-atom model, add noise, and '
               'write a projection-data file (.npz or .h5) that also holds '
               'the ground truth.')
EPILOG = ('examples:\n'
          '  odl-atoms simulate -o tilts.npz\n'
          '  odl-atoms simulate --phantom grain_boundary --lattice hexagonal '
          '--angles 0 60 120 -o gb.h5\n'
          '  odl-atoms simulate --phantom octahedron --size 3 '
          '--angles=-60:60:5 -o octa.npz\n'
          '  odl-atoms simulate --atoms cluster.xyz --weights Au=1,Pt=1.3 '
          '-o cluster.npz')

#: Default detector cell, in units of sigma: fine enough that an atom spans
#: several cells.
DEFAULT_CELL_PER_SIGMA = 0.8


def add_arguments(parser):
    parser.add_argument('-o', '--output', required=True, metavar='DATA',
                        help='projection-data file to write (.npz, .h5 or '
                             '.hdf5)')
    src = parser.add_argument_group('what to project')
    src.add_argument('--phantom', metavar='NAME', default=None,
                     help=f'built-in phantom: 2D {", ".join(PHANTOM_NAMES_2D)};'
                          f' 3D {", ".join(NANOPARTICLE_SHAPES + ("slab",))} '
                          f'(default: vacancy)')
    src.add_argument('--atoms', metavar='FILE', default=None,
                     help='project the atoms of this file instead (any format '
                          'ASE reads)')
    src.add_argument('--lattice', choices=('square', 'hexagonal'),
                     default='square', help='2D lattice')
    src.add_argument('--shape', type=positive_int('--shape'), nargs=2,
                     metavar=('NX', 'NY'), default=None,
                     help='2D lattice size in atoms (default 7 7)')
    src.add_argument('--size', type=positive_int('--size'), default=None,
                     help='3D particle size (atoms along an edge; shells of an '
                          'icosahedron; slab width)')
    src.add_argument('--spacing', type=positive('--spacing'), default=None,
                     help='nearest-neighbour distance in Å (default 2.885, '
                          'gold)')
    src.add_argument('--symbol', default=None,
                     help='chemical element of the 3D phantoms (default Au)')
    src.add_argument('--relax', action='store_true',
                     help='relax the atoms within 1.2 lattice spacings of the '
                          'defect under a Lennard-Jones potential whose '
                          'minimum is the lattice spacing (what a crystal '
                          'does; see odl_atoms.relax_defect)')
    src.add_argument('--weights', default=None, metavar='SPECIES=W,...',
                     help='atom weights of an --atoms file by species, e.g. '
                          'Au=1,Pt=1.3 (default: the file\'s, else 1)')
    src.add_argument('--ndim', type=int, choices=(2, 3), default=None,
                     help='read an --atoms file as 2D (flat, z constant) or 3D')
    meas = parser.add_argument_group('the measurement')
    meas.add_argument('--angles', nargs='+', default=['0', '45', '90'],
                      metavar='DEG',
                      help='tilt angles in DEGREES: numbers (0 45 90 or '
                           '0,45,90) or START:STOP:COUNT (write '
                           '--angles=-60:60:5 for a negative start)')
    meas.add_argument('--noise', type=non_negative('--noise'), default=0.01,
                      help='relative Gaussian noise (0.01 = 1 %%)')
    meas.add_argument('--dose', type=positive('--dose'), default=None,
                      help='Poisson noise: electrons per atom per projection')
    meas.add_argument('--sigma', type=positive('--sigma'), default=None,
                      help=f'Gaussian std of an atom in Å (default '
                           f'{DEFAULT_SIGMA})')
    det = meas.add_mutually_exclusive_group()
    det.add_argument('--detector', type=positive_int('--detector'),
                     default=None, metavar='N',
                     help='number of detector cells (per axis)')
    det.add_argument('--detector-cell', type=positive('--detector-cell'),
                     default=None, metavar='Å',
                     help=f'detector cell size in Å (default '
                          f'{DEFAULT_CELL_PER_SIGMA} sigma)')
    meas.add_argument('--seed', type=int, default=0,
                      help='seed of the noise (and of random phantoms)')
    add_limit_options(parser)


def phantom_from_args(args):
    """Build the phantom ``--phantom`` names (with its parameters), after
    checking that its atoms fit in the memory."""
    try:
        return _phantom(args)
    except ValidationError:
        raise
    except ValueError as exc:  # the phantoms' checks of their parameters
        raise UsageError(f'--phantom {args.phantom}: {exc}') from exc


def _check_phantom_size(args, name):
    """Refuse a phantom whose atoms alone exceed the memory, unbuilt."""
    from odl_atoms.resources import (ATOM_BYTES, MemoryEstimate,
                                     phantom_atoms)

    n = phantom_atoms(name, shape=args.shape, size=args.size)
    MemoryEstimate('simulate', ((f'a phantom of {n:.3g} atoms',
                                 n * ATOM_BYTES, 'atoms'),)).check(
        memory_limit(args), names=CLI_NAMES)


def _phantom(args):
    from odl_atoms import phantoms

    name = args.phantom
    if name in PHANTOM_NAMES:
        _check_phantom_size(args, name)
    if name in PHANTOM_NAMES_2D:
        if args.size is not None or args.symbol is not None:
            raise UsageError(f'--size and --symbol are for the 3D phantoms; '
                             f'{name!r} is 2D (use --shape NX NY)')
        kwargs = {'lattice': args.lattice}
        if args.shape is not None:
            kwargs['shape'] = tuple(args.shape)
        if args.spacing is not None:
            kwargs['spacing'] = args.spacing
        return phantoms.defect_phantom(name, seed=args.seed, **kwargs)
    if args.shape is not None:
        raise UsageError(f'--shape is for the 2D phantoms; {name!r} is 3D '
                         f'(use --size)')
    kwargs = {}
    if args.symbol is not None:
        kwargs['symbol'] = args.symbol
    if args.spacing is not None:
        kwargs['lattice_constant'] = args.spacing * math.sqrt(2)
    if name in NANOPARTICLE_SHAPES:
        return phantoms.nanoparticle(name, size=args.size, seed=args.seed,
                                     **kwargs)
    if name == 'slab':
        if args.size is not None:
            kwargs['size'] = (args.size, args.size)
        return phantoms.fcc_slab(seed=args.seed, **kwargs)
    raise UsageError(f'unknown phantom {name!r}; choose one of '
                     f'{", ".join(PHANTOM_NAMES)}')


def run(args):
    import numpy as np

    from odl_atoms.io import write_projections
    from odl_atoms.simulation import simulate

    out, = check_outputs([('-o', args.output, 'projections')],
                         inputs=[('--atoms', args.atoms)])
    angles = parse_angles(args.angles)
    weights = parse_weights(args.weights)
    if args.atoms is not None:
        if args.phantom is not None:
            raise UsageError('give either --phantom or --atoms, not both')
        if args.relax:
            raise UsageError('--relax applies to the built-in --phantom '
                             'phantoms (an --atoms file marks no defect)')
        truth = read_atoms_file(args.atoms, weights=weights, ndim=args.ndim)
        source = str(args.atoms)
    else:
        if weights is not None or args.ndim is not None:
            raise UsageError('--weights and --ndim apply to --atoms files')
        args.phantom = args.phantom or 'vacancy'
        phantom = phantom_from_args(args)
        if args.relax:
            from odl_atoms.relax import relax_defect
            try:
                phantom = relax_defect(phantom)
            except ValueError as exc:
                raise UsageError(f'--relax: {exc}') from exc
        truth = phantom.measure
        source = repr(phantom)
    if truth.n_atoms == 0:
        raise UsageError(f'{source} has no atoms')
    sigma = args.sigma or DEFAULT_SIGMA
    kwargs = ({'n_detector': args.detector} if args.detector else
              {'detector_cell': args.detector_cell
               or DEFAULT_CELL_PER_SIGMA * sigma})
    # The memory of the whole simulation, before any of it is allocated
    # (checked here to name the command line's options).
    from odl_atoms.resources import simulation_memory
    from odl_atoms.simulation import detector_size
    size = detector_size(truth.space, angles, sigma, kwargs.get('n_detector'),
                         kwargs.get('detector_cell'))
    simulation_memory(truth.n_atoms, size).check(memory_limit(args),
                                                 names=CLI_NAMES)
    info(args, f'simulating {source}: {truth.n_atoms} atoms in '
               f'{truth.ndim}D, {angles.size} angles '
               f'({", ".join(f"{a:g}" for a in np.degrees(angles))} degrees), '
               f'sigma {sigma:g} Å, noise {args.noise:g}'
               + (f', dose {args.dose:g}' if args.dose else ''))
    measured = simulate(truth, angles, sigma, noise=args.noise, dose=args.dose,
                        seed=args.seed, max_memory=float('inf'), **kwargs)
    write_projections(out, measured)
    shape = 'x'.join(map(str, measured.data.shape))
    print(f'wrote {out} (data {shape}, noise_std '
          f'{fmt("{:.4g}", measured.noise_std)}, ground truth '
          f'{truth.n_atoms} atoms)')
    return 0
