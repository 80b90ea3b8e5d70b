"""The lifecycle's records in Azure Table storage, behind small protocols.

One table holds four kinds of entity, told apart by their keys::

    PartitionKey                RowKey     what
    <sign-up id>                signup     a sign-up (``SignupStore``)
    address-<sha256 of address> claim      the sign-up that owns an address now (``AddressBook``)
    due-<YYYYMMDDHHMM>          <id>       the due-time index: a sign-up to look at after that minute
    due-skipped                 <id>       entries the sweeper could not handle after repeated tries
    sweeper                     cursor     the last index minute the sweeper finished (``DueIndex``)

Every sign-up is its own partition, so intake scales out. A sign-up's id begins
with the minute it was received, so the sweeper finds the records of a minute
that were never admitted with one partition-range query (``received_in``). Writes after creation
are ETag-conditional; a lost race raises ``ConcurrencyConflict`` (or returns
False where the caller decides again). The due index is one partition per
minute, so the sweeper reads the minutes that have passed, in bounded pages,
and never scans the table.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from azure.core.exceptions import AzureError
from azure.data.tables import TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import ConcurrencyConflict, StorageError
from ..storage import Table
from .models import DirectoryBefore, Signup, Status, Step
from .transitions import check_edge

ROW_KEY: Final = "signup"
CLAIM_ROW: Final = "claim"
ADDRESS_PREFIX: Final = "address-"
DUE_PREFIX: Final = "due-"
BUCKET_FORMAT: Final = "%Y%m%d%H%M"
CURSOR_KEY: Final = ("sweeper", "cursor")
SKIPPED_BUCKET: Final = "skipped"  # entries the sweeper set aside after repeated failures (an admin looks)
BATCH_LIMIT: Final = 100  # an entity group transaction holds at most 100 operations
MAX_SCAN_PAGES: Final = 10


def address_key(email: str) -> str:
    """The partition of an address's claim: matched case-insensitively, never stored in clear."""
    return ADDRESS_PREFIX + hashlib.sha256(email.casefold().encode("utf-8")).hexdigest()


def bucket_of(moment: datetime) -> str:
    """The due-index minute ``moment`` falls in."""
    return moment.astimezone(UTC).strftime(BUCKET_FORMAT)


def bucket_start(bucket: str) -> datetime:
    """The first instant of a due-index minute."""
    return datetime.strptime(bucket, BUCKET_FORMAT).replace(tzinfo=UTC)


def next_bucket(bucket: str) -> str:
    """The minute after ``bucket``."""
    return bucket_of(bucket_start(bucket) + timedelta(minutes=1))


@dataclass(frozen=True)
class AddressClaim:
    """Which sign-up owns an address's invitation now."""

    key: str
    signup_id: str
    etag: str | None = None


@dataclass(frozen=True)
class DueEntry:
    """A due-index entry: look at ``signup_id`` once ``bucket`` has passed."""

    bucket: str
    signup_id: str
    nudges: int = 0


class SignupStore(Protocol):
    """Durable sign-up records."""

    async def create(self, signup: Signup) -> Signup:
        """Insert a new record; return it with its ETag."""
        ...

    async def get(self, signup_id: str) -> Signup | None:
        """The record, or None when there is none."""
        ...

    async def replace(self, signup: Signup) -> Signup:
        """Overwrite the record if its ETag still matches ``signup.etag``."""
        ...

    async def delete(self, signup_id: str) -> None:
        """Remove the record (no error when it is already gone)."""
        ...

    def failed(self, since: datetime | None, until: datetime | None) -> AsyncIterator[Signup]:
        """Failed sign-ups created in ``[since, until)`` (an admin scan, paged; never on the request path)."""
        ...

    async def received_in(self, bucket: str) -> list[Signup]:
        """Records still ``received`` whose id begins with the minute ``bucket`` (the sweeper's first look)."""
        ...

    async def page(self, status: Status | None, size: int, token: str | None) -> tuple[list[Signup], str | None]:
        """Up to ``size`` sign-ups (of one status, or all) and the token for the next page (None at the end).

        An admin scan of the table, never on the request path; ``token`` is opaque to callers.
        """
        ...


class RecordIndex(Protocol):
    """What hears of every record write that landed (the day index, ``shared.stats``).

    ``writes.write`` calls it after each successful write; the sweeper calls it again (``force`` for a final
    record) when it meets a record, so a crash between the write and this call is repaired.
    """

    async def indexed(self, signup: Signup, *, force: bool = False) -> bool:
        """Bring the index in step with ``signup`` as stored; True when it wrote."""
        ...


