"""ADCG in Boyd's three pieces: an oracle, a local descent and a driver.

- `oracle`: where one more atom lowers the objective most (scoring a grid,
  refining, adding one atom or a batch);
- `descent`: the local steps (move atoms downhill in the box, choose each
  atom's weight, prune and merge);
- `context`: what starts and escape moves work with (the objective and the
  two pieces' steps, not the solver);
- `batch`: many atoms per iteration, for 3D at scale;
- `solver`: the driver, `ADCG`.
"""

from odl_atoms.solvers.adcg import batch, context, descent, oracle, solver
from odl_atoms.solvers.adcg.context import SearchContext
from odl_atoms.solvers.adcg.descent import LocalDescent
from odl_atoms.solvers.adcg.oracle import Oracle
from odl_atoms.solvers.adcg.solver import *  # noqa: F401,F403

__all__ = solver.__all__ + ('Oracle', 'LocalDescent', 'SearchContext')
