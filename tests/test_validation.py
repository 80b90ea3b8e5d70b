"""Parsing, validation and email normalisation of sign-up bodies."""

from __future__ import annotations

import json

import pytest

from graph_emulator import schema
from shared.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.lifecycle.validation import MAX_BODY_BYTES, InvalidEmail, normalise_email, parse_signup

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("  Sam.Guest@Fabrikam.COM ", "Sam.Guest@fabrikam.com", id="trim-and-lower-domain-only"),
        pytest.param("alex@fäbrikam.com", "alex@xn--fbrikam-5wa.com", id="idna-domain"),
        pytest.param("_under_@example.org", "_under_@example.org", id="underscore-anywhere"),
        pytest.param("o'brien@example.ie", "o'brien@example.ie", id="apostrophe"),
        pytest.param("a@sub.example.co.uk.", "a@sub.example.co.uk", id="trailing-root-dot"),
        pytest.param("a@faß.de", "a@xn--fa-hia.de", id="sharp-s-kept-idna2008"),
        pytest.param("a@FAß.DE", "a@xn--fa-hia.de", id="sharp-s-upper-case-mapped"),
        pytest.param("a@βόλος.gr", "a@xn--nxasmm1c.gr", id="final-sigma-kept"),
        pytest.param("a@ＦＡＢＲＩＫＡＭ．ｃｏｍ", "a@fabrikam.com", id="fullwidth-mapped"),
        pytest.param("a@fabrikam。com", "a@fabrikam.com", id="ideographic-full-stop"),
        pytest.param("a@XN--FA-HIA.DE", "a@xn--fa-hia.de", id="a-label-lower-cased"),
    ],
)
def test_normalise_email_accepts_and_normalises(raw: str, expected: str) -> None:
    """Valid addresses come out trimmed, with the domain lower-cased and IDNA-encoded."""
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("sam+tag@fabrikam.com", id="plus-addressing"),
        pytest.param("sam@fabrikam", id="single-label-domain"),
        pytest.param("sam@@fabrikam.com", id="two-ats"),
        pytest.param(".sam@fabrikam.com", id="leading-dot"),
        pytest.param("sam-@fabrikam.com", id="trailing-hyphen"),
        pytest.param("sa..m@fabrikam.com", id="double-dot"),
        pytest.param("sam @fabrikam.com", id="space"),
        pytest.param("sam\u0000@fabrikam.com", id="nul"),
        pytest.param("sam@fab_rikam.com", id="underscore-in-domain"),
        pytest.param("s%m@fabrikam.com", id="percent"),
        pytest.param("sæm@fabrikam.com", id="non-ascii-local-part"),
        pytest.param("x" * 65 + "@fabrikam.com", id="local-part-too-long"),
        pytest.param("sam@" + "a" * 64 + ".com", id="label-too-long"),
        pytest.param("sam@1.2.3.4", id="numeric-tld"),
    ],
)
def test_normalise_email_refuses_what_graph_would(raw: str) -> None:
    """Addresses Graph refuses (or that are not addresses) are refused before anything is queued."""
    with pytest.raises(InvalidEmail):
        normalise_email(raw)


def test_idna_2003_would_have_changed_the_domain() -> None:
    """The reason for IDNA 2008: Python's own codec turns faß.de into fass.de, another registrable domain."""
    assert "faß.de".encode("idna") == b"fass.de"
    assert normalise_email("a@faß.de") != "a@fass.de"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("a@☕.com", "Codepoint U+2615", id="symbol-not-allowed-in-idna2008"),
        pytest.param("a@ab--cd.com", "hyphens in 3rd and 4th position", id="reserved-hyphens"),
        pytest.param("a@xn--zz.com", "Invalid A-label", id="bad-punycode"),
        pytest.param("a@-fabrikam.com", "must not start or end with a hyphen", id="leading-hyphen"),
        pytest.param("a@fabrikam..com", "Empty Label", id="empty-label"),
        pytest.param("a@\u0301fabrikam.com", "combining", id="leading-mark"),
    ],
)
def test_invalid_labels_are_refused_with_the_reason(raw: str, reason: str) -> None:
    """A domain IDNA 2008 refuses is refused with a message naming the domain rule that failed."""
    with pytest.raises(InvalidEmail) as info:
        normalise_email(raw)
    message = str(info.value)
    assert message.startswith("has a domain that is not a valid domain name (")
    assert reason in message


