"""LangChain: CallbackHandler and vt.middleware with a real ChatOpenAI on the local server."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

import vt_middleware as vt
from vt_middleware.runtime.hooks import LoadedHooks
from vt_middleware.train.local_models import TINY_ID


@pytest.fixture
def chat_model(local_server):
    return ChatOpenAI(
        base_url=local_server.base_url,
        api_key="sk-local",
        model="gpt-4o-mini",
        max_tokens=5,
        max_retries=0,
        temperature=0,
    )


@pytest.fixture
def hooked(vt_env, tmp_path):
    path = tmp_path / "hooks.py"
    path.write_text(
        "def intercept_prompt(t, c):\n    return t + ' please'\n\n"
        "def intercept_output(t, c):\n    return '<' + t + '>'\n"
    )
    vt.get_runtime().activate(hooks=LoadedHooks.from_file(path, "lc1"), routes={"gpt-4o-mini": TINY_ID})


def _rows(name):
    assert vt.flush(30)
    return [vt.CallRecord.from_properties(c.properties) for page in vt.get_store().iter_calls(name) for c in page]


def test_middleware_in_a_chain_hooks_routes_and_logs(hooked, chat_model):
    prompt = ChatPromptTemplate.from_messages([("system", "Summarise."), ("human", "{review}")])
    chain = prompt | vt.middleware(chat_model, function_name="lc_chain") | StrOutputParser()
    answer = chain.invoke({"review": "great food"})
    assert answer.startswith("<") and answer.endswith(">")
    (row,) = _rows("lc_chain")
    assert row.output == answer and row.raw_output == answer[1:-1]
    assert row.inputs["messages"][-1] == {"role": "user", "content": "great food"}
    assert row.params["prompt_after_hook"] == "great food please"
    assert row.model_requested == "gpt-4o-mini" and row.model_used == TINY_ID
    assert row.hook_version == "lc1" and row.prompt_tokens and row.kind == "langchain"
    assert vt.last_run_id() == row.run_id  # the chain ran its steps in copied contexts


async def test_middleware_stream_stores_what_the_user_received(hooked, local_server):
    chat_model = ChatOpenAI(
        base_url=local_server.base_url,
        api_key="sk-local",
        model="gpt-4o-mini",
        max_tokens=5,
        max_retries=0,
        http_async_client=httpx.AsyncClient(),
    )
    mw = vt.middleware(chat_model, function_name="lc_stream")
    text = "".join(c.content for c in mw.stream("hello"))
    answer = await mw.ainvoke("hi async")
    rows = sorted(_rows("lc_stream"), key=lambda r: r.params.get("stream", False))
    assert len(rows) == 2
    assert rows[0].output == answer.content and answer.content.startswith("<")
    # a hook without a stream processor holds the text and sends it hooked; stored = received
    assert text.startswith("<") and text.endswith(">")
    assert rows[1].output == text and rows[1].raw_output == text[1:-1]


def test_middleware_error_reraised_and_recorded(vt_env, local_server):
    bad = ChatOpenAI(base_url=local_server.base_url, api_key="sk", model="missing-model", max_retries=0)
    import openai

    with pytest.raises(openai.NotFoundError) as raised:
        vt.middleware(bad, function_name="lc_err").invoke("x")
    (row,) = _rows("lc_err")
    assert row.status == "ERROR" and row.error_type == type(raised.value).__name__


def test_callback_handler_concurrent_and_nested_runs_apart(vt_env, local_server):
    model = ChatOpenAI(base_url=local_server.base_url, api_key="sk", model=TINY_ID, max_tokens=3, max_retries=0)
    handler = vt.CallbackHandler(function_name="lc_cb")
    prompts = [f"question {i}" for i in range(6)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: model.invoke(p, config={"callbacks": [handler]}), prompts))
    list(model.stream("streamed", config={"callbacks": [handler]}))
    rows = _rows("lc_cb")
    assert len(rows) == 7 and handler._log.pending() == 0
    by_prompt = {r.inputs["messages"][0]["content"]: r for r in rows}
    for prompt, result in zip(prompts, results):
        assert by_prompt[prompt].output == result.content  # each run kept apart
    assert by_prompt["streamed"].params.get("streamed_tokens", 0) >= 1


async def test_callback_handler_async_and_error(vt_env, local_server):
    model = ChatOpenAI(
        base_url=local_server.base_url,
        api_key="sk",
        model=TINY_ID,
        max_tokens=3,
        max_retries=0,
        http_async_client=httpx.AsyncClient(),
    )
    handler = vt.CallbackHandler(function_name="lc_async")
    await asyncio.gather(*[model.ainvoke(f"a{i}", config={"callbacks": [handler]}) for i in range(3)])
    bad = ChatOpenAI(base_url=local_server.base_url, api_key="sk", model="nope", max_retries=0)
    with pytest.raises(Exception):
        bad.invoke("x", config={"callbacks": [handler]})
    rows = _rows("lc_async")
    assert sorted(r.status for r in rows) == ["ERROR", "SUCCESS", "SUCCESS", "SUCCESS"]


def test_middleware_rejects_non_runnable(vt_env):
    with pytest.raises(vt.ConfigError, match="Runnable"):
        vt.middleware(object())
