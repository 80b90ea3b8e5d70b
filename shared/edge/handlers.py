"""The public routes' handlers: a sign-up, its status, the pages and their static files, the API description.

Each reads the request, asks the domain and returns one outcome; none knows
how the outcome is shown (``shared.edge.present``) or how errors become
problems (``shared.edge.pipeline``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from .. import problems
from ..access import may, roles_of
from ..errors import ConcurrencyConflict, FormRejected
from ..lifecycle.validation import parse_submission
from ..services import get_services
from .model import File, Inbound, Json, Outcome, Refused, Show

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "pages" / "static"
STATIC_TYPES: Final = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
STATIC_FILES: Final = frozenset({"site.css", "signup.js", "status.js", "manage.js", "overview.js"})


def language_of(request: Inbound) -> str:
    """The page language: ``?lang=``, else ``Accept-Language``, else English."""
    from ..pages.i18n import negotiate

    return negotiate(request.headers.get("accept-language"), request.params.get("lang"))


async def submit_signup(request: Inbound) -> Outcome:
    """POST /api/signups: check, decide by the policy, record, enqueue; 202 (a browser's form post: 303)."""
    # Bad input is answered before any setting or client is needed.
    form, extras = parse_submission(request.headers.get("content-type"), request.body)
    services = get_services()
    passed = await services.gate.check(form, extras, request.headers)
    form = passed.form
    try:
        # A form token's own id, so that the record's conditional insert refuses the token's reuse.
        signup = await services.intake.submit(form, signup_id=passed.signup_id if passed.from_token else None)
    except ConcurrencyConflict:
        log.info("http.form_token_reused signup_id=%s", passed.signup_id)
        raise FormRejected("reused") from None
    parts = urlsplit(request.url)
    location = f"{parts.path.rstrip('/')}/{signup.id}"
    # Every sign-up is answered by its public face alone (queued, or pending_approval for a review).
    status, _ = signup.public_face(signup.created_at)
    status_url = urlunsplit((parts.scheme, parts.netloc, location, "", ""))
    return Json(
        202,
        {"id": signup.id, "status": status.value, "statusUrl": status_url},
        {"Location": location},
        see_other=f"/api/signup/{signup.id}?lang={form.language or 'en'}",
    )


async def _public_view(request: Inbound) -> dict[str, object] | Refused:
    view = await get_services().intake.public_status(request.route.get("id", ""))
    if view is None:
        return Refused(problems.not_found("sign-up with that id"))
    return view


async def get_signup(request: Inbound) -> Outcome:
    """GET /api/signups/{id}: the anonymous status view."""
    view = await _public_view(request)
    return view if isinstance(view, Refused) else Json(200, view)


async def signup_page(request: Inbound) -> Outcome:
    """GET /api/signup: the sign-up form in the requester's language."""
    return Show("signup", language_of(request), headers={"Vary": "Accept-Language"})


async def status_page(request: Inbound) -> Outcome:
    """GET /api/signup/{id}: one request's status as a page (where a form post without JavaScript lands)."""
    view = await _public_view(request)
    return view if isinstance(view, Refused) else Show("status", language_of(request), view)


async def manage_page(request: Inbound) -> Outcome:
    """GET /api/manage: the approver's page, showing what the caller's role allows (the routes check again)."""
    settings = get_services().settings
    approve_role = settings.manage_easy_auth_role
    signed_in = bool(approve_role) and bool(request.headers.get("x-ms-client-principal"))
    can_approve = True
    if approve_role and signed_in:
        can_approve = may("approve", roles_of(request.headers), approve_role, settings.manage_convert_easy_auth_role)
    view = {"signed_in": signed_in, "focus_id": request.params.get("id"), "can_approve": can_approve}
    return Show("manage", language_of(request), view)


async def static_file(request: Inbound) -> Outcome:
    """GET /api/static/{name}: the pages' CSS and JavaScript (and the branding stylesheet)."""
    name = request.route.get("name", "")
    if name == "brand.css":
        from ..pages.views import brand_css

        return File(brand_css(get_services().settings).encode("utf-8"), STATIC_TYPES[".css"])
    if name not in STATIC_FILES:
        return Refused(problems.not_found("such file"))
    return File((STATIC_DIR / name).read_bytes(), STATIC_TYPES[Path(name).suffix])


async def openapi(request: Inbound) -> Outcome:
    """GET /api/openapi.json: the OpenAPI 3.1 description of every route."""
    from ..api import description

    return Json(200, description())
