"""Replay pages framed once per hub (django_sse.framed, StreamState._page)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from django_sse import asend_event
from django_sse.events import encode_body
from django_sse.framed import FramedPages
from django_sse.hub import get_hub
from django_sse.ids import decode_position, encode_position
from django_sse.store import Record
from django_sse.stream import StreamState
from django_sse.subscription import Cursor
from tests.asgi_client import asgi_stream


def _state(channels: tuple[str, ...], positions: dict[str, int], pages: FramedPages) -> Any:
    """A stream's framing state without a hub or a store: ``_page`` needs
    only its cursor and ``hub.framed``."""
    state = StreamState.__new__(StreamState)
    state.cursor = Cursor(channels, dict(positions))
    state.hub = SimpleNamespace(framed=pages)  # type: ignore[assignment]
    return state


def _rows(channel: str, seqs: list[int], pk: int = 1, text: str = "x") -> list[Record]:
    return [
        Record(pk + i, channel, seq, "n", json.dumps(f"{text}{seq}"), encode_body("n", f"{seq}"))
        for i, seq in enumerate(seqs)
    ]


def test_the_same_page_from_the_same_position_is_framed_once() -> None:
    pages = FramedPages()
    rows = _rows("a", [3, 4, 5])
    first, second = (_state(("a", "b"), {"a": 2, "b": 7}, pages) for _ in range(2))
    assert first._page(rows) == second._page(rows)
    assert pages.hits == 1
    assert second.cursor.positions == first.cursor.positions == {"a": 5, "b": 7}
    assert second.cursor.id == first.cursor.id  # the id was recomputed, not stale


def test_another_position_of_another_channel_is_framed_for_itself() -> None:
    """Same channels, same rows, but the stream is elsewhere on ``b``: its ids
    name its own position there (and a page is not reused)."""
    pages = FramedPages()
    rows = _rows("a", [3, 4])
    here = _state(("a", "b"), {"a": 2, "b": 7}, pages)
    there = _state(("a", "b"), {"a": 2, "b": 9}, pages)
    here._page(rows)
    page = there._page(rows)
    assert pages.hits == 0
    ids = [line[4:].decode() for line in page.split(b"\n") if line.startswith(b"id: ")]
    assert ids == [encode_position(("a", "b"), {"a": s, "b": 9}) for s in (3, 4)]


def test_a_hole_resets_with_the_id_of_each_stream() -> None:
    pages = FramedPages()
    rows = _rows("a", [6, 7])  # 3..5 pruned
    one = _state(("a",), {"a": 2}, pages)
    multi = _state(("a", "b"), {"a": 2, "b": 1}, pages)
    p1, p2 = one._page(rows), multi._page(rows)
    assert pages.hits == 0
    for page, channels, pos in ((p1, ("a",), {"a": 5}), (p2, ("a", "b"), {"a": 5, "b": 1})):
        head, _, rest = page.partition(b"\n\n")
        assert b"event: stream-reset" in head
        assert f"id: {encode_position(channels, pos)}".encode() in head
        assert b"data: 6" in rest and b"data: 7" in rest
    # A third stream from the very same place takes the first one's bytes,
    # reset included, and ends where it did.
    again = _state(("a",), {"a": 2}, pages)
    assert again._page(rows) == p1 and pages.hits == 1
    assert again.cursor.positions == {"a": 7}


def test_rows_written_already_are_skipped_per_position() -> None:
    pages = FramedPages()
    rows = _rows("a", [3, 4, 5])
    behind = _state(("a",), {"a": 2}, pages)
    ahead = _state(("a",), {"a": 4}, pages)
    assert behind._page(rows).count(b"event: n") == 3
    assert ahead._page(rows).count(b"event: n") == 1
    assert pages.hits == 0


def test_a_fill_up_to_a_point_is_another_page() -> None:
    """``fill()`` drops rows past ``upto`` before framing: another pk tuple,
    so a stream filling up to 4 never takes a page that ends at 5."""
    pages = FramedPages()
    rows = _rows("a", [3, 4, 5])
    whole = _state(("a",), {"a": 2}, pages)
    part = _state(("a",), {"a": 2}, pages)
    full = whole._page(rows)
    cut = part._page([r for r in rows if r.seq <= 4])
    assert pages.hits == 0
    assert part.cursor.positions == {"a": 4}
    assert full.startswith(cut) and b"data: 5" not in cut


def test_rows_with_the_same_pks_but_other_content_are_framed_again() -> None:
    """A store whose pks are not unique (an index, a table emptied and numbered
    afresh under a running server) never gets another page's bytes."""
    pages = FramedPages()
    old = _rows("a", [1, 2], text="old")
    new = [Record(r.pk, r.channel, r.seq, r.name, r.payload.replace("old", "new")) for r in old]
    assert [r.pk for r in old] == [r.pk for r in new]
    _state(("a",), {"a": 0}, pages)._page(old)
    page = _state(("a",), {"a": 0}, pages)._page(new)
    assert pages.hits == 0
    assert b"new1" in page and b"old" not in page
    # Equal rows read again (other objects) are still a hit.
    copy = [Record(r.pk, r.channel, r.seq, r.name, r.payload) for r in new]
    assert _state(("a",), {"a": 0}, pages)._page(copy) == page and pages.hits == 1


