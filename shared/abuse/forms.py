"""The page's form token: a signed timestamp proving the form was served, and served long enough ago."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Final

MAX_AGE: Final = 24 * 3600.0  # a page left open for a day is reloaded


class FormTokens:
    """Issues and checks ``formToken``: ``<issued-at>.<HMAC-SHA256>`` under a secret shared by the instances."""

    def __init__(self, secret: str, min_fill_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(secret.encode("utf-8")).digest()
        self._min_fill = min_fill_seconds
        self._clock = clock

    def _mac(self, issued: str) -> str:
        digest = hmac.new(self._key, issued.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def issue(self) -> str:
        """A token for a page served now."""
        issued = str(int(self._clock()))
        return f"{issued}.{self._mac(issued)}"

    def check(self, token: str) -> str | None:
        """None when the token is good; otherwise why not: ``invalid``, ``too_fast`` or ``expired``."""
        issued, _, mac = token.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(mac, self._mac(issued)):
            return "invalid"
        age = self._clock() - int(issued)
        if age < self._min_fill:
            return "too_fast"
        if age > MAX_AGE:
            return "expired"
        return None
