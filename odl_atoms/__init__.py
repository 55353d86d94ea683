"""odl_atoms: grid-free atomic electron tomography with ODL and ASTRA.

Atomic configurations are sparse measures (`SparseMeasureSpace`); the exact
projection of Gaussian atoms is an ODL operator (`GaussianRayTransform`) into
the projection space of ODL's ASTRA-backed ``RayTransform``; a Lennard-Jones
energy (`LennardJones`) is the physical prior; reconstruction methods share
one interface (`Solver`: `ADCG`, `SimulatedAnnealing`, `SIRT`), and
`reconstruct` runs one of them on a measurement.

The package imports its modules when a name from them is first used
(PEP 562): ``import odl_atoms`` alone loads neither ODL nor SciPy, PyTorch
or matplotlib, so that the command line answers ``--help`` at once. Every
public name of the modules below is available here (``odl_atoms.ADCG``,
``from odl_atoms import *``), and so is every submodule
(``odl_atoms.solvers``).
"""

import importlib

__version__ = '0.1.0.dev0'

#: The modules whose public names (their ``__all__``) the package exports,
#: in the order of ``odl_atoms.__all__``, and those names. A name missing
#: here is still found (by importing every module), only more slowly;
#: tests/test_architecture.py checks that this table matches the modules.
_EXPORTS = {
    'space': ('SparseMeasureSpace', 'SparseMeasure'),
    'atoms': ('to_ase', 'from_ase'),
    'operators': ('GaussianRayTransform', 'GaussianAtomsTransform',
                  'GaussianRayTransformJacobian', 'GaussianBackProjection'),
    'functionals': ('LennardJones',),
    'objective': ('AtomObjective', 'objective_functional', 'atom_energy'),
    'solvers':
        ('Solver', 'Reconstruction', 'ADCG', 'auto_discrepancy',
         'BATCH_ESCAPES', 'POLISH_FRACTION', 'Oracle', 'LocalDescent',
         'SearchContext', 'Relocate', 'Regrow', 'ShiftColumn',
         'RegrowColumn', 'Perturb', 'Stiffen', 'RefitLattice',
         'DEFAULT_MOVES', 'MULTI_START_MOVES', 'auto_moves', 'SIRT',
         'DEFAULT_N_ITER', 'DEFAULT_TAU', 'SIRT_IMPLS',
         'nothing_picked_message', 'SimulatedAnnealing', 'AnnealingState',
         'GreedyStart', 'LatticeStart', 'SplitLatticeStart',
         'lattice_starts', 'DEFAULT_STARTS', 'TWIN_KINDS', 'FittedTwin',
         'TwinnedStart', 'fit_twinned', 'twin_template', 'bond_axes',
         'orient', 'Certificate', 'certify'),
    'phantoms': ('Phantom', 'square_lattice', 'hexagonal_lattice',
                 'rectangular_lattice', 'centred_rectangular_lattice',
                 'honeycomb_lattice', 'two_species',
                 'lattice_with_vacancy', 'lattice_with_interstitial',
                 'lattice_with_substitution', 'lattice_with_edge_dislocation',
                 'lattice_with_grain_boundary', 'lattice_with_displacements',
                 'defect_phantom', 'nanoparticle', 'fcc_slab',
                 'PHANTOM_NAMES_2D', 'LATTICES_2D', 'RECTANGULAR_ASPECT',
                 'CENTRED_ASPECT', 'NANOPARTICLE_SHAPES', 'DEFAULT_SPACING'),
    'relax': ('relax_defect',),
    'metrics': ('AtomMatch', 'match_atoms', 'nearest_neighbour_distance',
                'DEFAULT_RELATIVE_TOLERANCE'),
    'io': ('atomic_path', 'read_atoms', 'write_atoms', 'ProjectionData',
           'read_projections', 'write_projections', 'PROJECTION_SUFFIXES',
           'TiltSeries', 'read_tilt_series', 'prepare_projections'),
    'noise': ('noise_std', 'gaussian_noise', 'poisson_noise', 'add_noise'),
    'simulation': ('tilt_geometry', 'simulate'),
    'parameter_choice':
        ('DiscrepancyPrinciple', 'discrepancy_bound', 'DISCREPANCY_FLOOR',
         'alpha_sweep', 'AlphaSweep'),
    'plot': ('plot_atoms', 'plot_projections', 'plot_alpha_sweep',
             'plot_atoms_3d', 'plot_projection_images', 'plot_comparison',
             'animate_reconstruction', 'save_movie'),
    'picking': ('AtomPicker', 'pick_atoms', 'atom_peak_height',
                'render_atoms'),
    'precision': ('position_crb', 'PositionCRB'),
    'weights': ('allowed_weights',),
    'sweep': ('SweepTask', 'SweepResult', 'sweep_tasks', 'run_sweep_task',
              'run_sweep'),
    'reconstruction': ('reconstruct', 'reconstruct_alphas',
                       'estimate_equilibrium_distance', 'solver_class',
                       'available_solvers', 'takes_option'),
    'errors': ('ValidationError',),
    'descent': ('bfgs_descent', 'odl_local_descent', 'lbfgsb'),
    'confidence': ('AtomConfidence', 'atom_confidence', 'verdict',
                   'opinion', 'CONFIDENCE_SCALE', 'UNCERTAIN_BELOW'),
    'alignment': ('Alignment', 'centre_of_mass_shifts', 'refine_shifts',
                  'shift_misfit', 'decompose_shifts',
                  'DEFAULT_MAX_SHIFT_CELLS'),
    'problem':
        ('Problem', 'check_alpha', 'default_lennard_jones',
         'parse_potential', 'estimate_r_min', 'expected_atoms',
         'atom_operator'),
    'defaults':
        ('DEFAULT_ALPHA', 'DISCREPANCY_TAU', 'DEFAULT_SEED', 'DEFAULT_SIGMA',
         'DEFAULT_N_DETECTOR', 'DEFAULT_GRID_PER_SIGMA_3D',
         'PHANTOM_NAMES_2D', 'NANOPARTICLE_SHAPES', 'PHANTOM_NAMES'),
}

