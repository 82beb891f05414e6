"""Promotion and hot swap for the evolution loop: a gated candidate's model routing and hook
version go live together, in one step, recorded for every app instance.

The mechanism is the runtime's (``runtime/live.py``): the promotion record is the truth about
what is live, each promotion loads the version, records the row, swaps the runtime's pair with
one reference and derives the mirror and ``ACTIVE`` files in the background; ``rollback`` is
the one rollback every caller uses. This module is the evolve stage's entry to it.
"""

from __future__ import annotations

from ..runtime.live import PairState, Promoter, get_promoter, promote, promotion_history, rollback, sync_from_store

__all__ = ["PairState", "Promoter", "get_promoter", "promote", "promotion_history", "rollback", "sync_from_store"]
