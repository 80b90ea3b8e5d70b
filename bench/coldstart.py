"""Cold start: what ``import function_app`` costs a fresh worker process (``make bench-coldstart``).

Flex Consumption gives the host 30 s to start, and every scale-out pays the import again. Each of ``--runs``
fresh interpreters (default 10) imports ``function_app`` and reports the wall time of the import and the
process's peak RSS afterwards (``ru_maxrss``: the interpreter itself included, as on a worker). The median
of each is the figure; then one more process with ``-X importtime`` names the heaviest modules by
cumulative import time. Results go to ``bench/results/coldstart.json``. Targets: 0.5 s and 70 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGET_SECONDS = 0.5
TARGET_RSS_MB = 70.0

_PROBE = """
import resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import function_app
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("msgraph", "jinja2", "babel", "kiota_http", "httpx"))
print(elapsed, cpu, rss_kb / 1024, ",".join(sorted({m.split(".")[0] for m in heavy})))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return env


def measure_once(python: str = sys.executable) -> tuple[float, float, float, list[str]]:
    """One fresh process: import seconds (wall, CPU), peak RSS in MB, heavy top-level packages it loaded."""
    out = subprocess.run(  # noqa: S603 (our own interpreter and probe)
        [python, "-c", _PROBE], cwd=ROOT, env=_env(), capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = out[3].split(",") if len(out) > 3 and out[3] else []
    return float(out[0]), float(out[1]), float(out[2]), heavy


def heaviest_modules(python: str = sys.executable, top: int = 15) -> list[tuple[str, float]]:
    """The modules with the largest cumulative import time (seconds) under ``-X importtime``."""
    done = subprocess.run(  # noqa: S603
        [python, "-X", "importtime", "-c", "import function_app"], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    rows = [
        (match.group(2), int(match.group(1)) / 1e6)
        for match in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", done.stderr, re.MULTILINE)
    ]
    return sorted(rows, key=lambda row: row[1], reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--label", default="", help="a name for this measurement in the results file")
    args = parser.parse_args(argv)
    measure_once()  # warm the bytecode cache, as a deployed package has its .pyc files
    runs = [measure_once() for _ in range(args.runs)]
    seconds = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rss = statistics.median(r[2] for r in runs)
    heavy = sorted({name for r in runs for name in r[3]})
    load = os.getloadavg()[0]
    top = heaviest_modules()
    print(f"import function_app, {args.runs} fresh processes (Python {platform.python_version()}):")
    print(
        f"  time: median {seconds:.3f} s (min {min(r[0] for r in runs):.3f}, max {max(r[0] for r in runs):.3f});"
        f" target <= {TARGET_SECONDS} s"
    )
    print(f"  CPU time: median {cpu:.3f} s (the wall time less the waits of a busy machine: load {load:.1f})")
    print(f"  peak RSS: median {rss:.1f} MB; target <= {TARGET_RSS_MB:.0f} MB")
    print(f"  heavy packages loaded at import: {', '.join(heavy) or 'none'}")
    print("  heaviest modules (cumulative import time, -X importtime):")
    for name, cumulative in top:
        print(f"    {cumulative * 1000:8.1f} ms  {name}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "coldstart.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results[args.label or "latest"] = {
        "python": platform.python_version(),
        "runs": args.runs,
        "import_seconds_median": round(seconds, 4),
        "import_seconds": [round(r[0], 4) for r in runs],
        "import_cpu_seconds_median": round(cpu, 4),
        "load_average_1min": round(load, 2),
        "peak_rss_mb_median": round(rss, 1),
        "heavy_packages": heavy,
        "heaviest_modules": [{"module": n, "cumulative_ms": round(c * 1000, 1)} for n, c in top],
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if seconds <= TARGET_SECONDS and rss <= TARGET_RSS_MB else 1


if __name__ == "__main__":
    sys.exit(main())
