"""The HTTP edge without a host: one pipeline, one presenter, the admin-write rules, no circles among triggers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.access.writes import check_admin_write, same_site
from shared.edge import Headers, Inbound, Json, Route, respond
from shared.edge.present import wants_html
from shared.errors import CrossSiteRequest, UnsupportedMediaType

OWN = "https://portal.contoso.example"


def _request(method: str = "GET", **headers: str) -> Inbound:
    return Inbound(method, f"{OWN}/api/x", Headers({k.replace("_", "-"): v for k, v in headers.items()}))


async def _answer(request: Inbound) -> Json:
    return Json(200, {"ok": True})


async def test_every_answer_goes_through_the_presenter_with_its_headers() -> None:
    route = Route("probe", "GET", _answer)
    ok = await respond(route, _request())
    assert (ok.status, ok.mimetype, json.loads(ok.body)) == (200, "application/json", {"ok": True})
    assert ok.headers["Cache-Control"] == "no-store" and ok.headers["X-Content-Type-Options"] == "nosniff"
    assert (await respond(route, _request("HEAD"))).status == 200
    wrong = await respond(route, _request("DELETE"))
    assert wrong.status == 405 and wrong.headers["Allow"] == "GET"
    assert wrong.headers["Content-Type"] == "application/problem+json"
    assert json.loads(wrong.body)["type"] == "/problems/method-not-allowed"


async def test_a_failure_of_ours_is_a_500_problem_and_a_refusal_its_own_status() -> None:
    async def broken(request: Inbound) -> Json:
        raise RuntimeError("boom")

    async def refusing(request: Inbound) -> Json:
        raise UnsupportedMediaType("no")

    failed = await respond(Route("broken", "GET", broken), _request())
    assert failed.status == 500 and json.loads(failed.body)["type"] == "/problems/internal"
    assert b"boom" not in failed.body
    refused = await respond(Route("refusing", "GET", refusing), _request())
    assert refused.status == 415 and json.loads(refused.body)["detail"] == "no"


@pytest.mark.parametrize(
    ("headers", "same"),
    [
        ({}, True),  # a script or the CLI: no browser, no ambient credentials
        ({"Origin": OWN, "Sec-Fetch-Site": "same-origin"}, True),
        ({"Origin": "http://portal.contoso.example"}, True),  # the host may see http behind the TLS front end
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Origin": "https://attacker.example"}, False),
        ({"Origin": "https://portal.contoso.example.attacker.example"}, False),
        ({"Origin": "null"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Origin": OWN, "Sec-Fetch-Site": "cross-site"}, False),
        ({"Origin": "http://[::1"}, False),  # unparseable: refused, not a 500
    ],
)
def test_same_site(headers: dict[str, str], same: bool) -> None:
    assert same_site(Headers(headers), f"{OWN}/api/manage/signups/x/approve", OWN) is same


def test_admin_writes_are_json_only() -> None:
    url = f"{OWN}/api/manage/conversions"
    check_admin_write(Headers({"Content-Type": "application/json; charset=utf-8"}), url, OWN)
    for media in ("", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx"):
        with pytest.raises(UnsupportedMediaType):
            check_admin_write(Headers({"Content-Type": media}), url, OWN)
    with pytest.raises(CrossSiteRequest):
        check_admin_write(Headers({"Content-Type": "application/json", "Origin": "https://x.example"}), url, OWN)


async def test_an_admin_write_route_refuses_before_its_handler_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    async def handler(request: Inbound) -> Json:
        ran.append("ran")
        return Json(200, {})

    class FakeServices:
        class settings:
            portal_public_url = OWN

    monkeypatch.setattr("shared.edge.pipeline.get_services", FakeServices)
    route = Route("write", "POST", handler, admin_write=True)
    forged = _request("POST", Content_Type="text/plain", Origin="https://attacker.example")
    assert (await respond(route, forged)).status == 403
    assert (await respond(route, _request("POST", Content_Type="text/plain"))).status == 415
    assert ran == []
    assert (await respond(route, _request("POST", Content_Type="application/json", Origin=OWN))).status == 200
    assert ran == ["ran"]


def test_content_negotiation() -> None:
    form = "application/x-www-form-urlencoded"
    assert wants_html(_request("POST", Content_Type=form, Accept="text/html,application/xhtml+xml,*/*"))
    assert not wants_html(_request("POST", Content_Type=form, Accept="application/json, text/html"))
    assert not wants_html(_request("POST", Content_Type="application/json", Accept="text/html"))
    assert not wants_html(_request("POST", Content_Type=form))


def test_trigger_modules_import_only_the_mapping_not_each_other(repo_root: Path) -> None:
    """No circles: a trigger module imports shared/ and triggers.http, never another trigger module."""
    for path in (repo_root / "triggers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module == "http", (path.name, node.module)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("triggers."):
                raise AssertionError((path.name, node.module))
    # Page rendering (Jinja2, Babel) is not imported when the app is indexed: the presenter imports it lazily.
    code = "import function_app, sys; print(sorted(m for m in ('jinja2', 'babel') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
