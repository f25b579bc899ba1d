"""``manage.py sse_send`` and model hooks, run in processes of their own,
reaching streams on real servers over Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.servers import Server, run_python
from tests.sse_client import open_stream, unique

pytestmark = [pytest.mark.redis, pytest.mark.server]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0) as c:
        yield c


async def run(*args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    """Run ``python -m django ARGS`` with the test settings; (status, stdout, stderr)."""
    return await run_python("-m", "django", *args, env=env, stdin=stdin)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["public", "greet", "{not json"], "DATA is not valid JSON"),
        (["bad name", "greet", "{}"], "channel name 'bad name' is malformed"),
        (["public", "bad\nname", "{}"], "control character"),
        (["public", "greet", "NaN"], "not JSON serializable"),
        (["public", "greet"], "the following arguments are required: data"),
        (["public", "stream-closed", "{}"], "is reserved for the server"),
        (["public", "snapshot", "{}"], "is reserved for the server"),
        (["nowhere", "greet", "{}"], "matches no registered channel pattern"),
    ],
)
async def test_bad_input_exits_non_zero_with_one_line(args: list[str], error: str) -> None:
    status, out, err = await run("sse_send", *args)
    assert status == 1 and out == ""  # argument errors too, not argparse's 2
    [line] = err.strip().splitlines()
    assert error in line and line.startswith("CommandError: ")


async def test_sse_send_from_a_subprocess_reaches_streams_on_both_servers(
    redis_servers: tuple[Server, Server],
    redis_url: str,
    server_db: str,
    client: httpx.AsyncClient,
) -> None:
    channel = f"news:{unique()}"
    env = {"SSE_TEST_LAYER": "redis", "REDIS_URL": redis_url, "SSE_TEST_DB": server_db}
    one, two = redis_servers
    async with (
        open_stream(client, f"{one.url}/sse/?channel={channel}") as s1,
        open_stream(client, f"{two.url}/sse/?channel={channel}") as s2,
    ):
        status, out, err = await run("sse_send", channel, "json", '{"n": 1}', **env)
        assert status == 0, err
        assert out.strip() == f"Sent 'json' on '{channel}' as #1."
        assert (await run("sse_send", channel, "stdin", "-", stdin='["a"]\n', **env))[0] == 0
        html = "<li>one</li>\n<li>two</li>"
        html_in = html + "\n"  # as echo writes it; the last newline is dropped
        assert (await run("sse_send", channel, "html", "-", "--text", stdin=html_in, **env))[0] == 0
        for stream in (s1, s2):
            got = await stream.collect(3)
            assert [(e.event, json.loads(e.data)) for e in got] == [
                ("json", {"n": 1}),
                ("stdin", ["a"]),
                ("html", html),  # --text: a str, so JSON text
            ]
            assert "<" not in got[2].data


async def test_a_save_in_a_worker_process_reaches_a_stream_through_its_hook(
    redis_servers: tuple[Server, Server],
    redis_url: str,
    server_db: str,
    client: httpx.AsyncClient,
) -> None:
    env = {"SSE_TEST_LAYER": "redis", "REDIS_URL": redis_url, "SSE_TEST_DB": server_db}
    text = unique("worker")
    script = (
        "from django.db import transaction\n"
        "from tests.testapp.models import Comment, Ticket\n"
        "with transaction.atomic():\n"
        "    ticket = Ticket.objects.create(title='from a worker')\n"
        f"    Comment.objects.create(ticket=ticket, text={text!r})\n"
        "print(ticket.pk)\n"
    )
    async with open_stream(client, f"{redis_servers[1].url}/sse/?channel=comments") as stream:
        status, out, err = await run("shell", "-c", script, **env)
        assert status == 0, err
        [event] = await stream.collect(1, name="testapp.comment.created")
    data = json.loads(event.data)
    assert data["text"] == text and data["ticket"] == int(out.split()[-1])
