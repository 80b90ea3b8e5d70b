"""The page's form token: proof that the form was served, long enough ago, and a sign-up id for one use.

A token is ``<issued-at>.<nonce>.<HMAC-SHA256 of both>`` under a secret the
instances share. The nonce (128 random bits) gives each served page its own
sign-up id, ``signup_id(token)``, in the shape of
``shared.lifecycle.models.new_signup_id``: the minute the token was issued
(UTC, ``ID_MINUTE_FORMAT``), then unpadded base64url of the first 16 bytes of an
HMAC of the nonce under a key derived from the secret (22 characters). It is
deterministic, so a second post of the same token names the same record, whose
conditional insert then fails: tokens are single-use without any storage write
of their own. Its random part is unguessable without the nonce, and reveals
nothing of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from ..lifecycle.models import ID_MINUTE_FORMAT

MAX_AGE: Final = 24 * 3600.0  # a page left open for a day is reloaded
NONCE_BYTES: Final = 16
ID_BYTES: Final = 16
_SHAPE: Final = re.compile(r"[0-9]{1,12}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class FormTokens:
    """Issues and checks ``formToken``; derives the sign-up id a token stands for."""

    def __init__(self, secret: str, min_fill_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(secret.encode("utf-8")).digest()
        # A separate key for ids, so that an id is never also a valid MAC of anything.
        self._id_key = hmac.new(self._key, b"signup-id", hashlib.sha256).digest()
        self._min_fill = min_fill_seconds
        self._clock = clock

    def _mac(self, signed: str) -> str:
        return _b64(hmac.new(self._key, signed.encode("ascii"), hashlib.sha256).digest())

    def issue(self) -> str:
        """A token for a page served now."""
        signed = f"{int(self._clock())}.{secrets.token_urlsafe(NONCE_BYTES)}"
        return f"{signed}.{self._mac(signed)}"

    def check(self, token: str) -> str | None:
        """None when the token is good; otherwise why not: ``invalid``, ``too_fast`` or ``expired``."""
        if not _SHAPE.fullmatch(token):
            return "invalid"
        issued, nonce, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{issued}.{nonce}")):
            return "invalid"
        age = self._clock() - int(issued)
        if age < self._min_fill:
            return "too_fast"
        if age > MAX_AGE:
            return "expired"
        return None

    def signup_id(self, token: str) -> str:
        """The sign-up id of a token ``check`` accepted: the same for every post of that token."""
        issued, nonce, _ = token.split(".")
        minute = datetime.fromtimestamp(int(issued), UTC).strftime(ID_MINUTE_FORMAT)
        return minute + _b64(hmac.new(self._id_key, nonce.encode("ascii"), hashlib.sha256).digest()[:ID_BYTES])
