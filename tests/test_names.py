from __future__ import annotations

import pytest
from channels.layers import InMemoryChannelLayer
from hypothesis import given
from hypothesis import strategies as st

from django_sse.names import channel_name_error, group_name, validate_channel_name

channel_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}", fullmatch=True)


@pytest.mark.parametrize("name", ["a", "user:42", "ticket:7.x_y-z", "A" * 100])
def test_valid_names(name: str) -> None:
    assert channel_name_error(name) is None
    assert validate_channel_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("a" * 101, "101 characters"),
        ("-a", "malformed"),
        (":a", "malformed"),
        ("a b", "malformed"),
        ("a/b", "malformed"),
        ("é", "malformed"),
        ("a\n", "malformed"),
        (5, "must be a string"),
    ],
)
def test_invalid_names_say_why(name: object, why: str) -> None:
    error = channel_name_error(name)
    assert error is not None and why in error
    with pytest.raises(ValueError, match=why):
        validate_channel_name(name)


@given(channel_names)
def test_group_names_are_accepted_by_the_layer(name: str) -> None:
    assert InMemoryChannelLayer().require_valid_group_name(group_name(name))


@given(channel_names, channel_names)
def test_group_names_are_injective(a: str, b: str) -> None:
    assert (group_name(a) == group_name(b)) == (a == b)


def test_group_name_escaping_cannot_collide() -> None:
    assert group_name("a_c") != group_name("a:")
    assert group_name("user:42") == "sse.user_c42"
    assert group_name("a__b") == "sse.a____b"
    long = "x:" * 50
    assert group_name(long).startswith("sse._") and len(group_name(long)) < 100
