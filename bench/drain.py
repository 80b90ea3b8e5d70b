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

from .common import drain_report, emulator_json, fill, save, stack, wait_until_final

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
        statuses = wait_until_final(st, url, ids, started, deadline)
        elapsed = time.monotonic() - started
        requests = [r for r in emulator_json(st, "requests") if r["operation"] == "invitation"]
    return {
        "pacing": pacing,
        "signups": count,
        "latency_ms": latency_ms,
        "wall_seconds": round(elapsed, 1),
        **drain_report(requests, budget, window),
        "final_statuses": statuses,
        "lost": count - statuses.get("invited", 0),
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
