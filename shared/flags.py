"""The one reading of a boolean setting, shared by the app and the local host.

``WEBSITE_AUTH_ENABLED=True`` must mean the same to the host that strips
principal headers as to the app that trusts them.
"""

from __future__ import annotations

from typing import Final

TRUE: Final = frozenset({"true", "1", "yes", "on"})
FALSE: Final = frozenset({"false", "0", "no", "off"})


def parse_boolean(value: str) -> bool:
    """``value`` as a boolean (any case, surrounding spaces ignored); ``ValueError`` for anything else."""
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def flag(value: str | None, default: bool = False) -> bool:
    """An optional boolean: unset or blank is ``default``; a value that is not a boolean raises ``ValueError``."""
    if value is None or not value.strip():
        return default
    return parse_boolean(value)
