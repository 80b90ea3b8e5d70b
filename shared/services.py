"""The process's long-lived objects, built once on first use and reused by every invocation.

Storage clients, the Graph client and the write pacer are shared by all
concurrent invocations in one worker process (one event loop).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from . import telemetry
from .abuse import CaptchaVerifier, DomainBudget, FormTokens, SharedLimiter, SubmissionGate, TableCountStore
from .admin.replay import Replayer
from .approval import Approvals, TableDenialMemory
from .audit import TableAuditLog
from .conversion.requests import ConversionRequests
from .graph.budget import INVITATIONS, WRITES, SharedBucket, SharedGate, TableBudgetStore
from .graph.directory import InvitationOptions
from .graph.pacing import WritePacer
from .guests import Digests, GuestActions, GuestAdmin, GuestRecorder, GuestSweep, TableGuestRegister
from .lifecycle.intake import Admission, Intake, Timers
from .lifecycle.queue import StorageQueue
from .lifecycle.store import TableAddressBook, TableDueIndex, TableSignupStore
from .lifecycle.sweeper import Sweeper
from .lifecycle.worker import InvitationWorker
from .onboarding import FollowUps
from .policy import CachedPolicy, PolicySource
from .settings import GRAPH_CLOUDS, Settings, get_settings
from .stats import Overview, TableDayIndex

if TYPE_CHECKING:
    from .graph.client import MsGraphDirectory

log = logging.getLogger(__name__)

# After an attempt that may have acted, wait at least this long (or the backoff cap, if lower) so that
# Graph's eventually consistent directory shows the guest to the next attempt's read.
AMBIGUOUS_DELAY: Final = 30.0


@dataclass
class Services:
    """What the triggers call into."""

    settings: Settings
    intake: Intake
    worker: InvitationWorker
    sweeper: Sweeper
    replayer: Replayer
    approvals: Approvals
    directory: MsGraphDirectory
    conversions: ConversionRequests
    policy: PolicySource
    gate: SubmissionGate
    form_tokens: FormTokens | None = None
    captcha: CaptchaVerifier | None = None
    # The per-domain budget, for the lifecycle's admission step (over it: review, not refusal).
    domain_budget: DomainBudget | None = None
    # Issue 21: the day index every lifecycle write updates, and the admin overview read from it.
    day_index: TableDayIndex | None = None
    overview: Overview | None = None
    # The guest lifecycle after the invitation (docs/guest-lifecycle.md).
    guest_sweep: GuestSweep | None = None
    guest_admin: GuestAdmin | None = None
    closers: tuple[Any, ...] = ()

    def issue_form_token(self) -> str:
        """A form token for a page served now ('' when FORM_TOKEN_SECRET is unset: no fill-time check)."""
        return self.form_tokens.issue() if self.form_tokens is not None else ""

    @property
    def captcha_widget(self) -> dict[str, str] | None:
        """What the page needs to show the CAPTCHA, or None."""
        if self.captcha is None:
            return None
        provider = self.captcha.provider
        return {
            "css_class": provider.css_class,
            "site_key": self.settings.captcha_site_key or "",
            "script": provider.script,
        }

    @property
    def captcha_origins(self) -> tuple[str, ...]:
        """Origins the CSP must allow for the CAPTCHA widget (none without one)."""
        if self.captcha is None:
            return ()
        parts = urlsplit(self.captcha.provider.script)
        return (f"{parts.scheme}://{parts.netloc}",)

    async def aclose(self) -> None:
        """Close every client (tests and the local host call this on shutdown)."""
        for closer in self.closers:
            close = getattr(closer, "aclose", None) or closer.close
            await close()


def lease_seconds(settings: Settings) -> float:
    """How long a claim protects a sign-up: longer than one attempt can take.

    An attempt is a directory read and one POST (each bounded by the Graph timeout),
    the pacer's bounded wait, 429 pauses retried in place, and a margin
    (``LEASE_MARGIN_SECONDS``) for the storage writes around them.
    """
    return (
        2 * settings.graph_timeout_seconds
        + settings.graph_pacing_max_wait_seconds
        + settings.graph_throttle_max_wait_seconds
        + settings.lease_margin_seconds
    )


def timers(settings: Settings) -> Timers:
    """The lifecycle's timers from settings."""
    return Timers(
        retry_initial=settings.retry_initial_seconds,
        retry_max=settings.retry_max_seconds,
        deadline=settings.retry_deadline_seconds,
        repeat_window=settings.repeat_window_seconds,
        queued_grace=settings.queued_grace_seconds,
        lease=lease_seconds(settings),
        ambiguous_delay=min(AMBIGUOUS_DELAY, settings.retry_max_seconds),
        doubt_cap=settings.doubt_cap_seconds,
        pending_expiry=settings.pending_expiry_seconds,
    )


