"""A FunctionApp for the local host's own tests: one function per trigger kind, each recording its calls.

Served by ``devhost`` in process (``module_name="tests.devhost_app"``); the
tests read ``EVENTS`` and steer the functions through ``PLAN`` and the queue
message bodies.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

# (function, event, detail, time.monotonic())
EVENTS: list[tuple[str, str, object, float]] = []
# The timer's behaviour: seconds a run takes by run number (1-based; others take none), and the runs that raise.
PLAN: dict[str, Any] = {"timer_sleep": {}, "timer_fail": ()}


def record(function: str, event: str, detail: object = None) -> None:
    EVENTS.append((function, event, detail, time.monotonic()))


def events(function: str, event: str | None = None) -> list[tuple[str, str, object, float]]:
    """The recorded events of ``function`` (of one kind when ``event`` is given)."""
    return [e for e in EVENTS if e[0] == function and (event is None or e[1] == event)]


@app.queue_trigger(arg_name="msg", queue_name="%PROBE_QUEUE%", connection="AzureWebJobsStorage")
async def probe_queue(msg: func.QueueMessage) -> None:
    """Body ``{"sleep": [s1, s2, ...], "fail": [n, ...]}``: delivery n sleeps s_n, and raises when n is listed."""
    plan = json.loads(msg.get_body())
    delivery = msg.dequeue_count or 0
    record("probe_queue", "start", delivery)
    sleeps = plan.get("sleep", [])
    try:
        await asyncio.sleep(sleeps[delivery - 1] if delivery <= len(sleeps) else 0)
    except asyncio.CancelledError:
        record("probe_queue", "cancelled", delivery)
        raise
    if delivery in plan.get("fail", []):
        record("probe_queue", "fail", delivery)
        raise RuntimeError(f"planned failure on delivery {delivery}")
    record("probe_queue", "end", delivery)


@app.timer_trigger(arg_name="timer", schedule="%PROBE_SCHEDULE%", use_monitor=False)
async def probe_timer(timer: func.TimerRequest) -> None:
    """Run n sleeps ``PLAN["timer_sleep"][n]`` seconds, and raises when n is in ``PLAN["timer_fail"]``."""
    run = len(events("probe_timer", "start")) + 1
    record("probe_timer", "start", (run, timer.past_due))
    try:
        await asyncio.sleep(PLAN["timer_sleep"].get(run, 0))
    except asyncio.CancelledError:
        record("probe_timer", "cancelled", run)
        raise
    if run in PLAN["timer_fail"]:
        record("probe_timer", "fail", run)
        raise RuntimeError(f"planned failure on run {run}")
    record("probe_timer", "end", run)


@app.route(route="probe/sleep/{seconds}", methods=["GET"])
async def probe_http(req: func.HttpRequest) -> func.HttpResponse:
    """Answers 200 after sleeping ``seconds``."""
    seconds = float(req.route_params["seconds"])
    record("probe_http", "start", seconds)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record("probe_http", "cancelled", seconds)
        raise
    return func.HttpResponse("slept")


@app.route(route="probe/headers", methods=["GET"])
async def probe_headers(req: func.HttpRequest) -> func.HttpResponse:
    """Answers with the names of the headers the function received (lower case)."""
    return func.HttpResponse(json.dumps(sorted(k.lower() for k in req.headers)), mimetype="application/json")
