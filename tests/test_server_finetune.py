"""OpenAITrainer end to end against the local OpenAI-compatible server over HTTP:
/v1/files and /v1/fine_tuning/jobs run LoRA on the tiny model, the result is served."""

from __future__ import annotations

import json
import socket

import httpx
import openai
import pytest
from openai import OpenAI

from vt_middleware.errors import BudgetExceededError, ConfigError, DataError, TrainingError
from vt_middleware.train import OpenAITrainer
from vt_middleware.train.local_models import TINY_ID


def _start_server(tmp_path_factory):
    """The project's LocalServer on the tiny model, with a fast learning rate for LoRA."""
    from vt_middleware.server.runner import LocalServer

    server = LocalServer(model=TINY_ID, data_dir=tmp_path_factory.mktemp("server"))
    server.start()
    server.app.state.train_options = {"lr": 5e-3}
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = _start_server(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture
def recorded_client(server):
    """An SDK client on the server whose every HTTP request is recorded."""
    sent: list = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(f"{request.method} {request.url.path}")]})
    client = OpenAI(api_key="sk-local", base_url=server.base_url, http_client=http, max_retries=0)
    yield client, sent
    http.close()


def _write(path, examples) -> str:
    path.write_text("\n".join(e if isinstance(e, str) else json.dumps(e) for e in examples) + "\n")
    return str(path)


def _golden(n: int = 6) -> list:
    return [
        {
            "messages": [
                {"role": "system", "content": "Summarise the review."},
                {"role": "user", "content": f"Review {i}: it was fine."},
                {"role": "assistant", "content": "SUMMARY: neutral."},
            ]
        }
        for i in range(n)
    ]


def test_fine_tune_end_to_end_and_serve(server, recorded_client, tmp_path):
    client, sent = recorded_client
    trainer = OpenAITrainer(client=client, max_budget_usd=1.0)
    progress: list = []
    file_id = trainer.prepare_data(_write(tmp_path / "golden.jsonl", _golden()))
    assert trainer.last_estimate is not None and trainer.last_estimate.usd > 0  # gpt-4o-mini priced
    job_id = trainer.start_training(
        file_id, model="gpt-4o-mini-2024-07-18", hyperparameters={"n_epochs": 3}, suffix="reviews"
    )
    assert trainer.get_status(job_id)["status"] in ("validating_files", "queued", "running", "succeeded")
    result = trainer.wait(
        job_id,
        poll_interval=0.2,
        timeout=300,
        on_progress=lambda status, events: progress.append((status["status"], events)),
    )

    model_id = result["fine_tuned_model"]
    assert result["status"] == "succeeded" and model_id.startswith(f"ft:{TINY_ID}:vt:reviews:")
    assert result["model"] == "gpt-4o-mini-2024-07-18" and result["trained_tokens"] > 0
    curve = result["metrics"]["train_loss_curve"]
    assert len(curve) == 6 and curve[-1] < curve[0]  # 2 steps x 3 epochs, losses from the events
    step_events = [e for _, events in progress for e in events if e["type"] == "metrics"]
    assert [e["data"]["step"] for e in step_events] == list(range(1, 7))
    assert "POST /v1/files" in sent and "POST /v1/fine_tuning/jobs" in sent

    job = client.fine_tuning.jobs.retrieve(job_id)
    assert job.base_model == TINY_ID and job.user_provided_suffix == "reviews"
    assert job_id in [j.id for j in client.fine_tuning.jobs.list()]
    results_csv = client.files.content(job.result_files[0]).text
    assert results_csv.splitlines()[0].startswith("step,train_loss") and len(results_csv.splitlines()) == 7

    assert model_id in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(
        model=model_id, max_tokens=5, messages=[{"role": "user", "content": "Review 9: it was fine."}]
    )
    assert reply.model == model_id and reply.choices[0].message.content


