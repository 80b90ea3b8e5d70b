"""Guest review sweep benchmark: a sweep over 50,000 registered guests, all due for review, then the block sweep.

Azurite and the Graph emulator run as processes; the emulator holds the 50,000 guests (redeemed, so the
rules ask for a review, not a reminder), and the register is seeded directly in Azurite (records and
due entries, as ``record_invited`` writes them, due now; 50 reviewers). The sweep runs in this process
with the app's own wiring (``build_services``: the table register, the shared write budget in Azurite,
msgraph-sdk to the emulator). Reported:

* the sweep's elapsed time and guests per second;
* its storage operations by kind (reads: record gets, due-index pages, state and digest queue reads;
  writes), counted at the register and table wrappers it goes through;
* the Graph writes it spent against the write budget, by ``x-ms-throttle-priority``, from the emulator's
  request log (a review writes nothing to Graph: the digests are mail, which the directory budget does not
  count), and the digest mails sent.

Then a share of the guests (``--kept``, 0.2) is kept by a reviewer (not timed), and a second sweep runs
with the clock past ``reviewGraceDays``: the rest got no answer and are blocked (``onNoAnswer:
blockSignIn``, one ``PATCH accountEnabled`` each). For it the same figures, with the Graph writes by
``x-ms-throttle-priority`` (the lifecycle's are "low"), the 429s, and the share of the budget
(``GRAPH_WRITE_BUDGET`` per ``GRAPH_WRITE_WINDOW_SECONDS``) the writes used over the sweep's time.

Run: ``make bench-guests`` (``--guests 2000`` for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import save, stack
from shared.guests import GuestDue, GuestRecord
from shared.guests.register import TableGuestRegister, due_day

PROFILE = "partners"
REVIEWERS = 50
POLICY = {
    "profiles": [
        {
            "name": PROFILE,
            "domains": ["fabrikam.com"],
            "action": "approve",
            "groups": [],
            "lifecycle": {"reviewEveryDays": 180, "reviewGraceDays": 14, "onNoAnswer": "blockSignIn"},
        }
    ]
}


class Counting:
    """Counts the calls made through an object (the register, the digests' table) by method name."""

    def __init__(self, inner: Any, counts: Counter[str], prefix: str) -> None:
        self._inner, self._counts, self._prefix = inner, counts, prefix

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_") or name == "client":
            return attr
        counts, key = self._counts, f"{self._prefix}.{name}"

        async def counted(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return await attr(*args, **kwargs)

        return counted


def post_json(url: str, body: Any) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 - loopback
        return json.load(response)


async def seed_register(register: TableGuestRegister, ids: list[str], invited: datetime, now: datetime) -> float:
    """Insert the records and due entries (as record_invited does), 64 at a time; seconds taken."""
    began = time.perf_counter()
    day = due_day(now)
    for start in range(0, len(ids), 64):
        chunk = ids[start : start + 64]
        await asyncio.gather(*(register.schedule(GuestDue(day, uid)) for uid in chunk))
        await asyncio.gather(
            *(
                register.insert(
                    GuestRecord(
                        uid,
                        f"signup-{uid[:8]}",
                        PROFILE,
                        invited,
                        approvers=(f"reviewer{n % REVIEWERS}@contoso.com",),
                        redeemed_at=invited,
                        due_at=now,
                        updated_at=now,
                    )
                )
                for n, uid in enumerate(chunk, start)
            )
        )
    return time.perf_counter() - began


def _graph_figures(requests: list[dict[str, Any]], elapsed: float, budget: int, window: float) -> dict[str, Any]:
    writes = [r for r in requests if r["method"] in ("POST", "PATCH", "DELETE") and "sendMail" not in r["path"]]
    priorities = Counter(str(r["headers"].get("x-ms-throttle-priority", "-")) for r in writes)
    capacity = budget / window * elapsed  # the writes the budget allowed over the sweep
    return {
        "graph_reads": sum(1 for r in requests if r["method"] == "GET"),
        "graph_writes": len(writes),
        "graph_writes_by_priority": dict(priorities),
        "graph_429": sum(1 for r in requests if r.get("status") == 429),
        "budget": f"{budget} writes per {window:g} s",
        "budget_share_used": round(len(writes) / capacity, 3) if capacity else None,
        "digest_mails": sum(1 for r in requests if "sendMail" in r["path"]),
    }


async def _timed(sweep: Any, graph: str, counts: Counter[str]) -> tuple[Any, float, list[dict[str, Any]]]:
    counts.clear()
    seen_before = len(json_get(f"{graph}/_emulator/requests"))
    began = time.perf_counter()
    report = await sweep.sweep()
    elapsed = time.perf_counter() - began
    return report, elapsed, json_get(f"{graph}/_emulator/requests")[seen_before:]


def _storage_figures(counts: Counter[str]) -> dict[str, Any]:
    reads = {k: v for k, v in counts.items() if k.split(".")[1] in READS}
    return {
        "storage_reads": sum(reads.values()),
        "storage_reads_by_kind": reads,
        "storage_writes": sum(v for k, v in counts.items() if k not in reads),
        "storage_writes_by_kind": {k: v for k, v in counts.items() if k not in reads},
    }


async def run(guests: int, concurrency: int, kept_share: float) -> dict[str, Any]:
    """The review sweep over ``guests``; then, past the grace period, the sweep that blocks the unanswered."""
    import os

    from shared.guests import GuestSweep
    from shared.services import build_services
    from shared.settings import load_settings

    with stack(["--latency-ms", "0"]) as st:
        assert st.graph is not None
        ids = [f"{n:08d}-0000-4000-8000-{n:012d}" for n in range(guests)]
        users = [
            {"id": uid, "mail": f"g{n}@fabrikam.com", "userType": "Guest", "externalUserState": "Accepted"}
            for n, uid in enumerate(ids)
        ]
        for start in range(0, len(users), 5000):
            post_json(f"{st.graph}/_emulator/seed", users[start : start + 5000])
        policy_path = st.workdir / "policy.json"
        policy_path.write_text(json.dumps(POLICY))
        env = {
            **os.environ,
            "AzureWebJobsStorage": st.connection,
            "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
            "GRAPH_BASE_URL": f"{st.graph}/v1.0",
            "GRAPH_CREDENTIAL": "managed_identity",
            "IDENTITY_ENDPOINT": f"{st.graph}/msi/token",
            "IDENTITY_HEADER": "local-graph-emulator",
            "SIGNUP_POLICY": str(policy_path),
            "MAIL_SENDER": "portal@contoso.com",
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith("IDENTITY_")})
        settings = load_settings(env)
        services = build_services(settings)
        budget, window = settings.graph_write_budget, settings.graph_write_window_seconds
        try:
            sweep = services.guest_sweep
            assert sweep is not None
            actions = sweep._actions
            counts: Counter[str] = Counter()
            register = actions.register
            assert isinstance(register, TableGuestRegister)
            now = datetime.now(UTC)
            seeded = await seed_register(register, ids, now - timedelta(days=200), now)
            counted = Counting(register, counts, "register")
            actions.register = counted  # type: ignore[assignment]
            actions._audit = Counting(actions._audit, counts, "audit")  # type: ignore[assignment]
            digests = sweep._digests
            digests._table = Counting(digests._table, counts, "table")  # type: ignore[assignment]
            timed = GuestSweep(counted, actions, digests, services.policy, concurrency=concurrency)  # type: ignore[arg-type]
            report, elapsed, requests = await _timed(timed, st.graph, counts)
            review = {
                "elapsed_seconds": round(elapsed, 1),
                "guests_per_second": round(report.looked / elapsed, 1) if elapsed else None,
                "looked": report.looked,
                "steps": dict(report.steps),
                **_storage_figures(counts),
                **_graph_figures(requests, elapsed, budget, window),
                "digests": vars(report.digests),
            }
            print(json.dumps({"review_sweep": review}), flush=True)  # before the long, budget-paced block sweep
            # A share of the reviewers answer "keep" (not timed); past reviewGraceDays the rest are blocked.
            rules = (await services.policy.current()).profile(PROFILE)
            assert rules is not None and rules.lifecycle is not None
            kept = ids[: int(guests * kept_share)]
            for start in range(0, len(kept), 64):
                found = await asyncio.gather(*(register.get(uid) for uid in kept[start : start + 64]))
                await asyncio.gather(
                    *(actions.keep(r, rules.lifecycle, "reviewer0@contoso.com", None) for r in found if r)
                )
            later = now + timedelta(days=rules.lifecycle.review_grace_days, hours=1)
            actions.clock = lambda: later + (datetime.now(UTC) - now)
            after_grace = GuestSweep(
                counted,  # type: ignore[arg-type]
                actions,
                digests,
                services.policy,
                concurrency=concurrency,
                clock=actions.clock,
            )
            report, elapsed, requests = await _timed(after_grace, st.graph, counts)
            block = {
                "kept_by_reviewers": len(kept),
                "elapsed_seconds": round(elapsed, 1),
                "guests_per_second": round(report.looked / elapsed, 1) if elapsed else None,
                "looked": report.looked,
                "steps": dict(report.steps),
                **_storage_figures(counts),
                **_graph_figures(requests, elapsed, budget, window),
            }
        finally:
            await services.aclose()
    return {
        "guests": guests,
        "concurrency": concurrency,
        "seed_seconds": round(seeded, 1),
        "review_sweep": review,
        "block_sweep": block,
    }


READS = {"get", "due_page", "cursor", "in_state", "read", "partition"}


def json_get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310 - loopback
        return json.load(response)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.guests", description=__doc__)
    parser.add_argument("--guests", type=int, default=50000)
    parser.add_argument("--concurrency", type=int, default=8, help="guests looked at together (the sweep's default)")
    parser.add_argument(
        "--kept", type=float, default=0.2, help="share of guests a reviewer keeps before the grace ends"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.guests, args.concurrency, args.kept))
    print(json.dumps(result, indent=2))
    print(f"saved {save('guests', result)}")


if __name__ == "__main__":
    main()
