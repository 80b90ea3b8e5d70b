"""The policy document, its validation and its matching rules.

The document is one JSON object (README "Policy")::

    {"defaultAction": "review",
     "blockedDomains": ["gmail.com", "*.spam.example"],
     "profiles": [{"name": "fabrikam", "domains": ["fabrikam.com", "*.fabrikam.com"],
                   "action": "approve", "groups": ["<object id>"]}]}

``parse_policy`` checks all of it and raises one ``ConfigurationError`` whose
problems are keyed by their path in the document (``profiles[1].domains[0]``).
Unknown keys are refused, so a typo cannot silently change a decision.

A domain pattern is exact (``fabrikam.com``) or a suffix (``*.fabrikam.com``,
which matches every sub-domain of fabrikam.com but not fabrikam.com itself).
Patterns are normalised with the same IDNA 2008 rule as addresses, so they
compare with the stored form of an address's domain.

``Policy.decide`` matches a domain: a blocked domain always wins; then the most
specific profile (an exact domain beats any suffix, a longer suffix beats a
shorter one); otherwise ``defaultAction``. Two profiles claiming the same
pattern are a validation error, so the most specific match is always unique.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..graph.directory import InvitationOptions
from ..lifecycle.validation import InvalidEmail, normalise_email
from .lifecycle_rules import LifecycleRules, parse_lifecycle_rules


class Action(StrEnum):
    """What the policy decides for a domain."""

    APPROVE = "approve"  # invite without a person deciding
    REVIEW = "review"  # record and wait for an approver
    DENY = "deny"  # refuse (403) and record the refusal


TOP_KEYS: Final = frozenset({"defaultAction", "blockedDomains", "profiles", "defaultApprovers"})
PROFILE_KEYS: Final = frozenset(
    {
        "name",
        "domains",
        "action",
        "groups",
        "redirectUrl",
        "invitedUserType",
        "messageLanguage",
        "sponsors",
        "approvers",
        "questions",
        "mailTemplate",
        "requesterTextInMail",
        "lifecycle",
    }
)
PROFILE_REQUIRED: Final = ("name", "domains", "action", "groups")
QUESTION_KEYS: Final = frozenset({"id", "label", "required", "maxLength"})
TEMPLATE_KEYS: Final = frozenset({"subject", "html"})
PLACEHOLDERS: Final = frozenset({"displayName", "organisation", "redeemUrl", "contact"})
# A requester's own words never go into a subject (a mail client shows it before anything else).
SUBJECT_PLACEHOLDERS: Final = frozenset({"organisation", "contact"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z]+)\}")
MAX_TEMPLATE: Final = 20000
MAX_SPONSORS: Final = 5
MAX_QUESTION_LENGTH: Final = 2000
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_QUESTION_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Question:
    """An extra question a profile asks on the sign-up form."""

    id: str
    label: str
    required: bool = False
    max_length: int = 500


@dataclass(frozen=True)
class MailTemplate:
    """The organisation's own invitation mail: subject and HTML body per language tag.

    Placeholders ``{displayName}``, ``{organisation}``, ``{redeemUrl}`` and
    ``{contact}`` are replaced with HTML-escaped values (``shared.onboarding``);
    a subject may hold only ``{organisation}`` and ``{contact}``.
    """

    subject: Mapping[str, str]
    html: Mapping[str, str]

    def language_for(self, wanted: str | None) -> str:
        """The template language for ``wanted``: exact, then its primary tag, then ``en``, then the first."""
        available = {tag.lower(): tag for tag in self.html}
        for candidate in (wanted or "", (wanted or "").split("-")[0], "en"):
            if candidate and candidate.lower() in available:
                return available[candidate.lower()]
        return next(iter(self.html))


@dataclass(frozen=True)
class Profile:
    """A named group of domains: their action, groups and invitation options."""

    name: str
    domains: tuple[str, ...]
    action: Action
    groups: tuple[str, ...]
    redirect_url: str | None = None
    invited_user_type: str = "Guest"
    message_language: str | None = None
    sponsors: tuple[str, ...] | None = None
    approvers: tuple[str, ...] = ()
    questions: tuple[Question, ...] = ()
    mail_template: MailTemplate | None = None
    # False: the requester's own text (name, company, justification, answers) stays out of every mail.
    requester_text_in_mail: bool = True
    lifecycle: LifecycleRules | None = None  # None: the profile's guests are never reviewed or touched

    def invitation_options(self, base: InvitationOptions) -> InvitationOptions:
        """``base`` (the settings' options) with this profile's redirect, user type, language and sponsors."""
        return replace(
            base,
            redirect_url=self.redirect_url or base.redirect_url,
            # Member only when the profile says so: the settings' INVITE_USER_TYPE does not carry over.
            user_type=self.invited_user_type,
            message_language=self.message_language or base.message_language,
            sponsor_ids=self.sponsors if self.sponsors is not None else base.sponsor_ids,
            # The organisation sends its own mail (shared.onboarding): Microsoft's must not go too.
            send_message=False if self.mail_template is not None else base.send_message,
        )


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one domain, and why."""

    action: Action
    profile: Profile | None = None
    reason: str = "default"  # "blocked", "profile" or "default"


def _matches(pattern: str, domain: str) -> bool:
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])  # ".fabrikam.com": sub-domains only
    return domain == pattern


