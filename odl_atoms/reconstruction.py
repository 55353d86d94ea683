"""Reconstruct atoms from a measurement: the toolkit's main job in one call.

`reconstruct` takes a `~odl_atoms.io.ProjectionData` (read from a file by
`~odl_atoms.io.read_projections`, or made by `~odl_atoms.simulate`), picks
a reconstruction method by name and returns its `Reconstruction`. It fills
in what a measurement leaves open, and the command line leaves all of it to
this function (one path, the same answer): the crystal lattice ADCG also
starts from (``lattice='auto'``: every named lattice fitted to the data,
`fit_lattices`), the Lennard-Jones equilibrium distance ``r_min`` (the
fitted lattice's spacing, else estimated from an energy-free
reconstruction, `estimate_equilibrium_distance`), the noise level (the
measurement's, else estimated from the data, `estimate_noise_std`), the
seed (`~odl_atoms.defaults.DEFAULT_SEED`) and ADCG's candidate grid in 3D;
``result.info`` records each choice. The command line, `odl_atoms.sweep`
and the benchmarks all reconstruct through it.

The methods are registered by name in `SOLVERS`; their classes are imported
when first asked for (`solver_class`), so this module, and the command
line's help, load neither ODL nor the optional PyTorch.

This module is the one place of the package that builds a solver from
these settings (`_run_solver`).
"""

import dataclasses
import importlib
import math
import time
import warnings

from odl_atoms.defaults import (DEFAULT_ALPHA, DEFAULT_GRID_PER_SIGMA_3D,
                                 DEFAULT_SEED, ESCAPE_STARTS_SPLIT,
                                 LATTICE_NAMES,
                                 LATTICE_STRETCH,
                                 LATTICE_RESIDUAL, LATTICE_TIE,
                                 SPLIT_RESIDUAL, SPLIT_TRIGGER)
from odl_atoms.errors import ValidationError

__all__ = ('reconstruct', 'reconstruct_alphas',
           'estimate_equilibrium_distance', 'solver_class',
           'available_solvers', 'takes_option')


#: Default wall-clock limit of `reconstruct`, in seconds (one hour): three
#: times the longest reconstruction of the benchmarks (10^4 atoms in 3D,
#: 18 min on 2 shared cores, benchmarks/results/scale.md), so that it stops
#: only runs that would not end (data in the wrong units can make ADCG add
#: atoms for days); a stopped run returns its best answer so far
#: (``result.info['stop_reason'] == 'time_limit'``).
DEFAULT_TIME_LIMIT = 3600.0

#: `estimate_noise_std` keeps an estimate made from a band that still holds
#: signal (an upper bound) only if it is at most this fraction of the data's
#: root mean square; larger, the noise level stays unknown (a guard: data
#: with detail up to the pixel size and little noise). On noise-free
#: simulations (7 x 7 crystals with a defect, 96 cells, 0/90, 0/45/90 and
#: 0/60/120 degrees) every estimate was below 0.16 % of it, flagged or
#: not; with 1 % Gaussian noise the estimates were 0.98-1.13 % and
#: unflagged.
NOISE_BOUND = 0.01

#: Most reconstructions after the first one in `reconstruct`'s calibration
#: loop (each refits the atom model at the atoms found, then searches again
#: from them).
CALIBRATION_ROUNDS = 3

#: Whether `reconstruct`'s calibration rounds refit the atom width at the
#: atoms found, by dimension; else the width of the first estimate (the
#: peak fits of the resolved columns) stays. In 2D the refit drifted low
#: round by round while the column positions spread to mimic HAADF's
#: non-Gaussian profile: on four abTEM zone-axis crystals the width after
#: three rounds was 3.6-4.6 % below the fit at the true columns, the peak
#: fits' 1.1-3.4 % above it; held at the latter, the positions were closer
#: to the truth (rmsd 0.074 against 0.123 A on the 5 x 5 crystal) and the
#: interstitial crystal exact (F1 0.980 with the refit). In 3D the first
#: estimate (the sharpest projections' peaks) was 4-10 % high on three abTEM
#: particles and the refit brought it within 1 % (``benchmarks/realistic.py``,
#: ``sigma_rounds`` in its CSV).
REFIT_WIDTH = {2: False, 3: True}

#: The calibration loop stops when the atom width and intensity change by
#: less than this (relative) ...
CALIBRATION_TOLERANCE = 5e-3

#: ... and no detector shift by more than this many detector cells.
SHIFT_TOLERANCE = 0.01

#: The reconstruction methods by name (the command line's ``--solver``):
#: ``'module:Class'``, imported when first used. A class may stand in for
#: the text (a method registered at run time).
SOLVERS = {
    'adcg': 'odl_atoms.solvers:ADCG',
    'sa': 'odl_atoms.solvers:SimulatedAnnealing',
    'sirt': 'odl_atoms.solvers:SIRT',
    # optional: runs only with PyTorch (imported when the model runs)
    'sirt+learned': 'odl_atoms.learned:LearnedSIRT',
}

#: The problem's settings (`~odl_atoms.problem.Problem`'s keywords), as
#: opposed to a method's options.
PROBLEM_SETTINGS = ('alpha', 'potential', 'weights', 'noise_std',
                    'max_atoms')

#: The problem settings a registered method ignores: SIRT + picking has no
#: energy, and the learned picker's SIRT runs the iterations it was trained
#: with (no discrepancy stop, so no noise level).
IGNORED_SETTINGS = {
    'sirt': ('alpha', 'potential', 'max_atoms'),
    'sirt+learned': ('alpha', 'potential', 'noise_std', 'max_atoms'),
}


# --- The registry


def _resolve(name):
    """The class registered as ``name``; None if this installation lacks it."""
    target = SOLVERS[name]
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(':')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # the module is there, a dependency not
            raise
        return None
    return getattr(module, attribute, None)


def solver_class(solver):
    """Return the `Solver` class of a registered name.

    Parameters
    ----------
    solver : str or type
        A key of `SOLVERS` (``'adcg'``, ``'sa'``, ``'sirt'``,
        ``'sirt+learned'``); a class is returned as it is.

    Returns
    -------
    cls : type

    Raises
    ------
    ValidationError
        If the name is unknown, or its class is not in this installation.

    Examples
    --------
    >>> solver_class('sirt').__name__
    'SIRT'
    >>> solver_class('magic')
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: unknown solver 'magic'; choose one of \
adcg, sa, sirt, sirt+learned
    """
    if isinstance(solver, type):
        return solver
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValidationError(f'unknown solver {solver!r}; choose one of '
                              f'{", ".join(SOLVERS)}')
    cls = _resolve(solver)
    if cls is None:
        target = SOLVERS[solver]
        name = target.partition(':')[2] if isinstance(target, str) else target
        raise ValidationError(
            f'solver {solver!r} (odl_atoms.{name}) is not available in this '
            f'version of odl_atoms; available: '
            f'{", ".join(available_solvers())}')
    return cls


def available_solvers():
    """Return the names in `SOLVERS` whose class this installation has.

    Examples
    --------
    >>> available_solvers()[:3]
    ['adcg', 'sa', 'sirt']
    """
    return [name for name in SOLVERS if _resolve(name) is not None]


