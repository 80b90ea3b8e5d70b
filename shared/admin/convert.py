"""``signup-admin convert``: converting internal users to B2B in bulk (docs/conversion.md).

Exit status: 0 every user settled as asked; 1 some users refused by a pre-check
(nothing to rerun); 2 rerun needed (interrupted, in doubt, deferred, failed, or a
userType change left to do); 3 configuration or usage error, including the first
authentication or permission error, which stops the run and leaves its rows
unsettled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..conversion.bulk import BulkConversion, Summary
from ..conversion.converter import ConversionOptions, Converter, MailChoice
from ..conversion.report import (
    CONVERTED,
    FAILED,
    REFUSED,
    WOULD_CONVERT,
    InputError,
    InputFormat,
    ReportState,
    ReportWriter,
    count_users,
    detect_input,
    read_users,
)

USAGE_ERROR = 3
INTERRUPTED = 2  # Ctrl-C at the confirmation question: nothing was started


def add_arguments(convert: argparse.ArgumentParser) -> None:
    """The subcommand's options."""
    convert.add_argument("users", type=Path, help="CSV: a user column (object id or UPN), optionally email")
    convert.add_argument("--report", type=Path, required=True, help="CSV report, appended as it goes; resumes")
    convert.add_argument(
        "--mail",
        choices=[c.value for c in MailChoice],
        help="required: Microsoft's invitation mail, the organisation's own (--mail-profile's template), "
        "or none (the redeem URL is kept in the report's redeemUrl column)",
    )
    convert.add_argument("--mail-profile", help="the policy profile whose mailTemplate --mail organisation sends")
    convert.add_argument("--send-invitation-message", action="store_true", help="the same as --mail microsoft")
    convert.add_argument("--message-language", help="language of Microsoft's mail, e.g. de-DE")
    convert.add_argument("--redirect-url", help="where users land after redeeming (default INVITE_REDIRECT_URL)")
    convert.add_argument(
        "--set-guest-user-type",
        action="store_true",
        help="afterwards set userType to Guest (billing by MAU, which needs the tenant linked to a subscription)",
    )
    convert.add_argument("--dry-run", action="store_true", help="pre-checks only; rows go to REPORT.dry-run.csv")
    convert.add_argument("--retry-failed", action="store_true", help="also take up users that failed or were refused")
    convert.add_argument("--yes", action="store_true", help="do not ask for confirmation before a live run")
    convert.add_argument("--encoding", help="the input's encoding when it is not UTF-8 (e.g. cp1252)")
    convert.add_argument("--delimiter", help="the input's delimiter when it cannot be detected (e.g. ';')")
    convert.add_argument("--concurrency", type=int, default=8, help="conversions in flight (default 8)")


def _options(args: argparse.Namespace) -> ConversionOptions | str:
    """The options, or what is wrong with the command line."""
    mail = args.mail or ("microsoft" if args.send_invitation_message else None)
    if mail is None:
        return "say who mails the users: --mail microsoft, --mail organisation --mail-profile NAME, or --mail none"
    if args.send_invitation_message and mail != "microsoft":
        return "--send-invitation-message is --mail microsoft; give one of them"
    if (mail == "organisation") != (args.mail_profile is not None):
        return "--mail organisation needs --mail-profile NAME, and --mail-profile needs --mail organisation"
    if args.redirect_url is not None and not args.redirect_url.startswith("https://"):
        return "--redirect-url must be an absolute https URL"
    return ConversionOptions(
        send_message=mail == "microsoft",
        message_language=args.message_language,
        redirect_url=args.redirect_url,
        set_guest_user_type=args.set_guest_user_type,
        mail_profile=args.mail_profile,
    )


def dry_report_path(report: Path) -> Path:
    """Where ``--dry-run`` writes its rows (never into the report a live run resumes from)."""
    return report.with_name(report.stem + ".dry-run.csv")


def _counts(outcomes: Counter[str]) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())) or "nothing to do"


