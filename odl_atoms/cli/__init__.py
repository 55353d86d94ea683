"""The ``odl-atoms`` command: simulate, reconstruct, evaluate, sweep, demo.

::

    odl-atoms demo                                   # the main job, built in
    odl-atoms simulate --phantom vacancy --angles 0 45 90 --noise 0.01 -o tilts.npz
    odl-atoms reconstruct tilts.npz -o atoms.extxyz --figure atoms.png
    odl-atoms evaluate atoms.extxyz tilts.npz        # truth from the data file
    odl-atoms sweep tilts.npz --alphas 0 1e-4 1e-3 1e-2 --figure sweep.png
    odl-atoms sweep --grid --phantoms vacancy interstitial --noise 0 0.01 \\
        --solvers adcg sirt --alphas 0 1e-3 --cache runs/ --table grid.md

Conventions of the command line (the Python API is the same toolkit):

- angles are in **degrees** here (radians in the API and in the files);
- lengths are in angstrom;
- every output is written atomically (a temporary file in the target folder,
  renamed when complete), so an interrupted run never leaves a half-written
  result and never destroys an existing one;
- bad input (a missing or malformed file, an unknown solver or phantom, bad
  angles) stops with a one-line message and exit status 2; ``--debug`` shows
  the traceback. Status 1 means a bug (please report it), 130 an interrupt.

Progress bars (tqdm, on standard error) follow long steps; ``--quiet`` hides
them and the informational messages, but not results and errors.

Layout (as ASE's command line): `odl_atoms.cli.main` is the table of
subcommands and the error handling; each subcommand is one module
(``demo``, ``simulate``, ``reconstruct``, ``evaluate``, ``sweep``) with
``add_arguments(parser)`` and ``run(args)``; `odl_atoms.cli.common` holds
the argument types and helpers they share. The work is done by the library
(`odl_atoms.reconstruct`, `odl_atoms.simulate`, ...), which never imports
this package.
"""

from odl_atoms.cli.common import UsageError, parse_angles, parse_weights
# The demo's problem, which benchmarks reuse.
from odl_atoms.cli.demo import DEMO_ANGLES_DEG, DEMO_DETECTOR  # noqa: F401
from odl_atoms.cli.demo import DEMO_NOISE, DEMO_SEED, DEMO_SIGMA  # noqa: F401
from odl_atoms.cli.main import build_parser, main

__all__ = ('main', 'build_parser', 'UsageError', 'parse_angles',
           'parse_weights')
