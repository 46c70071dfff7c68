#!/usr/bin/env python3
"""Question: what does the shared Redis prefix index cost per decision?

1. Command costs against a loopback redis-server for 16/64/256 request blocks × 8/64/256 candidate pods: the
   lookup `MGET` of the block keys epp sends (the walk for each candidate's run happens in epp; this script
   repeats it to check the index contents), one round trip per lookup; and the records epp sends after a pick
   (decode + prefill): a chain both pods hold = one `ZADD XX` of its segments per pod; a conversation's next
   turn (+1/8 new blocks) and a chain nobody has seen = one `EVALSHA` of the exact Lua record script (read from
   RedisPrefixScripts.swift; epp is asked `SCRIPT EXISTS` to prove they are the same bytes). Reports the round
   trip seen by this Python client (p50/p99: an upper bound, the client adds its own µs) and Redis time per call
   (`INFO commandstats` usec_per_call).
   Index contents per cell: every candidate holds the first quarter of the chain (a shared system prompt) and
   its own continuation; two candidates hold the whole request (a full hit for them).
2. Picks through the release `epp` one at a time (4 endpoints, one worker) per workload (hot prefix, conversation
   turns, all-new prompts at 64 blocks; conversation turns at 256 blocks): Redis CPU and time per pick with
   lookups and records together, and epp's own lookup round trip histogram (the time Redis adds to a request).
3. Decisions/s of the release `epp` (one worker, h2load direct, 4 KB completions body = 64 blocks, 4 endpoints)
   with the in-process index vs `--redis-url` (every decision: one lookup MGET; records at most once a second
   per pod and chain), with epp's own Redis lookup round trip (histogram) and Redis CPU per decision.
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


ENTRY = 16   # bytes per (block, pod) entry in a block value: pod id, segment id


def runs_of(values, pods):
    """The walk epp does over an MGET reply: per candidate, blocks held from the first without a gap."""
    counts, alive = [0] * len(pods), list(range(len(pods)))
    for v in values:
        if v is None:
            break
        held = {v[i:i + 8] for i in range(0, len(v), ENTRY)}
        alive = [a for a in alive if pods[a] in held]
        for a in alive:
            counts[a] += 1
        if not alive:
            break
    return counts


def segments_of(values, pod, run):
    """The segments along a pod's held run (what epp touches), chain order, each once."""
    out = []
    for v in values[:run]:
        for i in range(0, len(v), ENTRY):
            if v[i:i + 8] == pod:
                if not out or out[-1] != v[i + 8:i + 16]:
                    out.append(v[i + 8:i + 16])
                break
    return out


def redis_cpu(r):
    """used_cpu_user + used_cpu_sys of the server (seconds): unlike usec_per_call it excludes time the server
    thread was not running (this machine is shared)."""
    info = r.call("INFO", "cpu").decode()
    return float(re.search(r"used_cpu_user:([\d.]+)", info).group(1)) + float(re.search(r"used_cpu_sys:([\d.]+)", info).group(1))


def now_ms():
    return int(time.time() * 1000)


REALTIME = False   # --realtime: SCHED_FIFO instead of nice -10