def test_files_endpoints_with_the_sdk(recorded_client, tmp_path):
    client, _ = recorded_client
    path = _write(tmp_path / "g.jsonl", _golden(2))
    data = (tmp_path / "g.jsonl").read_bytes()
    with open(path, "rb") as handle:
        uploaded = client.files.create(file=("g.jsonl", handle), purpose="fine-tune")
    assert uploaded.bytes == len(data) and uploaded.purpose == "fine-tune"
    assert client.files.retrieve(uploaded.id).filename == "g.jsonl"
    assert uploaded.id in [f.id for f in client.files.list(purpose="fine-tune")]
    assert client.files.content(uploaded.id).read() == data
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError, match=uploaded.id):
        client.files.retrieve(uploaded.id)

    corrupt = _write(
        tmp_path / "corrupt.jsonl", [_golden(1)[0], "{oops", {"messages": [{"role": "user", "content": "q"}]}]
    )
    with open(corrupt, "rb") as handle, pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("corrupt.jsonl", handle), purpose="fine-tune")
    assert "line 2: invalid JSON" in str(caught.value) and "line 3: no assistant message" in str(caught.value)


def test_cancel_is_reported(recorded_client, tmp_path):
    client, _ = recorded_client
    trainer = OpenAITrainer(client=client)
    file_id = trainer.prepare_data(_write(tmp_path / "g.jsonl", _golden(4)))
    job_id = trainer.start_training(file_id, model=TINY_ID, hyperparameters={"n_epochs": 25, "batch_size": 1})

    cancelled: list = []

    def cancel_after_first_step(status, events):
        if not cancelled and any(e["type"] == "metrics" for e in events):
            cancelled.append(trainer.cancel(job_id)["status"])

    with pytest.raises(TrainingError, match=f"{job_id} was cancelled"):
        trainer.wait(job_id, poll_interval=0.1, timeout=300, on_progress=cancel_after_first_step)
    assert cancelled == ["cancelled"]
    assert trainer.get_status(job_id)["fine_tuned_model"] is None
    with pytest.raises(TrainingError, match="is already cancelled"):
        trainer.cancel(job_id)


def test_job_failure_is_reported(recorded_client, tmp_path):
    client, _ = recorded_client
    trainer = OpenAITrainer(client=client)
    # valid format, but nothing to learn: every assistant turn has weight 0
    silent = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}]
    job_id = trainer.start_training(trainer.prepare_data(_write(tmp_path / "w0.jsonl", silent)), model=TINY_ID)
    with pytest.raises(TrainingError, match=f"{job_id} failed: .*no assistant tokens to learn from"):
        trainer.wait(job_id, poll_interval=0.1, timeout=120)
    assert trainer.get_status(job_id)["error"]["code"] == "invalid_training_file"
    with pytest.raises(TrainingError, match="not found"):
        trainer.get_status("ftjob-does-not-exist")


def test_guards_fire_before_any_request(recorded_client, tmp_path):
    client, sent = recorded_client
    golden = _write(tmp_path / "g.jsonl", _golden(200))
    with pytest.raises(BudgetExceededError, match=r"exceeds the budget of \$0\.01"):
        OpenAITrainer(client=client, max_budget_usd=0.01, model="gpt-4o-2024-08-06").prepare_data(golden)
    with pytest.raises(ConfigError, match="'my-model' is not in the fine-tuning price table"):
        OpenAITrainer(client=client, max_budget_usd=5.0, model="my-model").prepare_data(golden)
    with pytest.raises(DataError, match="line 1: no assistant message"):
        OpenAITrainer(client=client).prepare_data(
            _write(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
        )
    assert sent == []


def test_budget_checked_again_for_the_job(recorded_client, tmp_path):
    client, sent = recorded_client
    trainer = OpenAITrainer(client=client, max_budget_usd=0.05)
    file_id = trainer.prepare_data(_write(tmp_path / "g.jsonl", _golden(100)))  # gpt-4o-mini: under budget
    sent.clear()
    with pytest.raises(BudgetExceededError, match="gpt-4o-2024-08-06"):
        trainer.start_training(file_id, model="gpt-4o-2024-08-06")
    assert sent == []


def test_missing_key_and_unreachable_server(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAITrainer()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    trainer = OpenAITrainer(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5)
    with pytest.raises(TrainingError, match=f"127.0.0.1:{port}.* is unreachable"):
        trainer.get_status("ftjob-x")
