"""Shared by the hot-swap tests: tagging hook versions, a promote/rollback storm, waiting for a condition."""

from __future__ import annotations

import threading
import time
from typing import List, Tuple

TAG_HOOK = """
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output + " [hook:{tag}]"
"""


def make_version(hooks_dir, tag: str) -> str:
    """A validated hook version that appends `` [hook:<tag>]`` to every answer."""
    from vt_middleware.synthesize.versions import HookVersionStore

    store = HookVersionStore(hooks_dir)
    return store.create_version(TAG_HOOK.replace("{tag}", tag), validation={"ok": True})["version"]


def tagged_fine_tunes(local_server, hooks_dir) -> Tuple[str, str]:
    """``app-model``, ``vt-ft-a``, ``vt-ft-b`` served by the tiny model; hook versions tagging
    answers ``vt-ft-a`` / ``vt-ft-b``, so an answer shows which pair served it."""
    from vt_middleware.train.local_models import TINY_ID

    for alias in ("app-model", "vt-ft-a", "vt-ft-b"):
        local_server.backend.alias(alias, TINY_ID)
    return make_version(hooks_dir, "vt-ft-a"), make_version(hooks_dir, "vt-ft-b")


def swap_storm(threads: List[threading.Thread], stop: threading.Event, va: str, vb: str, flips: int) -> None:
    """Run ``threads`` while promoting (app-model -> vt-ft-a/va, then b/vb) and rolling back
    ``flips`` times, back to the plain pair at the end; then stop and join them."""
    from vt_middleware.evolve.swap import Promoter

    for thread in threads:
        thread.start()
    promoter = Promoter()
    promoter.promote("app-model", "vt-ft-a", va, record=False)
    for i in range(flips):
        time.sleep(0.01)
        if i % 2 == 0:
            promoter.promote("app-model", "vt-ft-b", vb, record=False)
        else:
            promoter.rollback(record=False)
    promoter.rollback(record=False)
    time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(30)


def wait_for(condition, timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()