def _specificity(pattern: str) -> tuple[int, int]:
    """Exact beats any suffix; a suffix with more labels beats one with fewer."""
    if pattern.startswith("*."):
        return (0, pattern.count("."))
    return (1, 0)


@dataclass(frozen=True)
class Policy:
    """A validated policy document."""

    default_action: Action = Action.REVIEW
    blocked_domains: tuple[str, ...] = ()
    profiles: tuple[Profile, ...] = ()
    default_approvers: tuple[str, ...] = ()  # who reviews requests no profile matched

    def approvers_for(self, profile_name: str | None) -> tuple[str, ...]:
        """Who is told that a request waits: its profile's approvers, else the default approvers."""
        profile = self.profile(profile_name) if profile_name else None
        return profile.approvers if profile is not None and profile.approvers else self.default_approvers

    def decide(self, domain: str) -> Decision:
        """The decision for ``domain`` (the stored, IDNA-encoded form of an address's domain)."""
        domain = domain.lower()
        if any(_matches(pattern, domain) for pattern in self.blocked_domains):
            return Decision(Action.DENY, None, "blocked")
        best: tuple[tuple[int, int], Profile] | None = None
        for profile in self.profiles:
            for pattern in profile.domains:
                if _matches(pattern, domain) and (best is None or _specificity(pattern) > best[0]):
                    best = (_specificity(pattern), profile)
        if best is not None:
            return Decision(best[1].action, best[1], "profile")
        return Decision(self.default_action, None, "default")

    def profile(self, name: str) -> Profile | None:
        """The profile called ``name``, or None."""
        return next((p for p in self.profiles if p.name == name), None)

    def requester_text_in_mail(self, profile_name: str | None) -> bool:
        """Whether mail about a request of this profile may quote the requester's own text."""
        profile = self.profile(profile_name) if profile_name else None
        return profile.requester_text_in_mail if profile is not None else True


# With SIGNUP_POLICY unset nobody is invited without a person deciding.
NO_POLICY: Final = Policy()