@pytest.mark.parametrize(
    "raw",
    [
        "Sam.Guest@Fabrikam.COM",
        "alex@fäbrikam.com",
        "a@faß.de",
        "_u_@example.org",
        "o'brien@example.ie",
        "a-b.c@x-y.example",
    ],
)
def test_accepted_addresses_pass_graphs_documented_rules(raw: str) -> None:
    """Whatever we accept also passes the schema's documented rules for invitedUserEmailAddress."""
    body = {"invitedUserEmailAddress": normalise_email(raw), "inviteRedirectUrl": "https://myapps.microsoft.com"}
    assert schema.errors("invitation", body) == []


def test_json_body_is_parsed() -> None:
    """A complete JSON body yields a normalised form."""
    form = parse_signup(
        JSON,
        json.dumps(
            {"email": "Sam@Fabrikam.com", "displayName": " Sam ", "company": "Fabrikam", "justification": "a\nb"}
        ).encode(),
    )
    assert (form.email, form.display_name, form.company, form.justification) == (
        "Sam@fabrikam.com",
        "Sam",
        "Fabrikam",
        "a\nb",
    )
    assert form.domain == "fabrikam.com"


def test_form_body_is_parsed() -> None:
    """A plain HTML form post (urlencoded, UTF-8) is read like JSON."""
    form = parse_signup(f"{FORM}; charset=UTF-8", b"email=alex%40f%C3%A4brikam.com&displayName=Alex&company=")
    assert form.email == "alex@xn--fbrikam-5wa.com"
    assert form.company is None


def test_every_field_problem_is_reported_at_once() -> None:
    """Unknown fields, wrong types, missing and invalid values all come back in one 400."""
    body = json.dumps({"email": "a+b@x.com", "displayName": 5, "company": "x" * 300, "extra": True}).encode()
    with pytest.raises(ValidationFailed) as info:
        parse_signup(JSON, body)
    errors = info.value.errors
    assert set(errors) == {"email", "displayName", "company", "extra"}
    assert "plus-addressing" in errors["email"][0]
    assert errors["displayName"] == ["must be a string"]
    assert errors["extra"] == ["is not a known field"]


def test_missing_required_fields() -> None:
    """An empty object names both required fields."""
    with pytest.raises(ValidationFailed) as info:
        parse_signup(JSON, b"{}")
    assert info.value.errors == {"email": ["is required"], "displayName": ["is required"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b"{", "body", id="malformed-json"),
        pytest.param(b"[1, 2]", "body", id="json-array"),
        pytest.param(b'"text"', "body", id="json-string"),
        pytest.param(b'{"email": "a@b.com", "displayName": NaN}', "body", id="nan-constant"),
        pytest.param(b"\xff\xfe", "body", id="not-utf8"),
        pytest.param(b'{"email": "a@b.com", "displayName": "Sam\\u0007"}', "displayName", id="control-char"),
        pytest.param(b'{"email": "a@b.com", "displayName": "Sam\\u202e"}', "displayName", id="bidi-override"),
        pytest.param(b'{"email": "a@b.com", "displayName": "' + b"x" * 257 + b'"}', "displayName", id="too-long"),
        pytest.param(b'{"email": ["a@b.com"], "displayName": "Sam"}', "email", id="email-list"),
    ],
)
def test_bad_json_bodies_are_400(body: bytes, field: str) -> None:
    """Malformed or hostile bodies are validation failures naming the culprit."""
    with pytest.raises(ValidationFailed) as info:
        parse_signup(JSON, body)
    assert field in info.value.errors


def test_form_bytes_that_are_not_utf8_are_400() -> None:
    """email=%ff is ASCII on the wire but not UTF-8 once percent-decoded: a validation failure, not a crash."""
    with pytest.raises(ValidationFailed) as info:
        parse_signup(FORM, b"email=%ff&displayName=x")
    assert info.value.errors == {"body": ["has percent-encoded bytes that are not valid UTF-8"]}
    assert info.value.detail == "The form body is not valid UTF-8 once percent-decoded."


def test_duplicate_form_fields_are_refused() -> None:
    """A form that repeats a field is ambiguous and refused."""
    with pytest.raises(ValidationFailed) as info:
        parse_signup(FORM, b"email=a%40b.com&email=c%40d.com&displayName=x")
    assert info.value.errors == {"email": ["is given more than once"]}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "multipart/form-data; boundary=x", "application/json; charset=latin-1"],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    """Only JSON and urlencoded forms in UTF-8 are read."""
    with pytest.raises(UnsupportedMediaType):
        parse_signup(content_type, b'{"email": "a@b.com", "displayName": "x"}')


def test_oversized_body_is_413() -> None:
    """Bodies over 16 KiB are refused before parsing."""
    with pytest.raises(PayloadTooLarge):
        parse_signup(JSON, b" " * (MAX_BODY_BYTES + 1))
