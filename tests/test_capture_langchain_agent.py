"""LangChain 1.x agents and the wrapper chat model, with real ``create_agent``, ChatOpenAI and
tools, against a scripted server that answers with tool calls in OpenAI's wire format."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware as LCAgentMiddleware
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

import vt_middleware as vt
from scripted_backend import ScriptedBackend, tool_call
from scripted_tools_server import ToolCalls, start_scripted_tools_server
from vt_middleware.runtime.hooks import LoadedHooks

WRAP_HOOKS = (
    "def intercept_prompt(t, c):\n    return t + ' please'\n\ndef intercept_output(t, c):\n    return '<' + t + '>'\n"
)
APPEND_HOOKS = (
    "def intercept_prompt(t, c):\n    return t\n\n"
    "def intercept_output(t, c):\n    return t + 'Rating: 5/5'\n\n"
    "class _Append:\n    def feed(self, t):\n        return t\n\n"
    "    def finish(self):\n        return 'Rating: 5/5'\n\n"
    "def intercept_output_stream(c):\n    return _Append()\n"
)  # streams with no look-ahead


class Weather(BaseModel):
    city: str
    sunny: bool


def _script(body):
    """Calls get_weather for the city named last in the user's message, then answers."""
    messages = body["messages"]
    if body.get("response_format"):
        return json.dumps({"city": "Oslo", "sunny": False})
    if body.get("tool_choice") and body.get("tools"):  # forced: structured output by function calling
        return ToolCalls([(body["tools"][0]["function"]["name"], {"city": "Rome", "sunny": True})])
    if messages[-1]["role"] == "tool":
        return f"Weather: {messages[-1]['content']}"
    if body.get("tools"):
        user = [m for m in messages if m["role"] == "user"][-1]["content"]
        city = user.split()[2].strip("?")
        return ToolCalls([("get_weather", {"city": city})])
    return "plain answer"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    server, app = start_scripted_tools_server(_script, tmp_path_factory.mktemp("tools-server"))
    yield server, app
    server.stop()


@pytest.fixture
def model(scripted):
    server, app = scripted
    app.requests.clear()
    return ChatOpenAI(
        base_url=server.base_url,
        api_key="sk-local",
        model="scripted",
        max_retries=0,
        http_async_client=httpx.AsyncClient(),
    )


def _hooks(tmp_path, source, version="h1"):
    path = tmp_path / f"{version}.py"
    path.write_text(source)
    vt.get_runtime().activate(hooks=LoadedHooks.from_file(path, version), keep_routes=True)


def _rows(name):
    assert vt.flush(30)
    rows = [vt.CallRecord.from_properties(c.properties) for page in vt.get_store().iter_calls(name) for c in page]
    return sorted(rows, key=lambda r: r.created_unix)


def _ask(city):
    return {"messages": [{"role": "user", "content": f"weather in {city}?"}]}


class ModelRuns(BaseCallbackHandler):
    """Collects the LangChain run id of every chat model call."""

    def __init__(self):
        super().__init__()
        self.ids = []

    def on_chat_model_start(self, serialized, messages, *, run_id, **kwargs):
        self.ids.append(str(run_id))


