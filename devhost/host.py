"""A small local Functions host for machines without Azure Functions Core Tools.

It runs the app's own ``FunctionApp`` as Core Tools would, from the functions
and bindings the app registers (``app.get_functions()``), not from a list of its
own:

* HTTP triggers are served under ``/<routePrefix>/<route>`` (host.json, default
  ``api``) for the methods each trigger declares. Routes starting with
  ``admin`` or ``runtime`` are refused at start-up, as Azure refuses them.
* Queue triggers poll their queue (``%SETTING%`` names resolved from the
  environment) with host.json's ``batchSize``, ``newBatchThreshold``,
  ``maxPollingInterval``, ``visibilityTimeout``, ``maxDequeueCount`` and
  ``messageEncoding``. As the WebJobs queue listener: a message is received
  invisible for ``RECEIVE_VISIBILITY`` (10 minutes), renewed while its function
  runs; a failure makes it visible again after ``visibilityTimeout``, and the
  failure of its last allowed delivery moves it to ``<queue>-poison``.
* Timer triggers run on their six-field NCRONTAB schedule (UTC), one run at a
  time, with ``runOnStartup`` and ``useMonitor`` (see ``TimerRunner``).
* host.json's ``functionTimeout`` bounds every invocation; one that runs longer
  is cancelled and counts as a failure (HTTP answers 500).
* HTTP functions with ``authLevel`` ``function`` or ``admin`` need the key in
  ``DEVHOST_FUNCTION_KEY`` (``x-functions-key`` or ``?code=``), as Azure needs a
  function key; ``DEVHOST_EASY_AUTH=1`` stands in for App Service Authentication
  (``devhost.auth``). Client-sent ``X-MS-CLIENT-PRINCIPAL*`` headers never reach a
  function, with or without it.
* ``local.settings.json`` values become environment variables; anything already
  in the environment wins. ``AzureWebJobs.<function>.Disabled=true`` disables a
  function, as in Azure.
* ``DEVHOST_GC_LOG=1`` logs each full garbage collection with its pause
  (``devhost.gc``), which stalls every invocation in flight; the intake
  benchmark counts them.

It is the development and test host, not a product: it is left out of
deployments by ``.funcignore``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
import importlib
import inspect
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue.aio import QueueClient

from shared.flags import flag
from shared.hostconfig import QueueOptions, timespan_seconds
from shared.storage import expand_connection_string

from . import ncrontab
from .auth import KEY_LEVELS, EasyAuthStandIn, auth_level_of, key_accepted, strip_principals

log = logging.getLogger("devhost")

# The WebJobs queue listener receives a message invisible for 10 minutes and renews that while the function runs.
RECEIVE_VISIBILITY = 600.0
# host.json's functionTimeout when it is absent (the Consumption plan's default).
DEFAULT_FUNCTION_TIMEOUT = 300.0

_SETTING_REF = re.compile(r"%([^%]+)%")


class FunctionTimeoutError(Exception):
    """An invocation ran longer than functionTimeout and was cancelled."""


def function_timeout_of(host_json: Mapping[str, Any]) -> float | None:
    """host.json's ``functionTimeout`` in seconds; ``None`` for ``-1`` (unbounded)."""
    value = str(host_json.get("functionTimeout", "")).strip()
    if not value:
        return DEFAULT_FUNCTION_TIMEOUT
    if value == "-1":
        return None
    return timespan_seconds(value)


HOST_JSON_OVERRIDE: Final = "AzureFunctionsJobHost__"


