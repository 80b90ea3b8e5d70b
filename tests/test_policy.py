"""The policy document: validation (every problem at once, by path), matching, loading from a file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.errors import ConfigurationError
from shared.graph.directory import InvitationOptions
from shared.policy import Action, CachedPolicy, Policy, load_policy, parse_policy

GROUP = "3f7c2d1e-9a4b-4c8d-b1e2-5a6f7c8d9e01"
SPONSOR = "6d1b7d5e-3c5f-4c5b-9a7a-0f0e1d2c3b4a"


def _profile(name: str, *domains: str, action: str = "approve", **extra: Any) -> dict[str, Any]:
    return {"name": name, "domains": list(domains), "action": action, "groups": [GROUP], **extra}


def test_a_full_document_parses() -> None:
    """Every key is read: domains normalised by IDNA 2008, GUIDs, options, approvers and questions."""
    policy = parse_policy(
        {
            "defaultAction": "deny",
            "blockedDomains": ["Gmail.COM", "*.mailinator.com"],
            "profiles": [
                _profile(
                    "partners",
                    "fäbrikam.com",
                    "*.Fabrikam.com",
                    redirectUrl="https://portal.contoso.com/welcome",
                    invitedUserType="Member",
                    messageLanguage="fr-FR",
                    sponsors=[SPONSOR],
                    approvers=["Boss@Contoso.com"],
                    questions=[{"id": "project", "label": "Project", "required": True, "maxLength": 100}],
                )
            ],
        }
    )
    assert policy.default_action is Action.DENY
    assert policy.blocked_domains == ("gmail.com", "*.mailinator.com")
    [profile] = policy.profiles
    assert profile.domains == ("xn--fbrikam-5wa.com", "*.fabrikam.com")
    assert profile.groups == (GROUP,) and profile.sponsors == (SPONSOR,)
    assert profile.invited_user_type == "Member" and profile.message_language == "fr-FR"
    assert profile.approvers == ("Boss@contoso.com",)
    assert profile.questions[0].id == "project" and profile.questions[0].max_length == 100


def test_an_empty_document_reviews_everything() -> None:
    """``{}`` is valid: no profiles, nothing blocked, and the default action is review."""
    assert parse_policy({}).decide("fabrikam.com").action is Action.REVIEW


def test_every_problem_is_named_at_once_by_its_path() -> None:
    """Unknown keys, bad values, bad domains, duplicate names and claimed domains are all listed together."""
    with pytest.raises(ConfigurationError) as info:
        parse_policy(
            {
                "defaultAction": "allow",
                "blockedDomain": ["gmail.com"],
                "profiles": [
                    _profile("a", "fabrikam.com", "not a domain", redirectUrl="http://x.example"),
                    _profile("a", "Fabrikam.com", action="deny", groups=["nope"], sponsers=[]),
                    {
                        "name": "b",
                        "domains": ["contoso.com"],
                        "action": "review",
                        "groups": [],
                        "invitedUserType": "Admin",
                        "messageLanguage": "english!",
                        "sponsors": [SPONSOR] * 6,
                        "approvers": ["a+b@contoso.com"],
                        "questions": [{"id": "1x", "label": ""}, {"id": "q", "label": "Q", "maxLength": 0}],
                    },
                    {"name": "c"},
                ],
            }
        )
    assert set(info.value.problems) == {
        "defaultAction",
        "blockedDomain",
        "profiles[0].domains[1]",
        "profiles[0].redirectUrl",
        "profiles[1].action",
        "profiles[1].groups[0]",
        "profiles[1].sponsers",
        "profiles[2].invitedUserType",
        "profiles[2].messageLanguage",
        "profiles[2].sponsors",
        "profiles[2].approvers[0]",
        "profiles[2].questions[0].id",
        "profiles[2].questions[0].label",
        "profiles[2].questions[1].maxLength",
        "profiles[3].domains",
        "profiles[3].action",
        "profiles[3].groups",
    }
    assert info.value.problems["profiles[0].domains[1]"].startswith("not a domain")
    assert info.value.problems["blockedDomain"] == "is not a known key"


def test_two_profiles_claiming_one_exact_domain_or_name_is_an_error() -> None:
    """The same domain (after normalisation) in two profiles would make the match ambiguous; names are unique."""
    with pytest.raises(ConfigurationError) as info:
        parse_policy(
            {
                "profiles": [
                    _profile("a", "fabrikam.com"),
                    _profile("b", "FABRIKAM.com"),
                    _profile("a", "contoso.com"),
                ]
            }
        )
    assert set(info.value.problems) == {"profiles[1].domains[0]", "profiles[2].name"}
    assert "'a'" in info.value.problems["profiles[1].domains[0]"]


@pytest.mark.parametrize(
    ("domain", "action", "profile", "reason"),
    [
        pytest.param("gmail.com", Action.DENY, None, "blocked", id="blocked-exact"),
        pytest.param("x.mailinator.com", Action.DENY, None, "blocked", id="blocked-suffix"),
        pytest.param("blocked.fabrikam.com", Action.DENY, None, "blocked", id="blocked-beats-a-profile"),
        pytest.param("fabrikam.com", Action.APPROVE, "exact", "profile", id="exact"),
        pytest.param("eu.fabrikam.com", Action.REVIEW, "suffix", "profile", id="suffix"),
        pytest.param("hr.eu.fabrikam.com", Action.REVIEW, "suffix", "profile", id="suffix-deep"),
        pytest.param("lab.corp.fabrikam.com", Action.APPROVE, "longer-suffix", "profile", id="longer-suffix"),
        pytest.param("corp.fabrikam.com", Action.APPROVE, "exact-sub", "profile", id="exact-beats-suffix"),
        pytest.param("mailinator.com", Action.REVIEW, None, "default", id="suffix-not-the-domain-itself"),
        pytest.param("contoso.com", Action.REVIEW, None, "default", id="default"),
    ],
)
def test_matching(domain: str, action: Action, profile: str | None, reason: str) -> None:
    """Blocked wins; then exact beats suffix and a longer suffix beats a shorter one; else the default."""
    policy = parse_policy(
        {
            "blockedDomains": ["gmail.com", "*.mailinator.com", "blocked.fabrikam.com"],
            "profiles": [
                _profile("exact", "fabrikam.com"),
                _profile("suffix", "*.fabrikam.com", action="review"),
                _profile("longer-suffix", "*.corp.fabrikam.com"),
                _profile("exact-sub", "corp.fabrikam.com"),
            ],
        }
    )
    decision = policy.decide(domain)
    assert (decision.action, decision.profile.name if decision.profile else None, decision.reason) == (
        action,
        profile,
        reason,
    )


@pytest.mark.parametrize("default", [pytest.param(a, id=a.value) for a in Action])
def test_the_default_action_applies_to_unknown_domains(default: Action) -> None:
    """A domain no profile names gets ``defaultAction``."""
    assert Policy(default_action=default).decide("contoso.com").action is default


async def test_no_policy_means_every_signup_waits_for_review() -> None:
    """SIGNUP_POLICY unset: nobody is ever invited without a person deciding."""
    policy = await load_policy(None)
    assert policy.decide("fabrikam.com").action is Action.REVIEW


def test_profile_options_override_only_what_the_profile_sets() -> None:
    """Redirect, language and sponsors come from the profile when given; user type is Guest unless it says Member."""
    base = InvitationOptions(
        redirect_url="https://myapps.microsoft.com", user_type="Member", message_language="de", sponsor_ids=(SPONSOR,)
    )
    plain = parse_policy({"profiles": [_profile("p", "fabrikam.com")]}).profiles[0]
    assert plain.invitation_options(base) == InvitationOptions(
        redirect_url="https://myapps.microsoft.com", user_type="Guest", message_language="de", sponsor_ids=(SPONSOR,)
    )
    full = parse_policy(
        {
            "profiles": [
                _profile(
                    "p",
                    "fabrikam.com",
                    redirectUrl="https://fabrikam.contoso.com",
                    invitedUserType="Member",
                    messageLanguage="fr",
                    sponsors=[],
                )
            ]
        }
    ).profiles[0]
    options = full.invitation_options(base)
    assert (options.redirect_url, options.user_type, options.message_language, options.sponsor_ids) == (
        "https://fabrikam.contoso.com",
        "Member",
        "fr",
        (),
    )


async def test_a_relative_path_is_read_from_the_app_folder(repo_root: Path) -> None:
    """``policy.sample.json`` (as the sample settings name it) loads, approving fabrikam.com."""
    policy = await CachedPolicy("policy.sample.json").current()
    assert policy.decide("fabrikam.com").action is Action.APPROVE
    assert policy.decide("eu.fabrikam.com").action is Action.APPROVE
    assert policy.decide("gmail.com").action is Action.DENY
    assert policy.decide("contoso.com").action is Action.REVIEW
    assert json.loads((repo_root / "policy.sample.json").read_text())["defaultAction"] == "review"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(None, "cannot read", id="missing-file"),
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(b'{"defaultAction": "approve", "extra": 1}', "is not a known key", id="invalid"),
    ],
)
async def test_a_broken_document_is_a_configuration_error(tmp_path: Path, content: bytes | None, problem: str) -> None:
    """A missing, malformed or invalid document names the problem (intake then answers 500, invites nobody)."""
    path = tmp_path / "policy.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigurationError) as info:
        await CachedPolicy(str(path)).current()
    assert problem in str(info.value)


async def test_a_url_that_is_not_https_is_refused() -> None:
    """Only file paths and https Blob URLs are sources."""
    with pytest.raises(ConfigurationError):
        await load_policy("ftp://example.com/policy.json")


async def test_a_blob_url_is_read_and_a_missing_blob_is_a_configuration_error(azurite: str) -> None:
    """A Blob URL (here Azurite's, a public container) is read with BlobClient; a missing blob names the setting."""
    from azure.storage.blob.aio import BlobServiceClient

    from shared.storage import expand_connection_string

    container = f"policy{uuid.uuid4().hex[:8]}"
    async with BlobServiceClient.from_connection_string(expand_connection_string(azurite)) as service:
        client = await service.create_container(container, public_access="blob")
        await client.upload_blob("policy.json", json.dumps({"defaultAction": "approve"}).encode())
        url = f"{client.url}/policy.json"
    policy = await CachedPolicy(url).current()
    assert policy.decide("contoso.com").action is Action.APPROVE
    with pytest.raises(ConfigurationError) as info:
        await load_policy(url.replace("policy.json", "missing.json"))
    assert "upload the policy document" in info.value.problems["SIGNUP_POLICY"]


def test_mail_templates_and_default_approvers() -> None:
    """A template needs the same languages in subject and html, {redeemUrl} in html, and known placeholders."""
    good = {
        "subject": {"en": "Welcome to {organisation}", "ja": "ようこそ"},
        "html": {"en": "<a href='{redeemUrl}'>{displayName}</a> {contact}", "ja": "<a href='{redeemUrl}'>承諾</a>"},
    }
    policy = parse_policy(
        {
            "defaultApprovers": ["owners@contoso.com"],
            "profiles": [
                {"name": "p", "domains": ["fabrikam.com"], "action": "approve", "groups": [], "mailTemplate": good}
            ],
        }
    )
    profile = policy.profile("p")
    assert profile is not None and profile.mail_template is not None
    assert profile.mail_template.language_for("ja-JP") == "ja" and profile.mail_template.language_for("nl") == "en"
    assert profile.invitation_options(InvitationOptions("https://x.example")).send_message is False  # it mails itself
    assert policy.approvers_for("p") == ("owners@contoso.com",) and policy.approvers_for(None) == (
        "owners@contoso.com",
    )
    bad = {
        "subject": {"en": "Hi {name}", "xx-!": "?"},
        "html": {"en": "<p>no link</p>"},
        "extra": 1,
    }
    with pytest.raises(ConfigurationError) as info:
        parse_policy(
            {
                "defaultApprovers": ["not an address"],
                "profiles": [
                    {"name": "p", "domains": ["f.com"], "action": "approve", "groups": [], "mailTemplate": bad}
                ],
            }
        )
    problems = info.value.problems
    assert set(problems) >= {
        "defaultApprovers[0]",
        "profiles[0].mailTemplate.extra",
        "profiles[0].mailTemplate.subject.en",
        "profiles[0].mailTemplate.subject.xx-!",
        "profiles[0].mailTemplate.html.en",
    }
    assert "unknown placeholder" in problems["profiles[0].mailTemplate.subject.en"]
    assert "{redeemUrl}" in problems["profiles[0].mailTemplate.html.en"]
