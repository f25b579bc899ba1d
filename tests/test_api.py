"""The REST publish endpoint: allowed, denied, invalid, and the browsable API."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from django_sse.models import StoredEvent

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(username: str | None, *, publisher: bool = False) -> APIClient:
    client = APIClient()
    if username is not None:
        user = get_user_model().objects.create(username=username)
        if publisher:
            user.user_permissions.add(
                Permission.objects.get(
                    content_type__app_label="django_sse", codename="publish_event"
                )
            )
        client.force_authenticate(user)
    return client


def publish(client: APIClient, body: dict[str, Any]) -> Any:
    return client.post(reverse("django_sse:publish"), body, format="json")


def test_a_publisher_gets_201_with_the_stored_event() -> None:
    response = publish(
        client_for("ann", publisher=True), {"channel": "public", "event": "e", "data": {"n": 1}}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    row = StoredEvent.objects.get(channel="public")
    assert body == {"id": body["id"], "channel": "public", "event": "e", "seq": row.seq}
    assert row.seq == 1 and row.payload == '{"n":1}' and body["id"]


def test_str_data_is_sent_as_json_text_and_data_may_be_omitted() -> None:
    # A str from a REST client is data, never markup: JSON on the wire.
    client = client_for("ann", publisher=True)
    assert (
        publish(client, {"channel": "public", "event": "html", "data": "<b>hi</b>"}).status_code
        == 201
    )
    assert publish(client, {"channel": "public", "event": "ping"}).status_code == 201
    assert list(StoredEvent.objects.order_by("seq").values_list("payload", flat=True)) == [
        '"\\u003Cb\\u003Ehi\\u003C/b\\u003E"',  # "<b>hi</b>", as JSON with no markup
        "null",
    ]


@pytest.mark.parametrize(
    ("username", "publisher", "detail"),
    [
        (None, False, "Authentication credentials were not provided."),
        ("bob", False, "You need the permission 'django_sse.publish_event' to publish events."),
    ],
)
def test_denied_without_login_or_permission(
    username: str | None, publisher: bool, detail: str
) -> None:
    response = publish(
        client_for(username, publisher=publisher), {"channel": "public", "event": "e", "data": 1}
    )
    assert response.status_code == 403
    assert response.json() == {"detail": detail}
    assert not StoredEvent.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"channel": "bad name", "event": "e"}, "channel", "is malformed"),
        ({"channel": "public"}, "event", "This field is required."),
        ({"channel": "public", "event": "a\nb"}, "non_field_errors", "control character"),
        (
            {"channel": "public", "event": "e", "data": "x" * 70_000},
            "non_field_errors",
            "more than SSE_MAX_EVENT_BYTES",
        ),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(
    body: dict[str, Any], field: str, message: str
) -> None:
    response = publish(client_for("ann", publisher=True), body)
    assert response.status_code == 400
    assert message in response.json()[field][0]
    assert not StoredEvent.objects.exists()


def test_the_permission_classes_come_from_the_setting() -> None:
    with override_settings(SSE_PUBLISH_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"]):
        # The endpoint lets anyone in; the channel's publish policy decides.
        assert publish(client_for(None), {"channel": "wall", "event": "e"}).status_code == 201
        assert publish(client_for(None), {"channel": "public", "event": "e"}).status_code == 403
    with override_settings(
        SSE_PUBLISH_PERMISSION_CLASSES=["rest_framework.permissions.IsAdminUser"]
    ):
        assert (
            publish(
                client_for("ann", publisher=True), {"channel": "public", "event": "e"}
            ).status_code
            == 403
        )


def test_the_browsable_api_shows_a_form_and_publishes_from_it() -> None:
    client = client_for("ann", publisher=True)
    page = client.get(reverse("django_sse:publish"), HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="channel"' in html and 'name="event"' in html and 'name="data"' in html
    # The HTML form posts data as a JSON string.
    response = client.post(
        reverse("django_sse:publish"),
        {"channel": "public", "event": "form", "data": '{"from": "form"}'},
        HTTP_ACCEPT="text/html",
    )
    assert response.status_code == 201
    assert StoredEvent.objects.get(name="form").payload == '{"from":"form"}'


@pytest.mark.parametrize(
    "name", ["stream-closed", "stream-reset", "snapshot", "Stream-Closed", "error", "open"]
)
def test_reserved_event_names_are_a_400(name: str) -> None:
    response = publish(client_for("ann", publisher=True), {"channel": "public", "event": name})
    assert response.status_code == 400
    assert "reserved for the server" in response.json()["non_field_errors"][0]
    assert not StoredEvent.objects.exists()


def test_an_unregistered_channel_is_a_400_and_nothing_is_stored() -> None:
    response = publish(client_for("ann", publisher=True), {"channel": "nowhere", "event": "e"})
    assert response.status_code == 400
    assert response.json() == {"channel": ["channel 'nowhere' matches no registered channel"]}
    assert not StoredEvent.objects.exists()


def test_the_channels_publish_policy_decides_with_a_one_line_403() -> None:
    ann = client_for("ann", publisher=True)
    bob = get_user_model().objects.create(username="bob")
    cases = [
        (f"user:{bob.pk}", 403),  # another user's private channel, whatever the permission
        ("bulletin", 403),  # publish=channels.NOBODY
        ("board:bob", 403),  # a callable: only bob posts to his board
        ("board:ann", 201),
        ("wall", 201),
    ]
    for channel, expected in cases:
        response = publish(ann, {"channel": channel, "event": "e", "data": 1})
        assert response.status_code == expected, (channel, response.content)
        if expected == 403:
            detail = response.json()["detail"]
            assert detail == f"you are not allowed to publish to channel {channel!r}"
    assert sorted(StoredEvent.objects.values_list("channel", flat=True)) == ["board:ann", "wall"]


@pytest.mark.parametrize("channel", ["staff", "ticket:3"])
def test_the_default_policy_never_lets_a_publisher_write_where_it_may_not_read(
    channel: str,
) -> None:
    # A non-staff holder of publish_event (a bot account) may not read "staff",
    # nor "ticket:3" (odd pks: nobody): pages there trust what arrives.
    bot = client_for("bot", publisher=True)
    response = publish(bot, {"channel": channel, "event": "e", "data": {"status": "closed"}})
    assert response.status_code == 403, response.content
    assert response.json()["detail"] == f"you are not allowed to publish to channel {channel!r}"
    assert not StoredEvent.objects.filter(channel=channel).exists()
    # A channel it may read takes the same event.
    assert publish(bot, {"channel": "ticket:4", "event": "e", "data": 1}).status_code == 201
