"""The work queue: messages ``{"id": "<sign-up id>"}`` that wake the invitation worker.

Messages are base64-encoded, as host.json's ``messageEncoding`` says
(``QUEUE_MESSAGE_ENCODING``; a test checks they agree). A message may be sent
with a visibility delay: that is how the worker schedules its own retries.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Final, Protocol

from azure.core.exceptions import AzureError

from ..errors import StorageError
from ..storage import EnsureOnce

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient  # a type only: the SDK loads when a client is built

MAX_VISIBILITY_DELAY: Final = 7 * 24 * 3600


class SignupQueue(Protocol):
    """The work queue the invitation worker consumes."""

    async def enqueue(self, signup_id: str, delay: float = 0.0) -> None:
        """Put a message for ``signup_id`` on the queue, invisible for ``delay`` seconds."""
        ...


def encode_message(signup_id: str) -> str:
    """The queue message text for a sign-up (before the queue's transport encoding)."""
    return json.dumps({"id": signup_id}, separators=(",", ":"))


def decode_message(text: str) -> str:
    """The sign-up id in a queue message; ``ValueError`` when it is not one of ours."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ValueError('queue message is not {"id": "..."}')
    return str(data["id"])


class StorageQueue:
    """``SignupQueue`` on an Azure Storage queue (or Azurite)."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._ensure = EnsureOnce()

    async def enqueue(self, signup_id: str, delay: float = 0.0) -> None:
        await self._ensure(self._client.create_queue, "queue")
        # Whole seconds, rounded up (never early), within the service's 7-day limit.
        hidden = min(MAX_VISIBILITY_DELAY, math.ceil(delay)) if delay > 0 else None
        try:
            await self._client.send_message(encode_message(signup_id), visibility_timeout=hidden)
        except AzureError as exc:
            raise StorageError(f"could not enqueue sign-up {signup_id}: {type(exc).__name__}") from exc
