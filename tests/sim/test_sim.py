"""The simulator over many seeds, its determinism, and proof that it fails when the lifecycle breaks."""

from __future__ import annotations

import os

import pytest

from shared.errors import GraphError
from shared.lifecycle.models import Signup
from shared.lifecycle.worker import InvitationWorker, Outcome
from tests.sim.run import run_seeds, simulate

SEEDS = int(os.environ.get("SIM_SEEDS", "2000"))
JOBS = 2  # the machine's two cores


def test_every_invariant_holds_over_many_seeds() -> None:
    """``SIM_SEEDS`` seeded worlds (2,000 by default), each checked after every step and at the end."""
    failing = [(seed, found) for seed, found, _, _ in run_seeds(range(SEEDS), JOBS) if found]
    report = "\n".join(
        f"seed {seed}: {found[0]}\n  replay: python -m tests.sim --seed {seed} --trace" for seed, found in failing[:10]
    )
    assert not failing, f"{len(failing)} failing seeds:\n{report}"


def test_a_seed_replays_exactly() -> None:
    """The same seed gives the same trace, step for step (a failure's trace is the failure)."""
    seed = next(s for s in range(50) if simulate(s).crash_sites)
    first, second = simulate(seed, trace=True), simulate(seed, trace=True)
    assert first.trace == second.trace and len(first.trace) > 50
    assert first.crash_sites == second.crash_sites


def test_the_simulator_catches_a_broken_doubt_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the doubt after a lost answer (``maybe_invited`` cleared on retry): the next attempt POSTs again
    without reading, Microsoft mails the address a second time, and a request can end failed with its guest."""
    original = InvitationWorker._retry

    async def forgetful(
        self: InvitationWorker, signup: Signup, exc: GraphError | None, *, maybe_invited: bool
    ) -> Outcome:
        return await original(self, signup, exc, maybe_invited=False)

    monkeypatch.setattr(InvitationWorker, "_retry", forgetful)
    found = [v for seed in range(200) for v in simulate(seed).violations]
    assert any("Microsoft mail" in v for v in found), found[:5]


def test_the_simulator_catches_a_claim_that_does_not_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without address claims (every request owns its address), repeat sign-ups each invite and mail."""
    from shared.lifecycle.admission import Admission

    async def mine(self: Admission, signup: Signup) -> None:
        return None

    async def held(self: Admission, signup: Signup) -> bool:
        return True

    monkeypatch.setattr(Admission, "owner_for", mine)
    monkeypatch.setattr(Admission, "holds_claim", held)
    found = [v for seed in range(100) for v in simulate(seed).violations]
    assert any("Microsoft mail by" in v for v in found), found[:5]


def test_the_worlds_accept_and_invite() -> None:
    """A simulator whose sign-ups all fail at intake checks nothing: over 50 seeds most sign-ups are accepted
    and many end invited (this caught intake's gather running outside the simulator's scheduler)."""
    results = [simulate(seed) for seed in range(50)]
    accepted = sum(r.accepted for r in results)
    invited = sum(r.finals.get("invited", 0) for r in results)
    assert accepted >= 50 and invited >= 25, (accepted, invited)
