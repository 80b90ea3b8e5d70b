"""The fault tests' stack: a dedicated Azurite per module (so pausing it disturbs no other test), a host
process on it, and the helpers that post sign-ups and wait for them to settle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devhost.processes import Service
from graph_emulator.server import GraphEmulator
from tests.conftest import host_env, start_host

FINAL = {"invited", "failed"}


@dataclass
class Stack:
    """A dedicated Azurite (so pausing it disturbs no other test) and a host process on it."""

    azurite: Service
    connection: str
    graph: str
    logs: Path
    host: Service | None = None
    url: str = ""
    env: dict[str, str] | None = None

    async def start_host(self, **extra: str) -> None:
        """Start (or restart) the local host with the same queue and table names (off the emulator's loop)."""
        self.env = self.env or host_env(self.connection, self.graph)
        self.env.update(extra)
        self.host, self.url = await start_host(self.env, self.logs)

    async def stop_host(self) -> None:
        if self.host is not None:
            await asyncio.to_thread(self.host.stop)
            self.host = None


async def submit(client: httpx.AsyncClient, email: str) -> str:
    """POST one sign-up; its status URL."""
    response = await client.post("/api/signups", json={"email": email, "displayName": email.split("@")[0]})
    assert response.status_code == 202, response.text
    return str(response.json()["statusUrl"])


async def settle(
    client: httpx.AsyncClient, urls: list[str], within: float = 90, final: set[str] = FINAL
) -> list[dict[str, Any]]:
    """Poll the status URLs until all are ``final`` (only those still pending are asked again); their views."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    views: dict[str, dict[str, Any]] = {}
    pending = list(urls)
    while pending:
        for start in range(0, len(pending), 50):
            batch = pending[start : start + 50]
            for url, response in zip(batch, await asyncio.gather(*(client.get(u) for u in batch)), strict=True):
                views[url] = response.json()
        pending = [u for u in pending if views[u]["status"] not in final]
        if pending:
            left = sorted({views[u]["status"] for u in pending})
            assert loop.time() < deadline, f"{len(pending)} still {left} after {within}s"
            await asyncio.sleep(1.0)
    return [views[u] for u in urls]


def mails(emulator: GraphEmulator) -> dict[str, int]:
    """Microsoft invitation mails per address: invitations Graph performed with sendInvitationMessage."""
    counts: dict[str, int] = {}
    for inv in emulator.invitations:
        if inv.get("mailed"):
            counts[inv["email"]] = counts.get(inv["email"], 0) + 1
    return counts
