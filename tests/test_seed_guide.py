"""The seed's usage guide, run as written (``vector_trainer`` -> ``vt_middleware``).

Its python blocks are taken from ``tests/data/vectortrainer-usage-guide.ko.md`` (a copy of
the seed's guide) and executed in order in one namespace, in a temporary working directory,
against the real store (LanceDB through VectorWave) and the local OpenAI-compatible server
(``OPENAI_BASE_URL``), with the guide's own default model name ``gpt-4o-mini-2024-07-18``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, List

import pytest

GUIDE = Path(__file__).with_name("data") / "vectortrainer-usage-guide.ko.md"
FUNCTION = "generate_review_summary"


def guide_blocks() -> List[str]:
    """The guide's python blocks, package renamed."""
    text = GUIDE.read_text(encoding="utf-8")
    return [b.replace("vector_trainer", "vt_middleware") for b in re.findall(r"```python\n(.*?)```", text, re.S)]


def seed_review_calls(n: int = 16) -> None:
    """Captured calls of the guide's function: similar review prompts with good answers."""
    from store_data import write_records
    from vt_middleware.types import CallRecord

    products = ["노트북", "키보드", "마우스", "모니터"]
    records = [
        CallRecord(
            FUNCTION,
            {"messages": [{"role": "user", "content": f"이 제품의 리뷰를 요약해주세요: {products[i % 4]} 리뷰 {i}"}]},
            f"이 {products[i % 4]}는 품질이 우수하고 배송이 빠릅니다. 평점: {4 + i % 2}/5",
            kind="openai",
        )
        for i in range(n)
    ]
    write_records(records)


@pytest.fixture
def guide_env(vt_env, local_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", local_server.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the guide passes api_key="sk-..."
    import vt_middleware as vt
    from vt_middleware.store.executions import vectorwave_env

    for name in vectorwave_env():
        monkeypatch.delenv(name, raising=False)  # restored after the test
    vt.share_store_with_vectorwave()  # the guide's VectorWaveDatasetManager() opens our store
    seed_review_calls()
    yield tmp_path
    sys.modules.pop("generated_prompt_hook", None)


def test_guide_has_the_five_example_blocks():
    blocks = guide_blocks()
    assert len(blocks) == 5
    assert "TrainingPipeline(" in blocks[0] and "select_steady_state" in blocks[1]
    assert "run_synthesis_pipeline(" in blocks[2] and "generated_prompt_hook" in blocks[3]
    assert 'start_training(file_id, model="gpt-4o-mini-2024-07-18")' in blocks[4]


@pytest.mark.slow
def test_guide_examples_run_as_written_against_the_local_server(guide_env, capsys):
    blocks = guide_blocks()
    namespace: Dict[str, object] = {"__name__": "seed_guide"}
    exec(compile(blocks[0], "guide:full-pipeline", "exec"), namespace)
    result = namespace["result"]
    assert {"train", "golden_data_path", "hook_script_path"} <= set(result)
    assert result["status"] == "succeeded" and result["train"]["status"] == "succeeded"
    assert str(result["train"]["fine_tuned_model"]).startswith("ft:")
    assert Path(result["golden_data_path"]).is_file() and result["golden_examples"] > 0
    assert result["gate"] is not None  # evaluated the base id and the fine-tuned model over HTTP
    printed = capsys.readouterr().out
    assert f"파인튜닝 모델: {result['train']['fine_tuned_model']}" in printed
    assert namespace["dashboard"].summary()["stage_results"]["train"]["status"] == "succeeded"

    exec(compile(blocks[1], "guide:extractor", "exec"), namespace)
    assert namespace["steady"] and Path("golden_data.jsonl").is_file()

    exec(compile(blocks[2], "guide:synthesizer", "exec"), namespace)
    assert Path(namespace["hook_path"]).name == "generated_prompt_hook.py"
    assert "편집거리=" in capsys.readouterr().out

    sys.path.insert(0, str(Path("hooks").resolve()))
    try:
        namespace.update(user_input="이 제품의 리뷰를 요약해주세요", model_output="좋은 제품입니다")
        exec(compile(blocks[3], "guide:hook-usage", "exec"), namespace)
    finally:
        sys.path.remove(str(Path("hooks").resolve()))
    assert isinstance(namespace["modified_prompt"], str) and isinstance(namespace["corrected_output"], str)

    exec(compile(blocks[4], "guide:trainer", "exec"), namespace)
    trainer, job_id = namespace["trainer"], namespace["job_id"]
    assert namespace["status"]["status"] in ("validating_files", "queued", "running", "succeeded")
    final = trainer.wait(job_id, poll_interval=0.5, timeout=300)
    assert final["status"] == "succeeded" and final["fine_tuned_model"].startswith("ft:")


def test_fine_tunable_base_ids_are_served_for_chat_and_listed(openai_client):
    from vt_middleware.server.aliases import OPENAI_BASE_MODELS

    listed = {m.id for m in openai_client.models.list().data}
    assert "gpt-4o-mini-2024-07-18" in OPENAI_BASE_MODELS and set(OPENAI_BASE_MODELS) <= listed
    reply = openai_client.chat.completions.create(
        model="gpt-4o-mini-2024-07-18", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.model == "gpt-4o-mini-2024-07-18" and reply.choices[0].message.content is not None
    response = openai_client.responses.create(model="gpt-4o-mini-2024-07-18", input="hi", max_output_tokens=16)
    assert response.model == "gpt-4o-mini-2024-07-18" and isinstance(response.output_text, str)
    with pytest.raises(Exception, match="does not exist"):
        openai_client.chat.completions.create(
            model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
