"""pytest: skip the doctests of the PyTorch kernels when torch is absent.

`odl_atoms.projection_torch` imports without torch (torch is imported inside
its functions), but its examples run torch; without the ``learn`` extra the
module is left out of doctest collection.
"""

import importlib.util

collect_ignore = ([] if importlib.util.find_spec('torch') is not None
                  else ['projection_torch.py'])
