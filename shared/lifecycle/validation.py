"""Parsing and validation of a sign-up request body.

``parse_signup`` turns the raw body and its content type into a ``SignupForm``
or raises a ``RequestError`` subclass; a ``ValidationFailed`` carries every
field's problems at once. Email addresses are normalised once here (trimmed,
domain mapped and encoded by IDNA 2008 with UTS 46) and that form is what is
stored and invited. The rules for the address follow Microsoft Graph's
documented restrictions on ``invitedUserEmailAddress`` (see ``graph_emulator/spec``).

IDNA 2008, not Python's ``"idna"`` codec: that codec is IDNA 2003, which maps
``ß`` to ``ss`` and final sigma to sigma, so ``a@faß.de`` would become
``a@fass.de``, somebody else's domain. UTS 46 mapping (``idna.encode(...,
uts46=True)``) still lower-cases and folds full-width forms.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Final
from urllib.parse import parse_qsl

import idna

from ..errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed

MAX_BODY_BYTES: Final = 16 * 1024
FIELDS: Final = ("email", "displayName", "company", "justification")
# Fields beside the sign-up itself: the page's language, the terms box, the answers to a profile's questions
# (JSON: "answers": {id: text}; a form: "answers.<id>"), and the abuse controls' fields (shared.abuse).
EXTRA_FIELDS: Final = (
    "language",
    "acceptTerms",
    "answers",
    "formToken",
    "website",
    "cf-turnstile-response",
    "h-captcha-response",
    "g-recaptcha-response",
)
MAX_ANSWER: Final = 2000
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
REQUIRED: Final = frozenset({"email", "displayName"})
MAX_LENGTH: Final = {"email": 254, "displayName": 256, "company": 256, "justification": 2000}
# Characters Graph refuses in invitedUserEmailAddress (its docs' table), plus '@' in the local part.
GRAPH_FORBIDDEN: Final = frozenset('~!#$%^&*()+=[]{}\\/|;:"<>?,')
_LOCAL_ALLOWED = re.compile(r"^[A-Za-z0-9._'`-]+$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
JSON_TYPES: Final = frozenset({"application/json"})
FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded"})


@dataclass(frozen=True)
class SignupForm:
    """A validated sign-up: normalised email and trimmed text fields."""

    email: str
    display_name: str
    company: str | None
    justification: str | None
    language: str | None = None  # the page's language (BCP 47), when the sign-up came through it
    answers: dict[str, str] = field(default_factory=dict)  # the profile's questions, by question id
    terms_version: str | None = None  # the version of the terms the requester accepted

    @property
    def domain(self) -> str:
        """The (IDNA-encoded, lower-case) domain of the email address."""
        return self.email.rsplit("@", 1)[1]


class InvalidEmail(ValueError):
    """An email address Graph would refuse; the message says why."""


def normalise_email(raw: str) -> str:
    """Trim, map and IDNA 2008-encode the domain; raise ``InvalidEmail`` if Graph would refuse it."""
    value = unicodedata.normalize("NFC", raw.strip())
    if not value:
        raise InvalidEmail("is empty")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidEmail("must not contain spaces or control characters")
    if value.count("@") != 1:
        raise InvalidEmail("must be one address of the form name@domain")
    local, domain = value.split("@")
    if not local or not domain:
        raise InvalidEmail("must be one address of the form name@domain")
    forbidden = sorted(set(local) & GRAPH_FORBIDDEN)
    if forbidden:
        hint = " (plus-addressing is not supported)" if "+" in forbidden else ""
        raise InvalidEmail(f"must not contain {' '.join(forbidden)}{hint}")
    if not _LOCAL_ALLOWED.match(local):
        raise InvalidEmail("the part before @ may use only letters a-z, digits and . _ - '")
    if len(local) > 64:
        raise InvalidEmail("the part before @ is longer than 64 characters")
    if local[0] in ".-" or local[-1] in ".-":
        raise InvalidEmail("the part before @ must not start or end with . or -")
    if ".." in local:
        raise InvalidEmail("the part before @ must not contain two dots in a row")
    ascii_domain = encode_domain(domain)
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise InvalidEmail("has a domain that is not a valid host name")
    if labels[-1].isdigit():
        raise InvalidEmail("has a domain that is not a valid host name")
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_LENGTH["email"]:
        raise InvalidEmail(f"is longer than {MAX_LENGTH['email']} characters")
    return address


def encode_domain(domain: str) -> str:
    """The domain as IDNA 2008 A-labels after UTS 46 mapping, without a root dot; ``InvalidEmail`` if invalid."""
    try:
        encoded = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        # idna's reasons name the label and the rule ("Codepoint U+2615 ... not allowed").
        raise InvalidEmail(f"has a domain that is not a valid domain name ({exc})") from None
    except UnicodeError:
        raise InvalidEmail("has a domain that is not a valid domain name") from None
    return encoded.removesuffix(".").lower()


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into its lower-cased media type and parameters."""
    if not content_type:
        return "", {}
    head, *params = content_type.split(";")
    parsed = {}
    for param in params:
        name, _, value = param.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"').lower()
    return head.strip().lower(), parsed


def _decode(body: bytes, charset: str) -> str:
    if charset not in {"utf-8", "utf8", "us-ascii"}:
        raise UnsupportedMediaType(f"charset {charset!r} is not supported; send UTF-8")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed({"body": ["is not valid UTF-8"]}, "The body is not valid UTF-8.") from None


