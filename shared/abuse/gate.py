"""The checks a submission passes before intake, cheapest first, and the sign-up id it is recorded under.

Order: the honeypot, the form token, the terms, the CAPTCHA, and only then the
per-IP limit, so a submission is counted only once it has passed everything
else: junk posts cannot use up a real person's allowance. The per-domain limit
is not checked here at all: it is the admission step's (``DomainBudget``),
where a sign-up over it goes to review instead of being refused.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import CaptchaFailed, FormRejected, TooManyRequests, ValidationFailed
from ..lifecycle.models import new_signup_id
from ..lifecycle.validation import Extras, SignupForm
from ..settings import Settings
from .captcha import CaptchaUnavailable, CaptchaVerifier
from .counters import SharedLimiter
from .forms import FormTokens
from .ratelimit import client_ip, rate_key

log = logging.getLogger(__name__)

FORM_ENCODED = "application/x-www-form-urlencoded"


class VerificationUnavailable(Exception):
    """The CAPTCHA provider could not be asked; the submission is refused (503), nothing recorded."""


@dataclass(frozen=True)
class Passed:
    """A submission the gate let through.

    ``form``: the sign-up to record (with the accepted terms' version).
    ``signup_id``: for a post with a form token (``from_token``), the id intake MUST record it under,
    derived from the token (``FormTokens.signup_id``: the minute the token was issued, then 22 characters
    from its nonce): every post of one token gets the same id, so the record's conditional insert (create,
    never upsert) refuses a reused token, and the trigger answers that conflict with 400
    ``/problems/form-rejected``. For a post without a token (an API client) it is a fresh random id
    (``new_signup_id``), which intake may use or replace with its own.
    ``issued_at``: the token's issue time (epoch seconds; None without a token). The id's minute is this
    one, not the minute the post arrived: an id must be the same for every post of the token.
    """

    form: SignupForm
    signup_id: str
    from_token: bool
    issued_at: int | None = None


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), "")


class SubmissionGate:
    """Runs the abuse controls in order, cheapest first (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        limiter: SharedLimiter | None,
        tokens: FormTokens | None,
        captcha: CaptchaVerifier | None,
    ) -> None:
        self._settings = settings
        self._limiter = limiter
        self._tokens = tokens
        self._captcha = captcha

    def _token_optional(self, headers: Mapping[str, str]) -> bool:
        """Whether a post may come without a form token: an API client's JSON (no page served it), or a form
        posted from a partner site on the CORS allowlist (its own form, which carries no token of ours)."""
        form_post = _header(headers, "content-type").split(";", 1)[0].strip().lower() == FORM_ENCODED
        origin = _header(headers, "origin").rstrip("/")
        return not form_post or (bool(origin) and origin in self._settings.cors_allowed_origins)

    async def check(
        self, form: SignupForm, extras: Extras, headers: Mapping[str, str], *, peer: str | None = None
    ) -> Passed:
        """Raise the first refusal (400 ``FormRejected``, ``ValidationFailed`` or ``CaptchaFailed``, 429
        ``TooManyRequests``, or ``VerificationUnavailable``); what to record otherwise.

        ``headers``: the request's (``Content-Type``, ``Origin``, ``X-Forwarded-For``); ``peer``: the TCP
        peer's address where the host knows it (the fallback when ``X-Forwarded-For`` is missing).
        """
        if extras.honeypot:
            log.info("abuse.honeypot domain=%s", form.domain)
            raise FormRejected("honeypot")
        signup_id, from_token, issued_at = new_signup_id(), False, None
        if self._tokens is not None:
            if extras.form_token:
                why = self._tokens.check(extras.form_token)
                if why is not None:
                    log.info("abuse.form_token reason=%s domain=%s", why, form.domain)
                    raise FormRejected(why)
                signup_id, from_token = self._tokens.signup_id(extras.form_token), True
                issued_at = int(extras.form_token.split(".", 1)[0])
            elif not self._token_optional(headers):
                log.info("abuse.form_token reason=missing domain=%s", form.domain)
                raise FormRejected("missing")
        if self._settings.terms_version:
            if not extras.accept_terms:
                raise ValidationFailed({"acceptTerms": ["The terms of use must be accepted."]})
            form = dataclasses.replace(form, terms_version=self._settings.terms_version)
        ip = client_ip(headers, self._settings.trusted_forwarded_hops, peer)
        if self._captcha is not None:
            token = extras.captcha.get(self._captcha.provider.field)
            try:
                passed = await self._captcha.verify(token, ip)
            except CaptchaUnavailable as exc:
                log.warning("abuse.captcha_unavailable error=%s", exc)
                raise VerificationUnavailable(str(exc)) from exc
            if not passed:
                raise CaptchaFailed()
        limit = self._settings.rate_limit_per_ip
        if self._limiter is not None and limit > 0:  # 0 turns the limit off
            verdict = await self._limiter.take(rate_key(ip), limit)
            if not verdict.allowed:
                log.info("abuse.rate_limited kind=ip limit=%s", limit)
                raise TooManyRequests(verdict.retry_after)
        return Passed(form, signup_id, from_token, issued_at)
