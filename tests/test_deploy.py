"""Deploying: the azd hooks (national clouds, the Graph grant's replication race), the smoke test, and the
GitHub workflow that must deploy with the operator's azd environment rather than the template's defaults."""

from __future__ import annotations

import http.server
import json
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import azd_hooks  # noqa: E402
import smoke_test  # noqa: E402

REPLICATION_ERROR = (
    "ERROR: {'code': 'BadRequest', 'message': 'Not a valid reference update. Graph client request id: 1234'}"
)


class FakeCli:
    """Stands in for the Azure CLI: answers each command with the next scripted result, and records it."""

    def __init__(self, *answers: azd_hooks.Result, cloud: str = "AzureCloud") -> None:
        self.answers = list(answers)
        self.cloud = cloud
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> azd_hooks.Result:
        if list(command[:3]) == ["az", "cloud", "show"]:
            return azd_hooks.Result(0, self.cloud + "\n")
        self.commands.append(list(command))
        return self.answers.pop(0)


ENV = {
    "AZURE_RESOURCE_GROUP": "rg-signup-prod",
    "MANAGED_IDENTITY_PRINCIPAL_ID": "11111111-2222-3333-4444-555555555555",
    "GRAPH_GRANT_ENABLED": "true",
}


def test_the_grant_is_retried_while_the_identity_replicates() -> None:
    cli = FakeCli(
        azd_hooks.Result(1, REPLICATION_ERROR), azd_hooks.Result(1, REPLICATION_ERROR), azd_hooks.Result(0, "")
    )
    pauses: list[float] = []
    message = azd_hooks.postprovision(ENV, cli, pauses.append)
    assert message.startswith("Graph app roles granted: User.Invite.All, User.Read.All, Domain.Read.All")
    assert len(cli.commands) == 3 and pauses == [10, 20]
    command = cli.commands[0]
    assert command[:4] == ["az", "deployment", "group", "create"]
    assert str(azd_hooks.GRAPH_TEMPLATE) in command and "rg-signup-prod" in command
    assert f"identityPrincipalId={ENV['MANAGED_IDENTITY_PRINCIPAL_ID']}" in command
    assert "grantMailSend=false" in command


def test_the_optional_grants_follow_the_environment() -> None:
    cli = FakeCli(azd_hooks.Result(0, ""))
    env = {**ENV, "GRAPH_GRANT_MAIL_SEND": "true", "GRAPH_GRANT_USER_READWRITE": "true"}
    assert "Mail.Send" in azd_hooks.postprovision(env, cli, lambda _: None)
    assert "grantMailSend=true" in cli.commands[0] and "grantUserReadWrite=true" in cli.commands[0]
    assert "grantGroupMemberReadWrite=false" in cli.commands[0]


def test_replication_that_outlasts_the_retries_says_what_to_run_next() -> None:
    cli = FakeCli(*[azd_hooks.Result(1, REPLICATION_ERROR)] * (len(azd_hooks.RETRY_PAUSES) + 1))
    pauses: list[float] = []
    with pytest.raises(azd_hooks.HookError, match=r"azd hooks run postprovision && azd deploy"):
        azd_hooks.postprovision(ENV, cli, pauses.append)
    assert 240 <= sum(pauses) <= 360  # about five minutes of patience, not forever


def test_a_refused_grant_stops_at_once_with_the_manual_steps() -> None:
    denied = azd_hooks.Result(
        1, "ERROR: Authorization_RequestDenied: Insufficient privileges to complete the operation."
    )
    cli = FakeCli(denied)
    with pytest.raises(azd_hooks.HookError) as raised:
        azd_hooks.postprovision(ENV, cli, lambda _: pytest.fail("a refusal is not retried"))
    assert "GRANT_GRAPH_PERMISSIONS false" in str(raised.value)
    assert "appRoleAssignedTo" in str(raised.value) and ENV["MANAGED_IDENTITY_PRINCIPAL_ID"] in str(raised.value)
    assert len(cli.commands) == 1


def test_no_grant_when_turned_off_or_in_ci() -> None:
    cli = FakeCli()
    assert "not granted" in azd_hooks.postprovision({**ENV, "GRAPH_GRANT_ENABLED": "false"}, cli)
    assert "skipped" in azd_hooks.postprovision({**ENV, "SKIP_GRAPH_GRANT": "true"}, cli)
    assert cli.commands == []


@pytest.mark.parametrize(
    ("env", "cloud"),
    [
        ({"GRAPH_CLOUD": "usgov"}, "AzureCloud"),
        ({}, "AzureChinaCloud"),
        ({"GRANT_GRAPH_PERMISSIONS": "true"}, "AzureUSGovernment"),
    ],
)
def test_graph_grants_are_refused_off_the_public_cloud(env: dict[str, str], cloud: str) -> None:
    with pytest.raises(azd_hooks.HookError) as raised:
        azd_hooks.preprovision(env, FakeCli(cloud=cloud))
    text = str(raised.value)
    assert "azd env set GRANT_GRAPH_PERMISSIONS false" in text and "az rest --method POST" in text
    host = azd_hooks.GRAPH_HOSTS[env.get("GRAPH_CLOUD", "global")]
    assert f"https://{host}/v1.0/servicePrincipals" in text


