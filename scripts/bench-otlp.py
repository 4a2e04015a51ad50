#!/usr/bin/env python3
"""OTLP/HTTP push load: shared/bench/loadgen.py's `push` (same lines, streams, workers and
timing), with each push encoded as an OTLP ExportLogsServiceRequest and sent to /otlp/v1/logs.

Every loadgen stream becomes an OTLP resource (service.name=app, k8s.namespace.name,
k8s.pod.name, k8s.cluster.name, so the streams match loadgen's), one scope, one log record per
line. Batches are `--batch` records (8192 by default, the Collector's batch size), gzip like the
Collector's otlphttp exporter unless --no-gzip.

    python3 scripts/bench-otlp.py push --url http://127.0.0.1:3100 --lines 4000000 --workers 2 \
        --t0 $T0 --step-ms 180 --format proto --batch 8192

LOADGEN names loadgen.py (default ../shared/bench/loadgen.py next to this repository).
"""

import gzip
import http.client
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LOADGEN = os.environ.get("LOADGEN", os.path.join(HERE, "..", "..", "shared", "bench", "loadgen.py"))
sys.path.insert(0, os.path.dirname(os.path.abspath(LOADGEN)))
import loadgen  # noqa: E402

GZIP = "--no-gzip" not in sys.argv
if not GZIP:
    sys.argv.remove("--no-gzip")
if "push" in sys.argv and "--batch" not in sys.argv:
    sys.argv += ["--batch", "8192"]

field, varint = loadgen.field, loadgen.varint


def any_string(s):
    return field(1, 2, s.encode())


def key_value(k, v):
    return field(1, 2, k.encode()) + field(2, 2, any_string(v))


def encode_otlp(batch):
    out = bytearray()
    for lbls, entries in batch:
        attrs = {"service.name": lbls["app"], "k8s.namespace.name": lbls["namespace"],
                 "k8s.pod.name": lbls["pod"], "k8s.cluster.name": lbls["cluster"]}
        resource = b"".join(field(1, 2, key_value(k, v)) for k, v in attrs.items())
        scope = bytearray(field(1, 2, field(1, 2, b"loadgen")))
        for ts, line in entries:
            rec = field(1, 1, ts.to_bytes(8, "little")) + field(5, 2, any_string(line))
            scope += field(2, 2, rec)
        out += field(1, 2, field(1, 2, resource) + field(2, 2, bytes(scope)))
    body = bytes(out)
    return gzip.compress(body, compresslevel=1) if GZIP else body


class OtlpConnection(http.client.HTTPConnection):
    """loadgen's connection, sending its pushes to the OTLP endpoint instead."""

    def request(self, method, url, body=None, headers=None, **kw):
        headers = dict(headers or {})
        if url == "/loki/api/v1/push":
            url = "/otlp/v1/logs"
            if GZIP:
                headers["Content-Encoding"] = "gzip"
        return super().request(method, url, body=body, headers=headers, **kw)


loadgen.encode_proto = encode_otlp
http.client.HTTPConnection = OtlpConnection

if __name__ == "__main__":
    loadgen.main()
