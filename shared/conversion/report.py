"""The bulk conversion's files: the admin's input CSV, and the report a run appends to and the next run resumes from.

**Input.** A CSV with a ``user`` column (object id or UPN) and an optional
``email`` column (the address the user's ``mail`` must hold); the header row is
optional. Its encoding is detected from a byte-order mark (UTF-8 or UTF-16, as
Excel's "CSV UTF-8" and "Unicode text" save it), otherwise it must be UTF-8; its
delimiter (``,``, ``;``, tab or ``|``) is sniffed. Anything else is an
``InputError`` naming ``--encoding`` and ``--delimiter``, never a traceback.

**Report.** UTF-8 with a BOM (Excel shows names correctly), created readable by
its owner only, since the ``redeemUrl`` column holds links that let anyone who has
them redeem the invitation. Every cell starting with ``= + - @``, a tab or a
carriage return is prefixed with ``'`` so a spreadsheet never runs it as a
formula; reading strips the prefix again. A row counts only when it is whole: a
row torn by a crash (the last line without its line break, or too few cells) is
ignored, and the next run starts on a new line. Reading accepts what Excel
writes back (BOM, CRLF, ``;`` as delimiter in some locales).
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

FIELDS: Final = (
    "user",
    "outcome",
    "code",
    "reason",
    "graphMessage",
    "requestId",
    "invitationId",
    "userId",
    "mail",
    "synced",
    "state",
    "delivery",
    "redeemUrl",
    "at",
)

# Outcomes.
CONVERTED: Final = "Converted"
DUPLICATE: Final = "Duplicate"  # the same directory user as another line: settled with it
WOULD_CONVERT: Final = "WouldConvert"  # dry run
FAILED: Final = "Failed"  # Graph refused the invitation; --retry-failed tries again
ATTEMPTING: Final = "Attempting"  # synced to disk before the invitation is sent
UNKNOWN: Final = "Unknown"  # the answer was lost: Graph may have converted
DEFERRED: Final = "Deferred"  # Graph was unavailable or the budget had no room: nothing was sent
USER_TYPE_PENDING: Final = "UserTypePending"  # converted; the asked-for userType change is still to do
MAILING: Final = "Mailing"  # converted; the organisation's mail is being sent (synced first)
INVALID: Final = "InvalidReference"
REFUSED: Final = frozenset(
    {"NotFound", "AlreadyExternal", "OnPremisesUpn", "MailMissing", "MailInVerifiedDomain", "MailMismatch", INVALID}
)
# A later run looks at these again; the first three mean Graph may have converted the user.
IN_DOUBT: Final = frozenset({ATTEMPTING, UNKNOWN, MAILING})
CONVERTED_PENDING: Final = frozenset({USER_TYPE_PENDING})
RERUN: Final = IN_DOUBT | CONVERTED_PENDING | {DEFERRED}
KNOWN: Final = REFUSED | RERUN | {CONVERTED, DUPLICATE, WOULD_CONVERT, FAILED}

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_DELIMITERS: Final = ",;\t|"
_BOMS: Final = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class InputError(Exception):
    """The input cannot be read as asked; the message says what to do."""


def neutralise(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def unneutralise(value: str) -> str:
    """``neutralise`` undone (a report read back)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


# -- input ---------------------------------------------------------------------------------------


def _detect_encoding(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
        for bom, name in _BOMS:
            if head.startswith(bom):
                return name
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        while chunk := handle.read(1 << 16):
            if b"\x00" in chunk:
                raise InputError(
                    f"{path} holds NUL bytes (UTF-16 without a byte-order mark?): "
                    "save it as CSV UTF-8, or name its encoding with --encoding (e.g. --encoding utf-16-le)"
                )
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path} is not UTF-8 (byte {chunk[exc.start]:#04x} at offset {offset + exc.start}): save it as "
                    "CSV UTF-8, or name its encoding with --encoding (e.g. --encoding cp1252)"
                ) from None
            offset += len(chunk)
    return "utf-8"


@dataclass(frozen=True)
class InputFormat:
    """How to read an input file."""

    encoding: str
    delimiter: str


def detect_input(path: Path, encoding: str | None = None, delimiter: str | None = None) -> InputFormat:
    """The input's encoding and delimiter (given ones are checked, missing ones detected); ``InputError``."""
    if encoding is None:
        encoding = _detect_encoding(path)
    else:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(f"--encoding {encoding}: not an encoding Python knows") from None
    try:
        with path.open(newline="", encoding=encoding) as handle:
            sample = handle.read(1 << 15)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} cannot be read as {encoding} ({exc.reason}): check --encoding") from None
    lines = [line for line in sample.splitlines() if line.strip() and not line.lstrip().startswith("#")][:50]
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","  # one column: nothing to sniff
    elif len(delimiter) != 1:
        raise InputError("--delimiter takes one character (use $'\\t' for a tab)")
    for line in lines:
        first = next(csv.reader([line], delimiter=delimiter), [""])[0]
        if any(other in first for other in _DELIMITERS if other != delimiter):
            raise InputError(
                f"{path}: the first column holds {first[:40]!r}, which looks like several columns: "
                "name the delimiter with --delimiter (e.g. --delimiter ';')"
            )
    return InputFormat(encoding, delimiter)


