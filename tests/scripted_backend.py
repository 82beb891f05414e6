"""A model backend for the real local server whose answers a test scripts (for behaviour no
offline model shows reliably: proposing rules as JSON, being derailed by added guidance)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List

from vt_middleware.server.backends import Completion, FaultPlan


class ScriptedBackend:
    """Serves ``model``; each chat is answered by ``answer(messages)`` and recorded."""

    def __init__(self, answer: Callable[[List[Dict[str, Any]]], str], model: str = "scripted") -> None:
        self.answer, self.model, self.faults = answer, model, FaultPlan()
        self.requests: List[List[Dict[str, Any]]] = []

    def list_models(self) -> List[str]:
        return [self.model]

    def has_model(self, model_id: str) -> bool:
        return model_id == self.model

    def complete(self, params: Any) -> Completion:
        self.requests.append(params.messages)
        return Completion(self.answer(params.messages), 10, 10)

    def stream(self, params: Any) -> Any:
        raise NotImplementedError("streaming is not scripted")
