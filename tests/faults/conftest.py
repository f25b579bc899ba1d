"""Fixtures of the fault suite, and the table of counts printed at the end."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import TABLE, Counts
from tests.servers import migrate

_outcomes: dict[str, str] = {}


@pytest.fixture(scope="session")
def faults_db() -> Iterator[str]:
    """A migrated SQLite file of the fault suite's own (its channels are unique per test)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "faults.sqlite3")
        migrate(path)
        yield path


@pytest.fixture
def own_db() -> Iterator[str]:
    """A migrated SQLite file for one test (a prune reaches every channel of a store)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "own.sqlite3")
        migrate(path)
        yield path


@pytest.fixture
def record_counts(request: pytest.FixtureRequest) -> Callable[[Counts], Counts]:
    """Print a scenario's counts and keep them for the session's table."""

    def record(counts: Counts) -> Counts:
        counts.test = request.node.nodeid
        TABLE.append(counts)
        print("\n" + counts.line())
        return counts

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[item.nodeid] = report.outcome
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TABLE:
        return
    tr = terminalreporter
    tr.section("fault-injection counts")
    header = (
        f"{'scenario':<34} {'server':<14} {'result':<7} {'clients':>7} {'published':>9} "
        f"{'delivered':>9} {'lost':>5} {'dup':>4} {'ooo':>4} {'wrong':>5} {'resets':>6} "
        f"{'reconn':>6} {'secs':>6}  closes / note"
    )
    tr.write_line(header)
    for c in TABLE:
        closes = ",".join(f"{k}:{v}" for k, v in sorted(c.closes.items())) or "-"
        refused = ",".join(f"{k}:{v}" for k, v in sorted(c.statuses.items()) if k != "200")
        extra = (
            closes + (f" statuses={refused}" if refused else "") + (f"; {c.note}" if c.note else "")
        )
        tr.write_line(
            f"{c.scenario:<34} {c.server:<14} {_outcomes.get(c.test, '?'):<7} {c.clients:>7} "
            f"{c.published:>9} {c.delivered:>9} {c.lost:>5} {c.duplicated:>4} "
            f"{c.out_of_order:>4} {c.mismatched:>5} {c.resets:>6} {c.reconnects:>6} "
            f"{c.seconds:>6.1f}  {extra}"
        )
