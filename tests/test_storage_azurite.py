"""Table and queue storage against a real Azurite."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from shared.errors import ConcurrencyConflict, StorageError
from shared.lifecycle.intake import Intake, Timers
from shared.lifecycle.models import Status
from shared.lifecycle.queue import StorageQueue
from shared.lifecycle.store import DueEntry, TableAddressBook, TableDueIndex, TableSignupStore, address_key, bucket_of
from shared.lifecycle.validation import SignupForm
from shared.policy import FixedPolicy
from shared.settings import Settings, load_settings
from shared.storage import build_queue_client, build_table_client, expand_connection_string
from tests.lifecycle_kit import APPROVE_ALL

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


@pytest.fixture
async def table(settings: Settings):  # type: ignore[no-untyped-def]
    client = build_table_client(settings)
    yield client
    await client.close()


def _intake(table: TableClient, store: TableSignupStore, queue: StorageQueue, **kwargs: Any) -> Intake:
    kwargs.setdefault("policy", FixedPolicy(APPROVE_ALL))
    return Intake(store, queue, Timers(), **kwargs)


async def test_record_round_trip_and_etag_conflict(
    table: TableClient, store: TableSignupStore, queue: StorageQueue
) -> None:
    """A record reads back as written; a write with a stale ETag is refused."""
    created = await _intake(table, store, queue).submit(FORM)
    loaded = await store.get(created.id)
    assert loaded is not None and loaded.etag
    assert (loaded.email, loaded.display_name, loaded.justification, loaded.status) == (
        "sam@fabrikam.com",
        "Sam Guest",
        "Project Falcon",
        Status.RECEIVED,
    )
    assert loaded.created_at == created.created_at.replace(microsecond=created.created_at.microsecond)

    admitted = await store.replace(loaded.evolve(status=Status.QUEUED))
    updated = await store.replace(admitted.evolve(status=Status.INVITING, attempts=1))
    assert updated.etag != loaded.etag
    with pytest.raises(ConcurrencyConflict):
        await store.replace(loaded.evolve(status=Status.FAILED))
    final = await store.get(created.id)
    assert final is not None and final.status is Status.INVITING


async def test_create_twice_is_a_conflict(table: TableClient, store: TableSignupStore, queue: StorageQueue) -> None:
    """Creating a record that exists never overwrites it."""
    created = await _intake(table, store, queue).submit(FORM)
    with pytest.raises(ConcurrencyConflict):
        await store.create(dataclasses.replace(created, etag=None))


async def test_message_is_base64_json_with_only_the_id(
    settings: Settings, table: TableClient, store: TableSignupStore, queue: StorageQueue
) -> None:
    """The queued message is {"id": ...} in base64, as host.json's messageEncoding says; no PII."""
    created = await _intake(table, store, queue).submit(FORM)
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
    settings: Settings, app_env: dict[str, str], table: TableClient, store: TableSignupStore
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
    intake = _intake(table, store, StorageQueue(bad_client), new_id=lambda now: ids.append("B" * 22) or ids[-1])
    try:
        with pytest.raises(StorageError):
            await intake.submit(FORM)
    finally:
        await bad_client.close()
    assert await store.get(ids[0]) is None


async def test_table_entity_holds_what_the_worker_writes(
    settings: Settings, table: TableClient, store: TableSignupStore, queue: StorageQueue
) -> None:
    """Invitation fields land in the entity under stable column names."""
    created = await _intake(table, store, queue).submit(FORM)
    loaded = await store.get(created.id)
    assert loaded is not None
    queued = await store.replace(loaded.evolve(status=Status.QUEUED))
    await store.replace(
        queued.evolve(
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


async def test_address_claim_is_a_conditional_insert_and_an_etag_take_over(table: TableClient) -> None:
    """Of two inserts for one address one wins; a take-over with a stale ETag loses."""
    book = TableAddressBook(table)
    key = address_key("Sam@Fabrikam.com")
    assert key == address_key("sam@fabrikam.com") and "sam" not in key
    results = await asyncio.gather(book.insert(key, "A" * 22), book.insert(key, "B" * 22))
    assert sorted(results) == [False, True]
    claim = await book.get(key)
    assert claim is not None and claim.etag
    assert await book.take_over(claim, "C" * 22) is True
    assert await book.take_over(claim, "D" * 22) is False  # stale ETag
    fresh = await book.get(key)
    assert fresh is not None and fresh.signup_id == "C" * 22


async def test_due_index_pages_removes_in_batches_and_guards_its_cursor(table: TableClient) -> None:
    """Entries of one minute read back in bounded pages; batch removal tolerates gone entries; the cursor
    moves only from the ETag it was read with."""
    index = TableDueIndex(table)
    minute = bucket_of(datetime(2026, 11, 22, 9, 30, tzinfo=UTC))
    ids = [f"{n:022d}" for n in range(130)]
    await asyncio.gather(*(index.add(DueEntry(minute, sid, 1)) for sid in ids))
    first = await index.page(minute, 50)
    assert len(first) == 50 and all(e.nudges == 1 for e in first)
    everything = await index.page(minute, 500)
    assert sorted(e.signup_id for e in everything) == ids
    await index._delete_one(everything[0])  # one already gone makes its batch fall back to single deletes
    await index.remove(everything)
    assert await index.page(minute, 500) == []
    assert await index.cursor() == (None, None)
    etag = await index.advance(minute, None)
    assert etag is not None
    assert await index.advance(minute, None) is None  # someone else created it first
    assert await index.advance("202611220931", etag) is not None
    assert await index.advance("202611220932", etag) is None  # stale
    assert (await index.cursor())[0] == "202611220931"


async def test_missing_table_is_a_storage_fault_not_a_missing_record(
    table: TableClient, store: TableSignupStore
) -> None:
    """A table deleted under a running app makes reads fail loudly instead of dropping the message."""
    assert await store.get("A" * 22) is None  # creates the table on first use
    await table.delete_table()
    with pytest.raises(StorageError, match="missing"):
        await store.get("A" * 22)


async def test_table_creation_is_tried_again_after_a_transient_failure(app_env: dict[str, str]) -> None:
    """Creation that failed (storage unreachable) is not remembered as done: the next use creates the table."""
    unreachable = load_settings(
        {
            **app_env,
            "AzureWebJobsStorage": app_env["AzureWebJobsStorage"].replace(
                "TableEndpoint=http://127.0.0.1:", "TableEndpoint=http://127.0.0.1:1"
            ),
        }
    )
    bad = build_table_client(unreachable)
    good = build_table_client(load_settings(app_env))
    store = TableSignupStore(bad)
    try:
        with pytest.raises(StorageError):
            await store.get("A" * 22)
        store._table.client = good  # storage is back
        assert await store.get("A" * 22) is None
    finally:
        await bad.close()
        await good.close()


async def test_delayed_message_stays_invisible_until_due(settings: Settings, queue: StorageQueue) -> None:
    """A message sent with a delay is not delivered before it (the worker's own retry schedule)."""
    await queue.enqueue("A" * 22, delay=2.2)
    raw = QueueClient.from_connection_string(
        expand_connection_string(settings.storage_connection_string or ""), settings.signup_queue
    )
    async with raw:
        assert [m async for m in raw.receive_messages(max_messages=1)] == []
        await asyncio.sleep(3.2)
        [message] = [m async for m in raw.receive_messages(max_messages=1)]
    assert json.loads(base64.b64decode(message.content)) == {"id": "A" * 22}
