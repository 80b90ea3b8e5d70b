"""What the lifecycle rules do to one registered guest, at most once under every fault.

Every mail and every Graph write follows the lifecycle's rules (``shared.lifecycle.doubt``, the
``sending`` marks of ``shared.onboarding``): the step is first marked on the guest's record (``intent``,
an ETag-conditional write, so two sweeps never both act), then the call is made, then the outcome is
settled on the record. A mark found later (its sweep crashed or lost the answer) is settled by what can
be checked:

* a block, a deletion or a membership removal is checked by a directory read: done is settled as done;
  not done (read after the lease) is cleared and the rules decide again;
* a mail cannot be checked, so it is never sent again: it counts as sent (``*_unknown`` in the audit).

Only an answer proving Graph did not act (``TransientGraphError``: refused before it reached Graph, a
429, a 5xx with no effect) clears a mark at once. Writes go at priority "low" in the shared write
budget (``Directory``'s lifecycle calls default to it). Every automatic action and every decision is
written to the audit trail of the guest's sign-up. Only registered guests are ever acted on: every
entry point starts from the register's record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from ..audit import AuditEntry, AuditLog
from ..errors import AmbiguousGraphError, ConcurrencyConflict, FeatureUnavailable, GraphError, TransientGraphError
from ..graph.directory import Directory, GuestAccount
from ..lifecycle.models import utcnow
from ..lifecycle.store import SignupStore
from ..policy import PolicySource
from ..policy.lifecycle_rules import LifecycleRules, RemovalAction
from .digest import Digests
from .mails import reminder_mail
from .planning import PENDING, Plan, Step, plan
from .records import DAY, GuestDue, GuestRecord, GuestState
from .register import INDEXED_STATES, GuestRegister, index_day

log = logging.getLogger(__name__)

ACTOR: Final = "guest-lifecycle"
INACTIVE_RECHECK_DAYS: Final = 7  # how often an otherwise idle guest with inactiveDays is looked at again
BLOCK, BLOCK_DELETE, REMOVE_GROUPS, DELETE, REMIND = "block", "block-delete", "remove-groups", "delete", "remind"
ACTION_EVENTS: Final = {
    BLOCK: "guest_blocked",
    BLOCK_DELETE: "guest_blocked",
    REMOVE_GROUPS: "guest_groups_removed",
    DELETE: "guest_deleted",
}


class Busy(Exception):
    """Another sweep or decision holds the guest's mark (or wrote first): nothing was done."""


