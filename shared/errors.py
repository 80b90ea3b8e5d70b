"""The project's exception tree.

Every error the domain raises on purpose derives from ``PortalError``::

    PortalError
    ├── ConfigurationError          settings missing or invalid (names every key)
    ├── RequestError                the sign-up request itself is unacceptable (4xx)
    │   ├── ValidationFailed        field problems, all at once (400)
    │   ├── UnsupportedMediaType    content type not accepted (415)
    │   ├── PayloadTooLarge         body over the limit (413)
    │   ├── SignupForbidden         the policy refuses the address's domain (403)
    │   ├── NotAuthenticated        an admin route without a principal (401; Easy Auth mode)
    │   ├── AccessDenied            a principal without the approver role (403)
    │   ├── CrossSiteRequest        an admin write sent from another site (403)
    │   ├── UnknownSignup           no sign-up with that id (404)
    │   ├── UnknownGuest            no guest the portal made has that id (404)
    │   ├── RestoreWindowPassed     a deleted guest past Microsoft's 30 days (409)
    │   ├── DirectoryUnavailable    Graph could not act on an admin's guest action now (503)
    │   ├── FormRejected            the page's honeypot or form token says it was not a person (400)
    │   ├── CaptchaFailed           the CAPTCHA provider did not vouch for the request (400)
    │   ├── TooManyRequests         a rate limit per client IP or email domain (429, Retry-After)
    │   └── DecisionConflict        someone decided first, or it is no longer pending (409)
    ├── IllegalTransition           a status write the lifecycle's table does not declare (a bug)
    ├── StorageError                Table or Queue storage failed (503 at intake)
    │   └── ConcurrencyConflict     an ETag-conditional write lost a race
    └── GraphError                  Microsoft Graph refused or failed a call
        ├── PermanentGraphError     Graph refused: record and stop (400, 403, 404, 409, ...)
        │   └── FeatureUnavailable  the tenant lacks what a feature needs (signInActivity without
        │                           an Entra ID P1/P2 licence: 403 Authentication_Request-
        │                           FromNonPremiumTenantOrB2CTenant); report "not available in
        │                           this tenant", never guess, never retry
        ├── TransientGraphError     Graph did not act: retry later, honouring ``retry_after``
        │   │                       (429, 401, a connection never made, any failed read)
        │   └── WriteDeferred       the pacer had no write slot within its bound; nothing was sent
        └── AmbiguousGraphError     a write may have reached Graph and acted (5xx, a timeout or
                                    a dropped connection after the request went out): find out
                                    with a read before writing again

``client.classify`` is the one place a foreign failure becomes one of these.

Foreign exceptions (azure-core, kiota, httpx) are wrapped with
``raise ... from exc`` at the boundary that knows what they mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class PortalError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigurationError(PortalError):
    """One or more settings are missing or invalid."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        listed = "; ".join(f"{key}: {why}" for key, why in sorted(self.problems.items()))
        super().__init__(f"invalid configuration ({len(self.problems)} setting(s)): {listed}")


class RequestError(PortalError):
    """The sign-up request cannot be accepted; maps to a 4xx problem response."""

    status = 400
    type_uri = "/problems/bad-request"
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class ValidationFailed(RequestError):
    """Field-level problems, every field's problems at once."""

    type_uri = "/problems/validation"
    title = "The sign-up request is not valid"

    def __init__(self, errors: Mapping[str, Sequence[str]], detail: str | None = None) -> None:
        self.errors = {field: list(messages) for field, messages in errors.items()}
        fields = ", ".join(sorted(self.errors))
        super().__init__(detail or f"Correct these fields and send again: {fields}.")


class UnsupportedMediaType(RequestError):
    """The body's content type is not one the endpoint reads."""

    status = 415
    type_uri = "/problems/unsupported-media-type"
    title = "Unsupported media type"


class PayloadTooLarge(RequestError):
    """The body is larger than the endpoint accepts."""

    status = 413
    type_uri = "/problems/payload-too-large"
    title = "Request body too large"


class SignupForbidden(RequestError):
    """The sign-up policy refuses the address; the detail says nothing of the policy itself."""

    status = 403
    type_uri = "/problems/forbidden"
    title = "Sign-up not allowed"

    def __init__(self, signup_id: str) -> None:
        self.signup_id = signup_id  # the recorded refusal, for logs
        super().__init__("Sign-ups for this address are not accepted.")


