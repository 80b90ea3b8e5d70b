"""The policy document in the local host, as the README promises: read once per process (a change needs a
restart), and a host given a bad document refuses to start."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devhost.processes import ROOT, free_port
from graph_emulator.server import GraphEmulator
from tests.conftest import TEST_POLICY, host_env, running_host

pytestmark = pytest.mark.e2e


def _start_and_wait(env: dict[str, str], logs: Path) -> subprocess.CompletedProcess[str]:
    """Run the local host as `make run` would; it must exit on its own within a minute."""
    return subprocess.run(
        [sys.executable, "-m", "devhost", "--port", str(free_port()), "--settings", str(logs / "none.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param('{"defaultAction": "approve", "profiles": [', "JSON", id="not-json"),
        pytest.param('{"defaultAction": "invite-everyone"}', "defaultAction", id="invalid"),
        pytest.param(None, "missing.json", id="missing"),
    ],
)
async def test_the_host_refuses_to_start_with_a_bad_policy(
    azurite: str, graph_base: str, tmp_path: Path, content: str | None, problem: str
) -> None:
    """Exit status 2 and the problem named, before serving anything."""
    policy = tmp_path / ("missing.json" if content is None else "policy.json")
    if content is not None:
        policy.write_text(content)
    env = host_env(azurite, graph_base, SIGNUP_POLICY=str(policy))
    result = await asyncio.to_thread(_start_and_wait, env, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "devhost:" in result.stderr and problem in result.stderr, result.stderr[-2000:]


async def test_the_policy_is_read_once_per_process(
    azurite: str, graph_base: str, emulator: GraphEmulator, tmp_path: Path
) -> None:
    """The document changes under a running host (fabrikam.com now blocked): the host goes on deciding by the
    one it read; a restarted host reads the new one."""
    policy = tmp_path / "policy.json"
    shutil.copy(TEST_POLICY, policy)
    env = host_env(azurite, graph_base, SIGNUP_POLICY=str(policy))
    form = {"email": "once@fabrikam.com", "displayName": "Once"}
    async with running_host(env, tmp_path) as (_, url), httpx.AsyncClient(base_url=url, timeout=15) as client:
        first = await client.post("/api/signups", json=form)
        assert first.status_code == 202, first.text
        document = json.loads(policy.read_text())
        document["blockedDomains"].append("fabrikam.com")
        policy.write_text(json.dumps(document))
        again = await client.post("/api/signups", json={**form, "email": "twice@fabrikam.com"})
        assert again.status_code == 202, again.text  # still the policy it read at first
    async with running_host(env, tmp_path) as (_, url), httpx.AsyncClient(base_url=url, timeout=15) as client:
        restarted = await client.post("/api/signups", json={**form, "email": "thrice@fabrikam.com"})
        assert restarted.status_code == 403, restarted.text
