"""Reading the policy document named by ``SIGNUP_POLICY``, once per process.

The setting is a file path (relative paths from the app's folder, the one
holding ``function_app.py``) or an ``https://`` Blob URL, read with the same
managed-identity credential the app uses for its storage. Unset: ``NO_POLICY``,
under which every sign-up waits for review.

The document is read on first use and kept for the life of the process (a
changed document takes effect on restart). A document that is missing or
invalid raises ``ConfigurationError`` (intake answers 500: nothing is invited
by mistake); a Blob that storage could not serve just now raises
``StorageError`` (intake answers 503) and is read again on the next use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from ..errors import ConfigurationError, StorageError
from ..settings import LOOPBACK_HOSTS
from .document import NO_POLICY, Policy, parse_policy

log = logging.getLogger(__name__)

SETTING: Final = "SIGNUP_POLICY"
APP_DIR: Final = Path(__file__).resolve().parents[2]
MAX_DOCUMENT_BYTES: Final = 1024 * 1024


class PolicySource(Protocol):
    """Where intake and the worker get the policy from."""

    async def current(self) -> Policy:
        """The policy in force."""
        ...


class FixedPolicy:
    """A policy given as a value (tests, and the no-policy case)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    async def current(self) -> Policy:
        """The policy given."""
        return self._policy


async def read_policy_document(source: str, credential: Any = None) -> bytes:
    """The raw document at ``source`` (a path or an https Blob URL); ``ConfigurationError`` if it is not there."""
    if "://" in source:
        parts = urlsplit(source)
        # Plain http only for a local storage emulator (Azurite), as for every other URL setting.
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
            return await _read_blob(source, credential)
        raise ConfigurationError({SETTING: "must be a file path or an https:// Blob URL"})
    path = Path(source)
    path = path if path.is_absolute() else APP_DIR / path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError({SETTING: f"cannot read {path} ({exc.strerror or type(exc).__name__})"}) from None
    return data


async def _read_blob(url: str, credential: Any) -> bytes:
    from azure.storage.blob.aio import BlobClient

    try:
        async with BlobClient.from_blob_url(url, credential=credential) as blob:
            downloader = await blob.download_blob()
            return await downloader.readall()
    except ResourceNotFoundError:
        raise ConfigurationError({SETTING: f"there is no blob at {url}; upload the policy document"}) from None
    except ClientAuthenticationError as exc:
        raise StorageError(f"could not get a token to read the policy: {type(exc).__name__}") from exc
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise ConfigurationError({SETTING: f"the app's identity may not read {url} (403)"}) from None
        raise StorageError(f"could not read the policy: HTTP {exc.status_code}") from exc
    except AzureError as exc:
        raise StorageError(f"could not read the policy: {type(exc).__name__}") from exc


def decode_policy(data: bytes) -> Policy:
    """Parse and validate a document's bytes."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ConfigurationError({SETTING: f"the document is larger than {MAX_DOCUMENT_BYTES} bytes"})
    try:
        decoded = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError({SETTING: f"the document is not valid JSON ({exc})"}) from None
    return parse_policy(decoded)


async def load_policy(source: str | None, credential: Any = None) -> Policy:
    """The policy at ``source``, or ``NO_POLICY`` (review everything) when it is None."""
    if source is None:
        return NO_POLICY
    return decode_policy(await read_policy_document(source, credential))


class CachedPolicy:
    """Reads the policy on first use and keeps it; a failed read is tried again on the next use."""

    def __init__(self, source: str | None, credential: Any = None) -> None:
        self._source = source
        self._credential = credential
        self._policy: Policy | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> Policy:
        """The policy in force (read once)."""
        if self._policy is not None:
            return self._policy
        async with self._lock:
            if self._policy is None:
                self._policy = await load_policy(self._source, self._credential)
                log.info(
                    "policy.loaded configured=%s profiles=%s blocked=%s default_action=%s",
                    self._source is not None,
                    len(self._policy.profiles),
                    len(self._policy.blocked_domains),
                    self._policy.default_action.value,
                )
        return self._policy
