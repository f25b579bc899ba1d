"""The example project in a real Chromium: what a new user sees after `make demo`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium, requires_chromium
from tests.servers import ROOT, free_port, spawn_server, stop

EXAMPLE = ROOT / "example_project"

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]


@pytest.fixture(scope="module")
def example_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "EXAMPLE_DB": str(Path(tmp) / "example.sqlite3")}
        env.pop("REDIS_URL", None)  # the in-memory layer, as `make demo` serves it
        env.pop("DJANGO_SETTINGS_MODULE", None)
        for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=EXAMPLE,
                env=env,
                check=True,
                capture_output=True,
            )
        port = free_port()
        proc = spawn_server(
            "daphne",
            port,
            env,
            Path(tmp) / "daphne.log",
            app="example_project.asgi:application",
            cwd=EXAMPLE,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)


async def test_an_announcement_sent_by_staff_appears_live(example_url: str) -> None:
    async with chromium() as browser:
        reader = await (await browser.new_context()).new_page()
        await reader.goto(example_url + "/")
        await reader.wait_for_selector("#status[data-state='open']", timeout=10_000)

        staff = await (await browser.new_context()).new_page()
        await staff.goto(example_url + "/accounts/login/?next=/")
        await staff.fill("#id_username", "admin")
        await staff.fill("#id_password", "admin")
        await staff.click("form[action='/accounts/login/'] button[type=submit]")
        await staff.wait_for_selector("#id_text", timeout=10_000)
        text = "Release 1.0 is out <b>today</b>"
        await staff.fill("#id_text", text)
        await staff.click("form[action$='send/'] button[type=submit]")

        item = reader.locator("#feed li", has_text=text)
        await item.wait_for(timeout=10_000)
        # Sent as text, shown as text: the markup is not interpreted.
        assert await reader.locator("#feed b").count() == 0
