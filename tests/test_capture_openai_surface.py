"""The whole OpenAI SDK surface through vt.wrap, over HTTP against the local server on a
scripted backend: chat completions and the Responses API (create, stream, parse, raw and
streaming-response forms), sync and async; routing after a promotion, prompt and output
hooks, hooked streams, structured outputs, tool calls, n > 1, multimodal messages."""

from __future__ import annotations

import json
import logging

import openai
import pytest
from pydantic import BaseModel

import vt_middleware as vt
from scripted_backend import ScriptedBackend, tool_call
from vt_middleware.call_context import last_run_id
from vt_middleware.runtime.hooks import LoadedHooks

ANSWER = "Sure! The soup was cold and the service slow."
OPENER, SUFFIX = "Sure! ", " Rating: 2/5"
TOOLS_CHAT = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
TOOLS_RESP = [{"type": "function", "name": "get_weather", "parameters": TOOLS_CHAT[0]["function"]["parameters"]}]

# held to the end (no stream processor)
PLAIN_HOOKS = """
def intercept_prompt(user_input, context):
    return user_input + " [P]"

def intercept_output(model_output, context):
    return "HOOKED:" + model_output
"""

# a bounded look-ahead processor: drops an opener, appends a suffix at the end
STREAM_HOOKS = f"""
OPENER, SUFFIX = {OPENER!r}, {SUFFIX!r}

def intercept_prompt(user_input, context):
    return user_input

def intercept_output(model_output, context):
    if model_output.startswith(OPENER):
        model_output = model_output[len(OPENER):]
    return model_output + SUFFIX

class _Stream:
    def __init__(self):
        self.held, self.decided = "", False

    def feed(self, text):
        if self.decided:
            return text
        self.held += text
        if len(self.held) < len(OPENER) and OPENER.startswith(self.held):
            return ""
        self.decided = True
        out = self.held[len(OPENER):] if self.held.startswith(OPENER) else self.held
        self.held = ""
        return out

    def finish(self):
        return ("" if self.decided else self.held) + SUFFIX

def intercept_output_stream(context):
    return _Stream()
"""


class Review(BaseModel):
    summary: str
    stars: int


def _text(content):
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _answer(messages):
    last = messages[-1]
    if last.get("role") == "tool":
        return f"It is {json.loads(last['content'])['sky']} in Paris."
    if "weather" in _text(last.get("content")):
        return tool_call("get_weather", city="Paris")
    return ANSWER


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vt_middleware.server.runner import LocalServer

    backend = ScriptedBackend(_answer, "promoted-model", "base-model")
    srv = LocalServer(backend, data_dir=tmp_path_factory.mktemp("scripted")).start()
    yield srv
    srv.stop()


def _activate(tmp_path, source, version="v1"):
    path = tmp_path / f"hooks_{version}.py"
    path.write_text(source)
    vt.get_runtime().activate(hooks=LoadedHooks.from_file(path, version), routes={"base-model": "promoted-model"})


@pytest.fixture
def plain(vt_env, tmp_path):
    _activate(tmp_path, PLAIN_HOOKS)


@pytest.fixture
def streaming(vt_env, tmp_path):
    _activate(tmp_path, STREAM_HOOKS)


@pytest.fixture
def client(server):
    c = vt.wrap(openai.OpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0), function_name="surface")
    yield c
    c.close()


@pytest.fixture
async def aclient(server):
    c = vt.wrap(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0), function_name="surface"
    )
    yield c
    await c.close()


def _record(run_id):
    assert vt.flush(30)
    stored = vt.get_store().get_call(run_id)
    assert stored is not None, "captured call missing from the store"
    return vt.CallRecord.from_properties(stored.properties)


MSGS = [{"role": "user", "content": "How was dinner?"}]
M = {"model": "base-model"}


def _chat_stream_helper(c):
    with c.chat.completions.stream(messages=MSGS, **M) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "content.delta")
        final = stream.get_final_completion().choices[0].message.content
    assert deltas == final
    return final


def _responses_stream_helper(c):
    with c.responses.stream(input="How was dinner?", **M) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response().output_text
    assert deltas == final
    return final


def _streaming_response(variant, **kwargs):
    with variant.create(**kwargs) as response:
        assert response.headers["content-type"].startswith("application/json")
        parsed = response.parse()
    return parsed


