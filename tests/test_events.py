from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid

import pytest
from django.template import Context, Template
from django.test import override_settings
from django.utils.html import format_html
from django.utils.safestring import SafeData, mark_safe
from httpx_sse._decoders import SSEDecoder
from hypothesis import given, settings
from hypothesis import strategies as st

from django_sse.events import (
    USER_CHANNEL_EVENT_NAMES,
    build_event,
    comment,
    control,
    encode,
    is_reserved_event_name,
    retry,
)

CORS_UNSAFE = re.compile(r'["():<>?@\[\\\]{}\x00-\x1f\x7f]')


def parse(wire: bytes) -> list[dict[str, object]]:
    """Parse wire bytes with a real SSE decoder (httpx-sse)."""
    decoder = SSEDecoder()
    events = []
    # The text after the final LF is not a line.
    for line in wire.decode("utf-8").split("\n")[:-1]:
        sse = decoder.decode(line)
        if sse is not None:
            events.append({"id": sse.id, "event": sse.event, "data": sse.data})
    return events


def test_exact_wire_format() -> None:
    wire = encode("42", "note", "one\ntwo\r\nthree\rfour")
    assert wire == (b"id: 42\nevent: note\ndata: one\ndata: two\ndata: three\ndata: four\n\n")


def test_json_payload_uses_django_encoder() -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    pk = uuid.UUID(int=7)
    event = build_event("c", "e", {"at": when, "pk": pk, "n": decimal.Decimal("1.5")})
    [parsed] = parse(event.wire)
    assert json.loads(str(parsed["data"])) == {
        "at": "2026-01-02T03:04:05Z",
        "pk": str(pk),
        "n": "1.5",
    }


def test_markup_marked_safe_is_sent_verbatim() -> None:
    html = '<li class="x">Tom &amp; "Jerry"</li>\n<li>two</li>'
    for safe in (mark_safe(html), format_html("{}", mark_safe(html))):
        [parsed] = parse(build_event("c", "e", safe).wire)
        assert parsed["data"] == html
    rendered = Template("<b>{{ name }}</b>").render(Context({"name": "<i>"}))
    [parsed] = parse(build_event("c", "e", rendered).wire)
    assert parsed["data"] == "<b>&lt;i&gt;</b>"


@pytest.mark.parametrize(
    "text",
    ['<img src=x onerror="alert(1)">', json.dumps("<img src=x onerror=alert(1)>"), "", "a\nb"],
)
def test_a_plain_str_is_data_sent_as_json(text: str) -> None:
    # A str taken from user input must never reach a client as markup.
    event = build_event("c", "e", text)
    [parsed] = parse(event.wire)
    assert json.loads(str(parsed["data"])) == text
    assert json.loads(event.payload) == text


def test_json_holds_no_markup_characters() -> None:
    # So even a client that swaps every payload as HTML (htmx) parses no tag from it.
    data = {"<b>": ["a & b", "</script><img src=x onerror=alert(1)>"], "n": 1}
    event = build_event("c", "e", data)
    assert not set("<>&") & set(event.payload)
    assert json.loads(event.payload) == data
    assert "\\u003C/script\\u003E" in event.payload


def test_event_ids_are_unique_ascii_cors_safe_and_short() -> None:
    ids = {build_event("user:42", "e", None).id for _ in range(500)}
    assert len(ids) == 500
    for event_id in ids:
        assert event_id.isascii() and len(event_id) < 128
        assert not CORS_UNSAFE.search(event_id)
        assert "user" not in event_id


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "a\x00b", "tab\there", "del\x7f", "c1\x85"])
def test_control_characters_in_event_name_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=r"event .* on channel 'news'.*control character"):
        build_event("news", name, {})


def test_empty_or_overlong_event_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        build_event("news", "", {})
    with pytest.raises(ValueError, match="longer than"):
        build_event("news", "x" * 201, {})
    with pytest.raises(TypeError, match="must be a str"):
        build_event("news", 5, {})  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", [object(), {1, 2}, b"bytes", float("nan"), {"x": float("inf")}])
def test_payload_json_cannot_encode_is_type_error(payload: object) -> None:
    with pytest.raises(TypeError, match=r"event 'update' on channel 'news'.*not JSON serializable"):
        build_event("news", "update", payload)


def test_circular_payload_is_type_error() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError):
        build_event("news", "update", loop)


@override_settings(SSE_MAX_EVENT_BYTES=100)
def test_payload_over_limit_is_value_error() -> None:
    build_event("news", "ok", mark_safe("x" * 100))
    with pytest.raises(ValueError, match=r"101 bytes, more than SSE_MAX_EVENT_BYTES \(100\)"):
        build_event("news", "big", mark_safe("x" * 101))
    with pytest.raises(ValueError, match="SSE_MAX_EVENT_BYTES"):
        build_event("news", "big", mark_safe("é" * 51))  # 102 bytes in UTF-8
    with pytest.raises(ValueError, match=r"101 bytes"):
        build_event("news", "big", "x" * 99)  # with its JSON quotes


def test_bad_channel_name_is_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="channel 'bad name'"):
        build_event("bad name", "e", {})


def test_comment_retry_and_control_frames() -> None:
    # No blank line after a comment or a lone retry: that would be a block
    # without data, an empty event to some clients.
    assert comment("a\nb") == b": a b\n"
    assert retry(1500) == b"retry: 1500\n"
    assert parse(control("stream-closed", {"reason": "overflow"}, "7")) == [
        {"id": "7", "event": "stream-closed", "data": '{"reason":"overflow"}'}
    ]
    assert control("stream-reset", {}, None).startswith(b"event: stream-reset\n")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(max_size=30),
    data=st.one_of(st.text(max_size=200).map(mark_safe), st.text(max_size=200), json_values),
)
def test_any_event_is_rejected_or_round_trips(name: str, data: object) -> None:
    """Either the documented error, or a real SSE parser gets back what was sent."""
    try:
        event = build_event("prop", name, data)
    except ValueError as exc:
        assert "event" in str(exc) and "channel 'prop'" in str(exc)
        assert (
            name == ""
            or len(name) > 200
            or re.search(r"[\x00-\x1f\x7f-\x9f]", name)
            or is_reserved_event_name(name)
            # The inbox's names are for user channels only ("prop" is not one).
            or name.casefold() in USER_CHANNEL_EVENT_NAMES
        )
        return
    [parsed] = parse(event.wire)
    assert parsed["id"] == event.id
    assert parsed["event"] == name
    if isinstance(data, SafeData):
        assert parsed["data"] == normalize_newlines(data)
    else:
        assert json.loads(str(parsed["data"])) == data


@pytest.mark.parametrize("name", ["notification", "inbox", "live-notify", "INBOX"])
def test_the_inbox_event_names_are_for_user_channels_only(name: str) -> None:
    assert build_event("user:42", name, {"unread": 1}).name == name
    for channel in ("news:x", "user:42:wall", "users", "board:user:42"):
        with pytest.raises(ValueError, match="user channel"):
            build_event(channel, name, {"unread": 99})
