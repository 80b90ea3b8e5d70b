"""The pages: the partner's sign-up form and the approver's page, localised and accessible.

This package owns the HTML side of the portal: language negotiation and the
gettext catalogues (``locale/<language>.po``, compiled in memory with Babel),
the Jinja2 templates (autoescaped), the static CSS and JavaScript (served by the
app, so a strict Content-Security-Policy with no inline script holds), branding
from settings, and the form's own anti-abuse token. The API stays JSON: a form
posted by a browser without JavaScript gets an HTML page only when it asks for
one (``Accept: text/html``).
"""

from __future__ import annotations

from .i18n import LANGUAGES, negotiate, translations
from .render import Branding, render, security_headers

__all__ = ["LANGUAGES", "Branding", "negotiate", "render", "security_headers", "translations"]
