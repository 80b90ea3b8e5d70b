"""Cold start: indexing the app (``import function_app``) loads none of the heavy libraries a request may need.

Flex Consumption gives the host 30 s to start and every scale-out pays the import, so msgraph-sdk (with
httpx and Kiota), Jinja2, Babel, aiohttp and the Azure Queue SDK are imported on the first invocation that
uses them (``shared/services.py``, ``shared/pages``, ``shared/storage.py``, ``shared/abuse/captcha.py``), not
at module level. ``make bench-coldstart`` measures what is left (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("msgraph", "msgraph_core", "kiota_http", "kiota_abstractions", "httpx", "jinja2", "babel", "aiohttp")
HEAVY_MODULES = ("azure.storage.queue",)

# Imports each trigger module, then function_app, in one fresh interpreter, and reports which heavy packages
# each one brought in that were not loaded before it.
_PROBE = """
import importlib, json, pkgutil, sys
import triggers
heavy, heavy_modules = json.loads(sys.argv[1])
def loaded():
    return {m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(tuple(heavy_modules))}
found = {}
names = [f"triggers.{m.name}" for m in pkgutil.iter_modules(triggers.__path__)] + ["function_app"]
for name in names:
    before = loaded()
    importlib.import_module(name)
    found[name] = sorted({m.split(".")[0] if m.split(".")[0] in heavy else m for m in loaded() - before})
print(json.dumps(found))
"""


def _imports() -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps([HEAVY, HEAVY_MODULES])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def test_no_trigger_module_imports_a_heavy_library_at_module_level() -> None:
    found = _imports()
    assert "function_app" in found and "triggers.signups" in found and len(found) >= 5
    offenders = {name: heavy for name, heavy in found.items() if heavy}
    assert offenders == {}, f"imported at module level (make them lazy in shared/): {offenders}"