def with_overrides(host_json: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """host.json with the app settings that override it, as the Functions host reads them:
    ``AzureFunctionsJobHost__extensions__queues__maxPollingInterval`` sets ``extensions.queues.maxPollingInterval``."""
    merged = json.loads(json.dumps(host_json))
    for key, value in environ.items():
        if key.startswith(HOST_JSON_OVERRIDE):
            *parents, leaf = key[len(HOST_JSON_OVERRIDE) :].split("__")
            node = merged
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return merged


def load_local_settings(path: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Copy ``Values`` from local.settings.json into ``environ`` where not already set."""
    if not path.exists():
        return []
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    applied = []
    for key, value in values.items():
        if key not in environ:
            environ[key] = str(value)
            applied.append(key)
    return applied


def resolve(value: str, environ: Mapping[str, str]) -> str:
    """Replace ``%NAME%`` app-setting references as the Functions host does."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise KeyError(f"binding refers to app setting {name!r}, which is not set")
        return environ[name]

    return _SETTING_REF.sub(lookup, value)


def route_pattern(prefix: str, route: str) -> str:
    """An aiohttp path for a Functions route (``{name:constraint}`` and ``{name?}`` simplified)."""
    route = re.sub(r"\{(\w+)(?::[^}]*)?\??\}", r"{\1}", route.strip("/"))
    return "/" + "/".join(part for part in (prefix.strip("/"), route) if part)


async def invoke(function: Any, function_timeout: float | None = None, **kwargs: Any) -> Any:
    """Call a user function within ``function_timeout`` seconds, raising ``FunctionTimeoutError`` past it.

    Coroutine functions run on the loop and are cancelled then; plain
    functions run in a worker thread, as the Python worker runs them, and are
    abandoned (a thread cannot be cancelled).
    """
    try:
        async with asyncio.timeout(function_timeout) as scope:
            if inspect.iscoroutinefunction(function):
                return await function(**kwargs)
            result = await asyncio.to_thread(partial(function, **kwargs))
            if inspect.isawaitable(result):
                result = await result
            return result
    except TimeoutError as exc:
        if scope.expired():
            raise FunctionTimeoutError(f"exceeded functionTimeout of {function_timeout:g} s") from exc
        raise


@dataclass(frozen=True)
class HttpFunction:
    name: str
    arg: str
    route: str
    methods: tuple[str, ...]
    handler: Any
    auth_level: str = "anonymous"


@dataclass(frozen=True)
class QueueFunction:
    name: str
    arg: str
    queue: str
    connection: str
    handler: Any


@dataclass(frozen=True)
class TimerFunction:
    name: str
    arg: str
    schedule: ncrontab.Schedule
    run_on_startup: bool
    use_monitor: bool
    handler: Any


@dataclass(frozen=True)
class Functions:
    """The app's functions by trigger kind, bindings resolved."""

    http: list[HttpFunction]
    queues: list[QueueFunction]
    timers: list[TimerFunction]


# The host's own routes; it refuses a function whose route starts with one (azure-functions-host#1781).
RESERVED_ROUTE_PREFIXES = ("admin", "runtime")


def _timer(name: str, trigger: Mapping[str, Any], handler: Any, environ: Mapping[str, str]) -> TimerFunction:
    expression = resolve(trigger["schedule"], environ)
    try:
        schedule = ncrontab.parse(expression)
    except ValueError as exc:
        raise SystemExit(f"devhost: function {name} has an invalid schedule {expression!r}: {exc}") from exc
    use_monitor = trigger.get("useMonitor")
    if use_monitor is None:
        # As the WebJobs timer: monitored by default unless it recurs more often than once a minute.
        first = schedule.next_after(datetime(2000, 1, 1))
        use_monitor = (schedule.next_after(first) - first).total_seconds() >= 60
    return TimerFunction(name, trigger["name"], schedule, bool(trigger.get("runOnStartup")), use_monitor, handler)


def discover(app: func.FunctionApp, environ: Mapping[str, str]) -> Functions:
    """The app's HTTP, queue and timer functions with their bindings resolved (disabled ones left out)."""
    found = Functions([], [], [])
    for function in app.get_functions():
        trigger = next(b for b in function.get_bindings_dict()["bindings"] if b["type"].endswith("Trigger"))
        name = str(function.get_function_name())
        if environ.get(f"AzureWebJobs.{name}.Disabled", "").lower() in {"true", "1"}:
            log.info("devhost.disabled function=%s", name)
            continue
        handler = function.get_user_function()
        if trigger["type"] == "httpTrigger":
            route = str(trigger.get("route") or name)
            if route.lstrip("/").lower().startswith(RESERVED_ROUTE_PREFIXES):
                raise SystemExit(
                    f"devhost: function {name} has the route {route!r}, which the Functions host refuses: routes may "
                    f'not start with {" or ".join(RESERVED_ROUTE_PREFIXES)} ("The specified route conflicts with '
                    'one or more built in routes")'
                )
            methods = tuple(str(getattr(m, "value", m)).upper() for m in trigger.get("methods") or ["GET", "POST"])
            found.http.append(HttpFunction(name, trigger["name"], route, methods, handler, auth_level_of(trigger)))
        elif trigger["type"] == "queueTrigger":
            found.queues.append(
                QueueFunction(
                    name,
                    trigger["name"],
                    resolve(trigger["queueName"], environ),
                    trigger.get("connection") or "AzureWebJobsStorage",
                    handler,
                )
            )
        elif trigger["type"] == "timerTrigger":
            found.timers.append(_timer(name, trigger, handler, environ))
        else:
            raise SystemExit(f"devhost: function {name} has a {trigger['type']}, which this host does not run")
    return found


def _http_handler(fn: HttpFunction, timeout: float | None, key: str | None) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        if fn.auth_level in KEY_LEVELS and not key_accepted(request, key):
            # As the Functions host: 401 with no body, before the function runs.
            log.info("devhost.unauthorised function=%s", fn.name)
            return web.Response(status=401)
        body = await request.read()
        headers = dict(request.headers)
        # As Azure's front end: the address it saw is appended to X-Forwarded-For, as ip:port.
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            seen = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
            forwarded = headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{forwarded}, {seen}" if forwarded else seen
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=headers,
            params=dict(request.query),
            route_params=dict(request.match_info),
            body=body,
        )
        try:
            res = await invoke(fn.handler, timeout, **{fn.arg: req})
        except FunctionTimeoutError as exc:
            log.error("devhost.function_timeout function=%s error=%s", fn.name, exc)
            return web.Response(status=500)
        except Exception:
            log.exception("devhost.function_failed function=%s", fn.name)
            return web.Response(status=500)
        if not isinstance(res, func.HttpResponse):
            res = func.HttpResponse(str(res) if res is not None else "")
        headers = dict(res.headers)
        if "content-type" not in {k.lower() for k in headers} and res.mimetype:
            headers["Content-Type"] = f"{res.mimetype}; charset={res.charset}"
        payload = b"" if request.method == "HEAD" else res.get_body()
        return web.Response(status=res.status_code, body=payload, headers=headers)

    return handle


class _Renewal:
    """Keeps a received message invisible while its function runs, as the WebJobs host does.

    Every half ``period`` it pushes the message's visibility ``period`` ahead;
    each update returns a new pop receipt, and the latest is what deletes or
    releases the message afterwards.
    """

    def __init__(self, client: QueueClient, message: Any, period: float, queue: str) -> None:
        self.client = client
        self.message_id: str = message.id
        self.pop_receipt: str = message.pop_receipt
        self.period = period
        self.queue = queue
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.period / 2)
            if self._stop.is_set():
                return
            try:
                updated = await self.client.update_message(
                    self.message_id, self.pop_receipt, visibility_timeout=math.ceil(self.period)
                )
            except Exception as exc:  # noqa: BLE001 - a lost renewal means a possible redelivery, not a crash
                log.warning(
                    "devhost.renew_failed queue=%s id=%s error=%s: %s",
                    self.queue,
                    self.message_id,
                    type(exc).__name__,
                    exc,
                )
                return
            self.pop_receipt = updated.pop_receipt or self.pop_receipt
            log.debug("devhost.renewed queue=%s id=%s", self.queue, self.message_id)

    async def stop(self) -> str:
        """Stop renewing (letting an update in flight land) and return the latest pop receipt."""
        self._stop.set()
        await self._task
        return self.pop_receipt

    def cancel(self) -> None:
        self._task.cancel()


