"""Azure Storage plumbing shared by every capability: connection strings, clients, creation on first use.

Table and Queue clients are built here from ``Settings`` (a connection string,
``UseDevelopmentStorage=true`` for Azurite, or an identity-based connection) with
short timeouts and few retries, so a person waiting on a form gets a 503 in
seconds instead of minutes. What is stored lives with its capability
(``lifecycle.store``, ``lifecycle.queue``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from .errors import StorageError
from .settings import Settings

if TYPE_CHECKING:
    # azure-storage-queue brings aiohttp, requests and cryptography with it: imported when a queue client is
    # built (the first invocation), not when the host indexes the functions (docs/benchmarks.md, "Cold start").
    from azure.storage.queue.aio import QueueClient

log = logging.getLogger(__name__)

QUEUE_MESSAGE_ENCODING: Final = "base64"
# Intake answers a person waiting on a form: a few quick retries, then 503 with Retry-After,
# instead of the SDKs' defaults (up to 10 retries, minutes of backoff).
CLIENT_OPTIONS: Final[dict[str, Any]] = {"connection_timeout": 5, "read_timeout": 15}
TABLE_RETRY: Final[dict[str, Any]] = {"retry_total": 3, "retry_backoff_factor": 0.2, "retry_backoff_max": 2}

# The async queue client builds its own (async) ExponentialRetry from these keywords.
QUEUE_RETRY: Final[dict[str, Any]] = {"retry_total": 2, "initial_backoff": 0.2, "increment_base": 1}
# Azurite's well-known development account (public, documented by Microsoft).
DEVELOPMENT_STORAGE: Final = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def is_development_storage(value: str) -> bool:
    """True for the ``UseDevelopmentStorage=true`` shortcut (Azurite on its default ports)."""
    return value.replace(" ", "").lower().startswith("usedevelopmentstorage=true")


def expand_connection_string(value: str) -> str:
    """Resolve the ``UseDevelopmentStorage=true`` shortcut, which the Python SDKs do not read."""
    return DEVELOPMENT_STORAGE if is_development_storage(value) else value


class EnsureOnce:
    """Creates a table or queue the first time it is used in this process.

    It counts as done only when creation succeeded, the resource already existed,
    or storage refused us the right to create it (infrastructure made it and
    granted data access only). A transient failure raises ``StorageError`` and is
    tried again on the next use: carrying on would read a missing table as a
    missing record.
    """

    def __init__(self) -> None:
        self._done = False
        self._lock = asyncio.Lock()

    async def __call__(self, create: Callable[[], Awaitable[Any]], what: str) -> None:
        if self._done:
            return
        async with self._lock:
            if self._done:
                return
            try:
                await create()
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise StorageError(f"could not create the {what}: {type(exc).__name__}") from exc
                log.warning("storage.create_forbidden what=%s", what)
            except AzureError as exc:
                raise StorageError(f"could not create the {what}: {type(exc).__name__}") from exc
            self._done = True


def missing_table(exc: ResourceNotFoundError) -> bool:
    """True when a 404 means the table itself is missing, not the entity."""
    return getattr(exc, "error_code", None) == "TableNotFound" or "TableNotFound" in str(exc)


class Table:
    """A table client with the conditional reads and writes the capabilities share, created on first use.

    ``read`` with ``create=False`` (the guest register's dry-run reads) neither creates the table nor
    counts a missing one as a fault: it reads as empty. Otherwise a missing table is a storage fault,
    never a missing record.
    """

    def __init__(self, client: TableClient) -> None:
        self.client = client
        self._ensure = EnsureOnce()

    async def ready(self) -> None:
        await self._ensure(self.client.create_table, "table")

    async def read(self, partition: str, row: str, *, create: bool = True) -> Any | None:
        """An entity, None when it does not exist."""
        if create:
            await self.ready()
        try:
            return await self.client.get_entity(partition, row)
        except ResourceNotFoundError as exc:
            if create and missing_table(exc):
                raise StorageError(f"table {self.client.table_name} is missing") from exc
            return None
        except AzureError as exc:
            raise StorageError(f"could not read {partition}/{row}: {type(exc).__name__}") from exc

    async def insert(self, entity: dict[str, Any]) -> str | None:
        """Create an entity; its ETag, or None when it exists already."""
        await self.ready()
        try:
            meta = await self.client.create_entity(entity)
        except ResourceExistsError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not create {entity['PartitionKey']}: {type(exc).__name__}") from exc
        return str(meta.get("etag"))

    async def replace(self, entity: dict[str, Any], etag: str) -> str | None:
        """Overwrite an entity if its ETag matches; the new ETag, or None when it changed or vanished."""
        try:
            meta = await self.client.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        except AzureError as exc:
            raise StorageError(f"could not update {entity['PartitionKey']}: {type(exc).__name__}") from exc
        return str(meta.get("etag"))

    async def upsert(self, entity: dict[str, Any]) -> None:
        """Write an entity whatever was there (idempotent index entries)."""
        await self.ready()
        try:
            await self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise StorageError(f"could not write {entity['PartitionKey']}: {type(exc).__name__}") from exc

    async def partition(self, partition: str, limit: int, *, after: str | None = None) -> list[Any]:
        """Up to ``limit`` entities of one partition, in key order (a missing table reads as empty).

        ``after``: only rows whose key sorts after it (keyset paging, unaffected by deletions behind it).
        """
        found: list[Any] = []
        query, parameters = "PartitionKey eq @pk", {"pk": partition}
        if after is not None:
            query, parameters = query + " and RowKey gt @after", {**parameters, "after": after}
        try:
            pages = self.client.query_entities(
                query, parameters=parameters, results_per_page=min(limit, 1000)
            ).by_page()
            async for page in pages:
                async for entity in page:
                    found.append(entity)
                if len(found) >= limit:
                    break
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise StorageError(f"could not read {partition}: {type(exc).__name__}") from exc
        return found[:limit]

    async def delete_many(self, partition: str, rows: list[str]) -> None:
        """Delete entities of one partition, 100 to a transaction; ones already gone are fine."""
        from azure.data.tables import TransactionOperation

        for start in range(0, len(rows), 100):
            chunk = rows[start : start + 100]
            try:
                await self.client.submit_transaction(
                    [(TransactionOperation.DELETE, {"PartitionKey": partition, "RowKey": row}) for row in chunk]
                )
            except AzureError:
                # One entity already gone fails the whole transaction: delete one by one instead.
                for row in chunk:
                    await self.delete(partition, row)

    async def delete(self, partition: str, row: str) -> None:
        """Delete an entity; one already gone is fine."""
        try:
            await self.client.delete_entity(partition, row)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageError(f"could not delete {partition}/{row}: {type(exc).__name__}") from exc


def environment_proxies(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment names anything the SDKs' aiohttp session would use with ``trust_env``: a proxy
    variable (``HTTP_PROXY``, ``HTTPS_PROXY``, ...) or a netrc file (``NETRC``, else ``~/.netrc``).

    With ``trust_env`` aiohttp looks both up again, in a worker thread, on every request: about a fifth of
    the local host's CPU per sign-up (docs/benchmarks.md, "Intake"). When neither exists the lookups can
    only find nothing, so the clients are built without them (``use_env_settings=False``); when either
    exists they are kept, and the SDKs behave as by default. The environment is read once, when the
    clients are built: the Functions host restarts the worker when app settings change.
    """
    names = {"http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy"}
    if any(key.lower() in names and value for key, value in environ.items()):
        return True
    netrc = environ.get("NETRC")
    try:
        path = Path(netrc) if netrc is not None else Path.home() / ".netrc"
    except RuntimeError:  # no home directory: aiohttp finds no netrc either
        return False
    return path.is_file()


def _transport_options() -> dict[str, Any]:
    return {"use_env_settings": environment_proxies()}


def build_storage_credential(settings: Settings) -> Any:
    """The managed-identity credential for identity-based storage, or None with a connection string.

    One credential serves the table and the queue client; its owner closes it.
    """
    if settings.storage_connection_string:
        return None
    from azure.identity.aio import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=settings.storage_client_id)


