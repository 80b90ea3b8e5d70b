"""The queue options in host.json, read once, for the local host and the tests.

host.json is the single source of ``maxDequeueCount`` and friends: the local host
reads them to behave as Core Tools, and a test checks the enqueue encoding agrees.
The worker does not depend on them: it schedules its own retries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def timespan_seconds(value: str) -> float:
    """Seconds in a .NET TimeSpan string such as ``00:00:30`` or ``1.00:00:00``."""
    match = _TIMESPAN.match(value.strip())
    if not match:
        raise ValueError(f"not a TimeSpan: {value!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    """host.json ``extensions.queues`` with the Functions host's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, data: dict[str, Any]) -> QueueOptions:
        """Options from a parsed host.json document."""
        queues = data.get("extensions", {}).get("queues", {})
        batch = int(queues.get("batchSize", cls.batch_size))
        return cls(
            batch_size=batch,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch // 2)),
            max_polling_interval=timespan_seconds(queues.get("maxPollingInterval", "00:01:00")),
            visibility_timeout=timespan_seconds(queues.get("visibilityTimeout", "00:00:00")),
            max_dequeue_count=int(queues.get("maxDequeueCount", cls.max_dequeue_count)),
            message_encoding=str(queues.get("messageEncoding", cls.message_encoding)).lower(),
        )


@lru_cache(maxsize=1)
def queue_options(path: Path = HOST_JSON) -> QueueOptions:
    """The app's host.json queue options (read on first use)."""
    return QueueOptions.from_host_json(json.loads(path.read_text(encoding="utf-8")))
