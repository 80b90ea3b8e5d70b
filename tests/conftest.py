"""Fixtures: a real Azurite and a real Graph emulator (over HTTP), started and stopped here."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

# schemathesis's pytest plugin imports its report writers lazily in pytest_sessionfinish, deep in pluggy's stack,
# where pytest's assertion rewriter parses them with ast.parse. There CPython 3.11.7 could raise "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905, fixed in later 3.11 releases), which ended runs
# after their tests had passed. So they are imported here, before any test runs; the Allure writer needs
# allure-pytest, which is not installed, and ``None`` in sys.modules makes its import fail at once, unparsed,
# as the plugin expects when Allure is missing.
import schemathesis.reporting.html.writer
import schemathesis.reporting.junitxml  # noqa: F401

if importlib.util.find_spec("allure_commons") is None:
    sys.modules["schemathesis.reporting.allure"] = None  # type: ignore[assignment]
from aiohttp import web

from devhost.processes import Service, azurite_connection_string, free_port, start_azurite, start_devhost
from graph_emulator.server import Config, GraphEmulator
from shared.services import Services, build_services
from shared.settings import Settings, load_settings

IDENTITY_HEADER = "test-identity-header"
FUNCTION_KEY = "test-function-key"
# Approves the domains the tests invite (fabrikam.com, its sub-domains, xn--fbrikam-5wa.com), blocks
# blocked.example.com and leaves everything else for review.
TEST_POLICY = str(Path(__file__).resolve().parent / "policies" / "test-domains.json")


# The slowest modules, started first: with `make test`'s workers (--dist loadscope) the suite then ends
# about when they do, instead of one of them starting last.
SLOW_FIRST = (
    "test_faults_burst.py",
    "test_faults.py",
    "test_guest_scenario.py",
    "test_console_browser.py",
    "test_pages_browser.py",
    "test_faults_doubt.py",
    "test_scale.py",
    "test_conversion.py",
    "test_e2e.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the slowest modules first (stable otherwise)."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh Azurite on free ports; yields its connection string."""
    root = tmp_path_factory.mktemp("azurite")
    blob, queue, table = free_port(), free_port(), free_port()
    service = start_azurite(root / "data", root, blob, queue, table)
    try:
        yield azurite_connection_string(queue, table, blob)
    finally:
        service.stop()


