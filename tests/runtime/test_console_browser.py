"""The web console in a real headless browser: Debian's chromium (scripts/install-browser.sh) driven by
Playwright, against a real gateway, dev server and workers. A reviewer's path: see the agent Ready, start
a run, watch its events, approve its pending call, see the answer; then chat with a session from the
keyboard alone. A screenshot is saved next to the test's temporary files."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from test_client import queues  # noqa: F401 (the module's workers)

from durable_agents_runtime.client import AgentsClient
from durable_agents_runtime.gateway import (
    AgentEntry,
    Gateway,
    GatewayServer,
    LocalTokens,
    StaticCatalog,
    build_app,
)

pytestmark = pytest.mark.runtime

REPO = Path(__file__).resolve().parents[2]
TOKEN = "console-token-for-tests"
WAIT_MS = 60_000


def _chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    done = subprocess.run(
        ["bash", str(REPO / "scripts/install-browser.sh")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"no chromium, and scripts/install-browser.sh failed:\n{done.stderr[-2000:]}"
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def console_url(temporal_dev_server: Any, queues: dict[str, str]) -> Iterator[str]:  # noqa: F811
    async def connect() -> AgentsClient:
        return await AgentsClient.connect(
            address=temporal_dev_server.address, namespace=temporal_dev_server.namespace
        )

    catalog = StaticCatalog(
        [
            AgentEntry("files", "default", queues["files"], "files"),
            AgentEntry("echo", "default", queues["echo"], "session_echo"),
        ]
    )
    server = GatewayServer(
        build_app(Gateway(connect, catalog, LocalTokens({TOKEN: "admin"}, principal="ada"))), port=0
    )
    server.start_in_thread()
    yield f"{server.url}/console/#token={TOKEN}"
    server.stop_thread()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            yield page
        finally:
            browser.close()


def test_a_reviewer_approves_a_pending_call_in_the_console_and_sees_the_answer(
    page: Page, console_url: str, tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(console_url)

    agents = page.get_by_role("table")
    expect(agents.get_by_role("row").filter(has_text="files")).to_contain_text("Ready")
    assert "token=" not in page.url, "the token must leave the address bar"

    page.get_by_label("Agent", exact=True).first.select_option("files")
    page.get_by_label("Prompt").fill("tidy up")
    page.get_by_role("button", name="Start run").click()

    approval = page.get_by_role("region", name="Pending approvals").get_by_role("listitem")
    expect(approval).to_contain_text('{"path": "a.txt"}')
    expect(page.get_by_role("log").first).to_contain_text("→ delete_file")
    approval.get_by_role("button", name="Approve").click()

    expect(page.locator("#answer")).to_contain_text("model was told: deleted a.txt")
    expect(page.get_by_role("log").first).to_contain_text("← delete_file: deleted a.txt")
    expect(page.locator("#no-approvals")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Approved delete_file")

    # A session as a chat, from the keyboard: type, Enter sends; the reply streams into the log.
    page.get_by_label("Agent", exact=True).nth(1).select_option("echo")
    message = page.get_by_label("Message")
    message.focus()
    page.keyboard.type("hello from the console")
    page.keyboard.press("Enter")
    conversation = page.get_by_role("log", name="Conversation")
    expect(conversation).to_contain_text("agent: reply to 'hello from the console' after 1 prompts")

    page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
    assert (tmp_path / "console.png").stat().st_size > 10_000
    assert errors == []