class GuestActions:
    """Marks, acts and settles, one guest at a time (the sweep and the Reviews routes share it)."""

    def __init__(
        self,
        register: GuestRegister,
        directory: Directory,
        store: SignupStore,
        audit: AuditLog,
        digests: Digests,
        policy: PolicySource,
        *,
        sender: str | None,
        organisation: str,
        contact: str,
        lease: float,
        day: timedelta = DAY,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.register = register
        self._directory = directory
        self._store = store
        self._audit = audit
        self.digests = digests
        self._policy = policy
        self._sender = sender
        self._organisation = organisation
        self._contact = contact
        self._lease = timedelta(seconds=lease)
        self.day = day
        self.retry = day / 24  # after an answer proving Graph did not act
        self.clock = clock

    # -- the record's writes -------------------------------------------------------------------

    async def save(self, before: GuestRecord, **changes: Any) -> GuestRecord:
        """Write ``changes`` if the record is unchanged since read; the due and state entries go first."""
        now = self.clock()
        after = before.evolve(updated_at=now, **changes)
        if after.due_at is not None and after.due_at != before.due_at:
            await self.register.schedule(GuestDue(index_day(after.due_at, now), after.user_id))
        if after.state is not before.state and after.state in INDEXED_STATES:
            await self.register.index_state(after.user_id, after.state)
        try:
            stored = await self.register.replace(after)
        except ConcurrencyConflict:
            raise Busy(after.user_id) from None
        if after.state is not before.state and before.state in INDEXED_STATES:
            await self.register.unindex_state(after.user_id, before.state)
        return stored

    async def note(self, record: GuestRecord, event: str, actor: str = ACTOR, **detail: Any) -> None:
        entry = AuditEntry(record.signup_id, self.clock(), event, actor, {"userId": record.user_id, **detail})
        await self._audit.append(entry)

    def next_due(
        self, record: GuestRecord, rules: LifecycleRules | None, now: datetime, *, idle: bool = False
    ) -> datetime | None:
        """When the rules next need a look at ``record`` (None: never).

        ``idle``: the rules called for nothing now, so a moment already past is moot (an expiry whose action is
        ``none``, a review nobody answered under ``onNoAnswer: none``): only later ones count.
        """
        if rules is None:
            return None
        day, found = self.day, []
        if record.state is GuestState.ACTIVE:
            if record.redeemed_at is None and rules.unredeemed_expiry_days is not None:
                if record.reminders < len(rules.unredeemed_reminder_days):
                    found.append(record.invited_at + rules.unredeemed_reminder_days[record.reminders] * day)
                found.append(record.invited_at + rules.unredeemed_expiry_days * day)
            if rules.review_every_days is not None:
                found.append((record.reviewed_at or record.invited_at) + rules.review_every_days * day)
            if rules.inactive_days is not None:
                found.append(now + min(INACTIVE_RECHECK_DAYS, rules.inactive_days) * day)
        elif record.state is GuestState.REVIEW_PENDING:
            found.append((record.review_asked_at or now) + rules.review_grace_days * day)
        elif record.state is GuestState.BLOCKED and record.due_at is not None and rules.delete_after_days:
            found.append((record.blocked_at or now) + rules.delete_after_days * day)
        if idle:
            found = [moment for moment in found if moment > now]
        if not found:
            return None
        return max(min(found), now + day / 24)  # never due again at once: a sweep does not loop on a guest

    # -- one guest -----------------------------------------------------------------------------

    async def look(
        self, record: GuestRecord, rules: LifecycleRules | None, *, sign_in: bool = True
    ) -> tuple[Plan, GuestRecord] | None:
        """Apply the step the rules call for now to one registered guest: the plan and the record after it.

        None when the guest is held elsewhere (another sweep's fresh mark, or a write that lost its race).
        """
        now = self.clock()
        try:
            if record.intent is not None:
                if record.intent_at is not None and now - record.intent_at < self._lease:
                    return None  # its sweep may still be at it
                record = await self.settle_doubt(record, rules)
                if record.intent is not None:
                    return None
            try:
                account, available = await self._account(record, rules, sign_in)
            except GraphError as exc:
                log.info("guests.read_failed user_id=%s code=%s", record.user_id, exc.code)
                return None  # Graph could not say now: looked at again by a later sweep
            if account is not None and account.external_user_state not in (None, PENDING) and not record.redeemed_at:
                record = await self.save(record, redeemed_at=account.external_user_state_changed or now)
            step = plan(record, rules, account, now, sign_in_available=available, day=self.day)
            if step.step is Step.NOTHING or rules is None:
                due = self.next_due(record, rules, now, idle=True) if account is not None else None
                if due != record.due_at:
                    record = await self.save(record, due_at=due)
            elif step.step is Step.REMIND:
                record = await self.remind(record, rules)
            elif step.step is Step.REVIEW:
                record = await self.ask_review(record, rules, step.reason)
            elif step.step is Step.DELETE:
                record = await self._act(record, rules, DELETE)
            else:
                pending = record.state is GuestState.REVIEW_PENDING
                action = rules.on_no_answer if pending else rules.on_remove
                record = await self.remove(record, rules, action, step.reason)
            return step, record
        except Busy:
            return None

    async def _account(
        self, record: GuestRecord, rules: LifecycleRules | None, sign_in: bool
    ) -> tuple[GuestAccount | None, bool]:
        wants = sign_in and rules is not None and rules.inactive_days is not None
        try:
            return await self._directory.get_guest(record.user_id, sign_in_activity=wants), True
        except FeatureUnavailable:
            return await self._directory.get_guest(record.user_id), False

    async def remind(self, record: GuestRecord, rules: LifecycleRules) -> GuestRecord:
        """Mail the organisation's reminder with the kept redeem URL, at most once."""
        now = self.clock()
        signup = await self._store.get(record.signup_id)
        if signup is None or not signup.redeem_url or not self._sender:
            # Nothing to send it with: counted, so the rules move on to the next reminder or the expiry.
            done = record.evolve(reminders=record.reminders + 1)
            saved = await self.save(record, reminders=done.reminders, due_at=self.next_due(done, rules, now))
            await self.note(record, "guest_reminder_failed", reason="no redeem URL or mail sender")
            return saved
        policy = await self._policy.current()
        profile = policy.profile(record.profile) if record.profile else None
        template = profile.mail_template if profile is not None else None
        text = policy.requester_text_in_mail(record.profile)
        message = reminder_mail(
            template, signup, signup.redeem_url, self._organisation, self._contact, requester_text=text
        )
        marked = await self.save(record, intent=REMIND, intent_at=now)
        try:
            await self._directory.send_mail(self._sender, message)
        except TransientGraphError:
            # Not sent: a later sweep tries again.
            return await self.save(marked, intent=None, intent_at=None, due_at=self.clock() + self.retry)
        except GraphError as exc:
            event = "guest_reminder_unknown" if isinstance(exc, AmbiguousGraphError) else "guest_reminder_failed"
            return await self._reminded(marked, rules, event, code=exc.code)
        return await self._reminded(marked, rules, "guest_reminder_sent")

    async def _reminded(self, marked: GuestRecord, rules: LifecycleRules, event: str, **detail: Any) -> GuestRecord:
        sent = marked.evolve(reminders=marked.reminders + 1, intent=None)
        due = self.next_due(sent, rules, self.clock())
        saved = await self.save(marked, reminders=sent.reminders, intent=None, intent_at=None, due_at=due)
        await self.note(marked, event, reminder=sent.reminders, **{k: v for k, v in detail.items() if v})
        return saved

    async def ask_review(self, record: GuestRecord, rules: LifecycleRules, reason: str) -> GuestRecord:
        """Put the guest up for review: its reviewers' digests first, then the record (no mail here)."""
        now = self.clock()
        reviewers = await self.reviewers(record)
        for reviewer in reviewers:
            await self.digests.enqueue(reviewer, record.user_id, record.profile)
        asked = record.evolve(state=GuestState.REVIEW_PENDING, review_asked_at=now)
        saved = await self.save(record, state=asked.state, review_asked_at=now, due_at=self.next_due(asked, rules, now))
        await self.note(record, "guest_review_requested", reviewers=len(reviewers), reason=reason)
        return saved

    async def reviewers(self, record: GuestRecord) -> tuple[str, ...]:
        """The guest's sponsors' addresses, or else its approvers (who approved it, else the profile's now)."""
        found: list[str] = []
        for sponsor in record.sponsors:
            try:
                user = await self._directory.get_user(sponsor)
            except GraphError:
                continue  # unreadable now: the other sponsors, or the approvers, are asked
            if user is not None and user.mail:
                found.append(user.mail)
        if found or record.approvers:
            return tuple(found) or record.approvers
        return (await self._policy.current()).approvers_for(record.profile)

    async def keep(self, record: GuestRecord, rules: LifecycleRules | None, actor: str, reason: str | None) -> None:
        """A reviewer's keep: reviewed now, the next review in ``reviewEveryDays``."""
        now = self.clock()
        kept = record.evolve(state=GuestState.ACTIVE, reviewed_at=now, review_asked_at=None)
        await self.save(
            record, state=kept.state, reviewed_at=now, review_asked_at=None, due_at=self.next_due(kept, rules, now)
        )
        await self.note(record, "guest_review_kept", actor, **({"reason": reason} if reason else {}))

    async def remove(
        self, record: GuestRecord, rules: LifecycleRules, action: RemovalAction, reason: str, actor: str = ACTOR
    ) -> GuestRecord:
        """Apply a removal action (``onRemove`` or ``onNoAnswer``)."""
        if action is RemovalAction.NONE:
            saved = await self.save(record, state=GuestState.REMOVED, due_at=None, review_asked_at=None)
            await self.note(record, "guest_removed", actor, action=action.value, reason=reason)
            return saved
        intent = {
            RemovalAction.REMOVE_GROUPS: REMOVE_GROUPS,
            RemovalAction.BLOCK_SIGN_IN: BLOCK,
            RemovalAction.BLOCK_SIGN_IN_AND_DELETE: BLOCK_DELETE,
        }[action]
        return await self._act(record, rules, intent, actor=actor, reason=reason)

    # -- Graph writes, marked first ------------------------------------------------------------

    async def _act(
        self, record: GuestRecord, rules: LifecycleRules | None, intent: str, *, actor: str = ACTOR, reason: str = ""
    ) -> GuestRecord:
        marked = await self.save(record, intent=intent, intent_at=self.clock())
        try:
            await self._write(marked, intent)
        except TransientGraphError:
            # Graph did not act: the rules decide again at a later look.
            return await self.save(marked, intent=None, intent_at=None, due_at=self.clock() + self.retry)
        except AmbiguousGraphError:
            try:
                done = await self._done(marked, intent)
            except GraphError:
                done = False  # unreadable now: the mark stays for a later look
            if done:
                return await self._settle_done(marked, rules, intent, actor, reason, "read")
            log.warning("guests.action_in_doubt user_id=%s intent=%s", record.user_id, intent)
            return marked  # the mark stays; a later look settles it by a read
        except GraphError as exc:
            saved = await self.save(marked, intent=None, intent_at=None, due_at=self.clock() + self.day)
            await self.note(marked, "guest_action_failed", actor, action=intent, code=exc.code)
            return saved
        return await self._settle_done(marked, rules, intent, actor, reason, "answer")

    async def _write(self, record: GuestRecord, intent: str) -> None:
        if intent in (BLOCK, BLOCK_DELETE):
            await self._directory.set_sign_in_enabled(record.user_id, False)
        elif intent == DELETE:
            await self._directory.delete_user(record.user_id)  # False (already gone) is done too
        elif intent == REMOVE_GROUPS:
            for group in record.groups:
                await self._directory.remove_group_member(group, record.user_id)

    async def _done(self, record: GuestRecord, intent: str) -> bool:
        """Whether the directory shows the intended action done (the check of a mark in doubt)."""
        if intent in (BLOCK, BLOCK_DELETE):
            account = await self._directory.get_guest(record.user_id)
            return account is None or account.account_enabled is False
        if intent == DELETE:
            return await self._directory.get_guest(record.user_id) is None
        if intent == REMOVE_GROUPS:
            left = {m.id for m in await self._directory.member_of(record.user_id)}
            return not left & set(record.groups)
        return False

    async def _settle_done(
        self, marked: GuestRecord, rules: LifecycleRules | None, intent: str, actor: str, reason: str, by: str
    ) -> GuestRecord:
        now = self.clock()
        changes: dict[str, Any] = {"intent": None, "intent_at": None, "review_asked_at": None}
        if intent in (BLOCK, BLOCK_DELETE):
            deletes = intent == BLOCK_DELETE and rules is not None and rules.delete_after_days
            due = now + rules.delete_after_days * self.day if deletes and rules and rules.delete_after_days else None
            changes |= {"state": GuestState.BLOCKED, "blocked_at": now, "due_at": due}
        elif intent == DELETE:
            changes |= {"state": GuestState.DELETED, "deleted_at": now, "due_at": None}
        else:
            changes |= {"state": GuestState.REMOVED, "due_at": None}
        saved = await self.save(marked, **changes)
        detail = {"action": intent, "settledBy": by, **({"reason": reason} if reason else {})}
        await self.note(marked, ACTION_EVENTS[intent], actor, **detail)
        return saved

    async def settle_doubt(self, record: GuestRecord, rules: LifecycleRules | None) -> GuestRecord:
        """Settle a mark its sweep left (crashed or lost the answer): a read for actions, never a resend for mail."""
        intent = record.intent
        assert intent is not None
        if intent == REMIND:
            if rules is None:
                return await self.save(record, intent=None, intent_at=None, reminders=record.reminders + 1)
            return await self._reminded(record, rules, "guest_reminder_unknown")
        try:
            done = await self._done(record, intent)
        except GraphError:
            return record  # unreadable now: the mark stays for the next look
        if done:
            return await self._settle_done(record, rules, intent, ACTOR, "", "read")
        log.info("guests.intent_not_done user_id=%s intent=%s", record.user_id, intent)
        return await self.save(record, intent=None, intent_at=None)
