"""The documents: every relative link in README.md and docs/*.md leads to a file that exists and, when it names
an anchor, to a heading that exists there (GitHub's heading ids)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to hyphens."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its label
    heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return heading.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading id of a Markdown file, repeats numbered ``-1``, ``-2`` as GitHub numbers them."""
    seen: dict[str, int] = {}
    ids = set()
    for _, text in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        ids.add(base if count == 0 else f"{base}-{count}")
    return ids


def relative_links(path: Path) -> list[str]:
    """The targets of the document's links and images that are not URLs."""
    targets = _LINK.findall(prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def test_the_documents_exist() -> None:
    names = {p.name for p in DOCUMENTS}
    for page in ("api", "policy", "approval-and-access", "pages", "conversion", "lifecycle", "graph-and-pacing"):
        assert f"{page}.md" in names
    for page in ("settings", "deploy", "benchmarks"):
        assert f"{page}.md" in names


def test_the_readme_links_every_page() -> None:
    linked = {t.split("#")[0] for t in relative_links(ROOT / "README.md")}
    missing = [p.relative_to(ROOT).as_posix() for p in DOCUMENTS[1:] if p.relative_to(ROOT).as_posix() not in linked]
    assert not missing, f"README.md links no page {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        dest = (document.parent / file_part).resolve() if file_part else document
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{document.relative_to(ROOT)}: " + "; ".join(broken)


def test_slugs_follow_github() -> None:
    assert slug("Admin routes (`/api/manage/...`)") == "admin-routes-apimanage"
    assert slug("Graph permissions: the one-time admin step") == "graph-permissions-the-one-time-admin-step"
    assert slug("Pacing inside Graph's write budget") == "pacing-inside-graphs-write-budget"
    assert slug("One budget for every instance (`GRAPH_PACING_MODE=shared`, the default)") == (
        "one-budget-for-every-instance-graph_pacing_modeshared-the-default"
    )


def _table_rows(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("|")]


def test_every_template_parameter_is_in_the_deploy_table() -> None:
    """Each ``param`` of infra/main.bicep has a row in docs/deploy.md's table naming it and its azd variable."""
    text = (ROOT / "infra" / "main.bicep").read_text(encoding="utf-8")
    params = re.findall(r"^param (\w+)", text, re.MULTILINE)
    mapped = json.loads((ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    rows = _table_rows(ROOT / "docs" / "deploy.md")
    missing = []
    for param in params:
        variable = re.match(r"\$\{([A-Z0-9_]+)", mapped[param]["value"])
        row = next((r for r in rows if f"`{param}`" in r), None)
        if row is None or (variable and f"`{variable.group(1)}`" not in row):
            missing.append(param)
    assert len(params) >= 50
    assert not missing, f"docs/deploy.md's parameter table lacks {missing}"


def test_every_setting_is_documented() -> None:
    """Each key of local.settings.sample.json is described on docs/settings.md."""
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [key for key in sample if f"`{key}`" not in text]
    assert not missing, f"no documentation for {missing}"
