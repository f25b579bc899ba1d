"""How anonymous streams are counted: by address, /64 for IPv6, and a warning
when a proxy hides every client's address."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from django_sse import limits


def test_ipv6_clients_are_counted_by_their_64_and_ipv4_by_address() -> None:
    # One IPv6 client holds a whole /64: counting /128s would let it rotate past the limit.
    first = limits.client_address({"REMOTE_ADDR": "2001:db8:1:2::1"})
    assert first == "2001:db8:1:2::/64"
    assert limits.client_address({"REMOTE_ADDR": "2001:db8:1:2:ffff::9"}) == first
    assert limits.client_address({"REMOTE_ADDR": "2001:db8:1:3::1"}) != first
    assert limits.client_address({"REMOTE_ADDR": "203.0.113.7"}) == "203.0.113.7"
    assert limits.client_address({"REMOTE_ADDR": "::ffff:203.0.113.7"}) == "::ffff:203.0.113.7"
    with override_settings(SSE_CLIENT_IP_HEADER="X-Forwarded-For"):
        meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "9.9.9.9, 2001:db8::5"}
        assert limits.client_address(meta) == "2001:db8::/64"


def test_a_proxy_without_the_client_ip_header_is_warned_about_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "_warned_proxy", False)
    proxied = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.4"}
    with override_settings(SSE_MAX_STREAMS_PER_ADDRESS=50), caplog.at_level(logging.WARNING):
        limits.client_address({"REMOTE_ADDR": "127.0.0.1"})  # no proxy header: local use
        assert not caplog.records
        for _ in range(3):
            assert limits.client_address(proxied) == "127.0.0.1"
    [record] = caplog.records
    assert "SSE_CLIENT_IP_HEADER is not set" in record.getMessage()
    caplog.clear()
    monkeypatch.setattr(limits, "_warned_proxy", False)
    with (
        override_settings(SSE_CLIENT_IP_HEADER="X-Forwarded-For"),
        caplog.at_level(logging.WARNING),
    ):
        assert limits.client_address(proxied) == "198.51.100.4"
    assert not caplog.records
