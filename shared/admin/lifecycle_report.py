"""``signup-admin lifecycle``: what the lifecycle rules would do to each registered guest, and why (``--dry-run``),
or one guest sweep that acts (``sweep``: the same as the ``guest_sweep`` timer's run).

It reads the register, the policy's rules and the directory's guests (with ``signInActivity`` when a rule
needs it; without the tenant's licence it says so and judges nothing on it) and writes nothing anywhere:
no Graph write, no storage write (the register's reads do not even create its table).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from ..errors import FeatureUnavailable
from ..graph.directory import GuestAccount
from ..guests.planning import Plan, plan
from ..guests.register import TableGuestRegister
from ..guests.sweep import SweepReport

PAGE: int = 500


def line(item: Plan) -> str:
    """One printed line: the step, the guest's object id (never its address), its profile and the reason."""
    return f"{item.step.value:<13} {item.user_id}  {item.profile or '-':<16} {item.reason}"


async def dry_run(emit: Callable[[str], None], now: datetime | None = None) -> Counter[str]:
    """Print one line per registered guest; the count of each step."""
    from ..services import build_services
    from ..settings import get_settings
    from ..storage import build_table_client

    settings = get_settings()
    services = build_services(settings)
    table = build_table_client(settings)
    register = TableGuestRegister(table)
    moment = now or datetime.now(UTC)
    counts: Counter[str] = Counter()
    try:
        policy = await services.policy.current()
        rules = {p.name: p.lifecycle for p in policy.profiles}
        wants_sign_in = any(r is not None and r.inactive_days is not None for r in rules.values())
        accounts: dict[str, GuestAccount] = {}
        available = True
        try:
            async for page in services.directory.guest_pages(sign_in_activity=wants_sign_in):
                accounts.update((a.id, a) for a in page)
        except FeatureUnavailable:
            available = False
            emit("note: signInActivity is not available in this tenant; inactiveDays is not judged")
            async for page in services.directory.guest_pages(sign_in_activity=False):
                accounts.update((a.id, a) for a in page)
        token: str | None = None
        while True:
            records, token = await register.page(PAGE, token)
            for record in records:
                profile_rules = rules.get(record.profile) if record.profile else None
                item = plan(record, profile_rules, accounts.get(record.user_id), moment, sign_in_available=available)
                counts[item.step.value] += 1
                emit(line(item))
            if token is None:
                break
    finally:
        await table.close()
        await services.aclose()
    return counts


async def sweep(emit: Callable[[str], None]) -> SweepReport:
    """Run one guest sweep (reminders, reviews, blocks, deletions, digests), as the timer would; its report."""
    from ..services import build_services
    from ..settings import get_settings

    services = build_services(get_settings())
    try:
        assert services.guest_sweep is not None
        report = await services.guest_sweep.sweep()
    finally:
        await services.aclose()
    if report.off:
        emit("lifecycle: no policy profile has lifecycle rules; nothing to do")
        return report
    steps = ", ".join(f"{n} {step}" for step, n in sorted(report.steps.items())) or "no guest was due"
    emit(
        f"lifecycle: {steps}; {report.held} left for later, {report.stale} stale entries dropped; "
        f"digests: {report.digests.sent} sent, {report.digests.unknown} in doubt, {report.digests.waiting} wait a day"
    )
    return report
