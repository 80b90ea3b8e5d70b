"""Abuse controls of the anonymous sign-up endpoint, which creates accounts in a tenant.

This package owns the checks a submission passes before intake records it, cheapest first
(``gate``), and the per-domain budget of the admission step (``budget``):

* the page's own signals: a hidden honeypot field and a signed, single-use form
  token that proves the page was served at least ``SIGNUP_MIN_FILL_SECONDS`` ago
  (``forms``);
* an optional CAPTCHA (Turnstile, hCaptcha or reCAPTCHA) verified against the
  provider's endpoint, failing closed when it cannot be reached (``captcha``);
* a rate limit per client IP (IPv6 per /64) at the door, counting only what passed
  the checks above (``ratelimit``), and a budget per email domain in the admission
  step, over which sign-ups go to review instead of being refused (``budget``); both
  count in memory per instance, reconciled through Table storage in the background
  (``counters``), so no request waits for a counter and contention never refuses one.

None of them may refuse a well-behaved person: the limits are sized for a partner's
onboarding day (``docs/abuse.md``), the page's signals only apply to the page's own
posts, and every refusal is a clear problem response (429 with ``Retry-After``).
"""

from __future__ import annotations

from .budget import DomainBudget
from .captcha import CaptchaVerifier
from .counters import CountStore, MemoryCountStore, SharedLimiter, TableCountStore, Verdict
from .forms import FormTokens
from .gate import Passed, SubmissionGate, VerificationUnavailable
from .ratelimit import client_ip, rate_key

__all__ = [
    "CaptchaVerifier",
    "CountStore",
    "DomainBudget",
    "FormTokens",
    "MemoryCountStore",
    "Passed",
    "SharedLimiter",
    "SubmissionGate",
    "TableCountStore",
    "Verdict",
    "VerificationUnavailable",
    "client_ip",
    "rate_key",
]
