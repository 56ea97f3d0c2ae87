"""``python -m cosmos3`` entry point (see :mod:`cosmos3.cli`)."""

import sys

from .cli import main

sys.exit(main())