class _Checker:
    """Collects problems by path instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def fail(self, path: str, why: str) -> None:
        self.problems.setdefault(path, why)

    def keys(self, data: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in sorted(set(data) - allowed):
            self.fail(f"{path}{key}", "is not a known key")

    def listed(self, value: Any, path: str, item: Callable[[Any, str], Any]) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, "must be a list")
            return []
        results = [item(entry, f"{path}[{i}]") for i, entry in enumerate(value)]
        return [r for r in results if r is not None]

    def text(self, value: Any, path: str, limit: int = 256) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty string")
            return None
        if len(value) > limit:
            self.fail(path, f"must be at most {limit} characters")
            return None
        return value.strip()

    def one_of(self, value: Any, path: str, enum: type[StrEnum], allowed: tuple[str, ...]) -> Any:
        if value not in allowed:
            self.fail(path, f"must be one of {', '.join(allowed)}")
            return None
        return enum(value)

    def domain(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.fail(path, "not a domain (must be a string)")
            return None
        wildcard = value.strip().startswith("*.")
        bare = value.strip()[2:] if wildcard else value.strip()
        try:
            # The address rule, so a pattern compares with the stored form of an address's domain.
            encoded = normalise_email(f"x@{bare}").rsplit("@", 1)[1]
        except InvalidEmail as exc:
            self.fail(path, f"not a domain ({str(exc).removeprefix('has a domain that is ')})")
            return None
        return f"*.{encoded}" if wildcard else encoded

    def guid(self, value: Any, path: str) -> str | None:
        try:
            return str(uuid.UUID(value)) if isinstance(value, str) else None
        except ValueError:
            pass
        self.fail(path, "not an object id (GUID)")
        return None

    def email(self, value: Any, path: str) -> str | None:
        try:
            if isinstance(value, str):
                return normalise_email(value)
        except InvalidEmail as exc:
            self.fail(path, f"not an email address ({exc})")
            return None
        self.fail(path, "not an email address")
        return None

    def https(self, value: Any, path: str) -> str | None:
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            self.fail(path, "must be an absolute https URL")
            return None
        return str(value)

    def question(self, value: Any, path: str) -> Question | None:
        if not isinstance(value, dict):
            self.fail(path, "must be an object")
            return None
        self.keys(value, QUESTION_KEYS, f"{path}.")
        qid = value.get("id")
        if not isinstance(qid, str) or not _QUESTION_ID.match(qid):
            self.fail(f"{path}.id", "must be a letter then up to 63 letters, digits, _ or -")
            qid = None
        label = self.text(value.get("label"), f"{path}.label")
        required = value.get("required", False)
        if not isinstance(required, bool):
            self.fail(f"{path}.required", "must be true or false")
        max_length = value.get("maxLength", 500)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 0 < max_length <= MAX_QUESTION_LENGTH:
            self.fail(f"{path}.maxLength", f"must be a whole number from 1 to {MAX_QUESTION_LENGTH}")
            max_length = 500
        if qid is None or label is None or not isinstance(required, bool):
            return None
        return Question(qid, label, required, max_length)

    def localised(self, value: Any, path: str, required: str | None) -> dict[str, str]:
        if not isinstance(value, dict) or not value:
            self.fail(path, "must be an object of language tag to text, with at least one language")
            return {}
        texts: dict[str, str] = {}
        for tag, text in value.items():
            if not _LANGUAGE.match(str(tag)):
                self.fail(f"{path}.{tag}", "is not a language tag such as en or zh-Hans")
            elif not isinstance(text, str) or not text.strip() or len(text) > MAX_TEMPLATE:
                self.fail(f"{path}.{tag}", f"must be non-empty text of at most {MAX_TEMPLATE} characters")
            else:
                unknown = sorted(set(_PLACEHOLDER.findall(text)) - PLACEHOLDERS)
                if unknown:
                    self.fail(f"{path}.{tag}", f"unknown placeholder(s) {unknown}; known: {sorted(PLACEHOLDERS)}")
                elif required and "{" + required + "}" not in text:
                    self.fail(f"{path}.{tag}", f"must contain {{{required}}}")
                else:
                    texts[str(tag)] = text
        return texts

    def template(self, value: Any, path: str) -> MailTemplate | None:
        if not isinstance(value, dict):
            self.fail(path, "must be an object with subject and html")
            return None
        self.keys(value, TEMPLATE_KEYS, f"{path}.")
        subject = self.localised(value.get("subject"), f"{path}.subject", None)
        for tag, text in subject.items():
            if set(_PLACEHOLDER.findall(text)) - SUBJECT_PLACEHOLDERS:
                self.fail(f"{path}.subject.{tag}", "may hold only {organisation} and {contact}: no requester text")
        html = self.localised(value.get("html"), f"{path}.html", "redeemUrl")
        if subject and html and set(subject) != set(html):
            self.fail(path, "subject and html must name the same languages")
        if not subject or not html or set(subject) != set(html):
            return None
        return MailTemplate(subject, html)

    def profile(self, value: Any, path: str) -> Profile | None:
        if not isinstance(value, dict):
            self.fail(path, "must be an object")
            return None
        self.keys(value, PROFILE_KEYS, f"{path}.")
        for key in PROFILE_REQUIRED:
            if key not in value:
                self.fail(f"{path}.{key}", "is required")
        name = self.text(value.get("name"), f"{path}.name", 64) if "name" in value else None
        domains = self.listed(value.get("domains"), f"{path}.domains", self.domain) if "domains" in value else []
        if "domains" in value and isinstance(value["domains"], list) and not value["domains"]:
            self.fail(f"{path}.domains", "must name at least one domain")
        action = (
            self.one_of(value.get("action"), f"{path}.action", Action, (Action.APPROVE, Action.REVIEW))
            if "action" in value
            else None
        )
        groups = self.listed(value.get("groups"), f"{path}.groups", self.guid) if "groups" in value else []
        redirect = self.https(value["redirectUrl"], f"{path}.redirectUrl") if "redirectUrl" in value else None
        user_type = value.get("invitedUserType", "Guest")
        if user_type not in ("Guest", "Member"):
            self.fail(f"{path}.invitedUserType", "must be one of Guest, Member")
        language = value.get("messageLanguage")
        if language is not None and not (isinstance(language, str) and _LANGUAGE.match(language)):
            self.fail(f"{path}.messageLanguage", "must be an ISO 639 language tag such as en-US")
        sponsors = None
        if "sponsors" in value:
            sponsors = tuple(self.listed(value["sponsors"], f"{path}.sponsors", self.guid))
            if isinstance(value["sponsors"], list) and len(value["sponsors"]) > MAX_SPONSORS:
                self.fail(f"{path}.sponsors", f"at most {MAX_SPONSORS} sponsors")
        approvers = self.listed(value.get("approvers", []), f"{path}.approvers", self.email)
        questions = self.listed(value.get("questions", []), f"{path}.questions", self.question)
        template = self.template(value["mailTemplate"], f"{path}.mailTemplate") if "mailTemplate" in value else None
        text_in_mail = value.get("requesterTextInMail", True)
        if not isinstance(text_in_mail, bool):
            self.fail(f"{path}.requesterTextInMail", "must be true or false")
        rules = (
            parse_lifecycle_rules(value["lifecycle"], f"{path}.lifecycle", self.fail) if "lifecycle" in value else None
        )
        seen: set[str] = set()
        for i, question in enumerate(questions):
            if question.id in seen:
                self.fail(f"{path}.questions[{i}].id", f"{question.id!r} is used twice")
            seen.add(question.id)
        if name is None or action is None:
            return None
        return Profile(
            name=name,
            domains=tuple(domains),
            action=action,
            groups=tuple(groups),
            redirect_url=redirect,
            invited_user_type=user_type if user_type in ("Guest", "Member") else "Guest",
            message_language=language if isinstance(language, str) else None,
            sponsors=sponsors,
            approvers=tuple(approvers),
            questions=tuple(questions),
            mail_template=template,
            requester_text_in_mail=text_in_mail is not False,
            lifecycle=rules,
        )


def parse_policy(data: Any) -> Policy:
    """Validate a decoded policy document; raise ``ConfigurationError`` naming every problem by its path."""
    check = _Checker()
    if not isinstance(data, dict):
        raise ConfigurationError({"(document)": "must be a JSON object"})
    check.keys(data, TOP_KEYS, "")
    default = check.one_of(
        data.get("defaultAction", Action.REVIEW.value), "defaultAction", Action, tuple(a.value for a in Action)
    )
    blocked = check.listed(data.get("blockedDomains", []), "blockedDomains", check.domain)
    default_approvers = check.listed(data.get("defaultApprovers", []), "defaultApprovers", check.email)
    profiles: list[Profile] = []
    raw_profiles = data.get("profiles", [])
    if not isinstance(raw_profiles, list):
        check.fail("profiles", "must be a list")
        raw_profiles = []
    names: dict[str, int] = {}
    owners: dict[str, str] = {}
    for i, raw in enumerate(raw_profiles):
        profile = check.profile(raw, f"profiles[{i}]")
        if profile is None:
            continue
        if profile.name in names:
            check.fail(f"profiles[{i}].name", f"{profile.name!r} is used by profiles[{names[profile.name]}] too")
        names.setdefault(profile.name, i)
        for j, pattern in enumerate(profile.domains):
            owner = owners.setdefault(pattern, profile.name)
            if owner != profile.name:
                check.fail(f"profiles[{i}].domains[{j}]", f"{pattern} is claimed by profile {owner!r} too")
        profiles.append(profile)
    if check.problems:
        raise ConfigurationError(check.problems)
    return Policy(
        default_action=default,
        blocked_domains=tuple(blocked),
        profiles=tuple(profiles),
        default_approvers=tuple(default_approvers),
    )
