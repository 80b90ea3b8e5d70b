"""Telemetry cost benchmark (issue 21): the intake and drain figures with telemetry off and on.

*Off* is the app with no exporter configured (the OpenTelemetry API's no-op
providers). *On* is the real OpenTelemetry SDK as ``shared.telemetry.configure``
installs it for ``OTEL_EXPORTER_OTLP_ENDPOINT``: every span (one trace per
sign-up, no sampling) and the metrics exported through OTLP/HTTP, with the SDK's
default batch sizes and export interval, to a small local sink (``--sink``, a
process of its own) that accepts ``/v1/traces``, ``/v1/metrics`` and ``/v1/logs``,
counts what arrived and discards it. So the exporter really serialises and sends.

* Intake: ``bench.intake``'s run (same yardstick, production defaults, 1 / 8 / 32
  clients) against a host with telemetry off, then on, alternating for
  ``--rounds`` rounds on one Azurite (each host its own table and queue). The cost
  is ``1 - (on ÷ yardstick) / (off ÷ yardstick)`` per level: the yardstick,
  measured next to each run, takes out the shared machine's drift. Also the
  host's CPU per sign-up (from ``/proc``), and the spans the sink received per
  sign-up accepted (1.0: none dropped).
* Drain: ``--drain`` sign-ups taken in with the worker off, then drained by a
  host with telemetry off or on against the emulator's write budget (as
  ``bench.drain``, pacing on): fraction of the budget, 429s, lost sign-ups, and
  the draining host's CPU per invitation.

Target: the cost stays under 10 % of intake throughput. Run: ``make bench-telemetry``
(``--scale 0.25 --rounds 1 --drain 200`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from devhost.processes import Service, free_port, http_ok, start, wait_until

from . import intake
from .common import cpu_seconds, drain_report, emulator_json, fill, save, stack, wait_until_final

KINDS = ("traces", "metrics", "logs")
ADDRESS = re.compile(rb"[A-Za-z0-9._+-]+(?:@|%40)fabrikam\.com", re.IGNORECASE)


def serve_sink(port: int) -> None:
    """The OTLP/HTTP sink: 200 to every export, counting requests, bytes, spans and metric data points."""
    from aiohttp import web
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    counts: dict[str, int] = {"spans": 0, "metric_points": 0, "bytes": 0, "with_address": 0, **{k: 0 for k in KINDS}}
    scopes: dict[str, int] = {}

    def points(request: ExportMetricsServiceRequest) -> int:
        total = 0
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    data = getattr(metric, metric.WhichOneof("data") or "sum", None)
                    total += len(getattr(data, "data_points", ()))
        return total

    async def export(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        body = await request.read()
        counts[kind] += 1
        counts["bytes"] += len(body)
        # The benchmarks' addresses are all at fabrikam.com; telemetry must never carry one (issue 21).
        counts["with_address"] += bool(ADDRESS.search(body))
        if kind == "traces":
            parsed = ExportTraceServiceRequest.FromString(body)
            for resource in parsed.resource_spans:
                for scope in resource.scope_spans:
                    counts["spans"] += len(scope.spans)
                    scopes[scope.scope.name] = scopes.get(scope.scope.name, 0) + len(scope.spans)
        elif kind == "metrics":
            counts["metric_points"] += points(ExportMetricsServiceRequest.FromString(body))
        # An empty Export*ServiceResponse: the exporter only looks at the status.
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({**counts, "scopes": scopes})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/{kind:traces|metrics|logs}", export)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_sink(log_dir: Any) -> tuple[Service, str]:
    """The sink in a process of its own; its base URL."""
    port = free_port()
    service = start("otlp-sink", [sys.executable, "-m", "bench.telemetry", "--sink", str(port)], log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/stats"), service, 30, "OTLP sink")
    return service, url


def sink_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as response:  # noqa: S310 - loopback
        return dict(json.load(response))


def telemetry_env(on: bool, sink: str) -> dict[str, str]:
    """The host settings of a configuration: nothing for off; the OTLP endpoint (and a service name) for on."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_SERVICE_NAME": "signup-bench"} if on else {}


def intake_round(st: Any, sink: str, on: bool, tag: str, levels: Mapping[int, int]) -> dict[str, Any]:
    """One intake run through a fresh host; its levels, host CPU per sign-up and the spans the sink got."""
    env = {
        "AzureWebJobs.invite_signup.Disabled": "true",
        "AzureWebJobs.finalise_poisoned_signup.Disabled": "true",
        "AzureWebJobs.sweep_signups.Disabled": "true",
        "SIGNUP_QUEUE": f"bench-tel-{tag}",
        "SIGNUP_TABLE": f"benchtel{tag.replace('-', '')}",
        "FORM_TOKEN_SECRET": intake.SECRET,
        **intake.production_limits(),
        **telemetry_env(on, sink),
    }
    url, host = st.host(env)
    # The app builds its services (and imports the exporters) on the first request: a one-off, not per sign-up.
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(f"{url}/api/signups/none", timeout=30).close()  # noqa: S310 - loopback
    before, cpu = sink_stats(sink), cpu_seconds(host)
    results = asyncio.run(intake.run(st.connection, url, dict(levels)))
    cpu = cpu_seconds(host) - cpu
    host.stop()  # the SDK flushes its batches on the way out
    time.sleep(0.5)
    after = sink_stats(sink)
    posted = intake.WARMUP + sum(levels.values())
    return {
        "telemetry": "on" if on else "off",
        "levels": results,
        "host_cpu_ms_per_signup": round(1000 * cpu / posted, 3),
        "spans_per_signup": round((after["spans"] - before["spans"]) / posted, 3),
        "sink": {k: after[k] - before[k] for k in after if k != "scopes"},
    }