class NotAuthenticated(RequestError):
    """An admin route was called without the principal that Easy Auth would have set."""

    status = 401
    type_uri = "/problems/unauthenticated"
    title = "Sign-in required"


class AccessDenied(RequestError):
    """The caller is signed in but lacks the app role the admin routes require."""

    status = 403
    type_uri = "/problems/access-denied"
    title = "Not allowed"


class CrossSiteRequest(RequestError):
    """An admin write came from another site (a foreign ``Origin`` or ``Sec-Fetch-Site: cross-site``)."""

    status = 403
    type_uri = "/problems/cross-site"
    title = "Cross-site request refused"

    def __init__(self) -> None:
        super().__init__("Admin changes are accepted only from this site's own pages or from API clients.")


class FormRejected(RequestError):
    """The sign-up page's own signals (honeypot, form token) refuse the post."""

    type_uri = "/problems/form-rejected"
    title = "The form could not be accepted"

    def __init__(self, reason: str) -> None:
        self.reason = reason  # invalid, too_fast, expired, missing or honeypot: for logs and the page's wording
        super().__init__("The form could not be accepted. Reload the page and try again.")


class CaptchaFailed(RequestError):
    """The CAPTCHA token is missing or the provider refused it."""

    type_uri = "/problems/captcha"
    title = "Verification failed"

    def __init__(self) -> None:
        super().__init__("The verification did not succeed. Try again.")


class TooManyRequests(RequestError):
    """A rate limit is passed; ``retry_after`` seconds until the window ends."""

    status = 429
    type_uri = "/problems/too-many-requests"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"Too many sign-ups from here right now. Try again in {retry_after} seconds.")


class UnknownSignup(RequestError):
    """No sign-up has that id."""

    status = 404
    type_uri = "/problems/not-found"
    title = "Not found"

    def __init__(self) -> None:
        super().__init__("There is no sign-up with that id.")


class DecisionConflict(RequestError):
    """An approve or deny lost: another decision came first, or the request is no longer pending."""

    status = 409
    type_uri = "/problems/conflict"
    title = "Already decided"

    def __init__(self, detail: str, current: object = None) -> None:
        self.current = current  # the record as it stands, for the answer
        super().__init__(detail)


class IllegalTransition(PortalError):
    """A status write that ``shared.lifecycle.transitions`` does not declare, or whose guard refused it."""


class StorageError(PortalError):
    """Azure Table or Queue storage could not complete an operation."""


class ConcurrencyConflict(StorageError):
    """A conditional (ETag) write found the entity changed by someone else."""


class GraphError(PortalError):
    """Microsoft Graph refused or failed a call."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after  # Graph's Retry-After, when it gave one
        super().__init__(message)


class PermanentGraphError(GraphError):
    """Graph refused the call; repeating it would not help. Record and stop."""


class FeatureUnavailable(PermanentGraphError):
    """The tenant cannot serve a feature (a licence gate, not consent): say so and never guess a value.

    ``feature`` names it (``signInActivity``); callers report "not available in this tenant".
    """

    def __init__(
        self, feature: str, message: str, *, code: str, status: int | None = None, request_id: str | None = None
    ):
        self.feature = feature
        super().__init__(
            f"{feature} is not available in this tenant: {message}", code=code, status=status, request_id=request_id
        )


class TransientGraphError(GraphError):
    """Graph was throttled, unavailable or unreachable and did not act; try again later."""


class WriteDeferred(TransientGraphError):
    """The write pacer could not give a slot within its bound; nothing was sent to Graph."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"no Graph write slot within the pacing bound (next in {retry_after:.1f}s)",
            code="WriteDeferred",
            retry_after=retry_after,
        )


class AmbiguousGraphError(GraphError):
    """A write may have reached Graph and acted, but its answer was lost; check before writing again."""


class RestoreWindowPassed(RequestError):
    """A deleted guest past Microsoft's 30 days in deleted items: it cannot come back."""

    status = 409
    type_uri = "/problems/restore-window-passed"
    title = "Past the restore window"


class DirectoryUnavailable(RequestError):
    """Graph could not do it now (nothing is recorded as done); the caller may try again."""

    status = 503
    type_uri = "/problems/unavailable"
    title = "Directory unavailable"


class UnknownGuest(RequestError):
    """No registered guest has that id (the portal never touches a guest it did not make)."""

    status = 404
    type_uri = "/problems/not-found"
    title = "Not found"

    def __init__(self) -> None:
        super().__init__("No guest the portal made has that id.")
