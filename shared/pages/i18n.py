"""Languages: which ones the pages speak, choosing one per request, and their catalogues.

Microsoft's guidance this product follows is published in Japanese, Chinese,
German and Dutch, so the pages speak those and English. The language comes from
``?lang=`` when it names one of them, otherwise from ``Accept-Language`` (Babel's
negotiation, with ``zh``, ``zh-CN`` and ``zh-SG`` read as Simplified Chinese),
otherwise English. Catalogues are gettext ``.po`` files compiled in memory on
first use, so there is no build step and no binary file to keep in step.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from babel.support import Translations

# Babel is imported on the first request that negotiates a language or renders a page, not when the host
# indexes the functions: it is part of the cold start a JSON API call need not pay.

LANGUAGES: Final = ("en", "ja", "zh-Hans", "de", "nl")
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
_ALIASES: Final = {"zh": "zh-Hans", "zh-cn": "zh-Hans", "zh-sg": "zh-Hans", "zh-hans": "zh-Hans"}


def _accepted(header: str | None) -> list[str]:
    """Accept-Language's tags, best first (q-values honoured, malformed parts ignored)."""
    weighted = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def _canonical(tag: str) -> str | None:
    lowered = tag.lower()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    return next((lang for lang in LANGUAGES if lang.lower() == lowered), None)


def negotiate(accept_language: str | None, override: str | None = None) -> str:
    """The page language: ``override`` if supported, else the best of ``Accept-Language``, else English."""
    if override and (chosen := _canonical(override)):
        return chosen
    from babel import negotiate_locale

    preferred = [_ALIASES.get(tag.lower(), tag) for tag in _accepted(accept_language)]
    found = negotiate_locale(preferred, list(LANGUAGES), sep="-")
    return (_canonical(found) if found else None) or "en"


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> Translations:
    """The compiled catalogue of ``language`` (English: the identity)."""
    from babel import Locale
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    with (LOCALE_DIR / f"{language}.po").open("rb") as handle:
        catalog = read_po(handle, locale=Locale.parse(language, sep="-"))
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)
