"""Rendering: the Jinja2 environment (autoescape on), branding from settings, and the pages' security headers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .i18n import LANGUAGES, translations

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
STATIC: Final = Path(__file__).resolve().parent / "static"
LANGUAGE_NAMES: Final = {"en": "English", "ja": "日本語", "zh-Hans": "简体中文", "de": "Deutsch", "nl": "Nederlands"}


@dataclass(frozen=True)
class Branding:
    """What the settings say about the organisation's look (no code edits needed)."""

    organisation: str
    contact: str = ""
    logo_url: str | None = None
    primary_colour: str = "#0f6cbd"
    terms_url: str | None = None
    terms_version: str | None = None


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # Jinja2 is imported with the first page rendered, not when the host indexes the functions (cold start).
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render(template: str, language: str, **context: Any) -> str:
    """``template`` in ``language``, with ``context`` (every value escaped unless marked safe)."""
    env = _environment().overlay()
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env.get_template(template).render(
        lang=language, languages=LANGUAGES, language_names=LANGUAGE_NAMES, **context
    )


def security_headers(branding: Branding, extra_script_origins: tuple[str, ...] = ()) -> dict[str, str]:
    """A strict Content-Security-Policy (no inline script or style, nothing from elsewhere) and friends.

    A configured logo's origin may serve images, and a CAPTCHA provider's origin scripts and frames.
    """
    images = ["'self'"]
    if branding.logo_url:
        parts = urlsplit(branding.logo_url)
        images.append(f"{parts.scheme}://{parts.netloc}")
    scripts = ["'self'", *extra_script_origins]
    frames = list(extra_script_origins) or ["'none'"]
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(scripts)}",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            f"connect-src 'self' {' '.join(extra_script_origins)}".strip(),
            f"frame-src {' '.join(frames)}",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
