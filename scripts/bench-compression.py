#!/usr/bin/env python3
"""Compression study for chunk line sections (not a test): ratio and speed of zstd levels,
zstd with a dictionary per stream and chunk, and LZ4, on blocks cut the way Norn cuts them
(each stream's lines concatenated, a block per BLOCK bytes of lines), over two datasets:

  loadgen    the lines of ../shared/bench/loadgen.py (160 streams, logfmt and JSON), a sample
             of LINES lines generated with its own functions and seed;
  realworld  nginx access logs (combined format, client IPs, user agents, request times), JSON
             application logs with trace and span ids, and Kubernetes event logs.

Prints one Markdown table per dataset: stored bytes, ratio to raw line bytes, compression and
decompression MB/s of raw bytes (one core, fastest of 3). Needs python3 with zstandard and lz4.

    python3 scripts/bench-compression.py [--loadgen PATH] [--lines N] [--block BYTES]
"""
import argparse, importlib.util, json, random, time

import lz4.block
import zstandard


def loadgen_streams(path, lines, seed=7):
    spec = importlib.util.spec_from_file_location("loadgen", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    rng = random.Random(seed)
    labels = m.streams(160)
    out = [[] for _ in labels]
    for i in range(lines):
        k = i % len(labels)
        out[k].append(m.line_for(rng, labels[k], i).encode())
    return out


AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "curl/8.5.0", "Go-http-client/2.0", "kube-probe/1.30",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
]
NGINX_PATHS = ["/", "/api/v2/orders", "/api/v2/cart/items", "/static/app.js", "/static/app.css", "/healthz", "/login", "/search"]
EVENTS = [("Normal", "Scheduled", "Successfully assigned {ns}/{pod} to node-{n}"),
          ("Normal", "Pulled", 'Container image "registry.local/{app}:1.{n}.3" already present on machine'),
          ("Normal", "Created", "Created container {app}"), ("Normal", "Started", "Started container {app}"),
          ("Warning", "BackOff", "Back-off restarting failed container {app} in pod {pod}"),
          ("Warning", "Unhealthy", "Readiness probe failed: Get \"http://10.{a}.{b}.{c}:8080/ready\": context deadline exceeded"),
          ("Normal", "Killing", "Stopping container {app}"), ("Normal", "SuccessfulCreate", "Created pod: {pod}")]


def realworld_streams(lines, seed=11):
    rng = random.Random(seed)
    per = lines // 24
    out = []
    t = 1_733_300_000.0
    for s in range(8):  # nginx, a few hundred clients each
        clients = [f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(300)]
        lines_s = []
        for i in range(per):
            t += rng.random() * 0.05
            ts = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
            status = rng.choice([200] * 20 + [201, 204, 301, 304, 400, 404, 404, 499, 500, 502])
            path = rng.choice(NGINX_PATHS) + (f"?id={rng.randint(1, 10**6)}" if rng.random() < 0.4 else "")
            lines_s.append(f'{rng.choice(clients)} - - [{ts}] "{rng.choice(["GET"] * 5 + ["POST"])} {path} HTTP/1.1" {status} '
                           f'{rng.randint(0, 60000)} "https://shop.example.com/" "{rng.choice(AGENTS)}" '
                           f'rt={rng.random() * 2:.3f} uct="0.00{rng.randint(0, 9)}" urt="{rng.random() * 2:.3f}"'.encode())
        out.append(lines_s)
    for s in range(8):  # JSON application logs
        svc = f"svc-{s}"
        lines_s = []
        for i in range(per):
            t += rng.random() * 0.05
            lvl = rng.choice(["info"] * 12 + ["warn", "error", "debug", "debug"])
            lines_s.append(json.dumps({
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z",
                "level": lvl, "service": svc, "trace_id": "%032x" % rng.getrandbits(128), "span_id": "%016x" % rng.getrandbits(64),
                "user_id": rng.randint(1, 50000), "route": rng.choice(NGINX_PATHS), "latency_ms": round(rng.expovariate(1 / 40), 2),
                "msg": rng.choice(["request completed", "cache miss", "upstream timeout", "retrying request", "order placed", "payment authorized"]),
            }, separators=(",", ":")).encode())
        out.append(lines_s)
    for s in range(8):  # Kubernetes events
        ns = ["default", "shop", "payments", "kube-system"][s % 4]
        lines_s = []
        for i in range(per):
            t += rng.random() * 0.2
            typ, reason, msg = rng.choice(EVENTS)
            app = rng.choice(["api", "web", "worker", "cart", "checkout"])
            pod = f"{app}-{rng.randint(10**8, 10**9):x}-{''.join(rng.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))}"
            m = msg.format(ns=ns, pod=pod, app=app, n=rng.randint(1, 40), a=rng.randint(0, 255), b=rng.randint(0, 255), c=rng.randint(1, 254))
            lines_s.append(f'type={typ} reason={reason} object=Pod/{pod} namespace={ns} source=kubelet count={rng.randint(1, 30)} '
                           f'uid={"%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48))} msg="{m}"'.encode())
        out.append(lines_s)
    return out


