"""Validation of Graph request and response bodies against Microsoft's published schema.

Wraps ``spec/validate.py`` (copied with provenance, see ``spec/PROVENANCE.md``)
so the emulator and the tests share one loaded ``Spec``.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

SPEC_DIR = Path(__file__).resolve().parent / "spec"
OPERATIONS = (
    "invitation",
    "invitation-response",
    "user-update",
    "group-member-ref",
    "send-mail",
    "domain-collection-response",
    "organization-collection-response",
    "user-with-signin-activity",
    "user-collection-response",
    "directory-object-collection-response",
    "directory-object-response",
    "sponsor-ref",
    "revoke-sign-in-sessions-response",
)


@dataclass(frozen=True)
class Finding:
    level: str
    check: str
    path: str
    message: str


@lru_cache(maxsize=1)
def _validator_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("graph_spec_validate", SPEC_DIR / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def _spec() -> Any:
    module = _validator_module()
    return module.Spec(str(SPEC_DIR / "invitation-v1.0.openapi.json"), allow_unknown=False)


def validate(operation: str, body: Any) -> list[Finding]:
    """Every finding (errors and warnings) for ``body`` as the given operation's body."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    _, _, findings = _validator_module().validate_body(_spec(), operation, body)
    return [Finding(*f) for f in findings]


def errors(operation: str, body: Any) -> list[Finding]:
    """Only the error-level findings."""
    return [f for f in validate(operation, body) if f.level == "error"]