@pytest.fixture(scope="session")
async def emulator_server() -> AsyncIterator[tuple[GraphEmulator, str]]:
    """The Graph emulator served over real HTTP on the test loop; yields (emulator, base URL)."""
    emulator = GraphEmulator(Config(identity_header=IDENTITY_HEADER))
    runner = web.AppRunner(emulator.make_app(), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    base = f"http://127.0.0.1:{port}"
    # azure-identity's ManagedIdentityCredential reads these from the process environment.
    saved = {k: os.environ.get(k) for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    os.environ["IDENTITY_ENDPOINT"] = f"{base}/msi/token"
    os.environ["IDENTITY_HEADER"] = IDENTITY_HEADER
    try:
        yield emulator, base
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        await runner.cleanup()


@pytest.fixture
async def emulator(
    emulator_server: tuple[GraphEmulator, str], request: pytest.FixtureRequest
) -> AsyncIterator[GraphEmulator]:
    """The emulator, reset; afterwards every body the app sent must have conformed to Graph's schema."""
    em, _ = emulator_server
    em.config = Config(identity_header=IDENTITY_HEADER)
    em.reset()
    yield em
    if request.node.get_closest_marker("sends_invalid_graph_bodies") is None:
        invalid = [(r.path, r.findings) for r in em.requests if any(f["level"] == "error" for f in r.findings)]
        assert invalid == [], f"the app sent bodies Graph's schema refuses: {invalid}"


@pytest.fixture
def graph_base(emulator_server: tuple[GraphEmulator, str]) -> str:
    return emulator_server[1]


def unique_names() -> dict[str, str]:
    """A queue and table of their own, so tests cannot see each other's messages."""
    suffix = uuid.uuid4().hex[:12]
    return {
        "SIGNUP_QUEUE": f"signups-{suffix}",
        "SIGNUP_TABLE": f"signups{suffix}",
        "SIGNUP_AUDIT_TABLE": f"audit{suffix}",
    }


@pytest.fixture
def app_env(azurite: str, graph_base: str) -> dict[str, str]:
    """Settings environment pointing at the test Azurite and emulator."""
    return {
        "AzureWebJobsStorage": azurite,
        "INVITE_REDIRECT_URL": "https://myapps.microsoft.com/?tenantid=72f988bf-0000-4000-8000-00000000e2e0",
        "GRAPH_BASE_URL": f"{graph_base}/v1.0",
        "GRAPH_CREDENTIAL": "managed_identity",
        "GRAPH_TIMEOUT_SECONDS": "5",
        "SWEEP_SCHEDULE": "0 */1 * * * *",  # the timer binds %SWEEP_SCHEDULE%: the host needs the setting
        "SIGNUP_POLICY": TEST_POLICY,
        **unique_names(),
    }


@pytest.fixture
def settings(app_env: dict[str, str]) -> Settings:
    return load_settings(app_env)


@pytest.fixture
async def services(settings: Settings, emulator: GraphEmulator) -> AsyncIterator[Services]:
    """Real services (Azurite + emulator), installed as the process's services for the triggers."""
    import shared.services as module

    built = build_services(settings)
    previous = module._services
    module._services = built
    try:
        yield built
    finally:
        module._services = previous
        await built.aclose()


# Lifecycle timers short enough for tests that wait on them: retries in seconds, a 13 s lease (2 × 3 + 2 + 3 + 2).
FAST_TIMERS = {
    "GRAPH_TIMEOUT_SECONDS": "3",
    "GRAPH_PACING_MAX_WAIT_SECONDS": "2",
    "GRAPH_THROTTLE_MAX_WAIT_SECONDS": "3",
    "SIGNUP_RETRY_INITIAL_SECONDS": "1",
    "SIGNUP_RETRY_MAX_SECONDS": "4",
    "SIGNUP_QUEUED_GRACE_SECONDS": "5",
    "LEASE_MARGIN_SECONDS": "2",
    "SWEEP_SCHEDULE": "*/2 * * * * *",
    # An idle queue is polled at most every 0.5 s, not host.json's 2 s: a retry comes back when it is due, not up
    # to 2 s later (the Functions host's own override of a host.json value; devhost.host.with_overrides).
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.5",
}


def host_env(azurite: str, graph: str, **extra: str) -> dict[str, str]:
    """The environment of a local host process on the test Azurite and emulator (nothing from the caller's)."""
    prefixes = (
        "GRAPH_",
        "INVITE_",
        "SIGNUP_",
        "AZURE_",
        "MANAGE_",
        "MAIL_",
        "WEBSITE_",
        "DEVHOST_",
        "APPROVAL_",
        "RATE_LIMIT_",
        "CAPTCHA_",
        "TERMS_",
        "FORM_TOKEN_",
        "CORS_",
        "BRAND_",
    )
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {
        **inherited,
        "AzureWebJobsStorage": azurite,
        "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
        "GRAPH_BASE_URL": f"{graph}/v1.0",
        "GRAPH_CREDENTIAL": "managed_identity",
        "IDENTITY_ENDPOINT": f"{graph}/msi/token",
        "IDENTITY_HEADER": IDENTITY_HEADER,
        "SIGNUP_POLICY": TEST_POLICY,
        "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
        # Tests post hundreds of sign-ups from one address and domain (0: no limit); test_abuse.py sets its own.
        "RATE_LIMIT_PER_IP": "0",
        "RATE_LIMIT_PER_DOMAIN": "0",
        "MAIL_SENDER": "portal@contoso.com",
        **FAST_TIMERS,
        **unique_names(),
        **extra,
    }


async def eventually(check: Callable[[], object], within: float, what: str, every: float = 0.02) -> None:
    """Poll ``check()`` until it is true; AssertionError naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if check():
            return
        assert loop.time() < deadline, f"{what}: not so after {within:g} s"
        await asyncio.sleep(every)


async def start_host(env: Mapping[str, str], logs: Path) -> tuple[Service, str]:
    """Start a local host process off the event loop (which goes on serving the emulator); (service, URL)."""
    port = free_port()
    service = await asyncio.to_thread(start_devhost, port, env, logs, settings_file=logs / "none.json")
    return service, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def running_host(env: Mapping[str, str], logs: Path) -> AsyncIterator[tuple[Service, str]]:
    """A local host for the block, started and stopped off the event loop; (service, URL)."""
    service, url = await start_host(env, logs)
    try:
        yield service, url
    finally:
        await asyncio.to_thread(service.stop)


def problem_of(body: Any) -> dict[str, Any]:
    """Assert the RFC 9457 members are there and return the body."""
    assert isinstance(body, dict)
    for member in ("type", "title", "status", "detail"):
        assert member in body, f"problem lacks {member}: {body}"
    return body


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# -- the fault tests' stack (tests/fault_stack.py) ---------------------------------------------------


@pytest.fixture(scope="module")
def own_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    root = tmp_path_factory.mktemp("fault-azurite")
    blob, queue, table = free_port(), free_port(), free_port()
    service = start_azurite(root / "data", root, blob, queue, table)
    try:
        yield service, azurite_connection_string(queue, table, blob)
    finally:
        os.killpg(service.process.pid, signal.SIGCONT)  # never leave it paused
        service.stop()


@pytest.fixture
async def stack(
    own_azurite: tuple[Service, str],
    emulator: GraphEmulator,
    emulator_server: tuple[GraphEmulator, str],
    tmp_path: Path,
) -> AsyncIterator[Any]:
    """A ``tests.fault_stack.Stack`` on the module's own Azurite; its host is stopped afterwards."""
    from tests.fault_stack import Stack  # it imports this module's helpers

    service, connection = own_azurite
    st = Stack(service, connection, emulator_server[1], tmp_path)
    try:
        yield st
    finally:
        await st.stop_host()
