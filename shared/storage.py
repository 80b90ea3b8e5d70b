"""Sign-up storage: the ``SignupStore`` and ``SignupQueue`` protocols and their Azure implementations.

The Table entity of a sign-up has ``PartitionKey`` = sign-up id and
``RowKey`` = ``"signup"``, so every sign-up is its own partition and intake
scales out. Writes after creation are ETag-conditional (``replace``); a lost
race raises ``ConcurrencyConflict``.

The queue message is ``{"id": "<sign-up id>"}``, encoded as host.json's
``messageEncoding`` says (``QUEUE_MESSAGE_ENCODING``; a test checks they agree).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from .errors import ConcurrencyConflict, StorageError
from .models import Signup, Status
from .settings import Settings

log = logging.getLogger(__name__)

QUEUE_MESSAGE_ENCODING: Final = "base64"
ROW_KEY: Final = "signup"
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


class SignupStore(Protocol):
    """Durable sign-up records."""

    async def create(self, signup: Signup) -> Signup:
        """Insert a new record; return it with its ETag."""
        ...

    async def get(self, signup_id: str) -> Signup | None:
        """The record, or None when there is none."""
        ...

    async def replace(self, signup: Signup) -> Signup:
        """Overwrite the record if its ETag still matches ``signup.etag``."""
        ...

    async def delete(self, signup_id: str) -> None:
        """Remove the record (no error when it is already gone)."""
        ...


class SignupQueue(Protocol):
    """The work queue the invitation worker consumes."""

    async def enqueue(self, signup_id: str) -> None:
        """Put a message for ``signup_id`` on the queue."""
        ...


def is_development_storage(value: str) -> bool:
    """True for the ``UseDevelopmentStorage=true`` shortcut (Azurite on its default ports)."""
    return value.replace(" ", "").lower().startswith("usedevelopmentstorage=true")


def expand_connection_string(value: str) -> str:
    """Resolve the ``UseDevelopmentStorage=true`` shortcut, which the Python SDKs do not read."""
    return DEVELOPMENT_STORAGE if is_development_storage(value) else value


def encode_message(signup_id: str) -> str:
    """The queue message text for a sign-up (before the queue's transport encoding)."""
    return json.dumps({"id": signup_id}, separators=(",", ":"))


def decode_message(text: str) -> str:
    """The sign-up id in a queue message; ``ValueError`` when it is not one of ours."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ValueError('queue message is not {"id": "..."}')
    return str(data["id"])


def to_entity(signup: Signup) -> dict[str, Any]:
    """The Table entity for a record (None fields are left out)."""
    entity: dict[str, Any] = {
        "PartitionKey": signup.id,
        "RowKey": ROW_KEY,
        "email": signup.email,
        "displayName": signup.display_name,
        "company": signup.company,
        "justification": signup.justification,
        "status": signup.status.value,
        "createdAt": signup.created_at,
        "updatedAt": signup.updated_at,
        "attempts": signup.attempts,
        "leaseUntil": signup.lease_until,
        "errorCode": signup.error_code,
        "errorMessage": signup.error_message,
        "errorDetail": signup.error_detail,
        "graphRequestId": signup.graph_request_id,
        "invitationId": signup.invitation_id,
        "invitedUserId": signup.invited_user_id,
        "invitationStatus": signup.invitation_status,
        "redeemUrl": signup.redeem_url,
    }
    return {key: value for key, value in entity.items() if value is not None}


def from_entity(entity: Mapping[str, Any], etag: str | None) -> Signup:
    """The record a Table entity holds."""

    def moment(key: str) -> datetime | None:
        value = entity.get(key)
        return value if isinstance(value, datetime) else None

    created = moment("createdAt")
    updated = moment("updatedAt")
    if created is None or updated is None:
        raise StorageError(f"entity {entity.get('PartitionKey')} lacks its timestamps")
    return Signup(
        id=str(entity["PartitionKey"]),
        email=str(entity["email"]),
        display_name=str(entity["displayName"]),
        company=entity.get("company"),
        justification=entity.get("justification"),
        status=Status(entity["status"]),
        created_at=created,
        updated_at=updated,
        attempts=int(entity.get("attempts", 0)),
        lease_until=moment("leaseUntil"),
        error_code=entity.get("errorCode"),
        error_message=entity.get("errorMessage"),
        error_detail=entity.get("errorDetail"),
        graph_request_id=entity.get("graphRequestId"),
        invitation_id=entity.get("invitationId"),
        invited_user_id=entity.get("invitedUserId"),
        invitation_status=entity.get("invitationStatus"),
        redeem_url=entity.get("redeemUrl"),
        etag=etag,
    )


class _EnsureOnce:
    """Creates a table or queue the first time it is used in this process."""

    def __init__(self) -> None:
        self._done = False
        self._lock = asyncio.Lock()

    async def __call__(self, create: Any, what: str) -> None:
        if self._done:
            return
        async with self._lock:
            if self._done:
                return
            try:
                await create()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                # Infrastructure may have created it and withheld the right to create; carry on.
                log.warning("storage.ensure_failed what=%s error=%s", what, type(exc).__name__)
            self._done = True


class TableSignupStore:
    """``SignupStore`` on Azure Table storage (or Azurite)."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._ensure = _EnsureOnce()

    async def _ready(self) -> None:
        await self._ensure(self._client.create_table, "table")

    async def create(self, signup: Signup) -> Signup:
        await self._ready()
        try:
            meta = await self._client.create_entity(to_entity(signup))
        except ResourceExistsError as exc:
            raise ConcurrencyConflict(f"sign-up {signup.id} already exists") from exc
        except AzureError as exc:
            raise StorageError(f"could not create sign-up {signup.id}: {type(exc).__name__}") from exc
        return dataclasses.replace(signup, etag=meta.get("etag"))

    async def get(self, signup_id: str) -> Signup | None:
        await self._ready()
        try:
            entity = await self._client.get_entity(signup_id, ROW_KEY)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read sign-up {signup_id}: {type(exc).__name__}") from exc
        return from_entity(entity, entity.metadata.get("etag"))

    async def replace(self, signup: Signup) -> Signup:
        if signup.etag is None:
            raise ValueError("replace needs the ETag the record was read with")
        try:
            meta = await self._client.update_entity(
                to_entity(signup),
                mode=UpdateMode.REPLACE,
                etag=signup.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrencyConflict(f"sign-up {signup.id} changed underneath") from exc
        except AzureError as exc:
            raise StorageError(f"could not update sign-up {signup.id}: {type(exc).__name__}") from exc
        return dataclasses.replace(signup, etag=meta.get("etag"))

    async def delete(self, signup_id: str) -> None:
        try:
            await self._client.delete_entity(signup_id, ROW_KEY)
        except AzureError as exc:
            raise StorageError(f"could not delete sign-up {signup_id}: {type(exc).__name__}") from exc


class StorageQueue:
    """``SignupQueue`` on an Azure Storage queue (or Azurite)."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._ensure = _EnsureOnce()

    async def enqueue(self, signup_id: str) -> None:
        await self._ensure(self._client.create_queue, "queue")
        try:
            await self._client.send_message(encode_message(signup_id))
        except AzureError as exc:
            raise StorageError(f"could not enqueue sign-up {signup_id}: {type(exc).__name__}") from exc


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


def build_table_client(settings: Settings, credential: Any = None) -> TableClient:
    """A Table client for the sign-up table, from a connection string or an identity-based URI."""
    if settings.storage_connection_string:
        return TableClient.from_connection_string(
            expand_connection_string(settings.storage_connection_string),
            settings.signup_table,
            **CLIENT_OPTIONS,
            **TABLE_RETRY,
        )
    assert settings.storage_table_service_uri is not None  # settings guarantee one of the two
    return TableClient(
        settings.storage_table_service_uri,
        settings.signup_table,
        credential=_needs(credential),
        **CLIENT_OPTIONS,
        **TABLE_RETRY,
    )


def build_queue_client(settings: Settings, queue_name: str | None = None, credential: Any = None) -> QueueClient:
    """A Queue client whose message encoding matches host.json (base64)."""
    name = queue_name or settings.signup_queue
    policy = TextBase64EncodePolicy()
    if settings.storage_connection_string:
        return QueueClient.from_connection_string(
            expand_connection_string(settings.storage_connection_string),
            name,
            message_encode_policy=policy,
            **QUEUE_RETRY,
            **CLIENT_OPTIONS,
        )
    assert settings.storage_queue_service_uri is not None
    return QueueClient(
        settings.storage_queue_service_uri,
        name,
        credential=_needs(credential),
        message_encode_policy=policy,
        **QUEUE_RETRY,
        **CLIENT_OPTIONS,
    )
