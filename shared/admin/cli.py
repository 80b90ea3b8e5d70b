"""``signup-admin``: the operator's console command.

    signup-admin replay --id ID [--id ID ...]            replay these failed sign-ups
    signup-admin replay --error-code CODE                replay failed sign-ups with this code
    signup-admin replay --since 2026-11-01 [--until ...] replay failed sign-ups created in a time range
    (add --dry-run to print what would be replayed and change nothing)
    signup-admin convert USERS.csv --report REPORT.csv [--dry-run] [options]
                                                          convert internal users to B2B (README
                                                          "Converting internal users"); resumable
    signup-admin lifecycle --dry-run                     print what the guest-lifecycle rules would do to
                                                          each registered guest, and why; writes nothing

Settings come from the environment, as in the app; a ``local.settings.json`` in
the current folder fills in what the environment leaves unset. Exit status: 0
done, 1 nothing matched (replay) or some users not converted (convert), 2 bad
usage or configuration, 3 storage unavailable, 130 interrupted (convert: run the
same command again to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigurationError, StorageError
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
    convert = commands.add_parser("convert", help="convert internal users to B2B collaboration users")
    convert.add_argument("users", type=Path, help="CSV: a user column (object id or UPN), optionally email")
    convert.add_argument("--report", type=Path, required=True, help="CSV report, appended as it goes; resumes")
    convert.add_argument(
        "--dry-run", action="store_true", help="run every pre-check and write the report; change nothing"
    )
    convert.add_argument(
        "--send-invitation-message", action="store_true", help="Microsoft mails each user (default: no mail)"
    )
    convert.add_argument("--message-language", help="language of Microsoft's mail, e.g. de-DE")
    convert.add_argument("--redirect-url", help="where users land after redeeming (default INVITE_REDIRECT_URL)")
    convert.add_argument(
        "--set-guest-user-type",
        action="store_true",
        help="afterwards set userType to Guest (billing by MAU; see the README before you use it)",
    )
    convert.add_argument("--concurrency", type=int, default=8, help="conversions in flight (default 8)")
    lifecycle = commands.add_parser("lifecycle", help="the guest-lifecycle rules applied to registered guests")
    lifecycle.add_argument("--dry-run", action="store_true", help="print what would happen and why; change nothing")
    return root


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


async def _convert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..conversion.bulk import CONVERTED, WOULD_CONVERT, BulkConversion, Report, count_users, read_users
    from ..conversion.converter import ConversionOptions, Converter
    from ..graph.directory import InvitationOptions
    from ..services import build_services
    from ..settings import get_settings

    settings = get_settings()
    services = build_services(settings)
    options = ConversionOptions(
        args.send_invitation_message, args.message_language, args.redirect_url, args.set_guest_user_type
    )
    # Bulk work goes first when Graph throttles, so people signing up are not held up by it.
    converter = Converter(services.directory, InvitationOptions.from_settings(settings), priority="low")
    report = Report(args.report)
    bar = tqdm(total=count_users(args.users), unit="user", desc="dry run" if args.dry_run else "converting")
    bulk = BulkConversion(
        converter,
        options,
        report,
        dry_run=args.dry_run,
        concurrency=max(1, args.concurrency),
        progress=lambda outcome: bar.update(1),
    )
    loop = asyncio.get_running_loop()
    # Ctrl-C: finish the users in flight, write their rows, stop; the next run resumes from the report.
    loop.add_signal_handler(signal.SIGINT, bulk.stop.set)
    loop.add_signal_handler(signal.SIGTERM, bulk.stop.set)
    try:
        summary = await bulk.run(read_users(args.users))
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        bar.close()
        report.close()
        await services.aclose()
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(summary.outcomes.items()))
    print(f"convert: {counts or 'nothing to do'}; {summary.skipped} already settled by an earlier run")
    if summary.interrupted:
        print("convert: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    unsettled = sum(n for outcome, n in summary.outcomes.items() if outcome not in {CONVERTED, WOULD_CONVERT})
    return 1 if unsettled else 0


async def _lifecycle(args: argparse.Namespace) -> int:
    from .lifecycle_report import dry_run

    counts = await dry_run(lambda text: print(text, flush=True))
    print(
        "lifecycle (dry run): "
        + (", ".join(f"{n} {step}" for step, n in sorted(counts.items())) or "no guests registered")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``signup-admin`` console script."""
    args = parser().parse_args(argv)
    if args.command == "replay" and not (args.ids or args.error_code or args.since or args.until):
        print("signup-admin replay: say which sign-ups: --id, --error-code, --since or --until", file=sys.stderr)
        return 2
    if args.command == "convert" and not args.users.exists():
        print(f"signup-admin convert: {args.users} does not exist", file=sys.stderr)
        return 2
    if args.command == "lifecycle" and not args.dry_run:
        print("signup-admin lifecycle: only --dry-run is available yet; the guest sweep acts", file=sys.stderr)
        return 2
    _load_local_settings(Path.cwd() / "local.settings.json")
    commands = {"convert": _convert, "replay": _replay, "lifecycle": _lifecycle}
    try:
        return asyncio.run(commands[args.command](args))
    except ConfigurationError as exc:
        print(f"signup-admin: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"signup-admin: storage is unavailable ({exc}); nothing more was changed", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
