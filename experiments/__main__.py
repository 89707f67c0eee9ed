"""``python -m experiments`` is the same as the ``factorysat`` command."""

import sys

from experiments.cli import main

sys.exit(main())