def read_users(path: Path, fmt: InputFormat) -> Iterator[tuple[str, str | None]]:
    """(user, email) from the input CSV, one at a time."""
    with path.open(newline="", encoding=fmt.encoding) as handle:
        user_col, email_col = 0, 1
        header_seen = False
        for row in csv.reader(handle, delimiter=fmt.delimiter):
            cells = [cell.strip() for cell in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if not header_seen:
                header_seen = True
                names = [cell.lower() for cell in cells]
                if "user" in names:
                    user_col = names.index("user")
                    email_col = names.index("email") if "email" in names else -1
                    continue
            user = cells[user_col] if user_col < len(cells) else ""
            email = cells[email_col] if 0 <= email_col < len(cells) and cells[email_col] else None
            if user:
                yield user, email


def count_users(path: Path, fmt: InputFormat) -> int:
    """How many users the input names (for the progress bar's total)."""
    return sum(1 for _ in read_users(path, fmt))


# -- report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Earlier:
    """The last whole row an earlier run wrote for a user."""

    reference: str
    outcome: str
    user_id: str


class ReportState:
    """What earlier runs decided: the last whole row for each input reference and each directory user."""

    def __init__(self, path: Path) -> None:
        self.by_reference: dict[str, Earlier] = {}
        self.by_user_id: dict[str, Earlier] = {}
        self.torn = 0
        if not path.exists() or path.stat().st_size == 0:
            return
        with path.open("rb") as raw:
            raw.seek(-1, os.SEEK_END)
            ends_whole = raw.read(1) == b"\n"
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header_line = handle.readline()
            delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
            header = [unneutralise(c) for c in next(csv.reader([header_line], delimiter=delimiter))]
            lines = list(handle)
        if not ends_whole and lines:
            lines.pop()  # torn by a crash mid-row
            self.torn += 1
        for row in csv.reader(lines, delimiter=delimiter):
            if len(row) != len(header):
                self.torn += 1
                continue
            record = {name: unneutralise(value) for name, value in zip(header, row, strict=True)}
            reference, outcome = record.get("user", ""), record.get("outcome", "")
            if not reference or outcome not in KNOWN:
                self.torn += 1
                continue
            earlier = Earlier(reference, outcome, record.get("userId", ""))
            self.by_reference[reference] = earlier
            if earlier.user_id and outcome != DUPLICATE:
                # A Duplicate row only points at the other name: that name's own rows say what happened.
                self.by_user_id[earlier.user_id] = earlier


class ReportWriter:
    """Appends rows to the report, each flushed; an in-doubt row is synced to disk before the write it announces."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists() or path.stat().st_size == 0
        if not new:
            with path.open("rb") as raw:
                raw.seek(-1, os.SEEK_END)
                torn = raw.read(1) != b"\n"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._handle: IO[str] = os.fdopen(descriptor, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle, lineterminator="\r\n")
        if new:
            self._handle.write("\ufeff")
            self._writer.writerow(FIELDS)
        elif torn:
            self._handle.write("\r\n")  # the torn row stays alone on its line, ignored
        self._handle.flush()

    def write(self, **cells: str) -> None:
        """One row (missing cells empty, ``at`` now)."""
        cells.setdefault("at", datetime.now(UTC).isoformat(timespec="seconds"))
        self._writer.writerow([neutralise(cells.get(name, "") or "") for name in FIELDS])
        self._handle.flush()
        if cells.get("outcome") in IN_DOUBT:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