def _ignored_settings(cls):
    """The problem settings the method ``cls`` does not use: those not in
    its ``problem_settings`` if it declares them, else `IGNORED_SETTINGS`."""
    used = getattr(cls, 'problem_settings', None)
    if used is not None:
        return tuple(name for name in PROBLEM_SETTINGS if name not in used)
    for name, target in SOLVERS.items():
        if target is cls or (isinstance(target, str)
                             and target.partition(':')[2] == cls.__name__
                             and _resolve(name) is cls):
            return IGNORED_SETTINGS.get(name, ())
    return ()


def takes_option(solver, option):
    """Return whether a method uses an option or a problem setting.

    Parameters
    ----------
    solver : str or type
        A name in `SOLVERS`, or a `Solver` class.
    option : str
        One of the method's options (``solver.option_names()``:
        ``'grid_spacing'``, ``'starts'``, ``'n_iter'``, ``'seed'``, ...) or
        one of the problem's settings (`PROBLEM_SETTINGS`: ``'alpha'``,
        ``'potential'``, ...).

    Returns
    -------
    takes : bool

    Examples
    --------
    >>> takes_option('adcg', 'potential'), takes_option('sirt', 'potential')
    (True, False)
    >>> takes_option('sirt', 'n_iter'), takes_option('adcg', 'n_iter')
    (True, False)
    """
    cls = solver_class(solver)
    if option in PROBLEM_SETTINGS:
        return option not in _ignored_settings(cls)
    return option in cls.option_names()


# --- Reconstruction


def _run_solver(cls, operator, data, settings, options, initial=None,
                callback=None, deadline=None):
    """Solve ``Problem(operator, data, **settings)`` with ``cls(**options)``,
    stopping at ``deadline`` (`time.monotonic`; None: no limit).

    The one place of the package where a solver is built from the
    command line's, the sweeps' and the benchmarks' settings.
    """
    from odl_atoms.problem import Problem

    try:
        solver = cls(**options)
    except ImportError as exc:  # an optional dependency (torch) is missing
        raise ValidationError(f'{cls.__name__} needs an optional '
                              f'dependency: {exc}') from exc
    problem = Problem(operator, data, **settings)
    return solver.solve(problem, initial=initial, callback=callback,
                        time_limit=_remaining(deadline))


def _deadline(time_limit):
    """The `time.monotonic` at which ``time_limit`` seconds have passed."""
    if time_limit is None:
        return None
    if isinstance(time_limit, bool) or not isinstance(
            time_limit, (int, float)) or not time_limit > 0:
        raise ValidationError(f'`time_limit` must be a positive number of '
                              f'seconds or None, got {time_limit!r}')
    return time.monotonic() + float(time_limit) if math.isfinite(
        time_limit) else None


