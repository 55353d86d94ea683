"""Default values shared by the library and the command line.

This module imports nothing heavy (no ODL, no SciPy), so that the command
line can show these defaults in its help without loading the toolkit.
"""

__all__ = ('DEFAULT_ALPHA', 'DISCREPANCY_TAU', 'DEFAULT_SEED')

#: Default dimensionless energy weight (see `odl_atoms.objective`): small
#: enough not to distort a lattice that is not the potential's minimum, large
#: enough to rule out the many atom arrangements that fit 2-3 projections
#: equally well.
DEFAULT_ALPHA = 1e-3

#: Morozov's safety factor ``tau`` of the discrepancy principle: an answer is
#: accepted while its data residual is at most ``tau`` times the expected
#: noise norm (`odl_atoms.parameter_choice`).
DISCREPANCY_TAU = 1.1

#: Seed of everything random when none is given on the command line.
DEFAULT_SEED = 0
