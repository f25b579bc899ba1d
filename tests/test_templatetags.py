"""``{% sse_channels %}`` and ``{% sse_script %}``: what they write into the page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.template import Context, Template, TemplateSyntaxError
from django.template.engine import Engine
from django.test import RequestFactory

from django_sse import send_event

pytestmark = pytest.mark.django_db


def render(source: str, **context: Any) -> str:
    return Template("{% load django_sse %}" + source).render(Context(context))


def request_of(user: Any) -> Any:
    request = RequestFactory().get("/")
    request.user = user
    return request


def config(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="django-sse-config"[^>]*>(.*?)</script>', html)
    assert found, html
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def test_sse_script_configures_the_declared_channels_and_the_users_own() -> None:
    user = User.objects.create_user("tags")
    html = render(
        '{% sse_channels "news:a" names %}{% sse_script "public" retry_base=50 share=False %}',
        names=["news:b", "news:a"],
        request=request_of(user),
    )
    cfg = config(html)
    assert cfg["url"] == "/sse/"
    assert cfg["channels"] == ["news:a", "news:b", "public", f"user:{user.pk}"]
    assert cfg["share"] is False and cfg["retryBase"] == 50
    assert '<script src="/static/django_sse/django-sse.js"></script>' in html
    assert '<script type="application/json" data-sse-channels>["news:a", "news:b"]</script>' in html


@pytest.mark.django_db(transaction=True)
def test_sse_script_writes_the_render_time_position() -> None:
    send_event("public", "message", {"n": 1})
    anonymous = request_of(AnonymousUser())
    assert config(render("{% sse_script %}", request=anonymous))["channels"] == []
    cfg = config(render('{% sse_script "public" %}', request=anonymous))
    assert cfg["channels"] == ["public"]
    assert cfg["position"].endswith("-1")


def test_channels_declared_in_an_included_template_count() -> None:
    engine = Engine(
        libraries={"django_sse": "django_sse.templatetags.django_sse"},
        loaders=[
            (
                "django.template.loaders.locmem.Loader",
                {"part.html": '{% load django_sse %}{% sse_channels "news:part" %}'},
            )
        ],
    )
    template = engine.from_string(
        '{% load django_sse %}{% include "part.html" %}{% sse_script own_channel=False %}'
    )
    assert config(template.render(Context({})))["channels"] == ["news:part"]


def test_own_channel_can_be_left_out() -> None:
    user = User.objects.create_user("tags2")
    html = render('{% sse_script "public" own_channel=False %}', request=request_of(user))
    assert config(html)["channels"] == ["public"]


def test_a_malformed_channel_name_is_a_template_error() -> None:
    with pytest.raises(TemplateSyntaxError, match="malformed"):
        render('{% sse_channels "bad name" %}')


def test_the_user_is_read_from_the_request_without_the_auth_context_processor() -> None:
    user = User.objects.create_user("tags3")
    request = RequestFactory().get("/")
    request.user = user
    html = render("{% sse_script %}", request=request)
    assert config(html)["channels"] == [f"user:{user.pk}"]


def test_the_own_channel_is_the_request_users_never_a_user_context_variable() -> None:
    # A DetailView(model=User) puts the *viewed* user in the context as "user".
    viewer = User.objects.create_user("viewer")
    viewed = User.objects.create_user("viewed")
    html = render('{% sse_script "public" %}', request=request_of(viewer), user=viewed)
    assert config(html)["channels"] == ["public", f"user:{viewer.pk}"]
    assert f"user:{viewed.pk}" not in html
    # Without a request in the context, no user channel at all.
    assert config(render("{% sse_script %}", user=viewed))["channels"] == []
