"""Closed-loop HTTP/1.1 load through Envoy for the fault tests: N client threads, each on its own keep-alive
connection, every request's outcome recorded. A request is "lost" unless it got a complete, well-formed answer
with an allowed status (a transport error, a timeout, a truncated body and an unexpected status are all lost)."""
import http.client
import itertools
import json
import os
import threading
import time

from harness import EPP_BIN, Process, free_port, wait_port

SIM_BIN = os.environ.get("EPP_SIM_BIN", os.path.join(os.path.dirname(EPP_BIN), "epp-sim"))
MODEL = "m"


def start_sim(extra=()):
    """One simulated vLLM server in its own process (so it can be killed alone), fast latency model."""
    port = free_port()
    p = Process([SIM_BIN, "--port", str(port), "--count", "1", "--model", MODEL, "--time-scale", "0.02",
                 "--max-num-seqs", "256", "--max-waiting", "100000", *extra], "epp-sim")
    wait_port(port)
    p.port = port
    return p


def completion_body(i, prefix="", stream=False, max_tokens=4):
    return json.dumps({"model": MODEL, "prompt": f"{prefix}question {i}: what is {i} squared?",
                       "max_tokens": max_tokens, "stream": stream}).encode()


class Outcome:
    __slots__ = ("index", "status", "ok", "backend", "started", "ended", "error")

    def __init__(self, index, started):
        self.index, self.started = index, started
        self.status = self.backend = self.error = None
        self.ok = False
        self.ended = None


class Load:
    """Runs until `stop()` is called and at least `minimum` requests were sent. `body(i)` makes request i's
    body; `allowed` statuses count as answered (200 must carry a complete body; others any body)."""

    def __init__(self, port, concurrency, minimum, body=completion_body, stream=False, allowed=(200,), timeout=20.0,
                 path="/v1/completions"):
        self.port, self.concurrency, self.minimum = port, concurrency, minimum
        self.body, self.stream, self.allowed, self.timeout, self.path = body, stream, allowed, timeout, path
        self.outcomes = []
        self.lock = threading.Lock()
        self.counter = itertools.count()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(concurrency)]

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 10)
        assert not any(t.is_alive() for t in self.threads), "a client thread hangs"
        self.elapsed = time.monotonic() - self.t0
        return self

    @property
    def sent(self):
        with self.lock:
            return len(self.outcomes)

    def _worker(self):
        conn = None
        while True:
            i = next(self.counter)
            if self.stopping.is_set() and i >= self.minimum:
                break
            o = Outcome(i, time.monotonic())
            with self.lock:
                self.outcomes.append(o)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn.request("POST", self.path, body=self.body(i), headers={"content-type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                o.status = r.status
                o.backend = r.getheader("x-inference-port") or r.getheader("x-backend-port")
                o.ok = r.status in self.allowed and (r.status != 200 or self._complete(data))
                if not o.ok:
                    o.error = f"status {r.status}: {data[:200]!r}"
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                o.error = repr(e)
                if conn is not None:
                    conn.close()
                conn = None
            o.ended = time.monotonic()
        if conn is not None:
            conn.close()

    def _complete(self, data):
        if self.stream:
            return data.rstrip().endswith(b"data: [DONE]")
        try:
            return bool(json.loads(data).get("choices"))
        except ValueError:
            return False

    # results

    def lost(self):
        return [o for o in self.outcomes if not o.ok]

    def statuses(self):
        out = {}
        for o in self.outcomes:
            key = o.status if o.status is not None else "transport"
            out[key] = out.get(key, 0) + 1
        return out

    def max_latency(self):
        return max((o.ended - o.started) for o in self.outcomes if o.ended is not None)

    def summary(self):
        lost = self.lost()
        rate = len(self.outcomes) / self.elapsed if getattr(self, "elapsed", 0) else 0
        return (f"sent {len(self.outcomes)} with {self.concurrency} in flight in {getattr(self, 'elapsed', 0):.1f} s "
                f"({rate:.0f}/s), lost {len(lost)}, statuses {self.statuses()}, max latency {self.max_latency():.2f} s"
                + (f", e.g. {[o.error for o in lost[:3]]}" if lost else ""))


def wait_for(f, timeout=15.0, what="condition", interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))
