"""The API description (``shared/api/openapi.json``): valid OpenAPI 3.1, describing exactly the app's routes,
and true of the running app: schemathesis drives every operation against the local host (Azurite and the Graph
emulator as processes) and checks that nothing answers 5xx, every 4xx is problem+json and answers conform."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate as validate_openapi

from devhost.processes import free_port, start_devhost, start_emulator
from shared.api import description
from tests.conftest import FUNCTION_KEY, host_env
from triggers.signups import ALL_METHODS

REVIEW_POLICY = str(Path(__file__).resolve().parent / "policies" / "review.json")
SCHEMA = schemathesis.openapi.from_dict(description())


def _app_routes() -> set[tuple[str, str]]:
    """(method, path) of every HTTP function, as the description spells paths."""
    from function_app import app

    app.functions_bindings = None  # get_functions() refuses a second call on the same app otherwise
    routes = set()
    for function in app.get_functions():
        trigger = function.get_bindings_dict()["bindings"][0]
        if trigger["type"] != "httpTrigger":
            continue
        routes.add("/" + str(trigger["route"]))
    return routes


def test_the_description_is_valid_openapi_3_1() -> None:
    document = description()
    assert document["openapi"].startswith("3.1")
    validate_openapi(document)


def test_every_route_is_described_and_every_description_is_a_route() -> None:
    """Paths match the app's HTTP functions one to one (each function answers 405 to other methods)."""
    assert set(description()["paths"]) == _app_routes()


async def test_the_app_serves_its_description() -> None:
    import azure.functions as func

    from triggers.meta import get_openapi

    response = await get_openapi(func.HttpRequest("GET", "http://h/api/openapi.json", body=b""))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_body().startswith(b"{")


@pytest.fixture(scope="module")
def api(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The local host on Azurite and an emulator process (this test is synchronous: nothing may need its loop)."""
    logs = tmp_path_factory.mktemp("openapi")
    emulator_port = free_port()
    emulator = start_emulator(emulator_port, logs, ["--identity-header", "openapi-tests"])
    graph = f"http://127.0.0.1:{emulator_port}"
    env = host_env(azurite, graph, SIGNUP_POLICY=REVIEW_POLICY, IDENTITY_HEADER="openapi-tests")
    port = free_port()
    host = start_devhost(port, env, logs, settings_file=logs / "none.json")
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        host.stop()
        emulator.stop()


def _check(response: Any, case: Any) -> None:
    """No 5xx, ever; every 4xx the app answers is problem+json.

    Two answers come from the host, not the app, and have no problem body, in Azure as here: its own 401 for a
    missing key, and its refusal of a method no function is bound to (TRACE, CONNECT, ...).
    """
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}"
    from_host = (response.status_code == 401 and not response.content) or case.method.upper() not in ALL_METHODS
    if 400 <= response.status_code < 500 and not from_host:
        headers = {k.lower(): v for k, v in response.headers.items()}
        content_type = headers.get("content-type")
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert (content_type or "").startswith("application/problem+json"), (case.formatted_path, headers)
        body = response.json()
        assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == response.status_code


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # CI sees the same examples every run
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.e2e
@SCHEMA.parametrize()
@PROPERTY
def test_no_input_gets_a_5xx_and_answers_conform(case: Any, api: str) -> None:
    """Every operation, with the function key: generated inputs never get a 5xx; answers conform."""
    with requests.Session() as session:
        response = case.call(base_url=api, session=session, headers={"x-functions-key": FUNCTION_KEY}, timeout=15)
        _check(response, case)
        # Not positive_data_acceptance: the address rules (Graph's characters, IDNA 2008) and the policy are
        # stricter than a schema can say, so schema-valid input may rightly get a 400 or 403.
        case.validate_response(response, checks=CHECKS)


@pytest.mark.e2e
@SCHEMA.include(path_regex=r"^/manage/").parametrize()
@PROPERTY
def test_admin_operations_refuse_callers_without_a_key(case: Any, api: str) -> None:
    with requests.Session() as session:
        response = case.call(base_url=api, session=session, timeout=15)
        if case.method.upper() in ALL_METHODS:  # other methods never reach a function (see _check)
            assert response.status_code == 401 and response.content == b""


@pytest.mark.e2e
def test_a_real_flow_conforms(api: str) -> None:
    """A sign-up that waits, its listing, detail and approval: each answer validates against the description."""
    key = {"x-functions-key": FUNCTION_KEY}
    with requests.Session() as http:
        accepted = http.post(f"{api}/signups", json={"email": "lee@northwind.com", "displayName": "Lee"}, timeout=15)
        assert accepted.status_code == 202
        sid = accepted.json()["id"]
        for method, path, body in (
            ("GET", f"/signups/{sid}", None),
            ("GET", "/manage/signups?status=pending_approval&pageSize=5", None),
            ("GET", f"/manage/signups/{sid}", None),
            ("POST", f"/manage/signups/{sid}/approve", {"reason": "ok"}),
            ("POST", f"/manage/signups/{sid}/deny", {"reason": "too late"}),
        ):
            response = http.request(method, f"{api}{path}", json=body, headers=key, timeout=15)
            template = re.sub(r"/(\d{12})?[A-Za-z0-9_-]{22}", "/{id}", path.split("?")[0])
            operation = SCHEMA[template][method]
            operation.validate_response(response)
            assert response.status_code in (200, 409), (path, response.status_code)
