"""Settings: one frozen object, every problem named at once, and the sample lists every key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.settings import EXTERNAL_KEYS, SETTING_KEYS, load_settings

MINIMAL = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "INVITE_REDIRECT_URL": "https://myapps.microsoft.com"}


def test_defaults() -> None:
    """With only the required keys, the documented defaults apply."""
    s = load_settings(MINIMAL)
    assert (s.signup_queue, s.signup_table) == ("signups", "signups")
    assert s.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert s.graph_scope == "https://graph.microsoft.com/.default"
    assert s.graph_credential == "managed_identity"
    assert (s.graph_write_budget, s.graph_write_window_seconds) == (3000, 150.0)
    assert s.invite_user_type == "Guest" and s.invite_send_message is True


def test_settings_are_frozen() -> None:
    """Nobody can change settings after start-up."""
    s = load_settings(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.signup_queue = "other"  # type: ignore[misc]


def test_every_problem_is_named_at_once() -> None:
    """Missing and invalid keys are all listed in one error."""
    env = {
        "SIGNUP_QUEUE": "Bad_Queue",
        "INVITE_SEND_MESSAGE": "maybe",
        "GRAPH_CLOUD": "mars",
        "GRAPH_WRITE_BUDGET": "-1",
        "INVITE_REDIRECT_URL": "http://example.com",
        "INVITE_SPONSOR_IDS": "not-a-guid",
        "INVITE_MESSAGE_BODY": "<b>hi</b>",
        "GRAPH_CREDENTIAL": "client_secret",
    }
    with pytest.raises(ConfigurationError) as info:
        load_settings(env)
    assert set(info.value.problems) == {
        "AzureWebJobsStorage",
        "SIGNUP_QUEUE",
        "INVITE_SEND_MESSAGE",
        "GRAPH_CLOUD",
        "GRAPH_WRITE_BUDGET",
        "INVITE_REDIRECT_URL",
        "INVITE_SPONSOR_IDS",
        "INVITE_MESSAGE_BODY",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
    }
    assert "INVITE_REDIRECT_URL" in str(info.value)


def test_secrets_stay_out_of_repr() -> None:
    """A logged Settings object never shows the client secret."""
    s = load_settings(
        {**MINIMAL, "AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s3cr3t-value"}
    )
    assert s.graph_credential == "client_secret"
    assert "s3cr3t-value" not in repr(s)


@pytest.mark.parametrize(
    ("cloud", "url", "scope", "authority"),
    [
        (
            "global",
            "https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/.default",
            "login.microsoftonline.com",
        ),
        ("usgov", "https://graph.microsoft.us/v1.0", "https://graph.microsoft.us/.default", "login.microsoftonline.us"),
        (
            "usgovdod",
            "https://dod-graph.microsoft.us/v1.0",
            "https://dod-graph.microsoft.us/.default",
            "login.microsoftonline.us",
        ),
        (
            "china",
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
            "https://microsoftgraph.chinacloudapi.cn/.default",
            "login.chinacloudapi.cn",
        ),
    ],
)
def test_national_clouds_set_url_scope_and_authority(cloud: str, url: str, scope: str, authority: str) -> None:
    """GRAPH_CLOUD sets the base URL, the token scope and the authority together."""
    s = load_settings({**MINIMAL, "GRAPH_CLOUD": cloud})
    assert (s.graph_base_url, s.graph_scope, s.authority_host) == (url, scope, authority)


def test_base_url_override_keeps_the_clouds_scope() -> None:
    """GRAPH_BASE_URL changes where requests go, not which token audience is asked for."""
    s = load_settings({**MINIMAL, "GRAPH_CLOUD": "usgov", "GRAPH_BASE_URL": "http://127.0.0.1:7081/v1.0"})
    assert s.graph_base_url == "http://127.0.0.1:7081/v1.0"
    assert s.graph_scope == "https://graph.microsoft.us/.default"
    assert s.graph_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"}, "client_secret"),
        ({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_CERTIFICATE_PATH": "/c.pem"}, "certificate"),
        ({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_FEDERATED_TOKEN_FILE": "/t"}, "workload_identity"),
        ({"AZURE_CLIENT_ID": "c"}, "managed_identity"),
    ],
)
def test_auto_credential_follows_the_azure_identity_variables(env: dict[str, str], kind: str) -> None:
    """GRAPH_CREDENTIAL=auto picks the credential the standard variables describe."""
    assert load_settings({**MINIMAL, **env}).graph_credential == kind


def test_identity_based_storage_connection() -> None:
    """Service URIs instead of a connection string are enough (managed identity in Azure)."""
    s = load_settings(
        {
            "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
        }
    )
    assert s.storage_connection_string is None
    assert s.storage_table_service_uri == "https://acct.table.core.windows.net"


def test_identity_based_storage_by_account_name() -> None:
    """``__accountName`` alone (what the Functions host accepts) gives the queue and table URIs."""
    s = load_settings(
        {
            "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
            "AzureWebJobsStorage__accountName": "signupstore",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__blobServiceUri": "https://signupstore.blob.core.windows.net",
        }
    )
    assert s.storage_queue_service_uri == "https://signupstore.queue.core.windows.net"
    assert s.storage_table_service_uri == "https://signupstore.table.core.windows.net"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("AzureWebJobsStorage__accountName", "Not_An-Account", id="account-name"),
        pytest.param("AzureWebJobsStorage__credential", "connectionstring", id="credential"),
        pytest.param("SWEEP_SCHEDULE", "*/5 * * * *", id="five-field-cron"),
        pytest.param("SIGNUP_RETRY_MAX_SECONDS", "0", id="zero-cap"),
        pytest.param("GRAPH_PACING_MODE", "cluster", id="pacing-mode"),
        pytest.param("GRAPH_PACING_FALLBACK_FRACTION", "1.5", id="fallback-over-one"),
    ],
)
def test_lifecycle_and_storage_keys_are_checked(key: str, value: str) -> None:
    """A bad storage identity key, timer schedule or retry timer is named, not ignored."""
    with pytest.raises(ConfigurationError) as info:
        load_settings({**MINIMAL, key: value})
    assert key in info.value.problems


def test_sample_lists_every_setting_and_nothing_else(repo_root: Path) -> None:
    """local.settings.sample.json and Settings agree key for key, and the sample loads as is."""
    values = json.loads((repo_root / "local.settings.sample.json").read_text())["Values"]
    assert set(values) == set(SETTING_KEYS) | set(EXTERNAL_KEYS)
    load_settings(values)  # the sample's values are valid


def test_every_settings_key_is_read() -> None:
    """Each key in SETTING_KEYS changes what load_settings produces (none is listed but ignored)."""
    base = load_settings(MINIMAL)
    for key in SETTING_KEYS:
        if key in MINIMAL or key.startswith("AzureWebJobsStorage__"):
            continue
        probe = {
            "SIGNUP_QUEUE": "other-queue",
            "SIGNUP_TABLE": "othertable",
            "INVITE_USER_TYPE": "Member",
            "INVITE_SEND_MESSAGE": "false",
            "PORTAL_SIGNIN_URL": "https://signin.contoso.com",
            "INVITE_MESSAGE_LANGUAGE": "fr-FR",
            "INVITE_MESSAGE_BODY": "Welcome",
            "INVITE_CC_ADDRESS": "owner@contoso.com",
            "INVITE_SPONSOR_IDS": "6d1b7d5e-3c5f-4c5b-9a7a-0f0e1d2c3b4a",
            "GRAPH_CLOUD": "china",
            "GRAPH_BASE_URL": "https://graph.example.com/v1.0",
            "GRAPH_CREDENTIAL": "managed_identity",
            "GRAPH_TIMEOUT_SECONDS": "7",
            "GRAPH_PACING_ENABLED": "false",
            "GRAPH_WRITE_BUDGET": "10",
            "GRAPH_WRITE_WINDOW_SECONDS": "5",
            "GRAPH_PACING_MAX_WAIT_SECONDS": "3",
            "LEASE_MARGIN_SECONDS": "2",
            "GRAPH_THROTTLE_MAX_WAIT_SECONDS": "4",
            "GRAPH_PACING_MODE": "local",
            "GRAPH_INVITATION_BUDGET": "15",
            "GRAPH_INVITATION_WINDOW_SECONDS": "2",
            "GRAPH_PACING_FALLBACK_FRACTION": "0.5",
            "SIGNUP_RETRY_INITIAL_SECONDS": "1",
            "SIGNUP_RETRY_MAX_SECONDS": "2",
            "SIGNUP_RETRY_DEADLINE_SECONDS": "60",
            "SIGNUP_DOUBT_CAP_SECONDS": "120",
            "TELEMETRY_CONSOLE": "true",
            "SIGNUP_REPEAT_WINDOW_SECONDS": "30",
            "SIGNUP_QUEUED_GRACE_SECONDS": "45",
            "SWEEP_SCHEDULE": "*/5 * * * * *",
            "AZURE_AUTHORITY_HOST": "login.example",
            "AZURE_CLIENT_CERTIFICATE_PASSWORD": "pw",
            "SIGNUP_AUDIT_TABLE": "otheraudit",
            "WEBSITE_AUTH_ENABLED": "true",
            "MAIL_SENDER": "portal@contoso.com",
            "PORTAL_PUBLIC_URL": "https://portal.example",
            "WEBSITE_HOSTNAME": "app.azurewebsites.net",
            "APPROVAL_DENIAL_MEMORY_SECONDS": "60",
            "APPROVAL_PENDING_EXPIRY_SECONDS": "60",
            "BRAND_LOGO_URL": "https://cdn.contoso.example/logo.svg",
            "BRAND_PRIMARY_COLOUR": "#004578",
            "TERMS_URL": "https://contoso.example/terms",
            "CORS_ALLOWED_ORIGINS": "https://partner.example",
            "RATE_LIMIT_PER_IP": "5",
            "RATE_LIMIT_PER_DOMAIN": "6",
            "RATE_LIMIT_WINDOW_SECONDS": "60",
            "RATE_LIMIT_SYNC_SECONDS": "5",
            "TRUSTED_FORWARDED_HOPS": "2",
            "SIGNUP_MIN_FILL_SECONDS": "1",
            "CAPTCHA_PROVIDER": "turnstile",
            "CAPTCHA_VERIFY_URL": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            "STATS_CACHE_SECONDS": "3",
            "SIGNUP_POLICY_ALLOWED_HOSTS": "policies.contoso.example",
            "GUEST_SWEEP_SCHEDULE": "0 0 3 * * *",
            "GUEST_LIFECYCLE_DAY_SECONDS": "60",
        }.get(key, "value")
        env = {**MINIMAL, key: probe}
        if key in {"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE"}:
            env.update(AZURE_TENANT_ID="t", AZURE_CLIENT_ID="c")
        if key == "MANAGE_EASY_AUTH_ROLE":
            env["WEBSITE_AUTH_ENABLED"] = "true"
        if key == "MANAGE_CONVERT_EASY_AUTH_ROLE":
            env.update(WEBSITE_AUTH_ENABLED="true", MANAGE_EASY_AUTH_ROLE="Signup.Approve")
        if key == "TERMS_URL":
            env["TERMS_VERSION"] = "1"
        if key == "CAPTCHA_PROVIDER":
            env.update(CAPTCHA_SECRET="s", CAPTCHA_SITE_KEY="k")
        if key == "GRAPH_CREDENTIAL":
            env["GRAPH_CREDENTIAL"] = "client_secret"
            env.update(AZURE_TENANT_ID="t", AZURE_CLIENT_ID="c", AZURE_CLIENT_SECRET="s")
        assert load_settings(env) != base, key


def test_easy_auth_role_is_refused_without_easy_auth() -> None:
    """A principal header is trusted only behind Easy Auth: the role setting alone is a configuration error."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**MINIMAL, "MANAGE_EASY_AUTH_ROLE": "Signup.Approve"})
    assert set(caught.value.problems) == {"MANAGE_EASY_AUTH_ROLE"}
    settings = load_settings({**MINIMAL, "MANAGE_EASY_AUTH_ROLE": "Signup.Approve", "WEBSITE_AUTH_ENABLED": "true"})
    assert settings.manage_easy_auth_role == "Signup.Approve" and settings.easy_auth_enabled