#: Names exported from a module without its whole ``__all__``: the learned
#: post-processing's user-facing names (it imports without PyTorch).
_PARTIAL_EXPORTS = {'learned': ('LearnedPicker', 'LearnedSIRT',
                                'learned_sirt')}

# Where each name comes from: the first module that exports it (a name
# that two modules export, such as a default, is the same value in both).
_MODULE_OF = {}
for _table in (_EXPORTS, _PARTIAL_EXPORTS):
    for _module, _names in _table.items():
        for _name in _names:
            _MODULE_OF.setdefault(_name, _module)
del _table, _module, _names, _name


def _public_names():
    """``__all__``: every exported module's ``__all__`` (imports them),
    each name once."""
    names = []
    for module in _EXPORTS:
        names += importlib.import_module(f'{__name__}.{module}').__all__
    for module, partial in _PARTIAL_EXPORTS.items():
        names += partial
    return tuple(dict.fromkeys(names))


def __getattr__(name):
    # Called only for names not yet in the package's namespace: load the
    # module that defines ``name`` (or the submodule ``name``) and keep it.
    if name == '__all__':
        value = _public_names()
    elif name in _MODULE_OF:
        module = importlib.import_module(f'{__name__}.{_MODULE_OF[name]}')
        try:
            value = getattr(module, name)
        except AttributeError:  # moved: fall through to the slow search
            value = _search(name)
    elif name.startswith('__'):
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    else:
        try:
            return importlib.import_module(f'{__name__}.{name}')
        except ModuleNotFoundError as exc:
            if exc.name != f'{__name__}.{name}':
                raise
        value = _search(name)
    globals()[name] = value
    return value


def _search(name):
    """``name`` from whichever exported module has it in ``__all__``."""
    for module_name in _EXPORTS:
        module = importlib.import_module(f'{__name__}.{module_name}')
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    import pkgutil

    submodules = [m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith('_') and m.name != 'conftest']
    return sorted(set(globals()) | set(_MODULE_OF) | set(submodules)
                  | {'__all__'})
