"""The benchmark harness behind ``benchmarks/bench.py``: load client, servers,
scenarios and reports."""