def test_page_settings_are_checked() -> None:
    """A brand colour white text is unreadable on, a bad origin, terms without a version, a CAPTCHA without keys."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                **MINIMAL,
                "BRAND_PRIMARY_COLOUR": "#ffcc00",
                "CORS_ALLOWED_ORIGINS": "https://ok.example, http://evil.example, https://x.example/path",
                "TERMS_URL": "https://contoso.example/terms",
                "CAPTCHA_PROVIDER": "hcaptcha",
            }
        )
    assert set(caught.value.problems) == {
        "BRAND_PRIMARY_COLOUR",
        "CORS_ALLOWED_ORIGINS",
        "TERMS_VERSION",
        "CAPTCHA_SECRET",
        "CAPTCHA_SITE_KEY",
    }
    assert "contrast" in caught.value.problems["BRAND_PRIMARY_COLOUR"]


def _problems(env: dict[str, str]) -> dict[str, str]:
    try:
        load_settings({**MINIMAL, **env})
    except ConfigurationError as exc:
        return exc.problems
    return {}


def test_the_policy_url_must_be_on_the_apps_own_storage() -> None:
    """The storage token goes only to the app's own account, or to a host a setting names."""
    identity = {
        "AzureWebJobsStorage": "",
        "AzureWebJobsStorage__accountName": "portalstore",
        "AzureWebJobsStorage__blobServiceUri": "https://portalstore.blob.core.windows.net",
    }
    own = "https://portalstore.blob.core.windows.net/policy/policy.json"
    assert _problems({**identity, "SIGNUP_POLICY": own}) == {}
    foreign = "https://attacker.example/policy.json"
    assert set(_problems({**identity, "SIGNUP_POLICY": foreign})) == {"SIGNUP_POLICY"}
    other_account = "https://otherstore.blob.core.windows.net/policy/policy.json"
    assert "SIGNUP_POLICY_ALLOWED_HOSTS" in _problems({**identity, "SIGNUP_POLICY": other_account})["SIGNUP_POLICY"]
    allowed = {
        **identity,
        "SIGNUP_POLICY": other_account,
        "SIGNUP_POLICY_ALLOWED_HOSTS": "otherstore.blob.core.windows.net",
    }
    assert _problems(allowed) == {}
    # A connection string names the account too; the development shortcut names Azurite.
    keyed = {"AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=portalstore;AccountKey=a2V5"}
    assert _problems({**keyed, "SIGNUP_POLICY": own}) == {}
    assert set(_problems({**keyed, "SIGNUP_POLICY": other_account})) == {"SIGNUP_POLICY"}
    assert _problems({"SIGNUP_POLICY": "http://127.0.0.1:10000/devstoreaccount1/policy/p.json"}) == {}
    assert _problems({"SIGNUP_POLICY": "policy.sample.json"}) == {}  # a file is not sent anywhere


