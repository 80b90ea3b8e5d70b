"""Where the app may send its credentials: the policy's host and the CAPTCHA provider's endpoint.

The policy is read with the app's storage token and the CAPTCHA is checked
with its secret, so both destinations are pinned (least privilege for a
mistyped or hostile setting):

* ``SIGNUP_POLICY`` as a URL must be a blob on the app's own storage account
  (the account ``AzureWebJobsStorage`` names), unless its host is listed in
  ``SIGNUP_POLICY_ALLOWED_HOSTS``;
* ``CAPTCHA_VERIFY_URL`` must be the chosen provider's documented endpoint; a
  loopback stand-in is allowed only for local runs (no ``WEBSITE_HOSTNAME``,
  which Azure always sets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

# The providers' documented siteverify endpoints (shared.abuse.captcha uses the same by default).
CAPTCHA_ENDPOINTS: Final = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
    "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
}
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
AZURITE_BLOB: Final = "127.0.0.1:10000"


def _connection_parts(connection: str) -> dict[str, str]:
    parts = {}
    for item in connection.split(";"):
        key, _, value = item.partition("=")
        if key.strip():
            parts[key.strip().lower()] = value.strip()
    return parts


def own_blob_hosts(env: Mapping[str, str]) -> tuple[frozenset[str], frozenset[str]]:
    """The app's own storage: blob hosts (``host[:port]``) and account names, from the storage settings."""
    hosts: set[str] = set()
    accounts: set[str] = set()
    connection = (env.get("AzureWebJobsStorage") or "").strip()
    if connection:
        parts = _connection_parts(connection)
        if parts.get("usedevelopmentstorage", "").lower() == "true":
            hosts.add(AZURITE_BLOB)
        if parts.get("blobendpoint"):
            hosts.add(urlsplit(parts["blobendpoint"]).netloc.lower())
        if parts.get("accountname"):
            account = parts["accountname"].lower()
            hosts.add(f"{account}.blob.{parts.get('endpointsuffix') or 'core.windows.net'}")
    blob_uri = (env.get("AzureWebJobsStorage__blobServiceUri") or "").strip()
    if blob_uri:
        hosts.add(urlsplit(blob_uri).netloc.lower())
    if (env.get("AzureWebJobsStorage__accountName") or "").strip():
        accounts.add(env["AzureWebJobsStorage__accountName"].strip().lower())
    return frozenset(hosts), frozenset(accounts)


def check_policy_host(url: str, env: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """``ValueError`` unless ``url`` is on the app's own storage account or an allowed host."""
    netloc = urlsplit(url).netloc.lower()
    host = urlsplit(url).hostname or ""
    hosts, accounts = own_blob_hosts(env)
    if netloc in hosts or host in allowed or any(host.startswith(f"{a}.blob.") for a in accounts):
        return
    raise ValueError(
        f"{host!r} is not the app's own storage account; the app sends its storage token there. "
        "Put the document in that account, or list the host in SIGNUP_POLICY_ALLOWED_HOSTS"
    )


def check_captcha_endpoint(url: str, provider: str, local: bool) -> None:
    """``ValueError`` unless ``url`` is ``provider``'s documented endpoint (or loopback, when ``local``)."""
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_HOSTS:
        if local:
            return
        raise ValueError("a loopback CAPTCHA endpoint is for local runs only (WEBSITE_HOSTNAME is set)")
    documented = [CAPTCHA_ENDPOINTS[provider]] if provider in CAPTCHA_ENDPOINTS else list(CAPTCHA_ENDPOINTS.values())
    if url.rstrip("/") not in documented:
        raise ValueError(
            f"the CAPTCHA secret goes only to {provider}'s documented endpoint ({' or '.join(documented)}); "
            "leave the setting unset to use it"
        )


def host_list(value: str) -> tuple[str, ...]:
    """Comma-separated host names (no scheme, path or port)."""
    hosts = []
    for item in (v.strip().lower() for v in value.split(",") if v.strip()):
        if "/" in item or ":" in item or "@" in item or " " in item or "." not in item:
            raise ValueError(f"{item!r} is not a host name such as policies.contoso.com")
        hosts.append(item)
    return tuple(hosts)