def _remaining(deadline):
    """Seconds left until ``deadline`` (at least a millisecond: a method
    then stops at its first iteration), or None."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 1e-3)


def default_grid_spacing(measured):
    """ADCG's candidate grid spacing chosen by `reconstruct`, or None.

    None (the solver's own default, sigma) in 2D; in 3D
    `~odl_atoms.defaults.DEFAULT_GRID_PER_SIGMA_3D` sigma, as fast and as
    good there.
    """
    if measured.ndim == 3:
        return DEFAULT_GRID_PER_SIGMA_3D * measured.sigma
    return None


def needs_r_min_estimate(solver, alpha=None, r_min=None):
    """Whether `reconstruct` estimates ``r_min`` for these settings.

    It does when no ``r_min`` is given, the energy is on (``alpha > 0``,
    the default) and the method has a potential.
    """
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    return r_min is None and alpha > 0 and takes_option(solver, 'potential')


def estimate_equilibrium_distance(measured, weights=None, grid_spacing=None,
                                  callback=None, time_limit=None,
                                  operator=None):
    """Estimate the potential's equilibrium distance from the data alone.

    Reconstructs without energy (ADCG, ``alpha = 0``) and takes the
    solvers' own estimate from its atoms: the upper quartile of the
    distances to the nearest neighbour farther than ``2 sigma``
    (`odl_atoms.problem.estimate_r_min`), which is what ADCG does for
    ``potential='auto'``.

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`
    weights : float or mapping, optional
        Allowed atom weights (see `Problem`).
    grid_spacing : float, optional
        ADCG's candidate grid spacing (default: ADCG's).
    callback : callable, optional
        Called with the atoms after every iteration of the energy-free
        reconstruction.
    time_limit : float, optional
        Seconds after which the reconstruction stops with its atoms so far.
    operator : `GaussianRayTransform`, optional
        The forward operator to use instead of the measurement's (e.g. with
        the projections' shifts, ``measured.operator().shifted(s)``).

    Returns
    -------
    r_min : float
        In angstrom.
    first : `Reconstruction`
        The energy-free reconstruction.

    Raises
    ------
    ValidationError
        If that reconstruction has too few atoms for a distance.

    Examples
    --------
    >>> import numpy as np, odl_atoms as oa
    >>> lattice = oa.defect_phantom('perfect', shape=(3, 3))
    >>> measured = oa.simulate(lattice.measure, np.radians([0, 45, 90]),
    ...                        0.43, n_detector=48)
    >>> r_min, first = estimate_equilibrium_distance(measured)
    >>> first.n_atoms, abs(r_min - lattice.lattice_spacing) < 0.01
    (9, True)
    """
    from odl_atoms.problem import estimate_r_min

    settings = {'alpha': 0, 'potential': None, 'weights': weights,
                'noise_std': measured.noise_std}
    options = {} if grid_spacing is None else {'grid_spacing': grid_spacing}
    op = measured.operator() if operator is None else operator
    first = _run_solver(solver_class('adcg'), op, measured.element(),
                        settings, options, callback=callback,
                        deadline=_deadline(time_limit))
    r_min = estimate_r_min(first.measure.positions, op.sigma)
    if r_min is None:
        raise ValidationError(
            f'the energy-free reconstruction has {first.n_atoms} atom(s), too '
            f'few to estimate the nearest-neighbour distance; give r_min')
    return r_min, first


# The problem setting that a keyword of `reconstruct` sets.
_OPTION_OF = {'r_min': 'potential'}


def _split(cls, measured, alpha, r_min, weights, seed, options, alphas):
    """``(settings, options, estimate)``: the keywords of `Problem` and of
    ``cls`` from those of `reconstruct`, and whether ``r_min`` is to be
    estimated first (for the energy weights ``alphas``)."""
    names = cls.option_names()
    unknown = sorted(key for key in options
                     if key not in names and key not in PROBLEM_SETTINGS)
    if unknown:
        raise ValidationError(
            f'{cls.__name__} takes no option {", ".join(map(repr, unknown))}; '
            f'its options are {", ".join(names)}, and the problem\'s '
            f'settings {", ".join(PROBLEM_SETTINGS)}')
    if 'potential' in options and r_min is not None:
        raise ValidationError('give r_min or potential, not both')
    given = {'alpha': alpha, 'r_min': r_min, 'weights': weights, 'seed': seed}
    used = {name: takes_option(cls, _OPTION_OF.get(name, name))
            for name in given}
    ignored = [name for name, value in given.items()
               if value is not None and not used[name]]
    if ignored:
        warnings.warn(f'{cls.__name__} does not use {", ".join(ignored)}; '
                      f'ignored', UserWarning, stacklevel=3)
    options = dict(options)
    settings = {name: options.pop(name) for name in PROBLEM_SETTINGS
                if name in options}
    settings.setdefault('noise_std', measured.noise_std)
    if used['alpha']:
        settings['alpha'] = DEFAULT_ALPHA if alpha is None else alpha
    if weights is not None and used['weights']:
        settings['weights'] = weights
    if seed is not None and used['seed']:
        options['seed'] = seed
    grid_spacing = default_grid_spacing(measured)
    if grid_spacing is not None and 'grid_spacing' in names:
        options.setdefault('grid_spacing', grid_spacing)
    estimate = False
    if used['r_min'] and 'potential' not in settings:
        if r_min is not None:
            settings['potential'] = r_min
        else:
            estimate = any(needs_r_min_estimate(cls, a) for a in alphas)
    return settings, options, estimate


def check_reconstruction(measured, solver='adcg', weights=None, r_min=None,
                         max_memory=None, names=None, strict=True,
                         intensity=None, **options):
    """Check a reconstruction before any work; return warnings.

    The measurement's plausibility (`odl_atoms.checks.check_measurement`:
    angles in degrees, data in other units than one atom, an atom width
    against the detector and the box, too few data) and the memory the
    method needs (`odl_atoms.resources.reconstruction_memory`, with ADCG's
    candidate grid, the lattice starts, SIRT's image) against
    ``max_memory``. `reconstruct` runs it first; the command line too, with
    its own ``names`` for the settings.

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`
    solver, weights, r_min, **options
        As for `reconstruct` (``grid_spacing``, ``starts``, ``pixel_size``,
        ``proposal_spacing`` count).
    max_memory : float, optional
        Limit in bytes; default the memory available, ``inf`` for none.
    names : dict, optional
        How messages name the settings (see `odl_atoms.checks` and
        `~odl_atoms.resources.MemoryEstimate.check`).
    strict : bool, optional
        If False, implausible input is warned about instead of refused (the
        memory check still refuses).
    intensity : float, optional
        Data of one atom of weight 1, if the data are not in atom units.

    Returns
    -------
    warnings : list of str

    Raises
    ------
    ValidationError
        For implausible input (with ``strict``) or a problem larger than
        the memory limit.
    """
    from odl_atoms.checks import check_measurement, expected_atoms
    from odl_atoms.resources import reconstruction_memory

    cls = solver_class(solver)
    found = check_measurement(measured, weights=weights, intensity=intensity,
                              names=names, strict=strict)
    if measured.sigma is None:
        return found
    grid_spacing = options.get('grid_spacing')
    if grid_spacing is None and cls.__name__ == 'ADCG':
        grid_spacing = default_grid_spacing(measured)
    estimate = reconstruction_memory(
        measured, cls.__name__, grid_spacing=grid_spacing,
        pixel_size=options.get('pixel_size'),
        proposal_spacing=options.get('proposal_spacing'),
        starts=options.get('starts'), r_min=r_min, weights=weights,
        atoms=expected_atoms(measured, weights, intensity))
    estimate.check(max_memory, names=names)
    return found


def reconstruct(measured, solver='adcg', alpha=None, r_min=None,
                weights=None, initial=None, seed=None, callback=None,
                time_limit=DEFAULT_TIME_LIMIT, max_memory=None, checks=True,
                calibration='auto', sigma=None, intensity=None, images=None,
                align='auto', rounds=CALIBRATION_ROUNDS, lattice='auto',
                **options):
    """Reconstruct the atoms of a measurement with one method.

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`
        Data, geometry, atom width and (if known) noise level.
    solver : str or type, optional
        A name in `SOLVERS`: ``'adcg'`` (default), ``'sa'`` (simulated
        annealing), ``'sirt'`` (SIRT + atom picking), ``'sirt+learned'``;
        or a `Solver` class.
    alpha : float, optional
        Dimensionless energy weight (default
        `~odl_atoms.defaults.DEFAULT_ALPHA`); 0 fits the data only.
    r_min : float, optional
        Equilibrium distance of the Lennard-Jones potential in angstrom (the
        nearest-neighbour distance). Default, when the method has an energy
        and ``alpha > 0``: the spacing of the fitted lattice when one
        explains the data (see ``lattice``), else estimated from an
        energy-free reconstruction (`estimate_equilibrium_distance`).
    weights : float or mapping, optional
        Allowed atom weights: one number, or by species (``{'Au': 1.0,
        'Pt': 1.3}``). Default: one species of weight 1.
    initial : `SparseMeasure`, optional
        Atoms to start from.
    seed : int, optional
        Seed of randomised methods (default
        `~odl_atoms.defaults.DEFAULT_SEED`, as on the command line).
    callback : callable, optional
        Called with the current atoms after every iteration (an ODL
        callback works).
    time_limit : float, optional
        Wall-clock seconds for the whole reconstruction (the ``r_min``
        estimate included); the method then stops at its next iteration
        with its best answer so far (``result.info['stop_reason'] ==
        'time_limit'``). Default `DEFAULT_TIME_LIMIT` (an hour); None: no
        limit.
    max_memory : float, optional
        Memory limit in bytes for the estimate checked first
        (`check_reconstruction`); default the memory available, ``inf``:
        no check.
    checks : bool, optional
        Check the input's plausibility and the memory first
        (`check_reconstruction`; implausible input is refused, unusual input
        warned about). Default True.
    calibration : 'auto', `~odl_atoms.calibration.Calibration`, bool or None
        The atom model of data in a microscope's units. ``'auto'`` (default):
        when the measurement lacks the atom width or is not in units of one
        atom (`needs_calibration`: prepared from microscope images), the
        width, the intensity of one atom, a factor and a background per
        projection and the noise are estimated from the data
        (`odl_atoms.calibration.calibrate`), the data are brought to atom
        units, and after the reconstruction they are fitted again at the
        atoms found (the width only in 3D, `REFIT_WIDTH`) and the
        reconstruction repeated from its answer, up to
        ``rounds`` times, until they change by less than
        `CALIBRATION_TOLERANCE` (alternating minimisation of the misfit over
        the atoms and the model). ADCG leaves out its escape moves until the
        model has settled (or the last round comes), and then searches with
        them. A `Calibration` is used as given (and
        refined); False or None: the data are taken as they are.
    sigma, intensity : float, optional
        The atom width (angstrom) and the intensity of one atom (data units)
        when known; the calibration then keeps them.
    images : `~odl_atoms.io.TiltSeries`, optional
        The images ``measured`` was prepared from: the calibration estimates
        the noise from them (the averaged profiles of 2D data hold too few
        values for it; ``odl-atoms prepare`` records the images' noise model
        in the file instead).
    align : 'auto' or bool, optional
        Refine a detector shift of every projection (drift, a tilt-axis
        offset; `odl_atoms.alignment`) with the atom model: first from the
        projections' centres of mass, then at the atoms found in each
        round. ``'auto'``: with a calibration, when the angles determine
        shifts (3 angles or more in 2D).
    rounds : int, optional
        Most reconstructions after the first one in the calibration loop
        (default `CALIBRATION_ROUNDS`).
    lattice : 'auto', str or None, optional
        Lattice starts of ADCG (`~odl_atoms.solvers.starts.lattice_starts`,
        besides its greedy start; the lowest objective wins). ``'auto'``
        (default): the square and the hexagonal lattice in 2D, fcc, bcc
        and sc in 3D (`~odl_atoms.solvers.starts.AUTO_LATTICES`) are
        fitted to the data, their spacing included (`~odl_atoms.solvers.starts.fit_lattice`); the
        best one's starts join the greedy start if it leaves at most
        `~odl_atoms.defaults.LATTICE_RESIDUAL` of the data unexplained, or,
        in 2D, if two domains of it leave at most
        `~odl_atoms.defaults.SPLIT_RESIDUAL` (`fit_lattices`; r_min is
        then their mean spacing, and every lattice start continues with
        ADCG's escape moves, `~odl_atoms.defaults.ESCAPE_STARTS_SPLIT`,
        unless ``escape_starts`` is given); else the greedy start runs
        alone. A name: that lattice's starts in any case. None: the greedy
        start alone. Ignored when ``starts`` is given and by methods
        without starts. In 3D with ``'auto'``,
        when no lattice explains the data, multiply twinned templates (a
        five-fold decahedron, an icosahedron) are placed on the
        energy-free reconstruction (run for this when ``r_min`` is given)
        and fitted to the data (`fit_twins`); the best one's
        `~odl_atoms.solvers.twinned.TwinnedStart` joins the greedy start
        if it leaves at most `~odl_atoms.defaults.LATTICE_RESIDUAL`
        unexplained (r_min is then its spacing unless given).
    **options
        Options of the method (``solver.option_names()``: ``grid_spacing``,
        ``starts``, ``n_iter``, ...; in 3D ``grid_spacing`` defaults to
        `~odl_atoms.defaults.DEFAULT_GRID_PER_SIGMA_3D` sigma), and the
        problem's other settings (`Problem`): ``noise_std`` (default: the
        measurement's), ``potential`` (instead of ``r_min``),
        ``max_atoms``.

    Returns
    -------
    result : `Reconstruction`
        ``result.info`` also records the defaults chosen here:
        ``info['r_min']`` (``value``, ``error`` and ``source``; an estimated
        one also as ``info['estimated_r_min']``), ``info['noise']`` (the
        noise level used and where it came from: given, the measurement's,
        or estimated from the data by
        `~odl_atoms.calibration.noise.estimate_noise`), ``info['seed']``,
        ``info['lattice']`` (the lattices fitted, the one chosen, and why),
        ``info['twinned']`` (the twinned templates fitted, when they were,
        and the one chosen) and, with several starts,
        ``info['start_gap']``: which start won, the runner-up and the gap
        between their objectives in atom
        energies. With a calibration, ``info['calibration']`` holds the
        final `~odl_atoms.calibration.Calibration`, ``info['calibrated']`` the
        measurement in atom units the answer fits, ``info['alignment']``
        the shifts, and ``info['calibration_rounds']`` each round's width,
        intensity, shifts and atom count (and whether the search that found
        the atoms had ADCG's escape moves).

    Raises
    ------
    ValidationError
        For an unknown solver or option, implausible input (angles in
        degrees, data in other units than one atom, an atom width that does
        not fit the detector or the box), a problem larger than the memory,
        or when ``r_min`` cannot be estimated.

    Warns
    -----
    UserWarning
        When ``alpha``, ``r_min``, ``weights`` or ``seed`` is given to a
        method that does not use it (SIRT has no energy); it is ignored.
        For unusual input (`check_reconstruction`).

    Examples
    --------
    >>> import numpy as np, odl_atoms as oa
    >>> phantom = oa.defect_phantom('vacancy', shape=(3, 3))
    >>> measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]),
    ...                        0.43, n_detector=48, noise=0.01, seed=0)
    >>> result = reconstruct(measured, r_min=2.885)
    >>> oa.match_atoms(phantom.measure, result.measure).exact
    True
    >>> result = reconstruct(measured, 'sirt')
    >>> result.n_atoms
    8
    """
    deadline = _deadline(time_limit)
    cls = solver_class(solver)
    raw, cal = measured, None
    if isinstance(calibration, str) and calibration != 'auto':
        raise ValidationError(f"`calibration` must be 'auto', a Calibration, "
                              f"True, False or None, got {calibration!r}")
    if calibration is True or (calibration == 'auto'
                               and needs_calibration(measured)):
        from odl_atoms.calibration import calibrate
        cal = calibrate(measured, images=images, sigma=sigma,
                        intensity=intensity)
    elif calibration not in (None, False, 'auto'):
        cal = calibration
    if cal is not None:
        measured = cal.apply(raw)
    if lattice is not None and lattice not in LATTICE_NAMES + ('auto',):
        raise ValidationError(
            f"`lattice` must be 'auto', None or one of "
            f"{', '.join(LATTICE_NAMES)}, got {lattice!r}")
    if seed is None and takes_option(cls, 'seed'):
        seed = DEFAULT_SEED
    noise = _noise_source(measured, options)
    if noise['source'] == 'estimated':
        measured = dataclasses.replace(measured, noise_std=noise['value'])
    settings, options, estimate = _split(cls, measured, alpha, r_min, weights,
                                         seed, options, [alpha])
    lattice = _lattice_setting(cls, measured, lattice, options)
    # --- Checks before any work (issue 22): one call, before anything heavy
    # (odl_atoms.checks: plausibility; odl_atoms.resources: memory).
    if checks:
        for message in check_reconstruction(measured, cls, weights, r_min,
                                            max_memory=max_memory,
                                            **options):
            warnings.warn(message, UserWarning, stacklevel=2)
    # --- End of the checks.
    # The projections' shifts first: the lattice fit and the energy-free
    # estimate of r_min need aligned projections too (a 7 x 7 abTEM crystal
    # with shifted projections left 11 % unexplained by the square lattice,
    # against 0.8 % aligned, and lost its lattice starts).
    operator, shifts = measured.operator(), None
    aligning = bool(align) if align != 'auto' else cal is not None
    if aligning:
        from odl_atoms.alignment import centre_of_mass_shifts
        with warnings.catch_warnings():
            # Too few angles: reported in info, not by a warning here.
            warnings.simplefilter('ignore', UserWarning)
            start = centre_of_mass_shifts(operator, measured.element())
        aligning = bool(start.identifiable)
        if aligning:
            shifts = start.shifts
            operator = operator.shifted(shifts)
    estimated, report = None, {}
    r_info = ({'value': float(r_min), 'error': None, 'source': 'given'}
              if r_min is not None else None)
    fits, chosen, twin_starts = [], None, None
    began = time.perf_counter()
    if lattice is not None and measured.ndim == 2:
        # 2D: the lattice fit scans the spacing itself; when a lattice
        # explains the data its spacing is r_min (no energy-free
        # reconstruction needed).
        fits, chosen = fit_lattices(measured, lattice, spacing=r_min,
                                    operator=operator)

    def energy_free():
        # r_min's estimate from an energy-free reconstruction, and its atoms.
        return estimate_equilibrium_distance(
            measured, weights=weights, grid_spacing=options.get(
                'grid_spacing', default_grid_spacing(measured)),
            time_limit=_remaining(deadline), operator=operator)

    if estimate and chosen is not None:
        estimated = chosen.spacing
        r_info = {'value': chosen.spacing, 'error': chosen.spacing_error,
                  'source': f'fitted {chosen.lattice} lattice'
                            + (' (two domains)' if chosen.domains > 1
                               else '')}
    elif estimate:
        estimated, first = energy_free()
        r_info = {'value': estimated, 'error': None,
                  'source': 'energy-free reconstruction'}
        if lattice is not None and measured.ndim == 3:
            # 3D: the energy-free estimate (the mode of the neighbour
            # distances) is the first guess the lattice fit refines.
            fits, chosen = fit_lattices(measured, lattice, spacing=estimated,
                                        operator=operator)
            if chosen is not None:
                estimated = chosen.spacing
                r_info = {'value': chosen.spacing,
                          'error': chosen.spacing_error,
                          'source': f'fitted {chosen.lattice} lattice '
                                    f'(from the energy-free estimate '
                                    f'{r_info["value"]:.4g})'}
            elif lattice == 'auto':
                twin = _fit_twin(measured, first.measure.positions,
                                 estimated, operator, report)
                if twin is not None:
                    estimated = twin.spacing
                    r_info = {'value': twin.spacing, 'error': None,
                              'source': f'fitted {twin.lattice} twin '
                                        f'(from the energy-free estimate '
                                        f'{r_info["value"]:.4g})'}
                    twin_starts = _twin_starts(twin)
    elif lattice is not None and measured.ndim == 3 and r_min is not None:
        fits, chosen = fit_lattices(measured, lattice, spacing=r_min,
                                    operator=operator)
        if chosen is None and lattice == 'auto':
            # The twinned templates need rough atoms to be placed on: the
            # energy-free reconstruction the estimate of r_min would run.
            _, first = energy_free()
            twin = _fit_twin(measured, first.measure.positions, float(r_min),
                             operator, report)
            if twin is not None:
                twin_starts = _twin_starts(twin)
    if estimated is not None:
        settings['potential'] = estimated
    if lattice is not None:
        report['lattice'] = {
            'requested': lattice,
            'chosen': None if chosen is None else chosen.lattice,
            'domains': None if chosen is None else chosen.domains,
            'threshold': LATTICE_RESIDUAL,
            'split_threshold': SPLIT_RESIDUAL,
            'fits': [fit.to_dict() for fit in fits],
            # With the energy-free estimate, if one ran (3D).
            'seconds': time.perf_counter() - began}
        name = chosen.lattice if chosen is not None else (
            lattice if lattice != 'auto' else None)
        if name is not None:
            from odl_atoms.solvers.starts import lattice_starts
            # The lattice's spacing: r_min when given, else the fitted one
            # (r_min then too), else the estimate, else the fit's.
            if r_min is not None:
                spacing = float(r_min)
            elif chosen is not None and chosen.lattice == name:
                spacing = chosen.spacing
            elif estimated is not None:
                spacing = estimated
            else:
                spacing = next((fit.spacing for fit in fits
                                if fit.lattice == name), None)
            options['starts'] = lattice_starts(
                name, spacing, ndim=measured.ndim,
                aspect=next((fit.aspect for fit in [chosen] + fits
                             if fit is not None and fit.lattice == name),
                            None))
            if (chosen is not None and chosen.domains > 1
                    and 'escape_starts' not in options
                    and takes_option(cls, 'escape_starts')):
                # Two domains (a boundary, a dislocation): the starts'
                # objectives before the escapes do not rank them (the
                # split start's seam lacks atoms until the escape moves
                # regrow them), so every lattice start continues.
                options['escape_starts'] = ESCAPE_STARTS_SPLIT
        elif twin_starts is not None:
            options['starts'] = twin_starts
        report['lattice']['starts'] = [
            start.name for start in options.get('starts', ())] or ['greedy']
        if 'escape_starts' in options:
            report['lattice']['escape_starts'] = options['escape_starts']
    report['noise'] = noise
    if takes_option(cls, 'seed'):
        report['seed'] = seed
    if r_info is not None and takes_option(cls, 'potential'):
        report['r_min'] = r_info
    calibrating = cal is not None or aligning
    # While the atom model is still being calibrated, the searches leave out
    # the escape moves (most of a search's time); the one with them runs
    # once the model has settled (`_calibration_rounds`).
    quick = _without_escapes(cls, options) if calibrating and rounds else None
    result = _run_solver(cls, operator, measured.element(),
                         settings, quick or options, initial=initial,
                         callback=callback, deadline=deadline)
    if calibrating:
        result, cal, measured, shifts, history = _calibration_rounds(
            result, cls, raw, cal, measured, shifts, settings, options,
            rounds, callback, deadline, quick=quick)
        if cal is not None:
            result.info['calibration'] = cal
            result.info['calibrated'] = measured
        if shifts is not None:
            result.info['alignment'] = {
                'shifts': [[float(v) for v in row] for row in shifts],
                'unit': 'angstrom along the detector'}
        result.info['calibration_rounds'] = history
    if estimated is not None:
        result.info['estimated_r_min'] = estimated
    result.info.update(report)
    gap = start_gap(result)
    if gap is not None:
        result.info['start_gap'] = gap
    return result


def _fit_twin(measured, guide, spacing, operator, report):
    """`fit_twins` on the rough atoms ``guide``, recorded in
    ``report['twinned']``; the chosen twin or None.

    Used when no lattice explains 3D data: a multiply twinned particle's
    template is placed on the energy-free atoms and judged by the data it
    leaves unexplained.
    """
    began = time.perf_counter()
    fits, twin = fit_twins(measured, guide, spacing, operator=operator)
    report['twinned'] = {
        'chosen': None if twin is None else twin.lattice,
        'threshold': LATTICE_RESIDUAL,
        'fits': [fit.to_dict() for fit in fits],
        'seconds': time.perf_counter() - began}
    return twin


def _twin_starts(twin):
    """ADCG's starts for a fitted twin: greedy and the twinned start."""
    from odl_atoms.solvers.starts import GreedyStart
    from odl_atoms.solvers.twinned import TwinnedStart
    return [GreedyStart(), TwinnedStart(twin)]


def _noise_source(measured, options):
    """``{'value', 'source'}``: the noise level `reconstruct` uses.

    ``noise_std`` given (also None: unknown, not estimated), the
    measurement's, or estimated from the data (`estimate_noise_std`)."""
    if 'noise_std' in options:
        return {'value': options['noise_std'], 'source': 'given'}
    if measured.noise_std is not None:
        return {'value': measured.noise_std, 'source': 'measurement'}
    value, note = estimate_noise_std(measured)
    return {'value': value,
            'source': 'estimated' if value is not None else 'unknown',
            'method': note}


def estimate_noise_std(measured):
    """Estimate the noise level per data value of a measurement.

    The Poisson-Gaussian noise model of the data
    (`~odl_atoms.calibration.noise.estimate_noise`: the power of the
    data in the band of frequencies the atoms do not reach, regressed on
    the local mean), as one ``noise_std``: the root mean square of the
    values' standard deviations (`NoiseModel.effective_std`).

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`

    Returns
    -------
    noise_std : float or None
        None if the data are too small to tell; 0 if they hold no noise.
    note : str
        How it was found (and the estimator's warnings: for noise-free
        simulated data the band still holds a little signal, and the
        estimate is an upper bound).

    Examples
    --------
    >>> import numpy as np, odl_atoms as oa
    >>> phantom = oa.defect_phantom('vacancy')
    >>> measured = oa.simulate(phantom.measure, np.radians([0, 60, 120]),
    ...                        0.43, n_detector=96, noise=0.01, seed=0)
    >>> std, _ = estimate_noise_std(measured)
    >>> bool(abs(std / measured.noise_std - 1) < 0.05)
    True
    """
    import numpy as np

    from odl_atoms.calibration.noise import estimate_noise

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            model = estimate_noise(measured)
        except ValidationError as exc:
            if 'no noise found' in str(exc):
                return 0.0, f'estimated: {exc}'
            return None, f'not estimated: {exc}'
    values = np.asarray(measured.data, dtype=float)
    if measured.background is not None:
        values = values + np.asarray(measured.background, float).reshape(
            (-1,) + (1,) * (values.ndim - 1))
    std = float(model.effective_std(values, n=measured.pixels_averaged or 1))
    note = model.details.get('method', 'estimate_noise')
    if any('spectrum still falls' in str(w.message) for w in caught):
        # Signal in the band: the estimate is an upper bound. Only a small
        # bound is kept (`NOISE_BOUND`).
        rms = float(np.sqrt(np.mean(np.square(values))))
        if not std <= NOISE_BOUND * rms:
            return None, (f'not estimated: the highest frequencies still '
                          f'hold signal (bound {std:.3g}, more than '
                          f'{100 * NOISE_BOUND:g} % of the data\'s root '
                          f'mean square)')
        note += '; the band holds signal: an upper bound'
    return std, note


def _lattice_setting(cls, measured, lattice, options):
    """``lattice`` if `reconstruct` uses it with this method (one with
    starts, and no ``starts`` given), else None (a named lattice given to
    a method without starts is warned about)."""
    if lattice is None or 'starts' in options:
        return None
    if 'starts' not in cls.option_names():
        if lattice != 'auto':
            warnings.warn(f'{cls.__name__} does not use lattice starts; '
                          f'lattice={lattice!r} ignored', UserWarning,
                          stacklevel=3)
        return None
    from odl_atoms.solvers.starts import LATTICES_BY_NDIM
    if lattice != 'auto' and lattice not in LATTICES_BY_NDIM[measured.ndim]:
        raise ValidationError(
            f'{lattice!r} is not a {measured.ndim}D lattice; choose one of '
            f'{", ".join(LATTICES_BY_NDIM[measured.ndim])} (or auto)')
    return lattice


def fit_lattices(measured, lattice='auto', spacing=None, operator=None):
    """Fit lattices to a measurement: ``(fits, chosen)``.

    The lattices ``'auto'`` tries in the data's dimension
    (`~odl_atoms.solvers.starts.AUTO_LATTICES`: in 2D the square and the
    hexagonal lattice), those of a sequence of names (chosen among as
    ``'auto'`` chooses), or the one named, fitted with its spacing
    (`~odl_atoms.solvers.starts.fit_lattice`;
    ``spacing`` is the first guess, required in 3D), best first, through
    the measurement's forward operator or ``operator`` (e.g. shifted by
    the projections' alignment). ``chosen``
    is the best if it leaves at most `~odl_atoms.defaults.LATTICE_RESIDUAL`
    of the data's energy unexplained, else None; a lattice named is chosen
    in any case (the user knows the crystal: a grain boundary at generic
    angles left 5.5 % unexplained, and its spacing was still 0.6 % off
    only).

    In 2D with ``'auto'``, when the best single lattice leaves more than
    `~odl_atoms.defaults.SPLIT_TRIGGER` unexplained, two domains of each
    lattice are fitted too (`~odl_atoms.solvers.starts.fit_split_lattice`:
    a grain boundary, an edge dislocation) and appended to ``fits``; the
    best of them is chosen if it leaves at most
    `~odl_atoms.defaults.SPLIT_RESIDUAL` (``chosen.domains == 2``). The
    two-domain fits also tell the lattice type apart where single fits do
    not (an edge dislocation of a square crystal at 63.9/66.7/142.3
    degrees: single fits square 2.8 %, hexagonal 3.2 %, a tie; two
    domains 1.4 % against 2.2 %).

    Examples
    --------
    >>> import numpy as np, odl_atoms as oa
    >>> phantom = oa.defect_phantom('vacancy', lattice='hexagonal',
    ...                             shape=(4, 4))
    >>> measured = oa.simulate(phantom.measure, np.radians([0, 60, 120]),
    ...                        0.43, n_detector=64)
    >>> fits, chosen = fit_lattices(measured)
    >>> [fit.lattice for fit in fits], chosen.lattice
    (['hexagonal', 'square'], 'hexagonal')
    """
    from odl_atoms.solvers.starts import AUTO_LATTICES, fit_lattice

    choosing = not isinstance(lattice, str) or lattice == 'auto'
    names = (AUTO_LATTICES[measured.ndim] if lattice == 'auto'
             else tuple(lattice) if choosing else (lattice,))
    if spacing is None and measured.ndim != 2:
        return [], None
    if operator is None:
        operator = measured.operator()
    data = measured.element()
    fits = _crystal_first(sorted((fit_lattice(operator, data, name, spacing)
                                  for name in names),
                                 key=lambda fit: fit.misfit))
    splits = []
    # Sparse fits (`_sparse`) are no candidates: they neither spare the
    # two-domain fits nor get one.
    eligible = [fit for fit in fits if not _sparse(fit)]
    if (choosing and measured.ndim == 2 and eligible
            and eligible[0].residual_fraction > SPLIT_TRIGGER):
        from odl_atoms.solvers.starts import fit_split_lattice
        splits = sorted((fit_split_lattice(operator, data, fit)
                         for fit in eligible), key=lambda fit: fit.misfit)
    return fits + splits, choose_lattice(fits, splits, named=not choosing)


def choose_lattice(fits, splits=(), named=False):
    """The fit `fit_lattices` chooses, or None.

    ``fits``: single-lattice fits (`fit_lattice`), ``splits``: two-domain
    fits (`fit_split_lattice`), in any order. The best single fit (the
    crystal's own lattice first among equals, `LATTICE_TIE`) if it leaves
    at most `~odl_atoms.defaults.LATTICE_RESIDUAL` of the data unexplained,
    or in any case when ``named`` (the user named the lattice); but the
    best two-domain fit, unless ``named``, if the best single one leaves
    more than `~odl_atoms.defaults.SPLIT_TRIGGER` and it at most
    `~odl_atoms.defaults.SPLIT_RESIDUAL`. Unless ``named``, fits of the
    rectangular, centred rectangular and honeycomb lattices whose occupied
    sites are a sparse subset of them
    (`~odl_atoms.defaults.LATTICE_STRETCH`) are not candidates.
    """
    if not named:
        # The new 2D lattices only where their occupied sites are their
        # crystal (`_sparse`): a honeycomb lattice half the atoms' distance
        # apart, its sites sparsely occupied, explained 40 random atoms at
        # 0/90 degrees (1.2 % left).
        fits = [fit for fit in fits if not _sparse(fit)]
        splits = [fit for fit in splits if not _sparse(fit)]
    singles = _crystal_first(sorted(fits, key=lambda fit: fit.misfit))
    if not singles:
        return None
    split = min(splits, key=lambda fit: fit.misfit, default=None)
    if (not named and split is not None
            and singles[0].residual_fraction > SPLIT_TRIGGER
            and split.residual_fraction <= SPLIT_RESIDUAL):
        return split
    if named or singles[0].residual_fraction <= LATTICE_RESIDUAL:
        return singles[0]
    return None


def fit_twins(measured, guide, spacing, operator=None):
    """Fit multiply twinned templates to a 3D measurement: ``(fits, chosen)``.

    Each kind of `~odl_atoms.solvers.twinned.TWIN_KINDS` (a five-fold
    decahedron, an icosahedron), placed on the rough atoms ``guide`` (the
    energy-free reconstruction) and fitted to the data
    (`~odl_atoms.solvers.twinned.fit_twinned`), best first. ``chosen`` is
    the best if it leaves at most `~odl_atoms.defaults.LATTICE_RESIDUAL` of
    the data's energy unexplained (the threshold of the lattices), else
    None. `reconstruct` fits them only when no lattice explains the data,
    so single crystals keep their lattice starts.

    Examples
    --------
    >>> import numpy as np, odl_atoms as oa
    >>> from ase.cluster import Decahedron
    >>> truth = oa.from_ase(Decahedron('Au', 3, 1, 0), ndim=3, margin=2.885)
    >>> measured = oa.simulate(truth, np.radians([-60, 0, 60]), 0.43,
    ...                        detector_cell=0.5)
    >>> fits, chosen = fit_twins(measured, truth.positions, 2.885)
    >>> chosen.lattice, chosen.domains, len(chosen.positions)
    ('decahedral', 5, 23)
    """
    from odl_atoms.solvers.twinned import TWIN_KINDS, fit_twinned

    if operator is None:
        operator = measured.operator()
    data = measured.element()
    fits = sorted((fit_twinned(operator, data, guide, spacing, kind)
                   for kind in TWIN_KINDS), key=lambda fit: fit.misfit)
    chosen = (fits[0] if fits and fits[0].residual_fraction
              <= LATTICE_RESIDUAL else None)
    return fits, chosen


#: The 2D lattices `choose_lattice` holds to `LATTICE_STRETCH`.
_SHAPED_2D = ('rectangular', 'centred_rectangular', 'honeycomb')


def _sparse(fit):
    """Whether a fit of a rectangular, centred rectangular or honeycomb
    lattice occupies a sparse subset of its sites: their median neighbour
    distance more than `~odl_atoms.defaults.LATTICE_STRETCH` spacings (the
    crystal of the lattice would have its sites' neighbours at one
    spacing). Square and hexagonal fits are never sparse here (the rule
    that chose among them stays as it was measured)."""
    import numpy as np
    from scipy.spatial import cKDTree

    if fit.lattice not in _SHAPED_2D or len(fit.positions) < 2:
        return False
    points = fit.positions
    neighbour = np.median(cKDTree(points).query(points, 2)[0][:, 1])
    return neighbour > LATTICE_STRETCH * fit.spacing


def _crystal_first(fits, tie=LATTICE_TIE):
    """The fits with the crystal's own lattice first among equals.

    A lattice can explain data by occupying part of its sites: a simple
    cubic crystal is a body-centred cubic lattice with every cube centre
    empty, at a spacing of sqrt(3)/2 of the crystal's (measured: both left
    0.01 % unexplained, and the bcc fit came first). Among the fits within
    ``tie`` of the data's energy of the best, the one whose occupied sites
    are nearest neighbours at its spacing (the ratio of their median
    neighbour distance to the spacing closest to 1) comes first.
    """
    import numpy as np
    from scipy.spatial import cKDTree

    if len(fits) < 2:
        return fits
    best = fits[0]
    equal = [fit for fit in fits
             if fit.misfit <= best.misfit + tie * best.data_energy]

    def stretch(fit):
        points = fit.positions
        if len(points) < 2:
            return np.inf
        neighbour = np.median(cKDTree(points).query(points, 2)[0][:, 1])
        return abs(np.log(neighbour / fit.spacing))

    first = min(equal, key=stretch)
    if first.lattice in _PREFERENCE_2D:
        # 2D lattices that contain one another: a honeycomb crystal is a
        # hexagonal lattice with a third of its sites empty (measured at
        # 32.2/84.1/115.2 degrees: both left 0.01 %, nearest neighbours at
        # the spacing in both), a square crystal a rectangular or centred
        # rectangular one of aspect 1. Among the fits as stretched as the
        # first, the one with the fewest sites per area (the fewest empty
        # sites), and of those alike (within 5 %) the more symmetric
        # lattice (`_PREFERENCE_2D`).
        # Between square and hexagonal fits alone the rule stays the one
        # the user-defaults benchmarks measured (the least stretched).
        alike = [fit for fit in equal if fit.lattice in _PREFERENCE_2D
                 and stretch(fit) <= stretch(first) + 0.05]
        if any(fit.lattice in _SHAPED_2D for fit in alike):
            sparsest = min(_site_density(fit) for fit in alike)
            first = min((fit for fit in alike
                         if _site_density(fit) <= 1.05 * sparsest),
                        key=lambda fit: _PREFERENCE_2D.index(fit.lattice))
    return [first] + [fit for fit in fits if fit is not first]


#: The 2D lattices from the most to the least symmetric: which of fits
#: that explain the data alike `_crystal_first` puts first.
_PREFERENCE_2D = ('square', 'hexagonal', 'honeycomb', 'centred_rectangular',
                  'rectangular')


def _site_density(fit):
    """Sites per area of a fitted 2D lattice, in 1 / spacing^2."""
    import numpy as np

    aspect = fit.aspect or 1.0
    return {'square': 1.0, 'hexagonal': 2 / np.sqrt(3),
            'rectangular': 1 / aspect,
            # A cell a x (aspect a), 2 sites, a = 2 / sqrt(1 + aspect^2).
            'centred_rectangular': (1 + aspect ** 2) / (2 * aspect),
            'honeycomb': 4 / (3 * np.sqrt(3))}[fit.lattice] / fit.spacing ** 2


def start_gap(result):
    """Which start won and by how much, or None with one start.

    Returns ``{'best', 'agreeing', 'runner_up', 'gap'}``: the winning start,
    the other starts that ended at the same atoms (every atom matched,
    `~odl_atoms.metrics.match_atoms`), the best start that ended elsewhere
    (None if all agree) and how much higher its objective was, in atom
    energies.
    """
    from odl_atoms.metrics import match_atoms

    starts = result.info.get('starts') or []
    unit = result.info.get('atom_energy') or 1.0
    if len(starts) < 2:
        return None
    order = sorted(starts, key=lambda entry: entry['objective'])
    best = order[0]
    agreeing, runner_up = [], None
    for entry in order[1:]:
        same = (len(entry['positions']) == len(best['positions'])
                and (len(best['positions']) == 0 or match_atoms(
                    best['positions'], entry['positions']).exact))
        if same:
            agreeing.append(entry['start'])
        elif runner_up is None:
            runner_up = entry
    return {'best': best['start'], 'agreeing': agreeing,
            'runner_up': None if runner_up is None else runner_up['start'],
            'gap': None if runner_up is None else float(
                (runner_up['objective'] - best['objective']) / unit)}


def needs_calibration(measured):
    """Whether a measurement needs its atom model estimated: it has no atom
    width, or its data are not in units of one atom (an ``intensity_unit``
    other than ``'atoms'``, as microscope data prepared by
    `~odl_atoms.io.prepare_projections` have)."""
    return (measured.sigma is None
            or measured.intensity_unit not in (None, 'atoms'))


def _without_escapes(cls, options):
    """``options`` with no escape moves, or None for a method without
    them."""
    if not takes_option(cls, 'moves'):
        return None
    return dict(options, moves=())


def _calibration_rounds(result, cls, raw, cal, measured, shifts, settings,
                        options, rounds, callback, deadline, quick=None):
    """Alternate: fit the atom model (and the shifts) at the atoms found,
    reconstruct again from them; until the model stops changing.

    With ``quick`` (the method's options without escape moves, which
    ``result`` was found with), the searches continue the answer so far
    alone, without escapes, until the model settles or the last round
    comes; that round's search and any after it use ``options``. On the
    abTEM crystals the rounds moved the model by a few per cent, while a
    search with the escape moves cost several times one without them
    (``benchmarks/realistic.py --compare``: 1.4-2.1 x for the whole
    reconstruction, the same atoms).
    """
    import numpy as np

    history = []
    cell = float(np.min(measured.geometry.det_partition.cell_sides))
    escaped = quick is None  # whether ``result``'s search had the escapes
    if quick is not None:
        from odl_atoms.solvers.starts import GreedyStart
        # Between the first search and the last, the answer so far is the
        # only start: the model moves by per cent, and the other starts
        # (lattice fits) would cost most of a search without escapes.
        quick = dict(quick, starts=(GreedyStart(),))
    for turn in range(rounds):
        if deadline is not None and time.monotonic() > deadline:
            break
        if result.n_atoms == 0:
            if escaped:
                break
            # Nothing to fit the model at: the full search, unchanged model.
            escaped = True
            result = _run_solver(cls, _shifted(measured, shifts),
                                 measured.element(), settings, options,
                                 initial=result.measure, callback=callback,
                                 deadline=deadline)
            continue
        positions = result.measure.positions
        atom_weights = result.measure.weights
        moved = 0.0
        if shifts is not None:
            from odl_atoms.alignment import refine_shifts
            fit = refine_shifts(measured.operator(), measured.element(),
                                positions, atom_weights, shifts=shifts)
            moved = float(np.abs(fit.shifts - shifts).max()) / cell
            shifts = fit.shifts
        change = 0.0
        if cal is not None:
            new = cal.refined(raw, result.measure, shifts=shifts,
                              sigma=REFIT_WIDTH[measured.ndim])
            change = max(abs(new.sigma / cal.sigma - 1),
                         abs(new.intensity / cal.intensity - 1))
            cal, measured = new, new.apply(raw)
        history.append({
            'n_atoms': result.n_atoms, 'data_misfit': result.data_misfit,
            'sigma': None if cal is None else cal.sigma,
            'intensity': None if cal is None else cal.intensity,
            'shift_change_cells': moved, 'model_change': change,
            # Whether the search that found these atoms had the escapes.
            'escapes': escaped})
        settled = (change < CALIBRATION_TOLERANCE
                   and moved < SHIFT_TOLERANCE)
        if settled and escaped:
            break
        escaped = escaped or settled or turn == rounds - 1
        settings = dict(settings, noise_std=measured.noise_std)
        result = _run_solver(cls, _shifted(measured, shifts),
                             measured.element(), settings,
                             options if escaped else quick,
                             initial=result.measure, callback=callback,
                             deadline=deadline)
    return result, cal, measured, shifts, history


def _shifted(measured, shifts):
    """The forward operator of ``measured``, its projections shifted."""
    operator = measured.operator()
    return operator if shifts is None else operator.shifted(shifts)


def reconstruct_alphas(measured, alphas, solver='adcg', r_min=None,
                       weights=None, seed=None, callback=None,
                       time_limit=DEFAULT_TIME_LIMIT, max_memory=None,
                       checks=True, **options):
    """Reconstruct for every energy weight in ``alphas`` (an alpha sweep).

    `odl_atoms.parameter_choice.alpha_sweep` with the settings of
    `reconstruct`: ``r_min`` (estimated once first when not given and some
    alpha is positive), ``weights``, ``seed`` and ``options`` as there.

    Parameters
    ----------
    measured : `~odl_atoms.io.ProjectionData`
    alphas : sequence of float
    solver, r_min, weights, seed, max_memory, checks, **options
        As for `reconstruct`.
    callback : callable, optional
        Called after each reconstruction with ``(alpha, result)``.
    time_limit : float, optional
        Seconds for the whole sweep, the ``r_min`` estimate included (as
        for `reconstruct`).

    Returns
    -------
    sweep : `~odl_atoms.parameter_choice.AlphaSweep`
        Its ``discrepancy_choice()`` is the discrepancy principle's alpha.

    Examples
    --------
    >>> import numpy as np, odl_atoms as oa
    >>> phantom = oa.defect_phantom('vacancy', shape=(3, 3))
    >>> measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]),
    ...                        0.43, n_detector=48, noise=0.01, seed=0)
    >>> sweep = reconstruct_alphas(measured, [0, 1e-3], r_min=2.885)
    >>> [result.n_atoms for result in sweep.results]
    [8, 8]
    """
    from odl_atoms.parameter_choice import alpha_sweep
    from odl_atoms.problem import Problem

    deadline = _deadline(time_limit)
    cls = solver_class(solver)
    settings, options, estimate = _split(cls, measured, None, r_min, weights,
                                         seed, options, list(alphas))
    if checks:
        for message in check_reconstruction(measured, cls, weights, r_min,
                                            max_memory=max_memory,
                                            **options):
            warnings.warn(message, UserWarning, stacklevel=2)
    if estimate:
        settings['potential'], _ = estimate_equilibrium_distance(
            measured, weights=weights, grid_spacing=options.get(
                'grid_spacing', default_grid_spacing(measured)),
            time_limit=_remaining(deadline))
    try:
        method = cls(**options)
    except ImportError as exc:
        raise ValidationError(f'{cls.__name__} needs an optional '
                              f'dependency: {exc}') from exc
    problem = Problem(measured.operator(), measured.element(), **settings)
    return alpha_sweep(method, problem, alphas, callback=callback,
                       time_limit=_remaining(deadline))