def blocks(stream, size):
    """The stream's lines cut into blocks of `size` line bytes: (concatenated lines, lines)."""
    cur, n, out = [], 0, []
    for line in stream:
        cur.append(line)
        n += len(line)
        if n >= size:
            out.append((b"".join(cur), cur))
            cur, n = [], 0
    if cur:
        out.append((b"".join(cur), cur))
    return out


def best_of(f, runs=3):
    best = None
    for _ in range(runs):
        t = time.perf_counter()
        r = f()
        d = time.perf_counter() - t
        best = d if best is None or d < best else best
    return best, r


def study(name, streams, block, per_chunk):
    cut = [blocks(s, block) for s in streams]
    by_stream = [[b for b, _ in bs] for bs in cut]
    raw = sum(len(b) for bs in by_stream for b in bs)
    nblocks = sum(len(bs) for bs in by_stream)
    rows = []

    def run(label, compressors, extra=0, runs=3):
        # compressors: per stream, a list of (compress, decompress) per block
        def comp():
            return [[c(b) for b, (c, _) in zip(bs, cs)] for bs, cs in zip(by_stream, compressors)]
        ct, out = best_of(comp, runs)
        def decomp():
            return [[d(x) for x, (_, d) in zip(xs, cs)] for xs, cs in zip(out, compressors)]
        dt, back = best_of(decomp, runs)
        assert all(b == x for bs, xs in zip(by_stream, back) for b, x in zip(bs, xs)), label
        stored = sum(len(x) for xs in out for x in xs) + extra
        rows.append((label, stored, raw / stored, raw / 1e6 / ct, raw / 1e6 / dt))

    for level in (1, 3, 6, 9, 19):
        c, d = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
        comp = lambda b, c=c: c.compress(b)
        run(f"zstd {level}", [[(comp, d.decompress)] * len(bs) for bs in by_stream], runs=1 if level >= 19 else 3)
    # A dictionary per stream and chunk, trained on the chunk's first block (stored with it).
    for dict_size in (16 << 10, 64 << 10):
        compressors, extra = [], 0
        for bs, lines in zip(by_stream, cut):
            cs = []
            for first in range(0, len(bs), per_chunk):
                sample = lines[first][1]
                try:
                    dic = zstandard.train_dictionary(dict_size, sample)
                except zstandard.ZstdError:
                    dic = None
                zc = zstandard.ZstdCompressor(level=3, dict_data=dic) if dic else zstandard.ZstdCompressor(level=3)
                zd = zstandard.ZstdDecompressor(dict_data=dic) if dic else zstandard.ZstdDecompressor()
                extra += len(dic.as_bytes()) if dic else 0
                cs += [(zc.compress, zd.decompress)] * len(bs[first:first + per_chunk])
            compressors.append(cs)
        run(f"zstd 3 + {dict_size >> 10} KiB dictionary per chunk", compressors, extra)
    lz = (lambda b: lz4.block.compress(b, store_size=True), lz4.block.decompress)
    run("lz4", [[lz] * len(bs) for bs in by_stream])
    lzhc = (lambda b: lz4.block.compress(b, mode="high_compression", compression=9, store_size=True), lz4.block.decompress)
    run("lz4 hc 9", [[lzhc] * len(bs) for bs in by_stream], runs=1)

    print(f"\n### {name}: {sum(len(s) for s in streams):,} lines, {raw / 1e6:.1f} MB of line bytes, "
          f"{len(streams)} streams, {nblocks} blocks of {block >> 10} KiB\n")
    print("| codec | stored | ratio | compress MB/s | decompress MB/s |\n|---|---|---|---|---|")
    for label, stored, ratio, cs, ds in rows:
        print(f"| {label} | {stored / 1e6:.2f} MB | {ratio:.2f}x | {cs:.0f} | {ds:.0f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen", default="../shared/bench/loadgen.py")
    ap.add_argument("--lines", type=int, default=1_600_000)
    ap.add_argument("--block", type=int, default=256 << 10)
    ap.add_argument("--blocks-per-chunk", type=int, default=4, help="blocks sharing one dictionary")
    a = ap.parse_args()
    study("loadgen", loadgen_streams(a.loadgen, a.lines), a.block, a.blocks_per_chunk)
    study("realworld", realworld_streams(a.lines), a.block, a.blocks_per_chunk)


if __name__ == "__main__":
    main()
