"""``make run``: Azurite, the Graph emulator and the function app, stopped together on Ctrl-C.

* Creates ``local.settings.json`` from the sample when it is missing.
* Starts Azurite (data under ``.azurite/``) unless ``AzureWebJobsStorage`` in the
  environment points somewhere other than development storage, or Azurite is
  already listening.
* Starts the Graph emulator unless ``GRAPH_BASE_URL`` is set in the environment,
  and points the app at it (environment variables win over local.settings.json).
* Serves the app on http://127.0.0.1:7071 with ``func start`` when Core Tools is
  on the PATH, otherwise with the project's local host (``python -m devhost``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devhost.processes import (
    ROOT,
    Service,
    http_ok,
    port_open,
    start,
    start_azurite,
    start_emulator,
    wait_until,
)
from shared.storage import is_development_storage

EMULATOR_PORT = int(os.environ.get("GRAPH_EMULATOR_PORT", "7081"))
APP_PORT = int(os.environ.get("FUNCTIONS_HTTP_PORT", "7071"))


def _interrupt(*_: object) -> None:
    """SIGTERM stops everything the same way Ctrl-C does."""
    raise KeyboardInterrupt


def stop_all(started: Sequence[Service]) -> None:
    """Stop what was started, last first, each with a grace period.

    A further Ctrl-C or SIGTERM meanwhile must not cut the clean-up short: Azurite runs in its own process
    group and would outlive us, holding the ports the next ``make run`` needs. Instead it hurries the
    clean-up: every service still running is killed at once (SIGKILL to its process group).
    """

    def hurry(*_: object) -> None:
        for service in started:
            if service.process.returncode is None:  # not reaped yet, so its process group is still ours
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signal.SIGKILL)

    previous = {number: signal.signal(number, hurry) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        for service in reversed(started):
            service.stop()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main() -> int:
    run_dir = ROOT / ".run"
    settings = ROOT / "local.settings.json"
    if not settings.exists():
        shutil.copy(ROOT / "local.settings.sample.json", settings)
        print("created local.settings.json from local.settings.sample.json")

    env = dict(os.environ)
    started: list[Service] = []

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        storage = env.get("AzureWebJobsStorage", "UseDevelopmentStorage=true")
        if is_development_storage(storage):
            if port_open(10001) and port_open(10002):
                print("Azurite is already listening on 10000-10002; using it")
            else:
                started.append(start_azurite(ROOT / ".azurite", run_dir, 10000, 10001, 10002))
                print("Azurite: http://127.0.0.1:10000-10002 (data in .azurite/)")

        if "GRAPH_BASE_URL" not in env:
            started.append(start_emulator(EMULATOR_PORT, run_dir, ["--demo-directory"]))
            base = f"http://127.0.0.1:{EMULATOR_PORT}"
            env.update(
                GRAPH_BASE_URL=f"{base}/v1.0",
                GRAPH_CREDENTIAL=env.get("GRAPH_CREDENTIAL", "managed_identity"),
                IDENTITY_ENDPOINT=env.get("IDENTITY_ENDPOINT", f"{base}/msi/token"),
                IDENTITY_HEADER=env.get("IDENTITY_HEADER", "local-graph-emulator"),
            )
            print(f"Graph emulator: {base}/v1.0 (requests it received: {base}/_emulator/requests)")
        else:
            print(f"Graph: {env['GRAPH_BASE_URL']} (from the environment)")

        # The local host enforces function keys on the admin routes (/api/manage/...), as Azure does.
        if not env.get("DEVHOST_FUNCTION_KEY"):
            env["DEVHOST_FUNCTION_KEY"] = secrets.token_urlsafe(24)
            key = env["DEVHOST_FUNCTION_KEY"]
            print(f"DEVHOST_FUNCTION_KEY (generated for this run; send it as x-functions-key): {key}")
        if shutil.which("func"):
            argv = ["func", "start", "--port", str(APP_PORT)]
        else:
            argv = [sys.executable, "-m", "devhost", "--port", str(APP_PORT)]
            print("Azure Functions Core Tools not found; using the project's local host")
        host = start("functions", argv, run_dir, env=env, echo=True)
        started.append(host)
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{APP_PORT}/admin/host/status") or port_open(APP_PORT),
            host,
            120,
            "function host",
        )
        print(f"\nSign-up API: POST http://127.0.0.1:{APP_PORT}/api/signups")
        print(f"Admin API:   http://127.0.0.1:{APP_PORT}/api/manage/signups?status=pending_approval (x-functions-key)")
        print("(Ctrl-C stops everything)\n")
        while host.process.poll() is None:
            time.sleep(0.5)
        return host.process.returncode or 0
    except KeyboardInterrupt:
        print("\nstopping ...")
        return 0
    finally:
        stop_all(started)


if __name__ == "__main__":
    sys.exit(main())