class NoIndex:
    """A ``RecordIndex`` that keeps nothing (stores built without one, and tests that do not care)."""

    async def indexed(self, signup: Signup, *, force: bool = False) -> bool:
        return False


NO_INDEX: Final = NoIndex()


def index_of(store: object) -> RecordIndex:
    """The ``RecordIndex`` a store's writes report to (its ``record_index``); ``NO_INDEX`` when it has none."""
    found = getattr(store, "record_index", None)
    return found if found is not None else NO_INDEX


class AddressBook(Protocol):
    """One claim per address: the conditional insert that keeps concurrent sign-ups to one invitation."""

    async def insert(self, key: str, signup_id: str) -> bool:
        """Create the claim; False when one exists already."""
        ...

    async def get(self, key: str) -> AddressClaim | None:
        """The claim, or None."""
        ...

    async def take_over(self, claim: AddressClaim, signup_id: str) -> bool:
        """Point the claim at ``signup_id`` if it is unchanged since read; False when it changed."""
        ...


class DueIndex(Protocol):
    """Due times of non-final sign-ups, one partition per minute."""

    async def add(self, entry: DueEntry) -> None:
        """Write (or overwrite) an entry."""
        ...

    async def page(self, bucket: str, limit: int) -> list[DueEntry]:
        """Up to ``limit`` entries of one minute."""
        ...

    async def remove(self, entries: list[DueEntry]) -> None:
        """Delete entries (all of one minute); entries already gone are fine."""
        ...

    async def cursor(self) -> tuple[str | None, str | None]:
        """The last minute the sweeper finished and the cursor's ETag (None, None when unset)."""
        ...

    async def advance(self, bucket: str, etag: str | None) -> str | None:
        """Move the cursor to ``bucket`` if unchanged since read; its new ETag, None when another moved it."""
        ...


_FIELDS: Final = {
    # entity property: Signup attribute
    "email": "email",
    "displayName": "display_name",
    "company": "company",
    "justification": "justification",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "deadline": "deadline",
    "dueAt": "due_at",
    "attempts": "attempts",
    "leaseUntil": "lease_until",
    "maybeInvited": "maybe_invited",
    "existingUserId": "existing_user_id",
    "linkedTo": "linked_to",
    "errorCode": "error_code",
    "errorMessage": "error_message",
    "errorDetail": "error_detail",
    "graphRequestId": "graph_request_id",
    "invitationId": "invitation_id",
    "invitedUserId": "invited_user_id",
    "invitationStatus": "invitation_status",
    "invitationMailed": "invitation_mailed",
    "redeemUrl": "redeem_url",
    "invitedAt": "invited_at",
    "faults": "faults",
    "policyProfile": "policy_profile",
    "policyAction": "policy_action",
    "policyReason": "policy_reason",
    "language": "language",
    "termsVersion": "terms_version",
    "decidedBy": "decided_by",
    "decidedAt": "decided_at",
    "decisionReason": "decision_reason",
    "followupAttempts": "followup_attempts",
    "lastAttemptAt": "last_attempt_at",
    "traceParent": "trace_parent",
    "writeToken": "write_token",
}
_MOMENTS: Final = frozenset(
    {"createdAt", "updatedAt", "deadline", "dueAt", "leaseUntil", "invitedAt", "decidedAt", "lastAttemptAt"}
)


def to_entity(signup: Signup) -> dict[str, Any]:
    """The Table entity for a record (None fields are left out)."""
    entity: dict[str, Any] = {
        "PartitionKey": signup.id,
        "RowKey": ROW_KEY,
        "status": signup.status.value,
        "directoryBefore": signup.directory_before.value if signup.directory_before else None,
        "approverMail": signup.approver_mail.value if signup.approver_mail else None,
        "orgMail": signup.org_mail.value if signup.org_mail else None,
        "groups": json.dumps(signup.groups, sort_keys=True) if signup.groups else None,
        "answers": json.dumps(signup.answers, sort_keys=True, ensure_ascii=False) if signup.answers else None,
        "conversion": json.dumps(signup.conversion, sort_keys=True) if signup.conversion is not None else None,
        **{prop: getattr(signup, attr) for prop, attr in _FIELDS.items()},
    }
    return {key: value for key, value in entity.items() if value is not None}


