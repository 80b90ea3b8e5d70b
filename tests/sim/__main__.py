"""``python -m tests.sim [--seeds N] [--start S] [--seed S --trace]``: run seeds, report speed and crash points."""

from __future__ import annotations

import argparse
import sys
import time

from .run import run_seeds, simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=2000, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="run this one seed only")
    parser.add_argument("--trace", action="store_true", help="print the run's trace (with --seed)")
    parser.add_argument("--jobs", type=int, default=1, help="processes to run seeds in")
    parser.add_argument(
        "--guest-seeds", type=int, help="seeds of the guest lifecycle's rules (tests/sim/guests.py); default seeds/100"
    )
    args = parser.parse_args(argv)
    if args.seed is not None:
        result = simulate(args.seed, trace=args.trace)
        if args.trace:
            print("\n".join(result.trace))
        print(f"seed {args.seed}: {result.steps} steps, {result.accepted} accepted, finals {result.finals}")
        for violation in result.violations:
            print("VIOLATION", violation)
        return 1 if result.violations else 0
    seeds = range(args.start, args.start + args.seeds)
    sites: dict[str, int] = {}
    failing: list[int] = []
    steps = 0
    began = time.perf_counter()
    for seed, violations, seed_steps, crash_sites in run_seeds(seeds, args.jobs):
        steps += seed_steps
        for site, count in crash_sites.items():
            sites[site] = sites.get(site, 0) + count
        if violations:
            failing.append(seed)
            print(f"seed {seed} FAILED: {violations[0]}")
            print(f"  replay: python -m tests.sim --seed {seed} --trace")
    elapsed = time.perf_counter() - began
    print(
        f"{len(seeds)} seeds in {elapsed:.1f} s ({len(seeds) / elapsed:.0f} seeds/s, {steps / elapsed:.0f} steps/s); "
        f"{len(sites)} distinct crash points hit ({sum(sites.values())} crashes); {len(failing)} failing seeds"
    )
    return 1 if guests(args) or failing else 0


def guests(args: argparse.Namespace) -> bool:
    """Run the guest lifecycle's seeds; True when one broke an invariant."""
    from .guests import run_guest_seeds

    count = args.guest_seeds if args.guest_seeds is not None else max(1, args.seeds // 100)
    began = time.perf_counter()
    failing = run_guest_seeds(range(args.start, args.start + count))
    for seed, violations in failing:
        print(f"guest seed {seed} FAILED: {violations[0]}")
    print(f"{count} guest lifecycle seeds in {time.perf_counter() - began:.1f} s; {len(failing)} failing seeds")
    return bool(failing)


if __name__ == "__main__":
    sys.exit(main())
