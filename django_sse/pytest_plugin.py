"""The pytest plugin of django_sse: the ``sse_events`` fixture.

Loaded by pytest through the ``pytest11`` entry point when the package is
installed; import the fixture into a ``conftest.py`` to use it without that
(``from django_sse.pytest_plugin import sse_events``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import SentEvents

# django_sse.testing is imported by the fixture, not here: pytest loads this
# module before pytest-django has configured the settings.


@pytest.fixture
def sse_events() -> Iterator[SentEvents]:
    """The events published during the test (:func:`django_sse.testing.capture_events`).

    On-commit events count once committed: wrap the code in
    ``django_sse.testing.run_on_commit()`` under pytest-django's ``db``
    fixture, whose transaction never commits."""
    from .testing import capture_events

    with capture_events() as sent:
        yield sent
