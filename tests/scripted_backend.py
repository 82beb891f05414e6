"""A model backend for the real local server whose answers a test scripts (for behaviour no
offline model shows reliably: proposing rules as JSON, being derailed by added guidance,
calling tools, a fine-tuned model that fixes what its base model gets wrong). The server turns its answers into OpenAI's wire format, streamed or not."""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Union

from vt_middleware.server.backends import Completion, FaultPlan, StreamedCompletion

Answer = Callable[[List[Dict[str, Any]]], Union[str, Completion]]


def tool_call(name: str, **arguments: Any) -> Completion:
    """An answer that calls function ``name`` with ``arguments``."""
    return Completion("", 10, 10, tool_calls=[{"name": name, "arguments": json.dumps(arguments)}])


class ScriptedBackend:
    """Serves ``model`` (and ``more_models``); each chat is answered by ``answer(messages)`` (text, or a
    :class:`Completion` with ``tool_calls``) and recorded. ``messages`` are the raw messages
    sent (tool calls and tool results included); streams send the text word by word.
    ``others`` serves more model ids, each with its own answer."""

    def __init__(
        self, answer: Answer, model: str = "scripted", *more_models: str, others: Optional[Dict[str, Answer]] = None
    ) -> None:
        self.answer, self.model, self.faults = answer, model, FaultPlan()
        self.others = dict(others or {})
        self.models = [model, *more_models, *self.others]
        self.requests: List[List[Dict[str, Any]]] = []
        self.params: List[Any] = []

    def list_models(self) -> List[str]:
        return list(self.models)

    def has_model(self, model_id: str) -> bool:
        return model_id in self.models

    def complete(self, params: Any) -> Completion:
        self.requests.append(params.messages)
        self.params.append(params)
        out = self.others.get(params.model, self.answer)(params.raw_messages or params.messages)
        return out if isinstance(out, Completion) else Completion(out, 10, 10)

    def stream(self, params: Any) -> StreamedCompletion:
        out = self.complete(params)
        words = out.text.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)] if out.text else []
        streamed = StreamedCompletion(iter(pieces), lambda _text: out.completion_tokens, out.prompt_tokens, 1 << 30)
        streamed.tool_calls = out.tool_calls
        return streamed
