"""Concurrency: one LangChain CallbackHandler shared by many threads and an event loop at
once keeps every run apart; hot swap + rollback under sync and async load never stores a
call whose model and hook version come from different pairs.

(The response-side hot-swap check is tests/test_evolve_swap.py::
test_hot_swap_under_load_no_failed_or_mixed_calls; this one checks the stored rows.)"""

from __future__ import annotations

import asyncio
import threading
from typing import Dict, List, Tuple

import httpx
import openai
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

import vt_middleware as vt
from swap_load import swap_storm, tagged_fine_tunes
from vt_middleware.train.local_models import TINY_ID


def _rows(name: str) -> List[vt.CallRecord]:
    assert vt.flush(60)
    return [vt.CallRecord.from_properties(c.properties) for page in vt.get_store().iter_calls(name) for c in page]


def test_shared_callback_handler_threads_and_asyncio_at_once_keep_runs_apart(vt_env, local_server):
    handler = vt.CallbackHandler(function_name="lc_shared")
    model = ChatOpenAI(
        base_url=local_server.base_url,
        api_key="sk",
        model=TINY_ID,
        max_tokens=3,
        max_retries=0,
        http_async_client=httpx.AsyncClient(),
    )
    broken = ChatOpenAI(base_url=local_server.base_url, api_key="sk", model="no-such-model", max_retries=0)
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | model | StrOutputParser()
    results: Dict[str, str] = {}
    errors: List[str] = []
    lock = threading.Lock()
    config = {"callbacks": [handler]}

    def thread_worker(t: int) -> None:
        for i in range(4):
            prompt = f"thread {t} call {i}"
            if i == 3 and t % 3 == 0:  # some runs fail, in the middle of others
                try:
                    broken.invoke(prompt, config=config)
                except openai.NotFoundError:
                    with lock:
                        errors.append(prompt)
                continue
            if i == 2:
                text = "".join(chunk.content for chunk in model.stream(prompt, config=config))
            elif i == 1:
                text = chain.invoke({"q": prompt}, config=config)
            else:
                text = model.invoke(prompt, config=config).content
            with lock:
                results[prompt] = text

    async def async_load() -> None:
        async def one(i: int) -> None:
            prompt = f"async call {i}"
            if i % 2:
                text = "".join([c.content async for c in model.astream(prompt, config=config)])
            else:
                text = (await model.ainvoke(prompt, config=config)).content
            results[prompt] = text

        await asyncio.gather(*[one(i) for i in range(12)])

    threads = [threading.Thread(target=thread_worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    asyncio.run(async_load())  # the loop runs while the threads do
    for thread in threads:
        thread.join(60)
    rows = _rows("lc_shared")
    assert len(rows) == len(results) + len(errors) == 8 * 4 + 12
    assert len({r.run_id for r in rows}) == len(rows)
    assert handler._log.pending() == 0  # no run left open in the handler
    by_prompt = {}
    for row in rows:
        prompt = row.inputs["messages"][-1]["content"]
        assert prompt not in by_prompt, f"two rows for {prompt!r}"
        by_prompt[prompt] = row
    for prompt, text in results.items():
        assert by_prompt[prompt].status == "SUCCESS" and by_prompt[prompt].output == text, prompt
    for prompt in errors:
        assert by_prompt[prompt].status == "ERROR" and by_prompt[prompt].error_type.endswith("NotFoundError")


def test_hot_swap_and_rollback_under_sync_and_async_load_never_store_a_mixed_pair(vt_env, local_server):
    va, vb = tagged_fine_tunes(local_server, vt_env.hooks_dir)
    expected = {"app-model": (None, None), "vt-ft-a": (va, "vt-ft-a"), "vt-ft-b": (vb, "vt-ft-b")}
    sync_client = vt.wrap(openai.OpenAI(base_url=local_server.base_url, api_key="sk", max_retries=0), "swap_rows")
    stop = threading.Event()
    failures: List[str] = []
    answers: List[Tuple[str, str]] = []

    def caller() -> None:
        while not stop.is_set():
            try:
                r = sync_client.chat.completions.create(
                    model="app-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
                )
                answers.append((r.model, r.choices[0].message.content))
            except Exception as exc:
                failures.append(repr(exc))

    async def async_callers() -> None:
        client = vt.wrap(openai.AsyncOpenAI(base_url=local_server.base_url, api_key="sk", max_retries=0), "swap_rows")

        async def loop() -> None:
            while not stop.is_set():
                try:
                    r = await client.chat.completions.create(
                        model="app-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
                    )
                    answers.append((r.model, r.choices[0].message.content))
                except Exception as exc:
                    failures.append(repr(exc))

        await asyncio.gather(*[loop() for _ in range(4)])
        await client.close()

    threads = [threading.Thread(target=caller) for _ in range(4)]
    threads.append(threading.Thread(target=lambda: asyncio.run(async_callers())))
    swap_storm(threads, stop, va, vb, flips=60)
    assert failures == []
    rows = _rows("swap_rows")
    assert len(rows) == len(answers) and len({r.run_id for r in rows}) == len(rows)
    seen = set()
    for row in rows:
        version, tag = expected[row.model_used]
        seen.add(row.model_used)
        assert row.hook_version == version, (row.model_used, row.hook_version)
        assert (row.output or "").endswith(f" [hook:{tag}]") if tag else "[hook:" not in (row.output or "")
    assert {"vt-ft-a", "vt-ft-b"} <= seen


def test_one_agent_middleware_shared_by_threads_and_tasks_gives_each_run_its_own_last_run_id(vt_env, tmp_path):
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    from scripted_tools_server import ToolCalls, start_scripted_tools_server

    def script(body):
        if body["messages"][-1]["role"] == "tool":
            return "answer: " + body["messages"][-1]["content"]
        return ToolCalls([("echo", {"text": body["messages"][-1]["content"]})])

    @tool
    def echo(text: str) -> str:
        """Echo the text."""
        return text

    server, _ = start_scripted_tools_server(script, tmp_path / "server")
    try:
        model = ChatOpenAI(
            base_url=server.base_url,
            api_key="sk",
            model="scripted",
            max_retries=0,
            http_async_client=httpx.AsyncClient(),
        )
        agent = create_agent(model, [echo], middleware=[vt.AgentMiddleware(function_name="shared_agent")])
        seen: List[Tuple[str, str, str]] = []
        lock = threading.Lock()

        def thread_worker(t: int) -> None:
            for i in range(3):
                prompt = f"thread {t} run {i}"
                if i == 1:  # a streamed run in between: later runs in this thread still see their ids
                    chunks = list(agent.stream({"messages": [("user", prompt)]}, stream_mode="values"))
                    answer = chunks[-1]["messages"][-1].content
                else:
                    answer = agent.invoke({"messages": [("user", prompt)]})["messages"][-1].content
                with lock:
                    seen.append((prompt, answer, vt.last_run_id()))

        async def tasks() -> None:
            async def one(i: int) -> None:
                prompt = f"task {i}"
                state = await agent.ainvoke({"messages": [("user", prompt)]})
                seen.append((prompt, state["messages"][-1].content, vt.last_run_id()))

            await asyncio.gather(*[one(i) for i in range(6)])

        threads = [threading.Thread(target=thread_worker, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        asyncio.run(tasks())
        for thread in threads:
            thread.join(60)
    finally:
        server.stop()
    rows = {r.run_id: r for r in _rows("shared_agent")}
    assert len(seen) == 4 * 3 + 6 and len(rows) == 2 * len(seen)
    for prompt, answer, run_id in seen:
        assert answer == "answer: " + prompt
        assert rows[run_id].output == answer, prompt  # each run's own final call
        assert rows[run_id].inputs["messages"][0]["content"] == prompt
