#!/usr/bin/env python3
"""Question: what does the picker add for very large prompts (~220 KB bodies)?

One fast simulated server (prefill and decode made nearly free so the network path dominates), streaming
requests with ~220 KB prompts at concurrency 20 through (a) Envoy alone (static cluster, no ext_proc) and
(b) Envoy + epp. Reports TTFT p50/p99 for both and the picker's own time from the last body chunk to its
answer (epp_request_processing_seconds{phase="body_end"} from /metrics).
Usage: benchmarks/bench_large_prompts.py [--quick]
"""
import argparse
import json
import os
import subprocess
import tempfile
import urllib.request

from bench_routing_quality import Fleet, envoy_round_robin_config
from common import append_results, build_release, harness


def histogram(metrics_port, name, labels):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    buckets, total, count = [], 0.0, 0
    for line in text.splitlines():
        if line.startswith(name + "_bucket{") and labels in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(name + "_sum{") and labels in line:
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count{") and labels in line:
            count = int(float(line.rsplit(" ", 1)[1]))
    p99 = next((le for le, c in buckets if count and c >= 0.99 * count), float("nan"))
    return (total / count if count else float("nan")), p99, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    opts = ap.parse_args()
    harness.EPP_BIN = build_release("epp")
    sim_bin, load_bin = build_release("epp-sim"), build_release("epp-load")
    n = 40 if opts.quick else 400
    load = ["--workload", "shared-prefix", "--groups", str(n), "--prompts-per-group", "1", "--system-prompt-tokens", "55000",
            "--question-tokens", "16", "--output-tokens", "4", "--concurrency", "20", "--stream", "--quiet", "--seed", "3"]
    results = {}
    for setup in ["Envoy alone", "Envoy + epp"]:
        fleet = Fleet(sim_bin, 1, 20000, 1.0, extra=["--max-num-seqs", "64", "--prefill-overhead-ms", "1",
                                                      "--prefill-per-token-ms", "0.0001", "--itl-ms", "1"])
        procs = []
        try:
            if setup == "Envoy alone":
                original = harness.ENVOY_CONFIG
                harness.ENVOY_CONFIG = envoy_round_robin_config(fleet.ports)
                envoy = harness.start_envoy(epp_port=1)
                harness.ENVOY_CONFIG = original
                procs.append(envoy)
            else:
                epp = harness.start_epp(fleet.ports, workers=1)
                envoy = harness.start_envoy(epp.grpc_port)
                procs += [envoy, epp]
            out = tempfile.NamedTemporaryFile(prefix="large-", suffix=".json", delete=False).name
            subprocess.run([load_bin, "--target", f"http://127.0.0.1:{envoy.listener_port}", *load, "--json", out],
                           check=True, stdout=subprocess.DEVNULL, timeout=1800)
            with open(out) as f:
                results[setup] = json.load(f)
            if setup == "Envoy + epp":
                results["picker"] = histogram(epp.metrics_port, "epp_request_processing_seconds", 'phase="body_end"')
        finally:
            for p in procs:
                p.stop()
            fleet.stop()
    a, b = results["Envoy alone"], results["Envoy + epp"]
    mean, p99, count = results["picker"]
    lines = ["| setup | TTFT p50 ms | TTFT p99 ms | req/s | errors |", "|---|---|---|---|---|"]
    for name in ["Envoy alone", "Envoy + epp"]:
        r = results[name]
        lines.append(f"| {name} | {r['ttft_ms']['p50']:.1f} | {r['ttft_ms']['p99']:.1f} | {r['requests_per_second']:.1f} | {r['errors']} |")
    lines += ["", f"picker time from last body chunk to decision: mean {mean * 1000:.3f} ms, p99 ≤ {p99 * 1000:.3f} ms "
              f"(histogram bucket bound, {count} requests); TTFT p50 added through the picker: "
              f"{b['ttft_ms']['p50'] - a['ttft_ms']['p50']:+.1f} ms"]
    print("\n".join(lines))
    if a["errors"] or b["errors"]:
        raise SystemExit("requests failed")
    if not opts.quick:
        append_results("large-prompts (~220 KB prompts, c=20, stream)", lines, "python3 benchmarks/bench_large_prompts.py")


if __name__ == "__main__":
    main()
