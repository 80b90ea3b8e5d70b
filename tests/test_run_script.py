"""``make run``'s clean-up (scripts/run.py): whatever signals arrive during shutdown, nothing is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devhost.processes import ROOT, free_port

# A child process standing in for `make run` during shutdown: a real Azurite (its own process group) and a
# service that ignores SIGTERM, so stopping it takes the whole grace period; a first SIGINT starts the clean-up.
CHILD = """
import json, signal, sys, time
from pathlib import Path
sys.path.insert(0, {scripts!r})
from run import _interrupt, stop_all
from devhost.processes import start, start_azurite

tmp = Path({tmp!r})
signal.signal(signal.SIGTERM, _interrupt)  # as run.main() does
started = [start_azurite(tmp / "data", tmp, {blob}, {queue}, {table})]
stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")
started.append(start("stubborn", [sys.executable, "-c", stubborn], tmp))
while "ready" not in (tmp / "stubborn.log").read_text():
    time.sleep(0.05)
try:  # the test's SIGINT may come as soon as it reads the pids
    print(json.dumps([s.process.pid for s in started]), flush=True)
    signal.pause()
except KeyboardInterrupt:
    print("stopping", flush=True)
    stop_all(started)
print("stopped", flush=True)
"""


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_second_signal_during_shutdown_still_stops_azurite(tmp_path: Path, second: signal.Signals) -> None:
    """Ctrl-C starts the clean-up; another Ctrl-C or a SIGTERM while a service takes its grace period hurries
    it (everything killed at once) instead of aborting it: Azurite's process group is gone afterwards."""
    script = CHILD.format(
        scripts=str(ROOT / "scripts"), tmp=str(tmp_path), blob=free_port(), queue=free_port(), table=free_port()
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    groups: list[int] = []
    try:
        assert child.stdout is not None
        groups = json.loads(child.stdout.readline())
        assert all(_alive(g) for g in groups)
        child.send_signal(signal.SIGINT)
        assert child.stdout.readline().strip() == "stopping"
        time.sleep(0.5)  # inside the stubborn service's 5 s grace period
        child.send_signal(second)
        started = time.monotonic()
        out, _ = child.communicate(timeout=20)
        time.sleep(0.2)  # a process group killed just now may take a moment to disappear
        assert [g for g in groups if _alive(g)] == [], "left running"
        assert child.returncode == 0 and out.strip() == "stopped"
        assert time.monotonic() - started < 3  # hurried, not the rest of the grace period
    finally:
        for group in [child.pid, *groups]:
            if _alive(group):
                os.killpg(group, signal.SIGKILL)
        child.wait(timeout=10)
