"""Sign-up records in Azure Table storage, behind the ``SignupStore`` protocol.

The entity of a sign-up has ``PartitionKey`` = sign-up id and ``RowKey`` =
``"signup"``, so every sign-up is its own partition and intake scales out.
Writes after creation are ETag-conditional (``replace``); a lost race raises
``ConcurrencyConflict``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..errors import ConcurrencyConflict, StorageError
from ..storage import EnsureOnce
from .models import Signup, Status

ROW_KEY: Final = "signup"


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


class TableSignupStore:
    """``SignupStore`` on Azure Table storage (or Azurite)."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self._ensure = EnsureOnce()

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
