"""What happens around an invitation besides ``POST /invitations``: the steps after a decision.

This package owns three side effects, each tracked on the sign-up record as a
``Step`` and driven by the same queue, retry schedule and sweeper as the
invitation itself:

* the **approver mail** of a request that waits for review (Graph ``sendMail``
  from ``MAIL_SENDER`` to the profile's approvers);
* **group assignment** after the invitation (``POST /groups/{id}/members/$ref``
  for each of the profile's groups; "already a member" is success; a write paced
  by the shared budget like an invitation);
* the **organisation's own invitation mail**, when the profile has a template:
  the invitation went out with ``sendInvitationMessage: false`` and this mail
  carries ``inviteRedeemUrl`` instead (Microsoft leaves ``customizedMessageBody``
  out when an app invites, so this is how an organisation words its own mail).

A fourth mail ends a request rather than following an invitation: when the
address belongs to a member (or to the tenant's own domains) and ``MAIL_SENDER``
is set, the address gets one "you already have an account" mail
(``account_mail``), tracked in the same ``org_mail`` step and sent before the
request's final write (``existing_account_mail``).

Mail goes at most once: the step is marked ``sending`` (a conditional write
with a write token, so an SDK-retried write that landed is recognised as ours)
before the Graph call. A lost answer leaves it ``unknown``, never retried; a
worker that died mid-call leaves it ``sending``, which a later delivery turns
into ``unknown`` once the lease has passed. Only an answer proving Graph did
not act (a refused or unreachable connection, a 429, a 4xx) puts it back to
``due``. Group additions are idempotent, so they are simply retried.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from html import escape
from typing import Any, Final

from .. import telemetry
from ..approval.mail import NAME_LIMIT, approver_mail, shortened
from ..audit import AuditEntry, AuditLog
from ..errors import (
    AmbiguousGraphError,
    ConcurrencyConflict,
    GraphError,
    PermanentGraphError,
    TransientGraphError,
)
from ..graph.directory import Directory, MailMessage
from ..lifecycle.models import Signup, Status, Step, utcnow
from ..lifecycle.queue import SignupQueue
from ..lifecycle.store import AddressBook, SignupStore, address_key
from ..lifecycle.timers import Timers
from ..lifecycle.transitions import EDGES, Event
from ..lifecycle.writes import write
from ..policy import PolicySource
from ..policy.document import MailTemplate

log = logging.getLogger(__name__)

MAX_ROUNDS: Final = 5


def render_invitation_mail(
    template: MailTemplate,
    signup: Signup,
    redeem_url: str,
    organisation: str,
    contact: str,
    requester_text: bool = True,
) -> MailMessage:
    """The organisation's invitation mail in the request's language; every value HTML-escaped.

    The display name (the requester's own text) is cut short, or left out when the profile says so,
    and never goes into the subject (``shared.approval.mail``).
    """
    language = template.language_for(signup.language)
    values = {
        "displayName": shortened(signup.display_name, NAME_LIMIT) if requester_text else "",
        "organisation": organisation,
        "redeemUrl": redeem_url,
        "contact": contact,
    }
    html = template.html[language]
    for name, value in values.items():
        html = html.replace("{" + name + "}", escape(value, quote=True))
    subject = template.subject[language]
    for name in ("organisation", "contact"):
        subject = subject.replace("{" + name + "}", values[name])
    subject = " ".join(subject.split())  # no header injection
    return MailMessage(to=(signup.email,), subject=subject, html_body=html)


class FollowUps:
    """Runs the open steps of one sign-up; called by the worker for each delivery."""

    def __init__(
        self,
        store: SignupStore,
        queue: SignupQueue,
        directory: Directory,
        audit: AuditLog,
        timers: Timers,
        *,
        policy: PolicySource,
        sender: str | None,
        manage_url: str,
        organisation: str,
        contact: str,
        signin_url: str = "https://myapps.microsoft.com",
        addresses: AddressBook | None = None,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._queue = queue
        self._directory = directory
        self._audit = audit
        self._timers = timers
        self._policy = policy
        self._sender = sender
        self._manage_url = manage_url
        self._organisation = organisation
        self._contact = contact
        self._signin_url = signin_url
        self._addresses = addresses
        self._clock = clock
        self._jitter = jitter

    # -- what intake and the worker ask -------------------------------------------------------

    async def approver_step(self, profile_name: str | None) -> Step | None:
        """The approver-mail step a new pending request starts with: due when someone can be told."""
        approvers = (await self._policy.current()).approvers_for(profile_name)
        if not approvers:
            return None
        if not self._sender:
            log.warning("onboarding.no_mail_sender approvers=%s", len(approvers))
            return Step.FAILED
        return Step.DUE

    async def invited_steps(self, signup: Signup) -> dict[str, Any]:
        """The steps an invitation opens: the profile's groups, and its mail when it has a template."""
        policy = await self._policy.current()
        profile = policy.profile(signup.policy_profile) if signup.policy_profile else None
        changes: dict[str, Any] = {}
        if profile is not None and profile.groups:
            changes["groups"] = {group: Step.DUE.value for group in profile.groups}
        if profile is not None and profile.mail_template is not None and signup.redeem_url:
            changes["org_mail"] = Step.DUE if self._sender else Step.FAILED
        return changes

    async def existing_account_mail(self, signup: Signup) -> tuple[Signup, dict[str, Any]]:
        """Before a member's (or the tenant's) address ends: its one "you already have an account" mail.

        Called while the request is still pending work; returns the record as now written and the ``org_mail``
        change for the request's final write (nothing when no mail is sent). The step is marked ``sending``
        first, so a delivery that finds it so (a crash or a lost race after the mark) never sends again.
        """
        if not self._sender:
            return signup, {}
        if signup.org_mail is Step.SENDING:
            return signup, {"org_mail": Step.UNKNOWN}  # an earlier delivery may have sent it
        if signup.org_mail is not None:
            return signup, {"org_mail": signup.org_mail}  # decided earlier
        if not await self._first_account_mail(signup):
            log.info("onboarding.account_mail_repeat signup_id=%s", signup.id)
            return signup, {}
        from .account_mail import account_mail

        message = account_mail(signup, self._organisation, self._signin_url)
        marked = await write(self._store, signup, Event.STEP, clock=self._clock, org_mail=Step.SENDING)
        try:
            await self._directory.send_mail(self._sender, message)
        except AmbiguousGraphError as exc:
            log.warning("onboarding.mail_unknown signup_id=%s step=account_mail error=%s", signup.id, exc.code)
            telemetry.count("mail.in_doubt", step="account_mail")
            return marked, {"org_mail": Step.UNKNOWN}
        except GraphError as exc:
            # A courtesy mail: not retried (the request ends now), and never worth a second mail in doubt.
            log.warning("onboarding.mail_refused signup_id=%s step=account_mail code=%s", signup.id, exc.code)
            return marked, {"org_mail": Step.FAILED}
        telemetry.count("mail.sent", step="account_mail")
        log.info("onboarding.mail_sent signup_id=%s step=account_mail", signup.id)
        return marked, {"org_mail": Step.DONE}

    async def _first_account_mail(self, signup: Signup) -> bool:
        """True when ``signup`` is the one request that mails its address in the repeat window.

        Repeated sign-ups with a member's address must not make the organisation's mailbox mail that member
        again and again: a claim of its own per address (a conditional insert, or a take-over once the request
        that mailed is older than the window) lets one request in the window send.
        """
        if self._addresses is None:
            return True
        key = address_key("account-mail:" + signup.email)
        window = timedelta(seconds=self._timers.repeat_window)
        for _ in range(MAX_ROUNDS):
            if await self._addresses.insert(key, signup.id):
                return True
            claim = await self._addresses.get(key)
            if claim is None:
                continue
            if claim.signup_id == signup.id:
                return True  # ours: the step's own marks keep it to one mail
            earlier = await self._store.get(claim.signup_id)
            if earlier is not None and self._clock() - earlier.updated_at < window:  # its mail, at its end
                return False
            if await self._addresses.take_over(claim, signup.id):
                return True
        return False

    # -- one delivery -------------------------------------------------------------------------

    async def run(self, signup: Signup) -> Signup:
        """Do the open steps of ``signup`` (pending: the approver mail; invited: groups, then the mail)."""
        now = self._clock()
        if signup.status is Status.PENDING_APPROVAL:
            if signup.approver_mail is Step.SENDING:
                return await self._abandon_sending(signup, "approver_mail", now)
            if signup.approver_mail is Step.DUE:
                policy = await self._policy.current()
                approvers = policy.approvers_for(signup.policy_profile)
                text = policy.requester_text_in_mail(signup.policy_profile)
                message = approver_mail(signup, approvers, self._manage_url, requester_text=text)
                return await self._send(signup, "approver_mail", message, "approver_mail")
            return signup
        if signup.status is not Status.INVITED:
            return signup
        if now >= self._deadline(signup):
            return await self._give_up(signup, now)
        if signup.groups_open:
            signup = await self._add_groups(signup)
            if signup.groups_open:
                return signup
        if signup.org_mail is Step.SENDING:
            return await self._abandon_sending(signup, "org_mail", now)
        if signup.org_mail is Step.DUE:
            policy = await self._policy.current()
            template = self._template(policy, signup)
            if template is None or not signup.redeem_url:
                return await self._settle(signup, org_mail=Step.FAILED)
            text = policy.requester_text_in_mail(signup.policy_profile)
            message = render_invitation_mail(
                template, signup, signup.redeem_url, self._organisation, self._contact, text
            )
            return await self._send(signup, "org_mail", message, "mail")
        return signup

    def _deadline(self, signup: Signup) -> datetime:
        return (signup.invited_at or signup.updated_at) + timedelta(seconds=self._timers.deadline)

    @staticmethod
    def _template(policy: Any, signup: Signup) -> MailTemplate | None:
        profile = policy.profile(signup.policy_profile) if signup.policy_profile else None
        return profile.mail_template if profile is not None else None

    async def _add_groups(self, signup: Signup) -> Signup:
        user_id = signup.invited_user_id or signup.existing_user_id
        for group in signup.groups_open:
            if not user_id:
                signup = await self._group_done(signup, group, "failed:NoUserId")
                continue
            try:
                await self._directory.add_group_member(group, user_id)
            except PermanentGraphError as exc:
                log.warning("onboarding.group_failed signup_id=%s group=%s code=%s", signup.id, group, exc.code)
                signup = await self._group_done(signup, group, f"failed:{exc.code or 'Refused'}")
            except (TransientGraphError, AmbiguousGraphError) as exc:
                # Adding a member twice is harmless ("already a member" is success): just try again later.
                return await self._reschedule(signup, exc)
            else:
                signup = await self._group_done(signup, group, Step.DONE.value)
        return signup

    async def _group_done(self, signup: Signup, group: str, state: str) -> Signup:
        updated = await self._settle(signup, groups={**signup.groups, group: state})
        code = state.partition(":")[2]
        event = "group_added" if state == Step.DONE.value else "group_failed"
        detail = {"group": group, **({"code": code} if code else {})}
        await self._audit.append(AuditEntry(signup.id, updated.updated_at, event, "worker", detail, group))
        return updated

    async def _send(self, signup: Signup, attr: str, message: MailMessage, event: str) -> Signup:
        """Mark the step ``sending``, send once, and record what came of it."""
        assert self._sender is not None
        # Not _settle: a lost race here means another delivery may be sending; the worker re-reads and decides.
        sending: dict[str, Any] = {attr: Step.SENDING}
        marked = await write(self._store, signup, Event.STEP, clock=self._clock, **sending)
        try:
            await self._directory.send_mail(self._sender, message)
        except AmbiguousGraphError as exc:
            log.warning("onboarding.mail_unknown signup_id=%s step=%s error=%s", signup.id, attr, exc.code)
            telemetry.count("mail.in_doubt", step=attr)
            done = await self._settle(marked, **{attr: Step.UNKNOWN})
            await self._audit.append(AuditEntry(signup.id, done.updated_at, f"{event}_unknown", "worker", {}))
            return done
        except PermanentGraphError as exc:
            log.warning("onboarding.mail_refused signup_id=%s step=%s code=%s", signup.id, attr, exc.code)
            done = await self._settle(marked, **{attr: Step.FAILED})
            await self._audit.append(
                AuditEntry(signup.id, done.updated_at, f"{event}_failed", "worker", {"code": exc.code})
            )
            return done
        except TransientGraphError as exc:
            due = await self._settle(marked, **{attr: Step.DUE})
            return await self._reschedule(due, exc)
        done = await self._settle(marked, **{attr: Step.DONE})
        telemetry.count("mail.sent", step=attr)
        recipients = {"recipients": len(message.to)}
        await self._audit.append(AuditEntry(signup.id, done.updated_at, f"{event}_sent", "worker", recipients))
        log.info("onboarding.mail_sent signup_id=%s step=%s", signup.id, attr)
        return done

    async def _abandon_sending(self, signup: Signup, attr: str, now: datetime) -> Signup:
        """A ``sending`` step whose worker is gone: it may have sent, so it becomes ``unknown``."""
        if signup.updated_at + timedelta(seconds=self._timers.lease) > now:
            await self._queue.enqueue(signup.id, self._timers.lease)  # its worker may still be at it
            return signup
        done = await self._settle(signup, **{attr: Step.UNKNOWN})
        event = "approver_mail" if attr == "approver_mail" else "mail"
        await self._audit.append(AuditEntry(signup.id, done.updated_at, f"{event}_unknown", "worker", {}))
        return done

    async def _reschedule(self, signup: Signup, exc: GraphError) -> Signup:
        attempt = signup.followup_attempts + 1
        delay = max(self._timers.backoff(attempt, self._jitter()), exc.retry_after or 0.0)
        due = self._clock() + timedelta(seconds=delay)
        updated = await self._settle(signup, followup_attempts=attempt, due_at=due)
        await self._queue.enqueue(signup.id, delay)
        log.info("onboarding.retry signup_id=%s attempt=%s delay=%.0f code=%s", signup.id, attempt, delay, exc.code)
        return updated

    async def _give_up(self, signup: Signup, now: datetime) -> Signup:
        groups = {g: ("failed:DeadlineExceeded" if s == Step.DUE.value else s) for g, s in signup.groups.items()}
        mail = Step.FAILED if signup.org_mail is Step.DUE else signup.org_mail
        done = await self._settle(signup, groups=groups, org_mail=mail)
        await self._audit.append(AuditEntry(signup.id, now, "failed", "worker", {"code": "DeadlineExceeded"}))
        log.warning("onboarding.deadline signup_id=%s", signup.id)
        return done

    async def _settle(self, signup: Signup, **changes: Any) -> Signup:
        """Write ``changes`` conditionally; on a lost race re-read and apply them to what is there now.

        Only these fields change, so an approver's decision written meanwhile is kept.
        """
        current = signup
        for _ in range(MAX_ROUNDS):
            if (current.status, current.status) not in EDGES:
                # Decided meanwhile (denied, expired, linked): the decision stands; its steps are moot.
                return current
            try:
                return await write(self._store, current, Event.STEP, clock=self._clock, **changes)
            except ConcurrencyConflict:
                fresh = await self._store.get(signup.id)
                if fresh is None:
                    raise
                current = fresh
        raise ConcurrencyConflict(f"sign-up {signup.id} kept changing")
