"""VectorWave's ``insert``/``insert_many`` expressed through one idempotent ``upsert_many``."""

from __future__ import annotations

import uuid as uuid_lib
from typing import Any, Dict, List, Optional, Sequence


class UpsertWrites:
    """Mixin for our VectorWave stores: every write goes through ``upsert_many`` (keyed by uuid)."""

    def upsert_many(self, collection: str, items: Sequence[Dict[str, Any]], fresh: bool = False) -> int:
        raise NotImplementedError

    def insert(
        self,
        collection: str,
        properties: Dict[str, Any],
        uuid: Optional[str] = None,
        vector: Optional[List[float]] = None,
    ) -> str:
        uid = uuid or str(uuid_lib.uuid4())
        self.upsert_many(collection, [{"uuid": uid, "properties": properties, "vector": vector}])
        return uid

    def insert_many(self, collection: str, items: List[Dict[str, Any]]) -> int:
        return self.upsert_many(collection, items)
