"""pytest: skip the doctests that run the network when torch is absent.

The examples of `LearnedPicker` and `LearnedSIRT` run the shipped model;
without the ``learn`` extra their module is left out of doctest collection
(the rest of the package's doctests need no torch).
"""

import importlib.util

collect_ignore = ([] if importlib.util.find_spec('torch') is not None
                  else ['picker.py'])
