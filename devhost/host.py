"""A small local Functions host for machines without Azure Functions Core Tools.

It runs the app's own ``FunctionApp`` as Core Tools would, from the functions
and bindings the app registers (``app.get_functions()``), not from a list of its
own:

* HTTP triggers are served under ``/<routePrefix>/<route>`` (host.json, default
  ``api``) for the methods each trigger declares.
* Queue triggers poll their queue (``%SETTING%`` names resolved from the
  environment) with host.json's ``batchSize``, ``newBatchThreshold``,
  ``maxPollingInterval``, ``visibilityTimeout``, ``maxDequeueCount`` and
  ``messageEncoding``; a message whose last delivery fails goes to
  ``<queue>-poison``, as the WebJobs SDK does.
* ``local.settings.json`` values become environment variables; anything already
  in the environment wins. ``AzureWebJobs.<function>.Disabled=true`` disables a
  function, as in Azure.

It is the development and test host, not a product: it is left out of
deployments by ``.funcignore``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import importlib
import inspect
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from shared.hostconfig import QueueOptions, timespan_seconds
from shared.storage import expand_connection_string

log = logging.getLogger("devhost")

_SETTING_REF = re.compile(r"%([^%]+)%")


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


async def invoke(function: Any, **kwargs: Any) -> Any:
    """Call a user function, awaiting it when it is a coroutine function."""
    result = function(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


@dataclass(frozen=True)
class HttpFunction:
    name: str
    arg: str
    route: str
    methods: tuple[str, ...]
    handler: Any


@dataclass(frozen=True)
class QueueFunction:
    name: str
    arg: str
    queue: str
    connection: str
    handler: Any


def discover(app: func.FunctionApp, environ: Mapping[str, str]) -> tuple[list[HttpFunction], list[QueueFunction]]:
    """The app's HTTP and queue functions with their bindings resolved."""
    http: list[HttpFunction] = []
    queues: list[QueueFunction] = []
    for function in app.get_functions():
        trigger = next(b for b in function.get_bindings_dict()["bindings"] if b["type"].endswith("Trigger"))
        name = function.get_function_name()
        if environ.get(f"AzureWebJobs.{name}.Disabled", "").lower() in {"true", "1"}:
            log.info("devhost.disabled function=%s", name)
            continue
        handler = function.get_user_function()
        if trigger["type"] == "httpTrigger":
            methods = tuple(str(getattr(m, "value", m)).upper() for m in trigger.get("methods") or ["GET", "POST"])
            http.append(HttpFunction(name, trigger["name"], trigger.get("route") or name, methods, handler))
        elif trigger["type"] == "queueTrigger":
            queues.append(
                QueueFunction(
                    name,
                    trigger["name"],
                    resolve(trigger["queueName"], environ),
                    trigger.get("connection") or "AzureWebJobsStorage",
                    handler,
                )
            )
        else:
            raise SystemExit(f"devhost: function {name} has a {trigger['type']}, which this host does not run")
    return http, queues


def _http_handler(fn: HttpFunction) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=dict(request.match_info),
            body=body,
        )
        try:
            res = await invoke(fn.handler, **{fn.arg: req})
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


class QueueListener:
    """Polls one queue and runs its function the way the WebJobs queue listener does."""

    def __init__(self, fn: QueueFunction, options: QueueOptions, function_timeout: float, environ: Mapping[str, str]):
        connection = environ.get(fn.connection)
        if not connection:
            raise SystemExit(f"devhost: {fn.name} needs the connection setting {fn.connection!r}")
        self.fn = fn
        self.options = options
        self.connection = expand_connection_string(connection)
        self.client = QueueClient.from_connection_string(self.connection, fn.queue)
        self.poison = QueueClient.from_connection_string(self.connection, f"{fn.queue}-poison")
        # Held invisible for as long as an invocation may run (functionTimeout), then some.
        self.processing_visibility = int(function_timeout) + 30
        self.inflight: set[asyncio.Task[None]] = set()

    async def _ensure(self, client: QueueClient) -> None:
        with contextlib.suppress(ResourceExistsError):
            await client.create_queue()

    def _decode(self, content: str) -> bytes:
        if self.options.message_encoding == "base64":
            return base64.b64decode(content, validate=True)
        return content.encode("utf-8")

    async def run(self) -> None:
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
                        visibility_timeout=self.processing_visibility,
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
            await self._to_poison(message)
            return
        try:
            body = self._decode(message.content)
        except (binascii.Error, ValueError):
            log.error("devhost.undecodable_message queue=%s id=%s", self.fn.queue, message.id)
            await self._to_poison(message)
            return
        msg = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            await invoke(self.fn.handler, **{self.fn.arg: msg})
        except Exception as exc:  # noqa: BLE001 - any function failure means: redeliver or poison
            log.warning(
                "devhost.invocation_failed function=%s dequeue_count=%s error=%s: %s",
                self.fn.name,
                message.dequeue_count,
                type(exc).__name__,
                exc,
            )
            if message.dequeue_count >= self.options.max_dequeue_count:
                await self._to_poison(message)
            else:
                await self.client.update_message(message, visibility_timeout=int(self.options.visibility_timeout))
            return
        await self.client.delete_message(message)

    async def _to_poison(self, message: Any) -> None:
        await self._ensure(self.poison)
        await self.poison.send_message(message.content)
        await self.client.delete_message(message)
        log.warning("devhost.poisoned queue=%s id=%s", self.fn.queue, message.id)

    async def close(self) -> None:
        for task in list(self.inflight):
            task.cancel()
        await self.client.close()
        await self.poison.close()


def load_app(module_name: str) -> func.FunctionApp:
    """Import the app module and return its ``FunctionApp``."""
    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if isinstance(value, func.FunctionApp):
            return value
    raise SystemExit(f"devhost: {module_name} defines no FunctionApp")


async def serve(app_dir: Path, host: str, port: int, module_name: str = "function_app") -> None:
    """Run the app until cancelled."""
    host_json = json.loads((app_dir / "host.json").read_text(encoding="utf-8"))
    options = QueueOptions.from_host_json(host_json)
    prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    function_timeout = timespan_seconds(host_json.get("functionTimeout", "00:05:00"))

    app = load_app(module_name)
    http_functions, queue_functions = discover(app, os.environ)

    web_app = web.Application(client_max_size=100 * 1024 * 1024)
    for fn in http_functions:
        path = route_pattern(prefix, fn.route)
        for method in fn.methods:
            web_app.router.add_route(method, path, _http_handler(fn), name=None)
        log.info(
            "devhost.http function=%s methods=%s url=http://%s:%s%s", fn.name, ",".join(fn.methods), host, port, path
        )

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"state": "Running"})

    web_app.router.add_get("/admin/host/status", status)

    listeners = [QueueListener(fn, options, function_timeout, os.environ) for fn in queue_functions]
    for listener in listeners:
        log.info("devhost.queue function=%s queue=%s", listener.fn.name, listener.fn.queue)

    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    tasks = [asyncio.create_task(listener.run()) for listener in listeners]
    log.info("devhost.ready url=http://%s:%s", host, port)
    try:
        await asyncio.gather(asyncio.Event().wait(), *tasks)  # serve until cancelled
    finally:
        for task in tasks:
            task.cancel()
        for listener in listeners:
            await listener.close()
        await runner.cleanup()
