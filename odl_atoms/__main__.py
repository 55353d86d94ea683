"""``python -m odl_atoms``: the ``odl-atoms`` command (see `odl_atoms.cli`)."""

import sys

from odl_atoms.cli.main import main

if __name__ == '__main__':
    sys.exit(main())
