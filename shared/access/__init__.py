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
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import AccessDenied, NotAuthenticated

PRINCIPAL_HEADER: Final = "x-ms-client-principal"
ROLE_SETTING: Final = "MANAGE_EASY_AUTH_ROLE"


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


def authorise(headers: Mapping[str, str], role: str | None) -> Caller:
    """The caller of an admin route, or ``NotAuthenticated`` / ``AccessDenied``.

    ``role`` is the configured app role (Easy Auth mode) or None (function keys,
    already checked by the host).
    """
    if not role:
        return KEY_CALLER
    encoded = _header(headers, PRINCIPAL_HEADER)
    if not encoded:
        raise NotAuthenticated("Sign in to use this.")
    principal = _claims(encoded)
    role_type = str(principal.get("role_typ") or "roles")
    name_type = str(principal.get("name_typ") or "name")
    claims = [c for c in principal["claims"] if isinstance(c, dict)]
    roles = {str(c.get("val")) for c in claims if c.get("typ") in {role_type, "roles"}}
    name = next((str(c.get("val")) for c in claims if c.get("typ") == name_type), None)
    name = name or _header(headers, "x-ms-client-principal-name") or "unknown principal"
    if role not in roles:
        raise AccessDenied(f"This needs the app role {role}.")
    return Caller("principal", name[:200])
