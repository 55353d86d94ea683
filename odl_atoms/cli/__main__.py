"""``python -m odl_atoms.cli``: the ``odl-atoms`` command."""

import sys

from odl_atoms.cli.main import main

if __name__ == '__main__':
    sys.exit(main())
