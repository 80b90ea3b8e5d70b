"""Directories of internal users for conversion tests and benchmarks.

``python -m graph_emulator.populate --count 10000 --users users.json --csv input.csv``
writes users for ``python -m graph_emulator --users users.json`` and the
matching input of ``signup-admin convert``. The users cycle through every
pre-check: most pass; the rest fail one rule each (the ``expected`` key, which
the emulator ignores, says which).
"""

from __future__ import annotations

import argparse
import csv
import json
import uuid
from pathlib import Path
from typing import Any

TENANT = "contoso.com"
# (expected outcome, how the user differs from an eligible one); eligible users are the majority.
KINDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Eligible", {}),
    ("Eligible", {}),
    ("Eligible", {}),
    ("Eligible", {"onPremisesSyncEnabled": True}),  # cloud-mastered again, flagged as once synced
    ("Eligible", {}),
    ("Eligible", {}),
    ("AlreadyExternal", {"externalUserState": "PendingAcceptance"}),
    ("IsGuest", {"userType": "Guest"}),
    ("MailMissing", {"mail": None}),
    ("MailInVerifiedDomain", {"mail": "{local}@contoso.com"}),
    ("OnPremisesUpn", {"onPremisesUserPrincipalName": "{local}@corp.contoso.local", "onPremisesSyncEnabled": True}),
)


def conversion_users(count: int, prefix: str = "partner") -> list[dict[str, Any]]:
    """``count`` internal users: each with its ``expected`` pre-check outcome."""
    users = []
    for i in range(count):
        expected, changes = KINDS[i % len(KINDS)]
        local = f"{prefix}{i:05d}"
        user: dict[str, Any] = {
            "id": str(uuid.UUID(int=(0xC0 << 120) + i)),
            "displayName": f"Partner {i}",
            "userPrincipalName": f"{local}@{TENANT}",
            "mail": f"{local}@fabrikam.com",
            "userType": "Member",
            "expected": expected,
        }
        for key, value in changes.items():
            user[key] = value.format(local=local) if isinstance(value, str) else value
        users.append(user)
    return users


def write_input(users: list[dict[str, Any]], path: Path, by_upn_every: int = 2) -> None:
    """The bulk command's input: object ids, and every ``by_upn_every``-th user by UPN instead."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user"])
        for i, user in enumerate(users):
            writer.writerow([user["userPrincipalName"] if i % by_upn_every else user["id"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graph_emulator.populate", description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--users", type=Path, required=True, help="JSON list of users for the emulator")
    parser.add_argument("--csv", type=Path, required=True, help="input CSV for signup-admin convert")
    args = parser.parse_args(argv)
    users = conversion_users(args.count)
    args.users.write_text(json.dumps(users), encoding="utf-8")
    write_input(users, args.csv)
    print(f"{len(users)} users: {args.users}, {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
