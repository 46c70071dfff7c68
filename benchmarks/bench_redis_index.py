#!/usr/bin/env python3
"""Question: what does the shared Redis prefix index cost per decision?

1. Lookup cost against a loopback redis-server for 16/64/256 request blocks × 8/64/256 candidate pods: the
   `MGET` of the block keys epp sends (the walk for each candidate's run happens in epp; this script repeats it
   to check the index contents), one round trip per lookup, and the exact Lua record script epp runs (read from
   RedisPrefixScripts.swift; epp is asked `SCRIPT EXISTS` to prove they are the same bytes). Reports the round
   trip seen by this Python client (p50/p99: an upper bound, the client adds its own µs) and Redis time per call
   (`INFO commandstats` usec_per_call), plus the record script (decode + prefill, blocks already held: refresh
   only, or a new chain).
   Index contents per cell: every candidate holds the first quarter of the chain (a shared system prompt) and
   its own continuation; two candidates hold the whole request (a full hit for them).
2. Decisions/s of the release `epp` (one worker, h2load direct, 4 KB completions body = 64 blocks, 4 endpoints)
   with the in-process index vs `--redis-url` (every decision: one lookup MGET; records at most once a second
   per pod and chain), with
   epp's own Redis lookup round trip (histogram) and Redis CPU per decision.
Usage: benchmarks/bench_redis_index.py [--quick]
"""
import argparse
import os
import random
import re
import socket
import time

from common import ROOT, append_results, build_release, cpu_seconds, h2load, harness
from bench_decisions import prepared_streams, routed

SCRIPTS = os.path.join(ROOT, "Sources", "EPPPicker", "Scheduling", "Framework", "RedisPrefixScripts.swift")


def swift_literal(src, marker):
    """The value of the first Swift multi-line string literal after `marker` (closing-delimiter indentation
    stripped, no final newline: Swift's rules)."""
    i = src.index(marker)
    j = src.index('"""\n', i) + 4
    k = src.index('"""', j)
    lines = src[j:k].split("\n")
    indent = len(lines[-1])
    return "\n".join(line[indent:] for line in lines[:-1])


def lua_scripts():
    src = open(SCRIPTS).read()
    helpers = swift_literal(src, "private static let helpers")
    return {name: helpers + swift_literal(src, f"static let {name} = RedisScript(helpers +")
            for name in ("record", "prune")}


