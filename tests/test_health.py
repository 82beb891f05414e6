"""Fail-open bookkeeping: count, log once with secrets redacted, raise only when strict."""

from __future__ import annotations

import logging

import pytest

import vt_middleware as vt
from vt_middleware.health import error_counts, fail_open, record_internal_error

SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"


def test_fail_open_counts_logs_once_and_redacts_the_message(tmp_path, caplog):
    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", strict=False)
    try:
        with caplog.at_level(logging.WARNING, logger="vt_middleware"):
            for _ in range(3):
                with fail_open("capture"):
                    raise RuntimeError(f"provider said: invalid key {SECRET}")
        assert error_counts()["capture:RuntimeError"] == 3
        lines = [r.getMessage() for r in caplog.records if "failed open" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "RuntimeError" in lines[0] and "invalid key" in lines[0]
        assert SECRET not in caplog.text
    finally:
        vt.reset()


def test_strict_mode_raises_the_original_error(vt_env):
    err = ValueError("boom")
    with pytest.raises(ValueError) as info:
        record_internal_error("hooks", err)
    assert info.value is err
    assert error_counts()["hooks:ValueError"] == 1
