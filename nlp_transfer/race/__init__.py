"""``--strategy auto``: the best transfer strategy for the data, without choosing (a budgeted
race on validation; :mod:`.run`)."""

from __future__ import annotations

from .run import race, run_or_race

__all__ = ["race", "run_or_race"]