def _needs(credential: Any) -> Any:
    if credential is None:
        raise ValueError("identity-based storage needs the credential from build_storage_credential()")
    return credential


def build_table_client(settings: Settings, credential: Any = None, table_name: str | None = None) -> TableClient:
    """A Table client (the sign-up table unless named), from a connection string or an identity-based URI."""
    name = table_name or settings.signup_table
    if settings.storage_connection_string:
        return TableClient.from_connection_string(
            expand_connection_string(settings.storage_connection_string),
            name,
            **CLIENT_OPTIONS,
            **TABLE_RETRY,
            **_transport_options(),
        )
    assert settings.storage_table_service_uri is not None  # settings guarantee one of the two
    return TableClient(
        settings.storage_table_service_uri,
        name,
        credential=_needs(credential),
        **CLIENT_OPTIONS,
        **TABLE_RETRY,
        **_transport_options(),
    )


def build_queue_client(settings: Settings, queue_name: str | None = None, credential: Any = None) -> QueueClient:
    """A Queue client whose message encoding matches host.json (base64)."""
    from azure.storage.queue import TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    name = queue_name or settings.signup_queue
    policy = TextBase64EncodePolicy()
    if settings.storage_connection_string:
        return QueueClient.from_connection_string(
            expand_connection_string(settings.storage_connection_string),
            name,
            message_encode_policy=policy,
            **QUEUE_RETRY,
            **CLIENT_OPTIONS,
            **_transport_options(),
        )
    assert settings.storage_queue_service_uri is not None
    return QueueClient(
        settings.storage_queue_service_uri,
        name,
        credential=_needs(credential),
        message_encode_policy=policy,
        **QUEUE_RETRY,
        **CLIENT_OPTIONS,
        **_transport_options(),
    )
