"""After a deployment: does the app answer? ``python3 scripts/smoke_test.py https://<app>.azurewebsites.net``

Checks that ``GET /api/openapi.json`` answers 200 with an OpenAPI document and that the sign-up page
``GET /api/signup`` answers 200 with an HTML form. A 404 fails: it is also what the host answers when no
function was indexed, so it cannot count as "up". A cold start (or a host still loading the new package)
is waited out: each check is retried every ``--interval`` seconds for up to ``--timeout`` seconds.
Only the standard library is used, so CI runs it without installing anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def fetch(url: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Status, Content-Type and body of a GET (an HTTP error's status too, never an exception for one)."""
    # main() accepts only http(s) URLs.
    request = urllib.request.Request(url, headers={"Accept": "*/*", "User-Agent": "signup-smoke-test"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.headers.get("Content-Type", ""), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode("utf-8", "replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        return 0, "", str(error)


def check_openapi(status: int, content_type: str, body: str) -> str | None:
    """None when the answer is the API description, else what is wrong."""
    if status != 200:
        return f"status {status}"
    try:
        document = json.loads(body)
    except ValueError:
        return f"not JSON ({content_type})"
    return None if isinstance(document, dict) and "openapi" in document and document.get("paths") else "no OpenAPI"


def check_signup_page(status: int, content_type: str, body: str) -> str | None:
    """None when the answer is the sign-up page, else what is wrong."""
    if status != 200:
        return f"status {status}"
    if not content_type.startswith("text/html"):
        return f"Content-Type {content_type!r}"
    return None if "<form" in body else "no form in the page"


CHECKS: dict[str, Callable[[int, str, str], str | None]] = {
    "/api/openapi.json": check_openapi,
    "/api/signup": check_signup_page,
}


def smoke_test(
    base_url: str,
    timeout: float = 300.0,
    interval: float = 10.0,
    get: Callable[[str], tuple[int, str, str]] = fetch,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Run every check, each until it passes or the time is up; returns the failures (empty: all passed)."""
    base = base_url.rstrip("/")
    deadline = clock() + timeout
    failures = []
    for path, check in CHECKS.items():
        while True:
            problem = check(*get(base + path))
            if problem is None:
                print(f"GET {path}: ok")
                break
            if clock() + interval > deadline:
                failures.append(f"GET {path}: {problem}")
                break
            print(f"GET {path}: {problem}; retrying in {interval:g} s (cold start?)", file=sys.stderr)
            sleep(interval)
    return failures


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit status 1 when a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", help="the app's URL, e.g. the azd output SERVICE_API_URI")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a cold start (300)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between attempts (10)")
    args = parser.parse_args(argv)
    if not args.base_url.startswith(("https://", "http://")):
        parser.error("base_url must be an http(s) URL")
    failures = smoke_test(args.base_url, args.timeout, args.interval)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
