"""The interface every reconstruction method shares.

A `Solver` is built from the forward operator (a `GaussianRayTransform`, which
knows the geometry, the box and the atom width) and the method's own
parameters; ``solver.solve(data)`` returns a `Reconstruction`. ADCG, simulated
annealing and SIRT + atom picking all follow it, so swapping one for another is
a one-line change::

    solver = ADCG(op, alpha=1e-3)          # or SimulatedAnnealing(op), SIRT(op)
    result = solver.solve(data, callback=odl.solvers.CallbackPrintIteration())
    result.measure                          # the atoms found

``callback`` is any ODL callback (``CallbackPrintIteration``,
``CallbackStore``, ``CallbackProgressBar``, ... chained with ``&``); it is
called once per iteration with the current iterate (a `SparseMeasure` for the
atom methods, the image for pixel methods). ``initial`` is a measure, so one
solver's result can start another.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from odl_atoms.geometry import as_data
from odl_atoms.operators import GaussianRayTransform
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
    operator : `GaussianRayTransform`
        Forward operator: geometry, box and atom width of the problem.
    seed : int or numpy.random.Generator, optional
        Seed of everything random the method does.

    Notes
    -----
    Subclasses implement ``_solve(data, initial, callback, rng)`` returning a
    `Reconstruction`; `solve` checks the input, seeds, times the run and fills
    in the data misfit.
    """

    def __init__(self, operator, seed=None):
        if not isinstance(operator, GaussianRayTransform):
            raise TypeError(
                f'solvers are built from a GaussianRayTransform (it holds the '
                f'geometry, the box and sigma), got {type(operator).__name__}')
        self.operator = operator
        self.seed = seed

    def solve(self, data, initial=None, callback=None):
        """Reconstruct atoms from projection data.

        Parameters
        ----------
        data : element of ``operator.range`` (or of a projection space of the
            same geometry, e.g. float32 for ASTRA), or an array of its shape
        initial : `SparseMeasure`, optional
            Starting configuration (e.g. another solver's result).
        callback : `odl.solvers.Callback` or callable, optional
            Called once per iteration with the current iterate.

        Returns
        -------
        result : `Reconstruction`
        """
        data = as_data(self.operator.range, data)
        if initial is not None:
            if not isinstance(initial, SparseMeasure):
                raise TypeError(
                    f'`initial` must be a SparseMeasure (e.g. another '
                    f"solver's result.measure), got {type(initial).__name__}")
            initial = self.operator.domain.element(initial)
        if callback is not None and not callable(callback):
            raise TypeError(f'`callback` must be callable, got {callback!r}')
        rng = np.random.default_rng(self.seed)
        start = time.perf_counter()
        # The solvers work with small vectors and matrices (L-BFGS-B on a few
        # hundred variables), where BLAS threads only add synchronisation:
        # measured 3x slower on 2 busy cores. One thread for BLAS here.
        with threadpool_limits(limits=1, user_api='blas'):
            result = self._solve(data, initial, callback, rng)
        result.time = time.perf_counter() - start
        if result.data_misfit is None:
            residual = self.operator(result.measure) - data
            result.data_misfit = 0.5 * float(residual.inner(residual))
        result.solver = repr(self)
        return result

    def _solve(self, data, initial, callback, rng):
        raise NotImplementedError('abstract method')

    def __repr__(self):
        return f'{type(self).__name__}({self.operator!r})'
