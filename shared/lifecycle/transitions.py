"""The lifecycle's state machine, declared as data: statuses, events, guarded transitions and effects.

Every status write goes through ``apply``: it finds the transition for the
record's status and the event, checks the guard, and returns the record to
write. The stores check again at the storage boundary (``check_edge``): a write
whose (status read, status written) pair is not an edge of ``TRANSITIONS`` raises
``IllegalTransition``, so a write that bypasses this table is a bug a test
catches. ``docs/lifecycle.md``'s diagram is generated from ``TRANSITIONS``
(``mermaid()``), and a test checks the two agree.

The doubt rule lives in the guards: a request that may have invited
(``maybe_invited``) only ends ``failed`` by a write that clears the doubt
(``maybe_invited=False``), which only a directory read or an answer that proves
Graph did not act may justify (see ``shared.lifecycle.doubt``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from ..errors import IllegalTransition
from .models import Signup, Status

S = Status


class Event(StrEnum):
    """What happened to a request."""

    RECORD = "record"  # intake wrote it (received), or refused it by policy (denied)
    ADMIT = "admit"  # admission: owns the address and is queued, or waits for review
    LINK = "link"  # admission: another request owns the address; follow it
    REMEMBERED_DENIAL = "remembered_denial"  # admission: an approver denied this address recently
    APPROVE = "approve"
    DENY = "deny"
    EXPIRE = "expire"  # nobody decided in time
    CLAIM = "claim"  # the fence: take or renew the lease right before a POST
    INVITED = "invited"  # Graph answered, or the directory shows the guest (no POST)
    REFUSED = "refused"  # a permanent failure, or the address is a member's
    RETRY = "retry"  # a transient or ambiguous failure: try again later
    STEP = "step"  # a side effect's progress (approvers' mail, groups, the organisation's mail), or a fault count
    GIVE_UP = "give_up"  # deadline, poison or fault limit, with no doubt left
    DOUBT_CAP = "doubt_cap"  # may have invited, and Graph stayed unreadable for days
    REVIVE = "revive"  # a linked request whose owner ended without inviting gets its own turn
    REPLAY = "replay"  # an admin re-runs a failed request


def _no_doubt(before: Signup, changes: Mapping[str, Any]) -> bool:
    """The write ends the request without a guest it may have invited: the doubt is cleared or never was."""
    return not changes.get("maybe_invited", before.maybe_invited)


def _in_doubt(before: Signup, changes: Mapping[str, Any]) -> bool:
    return bool(changes.get("maybe_invited", before.maybe_invited))


def _always(before: Signup, changes: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Transition:
    """One declared edge: ``event`` moves a request from any of ``sources`` to ``target`` when ``guard`` holds."""

    event: Event
    sources: frozenset[Status]
    target: Status | None  # None: the status stays (a STEP)
    guard: Callable[[Signup, Mapping[str, Any]], bool]
    effects: str  # what the writer does besides the status (documentation, shown in the diagram's table)


def _t(
    event: Event,
    sources: set[Status] | frozenset[Status],
    target: Status | None,
    effects: str,
    guard: Callable[[Signup, Mapping[str, Any]], bool] = _always,
) -> Transition:
    return Transition(event, frozenset(sources), target, guard, effects)


PENDING_WORK: Final = frozenset({S.QUEUED, S.INVITING, S.RETRYING})

TRANSITIONS: Final[tuple[Transition, ...]] = (
    _t(Event.ADMIT, {S.RECEIVED}, S.QUEUED, "due entry, address claim held, then queued"),
    _t(Event.ADMIT, {S.RECEIVED}, S.PENDING_APPROVAL, "due entry at the expiry, claim held, approvers' mail due"),
    _t(Event.LINK, {S.RECEIVED, S.PENDING_APPROVAL}, S.LINKED, "due entry kept; follows the address's owner"),
    _t(Event.REMEMBERED_DENIAL, {S.RECEIVED}, S.DENIED, "no claim; shown publicly as a review that expires"),
    _t(Event.APPROVE, {S.PENDING_APPROVAL}, S.QUEUED, "claim re-asserted, decision recorded, enqueued"),
    _t(Event.DENY, {S.PENDING_APPROVAL}, S.DENIED, "decision recorded, address remembered"),
    _t(Event.EXPIRE, {S.PENDING_APPROVAL}, S.EXPIRED, "nobody decided before the expiry"),
    _t(Event.CLAIM, set(PENDING_WORK), S.INVITING, "lease, attempt counted, maybe_invited set; then the POST"),
    _t(Event.INVITED, set(PENDING_WORK), S.INVITED, "ids, redeem URL, follow-up steps opened"),
    _t(Event.REFUSED, set(PENDING_WORK), S.FAILED, "Graph's code; only when Graph did not act", _no_doubt),
    _t(Event.RETRY, set(PENDING_WORK), S.RETRYING, "next due time, message re-enqueued with that delay"),
    _t(Event.GIVE_UP, set(PENDING_WORK) | {S.RECEIVED}, S.FAILED, "last code; never while in doubt", _no_doubt),
    _t(Event.DOUBT_CAP, set(PENDING_WORK), S.UNKNOWN, "may have invited; still holds the address", _in_doubt),
    _t(Event.STEP, {S.PENDING_APPROVAL, S.INVITED, S.RECEIVED} | PENDING_WORK, None, "same status"),
    _t(Event.REVIVE, {S.LINKED}, S.RECEIVED, "admitted again: owns the address or links anew"),
    _t(Event.REPLAY, {S.FAILED}, S.RECEIVED, "deadline, faults and errors reset; admitted again"),
)

# Statuses a request can be created in (``Event.RECORD``): intake writes one of these, never anything else.
INITIAL: Final = frozenset({S.RECEIVED, S.DENIED})

_BY_KEY: Final[dict[tuple[Status, Event], list[Transition]]] = {}
for _tr in TRANSITIONS:
    for _source in _tr.sources:
        _BY_KEY.setdefault((_source, _tr.event), []).append(_tr)


def edges() -> frozenset[tuple[Status, Status]]:
    """Every (from, to) status pair some transition allows (a STEP keeps its status)."""
    pairs = set()
    for tr in TRANSITIONS:
        for source in tr.sources:
            pairs.add((source, tr.target or source))
    return frozenset(pairs)


EDGES: Final = edges()


def check_edge(before: Status | None, after: Status) -> None:
    """Raise ``IllegalTransition`` unless writing ``after`` over a record read as ``before`` is declared.

    ``before`` None is a creation: only the ``INITIAL`` statuses.
    """
    if before is None:
        if after not in INITIAL:
            raise IllegalTransition(f"a request cannot be created as {after.value}")
        return
    if (before, after) not in EDGES:
        raise IllegalTransition(f"{before.value} -> {after.value} is not a declared transition")


def apply(signup: Signup, event: Event, target: Status | None = None, **changes: Any) -> Signup:
    """The record ``event`` makes of ``signup``, with ``changes``; raises ``IllegalTransition`` when not allowed.

    ``target`` picks among transitions of one event with several targets (``ADMIT``).
    """
    candidates = _BY_KEY.get((signup.status, event), [])
    for tr in candidates:
        to = tr.target or signup.status
        if target is not None and to is not target:
            continue
        if not tr.guard(signup, changes):
            raise IllegalTransition(f"{event.value} from {signup.status.value}: guard refused ({tr.effects})")
        return signup.evolve(status=to, **changes)
    raise IllegalTransition(f"{event.value} is not allowed from {signup.status.value}")


def mermaid() -> str:
    """The state diagram as Mermaid text (``docs/lifecycle.md`` holds a copy a test keeps in step)."""
    lines = ["stateDiagram-v2", "    [*] --> received: record", "    [*] --> denied: record (blocked domain)"]
    for tr in TRANSITIONS:
        for source in sorted(tr.sources, key=lambda s: s.value):
            to = tr.target or source
            if to is source:
                continue
            lines.append(f"    {source.value} --> {to.value}: {tr.event.value}")
    for final in sorted((s for s in Status if s.terminal and s is not S.LINKED), key=lambda s: s.value):
        lines.append(f"    {final.value} --> [*]")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m shared.lifecycle.transitions: the diagram for docs/lifecycle.md
    print(mermaid())
