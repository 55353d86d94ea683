"""Reconstruction methods sharing one interface (`Solver`, `Reconstruction`)."""

from odl_atoms.solvers import adcg, base
from odl_atoms.solvers.adcg import *  # noqa: F401,F403
from odl_atoms.solvers.base import *  # noqa: F401,F403

__all__ = base.__all__ + adcg.__all__
