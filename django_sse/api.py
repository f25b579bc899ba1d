"""The REST publish endpoint (Django REST framework): ``POST {channel, event, data}``.

Routed by ``django_sse.urls`` as ``publish/`` when ``rest_framework`` is
importable; this module is only imported then.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from .channels import PUBLISH_PERMISSION, ChannelError, registry
from .conf import conf
from .events import build_event
from .names import channel_name_error
from .publish import send_event

__all__ = ["CanPublishEvents", "PublishSerializer", "PublishView"]

PERMISSION = PUBLISH_PERMISSION


class CanPublishEvents(permissions.BasePermission):
    """Allows users with the Django permission ``django_sse.publish_event``."""

    message = f"You need the permission {PERMISSION!r} to publish events."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm(PERMISSION))


class _JSONField(serializers.JSONField):
    """A ``JSONField`` that refuses nesting too deep for Python's JSON (a 400, not a 500)."""

    def to_internal_value(self, data: Any) -> Any:
        try:
            return super().to_internal_value(data)
        except RecursionError:
            self.fail("invalid")


class PublishSerializer(serializers.Serializer[Any]):
    channel = serializers.CharField(max_length=100, trim_whitespace=False)
    event = serializers.CharField(max_length=200, trim_whitespace=False)
    data = _JSONField(required=False, allow_null=True, default=None)

    def validate_channel(self, value: str) -> str:
        error = channel_name_error(value)
        if error is not None:
            raise serializers.ValidationError(error)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            build_event(attrs["channel"], attrs["event"], attrs.get("data"))
        except (TypeError, ValueError) as exc:
            raise serializers.ValidationError(str(exc)) from None
        return attrs


class PublishView(GenericAPIView[Any]):
    """Publish an event: ``{"channel": "...", "event": "...", "data": ...}``.

    Answers 201 with the event's ``id``, ``channel``, ``event`` and ``seq``;
    400 for bad input or a channel that matches no registered pattern; 403
    when the channel's publish policy refuses the user."""

    serializer_class = PublishSerializer

    def get_permissions(self) -> list[Any]:
        # Read per request, so that override_settings and late settings apply.
        return [import_string(path)() for path in conf.SSE_PUBLISH_PERMISSION_CLASSES]

    def get(self, request: Request) -> Response:
        return Response({"detail": "POST {channel, event, data} to publish an event."})

    def post(self, request: Request) -> Response:
        try:
            body = request.data
        except RecursionError:
            # DRF's JSON parser turns only ValueError into a 400.
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
        serializer = self.get_serializer(data=body)
        serializer.is_valid(raise_exception=True)
        attrs = serializer.validated_data
        try:
            registry.authorize_publish(request.user, attrs["channel"])
        except ChannelError as exc:
            if exc.status == 403:
                raise exceptions.PermissionDenied(exc.reason) from None
            raise exceptions.ValidationError({"channel": [exc.reason]}) from None
        event = send_event(attrs["channel"], attrs["event"], attrs.get("data"))
        body = {"id": event.id, "channel": event.channel, "event": event.name, "seq": event.seq}
        return Response(body, status=status.HTTP_201_CREATED)
