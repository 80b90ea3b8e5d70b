"""``signup-admin replay``: selection, idempotence and the one-invitation rule, over fakes and as a process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shared.admin.replay import Replayer, Selection
from shared.errors import PermanentGraphError
from shared.lifecycle.models import Status
from shared.services import Services
from tests.fakes import FakeDirectory
from tests.lifecycle_kit import Kit

REFUSED = PermanentGraphError("no", code="Authorization_RequestDenied", status=403)


async def _failed_kit(*emails: str) -> tuple[Kit, list[str]]:
    kit = Kit(directory=FakeDirectory([REFUSED] * len(emails)))
    ids = [await kit.submit(email) for email in emails]
    await kit.run_until_quiet()
    assert all(kit.record(i).status is Status.FAILED for i in ids)
    return kit, ids


async def test_replay_by_error_code_requeues_and_the_signups_end_invited() -> None:
    """After the fix, replaying by code re-admits every failed sign-up; a second replay changes nothing."""
    kit, ids = await _failed_kit("a@fabrikam.com", "b@fabrikam.com")
    replayer = Replayer(kit.store, kit.admission)
    results = [r async for r in replayer.replay(Selection(error_code="Authorization_RequestDenied"))]
    assert sorted((r.signup_id, r.action) for r in results) == sorted((i, "requeued") for i in ids)
    await kit.run_until_quiet()
    assert all(kit.record(i).status is Status.INVITED for i in ids)
    assert [r async for r in replayer.replay(Selection(error_code="Authorization_RequestDenied"))] == []
    again = [r async for r in replayer.replay(Selection(ids=tuple(ids)))]
    assert {r.action for r in again} == {"skipped"}


async def test_replay_links_to_a_newer_signup_of_the_same_address() -> None:
    """A failed sign-up whose address a newer pending sign-up owns is linked to it, not invited twice."""
    kit, [old] = await _failed_kit("a@fabrikam.com")
    newer = await kit.submit("a@fabrikam.com")
    [result] = [r async for r in Replayer(kit.store, kit.admission).replay(Selection(ids=(old,)))]
    assert (result.action, kit.record(old).linked_to) == ("linked", newer)


async def test_dry_run_and_selection_bounds_change_nothing() -> None:
    """--dry-run reports without writing; other codes, times and unknown ids are left alone."""
    kit, [sid] = await _failed_kit("a@fabrikam.com")
    replayer = Replayer(kit.store, kit.admission)
    [dry] = [r async for r in replayer.replay(Selection(error_code="Authorization_RequestDenied"), dry_run=True)]
    assert dry.action == "dry-run" and kit.record(sid).status is Status.FAILED
    assert [r async for r in replayer.replay(Selection(error_code="BadRequest"))] == []
    late = kit.clock.now.replace(year=2027)
    assert [r async for r in replayer.replay(Selection(since=late))] == []
    [missing] = [r async for r in replayer.replay(Selection(ids=("nope",)))]
    assert missing.action == "missing"


async def test_console_script_replays_against_azurite(
    services: Services, app_env: dict[str, str], repo_root: Path
) -> None:
    """The installed command finds a failed sign-up in Table storage, requeues it and says so."""
    from shared.lifecycle.validation import SignupForm

    signup = await services.intake.submit(SignupForm("replay@fabrikam.com", "R", None, None))
    record = await services.worker._store.get(signup.id)
    assert record is not None
    await services.worker._store.replace(
        record.evolve(status=Status.FAILED, error_code="serviceNotAvailable", due_at=None)
    )
    code, out, err = await _signup_admin(["replay", "--error-code", "serviceNotAvailable"], app_env, repo_root)
    assert code == 0, err
    assert f"requeued  {signup.id}" in out and "replay: 1 requeued" in out
    assert "replay@" not in out  # the domain is printed, never the address
    replayed = await services.worker._store.get(signup.id)
    assert replayed is not None and replayed.status is Status.QUEUED and replayed.error_code is None
    code, out, _ = await _signup_admin(["replay", "--error-code", "serviceNotAvailable"], app_env, repo_root)
    assert code == 1 and "nothing matched" in out


async def _signup_admin(args: list[str], env: dict[str, str], repo_root: Path) -> tuple[int, str, str]:
    """Run the installed console script; (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "signup-admin"),
        *args,
        cwd=repo_root / "tests",  # no local.settings.json there: the environment is the whole configuration
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()
