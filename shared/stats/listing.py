"""The admin list through the day index: filters, sort and bounded pages over day partitions.

``GET /api/manage/signups`` walks the day partitions from the newest day (or the oldest) of the asked range,
one ranged query per partition with the filters applied by storage, and reads the page's records by id
(point reads, in parallel) for the admin views. A page stops after ``pageSize`` rows, or after a bounded amount
of work (``MAX_DAYS_PER_PAGE`` partitions, ``MAX_QUERY_PAGES`` storage pages): its token then says where to go
on, so a request never scans the table however many requests are on record (it may come back short, or
empty, with a token, as Table storage's own pages do). Requests are listed from their admission on (the index
counts them from there); ``status=received`` lists the records intake wrote and nobody admitted yet, by the
older scan.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from azure.core.exceptions import AzureError

from ..errors import StorageError, ValidationFailed
from ..lifecycle.models import Status
from .index import ASCENDING, DESCENDING, TableDayIndex, address_hash, partition, row_from

MAX_PAGE: Final = 100
DEFAULT_PAGE: Final = 50
DEFAULT_RANGE_DAYS: Final = 365  # without ``from``: the last year
MAX_RANGE_DAYS: Final = 3660
MAX_DAYS_PER_PAGE: Final = 62
MAX_QUERY_PAGES: Final = 10
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TEXT = re.compile(r"^[^\x00-\x1f]{1,253}$")
_PROFILE = re.compile(r"^[^\x00-\x1f]{1,64}$")
MAX_TOKEN: Final = 512
KINDS: Final = ("signup", "conversion")
SORTS: Final = ("newest", "oldest")


@dataclass(frozen=True)
class ListQuery:
    """A validated list request."""

    status: Status | None = None
    domain: str | None = None
    profile: str | None = None
    kind: str | None = None
    first: date | None = None  # from
    last: date | None = None  # to (inclusive)
    address: str | None = None  # the SHA-256 of ``q``
    sort: str = "newest"
    size: int = DEFAULT_PAGE
    token: str | None = None


def _day(text: str) -> date:
    if not _DAY.match(text):
        raise ValueError(text)
    return date.fromisoformat(text)


def parse_list(params: dict[str, str] | Any) -> ListQuery:
    """The list's query string, every bad parameter named at once (``ValidationFailed``)."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}

    def get(name: str) -> str | None:
        value = params.get(name)
        # An empty date, kind or sort is a bad value (the API description's patterns say so); others: unset.
        return value if value or (value is not None and name in {"from", "to", "kind", "sort"}) else None

    if (status := get("status")) is not None:
        try:
            values["status"] = Status(status)
        except ValueError:
            errors["status"] = [f"One of: {', '.join(s.value for s in Status)}."]
    for name, pattern, most in (("domain", _TEXT, 253), ("profile", _PROFILE, 64)):
        if (text := get(name)) is not None:
            if pattern.match(text):
                values[name] = text.strip().casefold() if name == "domain" else text.strip()
            else:
                errors[name] = [f"At most {most} characters of text."]
    if (kind := get("kind")) is not None:
        if kind in KINDS:
            values["kind"] = kind
        else:
            errors["kind"] = ["One of: signup, conversion."]
    for name, attr in (("from", "first"), ("to", "last")):
        if (text := get(name)) is not None:
            try:
                values[attr] = _day(text)
            except ValueError:
                errors[name] = ["A date, YYYY-MM-DD."]
    first, last = values.get("first"), values.get("last")
    if first and last and first > last:
        errors["to"] = ["Not before from."]
    elif first and last and (last - first).days > MAX_RANGE_DAYS:
        errors["from"] = [f"At most {MAX_RANGE_DAYS} days before to."]
    if (q := get("q")) is not None:
        if "@" in q and len(q) <= 254 and _TEXT.match(q):
            values["address"] = address_hash(q)
        else:
            errors["q"] = ["An e-mail address (matched exactly, case-insensitively)."]
    if (sort := get("sort")) is not None:
        if sort in SORTS:
            values["sort"] = sort
        else:
            errors["sort"] = ["One of: newest, oldest."]
    if (size := get("pageSize")) is not None:
        if size.isdigit() and 1 <= int(size) <= MAX_PAGE:
            values["size"] = int(size)
        else:
            errors["pageSize"] = [f"A whole number from 1 to {MAX_PAGE}."]
    if (token := get("continuationToken")) is not None:
        if len(token) <= MAX_TOKEN:
            values["token"] = token
        else:
            errors["continuationToken"] = ["Not a token this API gave out."]
    if errors:
        raise ValidationFailed(errors)
    return ListQuery(**values)


