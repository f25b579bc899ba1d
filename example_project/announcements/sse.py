"""Channels this app streams; autodiscovered by django_sse, like admin.py."""

from __future__ import annotations

from django_sse import channels

#: The page (templates/announcements/index.html) listens for these names.
CHANNEL = "announcements"
EVENT = "announcement"

channels.register(CHANNEL, channels.PUBLIC)
