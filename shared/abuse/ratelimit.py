"""The client's address and the per-IP limit at the door.

The per-IP limit counts, in a ``SharedLimiter`` (``counters``), only submissions
that passed the cheap checks (honeypot, form token, terms, CAPTCHA), so junk
cannot spend a real person's allowance. An IPv6 client is counted per /64 (one
customer's prefix: an attacker has the whole of it), an IPv4 one per address.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from typing import Final

log = logging.getLogger(__name__)

UNKNOWN: Final = "unknown"  # the key of submissions whose address cannot be found: counted together
IPV6_PREFIX: Final = 64


def _address(raw: str) -> str | None:
    """An address from ``ip``, ``ip:port``, ``[v6]:port`` or ``v6``; None if it is none of them."""
    candidate = raw.strip()
    if candidate.startswith("["):  # [v6]:port
        candidate = candidate[1:].split("]", 1)[0]
    elif candidate.count(":") == 1:  # v4:port
        candidate = candidate.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def client_ip(headers: Mapping[str, str], trusted_hops: int, peer: str | None = None) -> str | None:
    """The client's address from ``X-Forwarded-For``, counting ``trusted_hops`` proxies from the right.

    Azure's front end appends the address it saw (``ip:port``); entries to the left of the trusted ones are
    whatever the client claimed and are never used. With fewer entries than trusted hops (a missing header,
    or a proxy left out), the address is the peer's (``peer``: the TCP peer, where the host tells it), else
    the leftmost entry, which a trusted proxy appended too. None only when none of these is known.
    """
    raw = next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), "")
    hops = [h.strip() for h in raw.split(",") if h.strip()]
    if trusted_hops >= 1 and len(hops) >= trusted_hops:
        return _address(hops[-trusted_hops])
    if peer:
        return _address(peer)
    if trusted_hops >= 1 and hops:
        return _address(hops[0])
    return None


def rate_key(ip: str | None) -> str:
    """What the per-IP limit counts: the IPv4 address, the IPv6 /64 (an IPv4-mapped one as IPv4), or
    ``unknown`` for a submission whose address could not be found (it still counts, not skips)."""
    if ip is None:
        return UNKNOWN
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return UNKNOWN
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