def prioritize(pid):
    """Runs every thread of `pid` at nice -10 — or, with --realtime, under SCHED_FIFO (priority 10), which
    preempts every ordinary process — when allowed (root): on a machine shared with builds, a Redis or epp
    preempted in the middle of a command would charge the builds' time to the index. Returns whether it worked."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            if REALTIME:
                os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(10))
            else:
                os.setpriority(os.PRIO_PROCESS, int(tid), -10)
        return True
    except OSError:
        return False


def lookup_cost(port, shas, blocks, cands, iterations):
    r = Resp(port)
    r.call("FLUSHALL")
    rnd = random.Random(blocks * 1000 + cands)
    ns = b"bench:{%016x}" % rnd.getrandbits(64)
    pods = [rnd.randbytes(8) for _ in range(cands)]
    chain = [rnd.randbytes(8) for _ in range(blocks)]
    shared = blocks // 4

    def record_call(hashes, pod_list, skips=None, touches=None):
        """The EVALSHA epp sends: `hashes` = the blocks after the shortest held run; per pod its skip and the
        segments of its held run."""
        keys = [ns + b":b:" + h for h in hashes]
        argv = [1, now_ms(), len(hashes), len(pod_list)]   # a batch of one request
        for i, p in enumerate(pod_list):
            segs = touches[i] if touches else []
            argv += [p, 31250, b"pod-" + p.hex().encode(), skips[i] if skips else 0, len(segs), *segs]
        return Resp.encode("EVALSHA", shas["record"], len(keys), *keys, *argv)

    def record(*a, **k):
        r.s.sendall(record_call(*a, **k))
        return r.read()

    for _ in range(8):   # the two full-hit pods also hold 2 048 other blocks (a realistic, skiplist-encoded LRU)
        record([rnd.randbytes(8) for _ in range(256)], pods[:2])
    for i, p in enumerate(pods):
        own = chain if i < 2 else chain[:shared] + [rnd.randbytes(8) for _ in range(blocks - shared)]
        record(own, [p])
    keys = [ns + b":b:" + h for h in chain]
    lookup = Resp.encode("MGET", *keys)
    values = r.call("MGET", *keys)
    runs = runs_of(values, pods)
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
    n = max(50, iterations // 4)
    # Held chain (decode + prefill hold it all): a ZADD XX of the chain's segments per pod, no script.
    touches = [segments_of(values, p, blocks) for p in pods[:2]]
    r.call("CONFIG", "RESETSTAT")
    for _ in range(n):
        for p, segs in zip(pods[:2], touches):
            zargs = ["ZADD", ns + b":p:" + p, "XX"]
            for depth, seg in enumerate(segs):
                zargs += [now_ms() * 1024 + 1022 - depth, seg]
            r.call(*zargs)
    zcalls, zusec, _ = usec_per_call(r, "zadd")
    touch_usec = zusec / max(1, n)   # per pick (both pods)
    # A conversation's next turn: the pods hold the chain, the request adds 1/8 of its blocks (≥ 1) as new.
    new = max(1, blocks // 8)
    r.call("CONFIG", "RESETSTAT")
    for _ in range(n):
        record([rnd.randbytes(8) for _ in range(new)], pods[:2], skips=[0, 0], touches=touches)
    _, _, turn_usec = evalsha_usec_per_call(r)
    # The same next turn as epp sends it after a Redis lookup: per pod, pipelined APPEND per new block, SET of the
    # segment, one ZADD (touched + new segment), one HINCRBY; no script.
    r.call("CONFIG", "RESETSTAT")
    for _ in range(n):
        news = [rnd.randbytes(8) for _ in range(new)]
        pipeline = []
        for p, segs in zip(pods[:2], touches):
            for h in news:
                pipeline.append(Resp.encode("APPEND", ns + b":b:" + h, p + news[0]))
            pipeline.append(Resp.encode("SET", ns + b":s:" + p + news[0], b"".join(news)))
            zargs = ["ZADD", ns + b":p:" + p]
            for depth, seg in enumerate(segs + [news[0]]):
                zargs += [now_ms() * 1024 + 1022 - depth, seg]
            pipeline.append(Resp.encode(*zargs))
            pipeline.append(Resp.encode("HINCRBY", ns + b":n", p, new))
        r.s.sendall(b"".join(pipeline))
        for _ in pipeline:
            r.read()
    direct_usec = sum(usec_per_call(r, c)[1] for c in ("append", "set", "zadd", "hincrby")) / n
    # A request nobody has seen: every block new for both pods.
    r.call("CONFIG", "RESETSTAT")
    for _ in range(n):
        record([rnd.randbytes(8) for _ in range(blocks)], pods[:2])
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
            touch_usec, turn_usec, direct_usec, new_usec, empty_usec)


EARLY_STOP_LOOKUP = """
local out = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then break end
  out[i] = v
