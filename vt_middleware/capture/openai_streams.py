"""Streams of the wrapped OpenAI client: chat chunks and Responses API events pass through
one by one, output hooks applied to what the user receives, recorded when the stream ends.

With ``stream_hooks="apply"`` (default) each answer's text goes through the hook's stream
processor (``ChatCall.output_stream``): a chunk carries what the processor releases (possibly
nothing while it looks ahead), and what it adds at the end is sent as one more content chunk
(chat) or ``response.output_text.delta`` event (Responses) before the answer's end. The
final texts of the Responses API (``output_text.done``, ``content_part.done``,
``output_item.done``, ``response.completed``) carry the hooked text, so the SDK's stream
helpers (``get_final_completion`` / ``get_final_response``) return it too. The stored output
is what the user received. ``"record_only"`` passes the model's chunks through and hooks only
the stored copy. Tool-call deltas and function-call events are never hooked.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..config import get_config
from ..health import fail_open, record_internal_error
from .record import ChatCall, assistant_output

_COMPONENT = "capture.openai"


class _StreamState:
    """What a stream's chunks said; ``observe`` may hook them and returns the items to send
    (None: the item itself), ``end`` the items still to send when the stream is exhausted."""

    def __init__(self, call: ChatCall) -> None:
        self.call = call
        self.apply = call.pair.hooks is not None and get_config().stream_hooks == "apply"
        self.procs: Dict[Any, Any] = {}
        self.raw: Dict[Any, List[str]] = {}
        self.sent: Dict[Any, List[str]] = {}
        self.usage: Any = None
        self.model: Optional[str] = None
        self.chunks = 0

    def _feed(self, key: Any, text: str) -> str:
        """``text`` of answer ``key`` through its processor (opened on first use); what to send."""
        raw = self.raw.get(key)
        if raw is None:
            raw = self.raw[key] = []
            self.sent[key] = []
        raw.append(text)
        if not self.apply:
            return text
        proc = self.procs.get(key)
        if proc is None:
            try:
                proc = self.procs[key] = self.call.output_stream()
            except Exception as exc:  # noqa: BLE001
                record_internal_error(_COMPONENT, exc)
                self.apply = False
                return text
        out = proc.feed(text)
        self.sent[key].append(out)
        return out

    def _close(self, key: Any) -> str:
        """What answer ``key``'s processor adds at its end ("" when none or already closed)."""
        proc = self.procs.pop(key, None)
        if proc is None:
            return ""
        tail = proc.finish()
        self.sent[key].append(tail)
        return tail

    def texts(self, key: Any, error: Optional[BaseException], hook: bool = True) -> Tuple[str, str]:
        """(output, raw) of answer ``key``: what the user received, and the model's text
        (record-only: the hooked copy, unless ``hook`` is False or the stream failed)."""
        raw = "".join(self.raw.get(key, ()))
        if self.apply:
            return "".join(self.sent.get(key, ())), raw
        return (self.call.apply_output(raw) if hook and error is None else raw), raw

    def observe(self, item: Any) -> Optional[List[Any]]:
        raise NotImplementedError

    def end(self) -> Optional[List[Any]]:
        raise NotImplementedError

    def finish(self, error: Optional[BaseException] = None, closed_early: bool = False) -> None:
        raise NotImplementedError


