"""The process's long-lived objects, built once on first use and reused by every invocation.

Storage clients, the Graph client and the write pacer are shared by all
concurrent invocations in one worker process (one event loop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from .graph.client import MsGraphDirectory, build_credential, build_graph_client, build_http_client
from .graph.directory import InvitationOptions
from .graph.pacing import WritePacer
from .lifecycle.intake import Intake
from .lifecycle.queue import StorageQueue
from .lifecycle.store import TableSignupStore
from .lifecycle.worker import InvitationWorker
from .settings import GRAPH_CLOUDS, Settings, get_settings
from .storage import build_queue_client, build_storage_credential, build_table_client

log = logging.getLogger(__name__)

MAX_THROTTLE_WAIT: Final = 60.0


@dataclass
class Services:
    """What the triggers call into."""

    settings: Settings
    intake: Intake
    worker: InvitationWorker
    closers: tuple[Any, ...] = ()

    async def aclose(self) -> None:
        """Close every client (tests and the local host call this on shutdown)."""
        for closer in self.closers:
            close = getattr(closer, "aclose", None) or closer.close
            await close()


def lease_seconds(settings: Settings) -> float:
    """How long a claim protects a sign-up: longer than one attempt can take."""
    return 2 * settings.graph_timeout_seconds + MAX_THROTTLE_WAIT + 30.0


def build_services(settings: Settings) -> Services:
    """Wire the real Azure Storage and Microsoft Graph implementations."""
    storage_credential = build_storage_credential(settings)
    table = build_table_client(settings, storage_credential)
    queue = build_queue_client(settings, credential=storage_credential)
    credential = build_credential(settings)
    http = build_http_client(settings)
    pacer = WritePacer(
        settings.graph_write_budget,
        settings.graph_write_window_seconds,
        enabled=settings.graph_pacing_enabled,
    )
    directory = MsGraphDirectory(
        build_graph_client(settings, credential, http),
        pacer,
        max_throttle_wait=MAX_THROTTLE_WAIT,
        max_pacing_wait=settings.graph_pacing_max_wait_seconds,
        # @odata.id names the object by its canonical Graph URL, even when requests go elsewhere.
        directory_object_base=f"{GRAPH_CLOUDS[settings.graph_cloud][0]}/v1.0",
    )
    store = TableSignupStore(table)
    log.info(
        "services.built graph_base_url=%s credential=%s pacing=%s budget=%s/%ss",
        settings.graph_base_url,
        settings.graph_credential,
        settings.graph_pacing_enabled,
        settings.graph_write_budget,
        settings.graph_write_window_seconds,
    )
    return Services(
        settings=settings,
        intake=Intake(store, StorageQueue(queue)),
        worker=InvitationWorker(
            store,
            directory,
            InvitationOptions.from_settings(settings),
            lease_seconds=lease_seconds(settings),
        ),
        closers=tuple(c for c in (table, queue, storage_credential, http, credential) if c is not None),
    )


_services: Services | None = None


def get_services() -> Services:
    """The process's services, built on first use from ``get_settings()``."""
    global _services
    if _services is None:
        _services = build_services(get_settings())
    return _services
