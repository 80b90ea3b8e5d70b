"""Every function's trigger and bindings, checked through app.get_functions() without a host."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from function_app import app
from shared.hostconfig import QueueOptions, queue_options
from shared.storage import QUEUE_MESSAGE_ENCODING


def _bindings() -> dict[str, list[dict[str, object]]]:
    app.functions_bindings = None  # get_functions() refuses a second call on the same app otherwise
    return {f.get_function_name(): f.get_bindings_dict()["bindings"] for f in app.get_functions()}


def _norm(value: object) -> object:
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return getattr(value, "value", value)


def test_exactly_these_functions_are_registered() -> None:
    """The app registers the intake, status, worker, poison and sweeper functions and nothing else."""
    assert set(_bindings()) == {
        "submit_signup",
        "get_signup",
        "invite_signup",
        "finalise_poisoned_signup",
        "sweep_signups",
        "list_signups",
        "get_signup_detail",
        "approve_signup",
        "deny_signup",
        "get_openapi",
        "submit_conversion",
        "signup_page",
        "signup_status_page",
        "manage_page",
        "static_file",
        # The admin overview and bulk decisions (triggers/manage.py).
        "get_stats",
        "submit_decisions",
        # The guest lifecycle (triggers/guests.py).
        "guest_sweep",
        "list_reviews",
        "decide_reviews",
        "list_guests",
        "restore_guest",
    }


def test_sweeper_timer_schedule_comes_from_app_settings() -> None:
    """The sweeper's schedule is %SWEEP_SCHEDULE% (validated by Settings), a singleton timer."""
    [trigger] = _bindings()["sweep_signups"]
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%SWEEP_SCHEDULE%"
    assert trigger.get("runOnStartup") in (False, None)
    assert trigger.get("useMonitor") is True


def test_http_routes() -> None:
    """The HTTP API's routes are the contract: /api/signups and /api/signups/{id}, anonymous."""
    bindings = _bindings()
    for name, route in (("submit_signup", "signups"), ("get_signup", "signups/{id}")):
        trigger = bindings[name][0]
        assert trigger["type"] == "httpTrigger"
        assert trigger["route"] == route
        assert _norm(trigger["authLevel"]) == "anonymous"
        # Every method reaches the function so that a wrong one gets a 405 problem.
        assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= set(_norm(trigger["methods"]))  # type: ignore[arg-type]
        assert bindings[name][1]["type"] == "http"


MANAGE_ROUTES = {
    "list_signups": "manage/signups",
    "get_signup_detail": "manage/signups/{id}",
    "approve_signup": "manage/signups/{id}/approve",
    "deny_signup": "manage/signups/{id}/deny",
    "submit_conversion": "manage/conversions",
    "get_stats": "manage/stats",
    "submit_decisions": "manage/decisions",
    "list_reviews": "manage/reviews",
    "decide_reviews": "manage/reviews/decisions",
    "list_guests": "manage/guests",
    "restore_guest": "manage/guests/{userId}/restore",
}


def test_manage_routes_need_a_function_key() -> None:
    """The admin routes live under manage/ (the host reserves admin/) and need a function key by default."""
    bindings = _bindings()
    for name, route in MANAGE_ROUTES.items():
        trigger = bindings[name][0]
        assert trigger["route"] == route
        assert not route.lower().startswith(("admin", "runtime"))
        assert _norm(trigger["authLevel"]) == "function"


def test_queue_triggers_name_the_queue_through_app_settings() -> None:
    """Queue names come from %SIGNUP_QUEUE%, never from the environment at import."""
    bindings = _bindings()
    worker, poison = bindings["invite_signup"], bindings["finalise_poisoned_signup"]
    assert len(worker) == 1 and len(poison) == 1
    assert worker[0]["type"] == "queueTrigger"
    assert worker[0]["queueName"] == "%SIGNUP_QUEUE%"
    assert poison[0]["queueName"] == "%SIGNUP_QUEUE%-poison"
    assert worker[0]["connection"] == poison[0]["connection"] == "AzureWebJobsStorage"


def test_host_json_matches_what_the_code_assumes(repo_root: Path) -> None:
    """host.json's queue options are the ones the app and the local host are built for: messages in the
    encoding the app enqueues, a 2 s poll, host retries only as a safety net behind the worker's own."""
    host = json.loads((repo_root / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == "api"
    options = queue_options()
    assert options.message_encoding == QUEUE_MESSAGE_ENCODING == "base64"
    assert options == QueueOptions(
        batch_size=32,
        new_batch_threshold=16,
        max_polling_interval=2.0,
        visibility_timeout=10.0,
        max_dequeue_count=5,
        message_encoding="base64",
    )


def test_queue_options_read_the_file_and_fill_the_hosts_defaults(tmp_path: Path) -> None:
    """Values come from the file given, TimeSpans are converted, and absent keys take the host's defaults."""
    path = tmp_path / "host.json"
    path.write_text(
        json.dumps(
            {"extensions": {"queues": {"batchSize": 8, "maxPollingInterval": "00:00:07.5", "messageEncoding": "None"}}}
        )
    )
    assert queue_options(path) == QueueOptions(
        batch_size=8,
        new_batch_threshold=4,  # half the batch, as the host does
        max_polling_interval=7.5,
        visibility_timeout=0.0,
        max_dequeue_count=5,
        message_encoding="none",
    )
    assert QueueOptions.from_host_json({}) == QueueOptions(max_polling_interval=60.0)


def _parse(source: str) -> ast.Module:
    """ast.parse, again after CPython 3.11's spurious "AST constructor recursion depth mismatch" SystemError,
    which another thread building an AST at the same moment can cause (python/cpython#106905; seen once
    under pytest-xdist)."""
    for _ in range(2):
        try:
            return ast.parse(source)
        except SystemError:
            continue
    return ast.parse(source)


def test_trigger_layer_is_the_only_azure_functions_importer(repo_root: Path) -> None:
    """shared/ is the domain: it never imports azure.functions."""
    offenders = []
    for path in (repo_root / "shared").rglob("*.py"):
        for node in ast.walk(_parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "azure.functions" or n.startswith("azure.functions.") for n in names):
                offenders.append(str(path.relative_to(repo_root)))
    assert offenders == []
