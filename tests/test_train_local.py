"""LocalTrainer: LoRA on the tiny random model, assistant-only loss, adapters that load."""

from __future__ import annotations

import json

import pytest

from vt_middleware.dashboards import PipelineMonitor
from vt_middleware.errors import ConfigError, DataError, TrainingError
from vt_middleware.train.local_models import TINY_ID, generate, load_local_model, load_tokenizer, read_adapter_manifest
from vt_middleware.train.local_trainer import IGNORE_INDEX, LocalTrainer, encode_chat_example

PROMPT = [
    {"role": "system", "content": "Summarise the review."},
    {"role": "user", "content": "Review: fine, arrived late."},
]


def _write(path, examples) -> str:
    path.write_text("\n".join(json.dumps(e) for e in examples) + "\n")
    return str(path)


def _golden(n: int = 8) -> list:
    return [
        {
            "messages": [
                {"role": "system", "content": "Summarise the review."},
                {"role": "user", "content": f"Review {i}: the item was fine."},
                {"role": "assistant", "content": "SUMMARY: neutral. SUMMARY: neutral."},
            ]
        }
        for i in range(n)
    ]


class RecordingMonitor(PipelineMonitor):
    def __init__(self) -> None:
        self.progress: list = []

    def on_stage_progress(self, stage, completed, total=None, message="", metrics=None):
        self.progress.append((stage, completed, total, dict(metrics or {})))


def test_only_assistant_tokens_carry_loss():
    tokenizer = load_tokenizer()
    messages = [
        *PROMPT,
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "skip me", "weight": 0},
        {"role": "user", "content": "last"},
        {"role": "assistant", "content": "second answer"},
    ]
    encoded = encode_chat_example(tokenizer, messages)
    assert len(encoded.input_ids) == len(encoded.labels)
    labelled = [(i, t) for i, t in enumerate(encoded.labels) if t != IGNORE_INDEX]
    assert all(encoded.input_ids[i] == t for i, t in labelled)
    text = tokenizer.decode([t for _, t in labelled])
    assert text == "first answer<|im_end|>\nsecond answer<|im_end|>\n"
    prompt_ids = tokenizer.apply_chat_template(PROMPT, tokenize=True, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]
    assert encoded.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert len(encode_chat_example(tokenizer, messages, max_length=20).input_ids) == 20


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
TOOL_CHAT = [
    {"role": "user", "content": "weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "grey"}'},
    {"role": "assistant", "content": "It is grey in Paris."},
]


def test_tool_call_turns_teach_the_calls_and_tools_are_offered_in_the_prompt():
    tokenizer = load_tokenizer()
    encoded = encode_chat_example(tokenizer, TOOL_CHAT, max_length=2048, tools=TOOLS)
    learned = tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX])
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
    assert learned == call + "It is grey in Paris.<|im_end|>\n"  # the call is learned, the tool's result is not
    whole = tokenizer.decode(encoded.input_ids)
    assert '"name": "get_weather"' in whole.split("<|im_end|>")[0]  # offered in the system turn
    assert '<tool_response>\n{"sky": "grey"}\n</tool_response>' in whole


def test_tool_calls_written_as_text_read_back_as_tool_calls():
    from vt_middleware.chatml import messages_as_text, parse_tool_calls

    turn = messages_as_text(TOOL_CHAT[1:2])[0]
    text, calls = parse_tool_calls(turn["content"])
    assert (text, calls) == ("", [{"name": "get_weather", "arguments": '{"city": "Paris"}'}])
    mixed = 'Checking.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>{"oops"}</tool_call>'
    assert parse_tool_calls(mixed) == (
        'Checking.\n\n<tool_call>{"oops"}</tool_call>',
        [{"name": "a", "arguments": "{}"}],
    )
    assert parse_tool_calls("no calls here") == ("no calls here", [])


