"""Shared plumbing of the benchmarks: services on free ports, stopped when done."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from devhost.processes import (
    ROOT,
    Service,
    azurite_connection_string,
    free_port,
    start_azurite,
    start_devhost,
    start_emulator,
)

RESULTS = ROOT / "bench" / "results"


# Approves the fabrikam.com addresses the benchmarks use, with one Graph write per sign-up. The sample policy
# also adds every guest to a group: a second write, paced by the budget but a 404 at the emulator (which has no
# such group) and uncounted there, so a drain's invitations alone would show half the budget it used.
ONE_WRITE_POLICY = "tests/policies/test-domains.json"


@dataclass
class Stack:
    """Azurite, optionally the emulator, and the hosts started on top of them."""

    workdir: Path
    connection: str
    graph: str | None = None
    services: list[Service] = field(default_factory=list)

    def host(self, extra_env: Mapping[str, str]) -> tuple[str, Service]:
        """Start a local host with the base settings plus ``extra_env``; return its URL."""
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "INVITE_", "SIGNUP_", "AZURE_"))},
            "AzureWebJobsStorage": self.connection,
            "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
            "GRAPH_BASE_URL": f"{self.graph or 'http://127.0.0.1:9'}/v1.0",
            "GRAPH_CREDENTIAL": "managed_identity",
            "IDENTITY_ENDPOINT": f"{self.graph or 'http://127.0.0.1:9'}/msi/token",
            "IDENTITY_HEADER": "local-graph-emulator",
            "LOG_LEVEL": "WARNING",
            "SWEEP_SCHEDULE": "0 */1 * * * *",  # the sweeper's timer binds it
            "SIGNUP_POLICY": ONE_WRITE_POLICY,
            # A benchmark is one client posting thousands of sign-ups: no rate limits (0), which would stop it.
            "RATE_LIMIT_PER_IP": "0",
            "RATE_LIMIT_PER_DOMAIN": "0",
            **extra_env,
        }
        port = free_port()
        service = start_devhost(port, env, self.workdir, settings_file=self.workdir / "none.json")
        self.services.append(service)
        return f"http://127.0.0.1:{port}", service


@contextlib.contextmanager
def stack(emulator_args: list[str] | None = None) -> Iterator[Stack]:
    """Fresh Azurite (and emulator when ``emulator_args`` is given) on free ports; all stopped after."""
    workdir = Path(tempfile.mkdtemp(prefix="signup-bench-"))
    st = Stack(workdir, "")
    # SIGTERM's default ends the process without running the finally below, which left Azurite and the
    # emulator running; as an exception it unwinds through it like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        blob, queue, table = free_port(), free_port(), free_port()
        st.services.append(start_azurite(workdir / "azurite", workdir, blob, queue, table))
        st.connection = azurite_connection_string(queue, table, blob)
        if emulator_args is not None:
            port = free_port()
            st.services.append(start_emulator(port, workdir, emulator_args))
            st.graph = f"http://127.0.0.1:{port}"
        yield st
    finally:
        for service in reversed(st.services):
            service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def cpu_seconds(service: Service) -> float:
    """User + system CPU time of a running service's process so far (from ``/proc``; 0 where it is missing)."""
    try:
        fields = Path(f"/proc/{service.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def emulator_json(st: Stack, path: str) -> Any:
    """A control endpoint of the stack's Graph emulator, parsed."""
    with urllib.request.urlopen(f"{st.graph}/_emulator/{path}", timeout=30) as response:  # noqa: S310 - loopback
        return json.load(response)


async def fill(url: str, count: int, address: Any = None) -> list[str]:
    """POST ``count`` sign-ups (50 at a time); their ids. ``address(i)`` names the i-th address."""
    ids: list[str] = []
    async with aiohttp.ClientSession() as http:

        async def post(i: int) -> None:
            email = address(i) if address else f"guest{i:05d}@fabrikam.com"
            body = {"email": email, "displayName": f"Guest {i}"}
            async with http.post(f"{url}/api/signups", json=body) as response:
                assert response.status == 202, await response.text()
                ids.append((await response.json())["id"])

        for start in range(0, count, 50):
            await asyncio.gather(*(post(i) for i in range(start, min(count, start + 50))))
    return ids


async def statuses_of(url: str, ids: list[str]) -> dict[str, str]:
    """The public status of each of ``ids``."""
    statuses: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:

        async def get(signup_id: str) -> None:
            async with http.get(f"{url}/api/signups/{signup_id}") as response:
                statuses[signup_id] = (await response.json())["status"]

        for start in range(0, len(ids), 50):
            await asyncio.gather(*(get(i) for i in ids[start : start + 50]))
    return statuses


def wait_until_final(st: Stack, url: str, ids: list[str], started: float, deadline: float) -> dict[str, int]:
    """Wait until every sign-up is final (or ``deadline`` seconds have passed); how many end in each status.

    The emulator's count of performed invitations is watched first: asking the status API for every
    sign-up every few seconds would load storage, which the drain itself is measuring.
    """
    final: dict[str, str] = {}
    pending = list(ids)
    while pending and time.monotonic() - started < deadline:
        time.sleep(2)
        if len(final) == 0 and emulator_json(st, "stats")["invitations"] < len(ids):
            continue
        for signup_id, status in asyncio.run(statuses_of(url, pending)).items():
            if status in {"invited", "failed"}:
                final[signup_id] = status
        pending = [i for i in pending if i not in final]
    counts: dict[str, int] = {"pending": len(pending)} if pending else {}
    for status in final.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def drain_report(requests: list[dict[str, Any]], budget: int, window: float) -> dict[str, Any]:
    """Figures of a drain from the emulator's log of invitation requests: rate against the budget, 429s
    in all and after the first window (warm-up), and addresses invited more than once."""
    ok = [r for r in requests if r["status"] == 201]
    throttled = [r for r in requests if r["status"] == 429]
    first = min(r["at"] for r in requests)
    span = max(r["at"] for r in ok) - first if ok else float("nan")
    per_address: dict[str, int] = {}
    for r in ok:
        address = r["body"]["invitedUserEmailAddress"]
        per_address[address] = per_address.get(address, 0) + 1
    budget_rate = budget / window
    achieved = len(ok) / span if span else float("nan")
    return {
        "budget": f"{budget} writes / {window:g} s ({budget_rate:g}/s)",
        "drain_seconds": round(span, 1),
        "achieved_writes_per_s": round(achieved, 2),
        "fraction_of_budget": round(achieved / budget_rate, 3),
        "posts": len(requests),
        "invitations": len(ok),
        "http_429_total": len(throttled),
        "http_429_after_warmup": sum(1 for r in throttled if r["at"] > first + window),
        "duplicated": sum(1 for n in per_address.values() if n > 1),
    }


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarise(latencies: list[float], elapsed: float) -> dict[str, float]:
    """Rate and latency figures of one run."""
    return {
        "count": len(latencies),
        "rate": len(latencies) / elapsed if elapsed else float("nan"),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * percentile(latencies, 99),
    }


def save(name: str, data: Any) -> Path:
    """Write results as JSON under bench/results/ (git-ignored) and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