def test_the_captcha_secret_goes_only_to_the_providers_endpoint() -> None:
    captcha = {"CAPTCHA_PROVIDER": "turnstile", "CAPTCHA_SECRET": "s", "CAPTCHA_SITE_KEY": "k"}
    documented = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    assert _problems({**captcha, "CAPTCHA_VERIFY_URL": documented}) == {}
    for wrong in ("https://api.hcaptcha.com/siteverify", "https://verify.example/siteverify"):
        assert set(_problems({**captcha, "CAPTCHA_VERIFY_URL": wrong})) == {"CAPTCHA_VERIFY_URL"}
    stand_in = {**captcha, "CAPTCHA_VERIFY_URL": "http://127.0.0.1:8123/siteverify"}
    assert _problems(stand_in) == {}  # a local run's stand-in
    in_azure = _problems({**stand_in, "WEBSITE_HOSTNAME": "portal.azurewebsites.net"})
    assert "local runs only" in in_azure["CAPTCHA_VERIFY_URL"]


def test_converting_is_a_role_of_its_own() -> None:
    easy = {"WEBSITE_AUTH_ENABLED": "True", "MANAGE_EASY_AUTH_ROLE": "Signup.Approve"}
    settings = load_settings({**MINIMAL, **easy, "MANAGE_CONVERT_EASY_AUTH_ROLE": "Signup.Convert"})
    assert (settings.manage_easy_auth_role, settings.manage_convert_easy_auth_role) == (
        "Signup.Approve",
        "Signup.Convert",
    )
    assert set(_problems({**easy, "MANAGE_CONVERT_EASY_AUTH_ROLE": "Signup.Approve"})) == {
        "MANAGE_CONVERT_EASY_AUTH_ROLE"
    }
    assert set(_problems({"MANAGE_CONVERT_EASY_AUTH_ROLE": "Signup.Convert"})) == {"MANAGE_CONVERT_EASY_AUTH_ROLE"}
