"""The Functions Python worker (azure-functions-runtime, Python 3.13+) loads function_app.py.

``worker_probe.py`` runs in a fresh interpreter and sends the worker library the host's start-up
requests; these tests check what the worker then reports: every function loads (the worker's registry
checks each parameter against its binding and refuses the whole app otherwise), and the triggers,
routes and queue names are the app's contract. On Python 3.11 and 3.12 there is no such library (the
host ships the worker), so the module is skipped there; ``make test-313`` runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info < (3, 13):
    pytest.skip("azure-functions-runtime exists for Python 3.13+ only (make test-313)", allow_module_level=True)

# On 3.13 requirements.txt installs the worker library: a missing one is a failure, not a skip.
import azure_functions_runtime  # noqa: F401

# Routes the host keeps for itself (graph/FACTS.md): a function routed under them is refused at start-up.
RESERVED_ROUTE_PREFIXES = ("admin", "runtime")
APP_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def indexed() -> dict[str, dict[str, Any]]:
    """The worker's function metadata for this app, by function name."""
    result = subprocess.run(
        [sys.executable, str(APP_ROOT / "tests" / "worker_probe.py"), str(APP_ROOT)],
        cwd=APP_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"the worker refused the app:\n{result.stderr}"
    return {fn["name"]: fn for fn in json.loads(result.stdout)}


def _trigger(fn: dict[str, Any]) -> dict[str, Any]:
    triggers = [b for b in fn["raw_bindings"] if b["type"].endswith("Trigger")]
    assert len(triggers) == 1, fn["name"]
    return triggers[0]


def test_every_function_is_worker_indexed_from_function_app(
    indexed: dict[str, dict[str, Any]], repo_root: Path
) -> None:
    """Each function comes from function_app.py in the app's root, indexed by the worker itself."""
    assert indexed
    for fn in indexed.values():
        assert fn["script_file"] == "function_app.py"
        assert Path(fn["directory"]) == repo_root
        assert fn["language"] == "python"
        assert fn["properties"].get("worker_indexed") == "True"


def test_http_contract(indexed: dict[str, dict[str, Any]]) -> None:
    """The public sign-up routes, anonymous, with an HTTP response binding."""
    for name, route in (("submit_signup", "signups"), ("get_signup", "signups/{id}")):
        trigger = _trigger(indexed[name])
        assert trigger["type"] == "httpTrigger"
        assert trigger["route"] == route
        assert trigger["authLevel"] == "ANONYMOUS"
        assert {"type": "http", "direction": 1} in indexed[name]["bindings"].values()


def test_queue_contract(indexed: dict[str, dict[str, Any]]) -> None:
    """The worker and the poison consumer read the queue named by %SIGNUP_QUEUE% over AzureWebJobsStorage."""
    worker, poison = _trigger(indexed["invite_signup"]), _trigger(indexed["finalise_poisoned_signup"])
    assert worker["type"] == poison["type"] == "queueTrigger"
    assert worker["queueName"] == "%SIGNUP_QUEUE%"
    assert poison["queueName"] == "%SIGNUP_QUEUE%-poison"
    assert worker["connection"] == poison["connection"] == "AzureWebJobsStorage"


def test_no_route_is_one_the_host_reserves(indexed: dict[str, dict[str, Any]]) -> None:
    """No HTTP function is routed (or, without a route, named) under admin/ or runtime/."""
    for fn in indexed.values():
        trigger = _trigger(fn)
        if trigger["type"] == "httpTrigger":
            route = (trigger.get("route") or fn["name"]).lstrip("/").lower()
            assert not route.startswith(RESERVED_ROUTE_PREFIXES), (fn["name"], route)
