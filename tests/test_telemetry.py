"""One trace per sign-up, across the queue and every retry; metrics by class; no personal data in telemetry."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer

from shared import telemetry
from shared.errors import TransientGraphError
from shared.lifecycle.models import Status
from tests.fakes import FakeDirectory
from tests.lifecycle_kit import Kit

ROOT = Path(__file__).resolve().parent.parent

UNAVAILABLE = TransientGraphError("down", code="serviceNotAvailable", status=503)
_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def providers() -> None:
    """The SDK's providers with in-memory exporters (the global providers can be set once per process)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER


async def test_a_signup_retried_twice_is_one_connected_trace(spans: InMemorySpanExporter) -> None:
    """Intake's span and every delivery (the first, two retries re-enqueued with a delay, the invitation) share
    one trace id, and the deliveries hang under intake's span, though the queue carried only the id."""
    kit = Kit(directory=FakeDirectory([UNAVAILABLE, UNAVAILABLE, None]))
    sid = await kit.submit(admit=False)
    await kit.run_until_quiet()
    assert kit.record(sid).status is Status.INVITED
    finished = spans.get_finished_spans()
    [intake] = [s for s in finished if s.name == "signup.intake"]
    deliveries = [s for s in finished if s.name == "signup.deliver"]
    assert len(deliveries) == 3
    assert {s.context.trace_id for s in deliveries} == {intake.context.trace_id}
    assert all(s.parent is not None and s.parent.span_id == intake.context.span_id for s in deliveries)
    assert [s.attributes["signup.outcome"] for s in deliveries] == ["rescheduled", "rescheduled", "invited"]
    assert kit.record(sid).trace_parent and f"{intake.context.trace_id:032x}" in kit.record(sid).trace_parent


async def test_spans_and_metrics_carry_no_address(spans: InMemorySpanExporter) -> None:
    """Ids, codes and classes only: no address, display name or redeem URL in any attribute or metric."""
    kit = Kit()
    sid = await kit.submit("private.person@fabrikam.com", admit=False)
    await kit.run_until_quiet()
    texts = [str(dict(s.attributes or {})) + s.name for s in spans.get_finished_spans()]
    data = _READER.get_metrics_data()
    texts += [
        str(point.attributes)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for point in m.data.data_points
    ]
    assert texts and any(sid in t for t in texts)
    secrets = ("private.person", "Sam Guest", kit.record(sid).redeem_url or "unset")
    assert [t for t in texts if any(s in t for s in secrets)] == []


def test_the_lifecycle_counts_decisions_and_final_statuses() -> None:
    """signup.decisions by action and signup.final by status are exported with those stable names."""
    data = _READER.get_metrics_data()
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"signup.decisions", "signup.final", "signup.time_to_invite", "signup.attempts"} <= names


async def test_the_sweeper_reports_how_overdue_its_oldest_entry_is() -> None:
    """A queued request whose message was lost: the sweep that finds it records its age past due."""
    kit = Kit()
    await kit.sweeper.sweep()
    await kit.submit()
    kit.queue.sent.clear()
    kit.pass_time(kit.timers.queued_grace + 300)
    report = await kit.sweeper.sweep()
    assert report.oldest_due is not None and 300 <= report.oldest_due <= 420


async def test_the_write_budget_is_exported_as_gauges() -> None:
    """graph.budget.used and graph.budget.limit (issue 21), from the budget's stored schedule."""
    import time

    from shared.graph.budget import WRITES, BucketState
    from shared.stats import Overview

    class Schedule:
        async def read(self, name: str) -> BucketState | None:
            return BucketState(time.time() - 150.0 + 300 / (3000 * 0.975 / 150.0)) if name == WRITES else None

        async def write(self, name: str, state: BucketState) -> str | None:
            raise AssertionError("the overview never writes the schedule")

    overview = Overview(None, Schedule(), budget_limit=3000, budget_window=150.0)  # type: ignore[arg-type]
    assert await overview.publish_budget() is not None
    data = _READER.get_metrics_data()
    points = {
        m.name: [p.value for p in m.data.data_points]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name.startswith("graph.budget.")
    }
    assert points["graph.budget.limit"] == [3000] and 295 <= points["graph.budget.used"][0] <= 300


_OTLP_CHILD = """
from opentelemetry import metrics, trace
from shared import telemetry
assert telemetry.configure() == ["otlp", "otlp_metrics"], "installed"
with telemetry.span("signup.intake", domain="fabrikam.com"):
    telemetry.count("signup.decisions", action="approve")
trace.get_tracer_provider().shutdown()
metrics.get_meter_provider().shutdown()
"""


def test_otlp_exports_spans_and_metrics(tmp_path: Path) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT the spans and the metrics both go out over OTLP/HTTP, serialised."""
    received: list[tuple[str, bytes]] = []

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_port}"
        done = subprocess.run(
            [sys.executable, "-c", _OTLP_CHILD], env=env, cwd=ROOT, capture_output=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
    finally:
        server.shutdown()
    paths = {path for path, _ in received}
    assert {"/v1/traces", "/v1/metrics"} <= paths
    [traces] = [body for path, body in received if path == "/v1/traces"]
    exported = ExportTraceServiceRequest.FromString(traces)
    names = [s.name for r in exported.resource_spans for sc in r.scope_spans for s in sc.spans]
    assert names == ["signup.intake"]
    metric_bodies = [body for path, body in received if path == "/v1/metrics"]
    assert any(b"signup.decisions" in body for body in metric_bodies)


async def test_each_graph_call_is_one_span_without_the_query_or_an_address(spans: InMemorySpanExporter) -> None:
    """The Graph client's transport: one client span per request, with method, path, status and request-id; the
    query (a $filter holds the address looked up) is left out and a segment holding an address is masked."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, headers={"request-id": "rid-1"})

    transport = telemetry.traced_transport(httpx.MockTransport(answer), "graph.call")
    async with httpx.AsyncClient(transport=transport) as http:
        url = "https://graph.microsoft.com/v1.0/users/mailer@contoso.com/sendMail?$filter=mail eq 'sam@fabrikam.com'"
        await http.post(url)
    [call] = [s for s in spans.get_finished_spans() if s.name == "graph.call"]
    assert dict(call.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/v1.0/users/{upn}/sendMail",
        "http.response.status_code": 202,
        "graph.request_id": "rid-1",
    }


def test_kiotas_own_tracers_are_mute() -> None:
    """Kiota's spans (about fifteen per request, with the full URL) are not made; the app's are."""
    provider = TracerProvider()
    telemetry.mute_libraries(provider)
    telemetry.mute_libraries(provider)  # once is enough; twice changes nothing
    assert isinstance(provider.get_tracer("com.microsoft.com:microsoft-kiota-http-httpx"), NoOpTracer)
    assert isinstance(provider.get_tracer("microsoft-python-kiota-abstractions"), NoOpTracer)
    assert not isinstance(provider.get_tracer(telemetry.SCOPE), NoOpTracer)
