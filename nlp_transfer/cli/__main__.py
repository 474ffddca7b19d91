"""``python -m nlp_transfer.cli``: the same as the ``nlp-transfer`` command."""

import sys

from .commands import main

sys.exit(main())
