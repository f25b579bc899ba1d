import os
from typing import Any

from django.apps import AppConfig


def _log_signal(path: str, name: str) -> Any:
    def receiver(sender: Any, channel: str, **kwargs: Any) -> None:
        with open(path, "a") as out:  # one short line, appended: safe across processes
            out.write(f"{os.getpid()} {name} {channel}\n")

    return receiver


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Server processes of the occupancy tests log the lifecycle signals here.
        path = os.environ.get("SSE_TEST_SIGNAL_LOG")
        if path:
            from django_sse import signals

            for name in ("channel_occupied", "channel_vacated", "presence_joined", "presence_left"):
                signal = getattr(signals, name)
                signal.connect(_log_signal(path, name), weak=False)
