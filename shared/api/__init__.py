"""The HTTP API's description: ``openapi.json`` (OpenAPI 3.1), served at ``/api/openapi.json``.

The document is written by hand and kept true by tests: every HTTP function of
the app has its operation and every operation its function
(``tests/test_openapi.py``), and schemathesis drives every route from it against
the local host, checking that answers conform and no input gets a 5xx.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

DESCRIPTION = Path(__file__).resolve().parent / "openapi.json"


@lru_cache(maxsize=1)
def description() -> dict[str, Any]:
    """The OpenAPI document."""
    document: dict[str, Any] = json.loads(DESCRIPTION.read_text(encoding="utf-8"))
    return document