class ChatStreamState(_StreamState):
    """A ``chat.completions`` stream: text per choice, tool-call deltas assembled per choice."""

    def __init__(self, call: ChatCall) -> None:
        super().__init__(call)
        self.finish_reasons: Dict[int, str] = {}
        self.tools: Dict[int, Dict[int, Dict[str, Any]]] = {}
        self.template: Any = None  # (chunk, choice) a tail chunk is copied from

    def observe(self, chunk: Any) -> Optional[List[Any]]:
        self.chunks += 1
        try:
            if chunk.usage is not None:
                self.usage = chunk.usage
            self.model = chunk.model or self.model
            tails = None
            for choice in chunk.choices:
                index, delta = choice.index, choice.delta
                if delta is not None:
                    content = delta.content
                    if content:
                        out = self._feed(index, content)
                        if out is not content:
                            delta.content = out
                        self.template = (chunk, choice)
                    if delta.tool_calls:
                        self._tool_deltas(index, delta.tool_calls)
                if choice.finish_reason:
                    self.finish_reasons[index] = choice.finish_reason
                    if self.procs:
                        tail = self._close(index)
                        if tail:
                            tails = [*(tails or ()), self._tail_chunk(chunk, choice, tail)]
            return None if tails is None else [*tails, chunk]
        except Exception as exc:  # noqa: BLE001
            record_internal_error(_COMPONENT, exc)
            return None

    def end(self) -> Optional[List[Any]]:
        with fail_open(_COMPONENT):
            if not self.procs or self.template is None:
                return None
            chunk, choice = self.template
            tails = [
                self._tail_chunk(chunk, choice, tail, index)
                for index in list(self.procs)
                for tail in [self._close(index)]
                if tail
            ]
            return tails or None
        return None

    @staticmethod
    def _tail_chunk(chunk: Any, choice: Any, tail: str, index: Optional[int] = None) -> Any:
        delta = type(choice.delta)(content=tail)
        update: Dict[str, Any] = {"delta": delta, "finish_reason": None}
        if index is not None:
            update["index"] = index
        return chunk.model_copy(update={"choices": [choice.model_copy(update=update)], "usage": None})

    def _tool_deltas(self, index: int, deltas: Any) -> None:
        calls = self.tools.setdefault(index, {})
        for tc in deltas:
            acc = calls.get(tc.index)
            if acc is None:
                acc = calls[tc.index] = {"id": None, "type": "function", "function": {"name": None, "arguments": ""}}
            if tc.id:
                acc["id"] = tc.id
            function = tc.function
            if function is not None:
                if function.name:
                    acc["function"]["name"] = function.name
                if function.arguments:
                    acc["function"]["arguments"] += function.arguments

    def finish(self, error: Optional[BaseException] = None, closed_early: bool = False) -> None:
        if self.call.finished:
            return
        with fail_open(_COMPONENT):
            extra: Dict[str, Any] = {
                "finish_reason": self.finish_reasons.get(0),
                "chunks": self.chunks,
                "closed_early": closed_early,
            }
            choices = []
            for index in sorted(set(self.raw) | set(self.tools) | set(self.finish_reasons)) or [0]:
                tool_calls = [self.tools[index][k] for k in sorted(self.tools.get(index, {}))]
                text, raw = self.texts(index, error, hook=not tool_calls)
                entry: Dict[str, Any] = {"index": index, "finish_reason": self.finish_reasons.get(index)}
                entry["output"] = assistant_output(text or None, tool_calls, entry)
                choices.append((entry, raw))
            first, raw = choices[0]
            extra.update({k: v for k, v in first.items() if k in ("tool_calls", "output_is_tool_calls")})
            if len(choices) > 1:
                extra["choices"] = [entry for entry, _ in choices]
            output = first["output"] or ""
            self.call.finish(
                output=output,
                raw_output=output if first.get("output_is_tool_calls") else raw,
                model_used=self.model,
                usage=self.usage,
                error=error,
                extra=extra,
            )


class ResponseStreamState(_StreamState):
    """A Responses API stream: text deltas per (item, content part) hooked; the final texts
    and the completed response carry the hooked text."""

    def __init__(self, call: ChatCall, read: Any) -> None:
        super().__init__(call)
        self.read = read  # (response, texts) -> record fields (openai_responses)
        self.response: Any = None
        self.hooked: Dict[Tuple[str, int], str] = {}

    def observe(self, event: Any) -> Optional[List[Any]]:
        self.chunks += 1
        try:
            kind = event.type
            if kind == "response.output_text.delta":
                delta = event.delta
                out = self._feed((event.item_id, event.content_index), delta)
                if out is not delta:
                    event.delta = out
                return None
            if not self.apply:
                if kind == "response.completed":
                    self.response = event.response
                return None
            if kind == "response.output_text.done":
                key = (event.item_id, event.content_index)
                tail = self._close(key)
                self.hooked[key] = event.text = "".join(self.sent.get(key, ()))
                if tail:
                    return [_text_delta(event, tail), event]
            elif kind == "response.content_part.done":
                text = self.hooked.get((event.item_id, event.content_index))
                if text is not None and getattr(event.part, "type", None) == "output_text":
                    event.part.text = text
            elif kind == "response.output_item.done":
                self._hook_item(event.item)
            elif kind == "response.completed":
                self.response = event.response
                for item in event.response.output:
                    self._hook_item(item)
            return None
        except Exception as exc:  # noqa: BLE001
            record_internal_error(_COMPONENT, exc)
            return None

    def _hook_item(self, item: Any) -> None:
        if getattr(item, "type", None) != "message":
            return
        for index, part in enumerate(item.content):
            text = self.hooked.get((item.id, index))
            if text is not None and getattr(part, "type", None) == "output_text":
                part.text = text

    def end(self) -> Optional[List[Any]]:
        return None  # tails are sent before each text's ``output_text.done``

    def finish(self, error: Optional[BaseException] = None, closed_early: bool = False) -> None:
        if self.call.finished:
            return
        with fail_open(_COMPONENT):
            keys = list(self.raw)
            output = "".join(self.texts(k, error)[0] for k in keys)
            raw = "".join("".join(self.raw[k]) for k in keys)
            extra = {"chunks": self.chunks, "closed_early": closed_early}
            self.call.finish(
                output=output,
                raw_output=raw,
                response=self.response,
                error=error,
                extra=extra,
                read=None if self.response is None else self.read,
            )


