"""The local host's log of full garbage collections (``DEVHOST_GC_LOG``), which the intake benchmark counts."""

from __future__ import annotations

import gc
import logging

import pytest

from devhost.host import watch_collections


def test_each_full_collection_is_logged_with_its_pause(caplog: pytest.LogCaptureFixture) -> None:
    """A generation-2 collection gives one warning with its pause; a younger one gives none."""
    callback = watch_collections()
    try:
        with caplog.at_level(logging.WARNING, logger="devhost"):
            gc.collect(0)
            assert not [r for r in caplog.records if "devhost.gc" in r.getMessage()]
            gc.collect()
        logged = [r.getMessage() for r in caplog.records if "devhost.gc" in r.getMessage()]
    finally:
        gc.callbacks.remove(callback)
    assert len(logged) == 1
    assert logged[0].startswith("devhost.gc generation=2 pause_ms=")
    assert float(logged[0].split("pause_ms=")[1].split()[0]) >= 0