end
return out"""


def early_stop_cost(port, iterations):
    """What stopping at the first block nobody holds would save: a 64-key MGET whose chain ends after `held`
    blocks vs an MGET of just the held keys (a perfect early stop, which needs knowing the end beforehand) vs a
    Lua lookup that GETs block after block and stops at the first miss (the one-round-trip way to stop early).
    Values are 4 pods' entries (64 bytes), as in the index."""
    r = Resp(port)
    r.call("FLUSHALL")
    keys = [b"bench:{e}:b:" + os.urandom(8) for _ in range(64)]
    loop = r.call("SCRIPT", "LOAD", EARLY_STOP_LOOKUP).decode()
    rows = []
    for held in (0, 8, 32, 64):
        r.call("FLUSHALL")
        for k in keys[:held]:
            r.call("SET", k, os.urandom(64))
        cells = []
        for cmd, name in ((["MGET", *keys], "mget"), (["MGET", *keys[:max(1, held)]], "mget"),
                          (["EVALSHA", loop, len(keys), *keys], "evalsha")):
            r.call("CONFIG", "RESETSTAT")
            enc = Resp.encode(*cmd)
            for _ in range(iterations):
                r.s.sendall(enc)
                r.read()
            cells.append(usec_per_call(r, name)[2])
        rows.append(f"| {held} | {cells[0]:.1f} | {cells[1]:.1f} | {cells[2]:.1f} | {(cells[0] - cells[1]) / max(1, 64 - held):.3f} |")
        print(rows[-1], flush=True)
    return rows