class Resp:
    """A minimal RESP2 client on one connection."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        line = self.f.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")

    def call(self, *args):
        self.s.sendall(self.encode(*args))
        return self.read()


def usec_per_call(r, command="evalsha"):
    info = r.call("INFO", "commandstats").decode()
    m = re.search(r"cmdstat_" + command + r":calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", info)
    return (int(m.group(1)), int(m.group(2)), float(m.group(3))) if m else (0, 0, 0.0)


def evalsha_usec_per_call(r):
    return usec_per_call(r, "evalsha")


def runs_of(values, pods):
    """The walk epp does over an MGET reply: per candidate, blocks held from the first without a gap."""
    counts, alive = [0] * len(pods), list(range(len(pods)))
    for v in values:
        if v is None:
            break
        held = {v[i:i + 8] for i in range(0, len(v), 8)}
        alive = [a for a in alive if pods[a] in held]
        for a in alive:
            counts[a] += 1
        if not alive:
            break
    return counts


def redis_cpu(r):
    """used_cpu_user + used_cpu_sys of the server (seconds): unlike usec_per_call it excludes time the server
    thread was not running (this machine is shared)."""
    info = r.call("INFO", "cpu").decode()
    return float(re.search(r"used_cpu_user:([\d.]+)", info).group(1)) + float(re.search(r"used_cpu_sys:([\d.]+)", info).group(1))


def lookup_cost(port, shas, blocks, cands, iterations):
    r = Resp(port)
    r.call("FLUSHALL")
    rnd = random.Random(blocks * 1000 + cands)
    ns = b"bench:{%016x}" % rnd.getrandbits(64)
    pods = [rnd.randbytes(8) for _ in range(cands)]
    chain = [rnd.randbytes(8) for _ in range(blocks)]
    shared = blocks // 4

    def record(hashes, pod_list, known=0):
        keys = [ns + b":b:" + h for h in hashes] + [ns + b":p:" + p for p in pod_list] + [ns + b":pods"]
        argv = [len(hashes), len(pod_list)]
        for p in pod_list:
            argv += [p, 31250, b"pod-" + p.hex().encode(), known]
        return r.call("EVALSHA", shas["record"], len(keys), *keys, *argv)

    for _ in range(8):   # the two full-hit pods also hold 2 048 other blocks (a realistic, skiplist-encoded LRU)
        record([rnd.randbytes(8) for _ in range(256)], pods[:2])
    for i, p in enumerate(pods):
        own = chain if i < 2 else chain[:shared] + [rnd.randbytes(8) for _ in range(blocks - shared)]
        record(own, [p])
    keys = [ns + b":b:" + h for h in chain]
    lookup = Resp.encode("MGET", *keys)
    runs = runs_of(r.call("MGET", *keys), pods)
    assert runs == [blocks if i < 2 else shared for i in range(cands)], runs[:8]
    for _ in range(50):   # warm-up
        r.s.sendall(lookup)
        r.read()
    r.call("CONFIG", "RESETSTAT")
    rtts = []
    cpu0 = redis_cpu(r)
    for _ in range(iterations):
        t0 = time.perf_counter()
        r.s.sendall(lookup)
        r.read()
        rtts.append(time.perf_counter() - t0)
    lookup_cpu = (redis_cpu(r) - cpu0) / iterations * 1e6
    _, _, lookup_usec = usec_per_call(r, "mget")
    r.call("CONFIG", "RESETSTAT")
    for _ in range(max(50, iterations // 4)):
        record(chain, pods[:2])   # decode + prefill hold every block (not told so): recency refreshed, nothing written
    _, _, held_usec = evalsha_usec_per_call(r)
    r.call("CONFIG", "RESETSTAT")
    for _ in range(max(50, iterations // 4)):
        record([rnd.randbytes(8) for _ in range(blocks)], pods[:2])   # a new chain: every entry written
    _, _, new_usec = evalsha_usec_per_call(r)
    # Calibration: an empty script with the same keys (what this machine charges for EVALSHA itself).
    empty = r.call("SCRIPT", "LOAD", "return 1").decode()
    r.call("CONFIG", "RESETSTAT")
    call = Resp.encode("EVALSHA", empty, len(keys), *keys)
    for _ in range(iterations):
        r.s.sendall(call)
        r.read()
    _, _, empty_usec = evalsha_usec_per_call(r)
    rtts.sort()
    return (rtts[len(rtts) // 2] * 1e6, rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1e6, lookup_usec, lookup_cpu,
            held_usec, new_usec, empty_usec)


def histogram_quantile(metrics_port, name, q):
    """Upper bucket bound holding quantile q of a Prometheus histogram on epp's /metrics."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    buckets = []
    for line in text.splitlines():
        m = re.match(name + r'_bucket\{le="([^"]+)"\} ([\d.e+]+)', line)
        if m:
            buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return float("inf")


