"""The simulator's engine: a virtual clock, await points, and a seeded scheduler that drives coroutines by hand.

No asyncio loop runs. Each process's operation is a plain coroutine; every fake
I/O call awaits a ``Point`` (``World.io``), which suspends the coroutine and
hands control back to ``Scheduler``. The scheduler picks, with its seeded
random generator, which suspended operation goes on next, or raises ``Crash``
into it (the process dies at that await point). An operation may also ask to
sleep until a virtual instant (latency, a timeout, a 429's pause); when every
operation sleeps and nothing can start, the clock jumps to the earliest wake.
Everything is a function of the seed, so a run replays exactly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


class Crash(BaseException):
    """The process died here (a BaseException: the code's ``except Exception`` must not survive it)."""


class Stuck(Exception):
    """The real code awaited something that is not one of the simulator's points (e.g. asyncio)."""


class Point:
    """One await point: the coroutine suspends here; ``wake`` is the virtual instant it may go on."""

    __slots__ = ("label", "wake")

    def __init__(self, label: str, wake: datetime) -> None:
        self.label = label
        self.wake = wake

    def __await__(self) -> Generator[Point, None, None]:
        yield self


class VirtualClock:
    """The one clock every part reads."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def after(self, seconds: float) -> datetime:
        return self.now + timedelta(seconds=seconds)


def code_site() -> str:
    """The innermost frame of the project's code (``shared/``) on the current stack: a crash point's name."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if "/shared/" in name:
            return f"{name.rsplit('/shared/', 1)[1][:-3]}:{frame.f_code.co_qualname}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "sim"


def suspended_site(coro: Coroutine[Any, Any, Any]) -> str:
    """The innermost project frame of a suspended coroutine chain (where a crash raised into it lands)."""
    site = "sim"
    current: Any = coro
    while current is not None and hasattr(current, "cr_frame"):
        frame = current.cr_frame
        if frame is not None and "/shared/" in frame.f_code.co_filename:
            name = frame.f_code.co_filename.rsplit("/shared/", 1)[1][:-3]
            site = f"{name}:{frame.f_code.co_qualname}:{frame.f_lineno}"
        current = current.cr_await
    return site


@dataclass
class Op:
    """One running operation of a process: a coroutine, where it waits, and what to do with its end."""

    process: str
    name: str
    coro: Coroutine[Any, Any, Any]
    on_done: Callable[[Any], None]
    on_error: Callable[[BaseException], None]
    wake: datetime
    label: str = "start"
    steps: int = 0


@dataclass
class Scheduler:
    """Runs ops one resume at a time, in a seeded order, with crashes at await points."""

    clock: VirtualClock
    rng: Any
    crash_rate: float
    trace: Callable[[str], None] | None = None
    ops: list[Op] = field(default_factory=list)
    crash_sites: dict[str, int] = field(default_factory=dict)
    steps: int = 0

    def start(self, op: Op) -> None:
        self.ops.append(op)

    def ready(self) -> list[Op]:
        now = self.clock.now
        return [op for op in self.ops if op.wake <= now]

    def next_wake(self) -> datetime | None:
        return min((op.wake for op in self.ops), default=None)

    def resume(self, op: Op) -> None:
        """Take one step of ``op``: to its next await point, its end, or a crash raised at its current point."""
        self.steps += 1
        op.steps += 1
        crash = op.steps > 1 and self.rng.random() < self.crash_rate
        try:
            if crash:
                site = f"{op.label}@{suspended_site(op.coro)}"
                self.crash_sites[site] = self.crash_sites.get(site, 0) + 1
                if self.trace:
                    self.trace(f"crash {op.process} {op.name} at {site}")
                point = op.coro.throw(Crash())
            else:
                point = op.coro.send(None)
        except StopIteration as done:
            self.ops.remove(op)
            op.on_done(done.value)
            return
        except Crash:
            self.ops.remove(op)
            op.coro.close()
            op.on_error(Crash())
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the process's host, as a host would
            self.ops.remove(op)
            op.on_error(exc)
            return
        if not isinstance(point, Point):
            op.coro.close()
            self.ops.remove(op)
            op.on_error(Stuck(f"{op.name} awaited {point!r}"))
            return
        op.label, op.wake = point.label, max(point.wake, self.clock.now)

    def crash_after(self, label: str) -> None:
        """Called by a fake right after its effect landed: maybe the process dies before it hears the answer."""
        if self.rng.random() < self.crash_rate:
            site = f"{label}+landed@{code_site()}"
            self.crash_sites[site] = self.crash_sites.get(site, 0) + 1
            if self.trace:
                self.trace(f"crash after {site}")
            raise Crash()
