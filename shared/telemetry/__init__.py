"""Traces and metrics through OpenTelemetry: one trace per sign-up, and the lifecycle's figures.

This package owns how the app reports itself. A sign-up's trace starts at intake (the HTTP trigger's
span), and its W3C ``traceparent`` is kept on the record and in the queue message, so every delivery
of every attempt (re-enqueued by the worker, the sweeper or the poison path, which know only the id)
continues the same trace: ``span("signup.deliver", parent=record.trace_parent)``. Graph calls and the
sweeper add their own spans under whatever is current.

Spans and metrics carry ids, codes and classes only, never an address, a name or a redeem URL.

Exporters (``configure``, once, when the services are built; nothing at import, for the cold start):

* ``APPLICATIONINSIGHTS_CONNECTION_STRING``: Microsoft's Azure Monitor distro (``configure_azure_monitor``),
  as "Use OpenTelemetry with Azure Functions" prescribes for Python, with host.json's
  ``"telemetryMode": "OpenTelemetry"`` and ``PYTHON_ENABLE_OPENTELEMETRY=true``;
* ``OTEL_EXPORTER_OTLP_ENDPOINT``: spans and metrics over OTLP/HTTP (a local collector or Jaeger), with the
  OpenTelemetry SDK's own ``OTEL_*`` variables for batch sizes and the metric export interval;
* ``TELEMETRY_CONSOLE=1``: spans printed to the console (``make run`` sets nothing by default).

Without any of them the OpenTelemetry API is a no-op and costs next to nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

log = logging.getLogger(__name__)

SCOPE: Final = "entra-b2b-signup"
_configured = False


def configure(*, console: bool = False, environ: Mapping[str, str] | None = None) -> list[str]:
    """Install the exporters the environment asks for (once per process); the names of those installed.

    ``console`` is the ``TELEMETRY_CONSOLE`` setting; the other two are the platform's and OpenTelemetry's
    own variables, read as their libraries read them.
    """
    global _configured
    if _configured:
        return []
    _configured = True
    env = os.environ if environ is None else environ
    installed: list[str] = []
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        from azure.monitor.opentelemetry import configure_azure_monitor

        # The template turns local auth off: ingestion takes an Entra token of the app's identity, named by
        # APPLICATIONINSIGHTS_AUTHENTICATION_STRING ("Authorization=AAD;ClientId=...") as for the host.
        credential = None
        auth = dict(
            part.split("=", 1)
            for part in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").split(";")
            if "=" in part
        )
        if auth.get("Authorization") == "AAD":
            from azure.identity import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=auth.get("ClientId"))
        configure_azure_monitor(logger_name="shared", credential=credential)
        installed.append("azure_monitor")
    extra: list[Any] = []
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        extra.append(OTLPSpanExporter())
        installed.append("otlp")
        if _otlp_metrics():
            installed.append("otlp_metrics")
    if console:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        extra.append(ConsoleSpanExporter())
        installed.append("console")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if extra:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        for exporter in extra:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        mute_libraries(provider)
    if installed:
        log.info("telemetry.configured exporters=%s", ",".join(installed))
    return installed


# Kiota, under msgraph-sdk, makes about fifteen spans of its own per Graph request, and they carry the request's
# full URL (url.full), whose $filter holds the address being looked up: measured by bench/telemetry, 30 spans per
# invitation and addresses in the exported spans. Its tracers are mute; every Graph call gets one span of ours
# instead (``traced_transport``).
MUTED_SCOPES: Final = ("kiota",)


def mute_libraries(provider: Any) -> None:
    """Make ``provider`` hand no-op tracers to the libraries of ``MUTED_SCOPES`` (their tracers are taken when they
    are imported, after this; one taken before a provider was set is the API's proxy, which asks it later)."""
    from opentelemetry.trace import NoOpTracer

    original = provider.get_tracer
    if getattr(original, "muting", False):
        return

    def get_tracer(name: str, *args: Any, **kwargs: Any) -> Any:
        if any(muted in name for muted in MUTED_SCOPES):
            return NoOpTracer()
        return original(name, *args, **kwargs)

    get_tracer.muting = True  # type: ignore[attr-defined]
    provider.get_tracer = get_tracer


def traced_transport(inner: Any, name: str) -> Any:
    """``inner``, an httpx async transport, with one client span ``name`` per request it sends: the method, the
    path without the query (a segment holding an address shows as ``{upn}``), the status and the answer's
    ``request-id``; a failure records its type only (a message may hold a URL)."""
    import httpx
    from opentelemetry.trace import SpanKind

    class Traced(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            segments = request.url.path.split("/")
            path = "/".join("{upn}" if "@" in segment else segment for segment in segments)
            attributes = {"http.request.method": request.method, "url.path": path}
            with _tracer_and_propagator()[0].start_as_current_span(
                name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False, set_status_on_exception=False
            ) as current:
                try:
                    response: httpx.Response = await inner.handle_async_request(request)
                except Exception as exc:
                    current.set_attribute("error.type", type(exc).__name__)
                    raise
                current.set_attribute("http.response.status_code", response.status_code)
                request_id = response.headers.get("request-id")
                if request_id:
                    current.set_attribute("graph.request_id", request_id)
                return response

        async def aclose(self) -> None:
            await inner.aclose()

    return Traced()


def _otlp_metrics() -> bool:
    """Export the metrics through OTLP too, unless a meter provider is set already (the Azure Monitor distro's:
    an SDK provider takes its readers when it is built)."""
    from opentelemetry import metrics
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if isinstance(metrics.get_meter_provider(), MeterProvider):
        log.warning("telemetry.otlp_metrics_skipped reason=meter_provider_set")
        return False
    metrics.set_meter_provider(MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]))
    return True


