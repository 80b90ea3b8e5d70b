"""The local host in process: queue redelivery, renewal, poison and the finaliser; functionTimeout; timers; routes.

The host's own semantics are exercised with the test-only app in ``tests/devhost_app.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from devhost.host import QueueListener, TimerRunner, discover, load_local_settings, resolve, route_pattern, serve
from devhost.processes import free_port
from function_app import app
from graph_emulator.server import Fault, GraphEmulator
from shared.hostconfig import queue_options
from shared.lifecycle.models import Status
from shared.lifecycle.validation import SignupForm
from shared.services import Services
from shared.storage import expand_connection_string
from tests import devhost_app as probe_app

ROOT = Path(__file__).resolve().parent.parent


def _listeners(env: dict[str, str]) -> dict[str, QueueListener]:
    app.functions_bindings = None
    queues = discover(app, env).queues
    # Real host.json options, but redeliver at once so the test does not wait visibilityTimeout.
    options = dataclasses.replace(queue_options(), visibility_timeout=0, max_polling_interval=0.2)
    return {fn.name: QueueListener(fn, options, 300, env) for fn in queues}


async def _run_until(listeners: dict[str, QueueListener], done: Any, within: float = 30) -> None:
    tasks = [asyncio.create_task(listener.run()) for listener in listeners.values()]
    try:
        deadline = asyncio.get_running_loop().time() + within
        while not await done():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for listener in listeners.values():
            await listener.close()


def test_bindings_resolve_from_settings() -> None:
    """%SETTING% references resolve from the environment; routes map to aiohttp paths."""
    assert resolve("%SIGNUP_QUEUE%-poison", {"SIGNUP_QUEUE": "q"}) == "q-poison"
    with pytest.raises(KeyError):
        resolve("%MISSING%", {})
    assert route_pattern("api", "signups/{id:alpha?}") == "/api/signups/{id}"
    assert route_pattern("", "signups") == "/signups"


async def test_graph_outage_is_retried_on_the_workers_schedule_not_the_hosts(
    services: Services, app_env: dict[str, str], emulator: GraphEmulator
) -> None:
    """Graph down for three attempts: each is rescheduled by the worker (nothing raised, nothing poisoned)
    and the sign-up ends invited with one mail."""
    services.worker._timers = dataclasses.replace(
        services.worker._timers, retry_initial=0.2, retry_max=0.5, ambiguous_delay=0.2
    )
    emulator.faults.append(Fault(kind="503", times=3, retry_after=0.5))
    signup = await services.intake.submit(SignupForm("down@fabrikam.com", "D", None, None))
    listeners = _listeners(app_env)

    async def finished() -> bool:
        view = await services.intake.public_status(signup.id)
        return view is not None and view["status"] == "invited"

    await _run_until(listeners, finished)
    posts = [r for r in emulator.requests if r.operation == "invitation"]
    assert len(posts) == 4  # three refused by the outage, one accepted
    poison = QueueClient.from_connection_string(
        expand_connection_string(app_env["AzureWebJobsStorage"]), app_env["SIGNUP_QUEUE"] + "-poison"
    )
    async with poison:
        assert (await poison.get_queue_properties()).approximate_message_count == 0


async def test_a_worker_that_died_on_every_delivery_is_finished_from_the_poison_queue(
    services: Services, app_env: dict[str, str], emulator: GraphEmulator
) -> None:
    """Deliveries that never finish (crashes) exhaust the host's count; the poison finaliser re-enqueues the
    sign-up, which then ends invited: a crash loop never leaves it stuck."""
    signup = await services.intake.submit(SignupForm("crash@fabrikam.com", "C", None, None))
    raw = QueueClient.from_connection_string(
        expand_connection_string(app_env["AzureWebJobsStorage"]), app_env["SIGNUP_QUEUE"]
    )
    async with raw:
        for _ in range(queue_options().max_dequeue_count):  # each receive is a delivery whose worker died
            [message] = [m async for m in raw.receive_messages(max_messages=1, visibility_timeout=30)]
            # Its invisibility runs out at once (rather than after a wait): the host may deliver it again.
            await raw.update_message(message, pop_receipt=message.pop_receipt, visibility_timeout=0)
        assert json.loads(base64.b64decode(message.content)) == {"id": signup.id}
        assert message.dequeue_count == queue_options().max_dequeue_count

    async def finished() -> bool:
        record = await services.intake.public_status(signup.id)
        return record is not None and record["status"] == Status.INVITED.value

    await _run_until(_listeners(app_env), finished)
    assert len([r for r in emulator.requests if r.operation == "invitation"]) == 1


# --- The host's semantics, with the test-only app in tests/devhost_app.py ---------------------------------------


@pytest.fixture
def probe(azurite: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The probe app's settings (its own queue), also in os.environ for serve(); its records cleared."""
    env = {
        "AzureWebJobsStorage": azurite,
        "PROBE_QUEUE": f"probe-{uuid.uuid4().hex[:12]}",
        "PROBE_SCHEDULE": "*/1 * * * * *",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    probe_app.EVENTS.clear()
    probe_app.PLAN.update(timer_sleep={}, timer_fail=())
    yield env
    probe_app.EVENTS.clear()


def _probe_listener(
    env: dict[str, str], visibility_timeout: float = 0, function_timeout: float | None = 30, **kwargs: Any
) -> QueueListener:
    probe_app.app.functions_bindings = None
    [fn] = discover(probe_app.app, env).queues
    options = dataclasses.replace(
        queue_options(), visibility_timeout=visibility_timeout, max_polling_interval=0.2, max_dequeue_count=3
    )
    return QueueListener(fn, options, function_timeout, env, **kwargs)


def _probe_client(env: dict[str, str], suffix: str = "") -> QueueClient:
    return QueueClient.from_connection_string(
        expand_connection_string(env["AzureWebJobsStorage"]), env["PROBE_QUEUE"] + suffix
    )


async def _send(env: dict[str, str], plan: dict[str, Any]) -> None:
    async with _probe_client(env) as client:
        with contextlib.suppress(ResourceExistsError):
            await client.create_queue()
        await client.send_message(base64.b64encode(json.dumps(plan).encode()).decode())


async def _queue_length(env: dict[str, str]) -> int:
    """Messages in the probe queue, visible or not."""
    async with _probe_client(env) as client:
        return int((await client.get_queue_properties()).approximate_message_count)


def _settled(env: dict[str, str], delivery: int) -> Any:
    """Done when that delivery's function ended and the listener deleted the message."""

    async def done() -> bool:
        ended = any(e[2] == delivery for e in probe_app.events("probe_queue", "end"))
        return ended and await _queue_length(env) == 0

    return done


async def test_a_long_invocation_is_not_delivered_again_while_it_runs(probe: dict[str, str]) -> None:
    """A function running past the receive period is delivered once: the host renews the message's invisibility
    while it runs, and deletes it afterwards with the latest pop receipt."""
    await _send(probe, {"sleep": [5]})
    listener = _probe_listener(probe, receive_visibility=2)  # renewed every second
    # Deleted at the end (with the latest renewal's pop receipt), else this times out.
    await _run_until({"probe": listener}, _settled(probe, 1), within=15)
    assert [e[2] for e in probe_app.events("probe_queue", "start")] == [1]


async def test_a_failed_delivery_comes_back_after_visibility_timeout(probe: dict[str, str]) -> None:
    """After a failure the message is visible again after host.json's visibilityTimeout, not before, not later."""
    await _send(probe, {"fail": [1]})
    listener = _probe_listener(probe, visibility_timeout=2)
    await _run_until({"probe": listener}, _settled(probe, 2), within=15)
    [failed] = probe_app.events("probe_queue", "fail")
    second = next(e for e in probe_app.events("probe_queue", "start") if e[2] == 2)
    gap = second[3] - failed[3]
    assert 1.9 <= gap < 3.5, gap


async def test_function_timeout_cancels_a_queue_invocation_and_counts_as_a_failure(probe: dict[str, str]) -> None:
    """A queue invocation running past functionTimeout is cancelled; the message is delivered again."""
    await _send(probe, {"sleep": [30]})
    listener = _probe_listener(probe, function_timeout=1)
    await _run_until({"probe": listener}, _settled(probe, 2), within=15)
    [started] = [e for e in probe_app.events("probe_queue", "start") if e[2] == 1]
    [cancelled] = probe_app.events("probe_queue", "cancelled")
    assert cancelled[2] == 1 and 0.9 <= cancelled[3] - started[3] < 2.5


async def test_function_timeout_fails_a_queue_message_into_poison_on_its_last_delivery(probe: dict[str, str]) -> None:
    """Timing out on every delivery uses up maxDequeueCount, then the message goes to <queue>-poison."""
    await _send(probe, {"sleep": [30, 30, 30]})
    listener = _probe_listener(probe, function_timeout=0.5)
    poison = _probe_client(probe, "-poison")

    async def poisoned() -> bool:
        with contextlib.suppress(ResourceNotFoundError):
            return bool(await poison.peek_messages())
        return False

    async with poison:
        await _run_until({"probe": listener}, poisoned, within=15)
    assert [e[2] for e in probe_app.events("probe_queue", "cancelled")] == [1, 2, 3]


@contextlib.asynccontextmanager
async def _serving(**kwargs: Any) -> AsyncIterator[str]:
    """devhost.host.serve() on the probe app, in process; yields its base URL."""
    probe_app.app.functions_bindings = None
    port = free_port()
    task = asyncio.create_task(serve(ROOT, "127.0.0.1", port, module_name="tests.devhost_app", **kwargs))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            for _ in range(100):
                assert not task.done(), task.exception()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/admin/host/status")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        yield url
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _wait_for(check: Any, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out; events: {probe_app.EVENTS}"
        await asyncio.sleep(0.05)


async def test_function_timeout_turns_a_slow_http_invocation_into_a_500(probe: dict[str, str]) -> None:
    """An HTTP invocation past functionTimeout is cancelled and answered 500; a quick one still gets its 200."""
    async with _serving(function_timeout=1) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        began = asyncio.get_running_loop().time()
        slow = await client.get("/api/probe/sleep/30")
        assert slow.status_code == 500
        assert asyncio.get_running_loop().time() - began < 3
        assert (await client.get("/api/probe/sleep/0")).status_code == 200
    assert [e[2] for e in probe_app.events("probe_http", "cancelled")] == [30.0]


def _overlaps() -> int:
    """The most probe_timer runs ever in progress at once."""
    running = most = 0
    for _, event, _, _ in sorted(probe_app.events("probe_timer"), key=lambda e: e[3]):
        running += 1 if event == "start" else -1
        most = max(most, running)
    return most


async def test_timer_fires_on_its_schedule_one_run_at_a_time(probe: dict[str, str]) -> None:
    """A */1 timer (schedule from %PROBE_SCHEDULE%) whose runs take 1.5 s never overlaps itself, and runs again."""
    probe_app.PLAN["timer_sleep"] = {1: 1.5, 2: 1.5, 3: 1.5}
    async with _serving():
        await _wait_for(lambda: len(probe_app.events("probe_timer", "end")) >= 3, within=10)
    assert _overlaps() == 1
    starts = [e[3] for e in probe_app.events("probe_timer", "start")]
    assert all(1.5 <= later - earlier < 3.5 for earlier, later in itertools.pairwise(starts))
    assert [e[2] for e in probe_app.events("probe_timer", "start")][:3] == [(1, False), (2, False), (3, False)]


async def test_a_timer_run_that_fails_or_times_out_is_logged_and_the_schedule_goes_on(
    probe: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Run 1 raises, run 2 exceeds functionTimeout and is cancelled; run 3 still happens."""
    probe_app.PLAN.update(timer_fail=(1,), timer_sleep={2: 30})
    async with _serving(function_timeout=1):
        await _wait_for(lambda: bool(probe_app.events("probe_timer", "end")), within=10)
    assert [e[2] for e in probe_app.events("probe_timer", "fail")] == [1]
    assert [e[2] for e in probe_app.events("probe_timer", "cancelled")] == [2]
    assert [e[2] for e in probe_app.events("probe_timer", "end")] == [3]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("devhost.timer_failed function=probe_timer") for m in messages)
    assert any(m.startswith("devhost.function_timeout function=probe_timer") for m in messages)


def test_timer_bindings_are_discovered_with_their_options() -> None:
    """timerTrigger bindings: %SETTING% schedules, runOnStartup, useMonitor (default off below a minute), Disabled."""
    fapp = func.FunctionApp()

    @fapp.timer_trigger(arg_name="t", schedule="%SWEEP_SCHEDULE%")
    async def sweep(t: func.TimerRequest) -> None: ...

    @fapp.timer_trigger(arg_name="t", schedule="*/10 * * * * *", run_on_startup=True)
    async def often(t: func.TimerRequest) -> None: ...

    @fapp.timer_trigger(arg_name="t", schedule="0 0 * * * *", use_monitor=False)
    async def hourly(t: func.TimerRequest) -> None: ...

    timers = {t.name: t for t in discover(fapp, {"SWEEP_SCHEDULE": "0 */1 * * * *"}).timers}
    assert timers["sweep"].schedule.expression == "0 */1 * * * *"
    assert (timers["sweep"].run_on_startup, timers["sweep"].use_monitor) == (False, True)
    assert (timers["often"].run_on_startup, timers["often"].use_monitor) == (True, False)
    assert (timers["hourly"].run_on_startup, timers["hourly"].use_monitor) == (False, False)

    fapp.functions_bindings = None
    disabled = discover(fapp, {"SWEEP_SCHEDULE": "0 */1 * * * *", "AzureWebJobs.sweep.Disabled": "true"})
    assert {t.name for t in disabled.timers} == {"often", "hourly"}

    fapp.functions_bindings = None
    with pytest.raises(SystemExit, match=r"sweep has an invalid schedule '\*/5 \* \* \* \*'"):
        discover(fapp, {"SWEEP_SCHEDULE": "*/5 * * * *"})


async def test_run_on_startup_invokes_at_once_with_a_timer_request() -> None:
    """runOnStartup runs the function when the host starts, not at the (far) next occurrence; useMonitor fills
    schedule_status."""
    calls: list[func.TimerRequest] = []
    fapp = func.FunctionApp()

    @fapp.timer_trigger(arg_name="t", schedule="0 0 0 1 1 *", run_on_startup=True, use_monitor=True)
    async def yearly(t: func.TimerRequest) -> None:
        calls.append(t)

    [fn] = discover(fapp, {}).timers
    task = asyncio.create_task(TimerRunner(fn, 5).run())
    try:
        await _wait_for(lambda: bool(calls), within=2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [timer] = calls
    assert isinstance(timer, func.TimerRequest) and timer.past_due is False
    assert set(timer.schedule_status) == {"Last", "Next", "LastUpdated"}
    assert timer.schedule_status["Next"].endswith("-01-01T00:00:00+00:00")


@pytest.mark.parametrize("route", ["admin/things", "Admin", "/admin", "administer", "runtime/webhooks", "RUNTIME"])
def test_routes_reserved_by_the_host_are_refused_at_start_up(route: str) -> None:
    """Like Azure, an HTTP route starting with admin or runtime is refused (even under the api prefix)."""
    fapp = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @fapp.route(route=route)
    async def reserved(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(SystemExit, match="conflicts with one or more built in routes"):
        discover(fapp, {})


def test_a_function_name_used_as_route_is_checked_too_and_admin_elsewhere_is_fine() -> None:
    """A function without a route is served at its name, which is checked; admin later in a route is allowed."""
    fapp = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @fapp.route(route="signups/admin")
    async def fine(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    assert [f.route for f in discover(fapp, {}).http] == ["signups/admin"]

    @fapp.route()
    async def admin_report(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    fapp.functions_bindings = None
    with pytest.raises(SystemExit, match="admin_report has the route 'admin_report'"):
        discover(fapp, {})


def test_local_settings_fill_the_environment_but_never_override_it(tmp_path: Path) -> None:
    """local.settings.json's Values are applied only where the environment has no value; a missing file is fine."""
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"A": "from-file", "B": "from-file", "N": 3}}))
    environ = {"A": "from-env"}
    assert sorted(load_local_settings(path, environ)) == ["B", "N"]
    assert environ == {"A": "from-env", "B": "from-file", "N": "3"}
    assert load_local_settings(tmp_path / "absent.json", environ) == []


