"""Abuse controls of the anonymous sign-up endpoint, which creates accounts in a tenant.

This package owns the checks a submission passes before intake records it:

* the page's own signals: a hidden honeypot field and a signed form token that
  proves the page was served at least ``SIGNUP_MIN_FILL_SECONDS`` ago (``forms``);
* rate limits per client IP (from the platform's forwarded header, trusting a
  configured number of proxy hops) and per email domain, counted in Table
  storage so they hold across instances (``ratelimit``);
* an optional CAPTCHA (Turnstile, hCaptcha or reCAPTCHA) verified against the
  provider's endpoint, failing closed when it cannot be reached (``captcha``).

None of them may refuse a well-behaved person: the limits are generous, the
page's signals only apply to the page's own posts, and every refusal is a clear
problem response (429 with ``Retry-After`` for the limits).
"""

from __future__ import annotations

from .captcha import CaptchaVerifier
from .forms import FormTokens
from .gate import SubmissionGate, VerificationUnavailable
from .ratelimit import RateLimiter, TableRateLimiter, client_ip

__all__ = [
    "CaptchaVerifier",
    "FormTokens",
    "RateLimiter",
    "SubmissionGate",
    "TableRateLimiter",
    "VerificationUnavailable",
    "client_ip",
]
