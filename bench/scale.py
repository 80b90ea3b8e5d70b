"""Scale-out benchmark: 1, 2 and 4 local hosts draining one backlog inside one shared Graph write budget.

A backlog (default 1,000 sign-ups) is taken in with the worker disabled; then N
hosts with the worker enabled drain it together against one emulator that
enforces a scaled-down budget (default 300 writes per 15 s, Graph's model shrunk
tenfold) with 200 ms latency per call. For each N it reports, from the
emulator's request log and the hosts' own counters:

* achieved writes/s as a fraction of the budget (target >= 0.95 at every N),
* 429s after warm-up, i.e. after the first window (target 0),
* storage calls per Graph write spent on the shared budget,
* lost sign-ups and duplicated invitations (targets 0),

with shared pacing (the default) and, for comparison, with local-only pacing,
where each host paces itself to the whole budget.
Run: ``make bench-scale``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import Any

from .common import drain_report, emulator_json, fill, save, stack, wait_until_final

QUIET = {
    "AzureWebJobs.invite_signup.Disabled": "true",
    "AzureWebJobs.finalise_poisoned_signup.Disabled": "true",
    "AzureWebJobs.sweep_signups.Disabled": "true",
}
_USAGE = re.compile(r"budget\.usage storage_calls=(\d+)")


def run(hosts: int, mode: str, count: int, budget: int, window: float, latency_ms: int, deadline: float) -> Any:
    args = ["--write-budget", str(budget), "--write-window", str(window), "--latency-ms", str(latency_ms)]
    with stack(args) as st:
        names = {"SIGNUP_QUEUE": "scale", "SIGNUP_TABLE": "scale"}
        url, intake_host = st.host({**QUIET, **names})
        ids = asyncio.run(fill(url, count))
        intake_host.stop()

        started = time.monotonic()
        drainers = [
            st.host(
                {
                    **names,
                    "LOG_LEVEL": "INFO",
                    "GRAPH_PACING_MODE": mode,
                    "GRAPH_WRITE_BUDGET": str(budget),
                    "GRAPH_WRITE_WINDOW_SECONDS": str(window),
                }
            )
            for _ in range(hosts)
        ]
        url = drainers[0][0]
        statuses = wait_until_final(st, url, ids, started, deadline)
        for _, service in drainers:
            service.stop()
        storage_calls = 0
        for _, service in drainers:
            found = _USAGE.findall(service.log_path.read_text(errors="replace"))
            storage_calls += int(found[-1]) if found else 0
        requests = [r for r in emulator_json(st, "requests") if r["operation"] == "invitation"]

    report = drain_report(requests, budget, window)
    return {
        "hosts": hosts,
        "pacing": mode,
        "signups": count,
        **report,
        "storage_calls_per_write": round(storage_calls / report["invitations"], 3) if report["invitations"] else None,
        "lost": count - statuses.get("invited", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", default=["shared", "local"], choices=["shared", "local"])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=300.0)
    args = parser.parse_args()
    results = []
    for mode in args.modes:
        for hosts in args.hosts:
            result = run(hosts, mode, args.count, args.budget, args.window, args.latency_ms, args.deadline)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(f"results: {save('scale', results)}")


if __name__ == "__main__":
    main()
