"""The app with a lossy day index: a process that sometimes dies right after a record write, before its index
update. ``LossyIndex`` wraps the real index in the test process; copied as ``function_app.py`` into an app
folder (``python -m devhost --app-dir``), this file serves the real ``function_app.py`` with every store's
index wrapped (one update in ``TEST_LOSSY_INDEX_RATE`` lost), so a host process loses updates the same way.
The app logs each loss as ``lifecycle.index_failed`` and the sweeper repairs it."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path
from typing import Any

from shared.errors import StorageError
from shared.lifecycle.models import Signup
from shared.lifecycle.store import RecordIndex


class LossyIndex:
    """The day index behind a process that sometimes dies right after its record write: the update is lost."""

    def __init__(self, real: RecordIndex, rate: float, rng: random.Random) -> None:
        self.real, self.rate, self.rng, self.lost = real, rate, rng, 0

    async def indexed(self, signup: Signup, *, force: bool = False) -> bool:
        if self.rng.random() < self.rate:
            self.lost += 1
            raise StorageError("the process died before its index update")
        return await self.real.indexed(signup, force=force)


def install(rate: float, rng: random.Random) -> None:
    """Make ``shared.services.build_services`` wrap its store's index in a ``LossyIndex``."""
    import shared.services as module

    real_build = module.build_services

    def build(settings: Any) -> Any:
        built = real_build(settings)
        store = built.worker._store
        store.record_index = LossyIndex(store.record_index, rate, rng)  # type: ignore[attr-defined]
        return built

    module.build_services = build  # type: ignore[assignment]


if __name__ == "function_app":  # served by a host from an app folder, not imported by a test
    install(float(os.environ["TEST_LOSSY_INDEX_RATE"]), random.Random(int(os.environ.get("TEST_LOSSY_SEED", "21"))))
    spec = importlib.util.spec_from_file_location("function_app_served", Path.cwd() / "function_app.py")
    assert spec is not None and spec.loader is not None
    served = importlib.util.module_from_spec(spec)
    sys.modules["function_app_served"] = served
    spec.loader.exec_module(served)
    app = served.app
