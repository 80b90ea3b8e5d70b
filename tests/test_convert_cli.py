"""``signup-admin convert`` as a process, for two README promises: it paces inside the shared write budget
(the one the invitation worker uses), and ``--dry-run`` on the report of an unfinished run changes nothing."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from graph_emulator.populate import conversion_users, write_input
from graph_emulator.server import GraphEmulator
from shared.graph.budget import WRITES, TableBudgetStore
from shared.services import build_gate
from shared.settings import load_settings
from shared.storage import build_table_client
from tests.conftest import host_env, unique_names
from tests.test_conversion import ROOT, _convert, _rows

pytestmark = pytest.mark.e2e

WRITE_OPERATIONS = {"invitation", "user-update", "group-member-ref", "send-mail"}


def _cli_env(azurite: str, graph_base: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in host_env(azurite, graph_base).items() if not k.startswith("DEVHOST_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _eligible(count: int, prefix: str) -> list[dict[str, object]]:
    return [u for u in conversion_users(count * 12, prefix) if u["expected"] == "Eligible"][:count]


async def test_the_cli_paces_inside_the_shared_budget(
    azurite: str, graph_base: str, emulator: GraphEmulator, tmp_path: Path
) -> None:
    """Another instance met a 429 and paused the shared budget for a minute: the CLI sends no write and
    defers every user (nothing sent). With the budget free, its writes take slots in the shared schedule in
    Table storage. (With GRAPH_PACING_MODE=local it invites during the pause, and this fails.)"""
    users = _eligible(6, "paced")
    emulator.seed(users)
    paused, free = tmp_path / "paused.csv", tmp_path / "free.csv"
    write_input(users[:3], paused)
    write_input(users[3:], free)
    env = _cli_env(azurite, graph_base, GRAPH_PACING_MODE="shared", GRAPH_PACING_MAX_WAIT_SECONDS="2")
    settings = load_settings(env)
    table = build_table_client(settings)
    try:
        gate = build_gate(settings, table)
        assert gate is not None
        await gate.throttled(60.0)  # what a 429 met by any instance does: every instance pauses
        assert await _convert(env, [str(paused), "--report", str(tmp_path / "paused-report.csv")]) == 1
        assert [r for r in emulator.requests if r.operation in WRITE_OPERATIONS] == []
        last = {row["user"]: row["outcome"] for row in _rows(tmp_path / "paused-report.csv")}
        assert len(last) == 3 and set(last.values()) == {"Deferred"}

        other = {**env, **unique_names()}  # a budget of its own, not paused
        started = time.time()
        assert await _convert(other, [str(free), "--report", str(tmp_path / "free-report.csv")]) == 0
        other_table = build_table_client(load_settings(other))
        async with other_table:
            state = await TableBudgetStore(other_table).read(WRITES)
    finally:
        await table.close()
    assert len([r for r in emulator.requests if r.operation == "invitation"]) == 3
    assert state is not None and state.tat >= started  # the CLI's writes were scheduled in the shared state


async def test_a_dry_run_on_an_unfinished_runs_report_changes_nothing(
    azurite: str, graph_base: str, emulator: GraphEmulator, tmp_path: Path
) -> None:
    """A run stops part-way; ``--dry-run`` with the same report writes nothing to Graph and does not settle
    anyone; the next real run converts every remaining user once."""
    users = _eligible(24, "dry")
    emulator.seed(users)
    source, report = tmp_path / "users.csv", tmp_path / "report.csv"
    write_input(users, source)
    env = _cli_env(azurite, graph_base, GRAPH_PACING_MODE="local")
    args = [str(source), "--report", str(report), "--concurrency", "2"]

    assert await _convert(env, args, interrupt_after=6) == 130
    converted_before = Counter(inv["user_id"] for inv in emulator.invitations)
    assert 0 < len(converted_before) < len(users)
    directory_before = {u["id"]: dict(emulator.users[u["id"]]) for u in users}
    seen = len(emulator.requests)

    # 0, or 1 when a user the stopped run left in doubt is reported as such: the exit status is not the point.
    assert await _convert(env, [*args, "--dry-run"]) in (0, 1)
    assert [r.operation for r in emulator.requests[seen:] if r.operation in WRITE_OPERATIONS] == []
    assert {u["id"]: emulator.users[u["id"]] for u in users} == directory_before

    assert await _convert(env, args) == 0
    last = {row["user"]: row["outcome"] for row in _rows(report)}
    assert set(last.values()) == {"Converted"}, Counter(last.values())
    performed = Counter(inv["user_id"] for inv in emulator.invitations)
    assert performed == {u["id"]: 1 for u in users}
