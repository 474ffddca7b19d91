"""The command line: ``nlp-transfer train | predict | evaluate | export | search | download``.

:mod:`.commands` dispatches the commands (its ``main`` is the console script), :mod:`.predict` holds
``predict`` and ``evaluate``, :mod:`.config` turns a config dataclass into a parser (``--config
file.yaml``, flags override it) and :mod:`.help` makes ``--help`` compact. The top layer: it may
import every package below it, and nothing below imports it.
"""

from .commands import main

__all__ = ["main"]