def test_agent_tool_call_then_answer_hooked_captured_and_feedback_attaches(vt_env, tmp_path, scripted, model):
    _, app = scripted
    _hooks(tmp_path, WRAP_HOOKS)
    agent = create_agent(model, [get_weather], middleware=[vt.AgentMiddleware(function_name="weather_agent")])
    state = agent.invoke(_ask("Paris"))
    final = state["messages"][-1]
    assert final.content == "<Weather: sunny in Paris>"  # output hook on the final answer
    tool_turn = state["messages"][1]
    assert tool_turn.tool_calls[0]["name"] == "get_weather" and tool_turn.content == ""  # never hooked
    assert state["messages"][0].content == "weather in Paris?"  # the agent's state keeps the user's text
    assert [r["messages"][-1 if i == 0 else 0]["content"] for i, r in enumerate(app.requests)] == [
        "weather in Paris? please",
        "weather in Paris? please",
    ]  # the prompt hook on every model call
    assert app.requests[0]["tools"][0]["function"]["name"] == "get_weather"

    first, second = _rows("weather_agent")
    assert first.params["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert first.params["tools"][0]["function"]["name"] == "get_weather"
    assert [m["role"] for m in second.inputs["messages"]] == ["user", "assistant", "tool"]
    assert second.inputs["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert second.inputs["messages"][2]["tool_call_id"] == first.params["tool_calls"][0]["id"]
    assert second.output == final.content and second.raw_output == "Weather: sunny in Paris"
    assert second.params["prompt_after_hook"] == "weather in Paris? please" and second.hook_version == "h1"
    assert first.parent_run_id and first.parent_run_id == second.parent_run_id  # the agent run
    (tool_row,) = _rows("langchain.tool:get_weather")
    assert tool_row.inputs == {"args": {"city": "Paris"}} and tool_row.output == "sunny in Paris"
    assert tool_row.parent_run_id == first.parent_run_id

    # both calls are valid fine-tuning examples in OpenAI's tools format
    from vt_middleware.select.export import chat_example

    calling, answering = chat_example(first, first.output), chat_example(second, second.output)
    assert calling["tools"][0]["function"]["name"] == "get_weather"
    assert calling["messages"][-1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    assert [m["role"] for m in answering["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert answering["messages"][-1] == {"role": "assistant", "content": final.content}

    assert vt.last_run_id() == second.run_id
    pair = vt.feedback(vt.last_run_id(), fixed_output="Paris: sunny.")
    assert pair.run_id == second.run_id and pair.bad_output == final.content
    assert pair.input_prompt == "weather in Paris?"


def test_agent_uses_the_promoted_model_and_the_base_after_rollback(vt_env, scripted, model):
    from vt_middleware.evolve.swap import promote

    _, app = scripted
    agent = create_agent(model, [get_weather], middleware=[vt.AgentMiddleware(function_name="routed_agent")])
    agent.invoke(_ask("Lima"))
    promote("scripted", "scripted-ft-1", None, reason="test")
    agent.invoke(_ask("Quito"))
    vt.rollback()
    agent.invoke(_ask("Bogota"))
    assert [r["model"] for r in app.requests] == ["scripted"] * 2 + ["scripted-ft-1"] * 2 + ["scripted"] * 2
    rows = _rows("routed_agent")
    assert [r.model_used for r in rows] == [r["model"] for r in app.requests]
    assert {r.model_requested for r in rows} == {"scripted"}


async def test_agent_async_runs_each_see_their_own_last_run_id(vt_env, tmp_path, model):
    _hooks(tmp_path, WRAP_HOOKS)
    agent = create_agent(model, [get_weather], middleware=[vt.AgentMiddleware(function_name="async_agent")])

    async def one(city):
        state = await agent.ainvoke(_ask(city))
        return city, state["messages"][-1].content, vt.last_run_id()

    results = await asyncio.gather(*[one(c) for c in ("Oslo", "Rome", "Kyiv")])
    by_id = {r.run_id: r for r in _rows("async_agent")}
    assert len(by_id) == 6
    for city, answer, run_id in results:
        assert answer == f"<Weather: sunny in {city}>"
        assert by_id[run_id].output == answer  # each task's own final call
    assert vt.last_run_id() not in {run_id for _, _, run_id in results}  # the tasks' ids stay theirs
    city, answer, run_id = results[0]
    assert vt.feedback(run_id, fixed_output="ok").bad_output == answer


def test_wrapper_chat_model_inside_create_agent_binds_tools(vt_env, tmp_path, model):
    _hooks(tmp_path, WRAP_HOOKS)
    agent = create_agent(vt.middleware(model, function_name="wrapped_agent"), [get_weather])
    state = agent.invoke(_ask("Cairo"))
    assert state["messages"][-1].content == "<Weather: sunny in Cairo>"
    first, second = _rows("wrapped_agent")
    assert first.params["tool_calls"][0]["function"]["name"] == "get_weather" and first.params["output_is_tool_calls"]
    assert json.loads(first.output) == first.params["tool_calls"]
    assert second.output == "<Weather: sunny in Cairo>" and vt.last_run_id() == second.run_id


async def test_structured_output_through_the_wrapper_is_never_hooked(vt_env, tmp_path, scripted, model):
    _, app = scripted
    _hooks(tmp_path, WRAP_HOOKS)
    wrapped = vt.middleware(model, function_name="structured")
    assert wrapped.with_structured_output(Weather).invoke("weather in Oslo?") == Weather(city="Oslo", sunny=False)
    assert app.requests[-1]["response_format"]["type"] == "json_schema"
    by_tool = wrapped.with_structured_output(Weather, method="function_calling")
    assert await by_tool.ainvoke("weather in Rome?") == Weather(city="Rome", sunny=True)
    json_row, tool_row = _rows("structured")
    assert json.loads(json_row.output) == {"city": "Oslo", "sunny": False} and json_row.raw_output is None
    assert tool_row.params["tool_calls"][0]["function"]["name"] == "Weather"
    assert json_row.inputs["messages"][-1]["content"] == "weather in Oslo?"
    assert json_row.params["prompt_after_hook"] == "weather in Oslo? please"


async def test_wrapper_stream_astream_batch_and_last_run_id_after_chains(vt_env, tmp_path, model):
    _hooks(tmp_path, APPEND_HOOKS)
    wrapped = vt.middleware(model, function_name="wrapped_stream")
    chunks = [c.content for c in wrapped.stream("say something")]
    assert "".join(chunks) == "plain answerRating: 5/5" and "Rating: 5/5" in chunks  # the hook's addition, last
    received = "".join([c.content async for c in wrapped.astream("again")])
    assert received == "plain answerRating: 5/5"
    assert [m.content for m in wrapped.batch(["a", "b"])] == ["plain answerRating: 5/5"] * 2
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | wrapped | StrOutputParser()
    assert chain.invoke({"q": "sync chain"}) == "plain answerRating: 5/5"
    sync_id = vt.last_run_id()
    assert await chain.ainvoke({"q": "async chain"}) == "plain answerRating: 5/5"
    async_id = vt.last_run_id()
    rows = {r.run_id: r for r in _rows("wrapped_stream")}
    assert len(rows) == 6
    assert rows[sync_id].inputs["messages"][-1]["content"] == "sync chain"
    assert rows[async_id].inputs["messages"][-1]["content"] == "async chain"
    streamed = [r for r in rows.values() if r.params.get("stream")]
    assert sorted(r.output for r in streamed) == ["plain answerRating: 5/5"] * 2  # what the user received


def test_callback_handler_records_tools_and_the_agent_run_with_tags_and_metadata(vt_env, model):
    handler = vt.CallbackHandler(function_name="cb_agent")
    agent = create_agent(model, [get_weather])
    agent.invoke(_ask("Lagos"), config={"callbacks": [handler], "tags": ["beta"], "metadata": {"user": "u1"}})
    first, second = _rows("cb_agent")
    (tool_row,) = _rows("langchain.tool:get_weather")
    (agent_row,) = [r for r in _rows("langchain.chain:LangGraph")]
    assert handler._log.pending() == 0
    assert first.parent_run_id == second.parent_run_id == tool_row.parent_run_id == agent_row.run_id
    assert agent_row.output == "Weather: sunny in Lagos" and agent_row.kind == "langchain.chain"
    assert tool_row.output == "sunny in Lagos" and tool_row.inputs == {"args": {"city": "Lagos"}}
    for row in (first, second, tool_row, agent_row):
        assert "beta" in row.params["tags"] and row.params["metadata"]["user"] == "u1"
    assert first.params["tool_calls"][0]["function"]["name"] == "get_weather"
    assert vt.last_run_id() == second.run_id  # the LangChain run id of the final model call


def test_streamed_tool_call_is_never_hooked_and_recorded_structured(vt_env, tmp_path, model):
    _hooks(tmp_path, WRAP_HOOKS)  # holds streamed text to the end, then wraps it
    bound = vt.middleware(model, function_name="streamed_tools").bind_tools([get_weather])
    chunks = list(bound.stream("weather in Accra?"))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.tool_calls[0]["args"] == {"city": "Accra"}
    assert "<" not in total.content  # the output hook never ran on a tool-call message
    (row,) = _rows("streamed_tools")
    assert row.params["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Accra"}'}
    assert row.params["stream"] and row.params["output_is_tool_calls"]


def test_agent_records_carry_the_langchain_run_id_of_each_model_call(vt_env, tmp_path, model):
    _hooks(tmp_path, WRAP_HOOKS)
    runs = ModelRuns()
    agent = create_agent(model, [get_weather], middleware=[vt.AgentMiddleware(function_name="run_ids")])
    state = agent.invoke(_ask("Hanoi"), config={"callbacks": [runs]})
    assert len(runs.ids) == 2
    first, second = _rows("run_ids")
    assert [first.run_id, second.run_id] == runs.ids  # ChatOpenAI's answers carry LangChain's run id
    assert first.params["tool_calls"] and second.output == state["messages"][-1].content
    assert first.parent_run_id == second.parent_run_id  # still the agent run
    assert vt.last_run_id() == runs.ids[-1]  # the final call, known when invoke returns
    pair = vt.feedback(vt.last_run_id(), fixed_output="Hanoi: sunny.")
    assert pair.run_id == second.run_id and pair.bad_output == "<Weather: sunny in Hanoi>"
    assert [p.run_id for p in vt.get_store().feedback_for_call(second.run_id)] == [second.run_id]

    streamed = list(agent.stream(_ask("Lima"), stream_mode="messages", config={"callbacks": [runs]}))
    assert {m.id for m, _ in streamed if isinstance(m, AIMessageChunk)} == {f"lc_run--{i}" for i in runs.ids[2:]}
    rows = _rows("run_ids")
    assert [r.run_id for r in rows] == runs.ids and len(runs.ids) == 4  # also for streamed model calls
    assert vt.last_run_id() == runs.ids[-1]


async def test_async_agent_records_carry_the_langchain_run_ids(vt_env, model):
    runs = ModelRuns()
    agent = create_agent(model, [get_weather], middleware=[vt.AgentMiddleware(function_name="async_run_ids")])
    await agent.ainvoke(_ask("Seoul"), config={"callbacks": [runs]})
    assert [r.run_id for r in _rows("async_run_ids")] == runs.ids and len(runs.ids) == 2


def test_cached_answers_keep_their_own_calls_run_ids_and_replace_no_record(vt_env, scripted, model):
    _, app = scripted
    cached = model.model_copy(update={"cache": InMemoryCache()})
    agent = create_agent(cached, [get_weather], middleware=[vt.AgentMiddleware(function_name="cached_agent")])
    runs = ModelRuns()
    first = agent.invoke(_ask("Tunis"), config={"callbacks": [runs]})
    second = agent.invoke(_ask("Tunis"), config={"callbacks": [runs]})
    # the second run's first call came from LangChain's cache (its answer keeps the first call's id)
    assert len(app.requests) == 3 and len(runs.ids) == 4
    assert second["messages"][1].id == first["messages"][1].id
    rows = _rows("cached_agent")
    assert len({r.run_id for r in rows}) == 4  # no record replaced another
    assert [r.run_id for r in rows] == runs.ids  # the cache hit's record: the run of that (cached) call
    assert rows[2].params["tool_calls"]
    assert vt.last_run_id() == rows[-1].run_id == runs.ids[-1]


def _weather_answer(messages):
    if messages[-1].get("role") == "tool" or messages[-1].get("type") == "function_call_output":
        return "It is sunny."
    return tool_call("get_weather", city="Oslo")


def test_responses_api_agent_records_carry_the_langchain_run_ids(vt_env, tmp_path):
    """The provider names its own answers here (``msg_...``): the run ids still match."""
    from vt_middleware.server.runner import LocalServer

    with LocalServer(ScriptedBackend(_weather_answer), data_dir=tmp_path / "server") as server:
        responses_model = ChatOpenAI(
            base_url=server.base_url, api_key="sk-local", model="scripted", max_retries=0, use_responses_api=True
        )
        agent = create_agent(responses_model, [get_weather], middleware=[vt.AgentMiddleware(function_name="resp_ids")])
        runs = ModelRuns()
        state = agent.invoke(_ask("Oslo"), config={"callbacks": [runs]})
    assert not state["messages"][-1].id.startswith("lc_run")  # the provider's own id
    rows = _rows("resp_ids")
    assert [r.run_id for r in rows] == runs.ids and len(runs.ids) == 2
    assert rows[0].params["tool_calls"] and rows[1].output == "It is sunny."
    assert vt.last_run_id() == runs.ids[-1]


def test_without_tool_capture_the_middleware_defines_no_tool_hook(vt_env, model):
    middleware = vt.AgentMiddleware(function_name="no_tools", capture_tools=False)
    assert isinstance(middleware, vt.AgentMiddleware)
    assert type(middleware).wrap_tool_call is LCAgentMiddleware.wrap_tool_call  # LangChain wraps no tool call
    assert type(middleware).awrap_tool_call is LCAgentMiddleware.awrap_tool_call
    assert type(vt.AgentMiddleware()).wrap_tool_call is not LCAgentMiddleware.wrap_tool_call
    state = create_agent(model, [get_weather], middleware=[middleware]).invoke(_ask("Lyon"))
    assert state["messages"][-1].content == "Weather: sunny in Lyon"
    assert len(_rows("no_tools")) == 2 and _rows("langchain.tool:get_weather") == []


def test_wrapper_records_carry_the_langchain_run_id_and_a_callback_handler_keeps_its_own(vt_env, model):
    runs = ModelRuns()
    wrapped = vt.middleware(model, function_name="wrapped_ids")
    wrapped.invoke("hello", config={"callbacks": [runs]})
    (row,) = _rows("wrapped_ids")
    assert [row.run_id] == runs.ids and vt.last_run_id() == row.run_id
    handler = vt.CallbackHandler(function_name="handler_ids")
    wrapped.invoke("again", config={"callbacks": [runs, handler]})
    (handled,) = _rows("handler_ids")
    assert handled.run_id == runs.ids[-1]  # the handler records by LangChain's run id
    assert len(_rows("wrapped_ids")) == 2  # and the wrapper's record, under an id of its own, stays


def test_agent_middleware_and_a_callback_handler_on_one_run_keep_a_record_each(vt_env, model):
    runs = ModelRuns()
    handler = vt.CallbackHandler(function_name="handler_agent")
    agent = create_agent(model, [get_weather], middleware=[vt.AgentMiddleware(function_name="mw_agent")])
    agent.invoke(_ask("Quito"), config={"callbacks": [runs, handler]})
    ours = _rows("mw_agent")
    assert [r.run_id for r in ours] == runs.ids and len(runs.ids) == 2  # the middleware: LangChain's ids
    handled = [r for r in _rows("handler_agent") if r.kind == "langchain"]
    assert len(handled) == 2 and not {r.run_id for r in handled} & set(runs.ids)  # ids of their own
    assert vt.flush(30) and len({r.run_id for r in ours + handled}) == 4  # no record replaced another


def test_run_id_taken_only_from_an_id_langchain_made_for_a_fresh_uncached_answer():
    import uuid

    from langchain_core.messages import AIMessage

    from vt_middleware.capture.langchain_common import langchain_run_id

    fresh, cached = str(uuid.uuid4()), str(uuid.uuid4())
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    assert langchain_run_id(AIMessage("a", id=f"lc_run--{fresh}-0", usage_metadata=usage)) == fresh
    assert langchain_run_id(AIMessage("a", id=f"lc_run--{fresh}-0")) is None  # the same answer again
    hit = AIMessage("a", id=f"lc_run--{cached}", usage_metadata={**usage, "total_cost": 0})
    assert langchain_run_id(hit) is None  # LangChain's cache hit (e.g. a persistent cache of another process)
    assert langchain_run_id(AIMessage("a", id=f"lc_run--{cached}")) == cached  # a streamed answer's id
    for provider_id in ("msg_0123", "chatcmpl-9", f"lc_run--{uuid.uuid4()}x", "lc_run--short", None):
        assert langchain_run_id(AIMessage("a", id=provider_id)) is None


def test_agent_streaming_tokens_through_the_wrapper_model_are_hooked(vt_env, tmp_path, model):
    _hooks(tmp_path, WRAP_HOOKS)  # holds the streamed text to the end, then wraps it
    agent = create_agent(vt.middleware(model, function_name="streamed_agent"), [get_weather])
    streamed = list(agent.stream(_ask("Oslo"), stream_mode="messages"))
    text = "".join(m.content for m, _ in streamed if isinstance(m, AIMessageChunk) and isinstance(m.content, str))
    assert text == "<Weather: sunny in Oslo>"  # what the caller received
    assert _rows("streamed_agent")[-1].output == text