def ping_floor(port, n=3000, gap=0.0015):
    """The machine's floor for any loopback round trip to Redis: PING from this process, one every `gap` seconds
    (the picks' cadence, so both ends wake from idle each time). Returns (p50, p99) µs."""
    r = Resp(port)
    rtts = []
    for _ in range(n):
        t0 = time.perf_counter()
        r.call("PING")
        rtts.append(time.perf_counter() - t0)
        time.sleep(gap)
    rtts.sort()
    return rtts[n // 2] * 1e6, rtts[int(n * 0.99)] * 1e6


def histogram_quantile(metrics_port, name, q):
    """Upper bucket bound holding quantile q of a Prometheus histogram on epp's /metrics (since start)."""
    after = histogram_buckets(metrics_port, name)
    return bucket_quantile([(le, 0) for le, _ in after], after, q)


def histogram_buckets(metrics_port, name):
    """(upper bound, cumulative count) of each bucket of a Prometheus histogram on epp's /metrics."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    out = []
    for line in text.splitlines():
        m = re.match(name + r'_bucket\{le="([^"]+)"\} ([\d.e+]+)', line)
        if m:
            out.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    return out


def bucket_quantile(before, after, q):
    """Upper bound of the bucket holding quantile q of the observations made between two snapshots."""
    delta = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    if not delta or delta[-1][1] == 0:
        return float("nan")
    for le, count in delta:
        if count >= q * delta[-1][1]:
            return le
    return float("inf")


WORKLOADS = {
    # name: (blocks per request, how a request is made from (rnd, conversation state))
    "hot prefix": 64,
    "conversation turns": 64,
    "all new": 64,
    "conversation turns, 256 blocks": 256,
}


def prompt_for(workload, blocks, rnd, system, histories):
    """A completions prompt of `blocks` × 64 bytes (approx-prefix blocks are 64 bytes by default).
    hot prefix: one prompt every time. conversation turns: a shared system prompt (1/2), one of 100
    conversations' history (3/8), a new question (1/8). all new: random text."""
    size = blocks * 64
    if workload == "hot prefix":
        return system[:size]
    if workload.startswith("conversation turns"):
        h = histories[rnd.randrange(len(histories))]
        question = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(size // 8))
        return system[:size // 2] + h[:size * 3 // 8] + question
    return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(size))


PICK_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: approx-prefix-cache-producer
  parameters: {redisBlockStride: %d}
- type: prefix-cache-scorer
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: prefix-cache-scorer, weight: 3}
  - {pluginRef: queue-scorer, weight: 2}
  - {pluginRef: kv-cache-utilization-scorer, weight: 2}
  - {pluginRef: max-score-picker}
"""


def top_level_usec(r):
    """Redis time of the index's top-level commands since the last SLOWLOG RESET (slowlog threshold 0 logs
    every command with its execution time; commands a script runs are inside its EVALSHA, not listed)."""
    per = {}
    for entry in r.call("SLOWLOG", "GET", "-1"):
        if entry[4] == b"?:0":   # a command a script ran (its time is inside the EVALSHA's)
            continue
        name = entry[3][0].decode().lower()
        if name in ("mget", "evalsha", "zadd", "sadd", "append", "set", "hincrby", "hset"):
            calls, usec = per.get(name, (0, 0))
            per[name] = (calls + 1, usec + entry[2])
    return per


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("a"): b"\a", ord("b"): b"\b",
            ord('"'): b'"', ord("\\"): b"\\"}


def monitor_args(line):
    """(client, [args]) of one MONITOR line: `+<time> [<db> <client>] "ARG" "ARG" ...` with Redis's
    sdscatrepr escapes (\\n \\r \\t \\a \\b \\" \\\\ \\xHH)."""
    head, _, rest = line.partition(b"] ")
    client = head.rsplit(b" ", 1)[-1]
    args, i, n = [], 0, len(rest)
    while i < n:
        if rest[i:i + 1] != b'"':
            i += 1
            continue
        i += 1
        out = bytearray()
        while rest[i:i + 1] != b'"':
            c = rest[i]
            if c == 0x5C:   # backslash
                nxt = rest[i + 1]
                if nxt == ord("x"):
                    out.append(int(rest[i + 2:i + 4], 16))
                    i += 4
                    continue
                out += _ESCAPES[nxt]
                i += 2
                continue
            out.append(c)
            i += 1
        args.append(bytes(out))
        i += 1
    return client, args


class Monitor:
    """Every command Redis runs, captured through MONITOR on its own connection (a reader thread). `mark(tag)`
    sends ECHO tag from another connection; `split(tag)` is the index of that mark in the capture."""

    def __init__(self, port):
        import threading
        self.port = port
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.sendall(Resp.encode("MONITOR"))
        self.f = self.s.makefile("rb")
        assert self.f.readline() == b"+OK\r\n"
        self.lines = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(self.f.readline, b"")), daemon=True)
        self.thread.start()

    def mark(self, tag):
        """Returns once the capture holds the mark (so everything Redis ran before it is captured)."""
        Resp(self.port).call("ECHO", tag)
        needle = b'"ECHO" "%s"' % tag.encode()
        while not any(needle in l for l in self.lines[-50:]):
            time.sleep(0.005)

    def commands(self, start_tag, end_tag):
        """The commands between two marks, top level only (a script's own calls are inside its EVALSHA), without
        the benchmark's own (ECHO marks, INFO, CONFIG, SLOWLOG, FLUSHALL)."""
        cmds, inside = [], False
        for line in list(self.lines):
            client, args = monitor_args(line)
            if args[:1] == [b"ECHO"]:
                if args[1] == start_tag.encode():
                    inside = True
                elif args[1] == end_tag.encode():
                    break
                continue
            if client == b"lua" or args[0].upper() in (b"INFO", b"CONFIG", b"SLOWLOG", b"FLUSHALL", b"MONITOR"):
                continue
            if inside or start_tag == "":
                cmds.append(args)
        return cmds

    def close(self):
        self.s.shutdown(socket.SHUT_RDWR)   # Redis drops the monitor (or it would format every replayed command)
        self.thread.join()
        self.f.close()
        self.s.close()


