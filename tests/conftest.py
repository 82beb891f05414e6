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


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    """The local OpenAI-compatible server on the tiny random model (one per session)."""
    from vt_middleware.server.backends import LocalModelBackend
    from vt_middleware.server.runner import LocalServer
    from vt_middleware.train.local_models import TINY_ID

    server = LocalServer(LocalModelBackend(default_model=TINY_ID), data_dir=tmp_path_factory.mktemp("vt-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def openai_client(local_server):
    """A real openai SDK client on the local server (no retries: faults show as they are)."""
    from openai import OpenAI

    client = OpenAI(base_url=local_server.base_url, api_key="sk-local-test", max_retries=0)
    yield client
    local_server.backend.faults.clear()
    client.close()
