"""``python -m devhost``: serve function_app.py locally, as ``func start`` would."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from .host import RECEIVE_VISIBILITY, load_local_settings, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder holding function_app.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FUNCTIONS_HTTP_PORT", "7071")))
    parser.add_argument("--settings", type=Path, default=None, help="local.settings.json to load")
    parser.add_argument(
        "--receive-visibility",
        type=float,
        default=float(os.environ.get("DEVHOST_RECEIVE_VISIBILITY_SECONDS", RECEIVE_VISIBILITY)),
        help="seconds a received message stays invisible (renewed while the function runs); "
        "what a crashed host leaves behind reappears after it (default 600, as Azure)",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("azure", "httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app_dir = args.app_dir.resolve()
    applied = load_local_settings(args.settings or app_dir / "local.settings.json")
    logging.getLogger("devhost").info("devhost.settings applied_from_file=%s", len(applied))
    from shared.flags import flag

    try:
        stand_in = flag(os.environ.get("DEVHOST_EASY_AUTH"))
    except ValueError as exc:
        print(f"devhost: DEVHOST_EASY_AUTH: {exc}", file=sys.stderr)
        return 2
    if stand_in:
        # As the platform does when App Service Authentication is on (the app checks it before trusting it).
        os.environ["WEBSITE_AUTH_ENABLED"] = "true"
    sys.path.insert(0, str(app_dir))

    # Fail at start-up, naming every bad setting, rather than at the first request.
    from shared.errors import ConfigurationError, StorageError
    from shared.policy import load_policy
    from shared.settings import get_settings

    try:
        settings = get_settings()
        # The policy is read apart from Settings (a Blob needs the network); check it here too. A Blob
        # with identity-based storage is checked by its first use instead (no token is at hand here).
        if settings.storage_connection_string or not (settings.signup_policy or "").startswith("https://"):
            asyncio.run(load_policy(settings.signup_policy))
    except (ConfigurationError, StorageError) as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(serve(app_dir, args.host, args.port, receive_visibility=args.receive_visibility))
    return 0


if __name__ == "__main__":
    sys.exit(main())