def test_lora_training_lowers_loss_and_adapter_serves(tmp_path):
    monitor = RecordingMonitor()
    trainer = LocalTrainer(tmp_path / "out", base_model=TINY_ID, lr=5e-3, epochs=4, batch_size=4, monitor=monitor)
    file_id = trainer.prepare_data(_write(tmp_path / "golden.jsonl", _golden()))
    job_id = trainer.start_training(file_id, model="gpt-4o-mini-2024-07-18", suffix="reviews")
    result = trainer.wait(job_id, poll_interval=0.1, timeout=300)

    assert result["status"] == "succeeded" and result["base_model"] == TINY_ID
    assert result["model"] == "gpt-4o-mini-2024-07-18"
    assert result["fine_tuned_model"].startswith(f"ft:{TINY_ID}:vt:reviews:")
    curve = result["metrics"]["train_loss_curve"]
    assert len(curve) == 8  # 2 steps/epoch x 4 epochs
    assert curve[-1] < curve[0] - 0.2
    assert result["trained_tokens"] > 0
    train_steps = [p for p in monitor.progress if p[0] == "train"]
    assert [p[1] for p in train_steps] == list(range(1, 9)) and all("train_loss" in p[3] for p in train_steps)

    manifest = read_adapter_manifest(result["adapter_dir"])
    assert manifest["model_id"] == result["fine_tuned_model"] and manifest["base_model"] == TINY_ID
    tuned, tokenizer = load_local_model(result["adapter_dir"])
    base, _ = load_local_model(TINY_ID)
    before = generate(base, tokenizer, PROMPT, max_tokens=8).text
    after = generate(tuned, tokenizer, PROMPT, max_tokens=8).text
    assert after != before
    target = set(tokenizer("SUMMARY: neutral. SUMMARY: neutral.<|im_end|>")["input_ids"])

    def share_of_target_tokens(text: str) -> float:
        ids = tokenizer(text)["input_ids"]
        return sum(i in target for i in ids) / max(1, len(ids))

    assert share_of_target_tokens(after) >= 0.5 > share_of_target_tokens(before)


def test_cancel_stops_a_running_job(tmp_path):
    trainer = LocalTrainer(tmp_path / "out", base_model=TINY_ID, epochs=200, batch_size=1)
    job_id = trainer.start_training(trainer.prepare_data(_write(tmp_path / "g.jsonl", _golden(4))))
    seen_step = []
    with pytest.raises(TrainingError, match="was cancelled"):
        trainer.wait(
            job_id,
            poll_interval=0.05,
            timeout=120,
            on_progress=lambda status, events: (
                seen_step.extend(e for e in events if e["type"] == "metrics"),
                seen_step and trainer.cancel(job_id),
            ),
        )
    trainer.join(job_id, timeout=60)
    status = trainer.get_status(job_id)
    assert status["status"] == "cancelled" and status["fine_tuned_model"] is None
    steps = [e for e in trainer.list_events(job_id) if e["type"] == "metrics"]
    assert 0 < len(steps) < 800
    assert not (tmp_path / "out" / "models").exists()


def test_job_without_trainable_tokens_fails_clearly(tmp_path):
    examples = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 0}]}]
    trainer = LocalTrainer(tmp_path / "out", base_model=TINY_ID)
    job_id = trainer.start_training(trainer.prepare_data(_write(tmp_path / "w0.jsonl", examples)))
    with pytest.raises(TrainingError, match="no assistant tokens to learn from"):
        trainer.wait(job_id, poll_interval=0.05, timeout=120)
    assert trainer.get_status(job_id)["error"]["code"] == "invalid_training_file"


def test_bad_inputs(tmp_path):
    trainer = LocalTrainer(tmp_path / "out", base_model=TINY_ID)
    with pytest.raises(DataError, match="line 1: no assistant message"):
        trainer.prepare_data(_write(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "q"}]}]))
    with pytest.raises(DataError, match="unknown training file 'file-nope'"):
        trainer.start_training("file-nope")
    file_id = trainer.prepare_data(_write(tmp_path / "g.jsonl", _golden(1)))
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        trainer.start_training(file_id, hyperparameters={"warmup": 3})
    with pytest.raises(ConfigError, match="unknown local base model"):
        LocalTrainer(tmp_path, base_model="llama-70b")