def _read_fields(content_type: str | None, body: bytes) -> dict[str, object]:
    kind, params = media_type(content_type)
    if kind not in JSON_TYPES | FORM_TYPES:
        shown = kind or "none"
        raise UnsupportedMediaType(
            f"Content-Type {shown!r} is not supported; send application/json or application/x-www-form-urlencoded."
        )
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted.")
    text = _decode(body, params.get("charset", "utf-8"))
    if kind in JSON_TYPES:
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ValidationFailed({"body": [f"is not valid JSON ({exc})"]}, "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ValidationFailed({"body": ["must be a JSON object"]}, "The body must be a JSON object.")
        return data
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        # %-escapes are bytes: "email=%ff" is ASCII on the wire but not UTF-8 once decoded.
        raise ValidationFailed(
            {"body": ["has percent-encoded bytes that are not valid UTF-8"]},
            "The form body is not valid UTF-8 once percent-decoded.",
        ) from None
    data_form: dict[str, object] = {}
    duplicates: dict[str, list[str]] = {}
    for key, value in pairs:
        if key in data_form:
            duplicates[key] = ["is given more than once"]
        data_form[key] = value
    if duplicates:
        raise ValidationFailed(duplicates)
    return data_form


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed in JSON")


def _check_text(field: str, value: str, problems: list[str]) -> str:
    allow_newlines = field == "justification"
    for ch in value:
        if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} and not (allow_newlines and ch in "\r\n\t"):
            problems.append("must not contain control characters")
            break
    value = unicodedata.normalize("NFC", value.strip())
    if len(value) > MAX_LENGTH[field]:
        problems.append(f"must be at most {MAX_LENGTH[field]} characters")
    return value


@dataclass(frozen=True)
class Extras:
    """What a submission carries beside the sign-up: the terms box and the abuse controls' fields."""

    accept_terms: bool = False
    form_token: str | None = None
    honeypot: str | None = None
    captcha: dict[str, str] = field(default_factory=dict)


def _answers(data: dict[str, object], errors: dict[str, list[str]]) -> dict[str, str]:
    raw: dict[str, object] = {}
    nested = data.get("answers")
    if isinstance(nested, dict):
        raw.update({str(k): v for k, v in nested.items()})
    elif nested is not None:
        errors["answers"] = ["must be an object of question id to text"]
    raw.update({k[len("answers.") :]: v for k, v in data.items() if k.startswith("answers.")})
    answers: dict[str, str] = {}
    for key, value in raw.items():
        name = f"answers.{key}"
        if not re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", key):
            errors[name] = ["is not a question id"]
        elif not isinstance(value, str):
            errors[name] = ["must be a string"]
        elif value.strip():
            problems: list[str] = []
            text = unicodedata.normalize("NFC", value.strip())
            if len(text) > MAX_ANSWER or any(unicodedata.category(c) == "Cc" and c not in "\r\n\t" for c in text):
                problems.append(f"must be at most {MAX_ANSWER} characters of text")
            if problems:
                errors[name] = problems
            else:
                answers[key] = text
    return answers


def parse_submission(content_type: str | None, body: bytes) -> tuple[SignupForm, Extras]:
    """Parse a sign-up with its extras (the page's language, answers, terms box, abuse fields)."""
    data = _read_fields(content_type, body)
    errors: dict[str, list[str]] = {}
    answers = _answers(data, errors)
    language = data.get("language")
    if language is not None and not (isinstance(language, str) and _LANGUAGE_TAG.match(language)):
        errors["language"] = ["must be a language tag such as en or zh-Hans"]
        language = None
    accept = data.get("acceptTerms")
    if accept not in (None, True, False, "true", "on", "1", "", "false"):
        errors["acceptTerms"] = ["must be true or false"]
    texts = {}
    for name in ("formToken", "website", "cf-turnstile-response", "h-captcha-response", "g-recaptcha-response"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = ["must be a string"]
        elif isinstance(value, str):
            texts[name] = value[:4096]
    sign_up = {k: v for k, v in data.items() if k not in EXTRA_FIELDS and not k.startswith("answers.")}
    try:
        form = _parse_form(sign_up, errors)
    except ValidationFailed as exc:
        raise ValidationFailed({**errors, **exc.errors}) from None
    if errors:
        raise ValidationFailed(errors)
    extras = Extras(
        accept_terms=accept in (True, "true", "on", "1"),
        form_token=texts.get("formToken"),
        honeypot=texts.get("website"),
        captcha={k: v for k, v in texts.items() if k.endswith("-response")},
    )
    return replace(form, language=language if isinstance(language, str) else None, answers=answers), extras


def parse_signup(content_type: str | None, body: bytes) -> SignupForm:
    """Parse and validate a sign-up body; raise a ``RequestError`` describing every problem."""
    return parse_submission(content_type, body)[0]


def _parse_form(data: dict[str, object], errors: dict[str, list[str]]) -> SignupForm:
    for unknown in sorted(set(data) - set(FIELDS)):
        errors[unknown] = ["is not a known field"]
    values: dict[str, str | None] = {}
    for name in FIELDS:
        raw = data.get(name)
        problems: list[str] = []
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if name in REQUIRED:
                problems.append("is required")
            values[name] = None
        elif not isinstance(raw, str):
            problems.append("must be a string")
        elif name == "email":
            try:
                values[name] = normalise_email(raw)
            except InvalidEmail as exc:
                problems.append(str(exc))
        else:
            values[name] = _check_text(name, raw, problems)
        if problems:
            errors[name] = problems
    if errors:
        raise ValidationFailed(errors)
    email, display_name = values["email"], values["displayName"]
    assert email is not None and display_name is not None  # guaranteed by REQUIRED above
    return SignupForm(
        email=email,
        display_name=display_name,
        company=values["company"],
        justification=values["justification"],
    )