@dataclass(frozen=True)
class Cursor:
    """Where a listing goes on: a day, and storage's token within that day's partition (None: its start)."""

    day: date
    storage: dict[str, str] | None


def encode_cursor(cursor: Cursor | None, query: ListQuery) -> str | None:
    """A continuation token (bound to the sort it was given for)."""
    if cursor is None:
        return None
    data = {"v": 1, "day": cursor.day.isoformat(), "s": cursor.storage, "sort": query.sort}
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode("ascii")


def decode_cursor(token: str, query: ListQuery) -> Cursor:
    """The cursor back from ``encode_cursor``; ``ValidationFailed`` for anything else."""
    bad = ValidationFailed({"continuationToken": ["Not a token this API gave out."]})
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        storage = data["s"]
        if data.get("v") != 1 or data.get("sort") != query.sort:
            raise bad
        if storage is not None and not (
            isinstance(storage, dict) and all(isinstance(v, str) for v in storage.values())
        ):
            raise bad
        return Cursor(_day(str(data["day"])), storage)
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise bad from None


def _filter(query: ListQuery, day: date) -> tuple[str, dict[str, Any]]:
    prefix = DESCENDING if query.sort == "newest" else ASCENDING
    clauses = ["PartitionKey eq @pk", "RowKey ge @lo", "RowKey lt @hi"]
    parameters: dict[str, Any] = {"pk": partition(day), "lo": prefix, "hi": prefix[:-1] + "."}
    for name, prop, value in (
        ("status", "status", query.status.value if query.status else None),
        ("domain", "domain", query.domain),
        ("profile", "profile", query.profile),
        ("kind", "kind", query.kind),
        ("addr", "addr", query.address),
    ):
        if value is not None:
            clauses.append(f"{prop} eq @{name}")
            parameters[name] = value
    return " and ".join(clauses), parameters


async def list_ids(index: TableDayIndex, query: ListQuery, today: date | None = None) -> tuple[list[str], str | None]:
    """Up to ``query.size`` request ids in the asked order and range, and the next page's token."""
    await index.ready()
    today = today or datetime.now(UTC).date()
    last = min(query.last or today, today)
    first = query.first or (last - timedelta(days=DEFAULT_RANGE_DAYS))
    step = timedelta(days=-1 if query.sort == "newest" else 1)
    if query.token is not None:
        cursor: Cursor | None = decode_cursor(query.token, query)
    else:
        cursor = Cursor(last if query.sort == "newest" else first, None)
    ids: list[str] = []
    days = pages = 0
    while cursor is not None and first <= cursor.day <= last:
        if len(ids) >= query.size or days >= MAX_DAYS_PER_PAGE or pages >= MAX_QUERY_PAGES:
            return ids, encode_cursor(cursor, query)
        days += 1
        text, parameters = _filter(query, cursor.day)
        storage = cursor.storage
        while True:
            pages += 1
            try:
                found: Any = index.client.query_entities(
                    text, parameters=parameters, results_per_page=query.size - len(ids)
                ).by_page(continuation_token=storage)  # type: ignore[arg-type]
                try:
                    page = await found.__anext__()
                    ids.extend([row_from(entity).id async for entity in page])
                    storage = found.continuation_token
                except StopAsyncIteration:
                    storage = None
            except AzureError as exc:
                raise StorageError(f"could not list day {cursor.day}: {type(exc).__name__}") from exc
            if storage is None:
                cursor = Cursor(cursor.day + step, None)
                break
            cursor = Cursor(cursor.day, dict(storage))
            if len(ids) >= query.size or pages >= MAX_QUERY_PAGES:
                return ids, encode_cursor(cursor, query)
    return ids, None
