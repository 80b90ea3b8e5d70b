"""``python -m graph_emulator``: run the local Microsoft Graph emulator."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from aiohttp import web

from .server import FAULT_KINDS, OPERATIONS, Config, Fault, GraphEmulator


def parse_fault(text: str) -> Fault:
    """``[OPERATION:]KIND``, then ``@ADDRESS``, ``*N`` (N times) or ``%RATE`` (rate 0..1).

    OPERATION is ``invitation`` (the default), ``list-users``, ``get-user``,
    ``user-update``, ``group-member-ref`` or ``*``.
    """
    operation = "invitation"
    head, colon, rest = text.partition(":")
    if colon and head in OPERATIONS:
        operation, text = head, rest
    kind, rate, address, times = text, None, None, None
    if "*" in kind:
        kind, count = kind.rsplit("*", 1)
        times = int(count)
    if "%" in kind:
        kind, rate_text = kind.split("%", 1)
        rate = float(rate_text)
    if "@" in kind:
        kind, address = kind.split("@", 1)
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
    return Fault(kind=kind, address=address, times=times, rate=rate, operation=operation)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graph_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7081)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--write-budget", type=int, default=3000, help="writes per window per app (Graph: 3000)")
    parser.add_argument("--write-window", type=float, default=150.0, help="seconds (Graph: 150)")
    parser.add_argument(
        "--invitation-budget", type=int, default=150, help="requests on /invitations per window per tenant (Graph: 150)"
    )
    parser.add_argument("--invitation-window", type=float, default=5.0, help="seconds (Graph: 5)")
    parser.add_argument(
        "--strict-buckets",
        action="store_true",
        help="plain token buckets: full at start, never below zero, a throttled call costs nothing",
    )
    parser.add_argument("--identity-header", default="local-graph-emulator", help="expected X-IDENTITY-HEADER")
    parser.add_argument(
        "--fault",
        type=parse_fault,
        action="append",
        default=[],
        help="e.g. 403@sam@fabrikam.com, acted504@sam@fabrikam.com*2, 503%%0.1 or list-users:503; "
        f"kinds: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for rate faults")
    parser.add_argument("--demo-directory", action="store_true", help="seed an internal user and a group")
    parser.add_argument(
        "--users", type=Path, default=None, help="a JSON file: a list of users to put into the directory at start"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    emulator = GraphEmulator(
        Config(
            latency_ms=args.latency_ms,
            write_budget=args.write_budget,
            write_window_seconds=args.write_window,
            invitation_budget=args.invitation_budget,
            invitation_window_seconds=args.invitation_window,
            strict_buckets=args.strict_buckets,
            identity_header=args.identity_header,
            seed=args.seed,
        )
    )
    emulator.faults.extend(args.fault)
    if args.demo_directory:
        emulator.add_user(
            displayName="Adele Vance",
            mail="adele.vance@fabrikam.com",
            userPrincipalName="adele@contoso.onmicrosoft.com",
        )
        emulator.groups["00000000-0000-4000-8000-00000000a11e"] = set()
        emulator.groups["3f7c2d1e-9a4b-4c8d-b1e2-5a6f7c8d9e01"] = set()  # policy.sample.json's fabrikam group
    if args.users is not None:
        added = emulator.seed(json.loads(args.users.read_text(encoding="utf-8")))
        print(f"graph-emulator seeded {added} users from {args.users}", flush=True)
    print(f"graph-emulator listening on http://{args.host}:{args.port}/v1.0", flush=True)
    web.run_app(emulator.make_app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
