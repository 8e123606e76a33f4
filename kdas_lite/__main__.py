"""``python -m kdas_lite``: the same as the ``kdas-lite`` command."""

import sys

from kdas_lite.cli import main

sys.exit(main())
