"""Backlog drain benchmark: 1,000 sign-ups through the local host against the Graph emulator.

The emulator enforces a scaled-down write budget (default 300 writes per 15 s,
Graph's model shrunk tenfold) with 200 ms latency per call. The backlog is taken
in with the worker disabled, then a host with the worker enabled drains it. It
reports, from the emulator's own request log:

* achieved invitation writes/s as a fraction of the budget (target >= 0.95),
* 429s after warm-up, i.e. after the first window (target 0) and in total,
* lost sign-ups (not ``invited`` at the end) and duplicated invitations
  (an address with more than one successful POST) (targets 0),

once with pacing on and once with pacing off for comparison.
Run: ``make bench-drain``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from .common import emulator_json, fill, save, stack, statuses_of

QUIET = {
    "AzureWebJobs.invite_signup.Disabled": "true",
    "AzureWebJobs.finalise_poisoned_signup.Disabled": "true",
}


def run(pacing: bool, count: int, budget: int, window: float, latency_ms: int, deadline: float) -> dict[str, Any]:
    args = ["--write-budget", str(budget), "--write-window", str(window), "--latency-ms", str(latency_ms)]
    with stack(args) as st:
        names = {"SIGNUP_QUEUE": "drain", "SIGNUP_TABLE": "drain"}
        url, intake_host = st.host({**QUIET, **names})
        ids = asyncio.run(fill(url, count))
        intake_host.stop()

        started = time.monotonic()
        url, _ = st.host(
            {
                **names,
                "GRAPH_PACING_ENABLED": str(pacing).lower(),
                "GRAPH_WRITE_BUDGET": str(budget),
                "GRAPH_WRITE_WINDOW_SECONDS": str(window),
            }
        )
        statuses: dict[str, int] = {}
        while time.monotonic() - started < deadline:
            time.sleep(2)
            statuses = asyncio.run(statuses_of(url, ids))
            if statuses.get("invited", 0) + statuses.get("failed", 0) == count:
                break
        elapsed = time.monotonic() - started
        requests = [r for r in emulator_json(st, "requests") if r["operation"] == "invitation"]

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
        "pacing": pacing,
        "signups": count,
        "budget": f"{budget} writes / {window:g} s ({budget_rate:g}/s)",
        "latency_ms": latency_ms,
        "drain_seconds": round(span, 1),
        "wall_seconds": round(elapsed, 1),
        "achieved_writes_per_s": round(achieved, 2),
        "fraction_of_budget": round(achieved / budget_rate, 3),
        "posts": len(requests),
        "http_429_total": len(throttled),
        "http_429_after_warmup": sum(1 for r in throttled if r["at"] > first + window),
        "final_statuses": statuses,
        "lost": count - statuses.get("invited", 0),
        "duplicated": sum(1 for n in per_address.values() if n > 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=300.0, help="give up waiting after this many seconds")
    parser.add_argument("--only", choices=["on", "off"], help="run one of the two configurations")
    args = parser.parse_args()
    results = []
    for pacing in (True, False):
        if args.only and args.only != ("on" if pacing else "off"):
            continue
        result = run(pacing, args.count, args.budget, args.window, args.latency_ms, args.deadline)
        print(json.dumps(result), flush=True)
        results.append(result)
    print(f"results: {save('drain', results)}")


if __name__ == "__main__":
    main()