def test_a_cursor_with_positions_beyond_its_channels_is_not_kept() -> None:
    pages = FramedPages()
    odd = _state(("a",), {"a": 0, "zz": 3}, pages)
    assert odd._page(_rows("a", [1])).count(b"event: n") == 1
    assert len(pages) == 0


def test_kept_pages_stay_within_their_bounds() -> None:
    pages = FramedPages(pages=4, size=20_000)
    for n in range(50):
        rows = _rows("a", [n + 1], pk=n + 1, text="y" * 1000)
        _state(("a",), {"a": n}, pages)._page(rows)
        assert len(pages) <= 4 and pages.used <= 20_000
    # A page bigger than the whole budget is not kept at all.
    big = _rows("a", list(range(1, 30)), pk=1000, text="z" * 2000)
    _state(("a",), {"a": 0}, pages)._page(big)
    assert all(b"zzz" not in item[0][0] for item in pages._items.values())
    assert pages.used == sum(item[2] for item in pages._items.values())


def test_cursor_values_and_jump() -> None:
    cursor = Cursor(("a", "b"), {"a": 1, "b": 2})
    first = cursor.id
    assert cursor.values() == (1, 2)
    cursor.jump((5, 6))
    assert cursor.positions == {"a": 5, "b": 6}
    assert cursor.id != first and decode_position(cursor.id.decode(), ("a", "b")) == {
        "a": 5,
        "b": 6,
    }
    with pytest.raises(ValueError):
        cursor.jump((1,))


def _replay(body: bytes) -> list[tuple[str, str]]:
    return [
        (block.split(b"\n")[0].decode(), block.decode())
        for block in body.split(b"\n\n")
        if block.startswith(b"id: ")
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_streams_resuming_from_one_id_get_identical_replays() -> None:
    async with asgi_stream("channel=news:fr") as live:
        for i in range(6):
            await asend_event("news:fr", "e", i)
        events = await live.wait_events(6)
        ids = [e["id"] for e in events]
        hub = get_hub()
        hits = hub.framed.hits
        headers = {"Last-Event-ID": ids[0]}
        async with asgi_stream("channel=news:fr", headers) as one:
            async with asgi_stream("channel=news:fr", headers) as two:
                await one.wait_events(5)
                await two.wait_events(5)
                assert one.body == two.body
                assert hub.framed.hits > hits
                assert [e["id"] for e in two.events()] == ids[1:]
                # From another position: its own page, and the same ids as
                # the live stream got for the same events.
                async with asgi_stream("channel=news:fr", {"Last-Event-ID": ids[3]}) as other:
                    got = await other.wait_events(2)
                    assert [e["id"] for e in got] == ids[4:]
                    assert [json.loads(e["data"]) for e in got] == [4, 5]
                # A stream on another set of channels from "the same" place
                # names its own set in every id.
                both = ("news:fr", "news:fr2")
                start = encode_position(both, {"news:fr": 1, "news:fr2": 0})
                async with asgi_stream(
                    "channel=news:fr&channel=news:fr2", {"Last-Event-ID": start}
                ) as wider:
                    got = await wider.wait_events(5)
                    assert [decode_position(e["id"], both) for e in got] == [
                        {"news:fr": s, "news:fr2": 0} for s in range(2, 7)
                    ]
