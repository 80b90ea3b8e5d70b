"""The guest lifecycle's invariants on the simulated world (``tests/sim/guests.py``), a few seeds per test run."""

from __future__ import annotations

from tests.sim.guests import run_guest_seeds


def test_guest_seeds_keep_every_invariant() -> None:
    """At most one mail per reminder and per reviewer's day, one block and one deletion per guest, and nothing
    for guests the portal never made, under storage faults, lost answers and crashes (40 seeds)."""
    assert run_guest_seeds(range(40)) == []