class QueueListener:
    """Polls one queue and runs its function the way the WebJobs queue listener does.

    A message is received invisible for ``receive_visibility`` seconds (10
    minutes, as the WebJobs host) and kept invisible while its function runs.
    A failed invocation (an exception, or running past ``function_timeout``)
    makes the message visible again after host.json's ``visibilityTimeout``;
    the last allowed delivery's failure moves it to ``<queue>-poison``.
    """

    def __init__(
        self,
        fn: QueueFunction,
        options: QueueOptions,
        function_timeout: float | None,
        environ: Mapping[str, str],
        receive_visibility: float = RECEIVE_VISIBILITY,
    ) -> None:
        connection = environ.get(fn.connection)
        if not connection:
            raise SystemExit(f"devhost: {fn.name} needs the connection setting {fn.connection!r}")
        self.fn = fn
        self.options = options
        self.function_timeout = function_timeout
        self.receive_visibility = receive_visibility
        self.connection = expand_connection_string(connection)
        self.client = QueueClient.from_connection_string(self.connection, fn.queue)
        self.poison = QueueClient.from_connection_string(self.connection, f"{fn.queue}-poison")
        self.inflight: set[asyncio.Task[None]] = set()

    async def _ensure(self, client: QueueClient) -> None:
        with contextlib.suppress(ResourceExistsError):
            await client.create_queue()

    def _decode(self, content: str) -> bytes:
        if self.options.message_encoding == "base64":
            return base64.b64decode(content, validate=True)
        return content.encode("utf-8")

    async def run(self) -> None:
        """Poll until cancelled."""
        await self._ensure(self.client)
        idle = 0.1
        while True:
            while len(self.inflight) > self.options.new_batch_threshold:
                await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
            try:
                batch = [
                    m
                    async for m in self.client.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=math.ceil(self.receive_visibility),
                    )
                ]
            except Exception:
                log.exception("devhost.poll_failed queue=%s", self.fn.queue)
                batch = []
            if not batch:
                await asyncio.sleep(idle)
                idle = min(idle * 2, self.options.max_polling_interval)
                continue
            idle = 0.1
            for message in batch:
                task = asyncio.create_task(self._process(message))
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)

    async def _process(self, message: Any) -> None:
        if message.dequeue_count > self.options.max_dequeue_count:
            await self._settle(message, message.pop_receipt, self._to_poison)
            return
        try:
            body = self._decode(message.content)
        except (binascii.Error, ValueError):
            log.error("devhost.undecodable_message queue=%s id=%s", self.fn.queue, message.id)
            await self._settle(message, message.pop_receipt, self._to_poison)
            return
        msg = QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        renewal = _Renewal(self.client, message, self.receive_visibility, self.fn.queue)
        try:
            try:
                await invoke(self.fn.handler, self.function_timeout, **{self.fn.arg: msg})
            except Exception as exc:  # noqa: BLE001 - any function failure means: redeliver or poison
                failure: Exception | None = exc
            else:
                failure = None
            receipt = await renewal.stop()
        finally:
            renewal.cancel()
        if failure is None:
            await self._settle(message, receipt, self._delete)
            return
        log.warning(
            "devhost.invocation_failed function=%s dequeue_count=%s error=%s: %s",
            self.fn.name,
            message.dequeue_count,
            type(failure).__name__,
            failure,
        )
        if message.dequeue_count >= self.options.max_dequeue_count:
            await self._settle(message, receipt, self._to_poison)
        else:
            await self._settle(message, receipt, self._release)

    async def _settle(self, message: Any, receipt: str, action: Any) -> None:
        try:
            await action(message, receipt)
        except Exception as exc:  # noqa: BLE001 - the message comes back when its invisibility ends
            log.warning(
                "devhost.settle_failed queue=%s id=%s action=%s error=%s: %s",
                self.fn.queue,
                message.id,
                action.__name__.strip("_"),
                type(exc).__name__,
                exc,
            )

    async def _delete(self, message: Any, receipt: str) -> None:
        await self.client.delete_message(message.id, receipt)

    async def _release(self, message: Any, receipt: str) -> None:
        await self.client.update_message(
            message.id, receipt, visibility_timeout=math.ceil(self.options.visibility_timeout)
        )

    async def _to_poison(self, message: Any, receipt: str) -> None:
        await self._ensure(self.poison)
        await self.poison.send_message(message.content)
        await self.client.delete_message(message.id, receipt)
        log.warning("devhost.poisoned queue=%s id=%s", self.fn.queue, message.id)

    async def close(self) -> None:
        """Cancel invocations in flight and close the clients."""
        for task in list(self.inflight):
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)
        await self.client.close()
        await self.poison.close()


