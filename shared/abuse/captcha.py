"""The optional CAPTCHA: the provider's token checked against its verify endpoint, failing closed.

Turnstile, hCaptcha and reCAPTCHA share one protocol: a form POST of ``secret``,
``response`` (and optionally ``remoteip``) answered by JSON with ``success``.
The endpoint is a setting (``CAPTCHA_VERIFY_URL``) so tests use a local stand-in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provider:
    """One provider's names: the form field with its token, its widget and its endpoints."""

    field: str
    css_class: str
    script: str
    verify_url: str


PROVIDERS: Final = {
    "turnstile": Provider(
        "cf-turnstile-response",
        "cf-turnstile",
        "https://challenges.cloudflare.com/turnstile/v0/api.js",
        "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    ),
    "hcaptcha": Provider(
        "h-captcha-response", "h-captcha", "https://js.hcaptcha.com/1/api.js", "https://api.hcaptcha.com/siteverify"
    ),
    "recaptcha": Provider(
        "g-recaptcha-response",
        "g-recaptcha",
        "https://www.google.com/recaptcha/api.js",
        "https://www.google.com/recaptcha/api/siteverify",
    ),
}
CAPTCHA_FIELDS: Final = frozenset(p.field for p in PROVIDERS.values())


class CaptchaUnavailable(Exception):
    """The provider could not be asked: the submission is refused (fail closed)."""


class CaptchaVerifier:
    """Checks a token with the provider."""

    def __init__(self, provider: str, secret: str, verify_url: str | None = None, timeout: float = 5.0) -> None:
        self.provider = PROVIDERS[provider]
        self._secret = secret
        self._url = verify_url or self.provider.verify_url
        self._timeout = timeout

    async def verify(self, token: str | None, remote_ip: str | None) -> bool:
        """True when the provider vouches for ``token``; ``CaptchaUnavailable`` when it cannot be reached."""
        if not token:
            return False
        import aiohttp  # only when a CAPTCHA is configured and checked, not on every cold start

        form = {"secret": self._secret, "response": token}
        if remote_ip:
            form["remoteip"] = remote_ip
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout)) as http,
                http.post(self._url, data=form) as response,
            ):
                if response.status >= 500:
                    raise CaptchaUnavailable(f"HTTP {response.status}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CaptchaUnavailable(type(exc).__name__) from exc
        return bool(isinstance(body, dict) and body.get("success") is True)
