#!/usr/bin/env python3
"""Question: what does the picker cost behind Envoy?

Same loopback fleet (an Envoy with direct_response listeners as fast model-server stand-ins), same h2load
traffic (POST /v1/completions with a 4 KB JSON body) through:
  (a) Envoy alone: the shipped gateway config without ext_proc, the client sets x-gateway-destination-endpoint;
  (b) Envoy + epp: the shipped gateway config, the picker chooses the endpoint.
Reports req/s, mean latency and the ratio (b)/(a). Usage: benchmarks/bench_envoy_overhead.py [--quick]
"""
import argparse
import os
import tempfile

import yaml

from common import append_results, build_release, cpu_seconds, h2load, harness


def backend_config(ports, admin_port):
    listeners = []
    for p in ports:
        listeners.append({
            "name": f"backend_{p}",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": p}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": f"backend_{p}",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": '{"choices":[{"text":"ok"}]}'}}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {"listeners": listeners}}


def gateway_without_ext_proc():
    with open(harness.ENVOY_CONFIG) as f:
        cfg = yaml.safe_load(f)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.ext_proc"]
    cfg["static_resources"]["clusters"] = [c for c in cfg["static_resources"]["clusters"] if c["name"] != "ext_proc"]
    path = tempfile.NamedTemporaryFile(prefix="envoy-alone-", suffix=".yaml", delete=False).name
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def measured(url, body, n, hdrs, procs):
    """h2load run plus the CPU time each process spent per request during it (utime+stime)."""
    before = {k: cpu_seconds(p.proc.pid) for k, p in procs.items()}
    r = h2load(url, body, n, 16, 4, extra_headers=hdrs)
    r["cpu_us"] = {k: (cpu_seconds(p.proc.pid) - before[k]) / max(r["succeeded"], 1) * 1e6 for k, p in procs.items()}
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    harness.EPP_BIN = build_release()
    n = 5_000 if args.quick else 100_000
    ports = [harness.free_port() for _ in range(2)]
    bpath = tempfile.NamedTemporaryFile(prefix="envoy-backend-", suffix=".yaml", delete=False).name
    badmin = harness.free_port()
    with open(bpath, "w") as f:
        yaml.safe_dump(backend_config(ports, badmin), f)
    backend = harness.Process(["envoy", "-c", bpath, "--concurrency", "1", "-l", "warning", "--base-id", str(badmin)], "backend")
    for p in ports:
        harness.wait_port(p, 60)
    body = tempfile.NamedTemporaryFile(prefix="body-", suffix=".json", delete=False)
    body.write(harness.json_body(4096))   # a valid 4 KB completions request
    body.close()
    results = {}
    try:
        # (a) Envoy alone
        original = harness.ENVOY_CONFIG
        harness.ENVOY_CONFIG = gateway_without_ext_proc()
        envoy = harness.start_envoy(epp_port=1)
        harness.ENVOY_CONFIG = original
        try:
            url = f"http://127.0.0.1:{envoy.listener_port}/v1/completions"
            hdrs = ["content-type: application/json", f"x-gateway-destination-endpoint: 127.0.0.1:{ports[0]}"]
            h2load(url, body.name, 2000, 16, 4, extra_headers=hdrs)
            results["Envoy alone (fixed header)"] = measured(url, body.name, n, hdrs, {"envoy": envoy, "backend": backend})
        finally:
            envoy.stop()
        # (b) Envoy + epp
        epp = harness.start_epp(ports, workers=1)
        envoy = harness.start_envoy(epp.grpc_port)
        try:
            url = f"http://127.0.0.1:{envoy.listener_port}/v1/completions"
            hdrs = ["content-type: application/json"]
            h2load(url, body.name, 2000, 16, 4, extra_headers=hdrs)
            results["Envoy + epp"] = measured(url, body.name, n, hdrs, {"envoy": envoy, "backend": backend, "epp": epp})
            stats = harness.envoy_stats(envoy.admin_port, "ext_proc")
        finally:
            envoy.stop()
            epp.stop()
    finally:
        backend.stop()
    lines = ["| setup | req/s | mean latency ms | succeeded | failed | CPU µs/request (envoy / backend / epp) |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        cpu = " / ".join(f"{r['cpu_us'].get(k, 0):.0f}" if k in r["cpu_us"] else "–" for k in ("envoy", "backend", "epp"))
        lines.append(f"| {name} | {r['rps']:.0f} | {r.get('latency_mean_ms', 0):.2f} | {r['succeeded']} | {r['failed']} | {cpu} |")
    a, b = results["Envoy alone (fixed header)"], results["Envoy + epp"]
    lines.append("")
    lines.append(f"ratio (Envoy + epp) / (Envoy alone) = **{b['rps'] / a['rps']:.2f}×** throughput; "
                 f"ext_proc streams_failed={stats.get('http.inference_gateway.ext_proc.streams_failed', 0)}")
    print("\n".join(lines))
    if b["failed"] or a["failed"]:
        raise SystemExit("requests failed")
    if not args.quick:
        append_results("envoy-overhead (4 KB body, h2load -c 16 -m 4, envoy --concurrency 1, epp --workers 1)", lines,
                       "python3 benchmarks/bench_envoy_overhead.py")


if __name__ == "__main__":
    main()