class TimerRunner:
    """Runs one timer function on its schedule, never two invocations at once.

    Times are UTC. The next occurrence is computed when a run ends, so
    occurrences that pass during a long run are skipped, as the Functions host
    does. A failed run is logged and the schedule goes on. ``use_monitor`` fills
    ``schedule_status``; the status lives in memory only, so runs missed while
    the local host was down are not reported (``past_due`` is always false).
    """

    def __init__(self, fn: TimerFunction, function_timeout: float | None) -> None:
        self.fn = fn
        self.function_timeout = function_timeout
        self.last: datetime | None = None

    async def run(self) -> None:
        """Run on schedule until cancelled."""
        due = datetime.now(UTC)
        if self.fn.run_on_startup:
            await self._invoke(due)
        while True:
            # Never before the occurrence just run: a sleep may end a little early by the wall clock.
            due = self.fn.schedule.next_after(max(datetime.now(UTC), due))
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await self._invoke(due)

    async def _invoke(self, due: datetime) -> None:
        status: dict[str, str] = {}
        if self.fn.use_monitor:
            now = datetime.now(UTC)
            status = {
                "Last": (self.last or datetime.min.replace(tzinfo=UTC)).isoformat(),
                "Next": self.fn.schedule.next_after(max(now, due)).isoformat(),
                "LastUpdated": now.isoformat(),
            }
        timer = TimerRequest(past_due=False, schedule_status=status, schedule={"AdjustForDST": True})
        log.info("devhost.timer_fired function=%s due=%s", self.fn.name, due.isoformat())
        try:
            await invoke(self.fn.handler, self.function_timeout, **{self.fn.arg: timer})
        except FunctionTimeoutError as exc:
            log.error("devhost.function_timeout function=%s error=%s", self.fn.name, exc)
        except Exception:
            log.exception("devhost.timer_failed function=%s", self.fn.name)
        self.last = due


