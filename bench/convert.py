"""Bulk conversion benchmark: ``signup-admin convert`` over 10,000 emulated internal users.

The Graph emulator is seeded with users from ``graph_emulator.populate`` (half
pass the pre-checks, internal guests among them; every tenth user is named a
second time by its other reference) and enforces a scaled write budget (default
450 writes per 15 s, 30/s: Graph's 3,000 per 150 s shape, scaled so that one
2-core machine runs the emulator, Azurite and the command without the command's
own CPU becoming the limit) with 50 ms per call. The command paces itself inside the
same budget (shared, in Azurite) as the invitation worker. Reported:

* the achieved conversion writes/s as a fraction of the budget (target >= 0.95)
  and 429s after the first window (target 0), from the emulator's request log;
* peak memory (RSS) of the command for 1,000 and for 10,000 users (target: flat);
* an interruption halfway (Ctrl-C): how long the command takes to stop, and how
  long the rerun takes to resume (to its first new conversion); that every
  eligible user ends converted exactly once;
* a run interrupted twice and resumed: Ctrl-C once at a third (nothing new
  starts), Ctrl-C twice at two thirds (stop at once, rows in flight stay in
  doubt), then the rerun: nobody converted twice, no doubt lost (every user left
  in doubt ends settled).

Run: ``make bench-convert`` (``--users 300 --small 100`` for a quick look).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from graph_emulator.populate import conversion_users, write_input

from .common import ROOT, drain_report, emulator_json, save, stack


def _env(st: Any, budget: int, window: float) -> dict[str, str]:
    prefixes = ("GRAPH_", "INVITE_", "SIGNUP_", "AZURE_")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(prefixes)},
        "PYTHONPATH": str(ROOT),
        "AzureWebJobsStorage": st.connection,
        "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
        "GRAPH_BASE_URL": f"{st.graph}/v1.0",
        "GRAPH_CREDENTIAL": "managed_identity",
        "IDENTITY_ENDPOINT": f"{st.graph}/msi/token",
        "IDENTITY_HEADER": "local-graph-emulator",
        "GRAPH_WRITE_BUDGET": str(budget),
        "GRAPH_WRITE_WINDOW_SECONDS": str(window),
        "GRAPH_INVITATION_BUDGET": str(budget),
        "GRAPH_INVITATION_WINDOW_SECONDS": str(window),
        "SIGNUP_TABLE": "convert",
    }


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _run(
    env: dict[str, str],
    source: Path,
    report: Path,
    concurrency: int,
    stop_at: int | None = None,
    twice: bool = False,
) -> dict[str, Any]:
    """One ``signup-admin convert`` process; its exit code, wall time and peak RSS (interrupted at a row count,
    with a second Ctrl-C 0.2 s after the first when ``twice``)."""
    argv = [sys.executable, "-m", "shared.admin.cli", "convert", str(source), "--report", str(report)]
    argv += ["--mail", "microsoft", "--yes", "--concurrency", str(concurrency)]
    started = time.monotonic()
    before = _lines(report)
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    first_new = None
    signalled = None
    while True:
        # wait4, not poll(): it also returns the child's resource usage (its peak RSS).
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.02)
        rows = _lines(report)
        if first_new is None and rows > max(before, 1):
            first_new = time.monotonic() - started
        if stop_at is not None and signalled is None and rows >= stop_at:
            process.send_signal(signal.SIGINT)
            signalled = time.monotonic()
            if twice:
                time.sleep(0.2)
                process.send_signal(signal.SIGINT)
    ended = time.monotonic()
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code  # reaped above
    return {
        "exit": code,
        "seconds": round(ended - started, 2),
        "first_new_row_seconds": round(first_new, 2) if first_new is not None else None,
        "stop_seconds": round(ended - signalled, 2) if signalled is not None else None,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def _last_rows(report: Path) -> dict[str, str]:
    with report.open(newline="", encoding="utf-8-sig") as handle:
        return {row["user"]: row["outcome"] for row in csv.DictReader(handle)}


def scenario(
    count: int, budget: int, window: float, latency_ms: int, concurrency: int, interrupt: int
) -> dict[str, Any]:
    """``interrupt``: 0 runs straight through; 1 Ctrl-C once halfway, then resumes; 2 the run interrupted twice."""
    users = conversion_users(count)
    args = ["--write-budget", str(budget), "--write-window", str(window), "--latency-ms", str(latency_ms)]
    args += ["--invitation-budget", str(budget), "--invitation-window", str(window)]
    with stack(None) as st:
        seed = st.workdir / "users.json"
        seed.write_text(json.dumps(users))
        from devhost.processes import free_port, start_emulator

        port = free_port()
        st.services.append(start_emulator(port, st.workdir, [*args, "--users", str(seed)]))
        st.graph = f"http://127.0.0.1:{port}"
        source, report = st.workdir / "users.csv", st.workdir / "report.csv"
        write_input(users, source, twice_every=10)
        env = _env(st, budget, window)
        runs = []
        in_doubt: set[str] = set()
        if interrupt == 1:
            runs.append(_run(env, source, report, concurrency, stop_at=count // 2))
        elif interrupt == 2:
            runs.append(_run(env, source, report, concurrency, stop_at=count // 3))
            runs.append(_run(env, source, report, concurrency, stop_at=2 * count // 3, twice=True))
            in_doubt = {u for u, o in _last_rows(report).items() if o in {"Attempting", "Unknown", "Mailing"}}
        runs.append(_run(env, source, report, concurrency))
        requests = [r for r in emulator_json(st, "requests") if r["operation"] == "invitation"]
        last = _last_rows(report)
    eligible = sum(1 for u in users if u["expected"] == "Eligible")
    performed = Counter(
        r["body"]["invitedUser"]["id"] for r in requests if r["status"] == 201 and not r["body"].get("resetRedemption")
    )
    result = {
        "users": count,
        "eligible": eligible,
        "concurrency": concurrency,
        "runs": runs,
        "converted": sum(1 for o in last.values() if o == "Converted"),
        "converted_twice": sum(1 for n in performed.values() if n > 1),
        "outcomes": dict(Counter(last.values())),
    }
    if interrupt == 2:
        # Users the double Ctrl-C left in doubt: each must end converted exactly once, under one of its names.
        names: dict[str, str] = {}
        for user in users:
            names[user["id"]] = names[user["userPrincipalName"]] = user["id"]
        converted_ids = {names[ref] for ref, outcome in last.items() if outcome == "Converted"}
        result["left_in_doubt"] = len(in_doubt)
        result["doubt_lost"] = sum(
            1 for ref in in_doubt if names[ref] not in converted_ids or performed[names[ref]] != 1
        )
        # Every eligible user's conversion is recorded under some name.
        result["eligible_not_recorded"] = sum(
            1 for u in users if u["expected"] == "Eligible" and u["id"] not in converted_ids
        )
    if not interrupt:
        result.update(drain_report(requests, budget, window))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.convert", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000, help="the smaller run, for the memory comparison")
    parser.add_argument("--budget", type=int, default=450)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    results = {
        "full": scenario(args.users, args.budget, args.window, args.latency_ms, args.concurrency, 0),
        "small": scenario(args.small, args.budget, args.window, args.latency_ms, args.concurrency, 0),
        "interrupted": scenario(args.users, args.budget, args.window, args.latency_ms, args.concurrency, 1),
        "interrupted_twice": scenario(args.users, args.budget, args.window, args.latency_ms, args.concurrency, 2),
    }
    print(json.dumps(results, indent=2))
    print(f"saved {save('convert', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
