"""prometheus_client's multiprocess mode under ``uvicorn --workers 2``.

Every worker writes its figures to files in ``PROMETHEUS_MULTIPROC_DIR``; a
scrape, whichever worker answers it, sums them. The test reads each worker's
own file to know where its streams went, then kills one worker with SIGKILL:
uvicorn starts another, and the dead worker's open streams leave the
``streams_open`` gauge while its counters stay in the sums.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.ops_helpers import scrape, value
from tests.servers import ROOT, base_env, free_port, server_command, stop, wait_for_port
from tests.sse_client import open_stream, unique, wait_until

pytestmark = pytest.mark.server

OPEN = "django_sse_streams_open"


def open_by_worker(folder: str) -> dict[int, float]:
    """Streams open in each worker process, read from its own gauge file."""
    found: dict[int, float] = {}
    for path in Path(folder).glob("gauge_livesum_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        total = 0.0
        for key, number, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == OPEN:
                total += number
        found[pid] = total
    return found


@contextmanager
def two_workers(folder: str, db: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = base_env(
        SSE_TEST_DB=db,
        SSE_TEST_LAYER="memory",
        SSE_TEST_METRICS="1",
        SSE_KEEPALIVE="0.5",
        PROMETHEUS_MULTIPROC_DIR=folder,
    )
    with tempfile.NamedTemporaryFile(prefix="uvicorn-workers-", suffix=".log") as log:
        proc = subprocess.Popen(
            [*server_command("uvicorn", port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, proc, 30.0)
            yield f"http://127.0.0.1:{port}", proc
        finally:
            stop(proc)


@pytest.mark.timeout(120)
async def test_two_workers_are_summed_and_a_killed_one_leaves_the_gauge(server_db: str) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="prom-") as folder,
        two_workers(folder, server_db) as (
            base,
            _,
        ),
    ):
        # Each worker makes its figures when it starts: two files, two pids.
        await wait_until(lambda: len(open_by_worker(folder)) == 2, timeout=30.0)
        url = f"{base}/sse/?channel=news:{unique('mp')}"
        async with httpx.AsyncClient(timeout=30.0) as client, AsyncExitStack() as streams:
            opened = 0
            # The kernel spreads connections over the workers: open until both serve some.
            while opened < 60 and (opened < 8 or min(open_by_worker(folder).values()) == 0):
                await streams.enter_async_context(open_stream(client, url))
                opened += 1
                await wait_until(lambda n=opened: sum(open_by_worker(folder).values()) == n)
            per_worker = open_by_worker(folder)
            assert min(per_worker.values()) > 0, per_worker
            for path in ("/metrics/", "/django-prometheus/metrics") * 2:
                # Whichever worker answers, through either view: the sum.
                samples = await scrape(client, base, path)
                assert value(samples, OPEN, door="asgi") == opened
                assert value(samples, "django_sse_streams_opened_total", door="asgi") == opened

            victim = max(per_worker, key=lambda pid: per_worker[pid])
            survivors = opened - per_worker[victim]
            os.kill(victim, signal.SIGKILL)

            async def settled() -> bool:
                try:
                    samples = await scrape(client, base)
                except httpx.HTTPError:
                    return False
                return value(samples, OPEN, door="asgi") == survivors

            await wait_until(settled, timeout=30.0, interval=0.2)
            samples = await scrape(client, base)
            # Counters of the dead worker stay in the sum (until the folder is emptied).
            assert value(samples, "django_sse_streams_opened_total", door="asgi") == opened
            assert victim not in open_by_worker(folder)
