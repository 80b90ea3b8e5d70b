"""Parse every .bicep file under the given folders with pycep-parser; exit 1 naming any that fails.

checkov uses the same parser and passes over a file it cannot parse with only a log line, so a
file that fails here would otherwise be missing from the scan without anyone noticing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pycep import BicepParser


def main(folders: list[str]) -> int:
    parser = BicepParser()
    files = sorted(f for folder in folders for f in Path(folder).rglob("*.bicep"))
    if not files:
        print(f"error: no .bicep files under {', '.join(folders)}", file=sys.stderr)
        return 1
    failed = 0
    for path in files:
        try:
            parser.parse(file_path=path)
        except Exception as exc:  # noqa: BLE001  # any parser error is a finding to report, not a crash
            failed += 1
            print(f"FAIL {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            print(f"ok   {path}")
    print(f"{len(files) - failed} parsed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["infra"]))
