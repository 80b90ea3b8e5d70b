"""Who may call the admin routes (``/api/manage/...``), and who they are.

Two modes, chosen by the ``MANAGE_EASY_AUTH_ROLE`` setting:

* **Function keys** (the setting unset, the default). The admin functions are
  declared ``authLevel: function``, so the Functions host itself refuses a call
  without a valid key (``x-functions-key`` or ``?code=``) before the app runs; the
  local host does the same. The app then knows only that *a* key was shown, so
  the actor it records is ``function-key``. Principal headers are ignored: without
  Easy Auth in front anyone can send them.
* **Easy Auth** (the setting names an app role). App Service Authentication
  fronts the app, removes any ``X-MS-CLIENT-PRINCIPAL*`` header a client sends and
  sets its own for a signed-in user. The admin functions are then anonymous at the
  host level (Microsoft's guidance when Easy Auth protects a function app) and the
  app requires a principal carrying the role. The mode is refused unless the
  platform says Easy Auth is on (``WEBSITE_AUTH_ENABLED``), so a forged header is
  never trusted on an app without it.

Two roles, least privilege: ``MANAGE_EASY_AUTH_ROLE`` approves and denies,
``MANAGE_CONVERT_EASY_AUTH_ROLE`` converts internal users (which cannot be
undone); either may read. Without the second setting nobody converts in Easy
Auth mode. With function keys a key holder may do everything (a key names no one).
Admin writes also pass ``shared.access.writes`` (JSON only, never cross-site).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..errors import AccessDenied, NotAuthenticated

PRINCIPAL_HEADER: Final = "x-ms-client-principal"
ROLE_SETTING: Final = "MANAGE_EASY_AUTH_ROLE"
CONVERT_ROLE_SETTING: Final = "MANAGE_CONVERT_EASY_AUTH_ROLE"

Action = Literal["read", "approve", "convert"]


def easy_auth_mode(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the admin routes are guarded by Easy Auth rather than function keys.

    Read from the environment directly because the trigger decorators need it when
    the app is indexed, before any ``Settings`` exist; ``Settings`` validates the
    same key (and that Easy Auth is on) when the app first runs.
    """
    return bool(environ.get(ROLE_SETTING, "").strip())


@dataclass(frozen=True)
class Caller:
    """Who called an admin route: recorded with every decision."""

    kind: str  # "function-key" or "principal"
    name: str

    @property
    def actor(self) -> str:
        """The text recorded as the decision's author."""
        return self.name if self.kind == "principal" else "function-key"


KEY_CALLER: Final = Caller("function-key", "function-key")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _claims(encoded: str) -> dict[str, Any]:
    try:
        decoded = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise NotAuthenticated("The sign-in could not be read; sign in again.") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("claims"), list):
        raise NotAuthenticated("The sign-in could not be read; sign in again.")
    return decoded


def _principal(headers: Mapping[str, str]) -> tuple[str, frozenset[str]]:
    """The signed-in principal's name and app roles; ``NotAuthenticated`` without one."""
    encoded = _header(headers, PRINCIPAL_HEADER)
    if not encoded:
        raise NotAuthenticated("Sign in to use this.")
    principal = _claims(encoded)
    role_type = str(principal.get("role_typ") or "roles")
    name_type = str(principal.get("name_typ") or "name")
    claims = [c for c in principal["claims"] if isinstance(c, dict)]
    roles = frozenset(str(c.get("val")) for c in claims if c.get("typ") in {role_type, "roles"})
    name = next((str(c.get("val")) for c in claims if c.get("typ") == name_type), None)
    name = name or _header(headers, "x-ms-client-principal-name") or "unknown principal"
    return name[:200], roles


def roles_of(headers: Mapping[str, str]) -> frozenset[str]:
    """The caller's app roles, or none (for the approver's page, which shows what they allow)."""
    try:
        return _principal(headers)[1]
    except NotAuthenticated:
        return frozenset()


def may(action: Action, roles: frozenset[str], approve_role: str | None, convert_role: str | None) -> bool:
    """Whether a principal with ``roles`` may do ``action`` (Easy Auth mode)."""
    wanted = {
        "read": {approve_role, convert_role},
        "approve": {approve_role},
        "convert": {convert_role},
    }[action] - {None}
    return bool(roles & wanted)


def authorise_for(
    headers: Mapping[str, str], action: Action, approve_role: str | None, convert_role: str | None = None
) -> Caller:
    """The caller of an admin route allowed to do ``action``, or ``NotAuthenticated`` / ``AccessDenied``.

    ``approve_role`` unset means function-key mode: the host has already checked the key.
    """
    if not approve_role:
        return KEY_CALLER
    name, roles = _principal(headers)
    if not may(action, roles, approve_role, convert_role):
        if action == "convert" and not convert_role:
            raise AccessDenied(f"Conversions are off with Easy Auth until {CONVERT_ROLE_SETTING} names an app role.")
        needed = convert_role if action == "convert" else approve_role
        if action == "read":
            needed = " or ".join(r for r in (approve_role, convert_role) if r)
        raise AccessDenied(f"This needs the app role {needed}.")
    return Caller("principal", name)


def authorise(headers: Mapping[str, str], role: str | None) -> Caller:
    """The caller of an approval route (``authorise_for(..., "approve", role)``)."""
    return authorise_for(headers, "approve", role)
