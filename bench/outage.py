"""Outage benchmark: a backlog draining through a 60 s Microsoft Graph outage.

A backlog of sign-ups (default 300) is taken in with the worker disabled. Then
Graph goes down (every invitation answers 503, and one in four of those after
acting, as a gateway timeout may), a host with the worker enabled starts
draining, and after 60 s Graph comes back. It reports, from the emulator's own
request log and the status API:

* seconds from Graph's return to the last invitation,
* Microsoft invitation mails per address (target: at most 1) and addresses mailed twice (target 0),
* sign-ups lost (not ``invited`` at the end; target 0) and those still waiting.

Run: ``make bench-outage`` (``python -m bench.outage``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from typing import Any

from .common import emulator_json, fill, save, stack, wait_until_final

QUIET = {
    "AzureWebJobs.invite_signup.Disabled": "true",
    "AzureWebJobs.finalise_poisoned_signup.Disabled": "true",
    "AzureWebJobs.sweep_signups.Disabled": "true",
}


def _control(base: str, path: str, method: str, body: Any = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - loopback emulator
        f"{base}/_emulator/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - loopback emulator
        pass


def run(count: int, outage: float, latency_ms: int, deadline: float) -> dict[str, Any]:
    with stack(["--latency-ms", str(latency_ms)]) as st:
        assert st.graph is not None
        names = {"SIGNUP_QUEUE": "outage", "SIGNUP_TABLE": "outage"}
        url, intake_host = st.host({**QUIET, **names})
        ids = asyncio.run(fill(url, count))
        intake_host.stop()

        # Graph down: plain 503s, and a quarter that act first and then answer 504 (the lost-answer case).
        _control(st.graph, "faults", "POST", [{"kind": "acted504", "rate": 0.25}, {"kind": "503"}])
        started = time.monotonic()
        url, _ = st.host(
            {
                **names,
                "SIGNUP_RETRY_INITIAL_SECONDS": "2",
                "SIGNUP_RETRY_MAX_SECONDS": "30",
                "SWEEP_SCHEDULE": "*/10 * * * * *",
            }
        )
        time.sleep(max(0.0, outage - (time.monotonic() - started)))
        _control(st.graph, "faults", "DELETE")
        back = time.time()
        statuses = wait_until_final(st, url, ids, started, deadline)
        requests = [r for r in emulator_json(st, "requests") if r["operation"] == "invitation"]

    performed = [r for r in requests if r["status"] == 201 or r.get("acted")]
    mails: dict[str, int] = {}
    for r in performed:
        if r["body"].get("sendInvitationMessage"):
            address = r["body"]["invitedUserEmailAddress"]
            mails[address] = mails.get(address, 0) + 1
    ok_after = [r["at"] for r in requests if r["status"] == 201 and r["at"] >= back]
    return {
        "signups": count,
        "outage_seconds": outage,
        "latency_ms": latency_ms,
        "posts_during_outage": sum(1 for r in requests if r["at"] < back),
        "posts": len(requests),
        "seconds_from_return_to_last_invitation": round(max(ok_after) - back, 1) if ok_after else None,
        "max_mails_per_address": max(mails.values(), default=0),
        "addresses_mailed_twice": sum(1 for n in mails.values() if n > 1),
        "addresses_never_mailed": count - len(mails),
        "final_statuses": statuses,
        "lost": count - statuses.get("invited", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds Graph stays down")
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=400.0, help="give up waiting after this many seconds")
    args = parser.parse_args()
    result = run(args.count, args.outage, args.latency_ms, args.deadline)
    print(json.dumps(result), flush=True)
    print(f"results: {save('outage', result)}")


if __name__ == "__main__":
    main()
