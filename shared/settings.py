"""One frozen ``Settings`` object, built lazily from the environment.

``load_settings`` reads every key, collects every problem and raises one
``ConfigurationError`` naming all of them, so a misconfigured deployment is
fixed in one round. ``get_settings`` caches the result for the process.

An empty value counts as unset: ``local.settings.sample.json`` lists every key,
optional ones with ``""``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from .endpoints import check_captcha_endpoint, check_policy_host, host_list
from .errors import ConfigurationError
from .flags import parse_boolean
from .lifecycle.validation import InvalidEmail, normalise_email

T = TypeVar("T")

GRAPH_CLOUDS: Final = {
    # name: (Graph host, token scope, Entra authority host)
    "global": (
        "https://graph.microsoft.com",
        "https://graph.microsoft.com/.default",
        "login.microsoftonline.com",
    ),
    "usgov": (
        "https://graph.microsoft.us",
        "https://graph.microsoft.us/.default",
        "login.microsoftonline.us",
    ),
    "usgovdod": (
        "https://dod-graph.microsoft.us",
        "https://dod-graph.microsoft.us/.default",
        "login.microsoftonline.us",
    ),
    "china": (
        "https://microsoftgraph.chinacloudapi.cn",
        "https://microsoftgraph.chinacloudapi.cn/.default",
        "login.chinacloudapi.cn",
    ),
}
CREDENTIAL_KINDS: Final = (
    "auto",
    "managed_identity",
    "client_secret",
    "certificate",
    "workload_identity",
)
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})

_QUEUE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
# NCRONTAB as the Functions timer trigger reads it: six fields, seconds first.
_NCRONTAB_FIELD = re.compile(r"^[0-9*/,-]+$")
_SIMPLE_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HTML = re.compile(r"<\s*/?\s*[A-Za-z][^>]*>")


@dataclass(frozen=True)
class Settings:
    """Every setting the app reads; see README "Settings" for each key."""

    # Storage (the Functions host's own connection, shared with the app's clients).
    storage_connection_string: str | None
    storage_queue_service_uri: str | None
    storage_table_service_uri: str | None
    storage_client_id: str | None
    signup_queue: str
    signup_table: str
    # The lifecycle's own timers.
    retry_initial_seconds: float
    retry_max_seconds: float
    retry_deadline_seconds: float
    doubt_cap_seconds: float
    repeat_window_seconds: float
    queued_grace_seconds: float
    sweep_schedule: str
    # Where the policy document is (a path or an https Blob URL); None: every sign-up waits for review.
    # Settings carries only where it is: reading a Blob needs the network and an event loop, and
    # load_settings stays pure (tests and the template checks call it with no storage).
    signup_policy: str | None
    signup_policy_allowed_hosts: tuple[str, ...]
    # Invitation.
    invite_redirect_url: str
    invite_user_type: str
    invite_send_message: bool
    invite_message_language: str | None
    invite_message_body: str | None
    invite_cc_address: str | None
    invite_sponsor_ids: tuple[str, ...]
    # Graph endpoint and credentials.
    graph_cloud: str
    graph_base_url: str
    graph_scope: str
    graph_credential: str
    authority_host: str
    tenant_id: str | None
    client_id: str | None
    client_secret: str | None = field(repr=False)
    client_certificate_path: str | None
    client_certificate_password: str | None = field(repr=False)
    federated_token_file: str | None
    graph_timeout_seconds: float
    # Pacing inside Graph's write budget.
    graph_pacing_enabled: bool
    graph_write_budget: int
    graph_write_window_seconds: float
    graph_pacing_max_wait_seconds: float
    graph_throttle_max_wait_seconds: float
    # Added to a claim's lease for the storage writes around an attempt (tests shorten it).
    lease_margin_seconds: float
    graph_pacing_mode: str
    graph_invitation_budget: int
    graph_invitation_window_seconds: float
    graph_pacing_fallback_fraction: float
    audit_table: str
    manage_easy_auth_role: str | None
    manage_convert_easy_auth_role: str | None
    easy_auth_enabled: bool
    mail_sender: str | None
    portal_public_url: str
    organisation_name: str
    organisation_contact: str
    # Where the "you already have an account" mail sends a member's address (issue 18): My Apps unless set.
    portal_signin_url: str
    denial_memory_seconds: float
    pending_expiry_seconds: float
    brand_logo_url: str | None
    brand_primary_colour: str
    telemetry_console: bool
    terms_url: str | None
    terms_version: str | None
    cors_allowed_origins: tuple[str, ...]
    rate_limit_per_ip: int
    rate_limit_per_domain: int
    rate_limit_window_seconds: float
    rate_limit_sync_seconds: float
    trusted_forwarded_hops: int
    form_token_secret: str | None = field(repr=False)
    min_fill_seconds: float
    captcha_provider: str
    captcha_site_key: str | None
    captcha_secret: str | None = field(repr=False)
    captcha_verify_url: str | None
    # Issue 21 (stats): how long GET /api/manage/stats may answer from its last figures (0: never).
    stats_cache_seconds: float = 10.0
    # The guest lifecycle (docs/guest-lifecycle.md): the sweep's timer, and the rules' day (shortened in tests).
    guest_sweep_schedule: str = "0 30 * * * *"
    guest_lifecycle_day_seconds: float = 86400.0

    @property
    def graph_host(self) -> str:
        """Host name of the Graph endpoint in use (for the auth provider's allow-list)."""
        return urlsplit(self.graph_base_url).hostname or ""


# Every environment key Settings reads, in the order of the README table.
SETTING_KEYS: Final = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "SIGNUP_QUEUE",
    "SIGNUP_TABLE",
    "SIGNUP_RETRY_INITIAL_SECONDS",
    "SIGNUP_RETRY_MAX_SECONDS",
    "SIGNUP_RETRY_DEADLINE_SECONDS",
    "SIGNUP_DOUBT_CAP_SECONDS",
    "SIGNUP_REPEAT_WINDOW_SECONDS",
    "SIGNUP_QUEUED_GRACE_SECONDS",
    "SWEEP_SCHEDULE",
    "SIGNUP_POLICY",
    "SIGNUP_POLICY_ALLOWED_HOSTS",
    "INVITE_REDIRECT_URL",
    "INVITE_USER_TYPE",
    "INVITE_SEND_MESSAGE",
    "INVITE_MESSAGE_LANGUAGE",
    "INVITE_MESSAGE_BODY",
    "INVITE_CC_ADDRESS",
    "INVITE_SPONSOR_IDS",
    "GRAPH_CLOUD",
    "GRAPH_BASE_URL",
    "GRAPH_CREDENTIAL",
    "AZURE_AUTHORITY_HOST",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "GRAPH_TIMEOUT_SECONDS",
    "GRAPH_PACING_ENABLED",
    "GRAPH_WRITE_BUDGET",
    "GRAPH_WRITE_WINDOW_SECONDS",
    "GRAPH_PACING_MAX_WAIT_SECONDS",
    "GRAPH_THROTTLE_MAX_WAIT_SECONDS",
    "LEASE_MARGIN_SECONDS",
    "GRAPH_PACING_MODE",
    "GRAPH_INVITATION_BUDGET",
    "GRAPH_INVITATION_WINDOW_SECONDS",
    "GRAPH_PACING_FALLBACK_FRACTION",
    "SIGNUP_AUDIT_TABLE",
    "MANAGE_EASY_AUTH_ROLE",
    "MANAGE_CONVERT_EASY_AUTH_ROLE",
    "WEBSITE_AUTH_ENABLED",
    "MAIL_SENDER",
    "PORTAL_PUBLIC_URL",
    "WEBSITE_HOSTNAME",
    "ORGANISATION_NAME",
    "ORGANISATION_CONTACT",
    "PORTAL_SIGNIN_URL",
    "APPROVAL_DENIAL_MEMORY_SECONDS",
    "APPROVAL_PENDING_EXPIRY_SECONDS",
    "BRAND_LOGO_URL",
    "BRAND_PRIMARY_COLOUR",
    "TELEMETRY_CONSOLE",
    "TERMS_URL",
    "TERMS_VERSION",
    "CORS_ALLOWED_ORIGINS",
    "RATE_LIMIT_PER_IP",
    "RATE_LIMIT_PER_DOMAIN",
    "RATE_LIMIT_WINDOW_SECONDS",
    "RATE_LIMIT_SYNC_SECONDS",
    "TRUSTED_FORWARDED_HOPS",
    "FORM_TOKEN_SECRET",
    "SIGNUP_MIN_FILL_SECONDS",
    "CAPTCHA_PROVIDER",
    "CAPTCHA_SITE_KEY",
    "CAPTCHA_SECRET",
    "CAPTCHA_VERIFY_URL",
    "STATS_CACHE_SECONDS",
    "GUEST_SWEEP_SCHEDULE",
    "GUEST_LIFECYCLE_DAY_SECONDS",
)
# Keys the sample lists that are read by the Functions host or azure-identity, not by Settings.
EXTERNAL_KEYS: Final = ("FUNCTIONS_WORKER_RUNTIME", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")


_KEY_VAULT_REFERENCE: Final = "@microsoft.keyvault("


class _Reader:
    """Reads keys from a mapping, collecting problems instead of raising at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: dict[str, str] = {}

    def raw(self, key: str) -> str | None:
        value = self.env.get(key)
        if value is None or not value.strip():
            return None
        if value.strip().lower().startswith(_KEY_VAULT_REFERENCE):
            # App Service passes a reference it could not resolve through unchanged: never use it as the value.
            self.problems[key] = (
                "a Key Vault reference the platform could not resolve: the app's identity needs Key Vault Secrets "
                "User on the vault, and the secret must exist (docs/deploy.md, Secrets)"
            )
            return None
        return value.strip()

    def optional(self, key: str, check: Callable[[str], T] | None = None) -> T | str | None:
        value = self.raw(key)
        if value is None or check is None:
            return value
        try:
            return check(value)
        except ValueError as exc:
            self.problems[key] = str(exc)
            return None

    def required(self, key: str, check: Callable[[str], Any] | None = None) -> Any:
        value = self.raw(key)
        if value is None:
            self.problems.setdefault(key, "required but not set")
            return None
        return self.optional(key, check)

    def default(self, key: str, default: T, check: Callable[[str], T]) -> T:
        value = self.raw(key)
        if value is None:
            return default
        try:
            return check(value)
        except ValueError as exc:
            self.problems[key] = str(exc)
            return default


def _relative_luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _accessible_colour(value: str) -> str:
    """A #rrggbb colour white text is readable on (WCAG 2.2 AA: contrast at least 4.5:1)."""
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", value):
        raise ValueError("expected a colour as #rrggbb")
    contrast = 1.05 / (_relative_luminance(value) + 0.05)
    if contrast < 4.5:
        raise ValueError(
            f"white text on {value} has contrast {contrast:.2f}:1; WCAG AA needs 4.5:1 (pick a darker one)"
        )
    return value.lower()


def _origins(value: str) -> tuple[str, ...]:
    """Comma-separated origins (scheme://host[:port]), exactly as browsers send them."""
    origins = []
    for item in (v.strip().rstrip("/") for v in value.split(",") if v.strip()):
        parts = urlsplit(item)
        if parts.scheme not in {"https", "http"} or not parts.netloc or parts.path or parts.query:
            raise ValueError(f"{item!r} is not an origin such as https://partner.example.com")
        if parts.scheme == "http" and parts.hostname not in {"localhost", "127.0.0.1"}:
            raise ValueError(f"{item!r}: http only for localhost")
        origins.append(item)
    return tuple(origins)


def _non_negative_int(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"expected a whole number (0 or more), got {value!r}")
    return int(value)


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _mailbox(value: str) -> str:
    """A mailbox for sendMail: a user principal name / address, or a user object id."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    if not _SIMPLE_ADDRESS.match(value):
        raise ValueError("expected the sending mailbox's address (UPN) or user object id")
    return value


def _boolean(value: str) -> bool:
    return parse_boolean(value)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ValueError("must be a finite number greater than 0")
    return number


def _fraction(value: str) -> float:
    number = _positive_float(value)
    if number > 1:
        raise ValueError("must be a fraction greater than 0 and at most 1")
    return number


def _one_of(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    return check


MY_APPS_URL: Final = "https://myapps.microsoft.com"


def _url(value: str) -> str:
    """An absolute URL; plain http only for loopback hosts (local development)."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"expected an absolute http(s) URL, got {value!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError("plain http is allowed only for localhost; use https")
    return value.rstrip("/")


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a GUID") from None


def _guid_list(value: str) -> tuple[str, ...]:
    ids = tuple(_guid(part.strip()) for part in value.split(",") if part.strip())
    if len(ids) > 5:
        # Graph documents no limit; keep a sane one so a typo cannot fan out.
        raise ValueError("at most 5 sponsor ids")
    return ids


def _plain_text(value: str) -> str:
    if _HTML.search(value):
        raise ValueError("must be plain text (Graph allows no HTML in customizedMessageBody)")
    return value


def _email(value: str) -> str:
    try:
        return normalise_email(value)
    except InvalidEmail as exc:
        raise ValueError(f"{value!r} {exc}") from None


def _ncrontab(value: str) -> str:
    parts = value.split()
    if len(parts) != 6 or not all(_NCRONTAB_FIELD.match(part) for part in parts):
        raise ValueError(f"expected a six-field NCRONTAB expression (seconds first), got {value!r}")
    return value


def _policy_source(value: str) -> str:
    """A file path, or an https Blob URL (the document itself is read by ``shared.policy``)."""
    if "://" in value:
        parts = urlsplit(value)
        local = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS  # Azurite
        if not (parts.scheme == "https" or local) or not parts.hostname or not parts.path.strip("/"):
            raise ValueError(f"expected a file path or an https:// Blob URL, got {value!r}")
    return value


def _auto_credential(secret: str | None, cert_path: str | None, token_file: str | None) -> str:
    """The credential the standard azure-identity variables describe, managed identity otherwise."""
    if secret:
        return "client_secret"
    if cert_path:
        return "certificate"
    if token_file:
        return "workload_identity"
    return "managed_identity"


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build ``Settings`` from ``env``; raise ``ConfigurationError`` naming every problem."""
    r = _Reader(env)

    connection = r.optional("AzureWebJobsStorage")
    r.optional("AzureWebJobsStorage__blobServiceUri", _url)  # read by the Functions host, checked here
    r.default("AzureWebJobsStorage__credential", "managedidentity", _one_of("managedidentity"))
    account = r.optional("AzureWebJobsStorage__accountName", _pattern(_ACCOUNT_NAME, "storage account name"))
    queue_uri = r.optional("AzureWebJobsStorage__queueServiceUri", _url)
    table_uri = r.optional("AzureWebJobsStorage__tableServiceUri", _url)
    if account:
        queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
        table_uri = table_uri or f"https://{account}.table.core.windows.net"
    if connection is None and not (queue_uri and table_uri):
        r.problems["AzureWebJobsStorage"] = (
            "set a connection string, or an identity-based connection: AzureWebJobsStorage__accountName, "
            "or both AzureWebJobsStorage__queueServiceUri and AzureWebJobsStorage__tableServiceUri"
        )

    cloud = r.default("GRAPH_CLOUD", "global", _one_of(*GRAPH_CLOUDS))
    cloud_url, scope, authority = GRAPH_CLOUDS[cloud]
    base_url = r.optional("GRAPH_BASE_URL", _url) or f"{cloud_url}/v1.0"

    credential = r.default("GRAPH_CREDENTIAL", "auto", _one_of(*CREDENTIAL_KINDS))
    tenant_id = r.optional("AZURE_TENANT_ID")
    client_id = r.optional("AZURE_CLIENT_ID")
    secret = r.optional("AZURE_CLIENT_SECRET")
    cert_path = r.optional("AZURE_CLIENT_CERTIFICATE_PATH")
    token_file = r.optional("AZURE_FEDERATED_TOKEN_FILE")
    if credential == "auto":
        credential = _auto_credential(secret, cert_path, token_file)
    needs = {
        "client_secret": ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"),
        "certificate": ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERTIFICATE_PATH"),
        "workload_identity": ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"),
    }.get(credential, ())
    for key in needs:
        if r.raw(key) is None:
            r.problems[key] = f"required when GRAPH_CREDENTIAL is {credential}"

    role = r.optional("MANAGE_EASY_AUTH_ROLE")
    convert_role = r.optional("MANAGE_CONVERT_EASY_AUTH_ROLE")
    easy_auth = r.default("WEBSITE_AUTH_ENABLED", False, _boolean)
    if role and not easy_auth:
        r.problems["MANAGE_EASY_AUTH_ROLE"] = (
            "set only when App Service Authentication (Easy Auth) fronts the app (WEBSITE_AUTH_ENABLED=true): "
            "otherwise anyone could send the principal header it trusts"
        )
    if convert_role and not role:
        r.problems["MANAGE_CONVERT_EASY_AUTH_ROLE"] = "set only with MANAGE_EASY_AUTH_ROLE (Easy Auth mode)"
    elif convert_role and convert_role == role:
        r.problems["MANAGE_CONVERT_EASY_AUTH_ROLE"] = (
            "must differ from MANAGE_EASY_AUTH_ROLE: converting cannot be undone, so it is a role of its own"
        )
    hostname = r.optional("WEBSITE_HOSTNAME")
    public_url = r.optional("PORTAL_PUBLIC_URL", _url) or (
        f"https://{hostname}" if hostname else "http://127.0.0.1:7071"
    )
    sender = r.optional("MAIL_SENDER", _mailbox)

    provider = r.default("CAPTCHA_PROVIDER", "none", _one_of("none", "turnstile", "hcaptcha", "recaptcha"))
    captcha_secret, site_key = r.optional("CAPTCHA_SECRET"), r.optional("CAPTCHA_SITE_KEY")
    if provider != "none":
        for key, value in (("CAPTCHA_SECRET", captcha_secret), ("CAPTCHA_SITE_KEY", site_key)):
            if value is None:
                r.problems[key] = f"required when CAPTCHA_PROVIDER is {provider}"
    verify_url = r.optional("CAPTCHA_VERIFY_URL", _url)
    if verify_url:
        try:
            check_captcha_endpoint(verify_url, provider, local=hostname is None)
        except ValueError as exc:
            r.problems["CAPTCHA_VERIFY_URL"] = str(exc)
    policy_hosts: tuple[str, ...] = r.default("SIGNUP_POLICY_ALLOWED_HOSTS", (), host_list)
    policy_source = r.optional("SIGNUP_POLICY", _policy_source)
    if policy_source and "://" in policy_source:
        try:
            check_policy_host(policy_source, env, policy_hosts)
        except ValueError as exc:
            r.problems["SIGNUP_POLICY"] = str(exc)
    terms_url, terms_version = r.optional("TERMS_URL", _url), r.optional("TERMS_VERSION", _plain_text)
    if terms_url and not terms_version:
        r.problems["TERMS_VERSION"] = "required with TERMS_URL: the accepted version is stored with each request"

    budget = r.default("GRAPH_WRITE_BUDGET", 3000, _positive_int)
    window = r.default("GRAPH_WRITE_WINDOW_SECONDS", 150.0, _positive_float)

    settings = Settings(
        storage_connection_string=connection,
        storage_queue_service_uri=queue_uri,
        storage_table_service_uri=table_uri,
        storage_client_id=r.optional("AzureWebJobsStorage__clientId"),
        signup_queue=r.default("SIGNUP_QUEUE", "signups", _pattern(_QUEUE_NAME, "queue name")),
        signup_table=r.default("SIGNUP_TABLE", "signups", _pattern(_TABLE_NAME, "table name")),
        retry_initial_seconds=r.default("SIGNUP_RETRY_INITIAL_SECONDS", 10.0, _positive_float),
        retry_max_seconds=r.default("SIGNUP_RETRY_MAX_SECONDS", 300.0, _positive_float),
        retry_deadline_seconds=r.default("SIGNUP_RETRY_DEADLINE_SECONDS", 86400.0, _positive_float),
        doubt_cap_seconds=r.default("SIGNUP_DOUBT_CAP_SECONDS", 3 * 86400.0, _positive_float),
        repeat_window_seconds=r.default("SIGNUP_REPEAT_WINDOW_SECONDS", 86400.0, _positive_float),
        queued_grace_seconds=r.default("SIGNUP_QUEUED_GRACE_SECONDS", 600.0, _positive_float),
        sweep_schedule=r.default("SWEEP_SCHEDULE", "0 */1 * * * *", _ncrontab),
        signup_policy=policy_source,
        signup_policy_allowed_hosts=policy_hosts,
        invite_redirect_url=r.required("INVITE_REDIRECT_URL", _url),
        invite_user_type=r.default("INVITE_USER_TYPE", "Guest", _one_of("Guest", "Member")),
        invite_send_message=r.default("INVITE_SEND_MESSAGE", True, _boolean),
        invite_message_language=r.optional("INVITE_MESSAGE_LANGUAGE", _pattern(_LANGUAGE, "ISO 639 language tag")),
        invite_message_body=r.optional("INVITE_MESSAGE_BODY", _plain_text),
        invite_cc_address=r.optional("INVITE_CC_ADDRESS", _email),
        invite_sponsor_ids=r.default("INVITE_SPONSOR_IDS", (), _guid_list),
        graph_cloud=cloud,
        graph_base_url=base_url,
        graph_scope=scope,
        graph_credential=credential,
        authority_host=r.optional("AZURE_AUTHORITY_HOST") or authority,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=secret,
        client_certificate_path=cert_path,
        client_certificate_password=r.optional("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
        federated_token_file=token_file,
        graph_timeout_seconds=r.default("GRAPH_TIMEOUT_SECONDS", 30.0, _positive_float),
        graph_pacing_enabled=r.default("GRAPH_PACING_ENABLED", True, _boolean),
        graph_write_budget=budget,
        graph_write_window_seconds=window,
        graph_pacing_max_wait_seconds=r.default("GRAPH_PACING_MAX_WAIT_SECONDS", 20.0, _positive_float),
        graph_throttle_max_wait_seconds=r.default("GRAPH_THROTTLE_MAX_WAIT_SECONDS", 60.0, _positive_float),
        lease_margin_seconds=r.default("LEASE_MARGIN_SECONDS", 10.0, _positive_float),
        graph_pacing_mode=r.default("GRAPH_PACING_MODE", "shared", _one_of("shared", "local")),
        graph_invitation_budget=r.default("GRAPH_INVITATION_BUDGET", 150, _positive_int),
        graph_invitation_window_seconds=r.default("GRAPH_INVITATION_WINDOW_SECONDS", 5.0, _positive_float),
        graph_pacing_fallback_fraction=r.default("GRAPH_PACING_FALLBACK_FRACTION", 0.25, _fraction),
        audit_table=r.default("SIGNUP_AUDIT_TABLE", "signupaudit", _pattern(_TABLE_NAME, "table name")),
        manage_easy_auth_role=role,
        manage_convert_easy_auth_role=convert_role,
        easy_auth_enabled=easy_auth,
        mail_sender=sender,
        portal_public_url=str(public_url).rstrip("/"),
        organisation_name=r.default("ORGANISATION_NAME", "the organisation", _plain_text),
        organisation_contact=r.default("ORGANISATION_CONTACT", "", _plain_text),
        portal_signin_url=r.default("PORTAL_SIGNIN_URL", MY_APPS_URL, _url),
        denial_memory_seconds=r.default("APPROVAL_DENIAL_MEMORY_SECONDS", 30 * 86400.0, _positive_float),
        pending_expiry_seconds=r.default("APPROVAL_PENDING_EXPIRY_SECONDS", 14 * 86400.0, _positive_float),
        brand_logo_url=r.optional("BRAND_LOGO_URL", _url),
        brand_primary_colour=r.default("BRAND_PRIMARY_COLOUR", "#0f6cbd", _accessible_colour),
        telemetry_console=r.default("TELEMETRY_CONSOLE", False, _boolean),
        terms_url=terms_url,
        terms_version=terms_version,
        cors_allowed_origins=r.default("CORS_ALLOWED_ORIGINS", (), _origins),
        # Sized for a partner's onboarding day: a whole partner behind one egress IP (docs/abuse.md).
        rate_limit_per_ip=r.default("RATE_LIMIT_PER_IP", 1000, _non_negative_int),
        rate_limit_per_domain=r.default("RATE_LIMIT_PER_DOMAIN", 1000, _non_negative_int),
        rate_limit_window_seconds=r.default("RATE_LIMIT_WINDOW_SECONDS", 600.0, _positive_float),
        rate_limit_sync_seconds=r.default("RATE_LIMIT_SYNC_SECONDS", 1.0, _positive_float),
        trusted_forwarded_hops=r.default("TRUSTED_FORWARDED_HOPS", 1, _non_negative_int),
        form_token_secret=r.optional("FORM_TOKEN_SECRET"),
        min_fill_seconds=r.default("SIGNUP_MIN_FILL_SECONDS", 3.0, _non_negative_float),
        captcha_provider=provider,
        captcha_site_key=site_key,
        captcha_secret=captcha_secret,
        captcha_verify_url=verify_url,
        stats_cache_seconds=r.default("STATS_CACHE_SECONDS", 10.0, _non_negative_float),
        guest_sweep_schedule=r.default("GUEST_SWEEP_SCHEDULE", "0 30 * * * *", _ncrontab),
        guest_lifecycle_day_seconds=r.default("GUEST_LIFECYCLE_DAY_SECONDS", 86400.0, _positive_float),
    )
    if r.problems:
        raise ConfigurationError(r.problems)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from ``os.environ`` on first use."""
    return load_settings(os.environ)


def setting_field_names() -> tuple[str, ...]:
    """Names of the ``Settings`` fields (used by tests to check nothing is unlisted)."""
    return tuple(f.name for f in fields(Settings))
