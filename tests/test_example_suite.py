"""The example project's own tests (``manage.py test``), which use django_sse.testing."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.servers import EXAMPLE, ROOT


def test_the_example_projects_tests_pass() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("REDIS_URL", None)  # the in-memory layer, as `make demo` serves it
    result = subprocess.run(
        [sys.executable, "manage.py", "test", "--noinput", "-v", "2"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # The suite ran: a discovery mistake would pass with nothing run.
    assert "announcements.tests" in result.stderr and "helpdesk.tests" in result.stderr
