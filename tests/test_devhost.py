"""The local host's queue listener, in process: redelivery, poison and the poison finaliser."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient

from devhost.host import QueueListener, discover, resolve, route_pattern
from function_app import app
from graph_emulator.server import Fault, GraphEmulator
from shared.hostconfig import queue_options
from shared.lifecycle.models import Status
from shared.lifecycle.validation import SignupForm
from shared.services import Services
from shared.storage import expand_connection_string


def _listeners(env: dict[str, str]) -> dict[str, QueueListener]:
    app.functions_bindings = None
    _, queues = discover(app, env)
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
    services.worker._timers = dataclasses.replace(services.worker._timers, retry_initial=0.2, retry_max=0.5)
    emulator.faults.append(Fault(kind="503", times=3))
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
            [message] = [m async for m in raw.receive_messages(max_messages=1, visibility_timeout=1)]
            await asyncio.sleep(1.1)
        assert json.loads(base64.b64decode(message.content)) == {"id": signup.id}

    async def finished() -> bool:
        record = await services.intake.public_status(signup.id)
        return record is not None and record["status"] == Status.INVITED.value

    await _run_until(_listeners(app_env), finished)
    assert len([r for r in emulator.requests if r.operation == "invitation"]) == 1
