"""The metrics module in-process: off by default, switched by the setting,
its checks, publish failures, and the live gauges of dead worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.checks import CheckMessage
from django.db import OperationalError
from django.test import override_settings
from prometheus_client import REGISTRY

from django_sse import asend_event, metrics
from django_sse.metrics_checks import check_metrics
from django_sse.store import BaseStore
from tests.servers import Server
from tests.sse_client import open_stream, publish, unique


def ids(messages: list[CheckMessage]) -> list[str]:
    assert all(m.hint for m in messages), "every message names a fix"
    return [str(m.id) for m in messages]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_are_off_by_default_and_follow_the_setting() -> None:
    assert metrics.get() is metrics.OFF
    assert not metrics.get().enabled
    with override_settings(SSE_METRICS=True):
        on = metrics.get()
        assert on.enabled and isinstance(on, metrics.Prometheus)
        with override_settings(SSE_METRICS=False):
            assert metrics.get() is metrics.OFF
        # Made once per process: prometheus_client refuses a second metric of a name.
        assert metrics.get() is on
    assert metrics.get() is metrics.OFF


def test_a_setting_that_is_not_true_leaves_metrics_off() -> None:
    # SSE_METRICS = os.environ.get("SSE_METRICS", "False"): a string, and E003
    # is not run by daphne or uvicorn. Off means off until it is True.
    for value in ("False", "false", "0", 1):
        with override_settings(SSE_METRICS=value):
            assert metrics.get() is metrics.OFF, value


def test_every_figure_is_prefixed_and_every_gauge_has_a_live_mode() -> None:
    for figure in metrics.FIGURES:
        assert figure.name == figure.name.lower() and not figure.name.startswith("django_sse")
        if figure.kind == "gauge":
            assert figure.mode.startswith("live"), figure
    with override_settings(SSE_METRICS=True):
        names = {m.describe()[0].name for m in metrics.get().metrics.values()}  # type: ignore[attr-defined]
    assert all(n.startswith(metrics.PREFIX) for n in names)
    assert len(names) == len(metrics.FIGURES)


def test_e060_metrics_on_without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    with override_settings(SSE_METRICS=True):
        assert ids(check_metrics()) == ["django_sse.E060"]
    assert check_metrics() == []


def test_e061_multiprocess_folder_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with override_settings(SSE_METRICS=True):
        assert ids(check_metrics()) == ["django_sse.E061"]
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        assert check_metrics() == []


def test_e003_metrics_setting_must_be_a_bool() -> None:
    from django_sse.checks import check_settings

    with override_settings(SSE_METRICS="yes"):
        assert ids(check_settings()) == ["django_sse.E003"]
        assert check_metrics() == []  # E003 says it


class BrokenStore(BaseStore):
    def append(self, channel: str, name: str, payload: str) -> int:
        raise OperationalError("the database is down")


@override_settings(SSE_METRICS=True, SSE_STORE="tests.test_metrics.BrokenStore")
async def test_failed_publishes_are_counted_by_reason_and_bad_input_is_not() -> None:
    store = sample("django_sse_publish_errors_total", reason="store")
    appends = sample("django_sse_store_errors_total", operation="append")
    published = sample("django_sse_events_published_total")
    with pytest.raises(OperationalError):
        await asend_event("public", "message", {"n": 1})
    assert sample("django_sse_publish_errors_total", reason="store") == store + 1
    assert sample("django_sse_store_errors_total", operation="append") == appends + 1
    with pytest.raises(ValueError):
        await asend_event("stream-closed-is-ours", "stream-closed", {})
    assert sample("django_sse_publish_errors_total", reason="store") == store + 1
    assert sample("django_sse_events_published_total") == published
    # Not stored (ephemeral): published, counted, timed.
    timed = sample("django_sse_publish_duration_seconds_count")
    await asend_event("typing:x", "message", {"n": 2})
    assert sample("django_sse_events_published_total") == published + 1
    assert sample("django_sse_publish_duration_seconds_count") == timed + 1


def test_dead_workers_live_gauges_are_forgotten(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(done.stdout)
    for pid in (dead, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    assert metrics.forget_dead_processes(str(tmp_path)) == [dead]
    left = sorted(p.name for p in tmp_path.iterdir())
    # Counters stay (a counter keeps what the dead worker counted); its gauges go.
    assert left == sorted(
        [f"counter_{dead}.db", f"counter_{os.getpid()}.db", f"gauge_livesum_{os.getpid()}.db"]
    )
    assert metrics.forget_dead_processes(str(tmp_path / "nothing-here")) == []


def test_the_view_is_404_while_metrics_are_off(client: Any) -> None:
    assert client.get("/metrics/").status_code == 404
    with override_settings(SSE_METRICS=True):
        response = client.get("/metrics/")
    assert response.status_code == 200
    assert b"django_sse_streams_opened_total" in response.content


@pytest.mark.server
async def test_a_server_with_metrics_off_never_imports_prometheus_client(server: Server) -> None:
    channel = f"news:{unique('off')}"
    async with httpx.AsyncClient(timeout=30.0) as client:
        async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
            await publish(client, server.url, channel, count=2)
            await stream.collect(2)
        async with open_stream(
            client, f"{server.url}/sse/?channel={channel}", headers={"Last-Event-ID": "x"}
        ) as stream:
            await stream.collect(1, name="stream-reset")
        assert (await client.get(f"{server.url}/metrics/")).status_code == 404
        response = await client.get(
            f"{server.url}/test/imported/", params={"module": "prometheus_client"}
        )
        assert response.json() == {"imported": False}
        # The probe itself can tell: the test process has it imported.
        response = await client.get(
            f"{server.url}/test/imported/", params={"module": "django_sse.stream"}
        )
        assert response.json() == {"imported": True}


def test_a_process_with_metrics_on_imports_it(tmp_path: Path) -> None:
    code = (
        "import django, json, sys; django.setup(); "
        "from django_sse import metrics; metrics.get(); "
        "print(json.dumps('prometheus_client' in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "SSE_TEST_METRICS": "1"},
    ).stdout
    assert json.loads(out) is True


class Broken(metrics.Off):
    enabled = True

    def stream_opened(self, door: str, channels: int) -> None:
        raise OSError("the multiprocess folder is full")

    def stream_closed(self, door: str, reason: str, seconds: float, channels: int) -> None:
        raise OSError("the multiprocess folder is full")


async def test_a_count_that_fails_breaks_no_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from django_sse.hub import get_hub
    from django_sse.stream import event_stream

    monkeypatch.setattr(metrics, "_current", Broken())
    chunks = event_stream(("typing:broken",), door="asgi")
    first = await anext(chunks)
    assert first.startswith(b"retry: ")
    hub = get_hub()
    assert len(hub.subscriptions) == 1
    await chunks.aclose()  # type: ignore[attr-defined]
    assert len(hub.subscriptions) == 0
    await hub.stop(grace=0.1)


def test_a_figure_is_counted_by_name_through_the_generic_methods() -> None:
    metrics.OFF.inc("anything", 5, label="x")  # off: no-ops, whatever the name
    with override_settings(SSE_METRICS=True):
        figures = metrics.get()
        deliveries = sample("django_sse_deliveries_total")
        figures.inc("deliveries", 3)
        assert sample("django_sse_deliveries_total") == deliveries + 3
        figures.set("catchup_lag_events", 7)
        assert sample("django_sse_catchup_lag_events") == 7
        errors = sample("django_sse_layer_errors_total", operation="receive", kind="error")
        figures.inc("layer_errors", operation="receive", kind="error")
        assert (
            sample("django_sse_layer_errors_total", operation="receive", kind="error") == errors + 1
        )
        count = sample("django_sse_stream_duration_seconds_count")
        figures.observe("stream_duration_seconds", 12.0)
        assert sample("django_sse_stream_duration_seconds_count") == count + 1
