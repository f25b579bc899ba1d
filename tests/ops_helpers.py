"""Helpers of the operations tests: scraping a real server's ``/metrics``
(parsed by prometheus_client), and a server environment on a private Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import Server, running_server

#: One server of each kind, each through one door: the fast path, Django's view.
KINDS = [("uvicorn", "fast"), ("daphne", "view")]
KIND_IDS = ["-".join(k) for k in KINDS]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, base: str, path: str = "/metrics/") -> Samples:
    response = await client.get(base + path)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` (0 when absent: a labelled child not used yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def redis_env(db: str, redis_url: str, **extra: str) -> dict[str, str]:
    """A server's environment on ``redis_url`` whose layer calls give up after 1 s."""
    return {
        "SSE_TEST_DB": db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": redis_url,
        "SSE_PUBLISH_TIMEOUT": "1",
        **extra,
    }


@contextmanager
def memory_server(kind_and_door: tuple[str, str], db: str, **env: str) -> Iterator[Server]:
    """A server of ``KINDS`` on the in-memory layer and the shared SQLite file."""
    kind, door = kind_and_door
    with running_server(
        kind, SSE_TEST_DB=db, SSE_TEST_LAYER="memory", SSE_TEST_DOOR=door, **env
    ) as server:
        yield server


async def one_event_through(client: httpx.AsyncClient, server: Server, channel: str) -> Samples:
    """Open a stream on ``channel``, publish one event to it, read it; then scrape."""
    from tests.sse_client import open_stream, publish

    async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
        await publish(client, server.url, channel)
        await stream.collect(1)
    return await scrape(client, server.url)


def csrf(page: str) -> str:
    """The CSRF token of a rendered form."""
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None, page[:500]
    return match.group(1)


async def post_form(client: httpx.AsyncClient, base: str, fields: dict[str, str]) -> httpx.Response:
    """Post the Live page's publish form as a browser does, with its CSRF token."""
    page = await client.get(base + "/sse/live/")
    assert page.status_code == 200
    return await client.post(
        base + "/sse/live/",
        data={"csrfmiddlewaretoken": csrf(page.text), **fields},
        headers={"Referer": base + "/sse/live/"},
    )
