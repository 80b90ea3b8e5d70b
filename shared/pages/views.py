"""What each page shows: the context of the templates, in the request's language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..policy import Policy
from ..settings import Settings
from .i18n import translations
from .render import Branding, render

API: Final = "/api"
STATIC: Final = "/api/static"
FINAL_STATUSES: Final = frozenset({"invited", "failed", "denied", "expired"})
FIELD_IDS: Final = {
    "email": "email",
    "displayName": "displayName",
    "company": "company",
    "justification": "justification",
}


def branding(settings: Settings) -> Branding:
    """The organisation's look, from settings."""
    return Branding(
        organisation=settings.organisation_name,
        contact=settings.organisation_contact,
        logo_url=settings.brand_logo_url,
        primary_colour=settings.brand_primary_colour,
        terms_url=settings.terms_url,
        terms_version=settings.terms_version,
    )


def brand_css(settings: Settings) -> str:
    """The one stylesheet that depends on settings (no inline styles: the CSP allows none)."""
    return f":root {{ --brand: {settings.brand_primary_colour}; }}\n"


def messages(language: str, organisation: str) -> dict[str, str]:
    """The texts the scripts show, from the catalogue (the scripts carry no text of their own)."""
    t = translations(language)
    _ = t.gettext
    return {
        "send": _("Send request"),
        "sending": _("Sending…"),
        "reference": _("Reference: %(id)s"),
        "status_queued": _("Request received. It is in the queue and will be handled in a moment."),
        "status_inviting": _("Request received. It is in the queue and will be handled in a moment."),
        "status_retrying": _("Request received. It is in the queue and will be handled in a moment."),
        "status_linked": _("Request received. It is in the queue and will be handled in a moment."),
        "status_pending_approval": _(
            "Waiting for approval. Someone at %(organisation)s will review your request; you will hear from "
            "Microsoft by email once it is approved."
        )
        % {"organisation": organisation},
        "status_invited": _(
            "Invitation sent. Check your inbox for the invitation from Microsoft and accept it to get access."
        ),
        "status_denied": _("Your request was not accepted."),
        "status_expired": _("Your request expired before anyone decided. You can send a new one."),
        "status_failed": _("The invitation could not be sent."),
        "field_email": _("Enter a valid email address, like name@company.com."),
        "field_displayName": _("Enter your full name (at most 256 characters)."),
        "field_acceptTerms": _("Accept the terms of use to continue."),
        "field_answer": _("Answer this question."),
        "field_generic": _("Use at most %(count)s characters.") % {"count": 2000},
        "too_long": _("Use at most %(count)s characters."),
        "problem_400": _("The form could not be accepted. Reload the page and try again."),
        "problem_403": _("Sign-ups for this address are not accepted."),
        "problem_429": _("Too many requests. Try again in %(minutes)s minutes.") % {"minutes": 10},
        "problem_503": _("The service is busy. Nothing was sent; try again shortly."),
        "problem_too_fast": _("Please take a moment to check your answers, then send the form again."),
        "problem_captcha": _("The verification did not succeed. Try again."),
        "domain": _("Domain"),
        "company": _("Company"),
        "justification": _("Why do you need access?"),
        "requested": _("Requested %(when)s") % {"when": ""},
        "history": _("History"),
        "answers": _("Answers"),
        "reason": _("Reason"),
        "approve": _("Approve"),
        "deny": _("Deny"),
        "reason_required": _("A reason is required to deny."),
        "approved": _("Approved."),
        "denied": _("Denied."),
        "decided_elsewhere": _("Someone else decided first: %(outcome)s."),
        "load_failed": _("Could not load the requests."),
        "none": _("No requests are waiting."),
    }


def field_errors(language: str, organisation: str, errors: Mapping[str, list[str]]) -> dict[str, str]:
    """One plain, localised message per field the API refused (the API's own words stay in English)."""
    texts = messages(language, organisation)
    shown: dict[str, str] = {}
    for name in errors:
        if name == "email":
            shown[name] = texts["field_email"]
        elif name == "displayName":
            shown[name] = texts["field_displayName"]
        elif name == "acceptTerms":
            shown[name] = texts["field_acceptTerms"]
        elif name.startswith("answers."):
            shown[name] = texts["field_answer"]
        elif name in ("company", "justification"):
            shown[name] = texts["too_long"] % {"count": 256 if name == "company" else 2000}
        else:
            shown["email"] = texts["problem_400"]
    return shown


def question_groups(policy: Policy) -> list[dict[str, Any]]:
    """The profiles' questions, grouped by the domains they apply to (the script shows the matching group)."""
    groups = []
    for profile in policy.profiles:
        if profile.questions:
            shown = ", ".join(dict.fromkeys(d.removeprefix("*.") for d in profile.domains))
            groups.append({"domains": profile.domains, "shown": shown, "questions": profile.questions})
    return groups


def signup_page(
    language: str,
    settings: Settings,
    policy: Policy,
    form_token: str,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    captcha: Mapping[str, str] | None = None,
) -> str:
    """The sign-up form (with the fields' values and errors after a refused post without JavaScript)."""
    ids = dict(FIELD_IDS, acceptTerms="acceptTerms")
    for group in question_groups(policy):
        for question in group["questions"]:
            ids[f"answers.{question.id}"] = f"answer-{question.id}"
    brand = branding(settings)
    return render(
        "signup.html",
        language,
        brand=brand,
        api=API,
        static=STATIC,
        form_token=form_token,
        values=dict(values or {}),
        errors=dict(errors or {}),
        field_ids=ids,
        question_groups=question_groups(policy),
        captcha=captcha,
        messages=messages(language, brand.organisation),
    )


def status_page(language: str, settings: Settings, view: Mapping[str, Any]) -> str:
    """The status of one request, as a page (the answer to a form post without JavaScript)."""
    brand = branding(settings)
    texts = messages(language, brand.organisation)
    status = str(view["status"])
    return render(
        "result.html",
        language,
        brand=brand,
        static=STATIC,
        status=status,
        final=status in FINAL_STATUSES,
        message=texts.get(f"status_{status}", texts["status_queued"]),
        signup_id=view["id"],
        status_url=f"{API}/signups/{view['id']}",
        page_url=f"{API}/signup/{view['id']}?lang={language}",
        messages=texts,
    )


def manage_page(
    language: str,
    settings: Settings,
    *,
    signed_in: bool,
    focus_id: str | None,
    can_approve: bool = True,
    profiles: tuple[str, ...] = (),
) -> str:
    """The admin's console (its data comes from the admin routes, fetched by its scripts).

    ``can_approve`` False (a signed-in principal without the approver role): the console offers no
    pending requests, no reviews and no decisions, only a line saying so; the routes refuse such a
    caller anyway. ``profiles`` are the policy's profile names, offered as a filter.
    """
    from .console import STATUS_ORDER, console_messages, status_names, tabs

    brand = branding(settings)
    mode = "easyauth" if settings.manage_easy_auth_role else "keys"
    texts = messages(language, brand.organisation)
    texts.update(console_messages(language))
    return render(
        "manage.html",
        language,
        brand=brand,
        api=API,
        static=STATIC,
        mode=mode,
        signed_in=signed_in,
        can_approve=can_approve,
        sign_in_url=f"/.auth/login/aad?post_login_redirect_uri={API}/manage",
        focus_id=focus_id or "",
        tabs=tabs(language, can_approve=can_approve),
        profiles=profiles,
        statuses=[(s.value, status_names(language)[s.value]) for s in STATUS_ORDER],
        messages=texts,
        wide=True,
    )