def build_gate(settings: Settings, table: Any) -> SharedGate | None:
    """The shared write budget in Table storage, or None for local-only pacing (one instance)."""
    if settings.graph_pacing_mode != "shared":
        return None
    store = TableBudgetStore(table)
    fraction = settings.graph_pacing_fallback_fraction
    return SharedGate(
        {
            WRITES: SharedBucket(
                store,
                WRITES,
                settings.graph_write_budget,
                settings.graph_write_window_seconds,
                fallback_fraction=fraction,
            ),
            INVITATIONS: SharedBucket(
                store,
                INVITATIONS,
                settings.graph_invitation_budget,
                settings.graph_invitation_window_seconds,
                fallback_fraction=fraction,
            ),
        }
    )


def build_guest_lifecycle(
    settings: Settings, table: Any, directory: Any, store: Any, audit: Any, policy: PolicySource
) -> GuestActions:
    """The guest lifecycle's actions over the lifecycle's table (the register and the digests live there)."""
    from .storage import Table

    day = timedelta(seconds=settings.guest_lifecycle_day_seconds)
    lease = lease_seconds(settings)
    digests = Digests(
        Table(table),
        directory,
        sender=settings.mail_sender,
        reviews_url=f"{settings.portal_public_url}/api/manage?tab=reviews",
        lease=lease,
        day=day,
    )
    return GuestActions(
        TableGuestRegister(table),
        directory,
        store,
        audit,
        digests,
        policy,
        sender=settings.mail_sender,
        organisation=settings.organisation_name,
        contact=settings.organisation_contact,
        lease=lease,
        day=day,
    )


