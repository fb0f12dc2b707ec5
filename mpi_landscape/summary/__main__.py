"""``python -m mpi_landscape.summary``: see ``mpi_landscape.summary.command``."""

import sys

from .command import main

sys.exit(main())