# The tracer and the propagator, looked up once (a lookup per span cost a third of a span's price). A tracer
# taken before a provider is set is the API's proxy, which uses the provider once one is set.
_tracing: tuple[Any, Any] | None = None


def _tracer_and_propagator() -> tuple[Any, Any]:
    global _tracing
    if _tracing is None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _tracing = (trace.get_tracer(SCOPE), TraceContextTextMapPropagator())
    return _tracing


@contextmanager
def span(name: str, *, parent: str | None = None, **attributes: Any) -> Iterator[Any]:
    """A span named ``name`` under ``parent`` (a traceparent) or the current span; yields it."""
    tracer, propagator = _tracer_and_propagator()
    context = propagator.extract({"traceparent": parent}) if parent else None
    clean = {k.replace("__", "."): v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, context=context, attributes=clean) as current:
        yield current


def traceparent() -> str | None:
    """The current span's W3C traceparent (None when no span is recording)."""
    carrier: dict[str, str] = {}
    _tracer_and_propagator()[1].inject(carrier)
    return carrier.get("traceparent")


def count(name: str, value: int = 1, unit: str = "1", **attributes: Any) -> None:
    """Add ``value`` to the counter ``name`` (stable names: docs/operations.md)."""
    _instrument("counter", name, unit).add(value, {k.replace("__", "."): v for k, v in attributes.items()})


def record(name: str, value: float, unit: str, **attributes: Any) -> None:
    """Record ``value`` in the histogram ``name``."""
    _instrument("histogram", name, unit).record(value, {k.replace("__", "."): v for k, v in attributes.items()})


def gauge(name: str, value: float, unit: str, **attributes: Any) -> None:
    """Set the gauge ``name`` to ``value`` (the last value recorded is exported)."""
    _instrument("gauge", name, unit).set(value, {k.replace("__", "."): v for k, v in attributes.items()})


_instruments: dict[tuple[str, str], Any] = {}


def _instrument(kind: str, name: str, unit: str) -> Any:
    from opentelemetry import metrics

    key = (kind, name)
    if key not in _instruments:
        meter = metrics.get_meter(SCOPE)
        make = {"counter": meter.create_counter, "gauge": meter.create_gauge}.get(kind, meter.create_histogram)
        _instruments[key] = make(name, unit=unit)
    return _instruments[key]