def test_the_public_cloud_or_no_grant_passes_the_preprovision_check() -> None:
    azd_hooks.preprovision({}, FakeCli())
    azd_hooks.preprovision(
        {"GRAPH_CLOUD": "china", "GRANT_GRAPH_PERMISSIONS": "false"}, FakeCli(cloud="AzureChinaCloud")
    )


def test_manual_steps_name_the_documented_role_ids() -> None:
    roles = azd_hooks.graph_roles()
    assert roles["User.Invite.All"] == "09850681-111b-4a89-9bed-3f2cae46d706"
    steps = azd_hooks.manual_steps({"GRANT_GROUP_MEMBER_READWRITE": "true"})
    for name in ("User.Invite.All", "User.Read.All", "Domain.Read.All", "GroupMember.ReadWrite.All"):
        assert roles[name] in steps
    assert roles["Mail.Send"] not in steps


def test_azure_yaml_runs_the_hooks() -> None:
    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    for hook in ("preprovision", "postprovision"):
        for shell in ("posix", "windows"):
            assert config["hooks"][hook][shell]["run"].endswith(f"scripts/azd_hooks.py {hook}")


# --- the smoke test ------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, list[tuple[int, str, str]]]] = {}

    def do_GET(self) -> None:
        queue = self.answers.get(self.path) or [(404, "text/plain", "no such function")]
        status, content_type, body = queue.pop(0) if len(queue) > 1 else queue[0]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[tuple[str, dict[str, list[tuple[int, str, str]]]]]:
    answers: dict[str, list[tuple[int, str, str]]] = {}
    handler = type("Handler", (_Handler,), {"answers": answers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()


OPENAPI = (200, "application/json", json.dumps({"openapi": "3.1.0", "paths": {"/signups": {}}}))
PAGE = (200, "text/html; charset=utf-8", "<!doctype html><form method=post></form>")


def test_smoke_test_waits_out_a_cold_start(site: tuple[str, dict[str, list[tuple[int, str, str]]]]) -> None:
    url, answers = site
    answers["/api/openapi.json"] = [(503, "text/plain", "starting"), (404, "text/plain", ""), OPENAPI]
    answers["/api/signup"] = [PAGE]
    assert smoke_test.smoke_test(url, timeout=5, interval=0.01) == []


def test_smoke_test_refuses_a_host_with_no_functions(site: tuple[str, dict[str, list[tuple[int, str, str]]]]) -> None:
    url, _ = site  # every path answers 404, as a host that indexed no function does
    failures = smoke_test.smoke_test(url, timeout=0.05, interval=0.01)
    assert failures == ["GET /api/openapi.json: status 404", "GET /api/signup: status 404"]


def test_smoke_test_wants_the_real_answers(site: tuple[str, dict[str, list[tuple[int, str, str]]]]) -> None:
    url, answers = site
    answers["/api/openapi.json"] = [(200, "application/json", "{}")]
    answers["/api/signup"] = [(200, "text/html", "<p>maintenance</p>")]
    failures = smoke_test.smoke_test(url, timeout=0.05, interval=0.01)
    assert failures == ["GET /api/openapi.json: no OpenAPI", "GET /api/signup: no form in the page"]


# --- the workflow --------------------------------------------------------------------------------------


def _parameter_variables() -> set[str]:
    text = (ROOT / "infra" / "main.parameters.json").read_text()
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


def test_the_workflow_deploys_the_operators_environment() -> None:
    """Every parameter the template reads from the azd environment reaches CI: the job loads the environment
    from azd's remote state before provisioning, refuses to run without it, and sets no template parameter
    itself (a GitHub variable that is unset would arrive empty and reset the app)."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    job = workflow["jobs"]["deploy"]
    overridden = set(job["env"]) & _parameter_variables()
    assert overridden <= {"AZURE_ENV_NAME"}, f"the workflow sets template parameters itself: {overridden}"
    assert job["env"]["SKIP_GRAPH_GRANT"] == "true"
    script = "\n".join(step.get("run", "") for step in job["steps"])
    order = [
        "azd config set state.remote.backend AzureBlobStorage",
        "azd config set state.remote.config.accountName",
        'azd env select "$AZURE_ENV_NAME"',
        "azd provision",
        "azd deploy",
        "scripts/smoke_test.py",
    ]
    positions = [script.find(line) for line in order]
    assert -1 not in positions and positions == sorted(positions), dict(zip(order, positions, strict=True))
    assert "azd env new" not in script and "azd env set" not in script
    # The variables no parameter default covers must be in the environment CI loads: it checks for one.
    required = {
        name
        for name, entry in json.loads((ROOT / "infra" / "main.parameters.json").read_text())["parameters"].items()
        if re.fullmatch(r"\$\{[A-Z_]+\}", entry["value"])
    }
    assert required == {"environmentName", "location", "inviteRedirectUrl"}
    assert "azd env get-value INVITE_REDIRECT_URL" in script