def decisions(port, quick):
    harness.EPP_BIN = os.environ.get("EPP_BIN") or build_release()
    body_file = prepared_streams()["4KB body"]
    requests = 20_000 if quick else 200_000
    rows = []
    r = Resp(port)
    runs = [(name, extra, conc) for conc in ((4, 4), (16, 32))
            for name, extra in [("local index", []), ("redis index", [f"--redis-url=redis://127.0.0.1:{port}"])]]
    for name, extra, (clients, streams) in runs:
        r.call("FLUSHALL")
        epp = harness.start_epp([18001, 18002, 18003, 18004], workers=1, extra_args=extra)
        try:
            time.sleep(0.5)
            url = f"http://127.0.0.1:{epp.grpc_port}/envoy.service.ext_proc.v3.ExternalProcessor/Process"
            hdrs = ["content-type: application/grpc", "te: trailers"]
            h2load(url, body_file, 2000, 10, 10, extra_headers=hdrs)   # warm-up
            r.call("CONFIG", "RESETSTAT")
            fb0 = harness.prometheus_values(epp.metrics_port, "epp_prefix_index_redis_fallbacks_total")
            routed0, c0 = routed(epp.metrics_port), cpu_seconds(epp.proc.pid)
            res = h2load(url, body_file, requests, clients, streams, extra_headers=hdrs)
            cpu = cpu_seconds(epp.proc.pid) - c0
            decided = routed(epp.metrics_port) - routed0
            if decided != res["succeeded"] or res["failed"]:
                raise SystemExit(f"{name}: {res['succeeded']} ok, {res['failed']} failed, {decided} decisions")
            calls, usec, _ = evalsha_usec_per_call(r)
            mgets, mget_usec, _ = usec_per_call(r, "mget")
            fb = {k: v - fb0.get(k, 0) for k, v in harness.prometheus_values(epp.metrics_port, "epp_prefix_index_redis_fallbacks_total").items()
                  if v - fb0.get(k, 0)}
            reasons = ", ".join(f"{k.split(chr(34))[1]} {int(v)}" for k, v in fb.items())
            p50 = histogram_quantile(epp.metrics_port, "epp_prefix_index_redis_lookup_duration_seconds", 0.5)
            p99 = histogram_quantile(epp.metrics_port, "epp_prefix_index_redis_lookup_duration_seconds", 0.99)
            rtt = "–" if name == "local index" else f"≤ {p50 * 1e6:.0f} / ≤ {p99 * 1e6:.0f}"
            rows.append(f"| {name} | {clients * streams} | {res['rps']:.0f} | {cpu / decided * 1e6:.2f} | {rtt} | "
                        f"{(usec + mget_usec) / max(decided, 1):.1f} ({mgets / max(decided, 1):.2f} MGET, "
                        f"{calls / max(decided, 1):.2f} EVALSHA) | "
                        f"{int(sum(fb.values()))} {reasons} | {res['succeeded']} |")
            if name == "redis index":   # the scripts benchmarked in part 1 are the ones epp loaded
                shas = lua_shas()
                assert r.call("SCRIPT", "EXISTS", *shas.values()) == [1] * len(shas), "script source mismatch"
        finally:
            epp.stop()
    return rows


def lua_shas():
    import hashlib
    return {k: hashlib.sha1(v.encode()).hexdigest() for k, v in lua_scripts().items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    args = ap.parse_args()
    redis = harness.start_redis()
    try:
        r = Resp(redis.port)
        shas = {k: r.call("SCRIPT", "LOAD", v).decode() for k, v in lua_scripts().items()}
        assert shas == lua_shas()
        iterations = 300 if args.quick else 3000
        lines = ["| blocks | candidates | lookup (MGET) RTT p50 µs | lookup RTT p99 µs | lookup usec_per_call | lookup server CPU µs "
                 "| record usec_per_call, 2 pods: held / new chain | empty script, same keys, usec_per_call |",
                 "|---|---|---|---|---|---|---|---|"]
        for blocks in (16, 64, 256):
            for cands in (8, 64, 256):
                p50, p99, lu, cpu, held, new, empty = lookup_cost(redis.port, shas, blocks, cands, iterations)
                lines.append(f"| {blocks} | {cands} | {p50:.0f} | {p99:.0f} | {lu:.1f} | {cpu:.1f} | {held:.1f} / {new:.1f} "
                             f"| {empty:.1f} |")
                print(lines[-1], flush=True)
        lines += ["", "| index | concurrent streams | decisions/s | epp CPU µs/decision | epp lookup RTT p50 / p99 µs (histogram bucket) | "
                  "Redis CPU µs/decision | fallbacks | decisions |", "|---|---|---|---|---|---|---|---|"]
        lines += decisions(redis.port, args.quick)
        lines += ["", f"Load average during the run: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min) on a "
                  "machine shared with other builds: usec_per_call is wall time inside Redis (includes preemption), "
                  "server CPU is `INFO cpu` time per lookup (includes reading and answering the request)."]
    finally:
        redis.stop()
    print("\n".join(lines))
    if not args.quick:
        append_results("Redis prefix index (loopback redis-server 7.0, one epp worker, release build)", lines,
                       "python3 benchmarks/bench_redis_index.py")


if __name__ == "__main__":
    main()