def replay(port, setup, measured, connections=4, slowlog=False):
    """Replays a captured command stream against an emptied Redis: `setup` (epp's startup and the warm-up picks)
    on one connection, then `measured`, cut into picks (a pick starts at its lookup MGET; its records follow it)
    and dealt round-robin to `connections` connections, each pick one write, none waiting for replies. This is
    Redis serving a fleet flat out: the figures are Redis's own cost per pick with no client in the way.
    `slowlog`: log every command (its cost is then in the CPU figure) and return the top-level commands' (calls,
    usec) by command, as SLOWLOG has it — INFO commandstats would also count the commands scripts run, which are
    inside their EVALSHA's time too. Returns (picks, (calls, usec) by command or {} without slowlog, process CPU
    µs/pick, wall seconds)."""
    import threading
    r = Resp(port)
    r.call("FLUSHALL")
    r.call("SCRIPT", "FLUSH")

    def run(streams):
        """Sends each connection's list of byte chunks, then an ECHO of a random token; waits for every echo."""
        threads = []
        for chunks in streams:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            token = os.urandom(16).hex().encode()
            end = b"$32\r\n" + token + b"\r\n"

            def drain(s=s, end=end):
                tail = b""
                while not tail.endswith(end):
                    data = s.recv(1 << 20)
                    if not data:
                        raise RuntimeError("replay connection closed")
                    tail = (tail + data)[-64:]

            def send(s=s, chunks=chunks, token=token):
                for c in chunks:
                    s.sendall(c)
                s.sendall(Resp.encode("ECHO", token))

            threads += [threading.Thread(target=drain), threading.Thread(target=send)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run([[b"".join(Resp.encode(*a) for a in setup)]])
    picks = []
    for args in measured:   # a pick starts at its lookup (an MGET of block keys; evictions MGET segment keys)
        if not picks or (args[0].upper() == b"MGET" and b":b:" in args[1]):
            picks.append([])
        picks[-1].append(Resp.encode(*args))
    streams = [[b"".join(p) for p in picks[i::connections]] for i in range(connections)]
    threshold = r.call("CONFIG", "GET", "slowlog-log-slower-than")[1]
    r.call("CONFIG", "SET", "slowlog-log-slower-than", "0" if slowlog else "-1")
    r.call("SLOWLOG", "RESET")
    cpu0 = redis_cpu(r)
    t0 = time.perf_counter()
    run(streams)
    wall = time.perf_counter() - t0
    cpu = (redis_cpu(r) - cpu0) / len(picks) * 1e6
    per = {}
    r.call("CONFIG", "SET", "slowlog-log-slower-than", threshold)
    if slowlog:
        for entry in r.call("SLOWLOG", "GET", "-1"):
            name = entry[3][0].decode().lower()
            if name not in ("echo", "config", "slowlog", "info"):
                calls, usec = per.get(name, (0, 0))
                per[name] = (calls + 1, usec + entry[2])
    return len(picks), per, cpu, wall


def picks_through_epp(redis_port, quick, only=None):
    """Sequential picks (concurrency 1) through a release epp with --redis-url, per workload and
    redisBlockStride: Redis CPU and top-level command time per pick (lookups and records together), epp's own
    lookup round trip (the time a request is parked: what Redis adds), and the client-side pick latency
    against an epp with the local index."""
    import grpc
    from test_extproc_grpc import Stream, body_msg, headers_msg
    harness.EPP_BIN = os.environ.get("EPP_BIN") or build_release()
    r = Resp(redis_port)
    r.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
    r.call("CONFIG", "SET", "slowlog-max-len", "2000000")   # every command of a run (≈ 30 per pick at most)
    backends = [harness.RecordingBackend() for _ in range(4)]
    ports = [b.port for b in backends]
    rnd0 = random.Random(7)
    system = "".join(rnd0.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(256 * 64))
    histories = ["".join(rnd0.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(256 * 64)) for _ in range(100)]
    picks = 300 if quick else 3000
    rows, replays = [], []

    def pick(ch, prompt):
        st = Stream(ch)
        t0 = time.perf_counter()
        st.send(headers_msg())
        st.send(body_msg(('{"model":"m","prompt":"%s"}' % prompt).encode(), True))
        resp = st.recv()
        dt = time.perf_counter() - t0
        st.recv()
        st.close()
        if resp.WhichOneof("response") != "request_headers":
            raise SystemExit(f"not routed: {resp}")
        return dt

    def q(xs, f):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(len(xs) * f))] * 1e6

    def run(workload, blocks, extra, concurrency=1, capture=False):
        """One epp, warm-up then the measured picks. `capture`: MONITOR records epp's whole command stream for
        the replay (a separate run: Redis formats every command for a monitor, which would slow the picks)."""
        r.call("FLUSHALL")
        monitor = Monitor(redis_port) if capture else None
        epp = harness.start_epp(ports, extra_args=extra)
        prioritize(epp.proc.pid)
        ch = grpc.insecure_channel(f"127.0.0.1:{epp.grpc_port}")
        try:
            time.sleep(0.5)
            rnd = random.Random(11)
            for _ in range(picks // 2):   # warm-up: the conversations' prefixes get recorded
                pick(ch, prompt_for(workload, blocks, rnd, system, histories))
            time.sleep(0.05)
            if monitor:
                monitor.mark("warm-end")
            r.call("SLOWLOG", "RESET")
            cpu0 = redis_cpu(r)
            h0 = histogram_buckets(epp.metrics_port, "epp_prefix_index_redis_lookup_duration_seconds")
            fb0 = sum(harness.prometheus_values(epp.metrics_port, "epp_prefix_index_redis_fallbacks_total").values())
            prompts = [prompt_for(workload, blocks, rnd, system, histories) for _ in range(picks)]
            if concurrency == 1:
                times = [pick(ch, p) for p in prompts]
            else:   # picks overlap: records of one loop's batch window share a script call
                from concurrent.futures import ThreadPoolExecutor
                with ThreadPoolExecutor(concurrency) as pool:
                    times = list(pool.map(lambda p: pick(ch, p), prompts))
            time.sleep(0.05)   # the last records are fire and forget
            cpu = (redis_cpu(r) - cpu0) / picks * 1e6
            if monitor:
                monitor.mark("measured-end")
            per = top_level_usec(r)
            h1 = histogram_buckets(epp.metrics_port, "epp_prefix_index_redis_lookup_duration_seconds")
            fb = sum(harness.prometheus_values(epp.metrics_port, "epp_prefix_index_redis_fallbacks_total").values()) - fb0
            stream = (monitor.commands("", "warm-end"), monitor.commands("warm-end", "measured-end")) if monitor else None
            return times, cpu, per, h0, h1, int(fb), stream
        finally:
            ch.close()
            epp.stop()
            if monitor:
                monitor.close()

    try:
        for workload, blocks in WORKLOADS.items():
            if only and workload != only:
                continue
            for concurrency in ((1, 16) if workload == "conversation turns" else (1,)):
                local_times = run(workload, blocks, [], concurrency)[0]
                for stride in (1, 4):
                    extra = [f"--redis-url=redis://127.0.0.1:{redis_port}", f"--config-text={PICK_CONFIG % stride}"]
                    times, cpu, per, h0, h1, fb, _ = run(workload, blocks, extra, concurrency)
                    stream = run(workload, blocks, extra, concurrency, capture=True)[-1]
                    usec = sum(u for _, u in per.values()) / picks
                    cmds = ", ".join(f"{c} {per[c][0] / picks:.2f} ({per[c][1] / max(1, per[c][0]):.1f} µs)"
                                     for c in ("mget", "evalsha", "append", "set", "zadd", "hincrby") if c in per)
                    rows.append(f"| {workload} | {blocks} | {concurrency} | {stride} | {picks} | **{usec:.1f}** | {cpu:.1f} | {cmds} "
                                f"| ≤ {bucket_quantile(h0, h1, 0.5) * 1e6:.0f} / ≤ {bucket_quantile(h0, h1, 0.99) * 1e6:.0f} "
                                f"| {q(local_times, 0.5):.0f} / {q(local_times, 0.99):.0f} | {q(times, 0.5):.0f} / {q(times, 0.99):.0f} "
                                f"| {fb} |")
                    print(rows[-1], flush=True)
                    n, _, rcpu, wall = replay(redis_port, *stream)
                    _, rper, _, _ = replay(redis_port, *stream, slowlog=True)
                    rusec = sum(u for _, u in rper.values()) / n
                    rcmds = ", ".join(f"{c} {calls / n:.2f} ({u / max(1, calls):.1f} µs)"
                                      for c, (calls, u) in sorted(rper.items(), key=lambda kv: -kv[1][1]))
                    replays.append(f"| {workload} | {blocks} | {concurrency} | {stride} | {n} | **{rusec:.1f}** | **{rcpu:.1f}** "
                                   f"| {1e6 / rcpu:,.0f} | {n / wall:,.0f} ({rcpu * n / wall / 1e4:.0f} %) | {rcmds} |")
                    print(replays[-1], flush=True)
    finally:
        r.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        for b in backends:
            b.stop()
    return rows, replays


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
    ap.add_argument("--picks-only", action="store_true", help="only part 2 (picks through epp per workload and stride)")
    ap.add_argument("--only", choices=list(WORKLOADS), help="with --picks-only: just this workload")
    ap.add_argument("--realtime", action="store_true",
                    help="run Redis, epp and this client under SCHED_FIFO (root): what the index adds without the neighbours' load")
    args = ap.parse_args()
    global REALTIME
    REALTIME = args.realtime
    if REALTIME:
        prioritize(os.getpid())
    redis = harness.start_redis()
    reniced = prioritize(redis.proc.pid)
    try:
        r = Resp(redis.port)
        shas = {k: r.call("SCRIPT", "LOAD", v).decode() for k, v in lua_scripts().items()}
        assert shas == lua_shas()
        iterations = 300 if args.quick else 3000
        lines = []
        if not args.picks_only:
            lines = ["| blocks | candidates | lookup (MGET) RTT p50 µs | lookup RTT p99 µs | lookup usec_per_call | lookup server CPU µs "
                     "| record usec, 2 pods: held chain (2 × ZADD XX) / next turn (+1/8 new) by EVALSHA / by plain commands / new chain (EVALSHA) "
                     "| empty script, same keys, usec_per_call |",
                     "|---|---|---|---|---|---|---|---|"]
            for blocks in (16, 64, 256):
                for cands in (8, 64, 256):
                    p50, p99, lu, cpu, touch, turn, direct, new, empty = lookup_cost(redis.port, shas, blocks, cands, iterations)
                    lines.append(f"| {blocks} | {cands} | {p50:.0f} | {p99:.0f} | {lu:.1f} | {cpu:.1f} "
                                 f"| {touch:.1f} / {turn:.1f} / {direct:.1f} / {new:.1f} | {empty:.1f} |")
                    print(lines[-1], flush=True)
        lines += ["", "Picks through epp, one at a time (Python gRPC client), per workload and `redisBlockStride`: Redis time "
                  "per pick = execution time of the index's top-level commands (`SLOWLOG` at threshold 0: lookup MGET, "
                  "records: APPEND/SET/ZADD/HINCRBY after a Redis lookup, EVALSHA (incl. what it calls) after a fallback; touch ZADD), then Redis process CPU per pick (`INFO cpu`: adds "
                  "reading/answering each command — one syscall pair per command at concurrency 1 — and the event loop), "
                  "top-level commands per pick (mean µs each), epp's lookup round trip (histogram bucket bounds: the time a "
                  "request waits for Redis), client-side pick latency with the local index and with Redis (Python client "
                  "included), fallbacks to the local index.", "",
                  "| workload | blocks | concurrent picks | stride | picks | Redis command µs/pick | Redis process CPU µs/pick | commands/pick "
                  "| epp lookup RTT p50 / p99 µs | pick latency local p50 / p99 µs | pick latency redis p50 / p99 µs | fallbacks |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        if not args.picks_only:
            lines += ["", "Early stop: Redis time (`usec_per_call`) of a lookup of 64 block keys whose chain ends after `held` "
                      "blocks — the MGET epp sends (all 64 keys), an MGET of only the held keys (a perfect early stop), "
                      "and a Lua script that GETs key after key and stops at the first miss (the one-round-trip way "
                      "to stop early); last column: what each key past the chain's end costs the MGET.", "",
                      "| held | MGET 64 keys µs | MGET held keys only µs | Lua GET loop with early stop µs | µs per key past the end |",
                      "|---|---|---|---|---|"]
            lines += early_stop_cost(redis.port, iterations)
        floor = ping_floor(redis.port, 300 if args.quick else 3000)
        rows, replays = picks_through_epp(redis.port, args.quick, args.only)
        lines += rows
        lines += ["", "Redis cost per pick at saturation: each row's epp command stream above, captured with MONITOR (epp's "
                  "connection only, top-level commands) and replayed against an emptied Redis — startup and warm-up first, "
                  "then the measured picks dealt round-robin over 4 connections, one write per pick, nobody waiting for "
                  "replies (Redis serving a fleet of replicas flat out, no client or epp on its time). Command µs = "
                  "time inside the commands (what `INFO commandstats` usec counts, the issue's measure); process CPU = `INFO cpu` user+sys (adds reading, "
                  "parsing and answering); picks/s one core = 10⁶ / process CPU µs; replayed picks/s = what this run "
                  "reached (Redis CPU busy share in brackets: below 100 % the Python sender was the limit). Command µs and the "
                  "commands per pick come from a second replay with SLOWLOG at threshold 0 (top-level commands only: "
                  "a script's own calls are inside its EVALSHA), CPU and picks/s from the first.", "",
                  "| workload | blocks | concurrent picks | stride | picks | Redis command µs/pick | Redis process CPU µs/pick "
                  "| picks/s one Redis core | replayed picks/s (Redis busy) | commands per pick (mean µs each) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += replays
        if not args.picks_only:
            lines += ["", "| index | concurrent streams | decisions/s | epp CPU µs/decision | epp lookup RTT p50 / p99 µs (histogram bucket) | "
                      "Redis CPU µs/decision | fallbacks | decisions |", "|---|---|---|---|---|---|---|---|"]
            lines += decisions(redis.port, args.quick)
        lines += ["", f"Load average during the run: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min) on a "
                  "machine shared with other builds; redis-server and the picks' epp "
                  + (("ran under SCHED_FIFO with this client (--realtime)" if REALTIME else "ran at nice -10") if reniced
                     else "could not be reniced (not root)")
                  + f". The machine's floor for a loopback round trip at the picks' cadence (PING from this client every "
                  f"1.5 ms): p50 {floor[0]:.0f} / p99 {floor[1]:.0f} µs"
                  + ". usec_per_call and SLOWLOG times are wall time inside Redis (include preemption), "
                  "server CPU is `INFO cpu` time (includes reading and answering each command)."]
    finally:
        redis.stop()
    print("\n".join(lines))
    if not args.quick:
        append_results("Redis prefix index (loopback redis-server 7.0, one epp worker, release build)"
                       + (", picks only" if args.picks_only else "") + (f", {args.only}" if args.only else "")
                       + (", realtime" if REALTIME else ""), lines,
                       "python3 benchmarks/bench_redis_index.py" + (" --picks-only" if args.picks_only else "")
                       + (f" --only '{args.only}'" if args.only else "") + (" --realtime" if REALTIME else ""))


if __name__ == "__main__":
    main()