SYNC = {
    "chat.create": lambda c: c.chat.completions.create(messages=MSGS, **M).choices[0].message.content,
    "chat.create(stream)": lambda c: "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(messages=MSGS, stream=True, **M)
        if ch.choices
    ),
    "chat.stream": _chat_stream_helper,
    "chat.with_raw_response": lambda c: (
        c.chat.completions.with_raw_response.create(messages=MSGS, **M).parse().choices[0].message.content
    ),
    "chat.with_streaming_response": lambda c: (
        _streaming_response(c.chat.completions.with_streaming_response, messages=MSGS, **M).choices[0].message.content
    ),
    "responses.create": lambda c: c.responses.create(input="How was dinner?", **M).output_text,
    "responses.create(stream)": lambda c: "".join(
        e.delta
        for e in c.responses.create(input="How was dinner?", stream=True, **M)
        if e.type == "response.output_text.delta"
    ),
    "responses.stream": _responses_stream_helper,
    "responses.with_raw_response": lambda c: (
        c.responses.with_raw_response.create(input="How was dinner?", **M).parse().output_text
    ),
    "responses.with_streaming_response": lambda c: (
        _streaming_response(c.responses.with_streaming_response, input="How was dinner?", **M).output_text
    ),
}


async def _achat_stream(c):
    async with c.chat.completions.stream(messages=MSGS, **M) as stream:
        deltas = "".join([e.delta async for e in stream if e.type == "content.delta"])
        final = (await stream.get_final_completion()).choices[0].message.content
    assert deltas == final
    return final


async def _aresponses_stream(c):
    async with c.responses.stream(input="How was dinner?", **M) as stream:
        deltas = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        final = (await stream.get_final_response()).output_text
    assert deltas == final
    return final


async def _achat_create_stream(c):
    stream = await c.chat.completions.create(messages=MSGS, stream=True, **M)
    return "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])


async def _aresponses_create_stream(c):
    stream = await c.responses.create(input="How was dinner?", stream=True, **M)
    return "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])


async def _astreaming(variant, **kwargs):
    async with variant.create(**kwargs) as response:
        return await response.parse()


ASYNC = {
    "chat.create": lambda c: _await_then(
        c.chat.completions.create(messages=MSGS, **M), lambda r: r.choices[0].message.content
    ),
    "chat.create(stream)": _achat_create_stream,
    "chat.stream": _achat_stream,
    "chat.with_raw_response": lambda c: _await_then(
        c.chat.completions.with_raw_response.create(messages=MSGS, **M), lambda r: r.parse().choices[0].message.content
    ),
    "chat.with_streaming_response": lambda c: _await_then(
        _astreaming(c.chat.completions.with_streaming_response, messages=MSGS, **M),
        lambda r: r.choices[0].message.content,
    ),
    "responses.create": lambda c: _await_then(
        c.responses.create(input="How was dinner?", **M), lambda r: r.output_text
    ),
    "responses.create(stream)": _aresponses_create_stream,
    "responses.stream": _aresponses_stream,
    "responses.with_raw_response": lambda c: _await_then(
        c.responses.with_raw_response.create(input="How was dinner?", **M), lambda r: r.parse().output_text
    ),
    "responses.with_streaming_response": lambda c: _await_then(
        _astreaming(c.responses.with_streaming_response, input="How was dinner?", **M), lambda r: r.output_text
    ),
}


async def _await_then(awaitable, then):
    return then(await awaitable)


def _check_routed_hooked_recorded(server, received, run_id):
    params = server.backend.params[-1]
    assert params.model == "promoted-model"  # the promotion's route, not the requested base model
    assert _text(params.raw_messages[-1]["content"]) == "How was dinner? [P]"
    assert received == "HOOKED:" + ANSWER
    record = _record(run_id)
    assert record.function_name == "surface" and record.kind == "openai" and record.hook_version == "v1"
    assert record.model_requested == "base-model" and record.model_used == "promoted-model"
    assert record.output == received and record.raw_output == ANSWER
    assert _text(record.inputs["messages"][-1]["content"]) == "How was dinner?"
    return record


@pytest.mark.parametrize("method", list(SYNC))
def test_sync_method_is_routed_hooked_and_captured(plain, server, client, method):
    received = SYNC[method](client)
    _check_routed_hooked_recorded(server, received, last_run_id())


