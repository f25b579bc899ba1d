"""Which REST framework authentication classes a stream need not ask
(``auth._answers_none``), with REST framework's real classes."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory, override_settings
from rest_framework.authentication import (
    BaseAuthentication,
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.request import Request

from django_sse import auth
from django_sse.auth import _answers_none


class BearerToken(TokenAuthentication):
    keyword = "Bearer"


class OwnCredentials(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> Any:  # only called with a header
        return super().authenticate_credentials(key)


class QueryKey(TokenAuthentication):
    """Reads the token from the query string: must be asked without a header."""

    def authenticate(self, request: Any) -> Any:
        key = request.query_params.get("key")
        return self.authenticate_credentials(key) if key else None


class Custom(BaseAuthentication):
    def authenticate(self, request: Any) -> Any:
        return None


def _request(header: str | None = None) -> Any:
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    return RequestFactory().get("/sse/", {"channel": "public"}, **extra)


SKIPPED = [TokenAuthentication, BasicAuthentication, BearerToken, OwnCredentials]


@pytest.mark.parametrize("cls", SKIPPED)
@pytest.mark.parametrize("header", [None, ""])
def test_the_stock_token_and_basic_classes_are_skipped_without_a_header(
    cls: type, header: str | None
) -> None:
    request = _request(header)
    authenticator = cls()
    assert _answers_none(authenticator, request)
    # What the skip assumes: asked, the class itself answers None.
    assert authenticator.authenticate(Request(request, authenticators=[authenticator])) is None


@pytest.mark.parametrize("cls", SKIPPED)
@pytest.mark.parametrize("header", ["Token abc", "Bearer abc", "Basic " + "eDp5"])
def test_with_an_authorization_header_every_class_is_asked(cls: type, header: str) -> None:
    assert not _answers_none(cls(), _request(header))


@pytest.mark.parametrize("cls", [QueryKey, Custom, SessionAuthentication])
def test_other_classes_and_overrides_of_authenticate_are_asked(cls: type) -> None:
    assert not _answers_none(cls(), _request())


def test_an_authenticate_set_on_the_instance_is_asked() -> None:
    authenticator = TokenAuthentication()
    authenticator.authenticate = lambda request: None  # type: ignore[method-assign]
    assert not _answers_none(authenticator, _request())
    other = TokenAuthentication()
    other.authenticate = Custom().authenticate  # type: ignore[method-assign]
    assert not _answers_none(other, _request())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_a_subclass_reading_the_query_string_still_names_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asgiref.sync import sync_to_async
    from rest_framework.authtoken.models import Token

    user = await sync_to_async(User.objects.create_user)("querykey")
    token = await sync_to_async(Token.objects.create)(user=user)
    asked: list[str] = []
    real = auth._drf_authenticate

    def counting(authenticator: Any, request: Any) -> Any:
        asked.append(type(authenticator).__name__)
        return real(authenticator, request)

    monkeypatch.setattr(auth, "_drf_authenticate", counting)
    classes = [f"{__name__}.QueryKey", "rest_framework.authentication.TokenAuthentication"]
    with override_settings(SSE_AUTHENTICATION_CLASSES=classes):
        request = RequestFactory().get("/sse/", {"channel": "public", "key": token.key})
        identity = await auth.authenticate_classes(request)
        assert identity.user.pk == user.pk and asked == ["QueryKey"]
        asked.clear()
        # Neither answers without a key or a header; only the override is asked.
        anonymous = await auth.authenticate_classes(_request())
        assert not anonymous.user.is_authenticated and asked == ["QueryKey"]
        asked.clear()
        basic = "Basic " + base64.b64encode(b"x:y").decode()
        await auth.authenticate_classes(_request(f"Token {token.key}"))
        assert asked == ["QueryKey", "TokenAuthentication"]
        asked.clear()
        with override_settings(
            SSE_AUTHENTICATION_CLASSES=["rest_framework.authentication.BasicAuthentication"]
        ):
            with pytest.raises(auth.ChannelError):
                await auth.authenticate_classes(_request(basic))  # asked: refused
