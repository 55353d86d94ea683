"""odl_atoms: grid-free atomic electron tomography with ODL and ASTRA.

Atomic configurations are sparse measures (`SparseMeasureSpace`); the exact
projection of Gaussian atoms is an ODL operator (`GaussianRayTransform`) into
the projection space of ODL's ASTRA-backed ``RayTransform``; a Lennard-Jones
energy (`LennardJones`) is the physical prior; reconstruction methods share
one interface (`Solver`: `ADCG`, `SimulatedAnnealing`, `SIRT`).
"""

__version__ = '0.1.0.dev0'

from odl_atoms import (atoms, functionals, io, metrics, noise, objective,
                       operators, parameter_choice, phantoms, picking, plot,
                       precision, relax, simulation, solvers, space, sweep,
                       weights)
from odl_atoms.atoms import *  # noqa: F401,F403
from odl_atoms.functionals import *  # noqa: F401,F403
from odl_atoms.io import *  # noqa: F401,F403
from odl_atoms.metrics import *  # noqa: F401,F403
from odl_atoms.noise import *  # noqa: F401,F403
from odl_atoms.objective import *  # noqa: F401,F403
from odl_atoms.operators import *  # noqa: F401,F403
from odl_atoms.parameter_choice import *  # noqa: F401,F403
from odl_atoms.phantoms import *  # noqa: F401,F403
from odl_atoms.picking import *  # noqa: F401,F403
from odl_atoms.plot import *  # noqa: F401,F403
from odl_atoms.precision import *  # noqa: F401,F403
from odl_atoms.relax import *  # noqa: F401,F403
from odl_atoms.simulation import *  # noqa: F401,F403
from odl_atoms.solvers import *  # noqa: F401,F403
from odl_atoms.space import *  # noqa: F401,F403
# Imports no Dask (only run_sweep needs it, and imports it then).
from odl_atoms.sweep import *  # noqa: F401,F403
from odl_atoms.weights import *  # noqa: F401,F403

# The learned post-processing: importable without torch (torch is only needed
# when a model runs); only its three user-facing names go to the top level.
from odl_atoms import learned  # noqa: E402
from odl_atoms.learned import LearnedPicker, LearnedSIRT, learned_sirt  # noqa: E402,F401

__all__ = (space.__all__ + atoms.__all__ + operators.__all__
           + functionals.__all__ + objective.__all__ + solvers.__all__
           + phantoms.__all__ + relax.__all__ + metrics.__all__ + io.__all__
           + noise.__all__ + simulation.__all__ + parameter_choice.__all__
           + plot.__all__
           + picking.__all__ + precision.__all__ + weights.__all__ + sweep.__all__
           + ('LearnedPicker', 'LearnedSIRT', 'learned_sirt'))