@pytest.mark.parametrize("method", list(ASYNC))
async def test_async_method_is_routed_hooked_and_captured(plain, server, aclient, method):
    received = await ASYNC[method](aclient)
    _check_routed_hooked_recorded(server, received, last_run_id())


@pytest.mark.parametrize(
    "method", ["chat.create(stream)", "chat.stream", "responses.create(stream)", "responses.stream"]
)
def test_stream_processor_hooks_with_bounded_look_ahead(streaming, server, client, method):
    received = SYNC[method](client)
    run_id = last_run_id()
    expected = ANSWER[len(OPENER) :] + SUFFIX
    assert received == expected
    record = _record(run_id)
    assert record.output == received and record.raw_output == ANSWER


def test_stream_processor_releases_text_as_it_streams_and_sends_the_addition_last(streaming, client):
    stream = client.chat.completions.create(messages=MSGS, stream=True, **M)
    contents = [ch.choices[0].delta.content for ch in stream if ch.choices]
    words = ANSWER.split(" ")
    # role chunk "", the opener "Sure!" held one chunk (the look-ahead), then one chunk per word
    assert contents[:3] == ["", "", "The"]
    assert contents[3 : len(words) + 1] == [" " + w for w in words[2:]]
    assert contents[len(words) + 1] == SUFFIX  # the addition: its own final content chunk
    events = list(client.responses.create(input="How was dinner?", stream=True, **M))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas[:2] == ["", "The"] and deltas[-1] == SUFFIX
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == "".join(deltas) == events[-1].response.output_text


def test_failing_stream_processor_passes_text_through_and_is_counted(vt_env, tmp_path, client):
    _activate(tmp_path, STREAM_HOOKS.replace("self.decided = True\n", "raise RuntimeError('processor bug')\n"))
    vt.configure(**{**vt.get_config().model_dump(), "strict": False})
    before = vt.error_counts().get("hooks.intercept_output_stream:RuntimeError", 0)
    received = SYNC["chat.create(stream)"](client)
    run_id = last_run_id()
    assert received == ANSWER  # the held-back opener is released, the rest passes through
    assert vt.error_counts()["hooks.intercept_output_stream:RuntimeError"] == before + 1
    assert _record(run_id).output == ANSWER


def test_parse_apis_return_schema_valid_output_untouched_by_text_hooks(plain, server, client):
    parsed = client.chat.completions.parse(messages=MSGS, response_format=Review, **M)
    chat_id = last_run_id()
    assert parsed.choices[0].message.parsed == Review(summary=ANSWER, stars=0)
    assert server.backend.params[-1].model == "promoted-model"
    response = client.responses.parse(input="How was dinner?", text_format=Review, **M)
    resp_id = last_run_id()
    assert response.output_parsed == Review(summary=ANSWER, stars=0)
    schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": Review.model_json_schema()}}
    plain_json = client.chat.completions.create(messages=MSGS, response_format=schema, **M)
    assert json.loads(plain_json.choices[0].message.content) == {"summary": ANSWER, "stars": 0}
    for run_id in (chat_id, resp_id, last_run_id()):
        record = _record(run_id)
        assert json.loads(record.output) == {"summary": ANSWER, "stars": 0} and record.raw_output is None


def test_json_hook_applies_to_structured_output_and_parsed_is_reread(vt_env, tmp_path, client):
    _activate(
        tmp_path,
        PLAIN_HOOKS
        + """
import json

def intercept_json_output(model_output, context):
    data = json.loads(model_output)
    data["stars"] = 4
    return json.dumps(data)
""",
    )
    parsed = client.chat.completions.parse(messages=MSGS, response_format=Review, **M)
    assert parsed.choices[0].message.parsed == Review(summary=ANSWER, stars=4)
    response = client.responses.parse(input="How was dinner?", text_format=Review, **M)
    assert response.output_parsed == Review(summary=ANSWER, stars=4)
    with client.responses.stream(input="How was dinner?", text_format=Review, **M) as stream:
        assert stream.get_final_response().output_parsed == Review(summary=ANSWER, stars=4)
    assert json.loads(_record(last_run_id()).output)["stars"] == 4


