"""The interface every reconstruction method shares.

A `Solver` is built from its method's options only; what to solve is a
`~odl_atoms.problem.Problem` (data, atom model, prior, noise), and
``solver.solve(problem)`` returns a `Reconstruction`. ADCG, simulated
annealing and SIRT + atom picking all follow it, so swapping one for another
is a one-line change::

    problem = Problem(op, data, potential=2.885, noise_std=0.01)
    solver = ADCG()                         # or SimulatedAnnealing(), SIRT()
    result = solver.solve(problem, callback=odl.solvers.CallbackPrintIteration())
    result.measure                          # the atoms found

``callback`` is any ODL callback (``CallbackPrintIteration``,
``CallbackStore``, ``CallbackProgressBar``, ... chained with ``&``); every
solver calls it once per iteration with the current atoms (a `SparseMeasure`).
Pixel methods also take ``image_callback``, called with the current image.
``initial`` is a measure, so one solver's result can start another.

A solver's options are a frozen dataclass, ``Solver.Options``, checked when
the solver is built (`odl_atoms.solvers.options`); ``solver.options`` holds
them and ``solver.<name>`` reads one.
"""

import time
from dataclasses import dataclass, field, fields

import numpy as np
from threadpoolctl import threadpool_limits

from odl_atoms.problem import Problem
from odl_atoms.space import SparseMeasure

__all__ = ('Solver', 'Reconstruction')


@dataclass
class Reconstruction:

    """What a solver returns.

    Attributes
    ----------
    measure : `SparseMeasure`
        The reconstructed atoms.
    objective : list of float
        Objective value after every iteration (the method's own objective;
        for SIRT the squared data residual).
    n_iterations : int
    time : float
        Wall-clock seconds of ``solve``.
    image : odl element, optional
        The pixel/voxel image, for pixel methods.
    data_misfit : float, optional
        ``0.5 * ||R(mu) - y||^2`` of the returned measure (weighted inner
        product of the projection space).
    energy : float, optional
        Potential energy of the returned configuration (if the solver has one).
    info : dict
        Method-specific details (acceptance rates, certificates, ...).
    solver : str
        ``repr`` of the solver that produced it.
    """

    measure: SparseMeasure
    objective: list = field(default_factory=list)
    n_iterations: int = 0
    time: float = 0.0
    image: object = None
    data_misfit: float = None
    energy: float = None
    info: dict = field(default_factory=dict)
    solver: str = ''

    @property
    def n_atoms(self):
        """Number of reconstructed atoms."""
        return self.measure.n_atoms

    def __repr__(self):
        extra = ''
        if self.data_misfit is not None:
            extra += f', data_misfit={self.data_misfit:.4g}'
        if self.energy is not None:
            extra += f', energy={self.energy:.4g}'
        return (f'Reconstruction(n_atoms={self.n_atoms}, '
                f'n_iterations={self.n_iterations}, time={self.time:.3g}s'
                f'{extra})')


