"""The Streamlit dashboard in headless Chromium against a seeded store: every tab renders its
content, the rollback button changes the active hook version on disk, a submitted correction
lands in the store. Plus fast AppTest checks of the same script."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "vt_middleware" / "dashboards" / "streamlit_app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    import vt_middleware as vt
    from dashboard_seed import seed_dashboard_state

    state = seed_dashboard_state(tmp_path_factory.mktemp("dash-seed"))
    yield state
    vt.reset()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_app_script_renders_all_tabs_apptest(seeded, monkeypatch):
    from streamlit.testing.v1 import AppTest

    for key, value in seeded.env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Pipeline", "Golden data", "Rules", "Hook script", "Versions", "Feedback"]
    assert [e.value for e in at.error] == ["train failed: TrainingError: fine-tuning job ftjob-1 was cancelled"]
    labels = [b.label for b in at.button]
    assert "Roll back" in labels and "Submit correction" in labels
    assert any("def intercept_output" in c.value for c in at.code)
    assert any(m.label == "State" and m.value == "idle" for m in at.metric)


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_in_headless_chromium(seeded, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    from vt_middleware.config import get_config
    from vt_middleware.store.executions import ExecutionStore, get_store
    from vt_middleware.synthesize.versions import HookVersionStore

    port = _free_port()
    env = {**os.environ, **seeded.env, "PYTHONPATH": str(APP.parents[2])}
    server = subprocess.Popen(  # as a user starts it: `vt dashboard`
        [sys.executable, "-m", "vt_middleware.cli", "dashboard", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start: {server.stdout.read() if server.poll() is not None else ''}")
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(120_000)
            expect.set_options(timeout=120_000)  # the first run loads the store and the embedder
            page.goto(f"http://127.0.0.1:{port}/")
            tab = lambda name: page.get_by_role("tab", name=name)  # noqa: E731

            # Pipeline: evolver state, run table, stage error, next trigger
            expect(tab("Pipeline")).to_be_visible()
            panel = page.get_by_role("tabpanel").first
            expect(panel.get_by_text("Next trigger:")).to_be_visible()
            expect(
                panel.get_by_text("train failed: TrainingError: fine-tuning job ftjob-1 was cancelled")
            ).to_be_visible()
            expect(panel.get_by_text("candidate beats incumbent by 0.29")).to_be_visible()

            # Golden data: the 2-D map and the JSONL preview with its download
            tab("Golden data").click()
            expect(page.get_by_text("Embedding space (PCA, 2-D)")).to_be_visible()
            expect(page.get_by_text("10 training examples in")).to_be_visible()
            expect(page.get_by_role("button", name="Download JSONL")).to_be_visible()
            assert page.locator("[data-testid='stVegaLiteChart'], .vega-embed").count() >= 1

            # Rules: table + evidence diffs
            tab("Rules").click()
            expect(page.get_by_text("Feedback behind this rule")).to_be_visible()

            # Hook script: the active module, highlighted, with the explanation
            tab("Hook script").click()
            expect(page.get_by_text("the active version")).to_be_visible()
            expect(page.get_by_text("How the hook works.")).to_be_visible()
            expect(page.locator("code").filter(has_text="def intercept_output").first).to_be_attached()

            # Versions: rollback really rolls back on disk
            hooks = HookVersionStore(seeded.env["VT_HOOKS_DIR"])
            assert hooks.active_version() == seeded.versions[-1]
            tab("Versions").click()
            expect(page.get_by_text(f"Active hook version: {seeded.versions[-1]}")).to_be_visible()
            page.get_by_role("button", name="Roll back").click()
            expect(page.get_by_text(f"active hook version is now {seeded.versions[0]}")).to_be_visible()
            assert hooks.active_version() == seeded.versions[0]
            expect(page.get_by_text(f"Active hook version: {seeded.versions[0]}")).to_be_visible()

            # Feedback: correct the newest call; the pair lands in the store
            before = len(get_store().list_feedback())
            tab("Feedback").click()
            fixed = page.get_by_label("Corrected output")
            fixed.fill("The mug is elegant and costs $12.\n\nRating: 5/5 (browser correction)")
            page.get_by_role("button", name="Submit correction").click()
            expect(page.get_by_text("Correction stored as feedback pair")).to_be_visible()
            page.screenshot(path=str(tmp_path / "feedback.png"))
            browser.close()
        # a fresh handle: the dashboard wrote from another process
        pairs = ExecutionStore(get_config()).list_feedback()
        assert len(pairs) == before + 1
        new = [p for p in pairs if "browser correction" in p.fixed_output]
        assert len(new) == 1 and new[0].run_id in seeded.call_ids
        assert new[0].context["function_name"] == "generate_review_summary"
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
