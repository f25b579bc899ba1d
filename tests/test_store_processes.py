"""Two processes append to one channel at once, on PostgreSQL: every event gets
a distinct number, the numbers have no gaps, and id (insertion) order agrees
with number order, as a resuming client relies on. Single appends (one
statement in autocommit) and batches (one transaction) race each other."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from django_sse.models import ChannelSequence, StoredEvent
from tests.sse_client import unique

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs real concurrent writers"),
]

ROUNDS = 150


def test_two_processes_appending_to_one_channel_stay_unique_gap_free_and_ordered(
    tmp_path: Path,
) -> None:
    channel = f"news:{unique()}"
    go = tmp_path / "go"
    env = dict(
        os.environ,
        SSE_TEST_POSTGRES="1",
        SSE_TEST_DB="",
        SSE_TEST_POSTGRES_DB=str(connection.settings_dict["NAME"]),
        DJANGO_SETTINGS_MODULE="tests.settings",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.appender", channel, str(ROUNDS), tag, str(go)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    total = 2 * ROUNDS * 4
    rows = list(
        StoredEvent.objects.filter(channel=channel).order_by("pk").values_list("seq", "payload")
    )
    assert [seq for seq, _ in rows] == list(range(1, total + 1))
    assert ChannelSequence.objects.get(channel=channel).last_seq == total
    # Each process's own events keep its call order, and none is missing.
    for tag in ("a", "b"):
        mine = [json.loads(p) for _, p in rows if json.loads(p)["tag"] == tag]
        assert [(d["n"], d.get("k", -1)) for d in mine] == [
            (n, k) for n in range(ROUNDS) for k in (-1, 0, 1, 2)
        ]
    tags = [json.loads(p)["tag"] for _, p in rows]
    interleaved = sum(1 for x, y in itertools.pairwise(tags) if x != y)
    assert interleaved > 1, "the two processes did not overlap: nothing was raced"
