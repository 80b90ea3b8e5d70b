"""Table and queue storage against a real Azurite."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from shared.errors import ConcurrencyConflict, StorageError
from shared.lifecycle.intake import Intake
from shared.lifecycle.models import Status
from shared.lifecycle.queue import StorageQueue
from shared.lifecycle.store import TableSignupStore
from shared.lifecycle.validation import SignupForm
from shared.settings import Settings, load_settings
from shared.storage import build_queue_client, build_table_client, expand_connection_string

FORM = SignupForm("sam@fabrikam.com", "Sam Guest", None, "Project Falcon")


@pytest.fixture
async def store(settings: Settings):  # type: ignore[no-untyped-def]
    client = build_table_client(settings)
    yield TableSignupStore(client)
    await client.close()


@pytest.fixture
async def queue(settings: Settings):  # type: ignore[no-untyped-def]
    client = build_queue_client(settings)
    yield StorageQueue(client)
    await client.close()


async def test_record_round_trip_and_etag_conflict(store: TableSignupStore, queue: StorageQueue) -> None:
    """A record reads back as written; a write with a stale ETag is refused."""
    created = await Intake(store, queue).submit(FORM)
    loaded = await store.get(created.id)
    assert loaded is not None and loaded.etag
    assert (loaded.email, loaded.display_name, loaded.justification, loaded.status) == (
        "sam@fabrikam.com",
        "Sam Guest",
        "Project Falcon",
        Status.QUEUED,
    )
    assert loaded.created_at == created.created_at.replace(microsecond=created.created_at.microsecond)

    updated = await store.replace(loaded.evolve(status=Status.INVITING, attempts=1))
    assert updated.etag != loaded.etag
    with pytest.raises(ConcurrencyConflict):
        await store.replace(loaded.evolve(status=Status.FAILED))
    final = await store.get(created.id)
    assert final is not None and final.status is Status.INVITING


async def test_create_twice_is_a_conflict(store: TableSignupStore, queue: StorageQueue) -> None:
    """Creating a record that exists never overwrites it."""
    created = await Intake(store, queue).submit(FORM)
    with pytest.raises(ConcurrencyConflict):
        await store.create(dataclasses.replace(created, etag=None))


async def test_message_is_base64_json_with_only_the_id(
    settings: Settings, store: TableSignupStore, queue: StorageQueue
) -> None:
    """The queued message is {"id": ...} in base64, as host.json's messageEncoding says; no PII."""
    created = await Intake(store, queue).submit(FORM)
    raw = QueueClient.from_connection_string(
        expand_connection_string(settings.storage_connection_string or ""), settings.signup_queue
    )
    async with raw:
        messages = [m async for m in raw.receive_messages(max_messages=5)]
    assert len(messages) == 1
    assert json.loads(base64.b64decode(messages[0].content)) == {"id": created.id}


async def test_unknown_id_reads_as_none(store: TableSignupStore) -> None:
    """A well-formed id nobody created is simply not there."""
    assert await store.get("A" * 22) is None


async def test_enqueue_failure_rolls_back_the_record(
    settings: Settings, app_env: dict[str, str], store: TableSignupStore
) -> None:
    """If the queue is unreachable the record is deleted again and StorageError raised (503 upstream)."""
    broken = load_settings(
        {
            **app_env,
            "AzureWebJobsStorage": app_env["AzureWebJobsStorage"].replace(
                "QueueEndpoint=http://127.0.0.1:", "QueueEndpoint=http://127.0.0.1:1"
            ),
        }
    )
    bad_client = build_queue_client(broken)
    ids: list[str] = []
    intake = Intake(store, StorageQueue(bad_client), new_id=lambda: ids.append("B" * 22) or ids[-1])
    try:
        with pytest.raises(StorageError):
            await intake.submit(FORM)
    finally:
        await bad_client.close()
    assert await store.get(ids[0]) is None


async def test_table_entity_holds_what_the_worker_writes(
    settings: Settings, store: TableSignupStore, queue: StorageQueue
) -> None:
    """Invitation fields land in the entity under stable column names."""
    created = await Intake(store, queue).submit(FORM)
    loaded = await store.get(created.id)
    assert loaded is not None
    await store.replace(
        loaded.evolve(
            status=Status.INVITED,
            invitation_id="i",
            invited_user_id="u",
            invitation_status="PendingAcceptance",
            redeem_url="https://r",
        )
    )
    client = TableClient.from_connection_string(
        expand_connection_string(settings.storage_connection_string or ""), settings.signup_table
    )
    async with client:
        entity = await client.get_entity(created.id, "signup")
    assert {k: entity[k] for k in ("status", "invitationId", "invitedUserId", "invitationStatus", "redeemUrl")} == {
        "status": "invited",
        "invitationId": "i",
        "invitedUserId": "u",
        "invitationStatus": "PendingAcceptance",
        "redeemUrl": "https://r",
    }


async def test_identity_based_storage_shares_one_credential() -> None:
    """With service URIs, one managed-identity credential serves both clients; a connection string needs none."""
    from shared.storage import build_storage_credential

    uris = load_settings(
        {
            "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
            "AzureWebJobsStorage__clientId": "6d1b7d5e-3c5f-4c5b-9a7a-0f0e1d2c3b4a",
        }
    )
    credential = build_storage_credential(uris)
    assert type(credential).__name__ == "ManagedIdentityCredential"
    table, queue = build_table_client(uris, credential), build_queue_client(uris, credential=credential)
    assert table.url.startswith("https://acct.table.core.windows.net")
    assert queue.url.startswith("https://acct.queue.core.windows.net")
    with pytest.raises(ValueError, match="build_storage_credential"):
        build_table_client(uris)
    for closer in (table, queue, credential):
        await closer.close()
    assert (
        build_storage_credential(
            load_settings(
                {
                    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                    "INVITE_REDIRECT_URL": "https://x.example",
                }
            )
        )
        is None
    )
