"""Fan-out and burst of django_sse alone: ``benchmarks/bench.py --scenario
fanout,burst --targets fast`` (``--clients`` is ``--sizes``)."""

from __future__ import annotations

from _shim import run  # type: ignore[import-not-found]

if __name__ == "__main__":
    raise SystemExit(run(["fanout", "burst"], ["--targets", "fast"], {"--clients": "--sizes"}))
