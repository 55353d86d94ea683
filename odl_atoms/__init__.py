"""odl_atoms: grid-free atomic electron tomography with ODL and ASTRA.

Atomic configurations are sparse measures (`SparseMeasureSpace`); the exact
projection of Gaussian atoms is an ODL operator (`GaussianRayTransform`) into
the projection space of ODL's ASTRA-backed ``RayTransform``.
"""

__version__ = '0.1.0.dev0'

from odl_atoms import atoms, functionals, operators, space
from odl_atoms.atoms import *  # noqa: F401,F403
from odl_atoms.functionals import *  # noqa: F401,F403
from odl_atoms.operators import *  # noqa: F401,F403
from odl_atoms.space import *  # noqa: F401,F403

__all__ = (space.__all__ + atoms.__all__ + operators.__all__
           + functionals.__all__)
