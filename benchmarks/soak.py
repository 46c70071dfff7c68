#!/usr/bin/env python3
"""Soak: a steady open-loop rate of streaming (SSE) completions through Envoy → epp → a simulated vLLM fleet for
--minutes, sampling the picker's resident memory (/proc/PID/status VmRSS), open file descriptors (/proc/PID/fd)
and per-loop queue sizes (`epp_event_loop_queue_size` on /metrics). Prints the start/end table and exits 1 when
a request failed, a sanitizer reported anything, or growth from the start window to the end window exceeds:

  RSS      end ≤ start × (1 + --rss-growth-pct/100) + 8 MiB
  fds      end ≤ start + 8
  queues   per loop and queue: end ≤ start × 1.5 + 16   (streams/timers follow the in-flight count, which
           a steady rate keeps steady; a leak grows without bound)

"start" is the median of the first three samples after the warm-up (10 % of the run, at least 10 s), "end" the
median of the last three while the load still runs. EPP_BIN runs another epp binary (e.g. an ASan/TSan build);
its log is scanned for sanitizer reports.

  python3 benchmarks/soak.py                        # 10 minutes at 300 requests/s
  python3 benchmarks/soak.py --quick                # CI: 1 minute at 100 requests/s
  EPP_BIN=.build-asan/debug/epp python3 benchmarks/soak.py --minutes 3 --rate 40 --rss-growth-pct 50
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import build_release, cpu_seconds, git_commit, harness

SANITIZER_MARKERS = ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                     "SUMMARY: AddressSanitizer", "SUMMARY: ThreadSanitizer", "runtime error:"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def loop_queues(metrics_port):
    """{(loop, queue): value} from epp_event_loop_queue_size."""
    out = {}
    for labels, v in harness.prometheus_values(metrics_port, "epp_event_loop_queue_size").items():
        parts = dict(p.split("=", 1) for p in labels.strip("{}").split(","))
        out[(int(parts["loop"].strip('"')), parts["queue"].strip('"'))] = v
    return out


class Sampler(threading.Thread):
    def __init__(self, pid, metrics_port, every):
        super().__init__(daemon=True)
        self.pid, self.metrics_port, self.every = pid, metrics_port, every
        self.samples = []
        self.stopping = threading.Event()

    def run(self):
        t0 = time.monotonic()
        while not self.stopping.is_set():
            try:
                self.samples.append({"t": time.monotonic() - t0, "rss_kib": rss_kib(self.pid), "fds": fd_count(self.pid),
                                     "queues": loop_queues(self.metrics_port), "load": os.getloadavg()[0],
                                     "cpu_s": cpu_seconds(self.pid)})
            except (OSError, ValueError) as e:   # the picker went away: recorded, the check fails later
                self.samples.append({"t": time.monotonic() - t0, "error": repr(e)})
            self.stopping.wait(self.every)


def free_run(count):
    while True:
        base = harness.free_port()
        if all(_free(base + i) for i in range(count)):
            return base


def _free(port):
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def median_window(samples, key):
    return statistics.median(key(s) for s in samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=300.0, help="requests per second (Poisson arrivals)")
    ap.add_argument("--quick", action="store_true", help="CI size: 1 minute at 100/s")
    ap.add_argument("--servers", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="epp event loops")
    ap.add_argument("--envoy-workers", type=int, default=1,
                    help="Envoy worker threads; each opens its own ext_proc connection, and epp's kernel-balanced "
                         "listeners may put them on different loops (with 1 every stream is on one loop)")
    ap.add_argument("--rss-growth-pct", type=float, default=10.0)
    ap.add_argument("--json", help="write samples and verdict here")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.rate = 1.0, 100.0
    seconds = args.minutes * 60
    every = 2.0 if seconds <= 120 else 5.0

    epp_bin = os.environ.get("EPP_BIN") or build_release("epp")
    harness.EPP_BIN = epp_bin
    sim_bin, load_bin = build_release("epp-sim"), build_release("epp-load")

    base = free_run(args.servers)
    sim = harness.Process([sim_bin, "--count", str(args.servers), "--port", str(base), "--model", "m",
                           "--time-scale", "0.1", "--max-num-seqs", "64", "--kv-blocks", "4096"], "soak-sim")
    ports = [base + i for i in range(args.servers)]
    for p in ports:
        harness.wait_port(p, 60)
    epp = harness.start_epp(ports, workers=args.workers)
    envoy = harness.start_envoy(epp.grpc_port, concurrency=args.envoy_workers)
    report_path = tempfile.NamedTemporaryFile(prefix="soak-load-", suffix=".json", delete=False).name
    load_avg_start = os.getloadavg()
    sampler = Sampler(epp.proc.pid, epp.metrics_port, every)
    failures = []
    try:
        harness.wait_port(envoy.listener_port)
        time.sleep(1.0)   # first scrapes of the fleet
        sampler.start()
        requests = int(args.rate * seconds)
        load = subprocess.run([load_bin, "--target", f"http://127.0.0.1:{envoy.listener_port}", "--model", "m",
                               "--workload", "shared-prefix", "--stream", "--rate", str(args.rate),
                               "--requests", str(requests), "--groups", "16", "--system-prompt-tokens", "300",
                               "--question-tokens", "32", "--output-tokens", "16", "--timeout", "60", "--quiet",
                               "--json", report_path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=seconds + 600)
        sampler.stopping.set()
        sampler.join()
        if load.returncode != 0:
            failures.append(f"epp-load exited {load.returncode}: {load.stderr[-500:]}")
        with open(report_path) as f:
            rep = json.load(f)
        load_avg_end = os.getloadavg()
        # Envoy's view: overflows of its default circuit breakers (1,024 requests per cluster) and ext_proc errors
        envoy_view = {k: v for k, v in {**harness.envoy_stats(envoy.admin_port, "overflow"),
                                        **harness.envoy_stats(envoy.admin_port, "ext_proc.streams_failed"),
                                        **harness.envoy_stats(envoy.admin_port, "upstream_rq_timeout")}.items() if v}
        after_idle = {"rss_kib": rss_kib(epp.proc.pid), "fds": fd_count(epp.proc.pid)}
    finally:
        sampler.stopping.set()
        envoy.stop()
        rc = epp.stop(timeout=60)
        sim.stop()
    log = epp.output()

    samples = [s for s in sampler.samples if "error" not in s]
    if len(samples) != len(sampler.samples):
        failures.append("the picker stopped answering during the run")
    warm = max(10.0, 0.1 * seconds)
    measured = [s for s in samples if s["t"] >= warm]
    if len(measured) < 6:
        failures.append(f"only {len(measured)} samples after the warm-up")
        measured = samples
    head, tail = measured[:3], measured[-3:]
    start = {"rss_kib": median_window(head, lambda s: s["rss_kib"]), "fds": median_window(head, lambda s: s["fds"])}
    end = {"rss_kib": median_window(tail, lambda s: s["rss_kib"]), "fds": median_window(tail, lambda s: s["fds"])}
    keys = sorted(set().union(*(s["queues"].keys() for s in measured)))
    for k in keys:
        start[k] = median_window(head, lambda s: s["queues"].get(k, 0))
        end[k] = median_window(tail, lambda s: s["queues"].get(k, 0))
        peak = max(s["queues"].get(k, 0) for s in measured)
        if end[k] > start[k] * 1.5 + 16:
            failures.append(f"loop {k[0]} {k[1]} grew {start[k]:.0f} → {end[k]:.0f} (peak {peak:.0f})")
    if end["rss_kib"] > start["rss_kib"] * (1 + args.rss_growth_pct / 100) + 8192:
        failures.append(f"RSS grew {start['rss_kib']} → {end['rss_kib']} KiB")
    if end["fds"] > start["fds"] + 8:
        failures.append(f"fds grew {start['fds']} → {end['fds']}")
    if rep["errors"]:
        failures.append(f"{rep['errors']} of {rep['requests']} requests failed: {rep['errors_by_status']} {rep['error_samples'][:3]}")
    reports = [line for line in log.splitlines() if any(m in line for m in SANITIZER_MARKERS)]
    if reports:
        failures.append(f"{len(reports)} sanitizer report lines, first: {reports[0]}")
    if rc != 0:
        failures.append(f"epp exited {rc}")

    print(f"\nsoak: {args.minutes:g} min at {args.rate:g}/s SSE through Envoy ({args.envoy_workers} worker(s)), "
          f"epp {epp_bin} ({args.workers} loops), "
          f"commit {git_commit()}")
    print(f"requests {rep['requests']}, succeeded {rep['succeeded']}, failed {rep['errors']}, "
          f"achieved {rep['requests_per_second']:.1f}/s, load average {load_avg_start[0]:.2f} → {load_avg_end[0]:.2f}, "
          f"samples {len(samples)} every {every:g} s (start/end = medians of 3 after {warm:.0f} s warm-up / last 3)")
    print(f"{'':24} {'start':>10} {'end':>10}")
    print(f"{'RSS (KiB)':24} {start['rss_kib']:>10.0f} {end['rss_kib']:>10.0f}")
    print(f"{'open fds':24} {start['fds']:>10.0f} {end['fds']:>10.0f}")
    for k in keys:
        print(f"{f'loop {k[0]} {k[1]}':24} {start[k]:>10.0f} {end[k]:>10.0f}")
    stream_peaks = {k[0]: max(s["queues"].get(k, 0) for s in samples) for k in keys if k[1] == "streams"}
    print(f"peak open streams per loop (loops that served ext_proc): {stream_peaks}")
    print(f"Envoy counters (non-zero): {envoy_view or 'none'}")
    print(f"after the load, idle: RSS {after_idle['rss_kib']} KiB, fds {after_idle['fds']}; "
          f"sanitizer report lines: {len(reports)}; epp exit {rc}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "samples": [{**s, "queues": {f"{k[0]}/{k[1]}": v for k, v in s.get("queues", {}).items()}}
                                                       for s in sampler.samples],
                       "load": rep, "failures": failures}, f, indent=1)
    if failures:
        print(f"epp log: {epp.log.name}")
        print("FAIL: " + "; ".join(failures))
        return 1
    print("OK: flat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
