"""Admin writes (approve, deny, conversions) are JSON from this site or from an API client, never cross-site.

A browser sends ambient credentials (the Easy Auth session cookie) with any
request a foreign page makes it send, and an HTML form can post ``text/plain``
or ``application/x-www-form-urlencoded`` without a preflight. Two rules shut
that door in both auth modes:

* the body must be ``application/json``, which a foreign page can send only after
  a CORS preflight the admin routes never grant;
* a request marked as coming from elsewhere is refused: an ``Origin`` that is not
  this app's (the request's own host or ``PORTAL_PUBLIC_URL``), ``Origin: null``,
  or ``Sec-Fetch-Site: cross-site``. Clients that send neither (curl, scripts, the
  CLI) are not browsers and carry no ambient credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from ..errors import CrossSiteRequest, UnsupportedMediaType


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return (parts.scheme.lower(), parts.netloc.lower())


def same_site(headers: Mapping[str, str], request_url: str, public_url: str) -> bool:
    """False when the browser says the request was made by another site's page."""
    if (headers.get("sec-fetch-site") or "").strip().lower() == "cross-site":
        return False
    origin = (headers.get("origin") or "").strip()
    if not origin:
        return True
    if origin.lower() == "null":
        return False
    try:
        own = {_origin(public_url)}
        netloc = _origin(request_url)[1]
        # The host may see plain http behind the platform's TLS front end: the request's own host counts either way.
        own |= {("https", netloc), ("http", netloc)}
        return _origin(origin) in own
    except ValueError:  # an Origin no browser would send (urlsplit refuses it): not ours
        return False


def check_admin_write(headers: Mapping[str, str], request_url: str, public_url: str) -> None:
    """Raise ``CrossSiteRequest`` (403) or ``UnsupportedMediaType`` (415) unless the write may proceed."""
    if not same_site(headers, request_url, public_url):
        raise CrossSiteRequest()
    media_type = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json (for approve, {} when there is no reason).")