def watch_collections() -> Callable[[str, dict[str, int]], None]:
    """Log every full (generation 2) garbage collection with how long it stopped the process
    (``DEVHOST_GC_LOG=1``; the intake benchmark counts them): such a pause stalls every invocation in flight.
    Returns the callback (``gc.callbacks.remove`` stops it)."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            pause = 1000 * (time.perf_counter() - started[0])
            log.warning("devhost.gc generation=2 pause_ms=%.1f collected=%s", pause, info.get("collected"))

    gc.callbacks.append(callback)
    return callback


def load_app(module_name: str) -> func.FunctionApp:
    """Import the app module and return its ``FunctionApp``."""
    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if isinstance(value, func.FunctionApp):
            return value
    raise SystemExit(f"devhost: {module_name} defines no FunctionApp")


async def serve(
    app_dir: Path,
    host: str,
    port: int,
    module_name: str = "function_app",
    *,
    function_timeout: float | None = None,
    receive_visibility: float = RECEIVE_VISIBILITY,
) -> None:
    """Run the app until cancelled.

    ``function_timeout`` overrides host.json's ``functionTimeout`` and ``receive_visibility``
    the queue listeners' receive period (both in seconds; for tests).
    """
    host_json = with_overrides(json.loads((app_dir / "host.json").read_text(encoding="utf-8")), os.environ)
    options = QueueOptions.from_host_json(host_json)
    prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    limit = function_timeout if function_timeout is not None else function_timeout_of(host_json)

    app = load_app(module_name)
    functions = discover(app, os.environ)
    try:
        if flag(os.environ.get("DEVHOST_GC_LOG")):
            watch_collections()
    except ValueError as exc:
        raise SystemExit(f"devhost: DEVHOST_GC_LOG: {exc}") from None

    key = os.environ.get("DEVHOST_FUNCTION_KEY") or None
    if key is None and any(fn.auth_level in KEY_LEVELS for fn in functions.http):
        log.warning("devhost.no_function_key functions with authLevel function refuse every call")
    try:
        # The app's own parser: "True" or "1" must not mean Easy Auth to the app and not to this host.
        easy_auth = EasyAuthStandIn() if flag(os.environ.get("WEBSITE_AUTH_ENABLED")) else None
    except ValueError as exc:
        raise SystemExit(f"devhost: WEBSITE_AUTH_ENABLED: {exc}") from None
    web_app = web.Application(
        client_max_size=100 * 1024 * 1024, middlewares=[easy_auth.middleware if easy_auth else strip_principals]
    )
    if easy_auth is not None:
        web_app.router.add_routes(easy_auth.routes())
        log.warning("devhost.easy_auth_stand_in sign-in at /.auth/login/dev (development only)")
    for fn in functions.http:
        path = route_pattern(prefix, fn.route)
        for method in fn.methods:
            web_app.router.add_route(method, path, _http_handler(fn, limit, key), name=None)
        log.info(
            "devhost.http function=%s methods=%s auth=%s url=http://%s:%s%s",
            fn.name,
            ",".join(fn.methods),
            fn.auth_level,
            host,
            port,
            path,
        )

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"state": "Running"})

    web_app.router.add_get("/admin/host/status", status)

    listeners = [QueueListener(fn, options, limit, os.environ, receive_visibility) for fn in functions.queues]
    for listener in listeners:
        log.info("devhost.queue function=%s queue=%s", listener.fn.name, listener.fn.queue)
    timers = [TimerRunner(fn, limit) for fn in functions.timers]
    for timer in timers:
        log.info(
            "devhost.timer function=%s schedule=%r run_on_startup=%s use_monitor=%s",
            timer.fn.name,
            timer.fn.schedule.expression,
            timer.fn.run_on_startup,
            timer.fn.use_monitor,
        )

    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    tasks = [asyncio.create_task(listener.run()) for listener in listeners]
    tasks += [asyncio.create_task(timer.run()) for timer in timers]
    # SIGTERM (how the test fixtures, benchmarks and `make run` stop a host) shuts down like Ctrl-C.
    serving = asyncio.current_task()
    if serving is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, serving.cancel)
    log.info("devhost.ready url=http://%s:%s", host, port)
    try:
        await asyncio.gather(asyncio.Event().wait(), *tasks)  # serve until cancelled
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for listener in listeners:
            await listener.close()
        await runner.cleanup()
        if serving is not None:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        await close_app_services()


async def close_app_services() -> None:
    """Close the app's long-lived clients, when it built them, on the loop they were built on.

    They log what they did on the way out (for example the shared budget's storage calls).
    """
    module = sys.modules.get("shared.services")
    services = getattr(module, "_services", None)
    if services is None:
        return
    try:
        await services.aclose()
    except Exception:
        log.exception("devhost.close_failed")
