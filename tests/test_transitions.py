"""The lifecycle's table of transitions: complete, enforced at the storage boundary, and what the docs draw."""

from __future__ import annotations

import ast
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared.errors import IllegalTransition
from shared.lifecycle import transitions
from shared.lifecycle.models import Signup, Status
from shared.lifecycle.transitions import EDGES, Event, apply, check_edge, mermaid
from tests.lifecycle_kit import Kit
from tests.test_bindings import _parse

ROOT = Path(__file__).resolve().parent.parent


def test_every_status_is_reachable_and_every_non_final_one_can_move() -> None:
    """Each status is created or reached by some transition; each non-final one has a way out."""
    reached = {after for _, after in EDGES} | transitions.INITIAL
    assert reached == set(Status)
    for status in Status:
        if not status.terminal:
            assert any(before is status and after is not status for before, after in EDGES), status


def test_an_undeclared_write_is_refused_by_the_store() -> None:
    """received -> inviting skips admission: the store refuses it, whatever wrote it."""
    with pytest.raises(IllegalTransition):
        check_edge(Status.RECEIVED, Status.INVITING)
    with pytest.raises(IllegalTransition):
        check_edge(None, Status.QUEUED)  # a request is created received (or denied), never queued
    check_edge(Status.RETRYING, Status.UNKNOWN)


async def test_the_fake_store_enforces_edges_like_the_table_store() -> None:
    """A test double that let an undeclared write through would hide the bug this table exists to catch."""
    kit = Kit()
    sid = await kit.submit(admit=False)
    record = kit.record(sid)
    with pytest.raises(IllegalTransition):
        await kit.store.replace(record.evolve(status=Status.INVITED))


def test_failing_a_request_in_doubt_needs_the_doubt_cleared() -> None:
    """The doubt rule in the guards: GIVE_UP and REFUSED refuse a write that keeps maybe_invited."""
    kit = Kit()
    now = kit.clock.now
    doubtful = kit_record(now).evolve(status=Status.RETRYING, maybe_invited=True)
    with pytest.raises(IllegalTransition):
        apply(doubtful, Event.GIVE_UP, error_code="x")
    assert apply(doubtful, Event.GIVE_UP, maybe_invited=False).status is Status.FAILED
    assert apply(doubtful, Event.DOUBT_CAP).status is Status.UNKNOWN
    with pytest.raises(IllegalTransition):
        apply(doubtful.evolve(maybe_invited=False), Event.DOUBT_CAP)


def kit_record(now: datetime) -> Signup:
    """A bare record as intake writes it."""
    return Signup(
        id="a" * 22,
        email="sam@fabrikam.com",
        display_name="Sam",
        company=None,
        justification=None,
        status=Status.RECEIVED,
        created_at=now,
        updated_at=now,
        deadline=now + timedelta(hours=1),
    )


def test_only_writes_dot_write_replaces_a_record() -> None:
    """Every status write goes through the table: no module but ``writes`` calls a store's ``replace``."""
    offenders = []
    for path in (ROOT / "shared").rglob("*.py"):
        if path.name in {"writes.py", "store.py"}:
            continue
        for node in ast.walk(_parse(path.read_text())):  # retried past CPython 3.11's AST SystemError
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "replace":
                owner = ast.unparse(node.func.value)
                if "store" in owner.lower():
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_the_docs_draw_the_table() -> None:
    """docs/lifecycle.md holds the diagram ``mermaid()`` generates (python -m shared.lifecycle.transitions)."""
    text = (ROOT / "docs" / "lifecycle.md").read_text()
    blocks = re.findall(r"```mermaid\n(.*?)\n```", text, re.S)
    assert blocks and blocks[0] == mermaid()
