"""The test project plus ``POST /bench/send/``: ``send_event`` timed inside a
sync view of a running server (``benchmarks.harness.live``)."""
