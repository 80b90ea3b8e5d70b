"""The pages' catalogues are complete: every text the templates and ``shared/pages`` ask for (extracted with
Babel, as gettext's tools would) is in every language's catalogue, translated, with the same placeholders."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from shared.pages.i18n import LANGUAGES, LOCALE_DIR

PAGES = Path(__file__).resolve().parent.parent / "shared" / "pages"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}}


def extracted() -> set[str]:
    """The msgids the code and templates use."""
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(PAGES), METHODS, OPTIONS):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_extraction_finds_the_console_and_the_form() -> None:
    texts = extracted()
    assert {"Sign up as a guest of %(organisation)s", "Sign-up console", "Load more", "Waiting for approval"} <= texts


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_is_in_the_catalogue_with_its_placeholders(language: str) -> None:
    with (LOCALE_DIR / f"{language}.po").open("rb") as handle:
        catalogue = read_po(handle, locale=language.replace("-", "_"))
    missing = sorted(text for text in extracted() if text not in catalogue)
    assert missing == [], f"{language}.po lacks {missing}"
    if language == "en":
        return
    untranslated = sorted(m.id for m in catalogue if m.id and not m.string)
    assert untranslated == [], f"{language}.po leaves {untranslated} untranslated"
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalogue.check()]
    assert problems == [], problems