def _text_delta(done: Any, tail: str) -> Any:
    """A ``response.output_text.delta`` event carrying ``tail``, just before ``done``."""
    from openai.types.responses import ResponseTextDeltaEvent

    return ResponseTextDeltaEvent(
        type="response.output_text.delta",
        item_id=done.item_id,
        output_index=done.output_index,
        content_index=done.content_index,
        delta=tail,
        logprobs=[],
        sequence_number=done.sequence_number,
    )


class _Proxy:
    """Attribute access falls through to the wrapped object."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_vt_target", target)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_vt_target"), name)

    def __dir__(self) -> List[str]:
        return sorted(set(dir(self._vt_target)) | set(super().__dir__()))

    def __repr__(self) -> str:
        return f"vt.wrap({self._vt_target!r})"


class _RecordingProxy(_Proxy):
    """A stream proxy with its state; a stream dropped unfinished is recorded as closed early."""

    def __init__(self, stream: Any, state: _StreamState) -> None:
        super().__init__(stream)
        object.__setattr__(self, "_vt_state", state)
        object.__setattr__(self, "_vt_pending", [])

    def _vt_after(self, item: Any) -> Any:
        out = self._vt_state.observe(item)
        if out is None:
            return item
        self._vt_pending.extend(out[1:])
        return out[0]

    def _vt_exhausted(self) -> bool:
        """At the stream's end: True when a tail is pending (sent before the end is raised)."""
        tails = self._vt_state.end()
        if tails:
            self._vt_pending.extend(tails)
            return True
        self._vt_state.finish()
        return False

    def _vt_closing(self) -> None:
        self._vt_state.finish(closed_early=True)

    def __del__(self) -> None:
        state = self.__dict__.get("_vt_state")
        if state is not None and not state.call.finished:
            state.finish(closed_early=True)


class RecordingStream(_RecordingProxy):
    """An ``openai.Stream`` passed through item by item (hooked); recorded when it ends or closes."""

    def __iter__(self) -> RecordingStream:
        return self

    def __next__(self) -> Any:
        pending = self._vt_pending
        if pending:
            return pending.pop(0)
        try:
            item = next(self._vt_target)
        except StopIteration:
            if self._vt_exhausted():
                return pending.pop(0)
            raise
        except Exception as exc:
            self._vt_state.finish(error=exc)
            raise
        return self._vt_after(item)

    def close(self) -> None:
        try:
            self._vt_target.close()
        finally:
            self._vt_closing()

    def __enter__(self) -> RecordingStream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncRecordingStream(_RecordingProxy):
    """An ``openai.AsyncStream`` passed through item by item (hooked); recorded when it ends or closes."""

    def __aiter__(self) -> AsyncRecordingStream:
        return self

    async def __anext__(self) -> Any:
        pending = self._vt_pending
        if pending:
            return pending.pop(0)
        try:
            item = await self._vt_target.__anext__()
        except StopAsyncIteration:
            if self._vt_exhausted():
                return pending.pop(0)
            raise
        except Exception as exc:
            self._vt_state.finish(error=exc)
            raise
        return self._vt_after(item)

    async def close(self) -> None:
        try:
            await self._vt_target.close()
        finally:
            self._vt_closing()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> AsyncRecordingStream:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
