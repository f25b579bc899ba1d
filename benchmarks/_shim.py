"""The old entry points (fanout.py, compare.py, history.py) run ``bench.py``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


#: The old scripts' ``--no-<part>`` flags: the scenario each one leaves out.
DROPS = {"--no-burst": "burst", "--no-publish": "publish-cost", "--no-resume": "resume"}


def run(scenarios: list[str], defaults: list[str], renames: dict[str, str]) -> int:
    """``bench.py --scenario <scenarios> <defaults>``, then the caller's flags
    renamed; ``--no-<part>`` leaves a scenario out."""
    from benchmarks import bench

    given = sys.argv[1:]
    kept = [s for s in scenarios if s not in {DROPS[a] for a in given if a in DROPS}]
    args = [renames.get(a, a) for a in given if a not in DROPS]
    return bench.main(["--scenario", ",".join(kept), *defaults, *args])
