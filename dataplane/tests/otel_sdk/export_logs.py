"""Exports log records to Norn with the OpenTelemetry Python SDK's OTLP/HTTP exporter.

Usage: export_logs.py BASE_URL TENANT RUN

Logs through Python's logging module (the SDK's LoggingHandler), some inside a span so they
carry its trace and span ids, flushes, and prints the span's ids as JSON on stdout.
"""

import json
import logging
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def main() -> None:
    base, tenant, run = sys.argv[1], sys.argv[2], sys.argv[3]
    resource = Resource.create(
        {
            "service.name": "checkout",
            "service.namespace": "shop",
            "k8s.namespace.name": "prod",
            "host.name": "node-7",
            "norn.test.run": run,
        }
    )
    exporter = OTLPLogExporter(
        endpoint=f"{base}/otlp/v1/logs",
        headers={"X-Scope-OrgID": tenant},
        compression=Compression.Gzip,
    )
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    log = logging.getLogger("shop.checkout")
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    log.propagate = False

    tracer = TracerProvider(resource=resource).get_tracer("shop.checkout")
    with tracer.start_as_current_span("pay") as span:
        log.warning("payment declined", extra={"order.id": "o-17", "amount": 42})
        ctx = span.get_span_context()
    log.info("order %s shipped", "o-18")
    log.error("inventory lookup failed")

    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}))


if __name__ == "__main__":
    main()