def _tool_checks(record, call_id):
    assert record.params["tool_calls"] == [
        {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert record.params["output_is_tool_calls"] is True and "HOOKED" not in record.output


@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_calls_are_structured_unhooked_and_the_history_is_kept(plain, server, client, stream):
    ask = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        with client.chat.completions.stream(messages=ask, tools=TOOLS_CHAT, **M) as s:
            message = s.get_final_completion().choices[0].message
    else:
        message = client.chat.completions.create(messages=ask, tools=TOOLS_CHAT, **M).choices[0].message
    call = message.tool_calls[0]
    assert message.content in (None, "") and call.function.name == "get_weather"
    _tool_checks(_record(last_run_id()), call.id)
    history = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
    ]
    final = client.chat.completions.create(messages=history, tools=TOOLS_CHAT, **M)
    assert final.choices[0].message.content == "HOOKED:It is sunny in Paris."
    record = _record(last_run_id())
    assert [m["role"] for m in record.inputs["messages"]] == ["user", "assistant", "tool"]
    assert record.inputs["messages"][1]["tool_calls"][0]["id"] == call.id
    assert record.inputs["messages"][2] == history[2]
    assert server.backend.params[-1].raw_messages[2]["tool_call_id"] == call.id


@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_calls_are_structured_and_unhooked(plain, client, stream):
    if stream:
        with client.responses.stream(input="weather in Paris?", tools=TOOLS_RESP, **M) as s:
            response = s.get_final_response()
    else:
        response = client.responses.create(input="weather in Paris?", tools=TOOLS_RESP, **M)
    item = response.output[-1]
    assert item.type == "function_call" and item.arguments == '{"city": "Paris"}'
    _tool_checks(_record(last_run_id()), item.call_id)
    follow = client.responses.create(
        input=[
            {"role": "user", "content": "weather in Paris?"},
            item.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": item.call_id, "output": '{"sky": "grey"}'},
        ],
        tools=TOOLS_RESP,
        **M,
    )
    assert follow.output_text == "HOOKED:It is grey in Paris."
    kinds = [m.get("type", m.get("role")) for m in _record(last_run_id()).inputs["messages"]]
    assert kinds == ["user", "function_call", "function_call_output"]


def test_n_choices_are_all_hooked_and_recorded(plain, client):
    result = client.chat.completions.create(messages=MSGS, n=3, **M)
    assert [c.message.content for c in result.choices] == ["HOOKED:" + ANSWER] * 3
    record = _record(last_run_id())
    assert [(c["index"], c["output"]) for c in record.params["choices"]] == [(i, "HOOKED:" + ANSWER) for i in range(3)]
    assert record.params["n_choices"] == 3


def test_n_streamed_choices_are_each_hooked_and_all_recorded(streaming, client):
    received: dict = {}
    for chunk in client.chat.completions.create(messages=MSGS, n=2, stream=True, **M):
        for choice in chunk.choices:
            received[choice.index] = received.get(choice.index, "") + (choice.delta.content or "")
    expected = ANSWER[len(OPENER) :] + SUFFIX
    assert received == {0: expected, 1: expected}
    record = _record(last_run_id())
    assert record.output == expected and record.raw_output == ANSWER
    choices = [(c["index"], c["output"], c["finish_reason"]) for c in record.params["choices"]]
    assert choices == [(0, expected, "stop"), (1, expected, "stop")]


def test_multimodal_parts_keep_their_order_and_only_text_is_hooked(plain, server, client):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    parts = [{"type": "text", "text": "Look:"}, image, {"type": "text", "text": "How was dinner?"}]
    client.chat.completions.create(messages=[{"role": "user", "content": parts}], **M)
    sent = server.backend.params[-1].raw_messages[-1]["content"]
    assert sent == [parts[0], image, {"type": "text", "text": "How was dinner? [P]"}]
    assert _record(last_run_id()).inputs["messages"][0]["content"] == parts
    resp_parts = [
        {"type": "input_text", "text": "Look:"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
    ]
    client.responses.create(input=[{"role": "user", "content": resp_parts}], **M)
    assert _record(last_run_id()).inputs["messages"][0]["content"] == resp_parts


def test_methods_not_intercepted_log_one_warning_naming_them(vt_env, client, caplog):
    from vt_middleware.capture import openai_wrapper

    openai_wrapper._warned.clear()
    with caplog.at_level(logging.WARNING, logger="vt_middleware.capture.openai"):
        for _ in range(3):
            assert client.completions is client.unwrap().completions
        client.beta
        client.models
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "client.completions" in warnings[0] and "not intercepted" in warnings[0]
    assert "client.beta" in warnings[1]


@pytest.mark.parametrize("method", ["chat.stream", "responses.create(stream)", "responses.stream"])
def test_record_only_streams_send_the_models_text_and_store_the_hooked_copy(plain, client, method):
    vt.configure(**{**vt.get_config().model_dump(), "stream_hooks": "record_only"})
    assert SYNC[method](client) == ANSWER
    record = _record(last_run_id())
    assert record.output == "HOOKED:" + ANSWER and record.raw_output == ANSWER


def test_tool_using_calls_export_as_valid_fine_tuning_examples(plain, client, tmp_path):
    from vt_middleware.chatml import read_chat_examples
    from vt_middleware.select.export import write_chat_jsonl

    ask = [{"role": "user", "content": "weather in Paris?"}]
    call = client.chat.completions.create(messages=ask, tools=TOOLS_CHAT, **M).choices[0].message.tool_calls[0]
    first = last_run_id()
    history = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
    ]
    client.chat.completions.create(messages=history, tools=TOOLS_CHAT, **M)
    second = last_run_id()
    item = client.responses.create(input="weather in Paris?", tools=TOOLS_RESP, **M).output[-1]
    third = last_run_id()
    records = [(run_id, _record(run_id)) for run_id in (first, second, third)]
    report = write_chat_jsonl(records, tmp_path / "golden.jsonl")  # validated by the project's validator
    assert report.written == 3 and not report.skipped
    one, two, three = read_chat_examples(tmp_path / "golden.jsonl")
    tool_def = {"type": "function", "function": TOOLS_CHAT[0]["function"]}
    assert one["tools"] == two["tools"] == three["tools"] == [tool_def]
    assert one["messages"][-1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    }
    assert [m["role"] for m in two["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert two["messages"][1]["tool_calls"][0]["id"] == call.id
    assert two["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'}
    assert two["messages"][3] == {"role": "assistant", "content": "HOOKED:It is sunny in Paris."}
    assert three["messages"][-1]["tool_calls"][0]["id"] == item.call_id
    # a human correction replaces the tool call with the corrected text answer
    fixed = write_chat_jsonl(records[:1], tmp_path / "fixed.jsonl", corrections={first: "It is sunny."})
    assert fixed.corrected == 1
    assert read_chat_examples(tmp_path / "fixed.jsonl")[0]["messages"][-1] == {
        "role": "assistant",
        "content": "It is sunny.",
    }


def test_raw_response_of_a_stream_parses_to_the_hooked_stream(streaming, client):
    raw = client.chat.completions.with_raw_response.create(messages=MSGS, stream=True, **M)
    assert raw.headers["content-type"].startswith("text/event-stream")
    text = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
    assert text == ANSWER[len(OPENER) :] + SUFFIX
    assert _record(last_run_id()).output == text


@pytest.mark.parametrize("method", ["chat.create(stream)", "responses.stream"])
def test_generated_stream_processor_gives_what_intercept_output_gives(vt_env, tmp_path, client, method):
    from vt_middleware.synthesize import build_module
    from vt_middleware.types import Rule

    rules = [
        Rule(
            "opener",
            "drop the opener",
            {"scope": None, "pattern": r"Sure!\ ", "anchor": "Sure! "},
            {"parts": []},
            priority=90,
            kind="remove",
            sources=["a", "b"],
            support=2,
        ),
        Rule(
            "rating",
            "end with the rating",
            {"scope": None, "pattern": r"Rating:\ 2/5"},
            {"parts": [["lit", "Rating: 2/5", ""]], "separator": " "},
            priority=20,
            kind="append",
            sources=["a", "b"],
            support=2,
        ),
    ]
    built = build_module(rules, version="v0003")
    assert built.ok and "def intercept_output_stream" in built.code
    _activate(tmp_path, built.code, "v0003")
    expected = vt.get_runtime().current().hooks.module.intercept_output(ANSWER, {})
    assert expected == ANSWER[len(OPENER) :] + SUFFIX
    assert SYNC[method](client) == expected
    assert _record(last_run_id()).output == expected