def drain_round(on: bool, count: int, budget: int, window: float, latency_ms: int) -> dict[str, Any]:
    """``count`` sign-ups drained against the emulator's budget by a host with telemetry ``on`` or off."""
    args = ["--write-budget", str(budget), "--write-window", str(window), "--latency-ms", str(latency_ms)]
    with stack(args) as st:
        sink_service, sink = start_sink(st.workdir)
        st.services.append(sink_service)
        names = {"SIGNUP_QUEUE": "drain", "SIGNUP_TABLE": "drain"}
        quiet = {f"AzureWebJobs.{f}.Disabled": "true" for f in ("invite_signup", "finalise_poisoned_signup")}
        url, intake_host = st.host({**quiet, **names})
        ids = asyncio.run(fill(url, count))
        intake_host.stop()
        started = time.monotonic()
        settings = {"GRAPH_WRITE_BUDGET": str(budget), "GRAPH_WRITE_WINDOW_SECONDS": str(window)}
        url, host = st.host({**names, **settings, **telemetry_env(on, sink)})
        cpu = cpu_seconds(host)
        statuses = wait_until_final(st, url, ids, started, 300)
        cpu = cpu_seconds(host) - cpu
        requests = [r for r in emulator_json(st, "requests") if r["operation"] == "invitation"]
        host.stop()
        time.sleep(0.5)
        received = sink_stats(sink)
    return {
        "telemetry": "on" if on else "off",
        **drain_report(requests, budget, window),
        "lost": count - statuses.get("invited", 0),
        "host_cpu_ms_per_invitation": round(1000 * cpu / count, 3),
        "spans_per_invitation": round(received["spans"] / count, 2),
        "span_scopes": received["scopes"],
        "exports_with_an_address": received["with_address"],
    }


def summarise(rounds: list[dict[str, Any]], levels: Mapping[int, int]) -> dict[str, Any]:
    """The cost per level (from the yardstick-normalised rates, averaged over rounds) and in host CPU; printed."""
    summary: dict[str, Any] = {"intake": {}}
    for level in map(str, levels):
        ratio = {
            mode: statistics.mean(x["levels"][level]["ratio"]["rate"] for x in rounds if x["telemetry"] == mode)
            for mode in ("off", "on")
        }
        summary["intake"][level] = {**{f"ratio_{k}": round(v, 3) for k, v in ratio.items()}}
        summary["intake"][level]["cost"] = round(1 - ratio["on"] / ratio["off"], 3)
    cpu = {
        mode: statistics.mean(x["host_cpu_ms_per_signup"] for x in rounds if x["telemetry"] == mode)
        for mode in ("off", "on")
    }
    summary["intake_cpu_ms_per_signup"] = {k: round(v, 3) for k, v in cpu.items()}
    summary["intake_cpu_cost"] = round(1 - cpu["off"] / cpu["on"], 3)
    for level, figures in summary["intake"].items():
        print(
            f"intake c={level:>2}: ÷ yardstick off {figures['ratio_off']:.2f} on {figures['ratio_on']:.2f}"
            f" -> cost {100 * figures['cost']:.1f} % (< 10 %)",
            flush=True,
        )
    print(
        f"intake host CPU per sign-up: off {cpu['off']:.2f} ms, on {cpu['on']:.2f} ms"
        f" ({100 * summary['intake_cpu_cost']:.1f} % of the on figure is telemetry)",
        flush=True,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply intake's request counts")
    parser.add_argument("--rounds", type=int, default=2, help="off/on intake rounds, alternating")
    parser.add_argument("--drain", type=int, default=600, help="sign-ups drained per configuration (0: skip)")
    parser.add_argument("--only-drain", action="store_true", help="skip the intake rounds")
    args = parser.parse_args()
    if args.sink:
        serve_sink(args.sink)
        return
    levels = {c: max(20, int(n * args.scale)) for c, n in intake.LEVELS.items()}
    rounds: list[dict[str, Any]] = []
    with stack() as st:
        sink_service, sink = start_sink(st.workdir)
        st.services.append(sink_service)
        for r in range(0 if args.only_drain else args.rounds):
            for on in (False, True):
                print(f"-- intake round {r + 1}, telemetry {'on' if on else 'off'}", flush=True)
                result = intake_round(st, sink, on, f"{r}-{int(on)}", levels)
                print(
                    f"   host CPU {result['host_cpu_ms_per_signup']:.2f} ms/sign-up,"
                    f" spans/sign-up {result['spans_per_signup']:.2f}, sink {result['sink']}",
                    flush=True,
                )
                rounds.append(result)
    summary = summarise(rounds, levels) if rounds else {}
    drains = []
    if args.drain:
        for on in (False, True):
            drained = drain_round(on, args.drain, 300, 15.0, 200)
            print(json.dumps(drained), flush=True)
            drains.append(drained)
    print(f"results: {save('telemetry', {'levels': levels, 'rounds': rounds, 'summary': summary, 'drain': drains})}")


if __name__ == "__main__":
    main()
