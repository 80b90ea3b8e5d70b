"""``signup-admin convert`` as a process against the emulator and Azurite: exit codes, confirmation, input files
in other encodings and delimiters, a dry run that writes nothing (also on an unfinished run's report), Ctrl-C twice
then resumed, and pacing in the shared write budget."""

from __future__ import annotations

import asyncio
import csv
import os
import pty
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from graph_emulator.populate import conversion_users, write_input
from graph_emulator.server import Fault, GraphEmulator
from shared.graph.budget import WRITES, TableBudgetStore
from shared.services import build_gate
from shared.settings import load_settings
from shared.storage import build_table_client
from tests.conftest import host_env, unique_names

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.faults


@pytest.fixture
def env(azurite: str, graph_base: str) -> dict[str, str]:
    values = {k: v for k, v in host_env(azurite, graph_base).items() if not k.startswith("DEVHOST_")}
    values["GRAPH_PACING_MODE"] = "local"
    values["PYTHONPATH"] = str(ROOT)
    return values


def rows(report: Path) -> list[dict[str, str]]:
    with report.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _count(path: Path, outcome: str) -> int:
    try:
        return sum(1 for row in rows(path) if row["outcome"] == outcome)
    except (FileNotFoundError, KeyError):
        return 0


async def convert(
    env: dict[str, str], *args: str, stdin: int | None = asyncio.subprocess.DEVNULL
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.admin.cli",
        "convert",
        *args,
        env=env,
        cwd=str(ROOT),
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def writes(emulator: GraphEmulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in emulator.requests if r.method != "GET"]


async def test_usage_errors_exit_3(env: dict[str, str], tmp_path: Path) -> None:
    source, report = tmp_path / "users.csv", str(tmp_path / "report.csv")
    source.write_text("user\nann@contoso.com\n", encoding="utf-8")
    code, _, err = await convert(env, str(source), "--report", report, "--yes")
    assert code == 3 and "--mail microsoft" in err  # the mail choice is explicit on every run
    assert (await convert(env, str(source), "--report", report, "--mail", "organisation", "--yes"))[0] == 3
    assert (await convert(env, str(source), "--report", report, "--mail", "none", "--bogus"))[0] == 3
    assert (await convert(env, str(tmp_path / "missing.csv"), "--report", report, "--mail", "none"))[0] == 3
    code, _, err = await convert(env, str(source), "--report", report, "--mail", "none")  # stdin not a terminal
    assert code == 3 and "--yes" in err
    code, _, err = await convert(
        env, str(source), "--report", report, "--mail", "organisation", "--mail-profile", "x", "--yes"
    )
    assert code == 3 and "no policy profile" in err


async def test_input_encodings_and_delimiters(env: dict[str, str], emulator: GraphEmulator, tmp_path: Path) -> None:
    users = conversion_users(2)
    emulator.seed(users)
    report = str(tmp_path / "report.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user\nrené@contoso.com\n".encode("cp1252"))
    code, _, err = await convert(env, str(latin), "--report", report, "--mail", "none", "--dry-run")
    assert code == 3 and "--encoding" in err and "Traceback" not in err
    code, _, err = await convert(
        env, str(latin), "--report", report, "--mail", "none", "--dry-run", "--encoding", "cp1252"
    )
    assert code == 1, err  # read; the user is not found (a pre-check refusal)
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text("user;email\n" + "".join(f"{u['id']};{u['mail']}\n" for u in users), encoding="utf-8-sig")
    code, _, err = await convert(env, str(semicolons), "--report", report, "--mail", "none", "--dry-run")
    assert code == 0, err
    assert Counter(r["outcome"] for r in rows(tmp_path / "report.dry-run.csv"))["WouldConvert"] == 2
    utf16 = tmp_path / "unicode.txt"
    utf16.write_text("user\tremark\n" + "".join(f"{u['id']}\tRené\n" for u in users), encoding="utf-16")
    code, _, err = await convert(env, str(utf16), "--report", report, "--mail", "none", "--dry-run")
    assert code == 0, err
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(f"user\n{users[0]['id']};x\n", encoding="utf-8")
    code, _, err = await convert(env, str(mixed), "--report", report, "--mail", "none", "--dry-run")
    assert code == 3 and "--delimiter" in err and "Traceback" not in err
    assert writes(emulator) == []


async def test_dry_run_writes_nothing_anywhere(env: dict[str, str], emulator: GraphEmulator, tmp_path: Path) -> None:
    users = conversion_users(28)
    emulator.seed(users)
    source, report = tmp_path / "users.csv", tmp_path / "report.csv"
    write_input(users, source, twice_every=5)
    args = [str(source), "--report", str(report), "--mail", "none", "--set-guest-user-type", "--dry-run"]
    code, _, err = await convert(env, *args)
    assert code == 1, err  # some users are refused by a pre-check
    assert writes(emulator) == []  # the emulator's request log: reads only
    assert not report.exists()  # the report a live run resumes from is untouched
    outcomes = Counter(r["outcome"] for r in rows(tmp_path / "report.dry-run.csv"))
    assert outcomes["WouldConvert"] == sum(1 for u in users if u["expected"] == "Eligible")


async def test_a_live_run_asks_with_the_dry_run_counts(
    env: dict[str, str], emulator: GraphEmulator, tmp_path: Path
) -> None:
    users = conversion_users(7)  # all eligible
    emulator.seed(users)
    source, report = tmp_path / "users.csv", tmp_path / "report.csv"
    write_input(users, source)
    args = [str(source), "--report", str(report), "--mail", "microsoft"]
    for answer, expected_posts in (("n", 0), ("y", 7)):
        leader, follower = pty.openpty()
        os.write(leader, f"{answer}\n".encode())
        try:
            code, out, err = await convert(env, *args, stdin=follower)
        finally:
            os.close(follower)
            os.close(leader)
        assert "7 WouldConvert" in out and "Convert 7 users?" in out
        assert code == 0, err
        assert len([r for r in emulator.requests if r.operation == "invitation"]) == expected_posts
    assert "converted=7" in err and "refused=0" in err  # the progress bar's counts
    assert len([r for r in emulator.requests if r.operation == "invitation"]) == 7
    code, out, _ = await convert(env, *args, "--yes")
    assert code == 0 and "7 already settled" in out


async def test_ctrl_c_at_the_confirmation_ends_the_command(
    env: dict[str, str], emulator: GraphEmulator, tmp_path: Path
) -> None:
    """Ctrl-C at the confirmation question: nothing is started, and the command ends (exit 2). The signal is sent as
    soon as the question shows: with input() it could land before the read began and was then ignored until a line
    came (the hang seen under the full xdist run; shared/admin/convert.py, ``ask``)."""
    fresh = conversion_users(1, start=14 * 300)
    emulator.seed(fresh)
    one = tmp_path / "one.csv"
    write_input(fresh, one)
    leader, follower = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            # Niced: the command runs late after showing the question, as on a loaded machine (the race above).
            "nice", "-n", "19", sys.executable, "-m", "shared.admin.cli", "convert", str(one),
            "--report", str(tmp_path / "r2.csv"), "--mail", "none",
            env=env, cwd=str(ROOT), stdin=follower, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdout is not None
        shown = b""
        while b"[y/N]" not in shown:
            chunk = await asyncio.wait_for(process.stdout.read(64), 120)
            assert chunk, f"ended before asking: {shown!r}"
            shown += chunk
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 2
        assert len([r for r in emulator.requests if r.operation == "invitation"]) == 0
    finally:
        os.close(follower)
        os.close(leader)


async def test_exit_codes(env: dict[str, str], emulator: GraphEmulator, tmp_path: Path) -> None:
    users = conversion_users(14)
    emulator.seed(users)
    eligible = [u for u in users if u["expected"] == "Eligible"]
    only_eligible, everyone = tmp_path / "eligible.csv", tmp_path / "all.csv"
    write_input(eligible, only_eligible)
    write_input(users, everyone)
    base = ["--mail", "microsoft", "--yes"]
    assert (await convert(env, str(only_eligible), "--report", str(tmp_path / "a.csv"), *base))[0] == 0
    assert (await convert(env, str(everyone), "--report", str(tmp_path / "b.csv"), *base))[0] == 1
    emulator.faults.append(Fault("503", rate=1.0, retry_after=None))
    fresh = conversion_users(1, prefix="late")
    emulator.seed(fresh)
    late = tmp_path / "late.csv"
    write_input(fresh, late)
    assert (await convert(env, str(late), "--report", str(tmp_path / "c.csv"), *base))[0] == 2  # rerun needed
    emulator.faults[:] = [Fault("403", operation="invitation")]
    code, _, err = await convert(env, str(late), "--report", str(tmp_path / "c.csv"), *base)
    assert code == 3 and "permission" in err


async def _start(env: dict[str, str], args: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.admin.cli", "convert", *args, env=env, cwd=str(ROOT),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _rows_seen(report: Path, outcome: str, more_than: int) -> None:
    for _ in range(3000):
        await asyncio.sleep(0.02)
        if await asyncio.to_thread(_count, report, outcome) > more_than:
            return
    raise AssertionError(f"no more than {more_than} {outcome} rows")


def _posts(emulator: GraphEmulator) -> list[float]:
    return [r.at for r in emulator.requests if r.operation == "invitation"]


async def test_ctrl_c_twice_then_resumed_converts_each_user_once(
    env: dict[str, str], emulator: GraphEmulator, tmp_path: Path
) -> None:
    """Ctrl-C once: nothing new starts, the calls in flight finish. Ctrl-C twice: stop at once, the rows in flight
    stay in doubt. Then resumed: every eligible user converted exactly once, no doubt lost."""
    users = conversion_users(42)
    emulator.seed(users)
    source, report = tmp_path / "users.csv", tmp_path / "report.csv"
    write_input(users, source, twice_every=4)
    emulator.config.latency_ms = 700  # each call: reads and invitations are in flight for a while
    args = [str(source), "--report", str(report), "--mail", "none", "--yes", "--concurrency", "4"]

    once = await _start(env, args)
    await _rows_seen(report, "Converted", 1)  # the workers have just begun reading their next users
    process_signal_at = time.time()
    once.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(once.wait(), 30) == 2  # rerun needed
    # Workers that were reading a user when Ctrl-C came do not go on to invite it.
    assert [at for at in _posts(emulator) if at > process_signal_at + 0.3] == []
    assert "Attempting" not in {row["user"]: row["outcome"] for row in rows(report)}.values()  # all finished

    emulator.config.latency_ms = 4000  # invitations in flight long enough to see the command leave them
    twice = await _start({**env, "GRAPH_TIMEOUT_SECONDS": "30"}, args)
    before = await asyncio.to_thread(_count, report, "Attempting")
    await _rows_seen(report, "Attempting", before)
    twice.send_signal(signal.SIGINT)
    await asyncio.sleep(0.2)
    twice.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(twice.wait(), 30) == 2
    # At once: the command has gone while Graph is still working on the invitations it sent.
    assert [r for r in emulator.requests if r.path.endswith("/invitations") and r.status is None]
    last = {row["user"]: row["outcome"] for row in rows(report)}
    assert "Attempting" in last.values()  # the doubt is kept, not settled
    await asyncio.sleep(4.5)  # the abandoned calls reach the emulator's answer (Graph acts on them)

    emulator.config.latency_ms = 0
    for _ in range(3):
        code, _, err = await convert(env, *args)
        if code in (0, 1):
            break
    assert code == 1, err  # some users are refused by a pre-check
    performed = Counter(inv["user_id"] for inv in emulator.invitations if not inv["reset"])
    for user in users:
        assert performed[user["id"]] == (1 if user["expected"] == "Eligible" else 0), user
    last = {row["user"]: row["outcome"] for row in rows(report)}
    assert not set(last.values()) & {"Attempting", "Unknown", "Deferred", "Failed"}


# -- the shared budget, and a dry run on an unfinished run's report ---------------------------------------------

WRITE_OPERATIONS = {"invitation", "user-update", "group-member-ref", "send-mail"}


def _eligible(count: int, prefix: str) -> list[dict[str, Any]]:
    return [u for u in conversion_users(count * 14, prefix) if u["expected"] == "Eligible"][:count]


async def test_the_cli_paces_inside_the_shared_budget(
    env: dict[str, str], emulator: GraphEmulator, tmp_path: Path
) -> None:
    """Another instance met a 429 and paused the shared budget for a minute: the command sends no write and defers
    every user (a rerun needed). With the budget free, its writes take slots in the shared schedule in Table storage.
    (With GRAPH_PACING_MODE=local it converts during the pause, and this fails.)"""
    users = _eligible(6, "paced")
    emulator.seed(users)
    paused, free = tmp_path / "paused.csv", tmp_path / "free.csv"
    write_input(users[:3], paused)
    write_input(users[3:], free)
    shared = {**env, "GRAPH_PACING_MODE": "shared", "GRAPH_PACING_MAX_WAIT_SECONDS": "2"}
    settings = load_settings(shared)
    table = build_table_client(settings)
    async with table:
        gate = build_gate(settings, table)
        assert gate is not None
        await gate.throttled(60.0)  # what a 429 met by any instance does: every instance pauses
        report = tmp_path / "paused-report.csv"
        code, _, err = await convert(shared, str(paused), "--report", str(report), "--mail", "microsoft", "--yes")
        assert code == 2, err  # rerun needed
        assert [r for r in emulator.requests if r.operation in WRITE_OPERATIONS] == []
        last = {row["user"]: row["outcome"] for row in rows(report)}
        assert len(last) == 3 and set(last.values()) == {"Deferred"}

    other = {**shared, **unique_names()}  # a budget of its own, not paused
    started = time.time()
    report = tmp_path / "free-report.csv"
    code, _, err = await convert(other, str(free), "--report", str(report), "--mail", "microsoft", "--yes")
    assert code == 0, err
    async with build_table_client(load_settings(other)) as other_table:
        state = await TableBudgetStore(other_table).read(WRITES)
    assert len([r for r in emulator.requests if r.operation == "invitation"]) == 3
    assert state is not None and state.tat >= started  # the command's writes were scheduled in the shared state


async def test_a_dry_run_on_an_unfinished_runs_report_changes_nothing(
    env: dict[str, str], emulator: GraphEmulator, tmp_path: Path
) -> None:
    """A run stops part-way (Ctrl-C); ``--dry-run`` with the same report writes nothing to Graph or to that report,
    counts only the users left, and the next live run converts each remaining user once."""
    users = _eligible(16, "dry")
    emulator.seed(users)
    source, report = tmp_path / "users.csv", tmp_path / "report.csv"
    write_input(users, source)
    args = [str(source), "--report", str(report), "--mail", "none", "--concurrency", "2"]
    emulator.config.latency_ms = 150  # a run long enough to stop part-way

    stopped = await _start(env, [*args, "--yes"])
    await _rows_seen(report, "Converted", 3)
    stopped.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(stopped.wait(), 60) == 2  # rerun needed
    emulator.config.latency_ms = 0
    converted = {row["user"] for row in rows(report) if row["outcome"] == "Converted"}
    assert 3 < len(converted) < len(users)
    directory_before = {u["id"]: dict(emulator.users[u["id"]]) for u in users}
    report_before, seen = report.read_bytes(), len(emulator.requests)

    code, out, err = await convert(env, *args, "--dry-run")
    assert code == 0, err
    assert [r.operation for r in emulator.requests[seen:] if r.operation in WRITE_OPERATIONS] == []
    assert {u["id"]: emulator.users[u["id"]] for u in users} == directory_before
    assert report.read_bytes() == report_before  # the report a live run resumes from is untouched
    would = {row["user"] for row in rows(tmp_path / "report.dry-run.csv") if row["outcome"] == "WouldConvert"}
    assert would == {row["user"] for row in rows(source)} - converted  # the users left, read from the same report
    assert f"{len(converted)} already settled" in out

    code, _, err = await convert(env, *args, "--yes")
    assert code == 0, err
    last = {row["user"]: row["outcome"] for row in rows(report)}
    assert set(last.values()) == {"Converted"} and len(last) == len(users), Counter(last.values())
    performed = Counter(inv["user_id"] for inv in emulator.invitations if not inv["reset"])
    assert performed == {u["id"]: 1 for u in users}