def from_entity(entity: Mapping[str, Any], etag: str | None) -> Signup:
    """The record a Table entity holds."""
    values: dict[str, Any] = {}
    for prop, attr in _FIELDS.items():
        value = entity.get(prop)
        if prop in _MOMENTS and not isinstance(value, datetime):
            value = None
        if value is not None:
            values[attr] = value
    for required in ("created_at", "updated_at", "deadline"):
        if required not in values:
            raise StorageError(f"entity {entity.get('PartitionKey')} lacks {required}")
    for counter in ("attempts", "faults", "followup_attempts"):
        values[counter] = int(values.get(counter, 0))
    for optional in ("company", "justification"):
        values.setdefault(optional, None)
    before = entity.get("directoryBefore")
    for prop, attr in (("approverMail", "approver_mail"), ("orgMail", "org_mail")):
        if entity.get(prop):
            values[attr] = Step(entity[prop])
    if entity.get("groups"):
        values["groups"] = dict(json.loads(entity["groups"]))
    if entity.get("answers"):
        values["answers"] = dict(json.loads(entity["answers"]))
    if entity.get("conversion"):
        values["conversion"] = dict(json.loads(entity["conversion"]))
    values.update(
        id=str(entity["PartitionKey"]),
        status=Status(entity["status"]),
        directory_before=DirectoryBefore(before) if before else None,
        etag=etag,
        origin=Status(entity["status"]),
    )
    return Signup(**values)


_Table = Table  # the old name, which shared.approval.denials imports


class TableSignupStore:
    """``SignupStore`` on Azure Table storage (or Azurite); ``record_index`` hears of every write."""

    def __init__(self, client: TableClient, record_index: RecordIndex = NO_INDEX) -> None:
        self._table = _Table(client)
        self.record_index = record_index

    async def create(self, signup: Signup) -> Signup:
        check_edge(None, signup.status)
        etag = await self._table.insert(to_entity(signup))
        if etag is None:
            raise ConcurrencyConflict(f"sign-up {signup.id} already exists")
        return dataclasses.replace(signup, etag=etag, origin=signup.status)

    async def get(self, signup_id: str) -> Signup | None:
        entity = await self._table.read(signup_id, ROW_KEY)
        return None if entity is None else from_entity(entity, entity.metadata.get("etag"))

    async def replace(self, signup: Signup) -> Signup:
        if signup.etag is None:
            raise ValueError("replace needs the ETag the record was read with")
        check_edge(signup.origin, signup.status)
        etag = await self._table.replace(to_entity(signup), signup.etag)
        if etag is None:
            raise ConcurrencyConflict(f"sign-up {signup.id} changed underneath")
        return dataclasses.replace(signup, etag=etag, origin=signup.status)

    async def delete(self, signup_id: str) -> None:
        try:
            await self._table.client.delete_entity(signup_id, ROW_KEY)
        except AzureError as exc:
            raise StorageError(f"could not delete sign-up {signup_id}: {type(exc).__name__}") from exc

    async def failed(self, since: datetime | None, until: datetime | None) -> AsyncIterator[Signup]:
        await self._table.ready()
        clauses, parameters = ["RowKey eq @row", "status eq @status"], {"row": ROW_KEY, "status": Status.FAILED.value}
        if since is not None:
            clauses.append("createdAt ge @since")
            parameters["since"] = since  # type: ignore[assignment]
        if until is not None:
            clauses.append("createdAt lt @until")
            parameters["until"] = until  # type: ignore[assignment]
        try:
            async for entity in self._table.client.query_entities(
                " and ".join(clauses), parameters=parameters, results_per_page=200
            ):
                yield from_entity(entity, entity.metadata.get("etag"))
        except AzureError as exc:
            raise StorageError(f"could not list failed sign-ups: {type(exc).__name__}") from exc

    async def received_in(self, bucket: str) -> list[Signup]:
        await self._table.ready()
        query = "PartitionKey ge @lo and PartitionKey lt @hi and RowKey eq @row and status eq @status"
        parameters = {"lo": bucket, "hi": bucket + "~", "row": ROW_KEY, "status": Status.RECEIVED.value}
        try:
            return [
                from_entity(entity, entity.metadata.get("etag"))
                async for entity in self._table.client.query_entities(query, parameters=parameters)
            ]
        except AzureError as exc:
            raise StorageError(f"could not list received sign-ups of {bucket}: {type(exc).__name__}") from exc

    async def page(self, status: Status | None, size: int, token: str | None) -> tuple[list[Signup], str | None]:
        await self._table.ready()
        query, parameters = "RowKey eq @row", {"row": ROW_KEY}
        if status is not None:
            query, parameters = query + " and status eq @status", {**parameters, "status": status.value}
        found: list[Signup] = []
        continuation = decode_token(token)
        try:
            # A filtered scan may return short or empty pages with a token: read on, a bounded number of pages.
            for _ in range(MAX_SCAN_PAGES):
                # Tables' continuation token is a dict of next keys (the SDK's annotation says str).
                pages: Any = self._table.client.query_entities(
                    query, parameters=parameters, results_per_page=size - len(found)
                ).by_page(continuation_token=continuation)  # type: ignore[arg-type]
                page = await pages.__anext__()
                async for entity in page:
                    found.append(from_entity(entity, entity.metadata.get("etag")))
                continuation = pages.continuation_token
                if continuation is None or len(found) >= size:
                    break
        except StopAsyncIteration:
            continuation = None
        except AzureError as exc:
            raise StorageError(f"could not list sign-ups: {type(exc).__name__}") from exc
        return found, encode_token(continuation)


