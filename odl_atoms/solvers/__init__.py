"""Reconstruction methods sharing one interface (`Solver`, `Reconstruction`).

Each solver takes its method's options; what to solve is a
`~odl_atoms.problem.Problem`. `ADCG` (with its starts, twinned-particle
starts, escape moves and certificate), `SimulatedAnnealing` and `SIRT` +
atom picking.
"""

from odl_atoms.solvers import (adcg, annealing, base, certificate, moves,
                               sirt, starts, twinned)
from odl_atoms.solvers.adcg import *  # noqa: F401,F403
from odl_atoms.solvers.annealing import *  # noqa: F401,F403
from odl_atoms.solvers.base import *  # noqa: F401,F403
from odl_atoms.solvers.certificate import *  # noqa: F401,F403
from odl_atoms.solvers.moves import *  # noqa: F401,F403
from odl_atoms.solvers.sirt import *  # noqa: F401,F403
from odl_atoms.solvers.starts import *  # noqa: F401,F403
from odl_atoms.solvers.twinned import *  # noqa: F401,F403

__all__ = (base.__all__ + adcg.__all__ + moves.__all__ + sirt.__all__
           + annealing.__all__ + starts.__all__ + twinned.__all__
           + certificate.__all__)