@pytest.mark.parametrize("website_auth", ["", "false", "True", "1", "true"])
async def test_client_sent_principal_headers_never_reach_a_function(
    website_auth: str, probe: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripped with or without the Easy Auth stand-in; the host reads WEBSITE_AUTH_ENABLED as the app does."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", website_auth)
    forged = {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(b'{"claims": [{"typ": "roles", "val": "Signup.Approve"}]}').decode(),
        "X-MS-CLIENT-PRINCIPAL-NAME": "mallory",
        "x-ms-client-principal-id": "1",
    }
    async with _serving() as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        seen = (await client.get("/api/probe/headers", headers=forged)).json()
        assert not [name for name in seen if name.startswith("x-ms-client-principal")], seen
        assert "user-agent" in seen  # the other headers do arrive
        stand_in = await client.get("/.auth/login/dev")
    from shared.flags import flag

    assert (stand_in.status_code == 200) == flag(website_auth)


def test_app_settings_override_host_json_as_in_azure() -> None:
    """``AzureFunctionsJobHost__a__b`` sets host.json's ``a.b`` (the tests shorten the queue's polling this way);
    other settings and other host.json values are left alone."""
    from devhost.host import with_overrides

    host_json = {"extensions": {"queues": {"maxPollingInterval": "00:00:02", "batchSize": 32}}}
    environ = {"AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.5", "OTHER": "1"}
    merged = with_overrides(host_json, environ)
    assert merged == {"extensions": {"queues": {"maxPollingInterval": "00:00:00.5", "batchSize": 32}}}
    assert host_json["extensions"]["queues"]["maxPollingInterval"] == "00:00:02"  # the file's own value untouched