async def run(args: argparse.Namespace) -> int:
    """The command; returns the exit status."""
    from ..graph.directory import InvitationOptions
    from ..services import build_services
    from ..settings import get_settings

    options = _options(args)
    if isinstance(options, str):
        print(f"signup-admin convert: {options}", file=sys.stderr)
        return USAGE_ERROR
    try:
        fmt = detect_input(args.users, args.encoding, args.delimiter)
    except InputError as exc:
        print(f"signup-admin convert: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if not args.dry_run and not args.yes and not sys.stdin.isatty():
        print("signup-admin convert: a live run asks for confirmation; not interactive, so give --yes", file=sys.stderr)
        return USAGE_ERROR
    settings = get_settings()
    services = build_services(settings)
    try:
        # Bulk work goes first when Graph throttles, so people signing up are not held up by it.
        converter = Converter(services.directory, InvitationOptions.from_settings(settings), priority="low")
        mailer: Any = None
        if options.mail is MailChoice.ORGANISATION:
            mailer = await _mailer(services, settings, options)
            if isinstance(mailer, str):
                print(f"signup-admin convert: {mailer}", file=sys.stderr)
                return USAGE_ERROR
        state = ReportState(args.report)
        total = count_users(args.users, fmt)
        if not args.dry_run and not args.yes:
            dry = await _pass(converter, options, state, None, args, fmt, total, dry=True, mailer=None)
            if dry.fatal is not None or dry.interrupted:
                return _finish(dry)
            print(f"convert: a dry run finds {_counts(dry.outcomes)}; {dry.skipped} settled before")
            answer = await ask(f"Convert {dry.outcomes[WOULD_CONVERT]} users? [y/N] ")
            if answer is None:
                print("\nsignup-admin: interrupted; nothing more was changed", file=sys.stderr)  # after the question
                return INTERRUPTED
            if answer.strip().lower() not in {"y", "yes"}:
                print("convert: nothing changed")
                return 0
        if args.dry_run:
            dry_report_path(args.report).unlink(missing_ok=True)  # each dry run's rows alone
        writer = ReportWriter(dry_report_path(args.report) if args.dry_run else args.report)
        try:
            bulk = await _pass(converter, options, state, writer, args, fmt, total, dry=args.dry_run, mailer=mailer)
        finally:
            writer.close()
        return _finish(bulk)
    finally:
        await services.aclose()


async def ask(question: str) -> str | None:
    """Ask on the terminal: the line typed, '' at the end of input, or None on Ctrl-C.

    Read through the event loop (a reader on stdin, Ctrl-C through the loop's signal handler), not ``input()``:
    Python runs a signal's handler between bytecodes, so a Ctrl-C that came after the question was shown but
    before ``input()``'s read(2) began was only acted on once a line came, and the command hung on a loaded
    machine. The loop's handler is in place before the question is shown and wakes the loop whenever it comes.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str | None] = loop.create_future()
    fd = sys.stdin.fileno()
    read: list[bytes] = []

    def settle(value: str | None) -> None:
        if not answer.done():
            answer.set_result(value)

    def readable() -> None:
        chunk = os.read(fd, 1024)
        read.append(chunk)
        if not chunk or b"\n" in chunk:
            settle(b"".join(read).decode(sys.stdin.encoding or "utf-8", "replace"))

    loop.add_signal_handler(signal.SIGINT, settle, None)
    loop.add_reader(fd, readable)
    try:
        print(question, end="", flush=True)
        return await answer
    finally:
        loop.remove_reader(fd)
        loop.remove_signal_handler(signal.SIGINT)


async def _mailer(services: Any, settings: Any, options: ConversionOptions) -> Any:
    from ..conversion.mailing import OrganisationMail

    profile = (await services.policy.current()).profile(options.mail_profile)
    if profile is None or profile.mail_template is None:
        return f"--mail-profile {options.mail_profile}: no policy profile of that name with a mailTemplate"
    if not settings.mail_sender:
        return "--mail organisation needs MAIL_SENDER (the mailbox the organisation's mail comes from)"
    return OrganisationMail(
        services.directory,
        settings.mail_sender,
        profile.mail_template,
        organisation=settings.organisation_name,
        contact=settings.organisation_contact,
        language=options.message_language,
    )


async def _pass(
    converter: Converter,
    options: ConversionOptions,
    state: ReportState,
    writer: ReportWriter | None,
    args: argparse.Namespace,
    fmt: InputFormat,
    total: int,
    *,
    dry: bool,
    mailer: Any,
) -> Summary:
    """One run over the input, with its progress bar and Ctrl-C handling."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="user", desc="dry run" if dry else "converting", file=sys.stderr)
    tally: Counter[str] = Counter()

    def progress(outcome: str) -> None:
        key = "converted" if outcome in (CONVERTED, WOULD_CONVERT) else "refused" if outcome in REFUSED else None
        key = key or ("failed" if outcome == FAILED else "skipped" if outcome == "skipped" else "other")
        tally[key] += 1
        bar.set_postfix({k: tally[k] for k in ("converted", "refused", "failed")}, refresh=False)
        bar.update(1)

    bulk = BulkConversion(
        converter,
        options,
        state,
        writer,
        dry_run=dry,
        retry_failed=args.retry_failed,
        concurrency=max(1, args.concurrency),
        mailer=mailer,
        progress=progress,
    )
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(bulk.run(read_users(args.users, fmt)))
    presses = 0

    def interrupt() -> None:
        # First: start nothing new, finish what is in flight. Second: stop at once (in-doubt rows stay in doubt).
        nonlocal presses
        presses += 1
        if presses == 1:
            print("\nconvert: stopping: no new conversions; Ctrl-C again to stop at once", file=sys.stderr)
            bulk.stop.set()
        else:
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, interrupt)
    loop.add_signal_handler(signal.SIGTERM, interrupt)
    try:
        await task
    except asyncio.CancelledError:
        bulk.summary.interrupted = True
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        bar.close()
    return bulk.summary


def _finish(summary: Summary) -> int:
    print(f"convert: {_counts(summary.outcomes)}; {summary.skipped} already settled by an earlier run")
    if summary.fatal is not None:
        print(
            f"convert: stopped at the first authentication or permission error ({summary.fatal.code}, HTTP "
            f"{summary.fatal.status or '-'}): the app needs User.ReadWrite.All (and a token); fix it and run the "
            "same command again: no row was settled by this error",
            file=sys.stderr,
        )
    elif summary.interrupted:
        print("convert: interrupted; run the same command again to resume", file=sys.stderr)
    code = summary.exit_code()
    if code == 2 and not summary.interrupted:
        print("convert: some users need another run (add --retry-failed for Failed rows)", file=sys.stderr)
    return code
