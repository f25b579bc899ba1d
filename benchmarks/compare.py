"""django_sse against django-eventstream and the floor: ``benchmarks/bench.py``
with every delivery scenario and every target (``--libraries`` is ``--targets``)."""

from __future__ import annotations

from _shim import run  # type: ignore[import-not-found]

SCENARIOS = ["fanout", "burst", "idle-memory", "send-event"]
DEFAULTS = ["--targets", "fast,view,floor,peer,peer-db", "--sizes", "100,1000,3000,10000"]
DEFAULTS += ["--idle", "1000,5000,10000"]

if __name__ == "__main__":
    raise SystemExit(run(SCENARIOS, DEFAULTS, {"--libraries": "--targets"}))
