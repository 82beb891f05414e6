"""LangChain 1.x integration (real langchain-core / langchain classes):

- ``vt.AgentMiddleware``: middleware for ``langchain.agents.create_agent`` (langchain_agent);
- ``vt.middleware(chat_model)``: a routed, hooked, captured ``BaseChatModel`` (langchain_chat);
- ``vt.CallbackHandler``: log-only callbacks (langchain_callbacks).

Importing any of them installs the run-scope tracker that lets ``vt.last_run_id()`` see
calls captured inside chains and agents.
"""

from __future__ import annotations

from typing import Any

from ..errors import require

require("langchain_core", "langchain")
from .langchain_callbacks import AsyncVTCallbackHandler, CallbackHandler  # noqa: E402
from .langchain_chat import VTChatModel, middleware  # noqa: E402
from .langchain_common import message_dict  # noqa: E402

__all__ = ["AsyncVTCallbackHandler", "CallbackHandler", "VTChatModel", "message_dict", "middleware"]


def __getattr__(name: str) -> Any:
    if name == "AgentMiddleware":  # needs the ``langchain`` package, not only langchain-core
        require("langchain", "langchain")
        from .langchain_agent import AgentMiddleware

        return AgentMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
