"""``python -m cosmos3`` entry point (see :mod:`cosmos3.cli`)."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while torch is still importing
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
