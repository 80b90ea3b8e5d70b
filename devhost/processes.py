"""Starting and stopping the local services (Azurite, the Graph emulator, the host).

Used by ``scripts/run.py`` (``make run``), the test fixtures and the benchmarks,
so every one of them starts the services the same way and stops what it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def azurite_connection_string(queue_port: int, table_port: int, blob_port: int) -> str:
    """The connection string for an Azurite on the given ports."""
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={base}:{blob_port}/devstoreaccount1;"
        f"QueueEndpoint={base}:{queue_port}/devstoreaccount1;"
        f"TableEndpoint={base}:{table_port}/devstoreaccount1;"
    )


@dataclass
class Service:
    """A child process we started, with where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (the whole process group)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=grace)

    def tail(self, lines: int = 40) -> str:
        """The end of the service's log (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    echo: bool = False,
) -> Service:
    """Start ``argv`` in its own process group, its output to ``log_dir/name.log`` (and the terminal)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    out = None if echo else open(log_path, "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(  # noqa: S603 - argv is built here from fixed programs, no shell
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
    )
    if out:
        out.close()
    return Service(name, process, log_path)


def _ready(service: Service, check: object, timeout: float, what: str) -> Service:
    """``service`` once ``check()`` holds; stopped again if it never does or we are interrupted meanwhile
    (it runs in its own process group: nothing else would stop it)."""
    try:
        wait_until(check, service, timeout, what)
    except BaseException:
        service.stop()
        raise
    return service


def wait_until(check: object, service: Service | None, timeout: float, what: str) -> None:
    """Poll ``check()`` until true; fail with the service's log if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        if service is not None and service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited ({service.process.returncode}) before {what}:\n{service.tail()}")
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s" + (f":\n{service.tail()}" if service else ""))


def http_ok(url: str) -> bool:
    """True when ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def start_azurite(data_dir: Path, log_dir: Path, blob: int, queue: int, table: int, echo: bool = False) -> Service:
    """Azurite on 127.0.0.1, telemetry off, data under ``data_dir``."""
    if not AZURITE.exists():
        raise RuntimeError("Azurite is not installed; run `npm ci` (make does this)")
    data_dir.mkdir(parents=True, exist_ok=True)
    service = start(
        "azurite",
        [
            str(AZURITE),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--location",
            str(data_dir),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(table),
        ],
        log_dir,
        echo=echo,
    )
    return _ready(service, lambda: port_open(queue) and port_open(table), 30, "Azurite")


def start_emulator(port: int, log_dir: Path, extra: Sequence[str] = (), echo: bool = False) -> Service:
    """The Graph emulator on 127.0.0.1:``port``."""
    service = start(
        "graph-emulator",
        [sys.executable, "-m", "graph_emulator", "--port", str(port), *extra],
        log_dir,
        echo=echo,
    )
    return _ready(service, lambda: http_ok(f"http://127.0.0.1:{port}/_emulator/stats"), 30, "Graph emulator")


def start_devhost(
    port: int, env: Mapping[str, str], log_dir: Path, echo: bool = False, settings_file: Path | None = None
) -> Service:
    """The local Functions host on 127.0.0.1:``port`` (``settings_file`` instead of local.settings.json)."""
    argv = [sys.executable, "-m", "devhost", "--port", str(port)]
    if settings_file is not None:
        argv += ["--settings", str(settings_file)]
    service = start("devhost", argv, log_dir, env=env, echo=echo)
    return _ready(service, lambda: http_ok(f"http://127.0.0.1:{port}/admin/host/status"), 60, "function host")
