"""What the harness measures of processes: CPU, RSS and threads from /proc, Redis
``INFO cpu``, percentiles, and where each process runs (CPU pinning)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import statistics
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL = 0.25
#: The CPUs this process may use when the harness starts, before any pinning.
CPUS = sorted(os.sched_getaffinity(0))


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                values[key] = int(rest.split()[0])
    return values


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sampler:
    """Peak RSS and thread count of the server, sampled in the background."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss_kb = 0
        self.peak_threads = 0

    def sample(self) -> dict[str, int]:
        status = proc_status(self.pid)
        self.peak_rss_kb = max(self.peak_rss_kb, status.get("VmRSS", 0))
        self.peak_threads = max(self.peak_threads, status.get("Threads", 0))
        return status

    async def run(self, limit: float) -> None:
        for _ in range(int(limit / SAMPLE_INTERVAL) + 1):
            self.sample()
            await asyncio.sleep(SAMPLE_INTERVAL)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/min/max of ``values`` (NaN for none)."""
    if not values:
        return {k: math.nan for k in ("p50", "p95", "p99", "mean", "min", "max")}
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def log_problems(text: str) -> list[str]:
    keys = ("Traceback", "ERROR", "WARNING", "Exception")
    return [line for line in text.splitlines() if any(k in line for k in keys)][:20]


#: Descriptors a process needs beyond one per stream (Python, Django, SQLite, logs).
NOFILE_SLACK = 1024


def nofile_hard() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else int(hard)


def raise_nofile(streams: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; the servers
    and load-client processes it starts inherit it. Each of them holds one end
    of a stream (one descriptor), so ``streams`` per process need ``streams +
    NOFILE_SLACK``; a warning says when the hard limit is lower (raising it
    needs privileges, and a container may cap it: 20,000 here)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = streams + NOFILE_SLACK
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, wanted))
    target = nofile_hard()
    if target > soft:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (target, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        )
    if target < wanted:
        print(
            f"warning: open-file limit {target} < {wanted} for {streams} streams in one process",
            file=sys.stderr,
        )
    return target


def two_cores() -> bool:
    return len(CPUS) >= 2


def pin_server(pid: int) -> None:
    """Servers on the first core, when there are two (the load client has the other)."""
    if two_cores():
        os.sched_setaffinity(pid, {CPUS[0]})


def pin_client(pid: int = 0) -> None:
    """The load client (this process by default) on the second core."""
    if two_cores():
        os.sched_setaffinity(pid, {CPUS[1]})


def redis_cpu(url: str) -> float:
    """``used_cpu_sys + used_cpu_user`` of the Redis server at ``url``, in seconds."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
