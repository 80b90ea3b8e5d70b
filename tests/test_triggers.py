"""The trigger functions called directly (azure-functions >= 1.21), with real services behind them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

from shared.errors import ConfigurationError
from shared.lifecycle.queue import StorageQueue
from shared.services import Services
from shared.settings import load_settings
from shared.storage import build_queue_client
from triggers.signups import get_signup, invite_signup, submit_signup


def _request(method: str, body: bytes = b"", content_type: str = "application/json", **route: str) -> func.HttpRequest:
    url = "http://localhost:7071/api/signups" + (f"/{route['id']}" if route else "")
    return func.HttpRequest(method, url, headers={"Content-Type": content_type}, body=body, route_params=route)


async def test_submit_and_read_back(services: Services) -> None:
    """The HTTP trigger answers 202 and the status trigger finds the same sign-up."""
    response = await submit_signup(
        _request("POST", json.dumps({"email": "a@fabrikam.com", "displayName": "A"}).encode())
    )
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert response.headers["Location"] == f"/api/signups/{body['id']}"
    assert body["statusUrl"] == f"http://localhost:7071/api/signups/{body['id']}"
    status = await get_signup(_request("GET", id=body["id"]))
    assert status.status_code == 200
    assert json.loads(status.get_body())["status"] == "queued"
    assert status.headers["Cache-Control"] == "no-store"


async def test_storage_outage_is_503_with_retry_after(services: Services, app_env: dict[str, str]) -> None:
    """When the queue cannot take the message: 503 problem, Retry-After, and no record left behind."""
    broken = load_settings(
        {
            **app_env,
            "AzureWebJobsStorage": app_env["AzureWebJobsStorage"].replace(
                "QueueEndpoint=http://127.0.0.1:", "QueueEndpoint=http://127.0.0.1:1"
            ),
        }
    )
    queue_client = build_queue_client(broken)
    services.intake._queue = StorageQueue(queue_client)
    created: list[str] = []
    original = services.intake._new_id
    services.intake._new_id = lambda now: created.append(original(now)) or created[-1]
    try:
        response = await submit_signup(_request("POST", b'{"email": "a@fabrikam.com", "displayName": "A"}'))
    finally:
        await queue_client.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Content-Type"] == "application/problem+json"
    assert json.loads(response.get_body())["status"] == 503
    status = await get_signup(_request("GET", id=created[0]))
    assert status.status_code == 404


async def test_misconfiguration_is_a_500_problem_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing setting is the operator's problem: 500 problem+json, logged with every key."""

    def broken() -> Services:
        raise ConfigurationError({"INVITE_REDIRECT_URL": "required but not set"})

    monkeypatch.setattr("shared.edge.handlers.get_services", broken)
    response = await submit_signup(_request("POST", b'{"email": "a@fabrikam.com", "displayName": "A"}'))
    assert response.status_code == 500
    assert json.loads(response.get_body())["type"] == "/problems/internal"
    bad_input = await submit_signup(_request("POST", b"{", "application/json"))
    assert bad_input.status_code == 400  # validation happens before settings are needed


async def test_form_bytes_that_are_not_utf8_are_a_400_problem() -> None:
    """A urlencoded body whose %-escapes are not UTF-8 is answered 400 validation, not 500."""
    response = await submit_signup(_request("POST", b"email=%ff&displayName=A", "application/x-www-form-urlencoded"))
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.get_body())
    assert problem["type"] == "/problems/validation"
    assert problem["errors"] == {"body": ["has percent-encoded bytes that are not valid UTF-8"]}


async def test_malformed_queue_message_is_dropped(caplog: pytest.LogCaptureFixture, services: Services) -> None:
    """A message that is not {"id": ...} is logged and dropped, never retried into poison."""
    with caplog.at_level(logging.ERROR):
        await invite_signup(QueueMessage(id="m1", body=b"not json", dequeue_count=1))
    assert "queue.malformed_message" in caplog.text


def test_importing_the_app_needs_no_settings(repo_root: Path) -> None:
    """Indexing the app (as the host does) reads no settings and builds no clients: it works with an empty env."""
    code = (
        "import function_app, shared.services as s, shared.settings as st\n"
        "function_app.app.get_functions()\n"
        "assert s._services is None\n"
        "assert st.get_settings.cache_info().currsize == 0\n"
        "print('lazy')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo_root,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lazy"


async def test_a_blocked_domain_is_a_403_problem_and_the_refusal_is_recorded(services: Services) -> None:
    """The policy refuses the domain: 403 /problems/forbidden saying nothing of the policy; a denied record."""
    created: list[str] = []
    original = services.intake._new_id
    services.intake._new_id = lambda now: created.append(original(now)) or created[-1]
    response = await submit_signup(_request("POST", b'{"email": "a@blocked.example.com", "displayName": "A"}'))
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    body = json.loads(response.get_body())
    assert (body["type"], body["status"]) == ("/problems/forbidden", 403)
    assert "blocked" not in body["detail"].lower() and "polic" not in body["detail"].lower()
    denied = await services.intake._store.get(created[0])
    assert denied is not None and denied.status.value == "denied" and denied.policy_reason == "blocked"


async def test_a_domain_for_review_is_answered_202_pending_approval(services: Services) -> None:
    """A domain the policy leaves for review: 202 with its real status, pending_approval, not queued."""
    response = await submit_signup(_request("POST", b'{"email": "a@contoso.com", "displayName": "A"}'))
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert body["status"] == "pending_approval"
    status = await get_signup(_request("GET", id=body["id"]))
    assert json.loads(status.get_body())["status"] == "pending_approval"