class Solver:

    """Base class of the reconstruction methods.

    Parameters
    ----------
    **options
        The method's options: the fields of the subclass's ``Options``
        (a frozen dataclass), each checked when the solver is built.

    Notes
    -----
    Subclasses define ``Options`` and implement ``_solve(problem, initial,
    callback, rng)`` returning a `Reconstruction`; `solve` checks the input,
    seeds, times the run and fills in the data misfit.
    """

    #: The method's options (a frozen dataclass with a ``seed`` field).
    Options = None

    def __init__(self, *args, **options):
        if self.Options is None:
            raise TypeError(f'{type(self).__name__} defines no Options')
        if args:
            # The pre-Problem call ``ADCG(op, alpha=...)``.
            raise TypeError(
                f'{type(self).__name__} takes only its method options, as '
                f'keywords; the operator and the data go into '
                f'Problem(operator, data, ...), given to solve()')
        names = self.option_names()
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(
                f'{type(self).__name__} has no option(s) '
                f'{", ".join(map(repr, unknown))}; its options are '
                f'{", ".join(names)} (the problem\'s settings - data, '
                f'alpha, potential, weights, noise_std, max_atoms - go '
                f'into Problem)')
        self.options = self.Options(**options)

    @classmethod
    def option_names(cls):
        """Names of the method's options, in their documented order."""
        return tuple(f.name for f in fields(cls.Options))

    def with_options(self, **changes):
        """A solver of the same method with some options changed."""
        options = {f.name: getattr(self.options, f.name)
                   for f in fields(self.Options)}
        options.update(changes)
        return type(self)(**options)

    def __getattr__(self, name):
        # ``solver.tol`` reads ``solver.options.tol``; only called for
        # names the instance and its class lack.
        options = self.__dict__.get('options')
        if options is not None and name in self.option_names():
            return getattr(options, name)
        raise AttributeError(f'{type(self).__name__!r} object has no '
                             f'attribute {name!r}')

    def solve(self, problem, initial=None, callback=None, *,
              time_limit=None):
        """Reconstruct atoms.

        Parameters
        ----------
        problem : `~odl_atoms.problem.Problem`
            The data, the atom model, the prior and the noise level.
        initial : `SparseMeasure`, optional
            Starting configuration (e.g. another solver's result).
        callback : `odl.solvers.Callback` or callable, optional
            Called once per iteration with the current atoms.
        time_limit : positive float, optional
            Wall-clock seconds after which the method stops at its next
            iteration and returns the best answer so far
            (``result.info['stop_reason'] == 'time_limit'``), so that no
            input can keep a run going for ever. Default: no limit.

        Returns
        -------
        result : `Reconstruction`
        """
        if not isinstance(problem, Problem):
            raise TypeError(
                f'`problem` must be a Problem (odl_atoms.Problem(operator, '
                f'data, alpha=..., potential=..., ...)), got '
                f'{type(problem).__name__}')
        if initial is not None:
            if not isinstance(initial, SparseMeasure):
                raise TypeError(
                    f'`initial` must be a SparseMeasure (e.g. another '
                    f"solver's result.measure), got {type(initial).__name__}")
            initial = problem.space.element(initial)
        if callback is not None and not callable(callback):
            raise TypeError(f'`callback` must be callable, got {callback!r}')
        if time_limit is not None:
            if isinstance(time_limit, bool) or not isinstance(
                    time_limit, (int, float, np.floating, np.integer)) \
                    or not time_limit > 0:
                raise ValueError(f'`time_limit` must be a positive number of '
                                 f'seconds, got {time_limit!r}')
        rng = np.random.default_rng(self.options.seed)
        start = time.perf_counter()
        self._deadline = None if time_limit is None else start + time_limit
        # The solvers work with small vectors and matrices (L-BFGS-B on a few
        # hundred variables), where BLAS threads only add synchronisation:
        # measured 3x slower on 2 busy cores. One thread for BLAS here.
        try:
            with threadpool_limits(limits=1, user_api='blas'):
                result = self._solve(problem, initial, callback, rng)
        finally:
            self._deadline = None
        result.time = time.perf_counter() - start
        if result.data_misfit is None:
            positions, weights, _ = problem.arrays(result.measure)
            result.data_misfit = problem.objective(alpha=0).data_misfit(
                positions, weights)
        result.solver = repr(self)
        return result

    def _solve(self, problem, initial, callback, rng):
        raise NotImplementedError('abstract method')

    def out_of_time(self):
        """Whether the ``time_limit`` of the current `solve` has passed
        (methods check it once per iteration)."""
        deadline = self.__dict__.get('_deadline')
        return deadline is not None and time.perf_counter() > deadline

    def __repr__(self):
        args = []
        for f in fields(self.Options):
            value = getattr(self.options, f.name)
            if _differs(value, f.default):
                args.append(f'{f.name}={value!r}')
        return f'{type(self).__name__}(' + ', '.join(args) + ')'


def _differs(value, default):
    """Whether an option differs from its default (for reprs)."""
    try:
        return bool(value != default)
    except (TypeError, ValueError):  # arrays and the like
        return True
