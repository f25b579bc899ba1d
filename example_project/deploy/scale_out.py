"""Serve the example project from several processes behind one nginx port.

From the repository root, with Redis running and nginx installed
(``apt-get install nginx``)::

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python example_project/deploy/scale_out.py
    .venv/bin/python example_project/deploy/scale_out.py --processes 4 --server daphne --port 8080
    .venv/bin/python example_project/deploy/scale_out.py --http2 --port 8443


``make scale-out`` runs the first. It migrates the example's database, starts
``--processes`` server processes (``uvicorn``: h11 on asyncio,
``uvicorn-httptools``: httptools on uvloop, or ``daphne``; each on its own port on
127.0.0.1, all on ``RedisPubSubChannelLayer``), then nginx in the foreground
with ``nginx.conf.template`` (beside this file) in front of them on
``--port``. With ``--http2``, nginx speaks HTTP/2 over TLS with a self-signed
certificate made by ``openssl`` for 127.0.0.1 (your browser will warn): one
connection then carries every stream of every tab, instead of HTTP/1.1's six
connections per origin. An event sent from any process (``manage.py shell``, a worker, a
view on any of the servers) reaches every stream on every process. Ctrl-C
stops everything, by PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent
TEMPLATE = HERE / "nginx.conf.template"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listened on {HOST}:{port} within {timeout:g}s")


#: uvicorn's HTTP parser and event loop, explicit (uvicorn's ``auto`` picks
#: httptools and uvloop whenever they are installed).
UVICORN = {"uvicorn": ("h11", "asyncio"), "uvicorn-httptools": ("httptools", "uvloop")}


def server_command(kind: str, port: int) -> list[str]:
    app = "example_project.asgi:application"
    if kind == "daphne":
        return [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), app]
    http, loop = UVICORN[kind]
    return [
        *(sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port)),
        *("--http", http, "--loop", loop, "--no-access-log", "--lifespan", "off", app),
    ]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 and localhost, made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def render(
    prefix: Path,
    listen: str,
    ports: list[int],
    *,
    tls: tuple[Path, Path] | None = None,
    shutdown_timeout: str = "10s",
    workers: int | None = None,
    worker_connections: int | None = None,
    rlimit_nofile: int | None = None,
) -> str:
    """nginx.conf for ``ports`` on ``listen``; with ``tls`` (certificate, key),
    HTTP/2 over TLS.

    ``workers`` and ``worker_connections`` replace the template's
    ``worker_processes 1`` and ``worker_connections 8192``; ``rlimit_nofile``
    adds ``worker_rlimit_nofile``. Each stream holds two connections (two
    descriptors) in nginx, so a worker serves about ``worker_connections / 2``
    streams and must stay under the open-file limit: many streams need several
    workers (with ``reuseport`` in ``listen`` so the kernel spreads the
    connections evenly over them)."""
    upstreams = "\n".join(f"        server {HOST}:{port};" for port in ports)
    tls_lines = ""
    if tls is not None:
        listen += " ssl http2"
        tls_lines = f"        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};"
    text = TEMPLATE.read_text()
    if workers is not None:
        text = text.replace("worker_processes 1;", f"worker_processes {workers};", 1)
    if rlimit_nofile is not None:
        text = text.replace(
            "worker_shutdown_timeout",
            f"worker_rlimit_nofile {rlimit_nofile};\nworker_shutdown_timeout",
            1,
        )
    if worker_connections is not None:
        text = text.replace(
            "worker_connections 8192;", f"worker_connections {worker_connections};", 1
        )
    return (
        text.replace("@PREFIX@", str(prefix))
        .replace("@LISTEN@", listen)
        .replace("@TLS@", tls_lines)
        .replace("@SHUTDOWN_TIMEOUT@", shutdown_timeout)
        .replace("@UPSTREAMS@", upstreams)
    )


def redis_reachable(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or HOST, parts.port or 6379), timeout=2):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--server", choices=(*UVICORN, "daphne"), default="uvicorn")
    parser.add_argument("--port", type=int, default=8000, help="nginx listens here")
    parser.add_argument(
        "--http2", action="store_true", help="HTTP/2 over TLS, with a self-signed certificate"
    )
    args = parser.parse_args(argv)

    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        print("nginx is not installed: apt-get install nginx", file=sys.stderr)
        return 2
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not redis_reachable(redis_url):
        print(f"Redis at {redis_url} does not answer: start it or set REDIS_URL", file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(EXAMPLE.parent),
        # Every request reaches the processes through nginx, which appends the
        # client's address to X-Forwarded-For.
        "SSE_CLIENT_IP_HEADER": "X-Forwarded-For",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=EXAMPLE,
        env=env,
        check=True,
    )

    procs: list[subprocess.Popen[bytes]] = []

    def stop_all(*_: object) -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="django_sse-nginx-") as tmp:
        try:
            ports = []
            for _ in range(args.processes):
                port = free_port()
                proc = subprocess.Popen(server_command(args.server, port), cwd=EXAMPLE, env=env)
                procs.append(proc)
                wait_for_port(port, proc)
                ports.append(port)
            tls = self_signed_certificate(Path(tmp)) if args.http2 else None
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(render(Path(tmp), f"{HOST}:{args.port}", ports, tls=tls))
            front = subprocess.Popen([nginx, "-p", tmp, "-c", str(conf), "-g", "daemon off;"])
            procs.append(front)
            wait_for_port(args.port, front)
            print(
                f"{args.processes} {args.server} processes on ports {', '.join(map(str, ports))}, "
                f"behind nginx at {'https' if tls else 'http'}://{HOST}:{args.port}/ "
                "(Ctrl-C to stop)",
                flush=True,
            )
            front.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
