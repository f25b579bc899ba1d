"""Publish cost and resume from the store: ``benchmarks/bench.py --scenario
publish-cost,resume`` (``--rounds`` is ``--resume-rounds``)."""

from __future__ import annotations

from _shim import run  # type: ignore[import-not-found]

if __name__ == "__main__":
    raise SystemExit(run(["publish-cost", "resume"], [], {"--rounds": "--resume-rounds"}))
