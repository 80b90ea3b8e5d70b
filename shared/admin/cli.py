"""``signup-admin``: the operator's console command.

    signup-admin replay --id ID [--id ID ...]            replay these failed sign-ups
    signup-admin replay --error-code CODE                replay failed sign-ups with this code
    signup-admin replay --since 2026-11-01 [--until ...] replay failed sign-ups created in a time range
    (add --dry-run to print what would be replayed and change nothing)
    signup-admin convert USERS.csv --report REPORT.csv --mail microsoft|organisation|none [options]
                                                          convert internal users to B2B
                                                          (docs/conversion.md); resumable
    signup-admin lifecycle --dry-run                     print what the guest-lifecycle rules would do to
                                                          each registered guest, and why; writes nothing
    signup-admin status [--days 30] [--json]             the admin overview: sign-ups per status per day,
                                                          time to invite, failures, the write budget, and
                                                          what needs attention (docs/operations.md)
    signup-admin lifecycle [--yes]                       run one guest sweep (after a dry run and a
                                                          confirmation, unless --yes)
    signup-admin lifecycle --permissions                 the Graph permissions the rules need (JSON), for
                                                          the template's lifecyclePermissions

Settings come from the environment, as in the app; a ``local.settings.json`` in
the current folder fills in what the environment leaves unset. Exit status of
replay: 0 done, 1 nothing matched, 2 bad usage or configuration, 3 storage
unavailable. Of convert (``shared.admin.convert``): 0 everything settled as asked,
1 some users refused by a pre-check, 2 rerun needed, 3 configuration or usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigurationError, StorageError
from . import convert as convert_command
from .replay import ReplayResult, Selection, summarise


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    root = argparse.ArgumentParser(prog="signup-admin", description="Administer the B2B sign-up portal.")
    commands = root.add_subparsers(dest="command", required=True)
    replay = commands.add_parser("replay", help="send failed sign-ups through the lifecycle again")
    replay.add_argument("--id", dest="ids", action="append", default=[], help="a sign-up id (repeatable)")
    replay.add_argument("--error-code", help="only sign-ups that failed with this code (e.g. serviceNotAvailable)")
    replay.add_argument("--since", type=_moment, help="only sign-ups created at or after this time (UTC if no zone)")
    replay.add_argument("--until", type=_moment, help="only sign-ups created before this time")
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed; change nothing")
    convert_command.add_arguments(
        commands.add_parser("convert", help="convert internal users to B2B collaboration users")
    )
    lifecycle = commands.add_parser("lifecycle", help="the guest-lifecycle rules applied to registered guests")
    lifecycle.add_argument("--dry-run", action="store_true", help="print what would happen and why; change nothing")
    lifecycle.add_argument("--yes", action="store_true", help="do not ask for confirmation before a live run")
    lifecycle.add_argument(
        "--permissions",
        action="store_true",
        help="print the Graph permissions the policy's rules need (the template's lifecyclePermissions), as JSON",
    )
    status = commands.add_parser("status", help="the admin overview's figures and what needs attention")
    status.add_argument("--days", type=_days, default=30, help="intake days to cover, today included (1-90)")
    status.add_argument("--json", action="store_true", help="print the figures as GET /api/manage/stats does")
    return root


def _days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 90:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to 90, not {value!r}")
    return int(value)


async def _status(args: argparse.Namespace) -> int:
    from .status import status

    return await status(args.days, args.json, lambda text: print(text, flush=True))


def _load_local_settings(path: Path) -> None:
    if path.exists():
        for key, value in json.loads(path.read_text(encoding="utf-8")).get("Values", {}).items():
            os.environ.setdefault(key, str(value))


def _line(result: ReplayResult) -> str:
    return f"{result.action:<9} {result.signup_id}  {result.domain or '-':<24} {result.detail}"


async def _replay(args: argparse.Namespace) -> int:
    from ..services import build_services
    from ..settings import get_settings

    services = build_services(get_settings())
    selection = Selection(tuple(args.ids), args.error_code, args.since, args.until)
    results: list[ReplayResult] = []
    try:
        async for result in services.replayer.replay(selection, dry_run=args.dry_run):
            results.append(result)
            print(_line(result), flush=True)
    finally:
        await services.aclose()
    counts = summarise(results)
    print("replay: " + (", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing matched"))
    return 0 if results else 1


async def _lifecycle(args: argparse.Namespace) -> int:
    from .lifecycle_report import dry_run, sweep

    if args.permissions:
        from ..policy.lifecycle_rules import required_permissions
        from ..services import build_services
        from ..settings import get_settings

        services = build_services(get_settings())
        try:
            policy = await services.policy.current()
        finally:
            await services.aclose()
        print(json.dumps(sorted(required_permissions(p.lifecycle for p in policy.profiles))))
        return 0
    if args.dry_run or not args.yes:
        counts = await dry_run(lambda text: print(text, flush=True))
        print(
            "lifecycle (dry run): "
            + (", ".join(f"{n} {step}" for step, n in sorted(counts.items())) or "no guests registered")
        )
        if args.dry_run:
            return 0
        acting = sum(n for step, n in counts.items() if step != "nothing")
        # Read on the loop's own thread, as convert does: Ctrl-C here interrupts the read itself.
        answer = input(f"Apply the rules to {acting} guests now? [y/N] ")  # noqa: ASYNC250
        if answer.strip().lower() not in {"y", "yes"}:
            print("lifecycle: nothing changed")
            return 0
    await sweep(lambda text: print(text, flush=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``signup-admin`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        # argparse's usage errors exit 2, which for convert means "rerun needed": convert's usage error is 3.
        if exc.code == 2 and argv[:1] == ["convert"]:
            return convert_command.USAGE_ERROR
        raise
    if args.command == "replay" and not (args.ids or args.error_code or args.since or args.until):
        print("signup-admin replay: say which sign-ups: --id, --error-code, --since or --until", file=sys.stderr)
        return 2
    convert = args.command == "convert"
    if convert and not args.users.exists():
        print(f"signup-admin convert: {args.users} does not exist", file=sys.stderr)
        return convert_command.USAGE_ERROR
    if args.command == "lifecycle" and not (args.dry_run or args.permissions or args.yes or sys.stdin.isatty()):
        print(
            "signup-admin lifecycle: a live run asks for confirmation; not interactive, so give --yes", file=sys.stderr
        )
        return 2
    _load_local_settings(Path.cwd() / "local.settings.json")
    commands = {"convert": convert_command.run, "replay": _replay, "lifecycle": _lifecycle, "status": _status}
    try:
        return asyncio.run(commands[args.command](args))
    except ConfigurationError as exc:
        print(f"signup-admin: {exc}", file=sys.stderr)
        return convert_command.USAGE_ERROR if convert else 2
    except KeyboardInterrupt:
        # Ctrl-C outside a run's own handling (at the confirmation question): nothing was started.
        print("signup-admin: interrupted; nothing more was changed", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"signup-admin: storage is unavailable ({exc}); nothing more was changed", file=sys.stderr)
        return 2 if convert else 3  # convert: the rows stay unsettled; run again


if __name__ == "__main__":
    sys.exit(main())
