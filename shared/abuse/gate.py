"""The checks a submission passes before intake: the page's signals, the terms, the rate limits, the CAPTCHA."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from ..errors import CaptchaFailed, FormRejected, TooManyRequests, ValidationFailed
from ..lifecycle.validation import Extras, SignupForm
from ..settings import Settings
from .captcha import CaptchaUnavailable, CaptchaVerifier
from .forms import FormTokens
from .ratelimit import RateLimiter, client_ip

log = logging.getLogger(__name__)


class VerificationUnavailable(Exception):
    """The CAPTCHA provider could not be asked; the submission is refused (503), nothing recorded."""


class SubmissionGate:
    """Runs the abuse controls in order, cheapest first; returns the form with the accepted terms' version."""

    def __init__(
        self,
        settings: Settings,
        limiter: RateLimiter | None,
        tokens: FormTokens | None,
        captcha: CaptchaVerifier | None,
    ) -> None:
        self._settings = settings
        self._limiter = limiter
        self._tokens = tokens
        self._captcha = captcha

    async def check(self, form: SignupForm, extras: Extras, headers: Mapping[str, str]) -> SignupForm:
        """Raise the first refusal (400, 429, or ``VerificationUnavailable``); the form to record otherwise."""
        if extras.honeypot:
            log.info("abuse.honeypot domain=%s", form.domain)
            raise FormRejected("honeypot")
        if extras.form_token is not None and self._tokens is not None:
            why = self._tokens.check(extras.form_token)
            if why is not None:
                log.info("abuse.form_token reason=%s domain=%s", why, form.domain)
                raise FormRejected(why)
        if self._settings.terms_version:
            if not extras.accept_terms:
                raise ValidationFailed({"acceptTerms": ["The terms of use must be accepted."]})
            form = dataclasses.replace(form, terms_version=self._settings.terms_version)
        ip = client_ip(headers, self._settings.trusted_forwarded_hops)
        keys: dict[str, tuple[str, int]] = {}
        if ip is not None and self._settings.rate_limit_per_ip > 0:  # 0 turns a limit off
            keys["ip"] = (ip, self._settings.rate_limit_per_ip)
        if self._settings.rate_limit_per_domain > 0:
            keys["domain"] = (form.domain, self._settings.rate_limit_per_domain)
        if self._limiter is not None and keys:
            verdict = await self._limiter.hit(keys)
            if not verdict.allowed:
                raise TooManyRequests(verdict.retry_after)
        if self._captcha is not None:
            token = extras.captcha.get(self._captcha.provider.field)
            try:
                passed = await self._captcha.verify(token, ip)
            except CaptchaUnavailable as exc:
                log.warning("abuse.captcha_unavailable error=%s", exc)
                raise VerificationUnavailable(str(exc)) from exc
            if not passed:
                raise CaptchaFailed()
        return form
