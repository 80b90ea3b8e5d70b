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
FEDERATED = [{"signInType": "federated", "issuer": "ExternalAzureAD", "issuerAssignedId": None}]
# (expected outcome, how the user differs from an eligible one); eligible users are half.
# Microsoft's target, "internal guests" (userType Guest with internal credentials), is eligible; each kind of
# already-external user (the rule in shared/conversion/checks.py) is refused.
KINDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Eligible", {}),
    ("Eligible", {}),
    ("Eligible", {"userType": "Guest"}),  # an internal guest: the document's own example
    ("Eligible", {"onPremisesSyncEnabled": True}),  # cloud-mastered again, flagged as once synced
    ("Eligible", {}),
    ("Eligible", {"userType": "Guest"}),
    ("Eligible", {}),
    ("AlreadyExternal", {"externalUserState": "PendingAcceptance"}),
    ("AlreadyExternal", {"externalUserState": "Accepted", "userType": "Guest"}),
    ("AlreadyExternal", {"creationType": "Invitation", "userType": "Guest"}),
    ("AlreadyExternal", {"identities": FEDERATED}),
    ("MailMissing", {"mail": None}),
    ("MailInVerifiedDomain", {"mail": "{local}@contoso.com"}),
    ("OnPremisesUpn", {"onPremisesUserPrincipalName": "{local}@corp.contoso.local", "onPremisesSyncEnabled": True}),
)


def conversion_users(count: int, prefix: str = "partner", start: int = 0) -> list[dict[str, Any]]:
    """``count`` internal users (numbered from ``start``): each with its ``expected`` pre-check outcome."""
    users = []
    for i in range(start, start + count):
        expected, changes = KINDS[i % len(KINDS)]
        local = f"{prefix}{i:05d}"
        upn = f"{local}@{TENANT}"
        user: dict[str, Any] = {
            "id": str(uuid.UUID(int=(0xC0 << 120) + i)),
            "displayName": f"Partner {i}",
            "userPrincipalName": upn,
            "mail": f"{local}@fabrikam.com",
            "userType": "Member",
            # Internal credentials: a userPrincipalName identity issued by the tenant.
            "identities": [{"signInType": "userPrincipalName", "issuer": TENANT, "issuerAssignedId": upn}],
            "expected": expected,
        }
        for key, value in changes.items():
            user[key] = value.format(local=local) if isinstance(value, str) else value
        users.append(user)
    return users


def reference(users: list[dict[str, Any]], i: int, by_upn_every: int = 2) -> str:
    """How ``write_input`` names the ``i``-th user: by object id, every ``by_upn_every``-th by UPN."""
    return users[i]["userPrincipalName"] if by_upn_every and i % by_upn_every else users[i]["id"]


def write_input(users: list[dict[str, Any]], path: Path, by_upn_every: int = 2, twice_every: int = 0) -> None:
    """The bulk command's input: object ids, every ``by_upn_every``-th user by UPN instead.

    With ``twice_every``, every ``twice_every``-th user is named a second time by its other reference
    (object id for UPN and back), a few lines later: the same user, two different cells.
    """
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user"])
        for i in range(len(users)):
            writer.writerow([reference(users, i, by_upn_every)])
            if twice_every and i >= 3:
                _again(writer, users, i - 3, by_upn_every, twice_every)
        for back in range(max(0, len(users) - 3), len(users)) if twice_every else ():
            _again(writer, users, back, by_upn_every, twice_every)


def _again(writer: Any, users: list[dict[str, Any]], i: int, by_upn_every: int, twice_every: int) -> None:
    if i % twice_every == 0:
        user = users[i]
        first = reference(users, i, by_upn_every)
        writer.writerow([user["id"] if first != user["id"] else user["userPrincipalName"]])


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