def encode_token(token: Mapping[str, Any] | None) -> str | None:
    """The storage continuation token as opaque URL-safe text."""
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(dict(token), sort_keys=True).encode("utf-8")).decode("ascii")


def decode_token(text: str | None) -> dict[str, Any] | None:
    """The storage continuation token back from ``encode_token``; ``ValueError`` when it is not one."""
    if not text:
        return None
    try:
        token = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
    except (ValueError, UnicodeError) as exc:
        raise ValueError("not a continuation token") from exc
    if not isinstance(token, dict) or not all(isinstance(v, str) for v in token.values()):
        raise ValueError("not a continuation token")
    return token


class TableAddressBook:
    """``AddressBook`` on Azure Table storage."""

    def __init__(self, client: TableClient) -> None:
        self._table = _Table(client)

    async def insert(self, key: str, signup_id: str) -> bool:
        return await self._table.insert({"PartitionKey": key, "RowKey": CLAIM_ROW, "signupId": signup_id}) is not None

    async def get(self, key: str) -> AddressClaim | None:
        entity = await self._table.read(key, CLAIM_ROW)
        if entity is None:
            return None
        return AddressClaim(key, str(entity["signupId"]), entity.metadata.get("etag"))

    async def take_over(self, claim: AddressClaim, signup_id: str) -> bool:
        if claim.etag is None:
            raise ValueError("take_over needs the ETag the claim was read with")
        entity = {"PartitionKey": claim.key, "RowKey": CLAIM_ROW, "signupId": signup_id}
        return await self._table.replace(entity, claim.etag) is not None


class TableDueIndex:
    """``DueIndex`` on Azure Table storage."""

    def __init__(self, client: TableClient) -> None:
        self._table = _Table(client)

    async def add(self, entry: DueEntry) -> None:
        await self._table.ready()
        entity = {"PartitionKey": DUE_PREFIX + entry.bucket, "RowKey": entry.signup_id, "nudges": entry.nudges}
        try:
            await self._table.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise StorageError(f"could not index sign-up {entry.signup_id}: {type(exc).__name__}") from exc

    async def page(self, bucket: str, limit: int) -> list[DueEntry]:
        await self._table.ready()
        entries: list[DueEntry] = []
        try:
            pages = self._table.client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": DUE_PREFIX + bucket}, results_per_page=min(limit, 1000)
            ).by_page()
            async for page in pages:
                async for entity in page:
                    entries.append(DueEntry(bucket, str(entity["RowKey"]), int(entity.get("nudges", 0))))
                    if len(entries) >= limit:
                        return entries
        except AzureError as exc:
            raise StorageError(f"could not read due index {bucket}: {type(exc).__name__}") from exc
        return entries

    async def remove(self, entries: list[DueEntry]) -> None:
        for start in range(0, len(entries), BATCH_LIMIT):
            chunk = entries[start : start + BATCH_LIMIT]
            operations = [
                (TransactionOperation.DELETE, {"PartitionKey": DUE_PREFIX + e.bucket, "RowKey": e.signup_id})
                for e in chunk
            ]
            try:
                await self._table.client.submit_transaction(operations)
            except AzureError:
                # One entry already gone fails the whole batch; delete one by one instead.
                for entry in chunk:
                    await self._delete_one(entry)

    async def _delete_one(self, entry: DueEntry) -> None:
        try:
            await self._table.client.delete_entity(DUE_PREFIX + entry.bucket, entry.signup_id)
        except AzureError as exc:
            raise StorageError(f"could not remove due entry {entry.signup_id}: {type(exc).__name__}") from exc

    async def cursor(self) -> tuple[str | None, str | None]:
        entity = await self._table.read(*CURSOR_KEY)
        if entity is None:
            return None, None
        return str(entity["bucket"]), entity.metadata.get("etag")

    async def advance(self, bucket: str, etag: str | None) -> str | None:
        entity = {"PartitionKey": CURSOR_KEY[0], "RowKey": CURSOR_KEY[1], "bucket": bucket}
        if etag is None:
            return await self._table.insert(entity)
        return await self._table.replace(entity, etag)
