"""Sphinx configuration for the django-sse-notify documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# autodoc imports django_sse, which reads Django settings: use the test settings.
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django  # noqa: E402

django.setup()

import django_sse  # noqa: E402

project = "django-sse-notify"
author = "django_sse developers"
copyright = "django_sse developers"
release = django_sse.__version__
version = release

extensions = ["sphinx.ext.autodoc"]

autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"

templates_path: list[str] = []
exclude_patterns = ["_build"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"

html_theme = "furo"
html_title = f"django-sse-notify {release}"
html_static_path: list[str] = []


def setup(app):  # type: ignore[no-untyped-def]
    # ``.. setting:: SSE_X`` targets and ``:setting:`SSE_X``` references.
    app.add_crossref_type("setting", "setting", indextemplate="pair: %s; setting")
