"""Shared fixtures. Each test gets its own store, journal, hooks dir and state dir."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def vt_env(tmp_path):
    """A fresh, strict vt_middleware configuration rooted in ``tmp_path``."""
    import vt_middleware as vt

    config = vt.reset(
        store_path=tmp_path / "lance",
        journal_path=tmp_path / "journal",
        hooks_dir=tmp_path / "hooks",
        state_dir=tmp_path / "state",
        strict=True,
    )
    yield config
    vt.reset()