def build_services(settings: Settings) -> Services:
    """Wire the real Azure Storage and Microsoft Graph implementations."""
    telemetry.configure(console=settings.telemetry_console)
    # Imported here, on the first invocation, not when the host indexes the functions: msgraph-sdk, httpx and
    # the Azure Storage SDKs are most of the app's import time (docs/benchmarks.md, "Cold start").
    from .graph.client import MsGraphDirectory, build_credential, build_graph_client, build_http_client
    from .storage import build_queue_client, build_storage_credential, build_table_client

    storage_credential = build_storage_credential(settings)
    table = build_table_client(settings, storage_credential)
    queue = build_queue_client(settings, credential=storage_credential)
    credential = build_credential(settings)
    http = build_http_client(settings)
    pacer = WritePacer(
        settings.graph_write_budget,
        settings.graph_write_window_seconds,
        enabled=settings.graph_pacing_enabled,
    )
    gate = build_gate(settings, table) if settings.graph_pacing_enabled else None
    directory = MsGraphDirectory(
        build_graph_client(settings, credential, http),
        pacer,
        max_throttle_wait=settings.graph_throttle_max_wait_seconds,
        max_pacing_wait=settings.graph_pacing_max_wait_seconds,
        gate=gate,
        # @odata.id names the object by its canonical Graph URL, even when requests go elsewhere.
        directory_object_base=f"{GRAPH_CLOUDS[settings.graph_cloud][0]}/v1.0",
    )
    audit_table = build_table_client(settings, storage_credential, settings.audit_table)
    audit = TableAuditLog(audit_table)
    day_index = TableDayIndex(table)
    store = TableSignupStore(table, record_index=day_index)
    index = TableDueIndex(table)
    signup_queue = StorageQueue(queue)
    lifecycle_timers = timers(settings)
    # A Blob policy is read with the storage identity; with a connection string (Azurite) anonymously.
    policy = CachedPolicy(settings.signup_policy, storage_credential)
    log.info(
        "services.built graph_base_url=%s credential=%s pacing=%s mode=%s budget=%s/%ss",
        settings.graph_base_url,
        settings.graph_credential,
        settings.graph_pacing_enabled,
        settings.graph_pacing_mode,
        settings.graph_write_budget,
        settings.graph_write_window_seconds,
    )
    addresses = TableAddressBook(table)
    follow_ups = FollowUps(
        store,
        signup_queue,
        directory,
        audit,
        lifecycle_timers,
        policy=policy,
        sender=settings.mail_sender,
        manage_url=f"{settings.portal_public_url}/api/manage",
        organisation=settings.organisation_name,
        contact=settings.organisation_contact,
        signin_url=settings.portal_signin_url,
        addresses=addresses,
    )
    denials = TableDenialMemory(table)
    # Rate counts: per IP at the door (the gate), per domain in the admission step (the budget).
    counts = TableCountStore(table)
    window, sync = settings.rate_limit_window_seconds, settings.rate_limit_sync_seconds
    ip_limiter = SharedLimiter(counts, "ip", window, sync)
    domain_budget = DomainBudget.create(counts, settings.rate_limit_per_domain, window, sync)
    admission = Admission(
        store,
        addresses,
        index,
        signup_queue,
        lifecycle_timers,
        denials=denials,
        audit=audit,
        approver_step=follow_ups.approver_step,
        domain_allows=domain_budget.admit,
    )
    guests = build_guest_lifecycle(settings, table, directory, store, audit, policy)
    form_tokens = (
        FormTokens(settings.form_token_secret, settings.min_fill_seconds) if settings.form_token_secret else None
    )
    captcha = None
    if settings.captcha_provider != "none" and settings.captcha_secret:
        captcha = CaptchaVerifier(settings.captcha_provider, settings.captcha_secret, settings.captcha_verify_url)
    return Services(
        settings=settings,
        intake=Intake(store, signup_queue, lifecycle_timers, policy=policy, index=index),
        worker=InvitationWorker(
            store,
            signup_queue,
            directory,
            InvitationOptions.from_settings(settings),
            lifecycle_timers,
            admission=admission,
            policy=policy,
            follow_ups=follow_ups,
            audit=audit,
            guests=GuestRecorder(
                guests.register,
                policy,
                settings.invite_sponsor_ids,
                timedelta(seconds=settings.guest_lifecycle_day_seconds),
            ),
        ),
        sweeper=Sweeper(store, index, signup_queue, admission, lifecycle_timers, audit=audit),
        replayer=Replayer(store, admission),
        approvals=Approvals(
            store,
            admission,
            index,
            audit,
            denials,
            lifecycle_timers,
            denial_memory=settings.denial_memory_seconds,
        ),
        directory=directory,
        conversions=ConversionRequests(store, index, signup_queue, audit, lifecycle_timers),
        policy=policy,
        gate=SubmissionGate(settings, ip_limiter, form_tokens, captcha),
        form_tokens=form_tokens,
        captcha=captcha,
        domain_budget=domain_budget,
        day_index=day_index,
        overview=Overview(
            day_index,
            TableBudgetStore(table) if settings.graph_pacing_mode == "shared" else None,
            budget_limit=settings.graph_write_budget,
            budget_window=settings.graph_write_window_seconds,
            cache_seconds=settings.stats_cache_seconds,
        ),
        guest_sweep=GuestSweep(guests.register, guests, guests.digests, policy),
        guest_admin=GuestAdmin(guests, directory, policy),
        # The limiters first: closing publishes their last counts, through the table client.
        closers=tuple(
            c
            for c in (ip_limiter, domain_budget, gate, table, audit_table, queue, storage_credential, http, credential)
            if c is not None
        ),
    )


_services: Services | None = None


def get_services() -> Services:
    """The process's services, built on first use from ``get_settings()``."""
    global _services
    if _services is None:
        _services = build_services(get_settings())
        settle_heap()
    return _services


def settle_heap() -> None:
    """Move what exists now (the imported modules, the clients just built) out of the cyclic collector's sight.

    Everything built so far lives as long as the process, yet a full (generation 2) collection walks all of it
    (some 90,000 objects once msgraph-sdk and the Storage SDKs are imported) and stops the event loop for 50-140
    ms (the shared development machine) while every invocation in flight waits: at 8 concurrent sign-ups that
    pause was the intake p99 (docs/benchmarks.md, "Intake"). ``gc.freeze`` leaves them out of every later
    collection. No collection first: it would add that pause to the first invocation, to free the few dozen
    objects start-up leaves as garbage (10 to 30 in the benchmarks' hosts), which are kept instead.
    """
    gc.freeze()
